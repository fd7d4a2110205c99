//! Comparing runs: what changed between two recorded runs (`pipe diff`) and why one instance ran
//! or was reused (`pipe why`), read from the run records and the stored key material, without
//! running anything.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::exec::changed_keys;
use crate::store::{InputHash, KeyMaterial, Record, RunOutcome, RunRecord, Store};

/// One instance present in both runs whose key changed.
#[derive(Debug, Clone, Serialize)]
pub struct InstanceChange {
    pub instance: String,
    /// `params.lr: 0.001 → 0.01`, `seed: 0 → 1`, `plugin rnn.prune version 2 → 3`.
    pub params: Vec<String>,
    /// `data: 3f2a…  → 9c1b…`.
    pub inputs: Vec<String>,
    /// Numeric metrics: (name, old, new).
    pub metrics: Vec<(String, f64, f64)>,
    /// Output name → whether its bytes are identical.
    pub outputs: BTreeMap<String, bool>,
    /// Set when a record is no longer in the cache, so only the keys can be compared.
    pub note: Option<String>,
}

/// What changed from run `a` to run `b`.
#[derive(Debug, Clone, Serialize)]
pub struct RunDiff {
    pub from: String,
    pub to: String,
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub changed: Vec<InstanceChange>,
    pub unchanged: usize,
}

fn short(hash: &str) -> String {
    format!("{}…", &hash[..hash.len().min(8)])
}

fn text(value: Option<&serde_json::Value>) -> String {
    value.map_or_else(|| "(unset)".into(), |v| v.to_string())
}

/// The value at a dotted path of a JSON object.
pub(crate) fn at<'v>(value: &'v serde_json::Value, dotted: &str) -> Option<&'v serde_json::Value> {
    dotted.split('.').try_fold(value, |v, key| v.get(key))
}

/// Field-level differences of two key materials: parameters, seed, plugin, instance name.
pub fn material_changes(old: &KeyMaterial, new: &KeyMaterial) -> (Vec<String>, Vec<String>) {
    let mut params = Vec::new();
    if old.kind != new.kind {
        params.push(format!("plugin {} → {}", old.kind, new.kind));
    } else if old.version != new.version {
        params.push(format!(
            "plugin {} version {} → {}",
            new.kind, old.version, new.version
        ));
    }
    let (old_params, new_params) = (old.params.value(), new.params.value());
    for path in changed_keys(&old_params, &new_params) {
        params.push(format!(
            "params.{path}: {} → {}",
            text(at(&old_params, &path)),
            text(at(&new_params, &path))
        ));
    }
    if old.seed != new.seed {
        params.push(format!("seed: {} → {}", old.seed, new.seed));
    }
    if old.observed_instance != new.observed_instance {
        params.push(format!(
            "instance name: {:?} → {:?}",
            old.observed_instance, new.observed_instance
        ));
    }
    let mut inputs = Vec::new();
    let names: BTreeSet<&String> = old.inputs.keys().chain(new.inputs.keys()).collect();
    for name in names {
        match (old.inputs.get(name), new.inputs.get(name)) {
            (Some(a), Some(b)) if a == b => {}
            (Some(InputHash::One(a)), Some(InputHash::One(b))) => {
                inputs.push(format!("{name}: new bytes ({} → {})", short(a), short(b)))
            }
            (Some(InputHash::Many(a)), Some(InputHash::Many(b))) => {
                let entries: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
                let changed: Vec<String> = entries
                    .into_iter()
                    .filter(|e| a.get(*e) != b.get(*e))
                    .map(|e| match (a.contains_key(e), b.contains_key(e)) {
                        (false, _) => format!("+{e}"),
                        (_, false) => format!("-{e}"),
                        _ => e.clone(),
                    })
                    .collect();
                inputs.push(format!(
                    "{name}: fan-in entries changed: {}",
                    changed.join(", ")
                ));
            }
            (None, Some(_)) => inputs.push(format!("{name}: added")),
            (Some(_), None) => inputs.push(format!("{name}: removed")),
            _ => inputs.push(format!("{name}: changed")),
        }
    }
    (params, inputs)
}

fn numeric_metrics(record: &Record) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    if let Some(serde_json::Value::Object(map)) = &record.metrics {
        for (name, value) in map {
            if let Some(number) = value.as_f64() {
                out.insert(name.clone(), number);
            }
        }
    }
    out
}

