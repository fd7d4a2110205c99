//! `rnn.train_random`: trains one randomly structured recurrent network per graph of a
//! `graphs.json` (thesis experiment 3), many at once: networks are ordered by size, cut into
//! groups of `group_size`, and each group trains as one batched tensor program
//! ([`crate::nn::random::NetworkGroup`]). Every network of a run sees the same batches in the same
//! order (one shuffle per epoch from the stage seed); the thesis trained each network in its own
//! process with its own shuffle, which is the same statistically (each network sees a uniformly
//! shuffled epoch), not bit for bit. A killed run resumes at group granularity: each finished
//! group's rows are checkpointed and reused.

use std::path::Path;
use std::time::Instant;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::graph::Graph;
use crate::nn::random::{
    evaluate_group, network_seed, train_group_epoch, NetworkGroup, NetworkStructure, RandomNetwork,
};
use crate::nn::{Adam, AdamConfig, Readout, Variant};
use crate::stage::{InputDecl, InputSpec, OutputDecl, Plugin, StageContext, StageError};
use crate::stages::graphs::read_graphs;
use crate::stages::train::load_examples;

pub struct TrainRandom;

/// Defaults are the thesis's settings (SPEC §4) and the fastest measured group size.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TrainRandomParams {
    /// rnn_tanh | rnn_relu | lstm | gru
    pub variant: Variant,
    #[serde(default = "defaults::epochs")]
    pub epochs: usize,
    #[serde(default = "defaults::batch_size")]
    pub batch_size: usize,
    #[serde(default = "defaults::lr")]
    pub lr: f64,
    /// Gradient-norm clipping per network (0 disables).
    #[serde(default = "defaults::clip")]
    pub clip: f64,
    /// last_padded (the thesis's code) or true_length.
    #[serde(default)]
    pub readout: Readout,
    /// Networks trained together as one batched group. Results differ from other group sizes
    /// only in the last bits of the floats, but they do differ, so it is part of the key.
    #[serde(default = "defaults::group_size")]
    pub group_size: usize,
    /// Only the first N graphs of each family (quick runs); all when absent.
    #[serde(default)]
    pub limit: Option<usize>,
    /// libtorch intra-op threads; results depend on it, so it is part of the key.
    #[serde(default = "defaults::threads")]
    pub threads: usize,
}

mod defaults {
    pub fn epochs() -> usize {
        15
    }
    pub fn batch_size() -> usize {
        128
    }
    pub fn lr() -> f64 {
        0.001
    }
    pub fn clip() -> f64 {
        5.0
    }
    /// The fastest group size of `pipe-bench structure` on one CPU thread (2026-11-29: groups
    /// of 2–4 were fastest for every variant; larger groups lose more to padding than they save
    /// in per-op overhead, because at batch 128 these networks are compute-bound on a CPU).
    pub fn group_size() -> usize {
        4
    }
    pub fn threads() -> usize {
        1
    }
}

/// The rows one finished group contributes, kept as formatted CSV fields so a resumed run writes
/// exactly the bytes an uninterrupted one would.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct GroupRows {
    ids: Vec<usize>,
    /// Per network: `id,family,test_acc,test_loss,train_acc,seconds`.
    results: Vec<Vec<String>>,
    /// Per network and epoch: `id,epoch,train_loss,train_acc,test_loss,test_acc`.
    metrics: Vec<Vec<String>>,
}

const RESULT_COLUMNS: [&str; 6] = [
    "id",
    "family",
    "test_acc",
    "test_loss",
    "train_acc",
    "seconds",
];
const METRIC_COLUMNS: [&str; 6] = [
    "id",
    "epoch",
    "train_loss",
    "train_acc",
    "test_loss",
    "test_acc",
];

/// The graphs to train: the first `limit` of each family, in file order.
pub fn select_graphs(graphs: Vec<Graph>, limit: Option<usize>) -> Vec<Graph> {
    let Some(limit) = limit else {
        return graphs;
    };
    let mut taken: std::collections::BTreeMap<crate::graph::GraphFamily, usize> =
        std::collections::BTreeMap::new();
    graphs
        .into_iter()
        .filter(|g| {
            let count = taken.entry(g.family).or_insert(0);
            *count += 1;
            *count <= limit
        })
        .collect()
}

/// Indices of `structures` cut into groups of at most `group_size`, after ordering by (layer
/// count, node count, position) so that a group's members have similar shapes and padding
/// stays small.
pub fn plan_groups(structures: &[NetworkStructure], group_size: usize) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..structures.len()).collect();
    order.sort_by_key(|&i| {
        let s = &structures[i];
        (s.layer_count(), s.layer_sizes.iter().sum::<usize>(), i)
    });
    order
        .chunks(group_size.max(1))
        .map(<[usize]>::to_vec)
        .collect()
}

