//! What is delivered and how an attempt can end.

use chrono::{DateTime, SecondsFormat, Utc};

use crate::environment::Environment;

/// The body every receiver gets. Fixed, not configurable: receivers code against it.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeliveredBody<'a> {
    /// The event id: the same for every endpoint and every retry, so receivers dedupe on it.
    pub message_id: &'a str,
    /// Catalog code, e.g. `report.created`.
    pub event_code: &'a str,
    /// Catalog name, e.g. "An Inspection report is uploaded".
    pub event_name: &'a str,
    /// When the event happened, RFC 3339 in UTC.
    pub occurred_at: String,
    /// `live` or `test`.
    pub environment: Environment,
    /// The publisher's `data`.
    pub payload: &'a serde_json::Value,
}

impl<'a> DeliveredBody<'a> {
    /// Builds the body for one event.
    pub fn new(
        message_id: &'a str,
        event_code: &'a str,
        event_name: &'a str,
        occurred_at: DateTime<Utc>,
        environment: Environment,
        payload: &'a serde_json::Value,
    ) -> Self {
        Self {
            message_id,
            event_code,
            event_name,
            occurred_at: occurred_at.to_rfc3339_opts(SecondsFormat::Millis, true),
            environment,
            payload,
        }
    }

    /// The exact bytes sent and signed.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a struct of strings and JSON values always serializes")
    }
}

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryStatus {
    /// Created, first attempt not yet made (or not yet judged).
    Pending,
    /// An attempt failed and another is scheduled.
    Retrying,
    /// An attempt got a 2xx.
    Succeeded,
    /// Every attempt failed, or the failure cannot be retried.
    Failed,
}

impl DeliveryStatus {
    /// The name stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Retrying => "retrying",
            DeliveryStatus::Succeeded => "succeeded",
            DeliveryStatus::Failed => "failed",
        }
    }

    /// Parses a stored status.
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "pending" => Some(DeliveryStatus::Pending),
            "retrying" => Some(DeliveryStatus::Retrying),
            "succeeded" => Some(DeliveryStatus::Succeeded),
            "failed" => Some(DeliveryStatus::Failed),
            _ => None,
        }
    }

    /// Whether no further attempt will be made.
    pub fn is_final(self) -> bool {
        matches!(self, DeliveryStatus::Succeeded | DeliveryStatus::Failed)
    }
}

/// Why an attempt failed. Stored on the attempt and used to decide whether to retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The receiver answered, but not with a 2xx (redirects included: they are not followed).
    HttpStatus,
    /// No complete answer within the delivery timeout.
    Timeout,
    /// The connection was refused, reset or could not be made.
    Connect,
    /// The host name did not resolve.
    Dns,
    /// The TLS handshake failed (bad certificate, protocol mismatch).
    Tls,
    /// The URL resolves only to addresses deliveries may not reach.
    BlockedAddress,
    /// The endpoint's URL or credential cannot be used as configured.
    InvalidEndpoint,
    /// Any other transport failure.
    Other,
}

impl ErrorKind {
    /// The name stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::HttpStatus => "http_status",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Connect => "connect",
            ErrorKind::Dns => "dns",
            ErrorKind::Tls => "tls",
            ErrorKind::BlockedAddress => "blocked_address",
            ErrorKind::InvalidEndpoint => "invalid_endpoint",
            ErrorKind::Other => "other",
        }
    }

    /// Parses a stored kind.
    pub fn parse(value: &str) -> Option<Self> {
        [
            ErrorKind::HttpStatus,
            ErrorKind::Timeout,
            ErrorKind::Connect,
            ErrorKind::Dns,
            ErrorKind::Tls,
            ErrorKind::BlockedAddress,
            ErrorKind::InvalidEndpoint,
            ErrorKind::Other,
        ]
        .into_iter()
        .find(|kind| kind.as_str() == value)
    }

    /// Whether trying again later could succeed. A blocked address or a broken endpoint
    /// configuration will fail the same way every time, so it is not retried.
    pub fn is_retryable(self) -> bool {
        !matches!(self, ErrorKind::BlockedAddress | ErrorKind::InvalidEndpoint)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_has_the_documented_fields() {
        let payload = serde_json::json!({"resourceId": 1});
        let at = DateTime::parse_from_rfc3339("2026-01-02T03:04:05Z").unwrap().with_timezone(&Utc);
        let body = DeliveredBody::new("evt_1", "report.created", "Uploaded", at, Environment::Live, &payload);
        let json: serde_json::Value = serde_json::from_slice(&body.to_bytes()).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "messageId": "evt_1", "eventCode": "report.created", "eventName": "Uploaded",
                "occurredAt": "2026-01-02T03:04:05.000Z", "environment": "live", "payload": {"resourceId": 1}
            })
        );
    }

    #[test]
    fn names_round_trip() {
        assert_eq!(ErrorKind::parse(ErrorKind::BlockedAddress.as_str()), Some(ErrorKind::BlockedAddress));
        assert!(!ErrorKind::BlockedAddress.is_retryable());
        assert!(ErrorKind::Timeout.is_retryable());
        assert!(DeliveryStatus::Failed.is_final());
        assert_eq!(DeliveryStatus::parse("retrying"), Some(DeliveryStatus::Retrying));
    }
}
