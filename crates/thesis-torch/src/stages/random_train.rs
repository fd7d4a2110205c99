//! `rnn.train_random`'s computation: the networks of a `graphs.json`, trained group by group
//! (natively in parallel, or as padded libtorch groups), each finished group checkpointed.

use std::path::Path;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::nn::native::{test_batches, train_and_evaluate_epoch, NativeNetwork, TrainingSettings};
use crate::nn::random::{
    evaluate_group, network_seed, train_group_epoch, NetworkGroup, NetworkStructure, RandomNetwork,
};
use crate::nn::{defaults, load_examples, Adam};
use pipe_engine::stage::{StageContext, StageError};
use pipe_thesis::graph::Graph;
use pipe_thesis::stages::random_train::{RandomEngine, TrainRandomParams};

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
    let mut taken: std::collections::BTreeMap<pipe_thesis::graph::GraphFamily, usize> =
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
    pipe_engine::atomic::write_atomic(path, &bytes)
        .map_err(|e| StageError::io(format!("cannot write {}", path.display()), e))
}

/// Trains the networks of an `rnn.train_random` instance and writes its outputs (the plugin is
/// [`pipe_thesis::stages::random_train::TrainRandom`]).
pub fn run(params: TrainRandomParams, ctx: &mut StageContext<'_>) -> Result<(), StageError> {
    // Held for the whole run: the tensor engine computes on libtorch with `threads` threads.
    let _torch = crate::nn::TorchThreads::acquire(params.threads);
    let device = super::torch_device(params.device, ctx)?;
    let graphs = select_graphs(
        crate::graph::read_graphs(ctx.input("graphs")?).map_err(StageError::failed)?,
        params.limit,
    );
    if graphs.is_empty() {
        return Err(StageError::Failed(format!(
            "{} holds no graphs",
            ctx.input("graphs")?.display()
        )));
    }
    let (train, test) = load_examples(ctx.input("data")?).map_err(StageError::failed)?;
    let structures = graphs
        .iter()
        .map(|g| {
            NetworkStructure::from_graph(g)
                .map_err(|e| StageError::Failed(format!("graph {}: {e}", g.id)))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let groups = crate::nn::random::plan_groups(&structures, params.group_size);
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
        let report = |epoch: usize| {
            ctx.progress(&format!(
                "group {}/{} ({} networks) epoch {epoch}/{}",
                index + 1,
                groups.len(),
                members.len(),
                params.epochs
            ))
        };
        let history = match params.engine {
            RandomEngine::Native => {
                train_native(&networks, &params, &train, &test, ctx.seed, report)?
            }
            RandomEngine::Tensor => {
                train_tensor(&networks, &params, &train, &test, ctx.seed, device, report)?
            }
        };
        drop(networks);
        let mut metrics: Vec<Vec<String>> = Vec::new();
        for (k, epochs) in history.iter().enumerate() {
            for (epoch, row) in epochs.iter().enumerate() {
                metrics.push(vec![
                    ids[k].to_string(),
                    (epoch + 1).to_string(),
                    row.train_loss.to_string(),
                    row.train_acc.to_string(),
                    row.test_loss.to_string(),
                    row.test_acc.to_string(),
                ]);
            }
        }
        let share = started.elapsed().as_secs_f64() / members.len() as f64;
        let results = members
            .iter()
            .zip(&history)
            .enumerate()
            .map(|(k, (&m, epochs))| {
                let last = epochs
                    .last()
                    .ok_or_else(|| StageError::Failed("no epoch was run".into()))?;
                Ok(vec![
                    ids[k].to_string(),
                    graphs[m].family.name().to_string(),
                    last.test_acc.to_string(),
                    last.test_loss.to_string(),
                    last.train_acc.to_string(),
                    format!("{share:.3}"),
                ])
            })
            .collect::<Result<Vec<_>, StageError>>()?;
        let rows = GroupRows {
            ids,
            results,
            metrics,
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

/// One network's numbers after one epoch.
#[derive(Debug, Clone, Copy)]
struct EpochRow {
    train_loss: f64,
    train_acc: f64,
    test_loss: f64,
    test_acc: f64,
}

/// Trains a group with the native kernels; per network, one row per epoch.
fn train_native(
    networks: &[RandomNetwork],
    params: &TrainRandomParams,
    train: &[crate::nn::Example],
    test: &[crate::nn::Example],
    seed: u64,
    report: impl Fn(usize),
) -> Result<Vec<Vec<EpochRow>>, StageError> {
    let mut natives = networks
        .iter()
        .map(|n| NativeNetwork::from_reference(n, params.readout))
        .collect::<Result<Vec<_>, _>>()
        .map_err(StageError::failed)?;
    let settings = TrainingSettings {
        batch_size: params.batch_size,
        clip_norm: defaults::clip_norm(params.clip),
        adam: defaults::adam(params.lr),
        shuffle_seed: seed,
    };
    // Networks run in parallel on a pool of exactly `threads` threads (the slots the executor
    // granted), not rayon's global pool.
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(params.threads)
        .build()
        .map_err(StageError::failed)?;
    let test = test_batches(test, params.batch_size).map_err(StageError::failed)?;
    let mut history = vec![Vec::with_capacity(params.epochs); networks.len()];
    for epoch in 1..=params.epochs {
        let passes = pool
            .install(|| {
                train_and_evaluate_epoch(&mut natives, train, &test, &settings, epoch as u64)
            })
            .map_err(StageError::failed)?;
        for (rows, (trained, tested)) in history.iter_mut().zip(passes) {
            rows.push(EpochRow {
                train_loss: trained.loss,
                train_acc: trained.accuracy,
                test_loss: tested.loss,
                test_acc: tested.accuracy,
            });
        }
        report(epoch);
    }
    Ok(history)
}

/// Trains a group as one padded libtorch program; per network, one row per epoch.
fn train_tensor(
    networks: &[RandomNetwork],
    params: &TrainRandomParams,
    train: &[crate::nn::Example],
    test: &[crate::nn::Example],
    seed: u64,
    device: tch::Device,
    report: impl Fn(usize),
) -> Result<Vec<Vec<EpochRow>>, StageError> {
    let group = NetworkGroup::from_networks(networks)
        .and_then(|g| g.into_device(device))
        .map_err(StageError::failed)?;
    let mut adam = Adam::new(group.named_parameters(), defaults::adam(params.lr))
        .map_err(StageError::failed)?;
    let clip = defaults::clip_norm(params.clip);
    let mut history = vec![Vec::with_capacity(params.epochs); networks.len()];
    for epoch in 1..=params.epochs {
        let trained = train_group_epoch(
            &group,
            &mut adam,
            train,
            params.batch_size,
            clip,
            seed,
            epoch as u64,
        )
        .map_err(StageError::failed)?;
        let tested = evaluate_group(&group, test, params.batch_size).map_err(StageError::failed)?;
        for (k, rows) in history.iter_mut().enumerate() {
            rows.push(EpochRow {
                train_loss: trained.losses[k],
                train_acc: trained.accuracies[k],
                test_loss: tested.losses[k],
                test_acc: tested.accuracies[k],
            });
        }
        report(epoch);
    }
    Ok(history)
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
