//! Whether an instance must run, and why: the one place that compares keys and records.
//!
//! Because a key covers the *content* of the inputs, an upstream instance that re-ran and wrote the
//! same bytes leaves its dependents' keys unchanged: they stay cached (early cutoff) without any
//! extra rule here.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use crate::plan::{InputBinding, Instance};
use crate::store::{Cached, FileIdentity, InputHash, KeyMaterial, OutputMap, Store};

/// Why an instance runs. Shown by `pipe status` and in `-v` logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// Never run with any parameters in this cache.
    New,
    Forced,
    ParamsChanged(Vec<String>),
    InputChanged(Vec<String>),
    PluginVersion {
        from: u32,
        to: u32,
    },
    PluginChanged {
        from: String,
    },
    SeedChanged {
        from: u64,
        to: u64,
    },
    /// The record exists but outputs are missing or corrupt.
    OutputDamaged(Vec<String>),
    /// Same key as a previous result that is no longer in the cache (e.g. after `gc`).
    NotCached,
    /// The record of this key exists but cannot be read (truncated, not JSON).
    RecordDamaged(String),
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::New => write!(f, "new"),
            Reason::Forced => write!(f, "forced"),
            Reason::ParamsChanged(keys) => write!(f, "params changed: {}", keys.join(", ")),
            Reason::InputChanged(names) => write!(f, "input changed: {}", names.join(", ")),
            Reason::PluginVersion { from, to } => write!(f, "plugin version {from} → {to}"),
            Reason::PluginChanged { from } => write!(f, "plugin changed (was `{from}`)"),
            Reason::SeedChanged { from, to } => write!(f, "seed {from} → {to}"),
            Reason::OutputDamaged(names) => {
                write!(f, "output missing or corrupt: {}", names.join(", "))
            }
            Reason::NotCached => write!(f, "result no longer in the cache"),
            Reason::RecordDamaged(why) => write!(f, "record damaged: {why}"),
        }
    }
}

/// The name of the input that carries [`timings_table`].
pub const TIMINGS_INPUT: &str = "timings";

/// For an instance that asked for its upstream timings ([`crate::stage::Plugin::timings`]) and
/// did not bind a `timings` input itself: the CSV `stage,instance,seconds` of every instance
/// upstream of it (transitively, in the order the file declares them), with each one's seconds
/// from its record. Instances whose seconds are unknown are left out.
pub fn timings_table(
    instance: &Instance,
    all: &[Instance],
    seconds: &dyn Fn(usize) -> Option<f64>,
) -> Option<String> {
    if !instance.resolved.timings || instance.inputs.contains_key(TIMINGS_INPUT) {
        return None;
    }
    let mut upstream = std::collections::BTreeSet::new();
    let mut stack: Vec<usize> = instance.deps.clone();
    while let Some(i) = stack.pop() {
        if upstream.insert(i) {
            stack.extend(&all[i].deps);
        }
    }
    let mut csv = String::from("stage,instance,seconds\n");
    for i in upstream {
        if let Some(s) = seconds(i) {
            let quote = |t: &str| format!("\"{}\"", t.replace('"', "\"\""));
            csv.push_str(&format!(
                "{},{},{s:.3}\n",
                quote(&all[i].stage),
                quote(&all[i].name)
            ));
        }
    }
    Some(csv)
}

/// The key material of an instance, given the outputs of its upstream instances and, where it
/// asked for them, its [`timings_table`]; `all` is the plan's instances, whose labels name a
/// fan-in's entries.
pub fn key_material(
    instance: &Instance,
    upstream: &dyn Fn(usize) -> Option<OutputMap>,
    all: &[Instance],
    timings: Option<&str>,
) -> Option<KeyMaterial> {
    let mut inputs = BTreeMap::new();
    if let Some(table) = timings {
        inputs.insert(
            TIMINGS_INPUT.to_string(),
            InputHash::One(blake3::hash(table.as_bytes()).to_hex().to_string()),
        );
    }
    for (name, binding) in &instance.inputs {
        let hash = match binding {
            InputBinding::One { instance, output } => {
                InputHash::One(upstream(*instance)?.get(output)?.hash.clone())
            }
            InputBinding::Many { instances, output } => {
                let mut map = BTreeMap::new();
                for &i in instances {
                    map.insert(all[i].entry_label(), upstream(i)?.get(output)?.hash.clone());
                }
                InputHash::Many(map)
            }
        };
        inputs.insert(name.clone(), hash);
    }
    for file in &instance.files {
        inputs.insert(
            format!("file:{}", file.relative),
            InputHash::One(file.hash.clone()),
        );
    }
    Some(KeyMaterial {
        kind: instance.plugin.kind().to_string(),
        version: instance.plugin.version(),
        params: instance.resolved.params.clone(),
        seed: instance.seed,
        inputs,
        observed_instance: instance
            .plugin
            .observes_instance()
            .then(|| instance.name.clone()),
    })
}

