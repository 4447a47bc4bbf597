#![doc = include_str!("../README.md")]

pub mod batch;
mod error;
mod start;

pub use error::{Error, Result};
pub use start::Service;