fn checkpoint_path(dir: &Path, group: usize) -> std::path::PathBuf {
    dir.join(format!("group-{group:05}.json"))
}

fn read_checkpoint(path: &Path, ids: &[usize]) -> Option<GroupRows> {
    let bytes = std::fs::read(path).ok()?;
    let rows: GroupRows = serde_json::from_slice(&bytes).ok()?;
    // A group file from a different plan (other graphs or group size) is not reused.
    (rows.ids == ids).then_some(rows)
}

fn write_checkpoint(path: &Path, rows: &GroupRows) -> Result<(), StageError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| StageError::io(format!("cannot create {}", dir.display()), e))?;
    }
    let bytes = serde_json::to_vec(rows).map_err(StageError::failed)?;
    let temporary = path.with_extension("json.tmp");
    std::fs::write(&temporary, bytes)
        .map_err(|e| StageError::io(format!("cannot write {}", temporary.display()), e))?;
    std::fs::rename(&temporary, path)
        .map_err(|e| StageError::io(format!("cannot write {}", path.display()), e))
}

impl Plugin for TrainRandom {
    type Params = TrainRandomParams;
    const KIND: &'static str = "rnn.train_random";
    const VERSION: u32 = 1;
    const ABOUT: &'static str =
        "Train one randomly structured RNN/LSTM/GRU per graph (thesis §4), batched in groups";

    fn inputs(&self) -> InputSpec {
        InputSpec::Named(vec![
            InputDecl {
                name: "graphs",
                fan_in: false,
                required: true,
                about: "graphs.json from graph.random",
            },
            InputDecl {
                name: "data",
                fan_in: false,
                required: true,
                about: "dataset.csv (string,valid,split) from data.reber or data.csv",
            },
        ])
    }

    fn outputs(&self, _: &TrainRandomParams) -> Vec<OutputDecl> {
        vec![
            OutputDecl::new("results", "results.csv"),
            OutputDecl::new("metrics", "metrics.csv"),
        ]
    }

    fn threads(&self, params: &TrainRandomParams) -> usize {
        params.threads
    }

    fn check(&self, p: &TrainRandomParams) -> Result<(), (String, String)> {
        for (name, value) in [
            ("epochs", p.epochs),
            ("batch_size", p.batch_size),
            ("group_size", p.group_size),
            ("threads", p.threads),
        ] {
            if value == 0 {
                return Err((name.into(), "must be at least 1".into()));
            }
        }
        if p.limit == Some(0) {
            return Err(("limit".into(), "must be at least 1 when given".into()));
        }
        if p.lr.is_nan() || p.lr <= 0.0 {
            return Err(("lr".into(), format!("must be positive, got {}", p.lr)));
        }
        if p.clip.is_nan() || p.clip < 0.0 {
            return Err((
                "clip".into(),
                format!("must be non-negative (0 disables), got {}", p.clip),
            ));
        }
        Ok(())
    }

