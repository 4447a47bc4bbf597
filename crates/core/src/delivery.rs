//! What is delivered and how an attempt can end.

use chrono::{DateTime, SecondsFormat, Utc};

use crate::environment::Environment;
use crate::payload::Payload;

/// The body every receiver gets. Fixed, not configurable: receivers code against it.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeliveredBody<'a> {
    /// The event id: the same for every endpoint and every retry, so receivers dedupe on it.
    pub message_id: &'a str,
    /// Whose event it is: a receiver serving several organisations (a partner's) tells
    /// them apart by it.
    pub organization_id: &'a str,
    /// Catalog code, e.g. `report.created`.
    pub event_code: &'a str,
    /// Catalog name, e.g. "An Inspection report is uploaded".
    pub event_name: &'a str,
    /// When the event happened, RFC 3339 in UTC.
    pub occurred_at: String,
    /// `live` or `test`.
    pub environment: Environment,
    /// The publisher's `data`, byte for byte.
    pub payload: &'a Payload,
}

impl<'a> DeliveredBody<'a> {
    /// Builds the body for one event.
    pub fn new(
        message_id: &'a str,
        organization_id: &'a str,
        event_code: &'a str,
        event_name: &'a str,
        occurred_at: DateTime<Utc>,
        environment: Environment,
        payload: &'a Payload,
    ) -> Self {
        Self {
            message_id,
            organization_id,
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

named_enum! {
    /// Where a delivery stands. Stored as the PostgreSQL enum `delivery_status`.
    #[serde(rename_all = "lowercase")]
    #[strum(serialize_all = "lowercase")]
    pub enum DeliveryStatus {
        /// Created, first attempt not yet made.
        Pending,
        /// An attempt failed and another is scheduled.
        Retrying,
        /// An attempt got a 2xx.
        Succeeded,
        /// Every attempt failed, the failure cannot be retried, or the webhook went away.
        Failed,
    }
}

impl DeliveryStatus {
    /// The states in which another attempt is still expected.
    pub const OPEN: [DeliveryStatus; 2] = [DeliveryStatus::Pending, DeliveryStatus::Retrying];

    /// Whether no further attempt will be made.
    pub fn is_final(self) -> bool {
        !Self::OPEN.contains(&self)
    }
}

named_enum! {
    /// Why an attempt failed. Stored on the attempt (the PostgreSQL enum `error_kind`) and
    /// used to decide whether to retry.
    #[serde(rename_all = "snake_case")]
    #[strum(serialize_all = "snake_case")]
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
}

impl ErrorKind {
    /// Whether trying again later could succeed. A blocked address or a broken endpoint
    /// configuration will fail the same way every time, so it is not retried.
    pub fn is_retryable(self) -> bool {
        !matches!(self, ErrorKind::BlockedAddress | ErrorKind::InvalidEndpoint)
    }
}

named_enum! {
    /// What asked for an attempt. Stored as the PostgreSQL enum `attempt_trigger`.
    #[serde(rename_all = "lowercase")]
    #[strum(serialize_all = "lowercase")]
    pub enum Trigger {
        /// The schedule: the first attempt, or a retry.
        Scheduled,
        /// An operator (redelivery or recovery).
        Manual,
    }
}

impl Trigger {
    /// The trigger of a job: manual when an operator asked for it.
    pub fn of(manual: bool) -> Self {
        if manual { Trigger::Manual } else { Trigger::Scheduled }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_has_the_documented_fields() {
        let payload = Payload::stored(r#"{"resourceId": 1}"#.into()).unwrap();
        let at = DateTime::parse_from_rfc3339("2026-01-02T03:04:05Z").unwrap().with_timezone(&Utc);
        let body = DeliveredBody::new("evt_1", "org_1", "report.created", "Uploaded", at, Environment::Live, &payload);
        let json: serde_json::Value = serde_json::from_slice(&body.to_bytes()).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "messageId": "evt_1", "organizationId": "org_1", "eventCode": "report.created", "eventName": "Uploaded",
                "occurredAt": "2026-01-02T03:04:05.000Z", "environment": "live", "payload": {"resourceId": 1}
            })
        );
        let exact = Payload::stored(r#"{"n": 123456789012345678901234567890, "z": -0}"#.into()).unwrap();
        let bytes = DeliveredBody::new("evt_1", "org_1", "report.created", "Uploaded", at, Environment::Live, &exact)
            .to_bytes();
        let text = String::from_utf8(bytes).unwrap();
        assert!(text.ends_with(r#""payload":{"n": 123456789012345678901234567890, "z": -0}}"#), "{text}");
    }

    #[test]
    fn names_round_trip_as_stored() {
        assert_eq!(ErrorKind::BlockedAddress.as_str(), "blocked_address");
        assert_eq!("blocked_address".parse(), Ok(ErrorKind::BlockedAddress));
        assert!(!ErrorKind::BlockedAddress.is_retryable());
        assert!(ErrorKind::Timeout.is_retryable());
        assert!(DeliveryStatus::Failed.is_final() && DeliveryStatus::Succeeded.is_final());
        assert!(!DeliveryStatus::Pending.is_final() && !DeliveryStatus::Retrying.is_final());
        assert_eq!("retrying".parse(), Ok(DeliveryStatus::Retrying));
        assert!("lost".parse::<DeliveryStatus>().is_err());
        assert_eq!((Trigger::of(true).as_str(), Trigger::of(false).as_str()), ("manual", "scheduled"));
    }
}
