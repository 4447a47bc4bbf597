//! One delivery attempt: build the request, send it, read a bounded response, classify.

use std::collections::BTreeMap;
use std::time::{Instant, SystemTime};

use base64::Engine as _;
use chrono::Utc;
use hookline_core::credential::Credential;
use hookline_core::delivery::{DeliveredBody, ErrorKind, Trigger};
use hookline_core::lifecycle;
use hookline_core::receiver_auth::{
    HMAC_CLIENT_ID_HEADER, HMAC_SIGNATURE_HEADER, HMAC_TIMESTAMP_HEADER, hmac_sha256_signature,
};
use hookline_core::signing::{HEADER_ID, HEADER_SIGNATURE, HEADER_TIMESTAMP};
use hookline_store::repo::deliveries::AttemptRecord;
use hookline_store::repo::jobs::JobContext;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use tracing::Instrument as _;

use hookline_core::webhook::RESERVED_HEADERS;

use crate::client::literal_is_blocked;
use crate::sigv4::{SigV4, sign_request, url_to_sign};

/// What an attempt needs beyond the job context.
pub struct AttemptSettings<'a> {
    /// Shared client.
    pub client: &'a reqwest::Client,
    /// Response body bytes kept.
    pub max_response_body: usize,
    /// Which addresses may be reached.
    pub address_policy: &'a hookline_core::address::AddressPolicy,
    /// Whether plain http:// may be used.
    pub allow_http: bool,
}

/// Makes attempt `attempt_number` of the delivery and describes what happened.
pub async fn perform(
    context: &JobContext,
    event_name: &str,
    attempt_number: u32,
    trigger: Trigger,
    settings: &AttemptSettings<'_>,
) -> AttemptRecord {
    let message_id = context.event_id.as_str();
    let body = DeliveredBody::new(
        message_id,
        context.organization_id.as_str(),
        &context.event_type,
        event_name,
        context.occurred_at,
        context.environment,
        &context.data,
    )
    .to_bytes();
    let started_at = Utc::now();
    // The request's own client span, so a receiver that joins the trace (from
    // `traceparent`) hangs its work under this very attempt.
    let method = context.target.method.as_str();
    let request_span = tracing::info_span!(
        "webhook request",
        otel.name = %method,
        otel.kind = "client",
        http.request.method = %method,
        server.address = tracing::field::Empty,
        http.response.status_code = tracing::field::Empty,
        error.type = tracing::field::Empty,
    );
    let mut record = AttemptRecord {
        delivery_id: context.delivery_id.clone(),
        attempt_number,
        trigger,
        started_at,
        duration_ms: 0,
        request_method: method.to_owned(),
        request_url: context.target.url.clone(),
        request_headers: BTreeMap::new(),
        status_code: None,
        response_headers: None,
        response_body: None,
        response_body_truncated: false,
        error_kind: None,
        error_message: None,
    };
    let clock = Instant::now();
    let headers = request_headers(context, &body, started_at, &request_span, &mut record);
    let outcome = match headers {
        Ok(headers) => {
            send(context, &record.request_url, headers, body, settings).instrument(request_span.clone()).await
        }
        Err(message) => Err((ErrorKind::InvalidEndpoint, message)),
    };
    record.duration_ms = u32::try_from(clock.elapsed().as_millis()).unwrap_or(u32::MAX);
    match &outcome {
        Ok(response) => request_span.record("http.response.status_code", response.status),
        Err((kind, _)) => request_span.record("error.type", kind.as_str()),
    };
    describe(&mut record, outcome);
    record
}