    fn run(&self, params: TrainRandomParams, ctx: &mut StageContext<'_>) -> Result<(), StageError> {
        tch::set_num_threads(params.threads as i32);
        let graphs = select_graphs(read_graphs(ctx.input("graphs")?)?, params.limit);
        if graphs.is_empty() {
            return Err(StageError::Failed(format!(
                "{} holds no graphs",
                ctx.input("graphs")?.display()
            )));
        }
        let (train, test) = load_examples(ctx.input("data")?)?;
        let structures = graphs
            .iter()
            .map(|g| {
                NetworkStructure::from_graph(g)
                    .map_err(|e| StageError::Failed(format!("graph {}: {e}", g.id)))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let groups = plan_groups(&structures, params.group_size);
        let clip = (params.clip > 0.0).then_some(params.clip);
        let mut finished: Vec<GroupRows> = Vec::with_capacity(groups.len());
        let mut resumed = 0usize;
        for (index, members) in groups.iter().enumerate() {
            let ids: Vec<usize> = members.iter().map(|&m| graphs[m].id).collect();
            let path = checkpoint_path(&ctx.checkpoint_dir, index);
            if let Some(rows) = read_checkpoint(&path, &ids) {
                resumed += 1;
                finished.push(rows);
                continue;
            }
            let started = Instant::now();
            let networks = members
                .iter()
                .map(|&m| {
                    RandomNetwork::new(
                        structures[m].clone(),
                        params.variant,
                        params.readout,
                        network_seed(ctx.seed, graphs[m].id),
                    )
                })
                .collect::<Result<Vec<_>, _>>()
                .map_err(StageError::failed)?;
            let group = NetworkGroup::from_networks(&networks).map_err(StageError::failed)?;
            drop(networks);
            let adam_config = AdamConfig {
                lr: params.lr,
                ..AdamConfig::default()
            };
            let mut adam =
                Adam::new(group.named_parameters(), adam_config).map_err(StageError::failed)?;
            let mut metrics: Vec<Vec<Vec<String>>> = vec![Vec::new(); members.len()];
            let mut last = None;
            for epoch in 1..=params.epochs {
                let trained = train_group_epoch(
                    &group,
                    &mut adam,
                    &train,
                    params.batch_size,
                    clip,
                    ctx.seed,
                    epoch as u64,
                )
                .map_err(StageError::failed)?;
                let tested =
                    evaluate_group(&group, &test, params.batch_size).map_err(StageError::failed)?;
                for (k, rows) in metrics.iter_mut().enumerate() {
                    rows.push(vec![
                        ids[k].to_string(),
                        epoch.to_string(),
                        trained.losses[k].to_string(),
                        trained.accuracies[k].to_string(),
                        tested.losses[k].to_string(),
                        tested.accuracies[k].to_string(),
                    ]);
                }
                ctx.progress(&format!(
                    "group {}/{} ({} networks) epoch {epoch}/{}",
                    index + 1,
                    groups.len(),
                    members.len(),
                    params.epochs
                ));
                last = Some((trained, tested));
            }
            let (trained, tested) =
                last.ok_or_else(|| StageError::Failed("no epoch was run".into()))?;
            let share = started.elapsed().as_secs_f64() / members.len() as f64;
            let results = members
                .iter()
                .enumerate()
                .map(|(k, &m)| {
                    vec![
                        ids[k].to_string(),
                        graphs[m].family.name().to_string(),
                        tested.accuracies[k].to_string(),
                        tested.losses[k].to_string(),
                        trained.accuracies[k].to_string(),
                        format!("{share:.3}"),
                    ]
                })
                .collect();
            let rows = GroupRows {
                ids,
                results,
                metrics: metrics.into_iter().flatten().collect(),
            };
            write_checkpoint(&path, &rows)?;
            finished.push(rows);
        }
        if resumed > 0 {
            tracing::info!(
                "{}: resumed {resumed} of {} groups from checkpoints",
                ctx.instance,
                groups.len()
            );
        }
        write_outputs(ctx, &graphs, &finished)
    }
}

/// Writes `results.csv` and `metrics.csv` in graph-file order and records summary metrics.
fn write_outputs(
    ctx: &mut StageContext<'_>,
    graphs: &[Graph],
    finished: &[GroupRows],
) -> Result<(), StageError> {
    let mut by_id: std::collections::HashMap<usize, (&Vec<String>, Vec<&Vec<String>>)> =
        std::collections::HashMap::new();
    for rows in finished {
        for result in &rows.results {
            let id: usize = result
                .first()
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| StageError::Failed("corrupt group checkpoint".into()))?;
            let metrics = rows
                .metrics
                .iter()
                .filter(|m| m.first() == result.first())
                .collect();
            by_id.insert(id, (result, metrics));
        }
    }
    let mut results =
        csv::Writer::from_path(ctx.output("results.csv")).map_err(StageError::failed)?;
    let mut metrics =
        csv::Writer::from_path(ctx.output("metrics.csv")).map_err(StageError::failed)?;
    results
        .write_record(RESULT_COLUMNS)
        .map_err(StageError::failed)?;
    metrics
        .write_record(METRIC_COLUMNS)
        .map_err(StageError::failed)?;
    let mut accuracies: std::collections::BTreeMap<&str, Vec<f64>> =
        std::collections::BTreeMap::new();
    for graph in graphs {
        let (result, epochs) = by_id
            .get(&graph.id)
            .ok_or_else(|| StageError::Failed(format!("no result for graph {}", graph.id)))?;
        results.write_record(*result).map_err(StageError::failed)?;
        for row in epochs {
            metrics.write_record(*row).map_err(StageError::failed)?;
        }
        if let Some(acc) = result.get(2).and_then(|s| s.parse::<f64>().ok()) {
            accuracies.entry(graph.family.name()).or_default().push(acc);
        }
    }
    results
        .flush()
        .map_err(|e| StageError::io("cannot write results.csv", e))?;
    metrics
        .flush()
        .map_err(|e| StageError::io("cannot write metrics.csv", e))?;
    let mean = |values: &[f64]| values.iter().sum::<f64>() / values.len().max(1) as f64;
    let all: Vec<f64> = accuracies.values().flatten().copied().collect();
    let mut summary = serde_json::json!({ "networks": all.len(), "mean_test_acc": mean(&all) });
    for (family, values) in &accuracies {
        summary[format!("mean_test_acc_{family}")] = serde_json::json!(mean(values));
    }
    ctx.set_metrics(summary);
    Ok(())
}
