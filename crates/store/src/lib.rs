#![doc = include_str!("../README.md")]

pub mod config_watch;
mod error;
mod pool;
pub mod repo;
mod rows;

pub use config_watch::{ConfigCache, ConfigWatch};
pub use deadpool_postgres::Pool;
pub use error::{Error, Result};
pub use pool::{OWN_TYPES, connect, migrate, open};
