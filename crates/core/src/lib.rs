#![doc = include_str!("../README.md")]

/// Declares an enum of names: each variant has one stable name (its strum and serde
/// spelling, set by the attributes given), which is how it is stored, sent and shown,
/// read back with `FromStr` and written with `as_str`. One list of derives for every
/// such enum.
macro_rules! named_enum {
    ($(#[$meta:meta])* $vis:vis enum $name:ident $body:tt) => {
        #[derive(
            Debug,
            Clone,
            Copy,
            PartialEq,
            Eq,
            Hash,
            serde::Serialize,
            serde::Deserialize,
            strum::IntoStaticStr,
            strum::EnumString,
        )]
        $(#[$meta])*
        $vis enum $name $body

        impl $name {
            /// The name stored, sent and shown.
            pub fn as_str(self) -> &'static str {
                self.into()
            }
        }
    };
}

pub mod address;
pub mod apikey;
pub mod backoff;
pub mod catalog;
pub mod circuit;
pub mod credential;
pub mod crypto;
pub mod delivery;
pub mod destination;
pub mod envelope;
pub mod environment;
pub mod ids;
pub mod lifecycle;
pub mod limits;
pub mod payload;
#[cfg(feature = "postgres")]
mod pg;
pub mod receiver_auth;
pub mod retry;
pub mod signing;
pub mod webhook;

pub use catalog::{Catalog, EventType};
pub use envelope::{RejectReason, Rejection, UpstreamEvent};
pub use environment::Environment;
pub use retry::RetryPolicy;
