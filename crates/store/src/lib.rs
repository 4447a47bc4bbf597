#![doc = include_str!("../README.md")]

pub mod batch;
mod error;
mod pool;
pub mod repo;

pub use deadpool_postgres::Pool;
pub use error::{Error, Result};
pub use pool::{connect, migrate, open};
