//! Cache keys: blake3 over the canonical JSON of everything that determines an instance's
//! outputs ([`KeyMaterial`]), pinned by golden tests.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::canonical::write_string;

/// A cache key: blake3 over everything that determines an instance's outputs. Prints short.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Key(pub blake3::Hash);

impl Key {
    pub fn hex(&self) -> String {
        self.0.to_hex().to_string()
    }
    pub fn short(&self) -> String {
        self.hex()[..12].to_string()
    }
}

impl std::fmt::Display for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.short())
    }
}

/// The content hash of each input, as it entered the key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum InputHash {
    One(String),
    /// Fan-in: instance label → hash.
    Many(BTreeMap<String, String>),
}

/// Everything that goes into a key, and nothing else.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyMaterial {
    pub kind: String,
    pub version: u32,
    pub params: super::CanonicalJson,
    pub seed: u64,
    pub inputs: BTreeMap<String, InputHash>,
    /// The instance name (`stage[values]`), for plugins that can observe it (`cmd` exposes it as
    /// `$PIPE_INSTANCE`); `None` for plugins whose outputs cannot depend on it, so identical
    /// instances of those share one result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_instance: Option<String>,
}

impl KeyMaterial {
    /// The key. Changing what is hashed here invalidates every user's cache: the golden test in
    /// this module pins it. Destructured, so a new field cannot be left out of the hash.
    pub fn key(&self) -> Key {
        let KeyMaterial {
            kind,
            version,
            params,
            seed,
            inputs,
            observed_instance,
        } = self;
        // The canonical JSON of the object {kind, version, params, seed, inputs[, instance]},
        // written field by field in sorted key order instead of built as a `Value` first.
        let mut encoded = Vec::with_capacity(256);
        encoded.extend_from_slice(b"{\"inputs\":");
        write_sorted_object(inputs, &mut encoded, |hash, out| match hash {
            InputHash::One(hash) => write_string(hash, out),
            InputHash::Many(entries) => {
                write_sorted_object(entries, out, |hash, out| write_string(hash, out))
            }
        });
        // Absent rather than null, so keys of plugins that do not observe it stay as they were.
        if let Some(instance) = observed_instance {
            encoded.extend_from_slice(b",\"instance\":");
            write_string(instance, &mut encoded);
        }
        encoded.extend_from_slice(b",\"kind\":");
        write_string(kind, &mut encoded);
        encoded.extend_from_slice(b",\"params\":");
        encoded.extend_from_slice(params.text().as_bytes());
        encoded.extend_from_slice(format!(",\"seed\":{seed},\"version\":{version}}}").as_bytes());
        let mut hasher = blake3::Hasher::new();
        hasher.update(b"pipe-key-v1\0");
        hasher.update(&encoded);
        Key(hasher.finalize())
    }
}

