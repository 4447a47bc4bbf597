//! One module per table group. Functions take the pool and typed values (ids, states,
//! policies bind and read as themselves, through hookline-core's `ToSql`/`FromSql`),
//! read columns by name, and return typed rows; SQL stays here.

pub mod api_keys;
pub mod catalog;
pub mod circuits;
pub mod credentials;
pub mod deliveries;
pub mod delivery_log;
pub mod events;
pub mod idempotency;
pub mod jobs;
pub mod key_check;
pub mod leases;
pub mod organizations;
pub mod retention;
pub mod webhooks;
