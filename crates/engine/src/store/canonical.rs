//! Canonical JSON for hashing: keys sorted at every level, no whitespace, numbers as serde_json
//! prints them (shortest round-trip form). Independent of map ordering features in dependencies.

use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::value::RawValue;
use serde_json::Value;

/// A JSON value held as its canonical text, shared: an instance's resolved parameters, as the
/// plan holds them and the key hashes them. A one-entry map takes about 40 bytes this way, where
/// a `serde_json::Value` map is a 600-byte B-tree node: 60 MB of a 100,000-instance plan.
/// Two values are equal exactly when their canonical texts are.
#[derive(Clone, PartialEq, Eq)]
pub struct CanonicalJson(Arc<str>);

impl CanonicalJson {
    pub fn of(value: &Value) -> CanonicalJson {
        CanonicalJson(canonical_json(value).into())
    }

    pub fn text(&self) -> &str {
        &self.0
    }

    /// The value itself, every float exactly the one that was hashed. The text is JSON this
    /// type wrote, so it always parses.
    pub fn value(&self) -> Value {
        exact_value(&self.0).unwrap_or(Value::Null)
    }
}

/// Parses JSON with every float exactly as written. serde_json's own parser can round a 17-digit
/// float one unit off (`0.20956584262398778` reads as `…775`) unless its `float_roundtrip`
/// feature is on, and turning that on would change how every plugin parses its JSON, so the
/// numbers are parsed here by the standard library, which rounds correctly.
fn exact_value(text: &str) -> serde_json::Result<Value> {
    let text = text.trim();
    match text.as_bytes().first() {
        Some(b'{') => {
            let entries: std::collections::BTreeMap<String, &RawValue> =
                serde_json::from_str(text)?;
            entries
                .into_iter()
                .map(|(key, raw)| Ok((key, exact_value(raw.get())?)))
                .collect::<serde_json::Result<serde_json::Map<_, _>>>()
                .map(Value::Object)
        }
        Some(b'[') => {
            let items: Vec<&RawValue> = serde_json::from_str(text)?;
            items
                .iter()
                .map(|raw| exact_value(raw.get()))
                .collect::<serde_json::Result<Vec<_>>>()
                .map(Value::Array)
        }
        Some(b'-' | b'0'..=b'9') if text.contains(['.', 'e', 'E']) => text
            .parse::<f64>()
            .map(Value::from)
            .map_err(serde::de::Error::custom),
        _ => serde_json::from_str(text),
    }
}

impl From<Value> for CanonicalJson {
    fn from(value: Value) -> CanonicalJson {
        CanonicalJson::of(&value)
    }
}

impl std::fmt::Debug for CanonicalJson {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::fmt::Display for CanonicalJson {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Written as the JSON it is (not as a string of it).
impl Serialize for CanonicalJson {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let raw: &RawValue = serde_json::from_str(&self.0).map_err(serde::ser::Error::custom)?;
        raw.serialize(serializer)
    }
}

/// Any JSON, brought into canonical form (records written before this type are pretty-printed).
impl<'de> Deserialize<'de> for CanonicalJson {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<CanonicalJson, D::Error> {
        Value::deserialize(deserializer).map(|value| CanonicalJson::of(&value))
    }
}

pub fn canonical_json(value: &Value) -> String {
    let mut out = Vec::new();
    write_canonical(value, &mut out);
    // Only serde_json's own UTF-8 output and ASCII punctuation were written.
    String::from_utf8(out).unwrap_or_default()
}

/// Appends `value`'s canonical JSON to `out`, allocating nothing per key or scalar (every
/// instance's parameters are encoded this way when the plan is made).
fn write_canonical(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push(b'{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_string(key, out);
                out.push(b':');
                write_canonical(&map[key], out);
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(item, out);
            }
            out.push(b']');
        }
        // The compact form serde_json's `Display` prints; writing into a Vec cannot fail.
        other => {
            let _ = serde_json::to_writer(&mut *out, other);
        }
    }
}

/// Appends `text` as a JSON string, escaped exactly as serde_json escapes it.
pub fn write_string(text: &str, out: &mut Vec<u8>) {
    let _ = serde_json::to_writer(&mut *out, text);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_values_round_trip_through_json_and_compare_by_value() {
        let pretty = "{\n  \"b\": [1, 2.5],\n  \"a\": \"x\"\n}";
        let read: CanonicalJson = serde_json::from_str(pretty).unwrap();
        assert_eq!(read.text(), r#"{"a":"x","b":[1,2.5]}"#);
        let written = serde_json::to_string(&serde_json::json!({"p": read.clone()})).unwrap();
        assert_eq!(written, r#"{"p":{"a":"x","b":[1,2.5]}}"#);
        assert_eq!(read, CanonicalJson::of(&read.value()));
    }

    #[test]
    fn a_value_read_back_has_the_very_floats_that_were_written() {
        // Floats serde_json's default parser reads one unit off.
        let floats: [f64; 3] = [
            0.20956584262398778,
            0.00043080333908418635,
            0.014858301547846179,
        ];
        let written = serde_json::json!({
            "lr": floats[0],
            "nested": {"xs": [floats[1], {"y": floats[2]}], "n": -3, "big": u64::MAX},
            "s": "1.5e3",
        });
        let read = CanonicalJson::of(&written).value();
        assert_eq!(read, written);
        let bits = |v: &Value| v.as_f64().map(f64::to_bits);
        assert_eq!(bits(&read["lr"]), Some(floats[0].to_bits()));
        assert_eq!(bits(&read["nested"]["xs"][0]), Some(floats[1].to_bits()));
        assert_eq!(
            bits(&read["nested"]["xs"][1]["y"]),
            Some(floats[2].to_bits())
        );
        assert!(read["nested"]["n"].is_i64() && read["nested"]["big"].is_u64());
    }

    #[test]
    fn sorts_keys_recursively() {
        let v: Value = serde_json::from_str(r#"{"b": 1, "a": {"d": [1, 2.5], "c": "x"}}"#).unwrap();
        assert_eq!(canonical_json(&v), r#"{"a":{"c":"x","d":[1,2.5]},"b":1}"#);
    }
}
