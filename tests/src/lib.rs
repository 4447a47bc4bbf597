#![doc = include_str!("../README.md")]
#![allow(clippy::unwrap_used, missing_docs)]

mod receiver;

pub use hookline_sandbox::{ApiServer, Sandbox as TestEnv, Services, eventually, spans};
pub use receiver::{Receiver, Recorded, Reply};
