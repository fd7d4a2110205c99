//! `pipe exp show`: one row per instance of a run, with its matrix values, the parameters that
//! differ between the instances of its stage, and its plugin's headline metrics: the table a
//! researcher pastes into a paper.

use std::collections::{BTreeMap, BTreeSet};

use rayon::prelude::*;
use serde::Serialize;

use crate::compare::at;
use crate::exec::changed_keys;
use crate::plan::Plan;
use crate::spec::scalar_text;
use crate::store::{Record, RunRecord, Store};

/// One stage's rows, all with the same columns.
#[derive(Debug, Clone, Serialize)]
pub struct StageTable {
    pub stage: String,
    pub columns: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

fn cell(value: Option<&serde_json::Value>) -> String {
    match value {
        None | Some(serde_json::Value::Null) => String::new(),
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(serde_json::Value::Number(n)) => match n.as_f64() {
            Some(x) if n.is_f64() => format!("{x:.4}"),
            _ => n.to_string(),
        },
        Some(other) => other.to_string(),
    }
}

fn headline(patterns: &[&str], name: &str) -> bool {
    patterns.is_empty()
        || patterns.iter().any(|p| match p.strip_suffix('*') {
            Some(prefix) => name.starts_with(prefix),
            None => *p == name,
        })
}

/// The tables of `run` for the stages of `plan`, in file order; `sort` orders each stage's rows
/// by that metric, largest first.
pub fn tables(plan: &Plan, store: &Store, run: &RunRecord, sort: Option<&str>) -> Vec<StageTable> {
    let keys: BTreeMap<&str, Option<&str>> = run
        .instances
        .iter()
        .map(|i| (i.name.as_str(), i.key.as_deref()))
        .collect();
    let mut out = Vec::new();
    for stage in plan.stage_names() {
        let instances: Vec<_> = plan.instances.iter().filter(|i| i.stage == stage).collect();
        // One file read and parse per instance: in parallel.
        let records: Vec<(_, Option<Record>)> = instances
            .par_iter()
            .filter(|i| keys.contains_key(i.name.as_str()))
            .map(|i| {
                (
                    *i,
                    keys[i.name.as_str()].and_then(|k| store.record_by_hex(k)),
                )
            })
            .collect();
        if records.is_empty() {
            continue;
        }
        let matrix_keys: Vec<String> = instances[0].matrix.keys().cloned().collect();
        // Parameters that differ between this stage's instances.
        let mut varying: BTreeSet<String> = BTreeSet::new();
        let params: Vec<&serde_json::Value> = records
            .iter()
            .filter_map(|(_, r)| r.as_ref().map(|r| &r.material.params))
            .collect();
        for pair in params.windows(2) {
            varying.extend(changed_keys(pair[0], pair[1]));
        }
        // A parameter that only repeats a matrix value (`variant: ${variant}`) has its column.
        varying.retain(|path| {
            !matrix_keys.iter().any(|key| {
                records.iter().all(|(instance, record)| {
                    let param = record.as_ref().and_then(|r| at(&r.material.params, path));
                    let value = instance.matrix.get(key).and_then(scalar_text);
                    param.map(|p| cell(Some(p))) == value
                })
            })
        });
        let patterns = instances[0].plugin.headline_metrics();
        let mut metric_names: BTreeSet<String> = BTreeSet::new();
        for (_, record) in &records {
            if let Some(serde_json::Value::Object(m)) =
                record.as_ref().and_then(|r| r.metrics.as_ref())
            {
                metric_names.extend(m.keys().filter(|k| headline(patterns, k)).cloned());
            }
        }
        let mut columns = vec!["instance".to_string()];
        columns.extend(matrix_keys.iter().cloned());
        columns.extend(varying.iter().cloned());
        columns.extend(metric_names.iter().cloned());
        let mut rows: Vec<(Option<f64>, Vec<String>)> = Vec::new();
        for (instance, record) in &records {
            let mut row = vec![instance.name.clone()];
            row.extend(matrix_keys.iter().map(|k| {
                instance
                    .matrix
                    .get(k)
                    .and_then(scalar_text)
                    .unwrap_or_default()
            }));
            let metrics = record.as_ref().and_then(|r| r.metrics.as_ref());
            for path in &varying {
                row.push(cell(
                    record.as_ref().and_then(|r| at(&r.material.params, path)),
                ));
            }
            for name in &metric_names {
                row.push(cell(metrics.and_then(|m| m.get(name))));
            }
            let order = sort.and_then(|s| metrics?.get(s)?.as_f64());
            rows.push((order, row));
        }
        if sort.is_some() {
            rows.sort_by(|a, b| b.0.unwrap_or(f64::MIN).total_cmp(&a.0.unwrap_or(f64::MIN)));
        }
        out.push(StageTable {
            stage: stage.to_string(),
            columns,
            rows: rows.into_iter().map(|(_, r)| r).collect(),
        });
    }
    out
}
