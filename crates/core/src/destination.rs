//! Where a credential may be sent. A credential's values go wherever the endpoints that
//! use it point, so an admin can bind them to hosts: `allowed_hosts` (exact names, or
//! `*.example.com` for the names under one), and for `aws_sigv4`, the `base_endpoint`
//! the signature is scoped to (the URL must be under it). The API checks every endpoint
//! on every change of a URL or of the credential, and the worker checks again before
//! each request: one rule, [`CredentialValues::may_be_sent_to`].

use crate::credential::{Credential, CredentialValues};
use crate::limits;

/// A host pattern an admin may give: a host name or IP literal, or `*.` and a name.
pub fn check_pattern(pattern: &str) -> Result<(), String> {
    let name = pattern.strip_prefix("*.").unwrap_or(pattern);
    let valid = !name.is_empty()
        && name.len() <= limits::HOST
        && name == name.to_ascii_lowercase()
        && url::Host::parse(name).is_ok()
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b));
    if valid {
        Ok(())
    } else {
        Err(format!("`{pattern}` is not a lower-case host name, IP address or `*.` followed by a host name"))
    }
}

fn host_matches(pattern: &str, host: &str) -> bool {
    match pattern.strip_prefix("*.") {
        Some(domain) => host.strip_suffix(domain).is_some_and(|sub| sub.len() > 1 && sub.ends_with('.')),
        None => pattern == host,
    }
}

/// Whether `url` is under `base`: same scheme, host and port, and a path that is the
/// base's or below it (`/prod` covers `/prod` and `/prod/hooks`, not `/production`).
fn is_under(url: &url::Url, base: &url::Url) -> bool {
    let base_path = base.path().trim_end_matches('/');
    let path = url.path();
    url.scheme() == base.scheme()
        && url.host_str() == base.host_str()
        && url.port_or_known_default() == base.port_or_known_default()
        && path.strip_prefix(base_path).is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// A SigV4 `base_endpoint` as given: an http(s) URL with a host.
pub fn parse_base_endpoint(text: &str) -> Result<url::Url, String> {
    url::Url::parse(text)
        .ok()
        .filter(|url| matches!(url.scheme(), "https" | "http") && url.host_str().is_some())
        .ok_or_else(|| {
            format!("`{text}` is not an http(s) URL such as https://abc.execute-api.eu-west-1.amazonaws.com/prod")
        })
}

impl CredentialValues {
    /// Whether requests to `url` may carry this credential: its host is one the
    /// credential allows (any, when it names none), and the URL is under the
    /// `base_endpoint` of every SigV4 value set. Says why not.
    pub fn may_be_sent_to(&self, url: &str) -> Result<(), String> {
        let parsed = url::Url::parse(url).map_err(|err| format!("`{url}` is not a URL: {err}"))?;
        let host = parsed.host_str().unwrap_or_default();
        if !self.allowed_hosts.is_empty() && !self.allowed_hosts.iter().any(|pattern| host_matches(pattern, host)) {
            return Err(format!(
                "the credential may be sent only to {}, not to `{host}`",
                self.allowed_hosts.join(", ")
            ));
        }
        for set in self.default.iter().chain(self.per_organization.values()) {
            if let Credential::AwsSigv4 { base_endpoint, .. } = set {
                let base = parse_base_endpoint(base_endpoint)?;
                if !is_under(&parsed, &base) {
                    return Err(format!("the credential signs for `{base_endpoint}`; `{url}` is not under it"));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn values(allowed_hosts: &[&str], sets: Vec<Credential>) -> CredentialValues {
        let mut sets = sets.into_iter();
        CredentialValues {
            default: sets.next(),
            per_organization: sets.enumerate().map(|(i, set)| (format!("org_{i}"), set)).collect::<BTreeMap<_, _>>(),
            allowed_hosts: allowed_hosts.iter().map(|h| (*h).to_owned()).collect(),
        }
    }

    fn sigv4(base_endpoint: &str) -> Credential {
        Credential::AwsSigv4 {
            access_key: "AK".into(),
            secret_key: "SK".into(),
            region: "eu-west-1".into(),
            service: "execute-api".into(),
            base_endpoint: base_endpoint.into(),
        }
    }

    #[test]
    fn allowed_hosts_bind_a_credential_to_its_hosts() {
        let token = Credential::Token { key: "X-K".into(), value: "v".into() };
        let bound = values(&["api.example.com", "*.hooks.example.net"], vec![token.clone()]);
        for url in ["https://api.example.com/h", "https://a.hooks.example.net/x", "https://b.a.hooks.example.net/"] {
            assert_eq!(bound.may_be_sent_to(url), Ok(()), "{url}");
        }
        for url in [
            "https://attacker.example/h",
            "https://api.example.com.attacker.example/h",
            "https://hooks.example.net/h",
            "https://xhooks.example.net/h",
            "https://127.0.0.1/h",
        ] {
            assert!(bound.may_be_sent_to(url).is_err(), "{url}");
        }
        assert_eq!(values(&[], vec![token]).may_be_sent_to("https://anywhere.example/"), Ok(()));
    }

    #[test]
    fn a_sigv4_credential_goes_only_under_its_base_endpoint() {
        let aws = values(&[], vec![sigv4("https://abc.execute-api.eu-west-1.amazonaws.com/prod")]);
        let base = "https://abc.execute-api.eu-west-1.amazonaws.com";
        for url in [format!("{base}/prod"), format!("{base}/prod/hooks?x=1"), format!("{base}:443/prod/")] {
            assert_eq!(aws.may_be_sent_to(&url), Ok(()), "{url}");
        }
        for url in [
            format!("{base}/production"),
            format!("{base}/dev/hooks"),
            "http://abc.execute-api.eu-west-1.amazonaws.com/prod".to_owned(),
            format!("{base}:8443/prod"),
            "https://attacker.example/prod".to_owned(),
        ] {
            assert!(aws.may_be_sent_to(&url).is_err(), "{url}");
        }
        // Every value set binds: an organisation's set cannot widen the default's.
        let two = values(&[], vec![sigv4("https://a.example.com/"), sigv4("https://b.example.com/")]);
        assert!(two.may_be_sent_to("https://a.example.com/h").is_err());
    }

    #[test]
    fn patterns_are_host_names() {
        for good in ["api.example.com", "*.example.com", "10.0.0.1", "[::1]", "localhost"] {
            assert_eq!(check_pattern(good), Ok(()), "{good}");
        }
        for bad in ["", "*.", "API.example.com", "https://api.example.com", "api.example.com/x", "a b", "*"] {
            assert!(check_pattern(bad).is_err(), "{bad}");
        }
    }
}