/// Appends `entries` as a JSON object; a `BTreeMap` iterates in the sorted order canonical JSON
/// wants.
fn write_sorted_object<V>(
    entries: &BTreeMap<String, V>,
    out: &mut Vec<u8>,
    mut write_value: impl FnMut(&V, &mut Vec<u8>),
) {
    out.push(b'{');
    for (i, (name, value)) in entries.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_string(name, out);
        out.push(b':');
        write_value(value, out);
    }
    out.push(b'}');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn material() -> KeyMaterial {
        let mut inputs = BTreeMap::new();
        inputs.insert("a".to_string(), InputHash::One("00ff".into()));
        KeyMaterial {
            kind: "cmd".into(),
            version: 1,
            params: serde_json::json!({"run": "echo hi", "outputs": {"x": "x.txt"}}).into(),
            seed: 7,
            inputs,
            observed_instance: None,
        }
    }

    /// A fan-in input, a project file and an observed instance name: every kind of key part.
    fn material_with_every_part() -> KeyMaterial {
        let mut m = material();
        let mut fan_in = BTreeMap::new();
        fan_in.insert("p".to_string(), "11aa".to_string());
        fan_in.insert("q".to_string(), "22bb".to_string());
        m.inputs.insert("all".into(), InputHash::Many(fan_in));
        m.inputs
            .insert("file:data/x.csv".into(), InputHash::One("33cc".into()));
        m.observed_instance = Some("a[p]".into());
        m
    }

    /// Pins the key encoding: if this changes, every existing cache is invalidated. Change the
    /// expected value only together with a deliberate `pipe-key-vN` bump.
    #[test]
    fn key_encoding_is_pinned() {
        assert_eq!(
            material().key().hex(),
            "52cff3a9c9eac3ab0ce968415081876003fc1c237c5c000920c6ca11de9a419c"
        );
    }

    #[test]
    fn key_encoding_of_fan_in_files_and_instance_is_pinned() {
        assert_eq!(
            material_with_every_part().key().hex(),
            "b84a2ce7a8f02958b2d217b2e63bfb39d70098dfd7b7e09c35a0b64425793e0f"
        );
    }

    /// The key as first defined: the canonical JSON of one `Value` holding every field. The
    /// streamed encoding must give the same bytes for any parameters, or caches are invalidated.
    fn key_through_a_value(m: &KeyMaterial) -> Key {
        let mut fields = serde_json::json!({
            "kind": m.kind,
            "version": m.version,
            "params": m.params.value(),
            "seed": m.seed,
            "inputs": m.inputs,
        });
        if let Some(instance) = &m.observed_instance {
            fields["instance"] = serde_json::Value::String(instance.clone());
        }
        let mut hasher = blake3::Hasher::new();
        hasher.update(b"pipe-key-v1\0");
        hasher.update(crate::store::canonical_json(&fields).as_bytes());
        Key(hasher.finalize())
    }

    #[test]
    fn the_streamed_key_is_the_key_of_the_whole_material_as_one_value() {
        let mut m = material_with_every_part();
        m.kind = "odd \"kind\"\n\u{e9}".into();
        m.seed = u64::MAX;
        m.version = u32::MAX;
        m.params = serde_json::json!({
            "z": [1, -0.0, 0.1, 1e-7, 1.5e300, -12345678901234i64, u64::MAX, null, true],
            "a": {"nested": [{"y": "\u{1F600}\t\\"}, {}], "b": []},
            "\u{e9}t\u{e9}": "caf\u{e9}",
            "": false,
        })
        .into();
        m.inputs
            .insert("\"quoted\"".into(), InputHash::One("\u{7f}".into()));
        assert_eq!(m.key(), key_through_a_value(&m));
        m.observed_instance = None;
        m.inputs.clear();
        m.params = serde_json::json!(3.25).into();
        assert_eq!(m.key(), key_through_a_value(&m));
        assert_eq!(material().key(), key_through_a_value(&material()));
    }

    #[test]
    fn key_changes_with_each_component() {
        let full = material_with_every_part().key();
        let mut m = material_with_every_part();
        m.observed_instance = Some("a[q]".into());
        assert_ne!(m.key(), full);
        let mut m = material_with_every_part();
        if let Some(InputHash::Many(map)) = m.inputs.get_mut("all") {
            map.insert("r".into(), "22bb".into());
        }
        assert_ne!(m.key(), full, "a fan-in entry more changes the key");
        let mut m = material_with_every_part();
        m.inputs
            .insert("file:data/x.csv".into(), InputHash::One("33cd".into()));
        assert_ne!(m.key(), full, "a project file's content changes the key");
        let base = material().key();
        let mut m = material();
        m.version = 2;
        assert_ne!(m.key(), base);
        let mut m = material();
        m.seed = 8;
        assert_ne!(m.key(), base);
        let mut m = material();
        let mut params = m.params.value();
        params["run"] = "echo ho".into();
        m.params = params.into();
        assert_ne!(m.key(), base);
        let mut m = material();
        m.inputs.insert("a".into(), InputHash::One("00fe".into()));
        assert_ne!(m.key(), base);
    }
}
