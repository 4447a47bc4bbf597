//! An event's `data`, kept as the JSON text it was published in.
//!
//! A webhook platform must not change a customer's data. Parsed into a
//! `serde_json::Value`, numbers pass through `f64` (`123456789012345678901234567890`
//! comes out as `1.2345678901234568e29`), and stored as `jsonb` they lose `-0`, the
//! way they were written and the order of the keys. So the text is checked once (a JSON
//! object, no NUL character) and then carried, stored (a `json` column keeps its input
//! verbatim) and delivered as the very bytes that came in.

use serde_json::value::RawValue;

use crate::envelope::nul_at;

/// An event's payload: a JSON object, as published, holding no NUL character.
#[derive(Debug, Clone)]
pub struct Payload(Box<RawValue>);

/// Why a text is not a payload, with the path of what is wrong inside it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    /// Not a JSON object.
    #[error("`data` must be a JSON object")]
    NotAnObject,
    /// A string holds U+0000, which PostgreSQL cannot store.
    #[error("`{0}` holds a NUL character (U+0000), which cannot be stored")]
    Nul(String),
    /// Nested deeper than [`MAX_DEPTH`].
    #[error("`data` nests arrays and objects deeper than {MAX_DEPTH} levels")]
    TooDeep,
}

/// How deeply a payload's arrays and objects may nest: well within what receivers'
/// parsers take (serde_json stops at 128, and the delivered body adds a level).
pub const MAX_DEPTH: usize = 100;

impl Payload {
    /// The payload of an event published without one.
    pub fn empty() -> Self {
        Self(RawValue::from_string("{}".to_owned()).expect("`{}` is JSON"))
    }

    /// Checks published JSON text: `null` stands for no payload; anything else must be
    /// an object free of NUL characters.
    pub fn check(raw: Box<RawValue>) -> Result<Self, PayloadError> {
        let text = raw.get();
        if text == "null" {
            return Ok(Self::empty());
        }
        if !text.starts_with('{') {
            return Err(PayloadError::NotAnObject);
        }
        if depth(text) > MAX_DEPTH {
            return Err(PayloadError::TooDeep);
        }
        if escapes_nul(text) {
            // Rare: find where, for the message, from a parsed copy.
            let value: serde_json::Value = serde_json::from_str(text).unwrap_or_default();
            return Err(PayloadError::Nul(nul_at(&value, "data").unwrap_or_else(|| "data".to_owned())));
        }
        Ok(Self(raw))
    }

    /// A payload hookline writes itself (its own events, a catalog example).
    pub fn from_value(value: &serde_json::Value) -> Result<Self, PayloadError> {
        let raw = serde_json::value::to_raw_value(value).expect("a Value always serializes");
        Self::check(raw)
    }

    /// Text read back from where hookline stored it (the database, a job it built):
    /// checked to be JSON, trusted to be an object.
    pub fn stored(text: String) -> Result<Self, serde_json::Error> {
        RawValue::from_string(text).map(Self)
    }

    /// The JSON text, exactly as published.
    pub fn as_str(&self) -> &str {
        self.0.get()
    }

    /// Parsed, for code that reads into the payload (tests, the console's views).
    pub fn to_value(&self) -> serde_json::Value {
        serde_json::from_str(self.as_str()).unwrap_or_default()
    }
}

impl PartialEq for Payload {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl serde::Serialize for Payload {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

/// Whether JSON text holds the escape `\u0000`: in JSON a NUL can only be written that
/// way (raw control characters are not allowed in strings), and outside strings there
/// is no backslash, so an odd run of backslashes before `u0000` is that escape.
fn escapes_nul(text: &str) -> bool {
    let bytes = text.as_bytes();
    let mut from = 0;
    while let Some(found) = text[from..].find("u0000") {
        let at = from + found;
        let backslashes = bytes[..at].iter().rev().take_while(|&&b| b == b'\\').count();
        if backslashes % 2 == 1 {
            return true;
        }
        from = at + 1;
    }
    false
}

/// How deeply valid JSON text nests arrays and objects: brackets are counted outside
/// strings (inside one, a backslash escapes the next byte).
fn depth(text: &str) -> usize {
    let (mut depth, mut deepest, mut in_string, mut escaped) = (0_usize, 0, false, false);
    for byte in text.bytes() {
        if in_string {
            match byte {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(text: &str) -> Box<RawValue> {
        serde_json::from_str(text).unwrap()
    }

    #[test]
    fn numbers_and_layout_are_kept_as_written() {
        let text = r#"{"z": 123456789012345678901234567890, "a": -0, "d": 0.1000000000000000000000000001, "e": 1E400}"#;
        assert_eq!(Payload::check(raw(text)).unwrap().as_str(), text);
    }

    #[test]
    fn nesting_is_counted_outside_strings() {
        assert_eq!(depth(r#"{"a": [1, {"b": "[[[{{{\"]]"}]}"#), 3);
        let deep = format!(r#"{{"a": {}1{}}}"#, "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        assert_eq!(Payload::check(raw(&deep)), Err(PayloadError::TooDeep));
        // Far deeper than any stack would take, were the text parsed recursively.
        let abyss = format!(r#"{{"type": "x", "data": {{"a": {}1{}}}}}"#, "[".repeat(1 << 20), "]".repeat(1 << 20));
        let envelope: crate::envelope::RawUpstreamEvent = serde_json::from_str(&abyss).unwrap();
        assert_eq!(Payload::check(envelope.data.unwrap()), Err(PayloadError::TooDeep));
        let fits = format!(r#"{{"a": {}1{}}}"#, "[".repeat(MAX_DEPTH - 1), "]".repeat(MAX_DEPTH - 1));
        assert!(Payload::check(raw(&fits)).is_ok());
    }

    #[test]
    fn only_nul_free_objects_are_payloads() {
        assert_eq!(Payload::check(raw("null")).unwrap().as_str(), "{}");
        assert_eq!(Payload::check(raw("[1]")), Err(PayloadError::NotAnObject));
        assert_eq!(Payload::check(raw("\"x\"")), Err(PayloadError::NotAnObject));
        assert_eq!(Payload::check(raw(r#"{"a": {"b": ["\u0000"]}}"#)), Err(PayloadError::Nul("data.a.b[0]".into())));
        assert!(Payload::check(raw(r#"{"k\u0000": 1}"#)).is_err());
        // An escaped backslash followed by the letters `u0000` is no NUL.
        assert!(Payload::check(raw(r#"{"a": "\\u0000", "b": "\\\\u0000"}"#)).is_ok());
        assert!(Payload::check(raw(r#"{"a": "\\\u0000"}"#)).is_err());
    }
}
