#![doc = include_str!("../README.md")]
#![allow(clippy::unwrap_used, missing_docs)]

mod receiver;
mod running;

pub use hookline_sandbox::broker::OwnBroker;
pub use hookline_sandbox::database::OwnDatabase;
pub use hookline_sandbox::{ApiServer, Sandbox as TestEnv, Services, eventually, spans};
pub use receiver::{Receiver, Recorded, Reply};
pub use running::Running;
