//! Idempotency keys of management POSTs: who asked first, and what they were answered.

use std::time::Duration;

use deadpool_postgres::Pool;
use hookline_core::crypto::SecretBox;
use hookline_core::ids::OrganizationId;

use crate::error::{QueryContext as _, Result};

/// How long a key's answer is replayed.
pub const KEPT: Duration = Duration::from_secs(24 * 3600);

/// A first request that has not been answered for this long was abandoned (its API
/// process died): a retry may take the key over.
pub const ABANDONED: Duration = Duration::from_secs(60);

/// What a key already holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// The key is this request's now: answer it, then [`record`] the answer.
    Mine,
    /// The key was used for a different request.
    OtherRequest,
    /// The first request with this key is still being answered.
    InFlight,
    /// The first request's answer, to replay.
    Answered {
        /// HTTP status.
        status: u16,
        /// `Content-Type`, if the answer had one.
        content_type: Option<String>,
        /// The body.
        body: Vec<u8>,
    },
}

/// Claims `key` for a request hashing to `request_hash`, or says what holds it. A key
/// older than [`KEPT`], or abandoned in flight for [`ABANDONED`], is taken over.
pub async fn claim(
    pool: &Pool,
    secrets: &SecretBox,
    organization: &OrganizationId,
    key: &str,
    request_hash: &[u8],
) -> Result<Claim> {
    let client = pool.get().await?;
    let taken = client
        .query_opt(
            "INSERT INTO idempotency_keys (organization_id, key, request_hash) VALUES ($1, $2, $3)
             ON CONFLICT (organization_id, key) DO UPDATE
                 SET request_hash = EXCLUDED.request_hash, status = NULL, content_type = NULL,
                     sealed_body = NULL, created_at = now()
                 WHERE idempotency_keys.created_at < now() - make_interval(secs => $4)
                    OR (idempotency_keys.status IS NULL
                        AND idempotency_keys.created_at < now() - make_interval(secs => $5))
             RETURNING 1",
            &[organization, &key, &request_hash, &(KEPT.as_secs_f64()), &(ABANDONED.as_secs_f64())],
        )
        .await
        .context("claiming an idempotency key")?;
    if taken.is_some() {
        return Ok(Claim::Mine);
    }
    let row = client
        .query_one(
            "SELECT request_hash, status, content_type, sealed_body FROM idempotency_keys
             WHERE organization_id = $1 AND key = $2",
            &[organization, &key],
        )
        .await
        .context("reading an idempotency key")?;
    let stored_hash: Vec<u8> = row.try_get("request_hash")?;
    if stored_hash != request_hash {
        return Ok(Claim::OtherRequest);
    }
    let Some(status) = row.try_get::<_, Option<i16>>("status")? else { return Ok(Claim::InFlight) };
    let sealed: Vec<u8> = row.try_get::<_, Option<Vec<u8>>>("sealed_body")?.unwrap_or_default();
    Ok(Claim::Answered {
        status: u16::try_from(status).unwrap_or(500),
        content_type: row.try_get("content_type")?,
        body: if sealed.is_empty() { Vec::new() } else { secrets.open(&sealed)? },
    })
}

/// Records the answer to the request that claimed `key`.
pub async fn record(
    pool: &Pool,
    secrets: &SecretBox,
    organization: &OrganizationId,
    key: &str,
    status: u16,
    content_type: Option<&str>,
    body: &[u8],
) -> Result<()> {
    let client = pool.get().await?;
    let status = i16::try_from(status).unwrap_or(i16::MAX);
    client
        .execute(
            "UPDATE idempotency_keys SET status = $3, content_type = $4, sealed_body = $5
             WHERE organization_id = $1 AND key = $2",
            &[organization, &key, &status, &content_type, &secrets.seal(body)],
        )
        .await
        .context("recording an idempotent answer")?;
    Ok(())
}

/// Gives `key` up (the request failed in a way a retry may not: a 5xx), so a retry
/// runs again.
pub async fn release(pool: &Pool, organization: &OrganizationId, key: &str) -> Result<()> {
    let client = pool.get().await?;
    client
        .execute("DELETE FROM idempotency_keys WHERE organization_id = $1 AND key = $2", &[organization, &key])
        .await
        .context("releasing an idempotency key")?;
    Ok(())
}
