#![doc = include_str!("../README.md")]
#![allow(clippy::unwrap_used, missing_docs)]

mod env;
mod receiver;

pub use env::{ApiServer, Services, TestEnv, eventually};
pub use receiver::{Receiver, Recorded, Reply};
