//! `pipe exp show`: one row per instance of a run, with its matrix values, the parameters that
//! differ between the instances of its stage, and its plugin's headline metrics: the table a
//! researcher pastes into a paper.

use std::collections::{BTreeMap, BTreeSet};

use indexmap::IndexMap;

use rayon::prelude::*;
use serde::Serialize;

use crate::compare::at;
use crate::exec::{changed_keys, InstanceReport, Outcome};
use crate::plan::{Instance, Plan};
use crate::spec::{scalar_text, SpecErrors};
use crate::store::{InstanceColumns, RawJson, Record, RunRecord, Store};

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

/// What a run notes of an instance for `exp show` ([`InstanceColumns`], borrowed).
#[derive(Serialize)]
struct ColumnsOf<'a> {
    stage: &'a str,
    #[serde(skip_serializing_if = "IndexMap::is_empty")]
    matrix: IndexMap<&'a str, String>,
    params: &'a crate::store::CanonicalJson,
    #[serde(skip_serializing_if = "Option::is_none")]
    metrics: Option<HeadlineMetrics<'a>>,
}

/// The headline metrics as the record has their text: every metric as it is, or the headline
/// ones of an object. Values are never parsed to floats and written again, which would cost a
/// parse per instance and run, and could change a float's last digit (serde_json's default
/// parser is not exact for every 17-digit float).
#[derive(Serialize)]
#[serde(untagged)]
enum HeadlineMetrics<'a> {
    All(&'a RawJson),
    Picked(BTreeMap<String, &'a serde_json::value::RawValue>),
}

fn headline_metrics<'a>(patterns: &[&str], metrics: &'a RawJson) -> HeadlineMetrics<'a> {
    if patterns.is_empty() {
        return HeadlineMetrics::All(metrics);
    }
    match serde_json::from_str::<BTreeMap<String, &serde_json::value::RawValue>>(metrics.text()) {
        Ok(all) => HeadlineMetrics::Picked(
            all.into_iter()
                .filter(|(name, _)| headline(patterns, name))
                .collect(),
        ),
        // Not an object: nothing to pick from.
        Err(_) => HeadlineMetrics::All(metrics),
    }
}

/// The columns a run notes of `instance`: its stage, matrix values and parameters, and those of
/// `metrics` its plugin calls headline.
pub fn instance_columns(instance: &Instance, metrics: Option<&RawJson>) -> Option<RawJson> {
    let patterns = instance.plugin.headline_metrics();
    let columns = ColumnsOf {
        stage: &instance.stage,
        matrix: instance
            .matrix
            .iter()
            .map(|(k, v)| (k.as_str(), scalar_text(v).unwrap_or_default()))
            .collect(),
        params: &instance.resolved.params,
        metrics: metrics.map(|m| headline_metrics(patterns, m)),
    };
    RawJson::of(&columns).ok()
}

/// The columns of every instance `reports` name, for their run's record: metrics from the
/// cache's index, the rest from the plan; in parallel.
pub fn report_columns(
    plan: &Plan,
    store: &Store,
    reports: &[InstanceReport],
) -> Vec<Option<RawJson>> {
    reports
        .par_iter()
        .map(|r| {
            let metrics = match r.outcome {
                Outcome::Ran { .. } | Outcome::Cached { .. } => {
                    r.key.as_deref().and_then(|k| store.record_metrics(k))
                }
                _ => None,
            };
            instance_columns(&plan.instances[r.index], metrics.as_ref())
        })
        .collect()
}

/// A run's stages in file order and its instances, each with its columns.
pub struct RunRows {
    pub stages: Vec<String>,
    pub rows: Vec<(String, InstanceColumns)>,
}

/// The stages and the instances of `run` with their columns: from the record itself, or, for a
/// record of an older version that did not note them, from the plan of the pipeline as it is now
/// (`legacy_plan`) and one record read per instance.
pub fn run_rows(
    run: RunRecord,
    store: &Store,
    legacy_plan: impl FnOnce() -> Result<Plan, SpecErrors>,
) -> Result<RunRows, SpecErrors> {
    if run.instances.iter().all(|i| i.columns.is_some()) && !run.stages.is_empty() {
        // Each instance's text is dropped once parsed: at 100,000 instances, holding the whole
        // record beside its rows was about 40 MB.
        let rows = run
            .instances
            .into_par_iter()
            .filter_map(|i| Some((i.name, i.columns?.parse().ok()?)))
            .collect();
        return Ok(RunRows {
            stages: run.stages,
            rows,
        });
    }
    let plan = legacy_plan()?;
    let keys: BTreeMap<&str, Option<&str>> = run
        .instances
        .iter()
        .map(|i| (i.name.as_str(), i.key.as_deref()))
        .collect();
    // One file read and parse per instance: in parallel.
    let rows = plan
        .instances
        .par_iter()
        .filter_map(|instance| {
            let key = keys.get(instance.name.as_str())?;
            let record: Option<Record> = key.and_then(|k| store.record_by_hex(k));
            let metrics = record
                .as_ref()
                .and_then(|r| RawJson::of(r.metrics.as_ref()?).ok());
            let mut columns: InstanceColumns =
                instance_columns(instance, metrics.as_ref())?.parse().ok()?;
            if let Some(record) = record {
                columns.params = record.material.params.value();
            }
            Some((instance.name.clone(), columns))
        })
        .collect();
    let stages = plan.stage_names().into_iter().map(String::from).collect();
    Ok(RunRows { stages, rows })
}

