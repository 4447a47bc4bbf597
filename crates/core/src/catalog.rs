//! The event catalog: every event type upstream applications may publish.

use std::collections::BTreeMap;

/// The catalog shipped with hookline; a deployment may load its own file instead.
pub const DEFAULT_CATALOG: &str = include_str!("../../../config/event-types.toml");

/// One kind of event, e.g. `job.created`.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct EventType {
    /// Machine code, `<component>.<action>`: what publishers send as `type`.
    pub code: String,
    /// The part of the code before the first dot; webhooks may select a whole component.
    pub component: String,
    /// Human name, sent to receivers as `eventName`.
    pub name: String,
    /// What happened, for people choosing events.
    pub description: String,
    /// A representative payload, used for test deliveries and documentation.
    pub example: serde_json::Value,
}

/// A catalog file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// The file is not valid TOML of the expected shape.
    #[error("event catalog is not valid: {0}")]
    Parse(#[from] toml::de::Error),
    /// A code is not `<component>.<action>` in lowercase letters, digits and `_`.
    #[error("event catalog: `{0}` is not a valid event code (expected `component.action`)")]
    InvalidCode(String),
    /// The same code appears twice.
    #[error("event catalog: `{0}` is listed twice")]
    Duplicate(String),
}

#[derive(serde::Deserialize)]
struct CatalogFile {
    event_types: Vec<CatalogEntry>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct CatalogEntry {
    code: String,
    name: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    example: Option<toml::Value>,
}

/// The set of known event types, looked up by code.
#[derive(Debug, Clone)]
pub struct Catalog {
    types: BTreeMap<String, EventType>,
}

/// Whether `code` has the `component.action` shape every event code must have.
pub fn is_valid_code(code: &str) -> bool {
    let valid_part = |part: &str| {
        !part.is_empty() && part.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    };
    match code.split_once('.') {
        Some((component, action)) => valid_part(component) && action.split('.').all(valid_part),
        None => false,
    }
}

impl Catalog {
    /// The catalog shipped with hookline.
    pub fn builtin() -> Self {
        Self::from_toml(DEFAULT_CATALOG).expect("the shipped catalog is valid (checked by a unit test)")
    }

    /// Parses a catalog file.
    pub fn from_toml(text: &str) -> Result<Self, CatalogError> {
        let file: CatalogFile = toml::from_str(text)?;
        let mut types = BTreeMap::new();
        for entry in file.event_types {
            if !is_valid_code(&entry.code) {
                return Err(CatalogError::InvalidCode(entry.code));
            }
            let component = entry.code.split('.').next().unwrap_or_default().to_owned();
            let example = match entry.example {
                Some(value) => serde_json::to_value(value).unwrap_or_default(),
                None => serde_json::json!({}),
            };
            let event_type = EventType {
                code: entry.code.clone(),
                component,
                name: entry.name,
                description: entry.description,
                example,
            };
            if types.insert(entry.code.clone(), event_type).is_some() {
                return Err(CatalogError::Duplicate(entry.code));
            }
        }
        Ok(Self { types })
    }

    /// The event type with this code, if the catalog has it.
    pub fn get(&self, code: &str) -> Option<&EventType> {
        self.types.get(code)
    }

    /// Whether any event type belongs to `component`.
    pub fn has_component(&self, component: &str) -> bool {
        self.types.values().any(|t| t.component == component)
    }

    /// Every event type, ordered by code.
    pub fn iter(&self) -> impl Iterator<Item = &EventType> {
        self.types.values()
    }

    /// How many event types the catalog holds.
    pub fn len(&self) -> usize {
        self.types.len()
    }

    /// Whether the catalog is empty.
    pub fn is_empty(&self) -> bool {
        self.types.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_catalog_has_every_reference_event() {
        let catalog = Catalog::builtin();
        for code in [
            "contract.recipient_status_changed",
            "contract.status_changed",
            "change_order.status_changed",
            "contract.homeowners_signed",
            "milestone.comment_created",
            "milestone.status_changed",
            "task.comment_created",
            "qualification.updated",
            "site.archived",
            "stage.transitioned",
            "proposal.action",
            "invoice.status_changed",
            "workflow.status_changed",
            "job.created",
            "job.updated",
            "job.assigned",
            "job.image_created",
            "job.document_created",
            "job.status_changed",
            "estimate.created",
            "estimate.updated",
            "signed_document.signed",
            "signable_document.signed",
            "report.created",
            "report.file_ready",
        ] {
            assert!(catalog.get(code).is_some(), "catalog lacks {code}");
        }
        let report = catalog.get("report.created").unwrap();
        assert_eq!(report.name, "An Inspection report is uploaded");
        assert_eq!(report.component, "report");
        assert_eq!(report.example["resourceId"], 12301);
        assert!(catalog.has_component("job"));
        assert!(!catalog.has_component("nothing"));
    }

    #[test]
    fn invalid_and_duplicate_codes_are_refused() {
        let bad = "[[event_types]]\ncode = \"Job Created\"\nname = \"x\"\n";
        assert!(matches!(Catalog::from_toml(bad), Err(CatalogError::InvalidCode(_))));
        let twice = "[[event_types]]\ncode = \"a.b\"\nname = \"x\"\n[[event_types]]\ncode = \"a.b\"\nname = \"y\"\n";
        assert!(matches!(Catalog::from_toml(twice), Err(CatalogError::Duplicate(_))));
    }
}
