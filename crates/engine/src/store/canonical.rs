//! Canonical JSON for hashing: keys sorted at every level, no whitespace, numbers as serde_json
//! prints them (shortest round-trip form). Independent of map ordering features in dependencies.

use serde_json::Value;

pub fn canonical_json(value: &Value) -> String {
    let mut out = Vec::new();
    write_canonical(value, &mut out);
    // Only serde_json's own UTF-8 output and ASCII punctuation were written.
    String::from_utf8(out).unwrap_or_default()
}

/// Appends `value`'s canonical JSON to `out`, allocating nothing per key or scalar (the cache key
/// of every instance is encoded this way).
pub fn write_canonical(value: &Value, out: &mut Vec<u8>) {
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
    fn sorts_keys_recursively() {
        let v: Value = serde_json::from_str(r#"{"b": 1, "a": {"d": [1, 2.5], "c": "x"}}"#).unwrap();
        assert_eq!(canonical_json(&v), r#"{"a":{"c":"x","d":[1,2.5]},"b":1}"#);
    }
}
