//! Which events a webhook wants: event selectors, filters and the matching rule.

use std::fmt;
use std::str::FromStr;

use crate::catalog::{Catalog, is_valid_code};
use crate::environment::Environment;
use crate::limits;

/// One entry of a webhook's event list: an exact code or a whole component.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum EventSelector {
    /// Exactly this event type, e.g. `job.created`.
    Exact(String),
    /// Every event type of a component, written `job.*`.
    Component(String),
}

/// An event list entry that is neither a code nor `component.*`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not an event type or component wildcard (expected `job.created` or `job.*`)")]
pub struct InvalidSelector(pub String);

impl FromStr for EventSelector {
    type Err = InvalidSelector;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        let value = value.trim();
        if let Some(component) = value.strip_suffix(".*") {
            if is_valid_code(&format!("{component}.x")) && !component.contains('.') {
                return Ok(EventSelector::Component(component.to_owned()));
            }
        } else if is_valid_code(value) {
            return Ok(EventSelector::Exact(value.to_owned()));
        }
        Err(InvalidSelector(value.to_owned()))
    }
}

impl fmt::Display for EventSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EventSelector::Exact(code) => f.write_str(code),
            EventSelector::Component(component) => write!(f, "{component}.*"),
        }
    }
}

impl EventSelector {
    /// Whether this selector picks the event type `code`.
    pub fn selects(&self, code: &str) -> bool {
        match self {
            EventSelector::Exact(exact) => exact == code,
            EventSelector::Component(component) => {
                code.strip_prefix(component.as_str()).is_some_and(|rest| rest.starts_with('.'))
            }
        }
    }

    /// Whether the catalog knows what this selector names.
    pub fn exists_in(&self, catalog: &Catalog) -> bool {
        match self {
            EventSelector::Exact(code) => catalog.get(code).is_some(),
            EventSelector::Component(component) => catalog.has_component(component),
        }
    }
}

/// What the router knows of an event when it decides who receives it.
#[derive(Debug, Clone, Copy)]
pub struct EventFacts<'a> {
    /// Catalog code.
    pub event_type: &'a str,
    /// Live or test.
    pub environment: Environment,
    /// Acting user, if the publisher said.
    pub actor: Option<&'a str>,
    /// Team, if the publisher said.
    pub team: Option<&'a str>,
}

/// The part of a webhook that decides which events it receives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    /// The events selected, one by one or by component.
    pub selectors: Vec<EventSelector>,
    /// Test webhooks receive only test events; live only live.
    pub environment: Environment,
    /// "For login": only events caused by this user.
    pub actor: Option<String>,
    /// Only events concerning this team.
    pub team: Option<String>,
}

impl Subscription {
    /// Whether an event goes to this webhook. Organisation and the active/deleted state
    /// are checked by the query that loads candidate webhooks.
    pub fn matches(&self, event: &EventFacts<'_>) -> bool {
        self.environment == event.environment
            && self.selectors.iter().any(|s| s.selects(event.event_type))
            && filter_holds(self.actor.as_deref(), event.actor)
            && filter_holds(self.team.as_deref(), event.team)
    }
}

fn filter_holds(wanted: Option<&str>, actual: Option<&str>) -> bool {
    match wanted {
        None => true,
        Some(wanted) => actual == Some(wanted),
    }
}

named_enum! {
    /// HTTP methods a webhook endpoint may use (the reference products offer these three).
    #[derive(Default)]
    #[serde(rename_all = "UPPERCASE")]
    #[strum(
        serialize_all = "UPPERCASE",
        ascii_case_insensitive,
        parse_err_ty = InvalidMethod,
        parse_err_fn = InvalidMethod::from
    )]
    pub enum HttpMethod {
        /// The common choice.
        #[default]
        Post,
        /// For receivers that upsert by URL.
        Put,
        /// For receivers that patch a resource.
        Patch,
    }
}

/// A method other than POST, PUT or PATCH.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not an allowed method (expected POST, PUT or PATCH)")]
pub struct InvalidMethod(pub String);

impl From<&str> for InvalidMethod {
    fn from(value: &str) -> Self {
        Self(value.to_owned())
    }
}

/// Headers an endpoint's configured headers may not set: the signature, the body's
/// type, what the HTTP stack sets itself, and what a credential sets.
pub const RESERVED_HEADERS: &[&str] = &[
    crate::signing::HEADER_ID,
    crate::signing::HEADER_TIMESTAMP,
    crate::signing::HEADER_SIGNATURE,
    "content-type",
    "content-length",
    "host",
    "user-agent",
    "authorization",
    "transfer-encoding",
    "connection",
    "traceparent",
    "tracestate",
];

