//! The outbound HTTP client: connection reuse, no redirects, and the address guard.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hookline_core::address::AddressPolicy;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// Every address a name resolved to is one deliveries may not reach; carried as the resolver's error so
/// the attempt can be classified `blocked_address`.
#[derive(Debug, thiserror::Error)]
#[error("`{host}` resolves only to non-public addresses ({addresses}); deliveries to them are not allowed")]
pub struct BlockedAddress {
    /// The host name.
    pub host: String,
    /// What it resolved to.
    pub addresses: String,
}

/// Resolves with the system resolver and keeps only public addresses, so the address
/// that is checked is the address that is connected to (no DNS-rebinding gap).
#[derive(Debug, Clone)]
struct GuardedResolver(std::sync::Arc<AddressPolicy>);

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.0.clone();
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let resolved: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let public: Vec<SocketAddr> = resolved.iter().copied().filter(|a| policy.permits(a.ip())).collect();
            if public.is_empty() {
                let addresses = resolved.iter().map(|a| a.ip().to_string()).collect::<Vec<_>>().join(", ");
                return Err(Box::new(BlockedAddress { host, addresses }) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(public.into_iter()) as Addrs)
        })
    }
}

/// Builds the shared client. One client per worker process keeps connections to each
/// receiver alive across deliveries.
pub fn build(timeout: Duration, policy: &AddressPolicy, concurrency: usize) -> reqwest::Result<reqwest::Client> {
    let mut builder = reqwest::Client::builder()
        .user_agent(concat!("hookline/", env!("CARGO_PKG_VERSION"), " (+webhooks)"))
        .redirect(reqwest::redirect::Policy::none())
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(10)))
        .pool_max_idle_per_host(concurrency.min(64))
        .pool_idle_timeout(Duration::from_secs(90));
    if !policy.allow_private_networks {
        builder = builder.dns_resolver(std::sync::Arc::new(GuardedResolver(std::sync::Arc::new(policy.clone()))));
    }
    builder.build()
}

/// For URLs whose host is an IP literal (never passed to the resolver): whether the
/// guard refuses it.
pub fn literal_is_blocked(url: &reqwest::Url, policy: &AddressPolicy) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => !policy.permits(IpAddr::V4(ip)),
        Some(url::Host::Ipv6(ip)) => !policy.permits(IpAddr::V6(ip)),
        _ => false,
    }
}