fn keyed(run: &RunRecord) -> BTreeMap<&str, Option<&str>> {
    run.instances
        .iter()
        .map(|i| (i.name.as_str(), i.key.as_deref()))
        .collect()
}

/// What changed between two runs.
pub fn diff_runs(store: &Store, a: &RunRecord, b: &RunRecord) -> RunDiff {
    let (old, new) = (keyed(a), keyed(b));
    let mut diff = RunDiff {
        from: a.id.clone(),
        to: b.id.clone(),
        added: new
            .keys()
            .filter(|n| !old.contains_key(*n))
            .map(|n| n.to_string())
            .collect(),
        removed: old
            .keys()
            .filter(|n| !new.contains_key(*n))
            .map(|n| n.to_string())
            .collect(),
        changed: Vec::new(),
        unchanged: 0,
    };
    for (name, new_key) in &new {
        let Some(old_key) = old.get(name) else {
            continue;
        };
        if old_key == new_key {
            diff.unchanged += 1;
            continue;
        }
        diff.changed
            .push(instance_change(store, name, *old_key, *new_key));
    }
    diff
}

fn instance_change(
    store: &Store,
    name: &str,
    old_key: Option<&str>,
    new_key: Option<&str>,
) -> InstanceChange {
    let mut change = InstanceChange {
        instance: name.to_string(),
        params: Vec::new(),
        inputs: Vec::new(),
        metrics: Vec::new(),
        outputs: BTreeMap::new(),
        note: None,
    };
    let (Some(old), Some(new)) = (
        old_key.and_then(|k| store.record_by_hex(k)),
        new_key.and_then(|k| store.record_by_hex(k)),
    ) else {
        change.note = Some(format!(
            "key {} → {}; a record is no longer in the cache (gc?) or the instance did not finish",
            old_key.map_or("-".into(), short),
            new_key.map_or("-".into(), short)
        ));
        return change;
    };
    (change.params, change.inputs) = material_changes(&old.material, &new.material);
    let (old_metrics, new_metrics) = (numeric_metrics(&old), numeric_metrics(&new));
    for (metric, value) in &new_metrics {
        if let Some(before) = old_metrics.get(metric) {
            if before != value {
                change.metrics.push((metric.clone(), *before, *value));
            }
        }
    }
    for (output, record) in &new.outputs {
        let same = old
            .outputs
            .get(output)
            .is_some_and(|o| o.hash == record.hash);
        change.outputs.insert(output.clone(), same);
    }
    change
}

/// Why `instance` ran or was reused in `run`, compared with `previous`, the newest older run
/// that had it.
pub fn why(
    store: &Store,
    run: &RunRecord,
    previous: Option<&RunRecord>,
    instance: &str,
) -> Vec<String> {
    let Some(entry) = run.instances.iter().find(|i| i.name == instance) else {
        return vec![format!("`{instance}` is not in run {}", run.id)];
    };
    let previous = previous.and_then(|r| {
        r.instances
            .iter()
            .find(|i| i.name == instance)
            .map(|i| (r, i))
    });
    let mut lines = Vec::new();
    match entry.outcome {
        RunOutcome::Cached => lines.push("reused: its key was already in the cache".to_string()),
        RunOutcome::CutOff => lines.push(
            "cut off: an upstream instance re-ran and wrote the same bytes, so its key did not change"
                .to_string(),
        ),
        RunOutcome::Failed => lines.push("it ran and failed".into()),
        RunOutcome::Skipped => lines.push("skipped: an upstream instance did not finish".into()),
        RunOutcome::WouldRun => lines.push("a dry run said it would run".into()),
        RunOutcome::Ran => {}
    }
    let Some((before_run, before)) = previous else {
        if entry.outcome == RunOutcome::Ran {
            lines.push("ran: new (no earlier run had it)".into());
        }
        return lines;
    };
    if before.key == entry.key {
        if entry.outcome == RunOutcome::Ran {
            lines.push(format!(
                "ran with the same key as in run {}: its result was no longer in the cache, \
                 damaged, or forced",
                before_run.id
            ));
        }
        return lines;
    }
    let change = instance_change(store, instance, before.key.as_deref(), entry.key.as_deref());
    if entry.outcome == RunOutcome::Ran {
        lines.push(format!("ran: its key changed since run {}", before_run.id));
    }
    lines.extend(change.params);
    lines.extend(change.inputs.into_iter().map(|i| format!("input {i}")));
    lines.extend(change.note);
    lines
}