/// Why a header configured on an endpoint is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderRefusal {
    /// The name is not an HTTP token (RFC 9110 §5.1).
    InvalidName,
    /// The value holds a control character (a CR or LF would split the request).
    InvalidValue,
    /// The name is one hookline sets itself ([`RESERVED_HEADERS`]).
    Reserved,
}

/// Checks one header configured on an endpoint, so what is stored can be sent: a token
/// for a name, no control character but tab in the value, and no name hookline sets.
pub fn check_header(name: &str, value: &str) -> Result<(), HeaderRefusal> {
    let token = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
    if name.is_empty() || name.len() > limits::HEADER_NAME || !name.chars().all(token) {
        return Err(HeaderRefusal::InvalidName);
    }
    if value.len() > limits::VALUE || value.chars().any(|c| (c.is_control() && c != '\t') || c == '\u{7f}') {
        return Err(HeaderRefusal::InvalidValue);
    }
    if RESERVED_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
        return Err(HeaderRefusal::Reserved);
    }
    Ok(())
}

#[cfg(test)]
mod header_tests {
    use super::*;

    #[test]
    fn endpoint_headers_are_tokens_with_clean_values_and_not_hooklines_own() {
        assert_eq!(check_header("X-Api-Key", "a b\tc"), Ok(()));
        assert_eq!(check_header("", "v"), Err(HeaderRefusal::InvalidName));
        assert_eq!(check_header("x api", "v"), Err(HeaderRefusal::InvalidName));
        assert_eq!(check_header("x:y", "v"), Err(HeaderRefusal::InvalidName));
        assert_eq!(check_header("x-a", "v\r\nx-b: injected"), Err(HeaderRefusal::InvalidValue));
        assert_eq!(check_header("x-a", "v\n"), Err(HeaderRefusal::InvalidValue));
        assert_eq!(check_header(&"x".repeat(limits::HEADER_NAME + 1), "v"), Err(HeaderRefusal::InvalidName));
        assert_eq!(check_header("x-a", &"v".repeat(limits::VALUE + 1)), Err(HeaderRefusal::InvalidValue));
        assert_eq!(check_header("Content-Type", "text/plain"), Err(HeaderRefusal::Reserved));
        assert_eq!(check_header("webhook-signature", "v1,forged"), Err(HeaderRefusal::Reserved));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subscription(events: &[&str]) -> Subscription {
        Subscription {
            selectors: events.iter().map(|e| e.parse().unwrap()).collect(),
            environment: Environment::Live,
            actor: None,
            team: None,
        }
    }

    fn facts(event_type: &str) -> EventFacts<'_> {
        EventFacts { event_type, environment: Environment::Live, actor: Some("u1"), team: Some("t1") }
    }

    #[test]
    fn exact_and_component_selectors() {
        let sub = subscription(&["job.created", "estimate.*"]);
        assert!(sub.matches(&facts("job.created")));
        assert!(!sub.matches(&facts("job.updated")));
        assert!(sub.matches(&facts("estimate.updated")));
        assert!(!subscription(&["job.*"]).matches(&facts("jobs.created")));
    }

    #[test]
    fn environment_and_filters_must_hold() {
        let mut sub = subscription(&["job.*"]);
        sub.environment = Environment::Test;
        assert!(!sub.matches(&facts("job.created")));
        sub.environment = Environment::Live;
        sub.actor = Some("u1".into());
        assert!(sub.matches(&facts("job.created")));
        sub.team = Some("t2".into());
        assert!(!sub.matches(&facts("job.created")));
        let no_team = EventFacts { team: None, ..facts("job.created") };
        sub.team = Some("t1".into());
        assert!(!sub.matches(&no_team));
    }

    #[test]
    fn selector_syntax() {
        assert_eq!("job.*".parse(), Ok(EventSelector::Component("job".into())));
        assert!("*".parse::<EventSelector>().is_err());
        assert!("job".parse::<EventSelector>().is_err());
        assert!("a.b.*".parse::<EventSelector>().is_err());
        assert!("Job.Created".parse::<EventSelector>().is_err());
        let catalog = Catalog::builtin();
        assert!("job.*".parse::<EventSelector>().unwrap().exists_in(&catalog));
        assert!(!"nope.*".parse::<EventSelector>().unwrap().exists_in(&catalog));
    }

    #[test]
    fn methods() {
        assert_eq!("put".parse(), Ok(HttpMethod::Put));
        assert!("GET".parse::<HttpMethod>().is_err());
    }
}