/// One table per stage of `run`, in file order; `sort` orders each stage's rows by that metric,
/// largest first.
pub fn tables(run: &RunRows, sort: Option<&str>) -> Vec<StageTable> {
    let mut out = Vec::new();
    for stage in &run.stages {
        let records: Vec<(&str, &InstanceColumns)> = run
            .rows
            .iter()
            .filter(|(_, c)| c.stage == *stage)
            .map(|(name, c)| (name.as_str(), c))
            .collect();
        let Some((_, first)) = records.first() else {
            continue;
        };
        let matrix_keys: Vec<String> = first.matrix.keys().cloned().collect();
        // Parameters that differ between this stage's instances.
        let mut varying: BTreeSet<String> = BTreeSet::new();
        for pair in records.windows(2) {
            varying.extend(changed_keys(&pair[0].1.params, &pair[1].1.params));
        }
        // A parameter that only repeats a matrix value (`variant: ${variant}`) has its column.
        varying.retain(|path| {
            !matrix_keys.iter().any(|key| {
                records.iter().all(|(_, columns)| {
                    at(&columns.params, path).map(|p| cell(Some(p))).as_ref()
                        == columns.matrix.get(key)
                })
            })
        });
        let mut metric_names: BTreeSet<String> = BTreeSet::new();
        for (_, columns) in &records {
            if let Some(serde_json::Value::Object(m)) = &columns.metrics {
                metric_names.extend(m.keys().cloned());
            }
        }
        let mut header = vec!["instance".to_string()];
        header.extend(matrix_keys.iter().cloned());
        header.extend(varying.iter().cloned());
        header.extend(metric_names.iter().cloned());
        let mut table: Vec<(Option<f64>, Vec<String>)> = Vec::new();
        for (name, columns) in &records {
            let mut row = vec![name.to_string()];
            row.extend(
                matrix_keys
                    .iter()
                    .map(|k| columns.matrix.get(k).cloned().unwrap_or_default()),
            );
            for path in &varying {
                row.push(cell(at(&columns.params, path)));
            }
            let metrics = columns.metrics.as_ref();
            for name in &metric_names {
                row.push(cell(metrics.and_then(|m| m.get(name))));
            }
            let order = sort.and_then(|s| metrics?.get(s)?.as_f64());
            table.push((order, row));
        }
        if sort.is_some() {
            table.sort_by(|a, b| b.0.unwrap_or(f64::MIN).total_cmp(&a.0.unwrap_or(f64::MIN)));
        }
        out.push(StageTable {
            stage: stage.clone(),
            columns: header,
            rows: table.into_iter().map(|(_, r)| r).collect(),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::SourceFile;
    use crate::stage::{OutputDecl, Plugin, StageContext, StageError};
    use crate::Registry;

    /// A plugin with one headline metric, for its instance's columns.
    struct Scored;

    impl Plugin for Scored {
        type Params = serde_json::Map<String, serde_json::Value>;
        const KIND: &'static str = "test.scored";
        const VERSION: u32 = 1;
        const ABOUT: &'static str = "has a headline metric";
        const HEADLINE_METRICS: &'static [&'static str] = &["acc"];

        fn outputs(&self, _: &Self::Params) -> Vec<OutputDecl> {
            Vec::new()
        }

        fn run(&self, _: Self::Params, _: &mut StageContext<'_>) -> Result<(), StageError> {
            Ok(())
        }
    }

    fn columns(kind: &str, metrics: &str) -> String {
        let mut registry = Registry::with_cmd();
        registry.register(Scored);
        let yaml = format!("stages:\n  a:\n    uses: {kind}\n    with: {{run: 'true'}}\n");
        let yaml = if kind == "cmd" {
            yaml
        } else {
            yaml.replace("{run: 'true'}", "{}")
        };
        let source = SourceFile::parse(std::path::Path::new("p.yaml"), &yaml).expect("parse");
        let plan = Plan::from_source(&registry, source).expect("plan");
        let metrics: RawJson = serde_json::from_str(metrics).expect("metrics");
        instance_columns(&plan.instances[0], Some(&metrics))
            .expect("columns")
            .text()
            .to_string()
    }

    #[test]
    fn the_columns_keep_each_metric_as_the_record_wrote_it() {
        // serde_json's default parser reads this float one unit off (…775); the record's text is
        // what the instance measured, so that is what `exp show` must show.
        let exact = r#"{"acc":0.20956584262398778,"loss":1e-7,"n":3}"#;
        let picked = columns("test.scored", exact);
        assert!(
            picked.contains(r#""metrics":{"acc":0.20956584262398778}"#),
            "{picked}"
        );
        let all = columns("cmd", exact);
        assert!(all.contains(&format!(r#""metrics":{exact}"#)), "{all}");
        // Not an object: kept whole.
        assert!(columns("test.scored", "[1,2]").contains(r#""metrics":[1,2]"#));
    }
}
