//! Detecting a wrong `secrets.key` at start-up.

use deadpool_postgres::Pool;
use hookline_core::crypto::SecretBox;

use crate::error::{Error, QueryContext as _, Result};

const PLAINTEXT: &[u8] = b"hookline secrets.key check";

/// Opens the value sealed on the first start with `secrets`, sealing it if this is the
/// first start. Fails when the key differs from the one the stored secrets were sealed
/// with.
pub async fn verify(pool: &Pool, secrets: &SecretBox) -> Result<()> {
    let client = pool.get().await?;
    client
        .execute(
            "INSERT INTO key_check (id, sealed) VALUES (1, $1) ON CONFLICT (id) DO NOTHING",
            &[&secrets.seal(PLAINTEXT)],
        )
        .await
        .context("recording the key check")?;
    let sealed: Vec<u8> = client
        .query_one("SELECT sealed FROM key_check WHERE id = 1", &[])
        .await
        .context("loading the key check")?
        .try_get("sealed")?;
    match secrets.open(&sealed) {
        Ok(plaintext) if plaintext == PLAINTEXT => Ok(()),
        _ => Err(Error::Config("secrets.key is not the key this database's secrets were encrypted with".into())),
    }
}
