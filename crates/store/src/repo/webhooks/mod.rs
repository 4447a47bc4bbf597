//! Webhooks and their endpoints: what changes them ([`changes`]), how the API shows them
//! ([`views`]), and what routers read of them ([`routing`]).

pub mod changes;
pub mod routing;
pub mod views;

pub use changes::{NewEndpoint, NewWebhook};
pub use routing::{RoutableCache, RoutableWebhook, RoutingScope};