/// The headers of an attempt's request: the body's type, the Standard Webhooks
/// signature (with the previous secret's too, during a rotation's overlap), the trace
/// context, the endpoint's own headers and its credential's. `record` receives them
/// as the log shows them, secrets redacted, and the URL to send to (which a credential
/// may write differently, never to another place).
fn request_headers(
    context: &JobContext,
    body: &[u8],
    started_at: chrono::DateTime<Utc>,
    request_span: &tracing::Span,
    record: &mut AttemptRecord,
) -> Result<BTreeMap<String, String>, String> {
    let message_id = context.event_id.as_str();
    let timestamp = started_at.timestamp();
    let sign = |secret: &hookline_core::signing::SigningSecret| {
        secret.sign(message_id, timestamp, body).map_err(|err| err.to_string())
    };
    let mut signature = sign(&context.target.signing_secret)?;
    if let Some(previous) = context.target.previous_signing_secret(started_at) {
        signature.push(' ');
        signature.push_str(&sign(previous)?);
    }
    let mut headers = BTreeMap::new();
    headers.insert("content-type".to_owned(), "application/json".to_owned());
    headers.insert(HEADER_ID.to_owned(), message_id.to_owned());
    headers.insert(HEADER_TIMESTAMP.to_owned(), timestamp.to_string());
    headers.insert(HEADER_SIGNATURE.to_owned(), signature);
    headers.extend(hookline_telemetry::propagation::trace_headers(request_span));
    for (name, value) in &context.target.headers {
        let lower = name.to_ascii_lowercase();
        if !RESERVED_HEADERS.contains(&lower.as_str()) {
            headers.insert(lower, value.clone());
        }
    }
    record.request_headers.clone_from(&headers);
    authenticate(context, body, &mut headers, record)?;
    Ok(headers)
}

/// Fills in what the receiver answered, or why there was no answer.
fn describe(record: &mut AttemptRecord, outcome: Result<Response, (ErrorKind, String)>) {
    match outcome {
        Ok(response) => {
            record.status_code = Some(response.status);
            record.response_headers = Some(response.headers);
            record.response_body = Some(response.body);
            record.response_body_truncated = response.truncated;
            if !lifecycle::is_success(response.status) {
                record.error_kind = Some(ErrorKind::HttpStatus);
                record.error_message = Some(match response.status {
                    410 => "receiver answered 410 Gone; the webhook was deactivated".to_owned(),
                    status => format!("receiver answered {status}"),
                });
            }
        }
        Err((kind, message)) => {
            record.error_kind = Some(kind);
            record.error_message = Some(message);
        }
    }
}

/// Adds the endpoint credential's headers for the event's organisation, recording the
/// secret ones redacted. A credential that cannot be used fails the attempt rather than
/// let it go out unauthenticated.
fn authenticate(
    context: &JobContext,
    body: &[u8],
    headers: &mut BTreeMap<String, String>,
    record: &mut AttemptRecord,
) -> Result<(), String> {
    let recorded = &mut record.request_headers;
    let Some(values) = &context.target.credential else { return Ok(()) };
    let values = values.as_ref().ok_or("the endpoint's credential no longer exists")?;
    // The API checks this on every change; checked again here, so no path around it
    // (a row written another way, a rule tightened since) sends a credential elsewhere.
    values.may_be_sent_to(&context.target.url)?;
    let credential = values.for_organization(context.organization_id.as_str()).ok_or_else(|| {
        format!("the credential has no values for organisation {} and no default", context.organization_id)
    })?;
    let mut secret_headers = Vec::new();
    match credential {
        Credential::None => {}
        Credential::Basic { username, password } => {
            let token = base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"));
            secret_headers.push(("authorization".to_owned(), format!("Basic {token}")));
        }
        Credential::Token { key, value } => secret_headers.push((key.clone(), value.clone())),
        Credential::Headers { headers: extra } => {
            secret_headers.extend(extra.iter().map(|(k, v)| (k.clone(), v.clone())))
        }
        Credential::HmacSha256 { client_id, client_secret } => {
            let timestamp = chrono::Utc::now().timestamp();
            secret_headers.push((HMAC_CLIENT_ID_HEADER.to_owned(), client_id.clone()));
            secret_headers.push((HMAC_TIMESTAMP_HEADER.to_owned(), timestamp.to_string()));
            secret_headers
                .push((HMAC_SIGNATURE_HEADER.to_owned(), hmac_sha256_signature(client_secret, timestamp, body)));
        }
        Credential::AwsSigv4 { access_key, secret_key, region, service, .. } => {
            let credential = SigV4 { access_key, secret_key, region, service };
            let url = url_to_sign(&context.target.url).into_owned();
            let signed =
                sign_request(&credential, context.target.method.as_str(), &url, headers, body, SystemTime::now())?;
            record.request_url = url;
            for (name, value) in signed {
                if name == "authorization" || name == "x-amz-security-token" {
                    secret_headers.push((name, value));
                } else {
                    // The date and content hash are not secret; keep them readable in the log.
                    recorded.insert(name.clone(), value.clone());
                    headers.insert(name, value);
                }
            }
        }
    }
    for (name, value) in secret_headers {
        let name = name.to_ascii_lowercase();
        if RESERVED_HEADERS.contains(&name.as_str()) && name != "authorization" {
            continue;
        }
        recorded.insert(name.clone(), "[redacted]".to_owned());
        headers.insert(name, value);
    }
    Ok(())
}