/// What the cache says about one instance whose key is known.
pub enum Lookup {
    /// Reusable: the key's outputs, every object intact, and the producing run's seconds.
    Hit {
        outputs: OutputMap,
        seconds: f64,
        identities: HashMap<String, FileIdentity>,
    },
    Miss(Reason),
}

/// Looks the key up; a hit must have every output intact (damaged objects are discarded so the
/// instance is recomputed).
pub fn lookup(store: &Store, instance: &Instance, material: &KeyMaterial, forced: bool) -> Lookup {
    let key = material.key();
    if forced {
        return Lookup::Miss(Reason::Forced);
    }
    match store.cached(&key) {
        Ok(Some(Cached::Intact {
            outputs,
            seconds,
            identities,
        })) => Lookup::Hit {
            outputs,
            seconds,
            identities,
        },
        Ok(Some(Cached::Damaged(damaged))) => {
            let names: Vec<String> = damaged.iter().map(|(name, _)| name.clone()).collect();
            tracing::warn!(
                "{}: cached output {} is missing or corrupt; recomputing",
                instance.name,
                names.join(", ")
            );
            for hash in damaged.iter().flat_map(|(_, hashes)| hashes) {
                store.discard_object(hash);
            }
            store.discard_record(&key.hex());
            Lookup::Miss(Reason::OutputDamaged(names))
        }
        Ok(None) => Lookup::Miss(why_new_key(store, instance, material)),
        Err(e) => {
            tracing::warn!("{}: {e}; recomputing", instance.name);
            Lookup::Miss(Reason::RecordDamaged(e.to_string()))
        }
    }
}

/// Compares the new key material with what the instance last produced.
pub(crate) fn why_new_key(store: &Store, instance: &Instance, material: &KeyMaterial) -> Reason {
    let Ok(Some(previous)) = store.latest_record(&instance.artifact_dir()) else {
        return Reason::New;
    };
    let old = &previous.material;
    if old.kind != material.kind {
        return Reason::PluginChanged {
            from: old.kind.clone(),
        };
    }
    if old.version != material.version {
        return Reason::PluginVersion {
            from: old.version,
            to: material.version,
        };
    }
    if old.params != material.params {
        return Reason::ParamsChanged(changed_keys(&old.params.value(), &material.params.value()));
    }
    if old.seed != material.seed {
        return Reason::SeedChanged {
            from: old.seed,
            to: material.seed,
        };
    }
    let mut changed: Vec<String> = material
        .inputs
        .iter()
        .filter(|(name, hash)| old.inputs.get(*name) != Some(hash))
        .map(|(name, _)| name.clone())
        .collect();
    changed.extend(
        old.inputs
            .keys()
            .filter(|n| !material.inputs.contains_key(*n))
            .cloned(),
    );
    if changed.is_empty() {
        Reason::NotCached
    } else {
        Reason::InputChanged(changed)
    }
}

/// Dotted names of the parameters that differ (`outputs.text`, `lr`).
pub fn changed_keys(old: &serde_json::Value, new: &serde_json::Value) -> Vec<String> {
    fn walk(prefix: &str, old: &serde_json::Value, new: &serde_json::Value, out: &mut Vec<String>) {
        match (old, new) {
            (serde_json::Value::Object(a), serde_json::Value::Object(b)) => {
                let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
                keys.sort();
                keys.dedup();
                for k in keys {
                    let path = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    match (a.get(k), b.get(k)) {
                        (Some(x), Some(y)) => walk(&path, x, y, out),
                        _ => out.push(path),
                    }
                }
            }
            (a, b) if a != b => out.push(if prefix.is_empty() {
                "(all)".into()
            } else {
                prefix.to_string()
            }),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk("", old, new, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changed_keys_are_dotted_and_sorted() {
        let a = serde_json::json!({"lr": 0.1, "outputs": {"x": "a", "y": "b"}, "epochs": 3});
        let b = serde_json::json!({"lr": 0.2, "outputs": {"x": "a", "y": "c"}, "epochs": 3});
        assert_eq!(changed_keys(&a, &b), vec!["lr", "outputs.y"]);
    }
}
