//! The stored copy of the event catalog.

use deadpool_postgres::Pool;
use hookline_core::Catalog;

use crate::error::{QueryContext as _, Result};

/// Writes the loaded catalog to `event_types`, so SQL and operators see names and
/// examples. Types removed from the file stay, as past events refer to them.
pub async fn sync(pool: &Pool, catalog: &Catalog) -> Result<()> {
    let mut codes = Vec::new();
    let mut components = Vec::new();
    let mut names = Vec::new();
    let mut descriptions = Vec::new();
    let mut examples = Vec::new();
    for event_type in catalog.iter() {
        codes.push(event_type.code.as_str());
        components.push(event_type.component.as_str());
        names.push(event_type.name.as_str());
        descriptions.push(event_type.description.as_str());
        examples.push(&event_type.example);
    }
    let client = pool.get().await?;
    client
        .execute(
            "INSERT INTO event_types (code, component, name, description, example)
             SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::jsonb[])
             ON CONFLICT (code) DO UPDATE SET component = excluded.component, name = excluded.name,
                 description = excluded.description, example = excluded.example, updated_at = now()
             WHERE (event_types.component, event_types.name, event_types.description, event_types.example)
                 IS DISTINCT FROM (excluded.component, excluded.name, excluded.description, excluded.example)",
            &[&codes, &components, &names, &descriptions, &examples],
        )
        .await
        .context("syncing the event catalog")?;
    Ok(())
}
