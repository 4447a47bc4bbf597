//! The outbound HTTP client: connection reuse, no redirects, and the address guard.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hookline_core::address::AddressPolicy;
use hookline_core::delivery::ErrorKind;
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

/// A host name that did not resolve; carried as the resolver's error so the attempt can
/// be classified `dns`.
#[derive(Debug, thiserror::Error)]
#[error("`{host}` did not resolve: {source}")]
pub struct Unresolved {
    /// The host name.
    pub host: String,
    /// The system resolver's answer.
    pub source: std::io::Error,
}

/// Resolves with the system resolver and keeps only the addresses the policy permits, so
/// the address that is checked is the address that is connected to (no DNS-rebinding
/// gap). Used whatever the policy, so a lookup's failure is always an [`Unresolved`].
/// The configured egress proxy's own name is the operator's choice, not a customer's,
/// and is resolved unfiltered (it is usually on a private network).
#[derive(Debug, Clone)]
struct GuardedResolver {
    policy: std::sync::Arc<AddressPolicy>,
    proxy_host: Option<String>,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.policy.clone();
        let exempt = self.proxy_host.as_deref() == Some(name.as_str());
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let looked_up: std::io::Result<Vec<SocketAddr>> =
                tokio::net::lookup_host((host.as_str(), 0)).await.map(Iterator::collect);
            let resolved = match looked_up {
                Ok(addresses) => addresses,
                Err(source) => {
                    return Err(Box::new(Unresolved { host, source }) as Box<dyn std::error::Error + Send + Sync>);
                }
            };
            let public: Vec<SocketAddr> =
                resolved.iter().copied().filter(|a| exempt || policy.permits(a.ip())).collect();
            if public.is_empty() {
                let addresses = resolved.iter().map(|a| a.ip().to_string()).collect::<Vec<_>>().join(", ");
                return Err(Box::new(BlockedAddress { host, addresses }) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(public.into_iter()) as Addrs)
        })
    }
}

/// Builds the shared client. One client per worker process keeps connections to each
/// receiver alive across deliveries. Requests go through `proxy` when one is configured
/// (`delivery.egress_proxy`), and never through the environment's.
pub fn build(
    timeout: Duration,
    policy: &AddressPolicy,
    concurrency: usize,
    proxy: Option<&url::Url>,
) -> reqwest::Result<reqwest::Client> {
    let mut builder = reqwest::Client::builder()
        .user_agent(concat!("hookline/", env!("CARGO_PKG_VERSION"), " (+webhooks)"))
        .redirect(reqwest::redirect::Policy::none())
        // Never the environment's proxy (`HTTP_PROXY` and the like): through a proxy,
        // the guarded resolver would check only the proxy's address, and every host
        // name would be fetched unchecked. An explicit one is the operator's decision.
        .no_proxy();
    if let Some(proxy) = proxy {
        builder = builder.proxy(reqwest::Proxy::all(proxy.as_str())?);
    }
    let resolver = GuardedResolver {
        policy: std::sync::Arc::new(policy.clone()),
        proxy_host: proxy.and_then(url::Url::host_str).map(str::to_owned),
    };
    builder
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(10)))
        .pool_max_idle_per_host(concurrency.min(64))
        .pool_idle_timeout(Duration::from_secs(90))
        .dns_resolver(std::sync::Arc::new(resolver))
        .build()
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

/// What kind of transport failure `err` is, from the typed errors in its chain of
/// causes: the guard's [`BlockedAddress`], the resolver's [`Unresolved`], a TLS error
/// (rustls's own, which the TLS stream wraps in an I/O error), then reqwest's own
/// timeout and connect classes.
pub fn classify(err: &reqwest::Error) -> ErrorKind {
    let mut blocked = false;
    let mut unresolved = false;
    let mut tls = false;
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(current) = cause {
        blocked |= current.is::<BlockedAddress>();
        unresolved |= current.is::<Unresolved>();
        tls |= current.is::<rustls::Error>();
        // An I/O error's `source` skips the error it wraps (the TLS stream wraps rustls's
        // error in one, and that in another): go into the wrapped error instead.
        let wrapped = current.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref());
        cause = match wrapped {
            Some(wrapped) => Some(wrapped as &(dyn std::error::Error + 'static)),
            None => current.source(),
        };
    }
    if blocked {
        ErrorKind::BlockedAddress
    } else if err.is_timeout() {
        ErrorKind::Timeout
    } else if unresolved {
        ErrorKind::Dns
    } else if tls {
        ErrorKind::Tls
    } else if err.is_connect() {
        ErrorKind::Connect
    } else {
        ErrorKind::Other
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncWriteExt as _;

    use super::*;

    /// A loopback listener that answers every connection with `reply` (and then
    /// closes it), or holds it open saying nothing when `reply` is `None`.
    async fn listener(reply: Option<&'static [u8]>) -> u16 {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((mut stream, _)) = listener.accept().await {
                match reply {
                    Some(reply) => {
                        let _ = stream.write_all(reply).await;
                    }
                    None => held.push(stream),
                }
            }
        });
        port
    }

    async fn failure(client: &reqwest::Client, url: String) -> ErrorKind {
        classify(&client.get(url).send().await.expect_err("the request fails"))
    }

    #[tokio::test]
    async fn failures_are_told_apart_by_the_typed_errors_among_their_causes() {
        let open = AddressPolicy { allow_private_networks: true, allowed_networks: Vec::new() };
        let client = build(Duration::from_millis(500), &open, 4, None).unwrap();
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        assert_eq!(failure(&client, format!("http://127.0.0.1:{closed}/")).await, ErrorKind::Connect);
        assert_eq!(failure(&client, "http://nowhere.invalid/".into()).await, ErrorKind::Dns);
        let plain = listener(Some(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")).await;
        assert_eq!(failure(&client, format!("https://127.0.0.1:{plain}/")).await, ErrorKind::Tls);
        let silent = listener(None).await;
        assert_eq!(failure(&client, format!("http://127.0.0.1:{silent}/")).await, ErrorKind::Timeout);
        let guarded = build(Duration::from_millis(500), &AddressPolicy::default(), 4, None).unwrap();
        assert_eq!(failure(&guarded, format!("http://localhost:{silent}/")).await, ErrorKind::BlockedAddress);
    }
}
