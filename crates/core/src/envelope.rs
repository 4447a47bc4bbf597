//! The upstream event envelope: the contract upstream applications publish against.
//!
//! Both transports (AMQP and `POST /v1/events`) and both encodings (JSON and
//! protobuf) end in [`RawUpstreamEvent`], which [`RawUpstreamEvent::validate`] turns
//! into an [`UpstreamEvent`] or a [`Rejection`] saying exactly what is wrong.

use chrono::{DateTime, Utc};

use crate::catalog::Catalog;
use crate::environment::Environment;
use crate::ids::OrganizationId;
use crate::payload::Payload;

/// Event types of this component are hookline's own (the activation ping); upstream
/// applications may not publish them.
pub const RESERVED_COMPONENT: &str = "webhook.";

/// Longest idempotency key, actor or team accepted; longer values are refused rather
/// than truncated so two different keys never collide.
pub const MAX_FIELD_LEN: usize = 256;

named_enum! {
    /// Why a message was refused: one list for every queue and for the API's event ingest.
    /// The code is stable: it is what the rejected queue's reason header and the API's error
    /// code carry, and what operators count.
    #[strum(serialize_all = "snake_case")]
    pub enum RejectReason {
        /// Larger than the configured limit.
        TooLarge,
        /// Not JSON (or not protobuf, for that content type), not a JSON object, or not the
        /// message the queue carries.
        Malformed,
        /// A content type hookline does not read.
        UnsupportedContentType,
        /// No `type`.
        MissingType,
        /// A `type` the catalog does not have.
        UnknownType,
        /// No `organization`.
        MissingOrganization,
        /// An `organization` that does not exist.
        UnknownOrganization,
        /// A field is present but has the wrong shape (named in the message).
        InvalidField,
        /// A route message names an event its organisation does not have.
        UnknownEvent,
        /// A delivery job names a delivery that does not exist.
        UnknownDelivery,
        /// The database refuses a value the message holds (SQLSTATE class 22): it never
        /// will store it.
        Unstorable,
    }
}

named_enum! {
    /// Where an event came from.
    #[strum(serialize_all = "lowercase")]
    pub enum Origin {
        /// Published by an upstream application: routed to every matching webhook.
        Upstream,
        /// hookline's own operational event (`webhook.disabled`): routed like an upstream one.
        System,
        /// The activation ping: delivered to one webhook, never routed.
        Ping,
        /// A test event an operator sent to one webhook, never routed.
        Test,
    }
}

impl Origin {
    /// Whether the router offers events of this origin to every matching webhook (the
    /// others go to one webhook, chosen by whoever made them).
    pub fn is_routed(self) -> bool {
        matches!(self, Origin::Upstream | Origin::System)
    }
}

/// A refused message: the reason code, the field concerned and a message for people.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {message}", reason.as_str())]
pub struct Rejection {
    /// What kind of refusal this is.
    pub reason: RejectReason,
    /// The envelope field at fault, when one is (an unknown field is named as sent).
    pub field: Option<std::borrow::Cow<'static, str>>,
    /// What exactly is wrong, naming the field and value.
    pub message: String,
}

impl Rejection {
    /// A refusal concerning one field.
    pub fn field(reason: RejectReason, field: &'static str, message: impl Into<String>) -> Self {
        Self { reason, field: Some(field.into()), message: message.into() }
    }

    /// A refusal of the message as a whole.
    pub fn whole(reason: RejectReason, message: impl Into<String>) -> Self {
        Self { reason, field: None, message: message.into() }
    }
}

