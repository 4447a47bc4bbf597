#![doc = include_str!("../README.md")]

pub mod address;
pub mod apikey;
pub mod catalog;
pub mod credential;
pub mod crypto;
pub mod delivery;
pub mod envelope;
pub mod environment;
pub mod ids;
pub mod lifecycle;
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