struct Response {
    status: u16,
    headers: BTreeMap<String, String>,
    body: String,
    truncated: bool,
}

async fn send(
    context: &JobContext,
    url: &str,
    headers: BTreeMap<String, String>,
    body: Vec<u8>,
    settings: &AttemptSettings<'_>,
) -> Result<Response, (ErrorKind, String)> {
    let url = reqwest::Url::parse(url)
        .map_err(|err| (ErrorKind::InvalidEndpoint, format!("endpoint URL is not valid: {err}")))?;
    match url.scheme() {
        "https" => {}
        "http" if settings.allow_http || context.environment == hookline_core::Environment::Test => {}
        scheme => return Err((ErrorKind::InvalidEndpoint, format!("scheme `{scheme}` is not allowed"))),
    }
    // `send` runs inside the attempt's client span; the URL is parsed once, here.
    tracing::Span::current().record("server.address", url.host_str().unwrap_or_default());
    if literal_is_blocked(&url, settings.address_policy) {
        return Err((ErrorKind::BlockedAddress, format!("{} is not a public address", url.host_str().unwrap_or(""))));
    }
    let mut header_map = HeaderMap::with_capacity(headers.len());
    for (name, value) in &headers {
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| (ErrorKind::InvalidEndpoint, format!("header name `{name}` is not valid")))?;
        let value = HeaderValue::from_str(value)
            .map_err(|_| (ErrorKind::InvalidEndpoint, format!("header `{name}` has a value that is not valid")))?;
        header_map.insert(name, value);
    }
    let method =
        reqwest::Method::from_bytes(context.target.method.as_str().as_bytes()).unwrap_or(reqwest::Method::POST);
    let mut response = settings
        .client
        .request(method, url)
        .headers(header_map)
        .body(body)
        .send()
        .await
        .map_err(|err| classify(&err))?;
    let status = response.status().as_u16();
    let response_headers = response
        .headers()
        .iter()
        .map(|(name, value)| (name.as_str().to_owned(), String::from_utf8_lossy(value.as_bytes()).into_owned()))
        .collect();
    let mut kept = Vec::new();
    let mut truncated = false;
    // Read only what is kept; a receiver streaming forever is cut off here (and by the
    // client's overall timeout), never buffered whole.
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                let room = settings.max_response_body.saturating_sub(kept.len());
                kept.extend_from_slice(&chunk[..chunk.len().min(room)]);
                if chunk.len() > room {
                    truncated = true;
                    break;
                }
            }
            Ok(None) => break,
            // The status is what decides the attempt; a body cut short is recorded as such.
            Err(_) => {
                truncated = true;
                break;
            }
        }
    }
    Ok(Response { status, headers: response_headers, body: recordable(&kept), truncated })
}

/// A receiver's bytes as text PostgreSQL can store: invalid UTF-8 and NUL (which no
/// `text` column holds) become U+FFFD, so whatever a receiver answers, its attempt is
/// recorded and settles.
fn recordable(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    if text.contains('\0') { text.replace('\0', "\u{fffd}") } else { text.into_owned() }
}

/// Classifies a transport failure by the typed errors in its chain of causes.
fn classify(err: &reqwest::Error) -> (ErrorKind, String) {
    (crate::client::classify(err), error_chain(err))
}

fn error_chain(err: &dyn std::error::Error) -> String {
    let mut message = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}
