//! The protobuf messages of `proto/hookline/v1/bus.proto`, and reading upstream events
//! in either encoding (hookline's own messages are read by [`crate::message`]).

use hookline_core::envelope::{RawUpstreamEvent, RejectReason, Rejection, check_size};

/// Generated from `proto/hookline/v1/bus.proto`.
#[allow(missing_docs)]
pub mod proto {
    include!(concat!(env!("OUT_DIR"), "/hookline.v1.rs"));
}

/// Content type of every message hookline publishes itself.
pub const PROTOBUF: &str = "application/x-protobuf";
/// Content type of JSON upstream events (also assumed when a publisher sets none).
pub const JSON: &str = "application/json";

/// Reads an upstream event body in the encoding its content type names.
pub fn decode_upstream(
    body: &[u8],
    content_type: Option<&str>,
    max_size: usize,
) -> Result<RawUpstreamEvent, Rejection> {
    let media_type = content_type.map(|ct| ct.split(';').next().unwrap_or_default().trim().to_ascii_lowercase());
    match media_type.as_deref() {
        None | Some("") | Some(JSON) | Some("text/json") => RawUpstreamEvent::from_json(body, max_size),
        Some(PROTOBUF) | Some("application/protobuf") => {
            check_size(body, max_size)?;
            let message = <proto::UpstreamEvent as prost::Message>::decode(body).map_err(|err| {
                Rejection::whole(RejectReason::Malformed, format!("body is not a protobuf UpstreamEvent: {err}"))
            })?;
            Ok(from_proto(message))
        }
        Some(other) => Err(Rejection::whole(
            RejectReason::UnsupportedContentType,
            format!("content type `{other}` is not supported (use {JSON} or {PROTOBUF})"),
        )),
    }
}

fn from_proto(message: proto::UpstreamEvent) -> RawUpstreamEvent {
    let non_empty = |s: String| (!s.is_empty()).then_some(s);
    RawUpstreamEvent {
        id: message.id,
        event_type: non_empty(message.r#type),
        organization: non_empty(message.organization),
        environment: message.environment,
        occurred_at: message.occurred_at,
        actor: message.actor,
        team: message.team,
        data: message.data.map(|data| {
            serde_json::value::to_raw_value(&struct_to_json(data)).expect("a JSON value always serializes")
        }),
    }
}

/// Converts a protobuf `Struct` to the JSON object it represents. Its numbers are
/// doubles: a publisher who needs numbers kept beyond 2^53 publishes JSON.
pub fn struct_to_json(value: prost_types::Struct) -> serde_json::Value {
    serde_json::Value::Object(value.fields.into_iter().map(|(k, v)| (k, value_to_json(v))).collect())
}

fn value_to_json(value: prost_types::Value) -> serde_json::Value {
    use prost_types::value::Kind;
    match value.kind {
        None | Some(Kind::NullValue(_)) => serde_json::Value::Null,
        Some(Kind::BoolValue(b)) => serde_json::Value::Bool(b),
        Some(Kind::NumberValue(n)) => json_number(n),
        Some(Kind::StringValue(s)) => serde_json::Value::String(s),
        Some(Kind::ListValue(list)) => serde_json::Value::Array(list.values.into_iter().map(value_to_json).collect()),
        Some(Kind::StructValue(s)) => struct_to_json(s),
    }
}

/// Protobuf numbers are doubles; whole numbers become JSON integers so `12301` is not
/// delivered as `12301.0`.
fn json_number(n: f64) -> serde_json::Value {
    if n.fract() == 0.0 && n.abs() < 9.0e15 {
        serde_json::Value::from(n as i64)
    } else {
        serde_json::Number::from_f64(n).map_or(serde_json::Value::Null, serde_json::Value::Number)
    }
}

/// Converts a JSON object to a protobuf `Struct` (for publishers such as the CLI).
pub fn json_to_struct(value: &serde_json::Map<String, serde_json::Value>) -> prost_types::Struct {
    prost_types::Struct { fields: value.iter().map(|(k, v)| (k.clone(), json_to_value(v))).collect() }
}

fn json_to_value(value: &serde_json::Value) -> prost_types::Value {
    use prost_types::value::Kind;
    let kind = match value {
        serde_json::Value::Null => Kind::NullValue(0),
        serde_json::Value::Bool(b) => Kind::BoolValue(*b),
        serde_json::Value::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or_default()),
        serde_json::Value::String(s) => Kind::StringValue(s.clone()),
        serde_json::Value::Array(items) => {
            Kind::ListValue(prost_types::ListValue { values: items.iter().map(json_to_value).collect() })
        }
        serde_json::Value::Object(map) => Kind::StructValue(json_to_struct(map)),
    };
    prost_types::Value { kind: Some(kind) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message as _;

    #[test]
    fn protobuf_and_json_envelopes_read_the_same() {
        let data = serde_json::json!({"resourceId": 12301, "path": "/r", "tags": ["a"], "ratio": 0.5});
        let message = proto::UpstreamEvent {
            id: Some("m1".into()),
            r#type: "report.created".into(),
            organization: "org_x".into(),
            data: Some(json_to_struct(data.as_object().unwrap())),
            ..Default::default()
        };
        let from_proto = decode_upstream(&message.encode_to_vec(), Some(PROTOBUF), 1024).unwrap();
        let json = serde_json::json!({"id": "m1", "type": "report.created", "organization": "org_x", "data": data});
        let from_json =
            decode_upstream(json.to_string().as_bytes(), Some("application/json; charset=utf-8"), 1024).unwrap();
        // Both compact, keys in the same order: the same text (protobuf numbers are
        // doubles, so only JSON keeps every number as written).
        assert_eq!(format!("{from_proto:?}"), format!("{from_json:?}"));
    }

    #[test]
    fn unknown_content_types_and_garbage_are_rejected() {
        assert_eq!(
            decode_upstream(b"{}", Some("text/xml"), 10).unwrap_err().reason,
            RejectReason::UnsupportedContentType
        );
        assert_eq!(decode_upstream(&[0xff, 0xff], Some(PROTOBUF), 10).unwrap_err().reason, RejectReason::Malformed);
    }
}