/// The envelope as published, before validation. Every field is optional here so that
/// a missing one is reported by name instead of as a generic parse error; a field the
/// contract does not have is refused by name (a misspelt `ocurred_at` would otherwise be
/// dropped without a word and the event stamped with the wrong time).
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUpstreamEvent {
    /// Publisher's idempotency key: a second event with the same id is accepted once.
    #[serde(default)]
    pub id: Option<String>,
    /// Event type code from the catalog.
    #[serde(default, rename = "type")]
    pub event_type: Option<String>,
    /// Organisation id the event belongs to.
    #[serde(default)]
    pub organization: Option<String>,
    /// `live` (default) or `test`.
    #[serde(default)]
    pub environment: Option<String>,
    /// RFC 3339 time the event happened (default: when hookline received it).
    #[serde(default)]
    pub occurred_at: Option<String>,
    /// The user who caused the event ("for login" filters match it).
    #[serde(default)]
    pub actor: Option<String>,
    /// The team the event concerns (team filters match it).
    #[serde(default)]
    pub team: Option<String>,
    /// The event's payload, delivered to receivers as `payload`.
    #[serde(default)]
    pub data: Option<Box<serde_json::value::RawValue>>,
}

/// The field serde names in an ``unknown field `x`, expected …`` error (the words
/// `#[serde(deny_unknown_fields)]` gives), so the refusal can name it as a field.
pub fn unknown_field(serde_message: &str) -> Option<&str> {
    named_in(serde_message, "unknown field `")
}

/// The field serde names in a ``missing field `x` `` error.
pub fn missing_field(serde_message: &str) -> Option<&str> {
    named_in(serde_message, "missing field `")
}

fn named_in<'m>(serde_message: &'m str, prefix: &str) -> Option<&'m str> {
    let rest = serde_message.strip_prefix(prefix)?;
    rest.find('`').map(|end| &rest[..end])
}

/// A validated upstream event, ready to be stored and routed.
#[derive(Debug, Clone, PartialEq)]
pub struct UpstreamEvent {
    /// Publisher's idempotency key, if it gave one.
    pub message_id: Option<String>,
    /// Catalog code of the event type.
    pub event_type: String,
    /// Owning organisation (its existence is checked against the database by ingest).
    pub organization: OrganizationId,
    /// Live or test.
    pub environment: Environment,
    /// When it happened.
    pub occurred_at: DateTime<Utc>,
    /// Acting user, if any.
    pub actor: Option<String>,
    /// Team, if any.
    pub team: Option<String>,
    /// Payload object, as published.
    pub data: Payload,
}

impl RawUpstreamEvent {
    /// Parses a JSON body, refusing anything over `max_size` bytes before parsing it.
    pub fn from_json(body: &[u8], max_size: usize) -> Result<Self, Rejection> {
        check_size(body, max_size)?;
        // serde reads a struct from an array too (its fields in order): an envelope is
        // an object only.
        if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
            return Err(Rejection::whole(RejectReason::Malformed, "body is not a JSON object"));
        }
        serde_json::from_slice(body).map_err(|err| match unknown_field(&err.to_string()).map(str::to_owned) {
            Some(field) => Rejection {
                reason: RejectReason::InvalidField,
                message: format!("`{field}` is not a field of the event envelope"),
                field: Some(field.into()),
            },
            None => Rejection::whole(RejectReason::Malformed, format!("body is not a JSON event envelope: {err}")),
        })
    }

    /// Checks every field against the envelope contract and the catalog.
    pub fn validate(self, catalog: &Catalog, now: DateTime<Utc>) -> Result<UpstreamEvent, Rejection> {
        let event_type = non_empty(self.event_type)
            .ok_or_else(|| Rejection::field(RejectReason::MissingType, "type", "`type` is required"))?;
        if event_type.starts_with(RESERVED_COMPONENT) {
            return Err(Rejection::field(
                RejectReason::UnknownType,
                "type",
                format!("`type` `{event_type}` is reserved for hookline's own events"),
            ));
        }
        if catalog.get(&event_type).is_none() {
            return Err(Rejection::field(
                RejectReason::UnknownType,
                "type",
                format!("`type` `{event_type}` is not in the event catalog"),
            ));
        }
        let organization = non_empty(self.organization).ok_or_else(|| {
            Rejection::field(RejectReason::MissingOrganization, "organization", "`organization` is required")
        })?;
        let organization = organization.parse::<OrganizationId>().map_err(|err| {
            Rejection::field(RejectReason::UnknownOrganization, "organization", format!("`organization`: {err}"))
        })?;
        let environment = match non_empty(self.environment) {
            None => Environment::Live,
            Some(value) => value.parse().map_err(|err| {
                Rejection::field(RejectReason::InvalidField, "environment", format!("`environment`: {err}"))
            })?,
        };
        let occurred_at = match non_empty(self.occurred_at) {
            None => now,
            Some(value) => DateTime::parse_from_rfc3339(&value).map(|t| t.with_timezone(&Utc)).map_err(|err| {
                Rejection::field(
                    RejectReason::InvalidField,
                    "occurred_at",
                    format!("`occurred_at` `{value}` is not an RFC 3339 time: {err}"),
                )
            })?,
        };
        let data = event_data(self.data)?;
        Ok(UpstreamEvent {
            message_id: bounded("id", non_empty(self.id))?,
            event_type,
            organization,
            environment,
            occurred_at,
            actor: bounded("actor", non_empty(self.actor))?,
            team: bounded("team", non_empty(self.team))?,
            data,
        })
    }
}

