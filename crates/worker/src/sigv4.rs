//! AWS Signature Version 4 for `aws_sigv4` credentials, with the official signer.

use std::collections::BTreeMap;
use std::time::SystemTime;

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;

/// What a SigV4 signature is made with.
pub struct SigV4<'a> {
    /// Access key id.
    pub access_key: &'a str,
    /// Secret access key.
    pub secret_key: &'a str,
    /// Region, e.g. `eu-west-1`.
    pub region: &'a str,
    /// Service, e.g. `execute-api`.
    pub service: &'a str,
}

/// The URL a SigV4 request is signed for and sent to: a literal `+` in the query
/// written as `%2B`. SigV4 reads a query as RFC 3986 does (`+` is a plus, and
/// receivers verify it so), but the signer decodes it as a form would (a space) and
/// signs `%20`; written `%2B`, both read a plus, which is what the URL meant to a SigV4
/// receiver in the first place.
pub fn url_to_sign(url: &str) -> std::borrow::Cow<'_, str> {
    match url.split_once('?') {
        Some((base, query)) if query.contains('+') => format!("{base}?{}", query.replace('+', "%2B")).into(),
        _ => url.into(),
    }
}

/// Signs the request as it will be sent and returns the headers to add
/// (`authorization`, `x-amz-date`, …). Every header in `headers` is signed.
pub fn sign_request(
    credential: &SigV4<'_>,
    method: &str,
    url: &str,
    headers: &BTreeMap<String, String>,
    body: &[u8],
    time: SystemTime,
) -> Result<Vec<(String, String)>, String> {
    let identity: Identity =
        Credentials::new(credential.access_key, credential.secret_key, None, None, "hookline-credential").into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(credential.region)
        .name(credential.service)
        .time(time)
        .settings(SigningSettings::default())
        .build()
        .map_err(|err| format!("AWS SigV4 parameters: {err}"))?
        .into();
    let request = SignableRequest::new(
        method,
        url,
        headers.iter().map(|(name, value)| (name.as_str(), value.as_str())),
        SignableBody::Bytes(body),
    )
    .map_err(|err| format!("AWS SigV4 request: {err}"))?;
    let (instructions, _signature) =
        sign(request, &params).map_err(|err| format!("AWS SigV4 signing: {err}"))?.into_parts();
    Ok(instructions.headers().map(|(name, value)| (name.to_ascii_lowercase(), value.to_owned())).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_plus_in_the_query_is_rewritten() {
        assert_eq!(url_to_sign("https://h.example/a+b?q=1+2&r=%2B"), "https://h.example/a+b?q=1%2B2&r=%2B");
        assert_eq!(url_to_sign("https://h.example/a?q=1%202"), "https://h.example/a?q=1%202");
        assert_eq!(url_to_sign("https://h.example/a+b"), "https://h.example/a+b");
    }
}
