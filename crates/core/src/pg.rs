//! PostgreSQL conversions (feature `postgres`), so the store binds and reads ids, states
//! and policies as the typed values they are, never as strings it parses itself.
//!
//! Ids, environments and methods are `text` columns. Delivery states, error kinds and
//! attempt triggers are PostgreSQL enums (`delivery_status`, `error_kind`,
//! `attempt_trigger`, migration V8); they travel as their labels, so a statement binds
//! them as `text` and casts (`$1::delivery_status`), and reads them back from either the
//! enum or text. A value the Rust type does not know is an error of the read, never a
//! silent default.

use std::error::Error;

use bytes::BytesMut;
use postgres_types::{FromSql, IsNull, ToSql, Type, to_sql_checked};

use crate::apikey::Scope;
use crate::delivery::{DeliveryStatus, ErrorKind, Trigger};
use crate::envelope::Origin;
use crate::environment::Environment;
use crate::ids::{ApiKeyId, CredentialId, DeliveryId, EndpointId, EventId, OrganizationId, WebhookId};
use crate::payload::Payload;
use crate::retry::RetryPolicy;
use crate::webhook::HttpMethod;

type BoxError = Box<dyn Error + Sync + Send>;

/// Whether a column or parameter of type `ty` holds the labels of a text-like value:
/// any text type, or the PostgreSQL enum named `enum_name`.
fn accepts_text(ty: &Type, enum_name: Option<&str>) -> bool {
    <&str as ToSql>::accepts(ty) || enum_name.is_some_and(|name| ty.name() == name)
}

macro_rules! as_text {
    ($ty:ty) => {
        as_text!($ty, None);
    };
    ($ty:ty, $enum_name:expr) => {
        impl ToSql for $ty {
            fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> Result<IsNull, BoxError> {
                self.as_str().to_sql(ty, out)
            }

            fn accepts(ty: &Type) -> bool {
                accepts_text(ty, $enum_name)
            }

            to_sql_checked!();
        }

        impl<'a> FromSql<'a> for $ty {
            fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, BoxError> {
                Ok(std::str::from_utf8(raw)?.parse()?)
            }

            fn accepts(ty: &Type) -> bool {
                accepts_text(ty, $enum_name)
            }
        }
    };
}

as_text!(OrganizationId);
as_text!(ApiKeyId);
as_text!(WebhookId);
as_text!(EndpointId);
as_text!(CredentialId);
as_text!(EventId);
as_text!(DeliveryId);
as_text!(Environment);
as_text!(HttpMethod);
as_text!(Scope);
as_text!(Origin);
as_text!(DeliveryStatus, Some("delivery_status"));
as_text!(ErrorKind, Some("error_kind"));
as_text!(Trigger, Some("attempt_trigger"));

/// A retry policy is stored as its delays in milliseconds (`bigint[]`); one that breaks
/// the policy's limits does not read back.
impl ToSql for RetryPolicy {
    fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> Result<IsNull, BoxError> {
        self.millis().to_sql(ty, out)
    }

    fn accepts(ty: &Type) -> bool {
        <Vec<i64> as ToSql>::accepts(ty)
    }

    to_sql_checked!();
}

impl<'a> FromSql<'a> for RetryPolicy {
    fn from_sql(ty: &Type, raw: &'a [u8]) -> Result<Self, BoxError> {
        Ok(RetryPolicy::from_millis(&<Vec<i64> as FromSql>::from_sql(ty, raw)?)?)
    }

    fn accepts(ty: &Type) -> bool {
        <Vec<i64> as FromSql>::accepts(ty)
    }
}

/// A payload is stored in a `json` column, which keeps its input text verbatim (a
/// `jsonb` column, which reorders keys and normalises numbers, is read too: databases
/// before V13 hold one). Its text is sent and read as it is; `jsonb`'s binary form is
/// that text after a version byte.
impl ToSql for Payload {
    fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> Result<IsNull, BoxError> {
        if *ty == Type::JSONB {
            out.extend_from_slice(&[JSONB_VERSION]);
        }
        out.extend_from_slice(self.as_str().as_bytes());
        Ok(IsNull::No)
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::JSON || *ty == Type::JSONB
    }

    to_sql_checked!();
}

impl<'a> FromSql<'a> for Payload {
    fn from_sql(ty: &Type, raw: &'a [u8]) -> Result<Self, BoxError> {
        let text = match (ty, raw.split_first()) {
            (ty, Some((&JSONB_VERSION, rest))) if *ty == Type::JSONB => rest,
            (ty, _) if *ty == Type::JSONB => return Err("unknown jsonb version".into()),
            _ => raw,
        };
        Ok(Payload::stored(std::str::from_utf8(text)?.to_owned())?)
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::JSON || *ty == Type::JSONB
    }
}

/// The one binary format of `jsonb` PostgreSQL has.
const JSONB_VERSION: u8 = 1;

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip<T: ToSql + for<'a> FromSql<'a> + PartialEq + std::fmt::Debug>(value: T, ty: &Type) {
        let mut out = BytesMut::new();
        assert!(matches!(value.to_sql_checked(ty, &mut out), Ok(IsNull::No)), "{value:?} as {ty}");
        assert_eq!(T::from_sql(ty, &out).unwrap(), value);
    }

    #[test]
    fn values_travel_as_their_labels() {
        round_trip(DeliveryId::generate(), &Type::TEXT);
        round_trip(Environment::Test, &Type::TEXT);
        round_trip(HttpMethod::Patch, &Type::VARCHAR);
        round_trip(DeliveryStatus::Retrying, &Type::TEXT);
        round_trip(ErrorKind::BlockedAddress, &Type::TEXT);
        round_trip(Scope::WebhooksRead, &Type::TEXT);
        round_trip(RetryPolicy::default(), &Type::INT8_ARRAY);
        let payload = Payload::stored(r#"{"b": -0, "a": 123456789012345678901234567890}"#.into()).unwrap();
        round_trip(payload.clone(), &Type::JSON);
        round_trip(payload, &Type::JSONB);
        let mut out = BytesMut::new();
        DeliveryStatus::Failed.to_sql(&Type::TEXT, &mut out).unwrap();
        assert_eq!(&out[..], b"failed");
    }

    #[test]
    fn the_enum_types_are_accepted_by_name_and_other_types_are_not() {
        let status = Type::new("delivery_status".into(), 90_001, postgres_types::Kind::Pseudo, "public".into());
        assert!(<DeliveryStatus as FromSql>::accepts(&status));
        assert!(!<ErrorKind as FromSql>::accepts(&status));
        assert!(!<DeliveryId as ToSql>::accepts(&Type::INT4));
    }

    #[test]
    fn an_unknown_label_or_a_broken_policy_is_an_error_not_a_default() {
        assert!(DeliveryStatus::from_sql(&Type::TEXT, b"lost").is_err());
        assert!(EventId::from_sql(&Type::TEXT, b"dlv_01j00000000000000000000000").is_err());
        let mut zero = BytesMut::new();
        vec![0_i64].to_sql(&Type::INT8_ARRAY, &mut zero).unwrap();
        assert!(RetryPolicy::from_sql(&Type::INT8_ARRAY, &zero).is_err());
    }
}