/// An event's `data`: a JSON object (`{}` when absent or null) holding no NUL character,
/// kept as written.
fn event_data(data: Option<Box<serde_json::value::RawValue>>) -> Result<Payload, Rejection> {
    match data {
        None => Ok(Payload::empty()),
        Some(raw) => {
            Payload::check(raw).map_err(|err| Rejection::field(RejectReason::InvalidField, "data", err.to_string()))
        }
    }
}

/// Refuses a body over the configured limit before any parsing work is spent on it.
pub fn check_size(body: &[u8], max_size: usize) -> Result<(), Rejection> {
    if body.len() > max_size {
        return Err(Rejection::whole(
            RejectReason::TooLarge,
            format!("message is {} bytes, the limit is {max_size}", body.len()),
        ));
    }
    Ok(())
}

fn non_empty(value: Option<String>) -> Option<String> {
    value.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
}

fn bounded(field: &'static str, value: Option<String>) -> Result<Option<String>, Rejection> {
    match value {
        Some(v) if v.len() > MAX_FIELD_LEN => Err(Rejection::field(
            RejectReason::InvalidField,
            field,
            format!("`{field}` is longer than {MAX_FIELD_LEN} bytes"),
        )),
        Some(v) if v.contains('\0') => Err(Rejection::field(
            RejectReason::InvalidField,
            field,
            format!("`{field}` holds a NUL character (U+0000), which cannot be stored"),
        )),
        other => Ok(other),
    }
}

/// Where `value` first holds a NUL character (U+0000), in a string or a key, as a path
/// from `at` (`data.items[2].name`); `None` when nowhere. PostgreSQL stores no NUL in
/// text or JSON, so such input must be refused at the door rather than fail (and be
/// retried) at every write.
pub fn nul_at(value: &serde_json::Value, at: &str) -> Option<String> {
    match value {
        serde_json::Value::String(text) => text.contains('\0').then(|| at.to_owned()),
        serde_json::Value::Array(items) => {
            items.iter().enumerate().find_map(|(index, item)| nul_at(item, &format!("{at}[{index}]")))
        }
        serde_json::Value::Object(fields) => fields.iter().find_map(|(key, item)| {
            let path = if at.is_empty() { key.clone() } else { format!("{at}.{key}") };
            if key.contains('\0') { Some(path) } else { nul_at(item, &path) }
        }),
        serde_json::Value::Null | serde_json::Value::Bool(_) | serde_json::Value::Number(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::OrganizationId;

    fn validate(json: serde_json::Value) -> Result<UpstreamEvent, Rejection> {
        let body = serde_json::to_vec(&json).unwrap();
        RawUpstreamEvent::from_json(&body, 1024)?.validate(&Catalog::builtin(), Utc::now())
    }

    #[test]
    fn a_full_envelope_is_accepted() {
        let org = OrganizationId::generate();
        let event = validate(serde_json::json!({
            "id": "abc", "type": "job.created", "organization": org.as_str(), "environment": "test",
            "occurred_at": "2026-01-02T03:04:05Z", "actor": "u1", "team": "t1", "data": {"jobId": 1}
        }))
        .unwrap();
        assert_eq!(event.message_id.as_deref(), Some("abc"));
        assert_eq!(event.environment, Environment::Test);
        assert_eq!(event.occurred_at.to_rfc3339(), "2026-01-02T03:04:05+00:00");
        assert_eq!(event.data.to_value()["jobId"], 1);
    }

    #[test]
    fn a_nul_is_found_where_it_is() {
        let data = serde_json::json!({"a": 1, "items": [{"ok": "fine"}, {"name": "x\u{0}"}]});
        assert_eq!(nul_at(&data, "data").as_deref(), Some("data.items[1].name"));
        assert_eq!(nul_at(&serde_json::json!({"k\u{0}": 1}), "").as_deref(), Some("k\u{0}"));
        assert_eq!(nul_at(&serde_json::json!({"a": ["\\u0000 is text here"]}), ""), None);
    }

    #[test]
    fn defaults_apply_to_environment_time_and_data() {
        let org = OrganizationId::generate();
        let event = validate(serde_json::json!({"type": "job.created", "organization": org.as_str()})).unwrap();
        assert_eq!(event.environment, Environment::Live);
        assert_eq!(event.data.as_str(), "{}");
        assert!(event.message_id.is_none());
    }

    #[test]
    fn each_defect_has_its_reason_and_field() {
        let org = OrganizationId::generate();
        let cases = [
            (serde_json::json!({"organization": org.as_str()}), RejectReason::MissingType, Some("type")),
            (
                serde_json::json!({"type": "no.such", "organization": org.as_str()}),
                RejectReason::UnknownType,
                Some("type"),
            ),
            (serde_json::json!({"type": "job.created"}), RejectReason::MissingOrganization, Some("organization")),
            (
                serde_json::json!({"type": "webhook.ping", "organization": org.as_str()}),
                RejectReason::UnknownType,
                Some("type"),
            ),
            (
                serde_json::json!({"type": "job.created", "organization": "acme"}),
                RejectReason::UnknownOrganization,
                Some("organization"),
            ),
            (
                serde_json::json!({"type": "job.created", "organization": org.as_str(), "environment": "prod"}),
                RejectReason::InvalidField,
                Some("environment"),
            ),
            (
                serde_json::json!({"type": "job.created", "organization": org.as_str(), "occurred_at": "yesterday"}),
                RejectReason::InvalidField,
                Some("occurred_at"),
            ),
            (
                serde_json::json!({"type": "job.created", "organization": org.as_str(), "data": [1]}),
                RejectReason::InvalidField,
                Some("data"),
            ),
            // A misspelt field is named, not dropped (the event would get the wrong time).
            (
                serde_json::json!({"type": "job.created", "organization": org.as_str(), "ocurred_at": "2026-01-01T00:00:00Z"}),
                RejectReason::InvalidField,
                Some("ocurred_at"),
            ),
        ];
        // NUL characters, which PostgreSQL can store in neither text nor JSON.
        let nul = [
            (serde_json::json!({"id": "a\u{0}b"}), "id"),
            (serde_json::json!({"actor": "\u{0}"}), "actor"),
            (serde_json::json!({"team": "t\u{0}"}), "team"),
            (serde_json::json!({"data": {"items": [{"name": "x\u{0}"}]}}), "data"),
            (serde_json::json!({"data": {"k\u{0}": 1}}), "data"),
        ]
        .map(|(mut json, field)| {
            json["type"] = "job.created".into();
            json["organization"] = org.as_str().into();
            (json, RejectReason::InvalidField, Some(field))
        });
        let cases = cases.into_iter().chain(nul);
        for (json, reason, field) in cases {
            let err = validate(json.clone()).unwrap_err();
            assert_eq!((err.reason, err.field.as_deref()), (reason, field), "for {json}");
        }
    }

    #[test]
    fn oversized_and_non_json_bodies_are_refused() {
        assert_eq!(RawUpstreamEvent::from_json(&[b'x'; 2000], 1024).unwrap_err().reason, RejectReason::TooLarge);
        assert_eq!(RawUpstreamEvent::from_json(b"not json", 1024).unwrap_err().reason, RejectReason::Malformed);
        assert_eq!(RawUpstreamEvent::from_json(b"[1,2]", 1024).unwrap_err().reason, RejectReason::Malformed);
    }
}
