//! One pruning sweep: prune a trained model at every level, evaluate, and retrain each level
//! with its mask fixed (thesis experiment 2, SPEC §3), checkpointing every finished epoch so a
//! killed sweep resumes. Three retraining strategies compute the same mathematics: native
//! ([`NativeNetwork`], levels in parallel), sequential (libtorch, one level after the other) and
//! batched (all levels as one [`StackedModels`] program).

use std::path::{Path, PathBuf};
use std::time::Instant;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::native::{test_batches, NativeBatch, NativeNetwork, NativePass};
use super::prune::within_tolerance;
use super::{
    epoch_order, magnitude_masks, pruned_copy, sparsity, Adam, AdamConfig, EpochMetrics, Example,
    NnResult, PruneTarget, RecurrentModel, StackedModels, ThresholdScope,
};

/// Why a sweep stopped.
#[derive(Debug, thiserror::Error)]
pub enum SweepError {
    #[error("{0}")]
    Failed(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl SweepError {
    pub fn failed(error: impl std::fmt::Display) -> Self {
        SweepError::Failed(error.to_string())
    }

    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        SweepError::Io {
            context: context.into(),
            source,
        }
    }
}

pub use pipe_thesis::model::Strategy;

/// Everything a sweep needs besides the model and the data.
#[derive(Debug, Clone)]
pub struct SweepSettings {
    /// Where the pruned models retrain (`native` is CPU-only; `auto` batches elsewhere).
    pub device: tch::Device,
    pub target: PruneTarget,
    pub scope: ThresholdScope,
    pub levels: Vec<u32>,
    pub epochs: usize,
    pub batch_size: usize,
    pub lr: f64,
    pub clip: Option<f64>,
    pub strategy: Strategy,
    /// Levels retrained in parallel by the native strategy.
    pub threads: usize,
    pub shuffle_seed: u64,
}

/// The retraining order's seed, derived from the stage seed. It does not depend on the level:
/// batched levels share their batches, and a shared order makes the levels a paired comparison.
/// It differs from the seed itself so retraining does not replay the base run's epoch orders.
pub fn shuffle_seed(seed: u64) -> u64 {
    let mut hasher = blake3::Hasher::new();
    hasher.update(b"rnn.prune retraining order");
    hasher.update(&seed.to_le_bytes());
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&hasher.finalize().as_bytes()[..8]);
    u64::from_le_bytes(bytes)
}

/// One retrained level: its measured sparsity and curve (row 0 = right after pruning).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LevelResult {
    pub level: u32,
    pub sparsity: f64,
    pub history: Vec<EpochMetrics>,
}

/// Which of a sweep's two data sets is evaluated; each is the same data for the whole sweep.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum DataSet {
    Train,
    Test,
}

/// A set of pruned models retrained together (one level, or all levels when batched).
trait Retraining {
    fn evaluate(
        &mut self,
        set: DataSet,
        data: &[Example],
        batch_size: usize,
    ) -> NnResult<Vec<(f64, f64)>>;
    fn train_epoch(
        &mut self,
        data: &[Example],
        settings: &SweepSettings,
        epoch: u64,
    ) -> NnResult<Vec<(f64, f64)>>;
    fn save(&self, dir: &Path) -> NnResult<()>;
    fn load(&mut self, dir: &Path) -> NnResult<()>;
    fn save_member(&self, index: usize, path: &Path) -> NnResult<()>;
}

const MODELS_FILE: &str = "models.safetensors";
const ADAM_FILE: &str = "adam.safetensors";
const PROGRESS_FILE: &str = "progress.json";
const LATEST_FILE: &str = "latest.json";

struct SingleLevel {
    model: RecurrentModel,
    adam: Adam,
}

impl Retraining for SingleLevel {
    fn evaluate(
        &mut self,
        _: DataSet,
        data: &[Example],
        batch_size: usize,
    ) -> NnResult<Vec<(f64, f64)>> {
        Ok(vec![super::evaluate(&self.model, data, batch_size)?])
    }

    fn train_epoch(
        &mut self,
        data: &[Example],
        s: &SweepSettings,
        epoch: u64,
    ) -> NnResult<Vec<(f64, f64)>> {
        let result = super::train_epoch(
            &mut self.model,
            &mut self.adam,
            data,
            s.batch_size,
            s.clip,
            s.shuffle_seed,
            epoch,
        )?;
        Ok(vec![result])
    }

    fn save(&self, dir: &Path) -> NnResult<()> {
        self.model.save(&dir.join(MODELS_FILE))?;
        self.adam.save(&dir.join(ADAM_FILE))
    }

    fn load(&mut self, dir: &Path) -> NnResult<()> {
        self.model.load_values(&dir.join(MODELS_FILE))?;
        self.adam.load(&dir.join(ADAM_FILE))
    }

    fn save_member(&self, _index: usize, path: &Path) -> NnResult<()> {
        self.model.save(path)
    }
}

struct Batched {
    models: StackedModels,
    adam: Adam,
}

impl Retraining for Batched {
    fn evaluate(
        &mut self,
        _: DataSet,
        data: &[Example],
        batch_size: usize,
    ) -> NnResult<Vec<(f64, f64)>> {
        self.models.evaluate(data, batch_size)
    }

    fn train_epoch(
        &mut self,
        data: &[Example],
        s: &SweepSettings,
        epoch: u64,
    ) -> NnResult<Vec<(f64, f64)>> {
        self.models.train_epoch(
            &mut self.adam,
            data,
            s.batch_size,
            s.clip,
            s.shuffle_seed,
            epoch,
        )
    }

    fn save(&self, dir: &Path) -> NnResult<()> {
        self.models.save(&dir.join(MODELS_FILE))?;
        self.adam.save(&dir.join(ADAM_FILE))
    }

    fn load(&mut self, dir: &Path) -> NnResult<()> {
        self.models.load_values(&dir.join(MODELS_FILE))?;
        self.adam.load(&dir.join(ADAM_FILE))
    }

    fn save_member(&self, index: usize, path: &Path) -> NnResult<()> {
        self.models.save_member(index, path)
    }
}

/// Every level as a native network; `models` are the pruned libtorch models the networks were
/// built from, which receive the retrained values when a level is stored.
struct NativeLevels {
    networks: Vec<NativeNetwork>,
    models: Vec<RecurrentModel>,
    adam: AdamConfig,
    pool: rayon::ThreadPool,
    /// The batches of each data set evaluated so far (the test set every epoch, the training
    /// set at epoch 0), built once.
    evaluation: Vec<EvaluationBatches>,
}

/// A data set's evaluation batches, by data set and batch size.
struct EvaluationBatches {
    key: (DataSet, usize),
    batches: Vec<NativeBatch>,
}

impl NativeLevels {
    fn state_file(dir: &Path, index: usize) -> PathBuf {
        dir.join(format!("native-{index:03}.safetensors"))
    }
}

/// Runs `run` on every network in parallel on `pool`; (loss, accuracy) per network.
fn native_passes(
    networks: &mut [NativeNetwork],
    pool: &rayon::ThreadPool,
    run: impl Fn(&mut NativeNetwork) -> NativePass + Sync,
) -> Vec<(f64, f64)> {
    pool.install(|| {
        networks
            .par_iter_mut()
            .map(|network| {
                let pass = run(network);
                (pass.loss, pass.accuracy)
            })
            .collect()
    })
}

impl Retraining for NativeLevels {
    fn evaluate(
        &mut self,
        set: DataSet,
        data: &[Example],
        batch_size: usize,
    ) -> NnResult<Vec<(f64, f64)>> {
        let key = (set, batch_size);
        let Self {
            networks,
            pool,
            evaluation,
            ..
        } = self;
        let position = match evaluation.iter().position(|e| e.key == key) {
            Some(position) => position,
            None => {
                evaluation.push(EvaluationBatches {
                    key,
                    batches: test_batches(data, batch_size)?,
                });
                evaluation.len() - 1
            }
        };
        let batches = &evaluation[position].batches;
        Ok(native_passes(networks, pool, |network| {
            network.evaluate(batches)
        }))
    }

    fn train_epoch(
        &mut self,
        data: &[Example],
        s: &SweepSettings,
        epoch: u64,
    ) -> NnResult<Vec<(f64, f64)>> {
        // The order of `nn::train_epoch`, so the strategies see the same batches.
        let order = epoch_order(data.len(), s.shuffle_seed, epoch);
        let batches = NativeBatch::all(data, &order, s.batch_size)?;
        let adam = self.adam;
        Ok(native_passes(&mut self.networks, &self.pool, |network| {
            network.train_epoch(&batches, s.clip, &adam)
        }))
    }

    fn save(&self, dir: &Path) -> NnResult<()> {
        for (index, network) in self.networks.iter().enumerate() {
            network.save_state(&Self::state_file(dir, index))?;
        }
        Ok(())
    }

    fn load(&mut self, dir: &Path) -> NnResult<()> {
        for (index, network) in self.networks.iter_mut().enumerate() {
            network.load_state(&Self::state_file(dir, index))?;
        }
        Ok(())
    }

    fn save_member(&self, index: usize, path: &Path) -> NnResult<()> {
        let (network, model) = (&self.networks[index], &self.models[index]);
        network.write_parameters_into(model)?;
        model.save(path)
    }
}

/// What a group checkpoint records besides tensors.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct GroupProgress {
    levels: Vec<u32>,
    sparsities: Vec<f64>,
    /// Per member: rows done so far (row k = epoch k; row 0 = right after pruning).
    histories: Vec<Vec<EpochMetrics>>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct LatestGroupState {
    levels: Vec<u32>,
    rows_done: usize,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SweepError + '_ {
    move |e| SweepError::io(path.display().to_string(), e)
}

/// Writes JSON through a temporary file and a rename (a crash never leaves half a file).
fn write_json_atomic<T: Serialize>(path: &Path, value: &T) -> Result<(), SweepError> {
    let text = serde_json::to_vec_pretty(value).map_err(SweepError::failed)?;
    pipe_engine::atomic::write_atomic(path, &text).map_err(io(path))
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T, SweepError> {
    let text = std::fs::read(path).map_err(io(path))?;
    serde_json::from_slice(&text)
        .map_err(|e| SweepError::Failed(format!("{}: {e}", path.display())))
}

fn finished_json(dir: &Path, level: u32) -> PathBuf {
    dir.join("finished").join(format!("p{level}.json"))
}

/// Where a finished level's retrained model waits until the outputs are written.
pub fn finished_model(dir: &Path, level: u32) -> PathBuf {
    dir.join("finished").join(format!("p{level}.safetensors"))
}

/// Prunes `base` at every level of `settings` and retrains, resuming from and checkpointing to
/// `checkpoint_dir`. Returns the levels in the order given; each finished model is at
/// [`finished_model`].
pub fn run_sweep(
    base: &RecurrentModel,
    train: &[Example],
    test: &[Example],
    settings: &SweepSettings,
    checkpoint_dir: &Path,
    progress: &dyn Fn(&str),
) -> Result<Vec<LevelResult>, SweepError> {
    let finished_dir = checkpoint_dir.join("finished");
    std::fs::create_dir_all(&finished_dir).map_err(io(&finished_dir))?;
    let pending: Vec<u32> = settings
        .levels
        .iter()
        .copied()
        .filter(|&level| !finished_json(checkpoint_dir, level).exists())
        .collect();
    if pending.len() < settings.levels.len() {
        tracing::info!(
            "resuming: {} of {} levels already retrained",
            settings.levels.len() - pending.len(),
            settings.levels.len()
        );
    }
    let strategy = match (settings.strategy, settings.device) {
        // On a GPU one batched program for all levels is the point; native cannot run there.
        (Strategy::Auto, tch::Device::Cuda(_)) => Strategy::Batched,
        (Strategy::Native, tch::Device::Cuda(_)) => {
            return Err(SweepError::failed(
                "the native strategy computes on the CPU only; use `batched` on a GPU",
            ))
        }
        (chosen, _) => chosen.resolve(),
    };
    let groups: Vec<Vec<u32>> = match strategy {
        Strategy::Batched | Strategy::Native if !pending.is_empty() => vec![pending],
        Strategy::Batched | Strategy::Native => Vec::new(),
        Strategy::Sequential | Strategy::Auto => {
            pending.into_iter().map(|level| vec![level]).collect()
        }
    };
    for levels in groups {
        let mut pruned = Vec::with_capacity(levels.len());
        let mut sparsities = Vec::with_capacity(levels.len());
        for &level in &levels {
            let masks = magnitude_masks(base, settings.target, settings.scope, f64::from(level))
                .map_err(SweepError::failed)?;
            let model = pruned_copy(base, &masks).map_err(SweepError::failed)?;
            sparsities.push(sparsity(&model, settings.target).map_err(SweepError::failed)?);
            // Native levels read their values from CPU models.
            let model = match strategy {
                Strategy::Native => model,
                _ => model
                    .into_device(settings.device)
                    .map_err(SweepError::failed)?,
            };
            pruned.push(model);
        }
        let adam_config = AdamConfig {
            lr: settings.lr,
            ..AdamConfig::default()
        };
        let mut group: Box<dyn Retraining> = match strategy {
            Strategy::Sequential | Strategy::Auto => {
                let model = pruned.remove(0);
                let adam =
                    Adam::new(model.named_parameters(), adam_config).map_err(SweepError::failed)?;
                Box::new(SingleLevel { model, adam })
            }
            Strategy::Batched => {
                let models = StackedModels::from_models(&pruned).map_err(SweepError::failed)?;
                let adam = Adam::new(models.named_parameters(), adam_config)
                    .map_err(SweepError::failed)?;
                Box::new(Batched { models, adam })
            }
            Strategy::Native => {
                let networks = pruned
                    .iter()
                    .map(NativeNetwork::from_model)
                    .collect::<NnResult<Vec<_>>>()
                    .map_err(SweepError::failed)?;
                // Exactly `threads` threads (the slots the executor granted), not rayon's
                // global pool.
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(settings.threads)
                    .build()
                    .map_err(SweepError::failed)?;
                Box::new(NativeLevels {
                    networks,
                    models: pruned,
                    adam: adam_config,
                    pool,
                    evaluation: Vec::new(),
                })
            }
        };
        retrain_group(
            group.as_mut(),
            &levels,
            &sparsities,
            train,
            test,
            settings,
            checkpoint_dir,
            progress,
        )?;
    }
    settings
        .levels
        .iter()
        .map(|&level| read_json(&finished_json(checkpoint_dir, level)))
        .collect()
}

/// Evaluates (epoch 0) and retrains one group, checkpointing after every epoch under
/// `checkpoint_dir/group`; when done, stores each level under `checkpoint_dir/finished`.
#[allow(clippy::too_many_arguments)]
fn retrain_group(
    group: &mut dyn Retraining,
    levels: &[u32],
    sparsities: &[f64],
    train: &[Example],
    test: &[Example],
    settings: &SweepSettings,
    checkpoint_dir: &Path,
    progress: &dyn Fn(&str),
) -> Result<(), SweepError> {
    let group_dir = checkpoint_dir.join("group");
    let latest_path = group_dir.join(LATEST_FILE);
    let mut state = GroupProgress {
        levels: levels.to_vec(),
        sparsities: sparsities.to_vec(),
        histories: vec![Vec::new(); levels.len()],
    };
    let resumable = latest_path.exists()
        && read_json::<LatestGroupState>(&latest_path)
            .map(|latest| latest.levels == levels)
            .unwrap_or(false);
    if resumable {
        let latest: LatestGroupState = read_json(&latest_path)?;
        let dir = group_dir.join(format!("rows-{:04}", latest.rows_done));
        group.load(&dir).map_err(SweepError::failed)?;
        state = read_json(&dir.join(PROGRESS_FILE))?;
        tracing::info!(
            "resuming levels {levels:?} after epoch {}",
            latest.rows_done.saturating_sub(1)
        );
    } else if group_dir.exists() {
        // Left by a group whose levels have all been stored since: stale.
        std::fs::remove_dir_all(&group_dir).map_err(io(&group_dir))?;
    }
    let members = levels.len() as f64;
    let first_row = state.histories.first().map_or(0, Vec::len);
    for epoch in first_row..=settings.epochs {
        let started = Instant::now();
        let train_metrics = if epoch == 0 {
            group.evaluate(DataSet::Train, train, settings.batch_size)
        } else {
            group.train_epoch(train, settings, epoch as u64)
        }
        .map_err(SweepError::failed)?;
        let test_metrics = group
            .evaluate(DataSet::Test, test, settings.batch_size)
            .map_err(SweepError::failed)?;
        // Batched levels share one wall clock: each row gets its share.
        let seconds = started.elapsed().as_secs_f64() / members;
        for (index, history) in state.histories.iter_mut().enumerate() {
            history.push(EpochMetrics {
                epoch,
                train_loss: train_metrics[index].0,
                train_acc: train_metrics[index].1,
                test_loss: test_metrics[index].0,
                test_acc: test_metrics[index].1,
                seconds,
            });
        }
        save_group(group, &state, &group_dir, epoch + 1)?;
        let accuracies: Vec<String> = test_metrics
            .iter()
            .map(|(_, acc)| format!("{acc:.3}"))
            .collect();
        progress(&format!(
            "levels {levels:?} epoch {epoch}/{} test acc {}",
            settings.epochs,
            accuracies.join(" ")
        ));
    }
    for (index, &level) in levels.iter().enumerate() {
        group
            .save_member(index, &finished_model(checkpoint_dir, level))
            .map_err(SweepError::failed)?;
        let result = LevelResult {
            level,
            sparsity: sparsities[index],
            history: state.histories[index].clone(),
        };
        // The JSON is the commit marker: written after the model.
        write_json_atomic(&finished_json(checkpoint_dir, level), &result)?;
    }
    std::fs::remove_dir_all(&group_dir).map_err(io(&group_dir))
}

/// Saves the group's tensors and progress under `rows-NNNN`, then points `latest.json` at it
/// (the commit point) and removes older states.
fn save_group(
    group: &dyn Retraining,
    state: &GroupProgress,
    group_dir: &Path,
    rows_done: usize,
) -> Result<(), SweepError> {
    let name = format!("rows-{rows_done:04}");
    let dir = group_dir.join(&name);
    if dir.exists() {
        std::fs::remove_dir_all(&dir).map_err(io(&dir))?;
    }
    std::fs::create_dir_all(&dir).map_err(io(&dir))?;
    group.save(&dir).map_err(SweepError::failed)?;
    write_json_atomic(&dir.join(PROGRESS_FILE), state)?;
    let latest = LatestGroupState {
        levels: state.levels.clone(),
        rows_done,
    };
    write_json_atomic(&group_dir.join(LATEST_FILE), &latest)?;
    for entry in std::fs::read_dir(group_dir).map_err(io(group_dir))? {
        let entry = entry.map_err(io(group_dir))?;
        let file_name = entry.file_name().to_string_lossy().into_owned();
        if file_name.starts_with("rows-") && file_name != name {
            std::fs::remove_dir_all(entry.path()).map_err(io(&entry.path()))?;
        }
    }
    Ok(())
}

/// One row of `summary.csv`.
#[derive(Debug, Clone, PartialEq)]
pub struct LevelSummary {
    pub level: u32,
    pub sparsity: f64,
    pub acc_after_prune: f64,
    pub best_acc_retrained: Option<f64>,
    pub epochs_to_regain: Option<usize>,
}

pub fn summarise(result: &LevelResult, unpruned_acc: f64, tolerance: f64) -> LevelSummary {
    let retrained = result.history.iter().filter(|m| m.epoch > 0);
    LevelSummary {
        level: result.level,
        sparsity: result.sparsity,
        acc_after_prune: result.history.first().map_or(f64::NAN, |m| m.test_acc),
        best_acc_retrained: retrained.clone().map(|m| m.test_acc).reduce(f64::max),
        // Epoch 0 counts: a level that never lost accuracy needs no retraining.
        epochs_to_regain: result
            .history
            .iter()
            .find(|m| within_tolerance(m.test_acc, unpruned_acc, tolerance))
            .map(|m| m.epoch),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::{self, EpochMetrics, Example, ModelConfig};

    fn row(epoch: usize, test_acc: f64) -> EpochMetrics {
        EpochMetrics {
            epoch,
            train_loss: 0.0,
            train_acc: 0.0,
            test_loss: 0.0,
            test_acc,
            seconds: 0.0,
        }
    }

    #[test]
    fn summary_finds_first_regaining_epoch_within_tolerance() {
        let result = LevelResult {
            level: 70,
            sparsity: 0.7,
            history: vec![row(0, 0.5), row(1, 0.97), row(2, 0.99), row(3, 0.985)],
        };
        let summary = summarise(&result, 1.0, 1.0);
        assert_eq!(summary.acc_after_prune, 0.5);
        assert_eq!(summary.best_acc_retrained, Some(0.99));
        assert_eq!(summary.epochs_to_regain, Some(2));
        assert_eq!(summarise(&result, 1.0, 0.5).epochs_to_regain, None);
        let never_lost = LevelResult {
            level: 10,
            sparsity: 0.1,
            history: vec![row(0, 1.0), row(1, 1.0)],
        };
        assert_eq!(summarise(&never_lost, 1.0, 1.0).epochs_to_regain, Some(0));
    }

    #[test]
    fn shuffle_seed_is_derived_and_stable() {
        assert_eq!(shuffle_seed(0), shuffle_seed(0));
        assert_ne!(shuffle_seed(0), shuffle_seed(1));
        assert_ne!(shuffle_seed(0), 0);
    }

    fn tiny_examples(count: usize) -> Vec<Example> {
        (0..count)
            .map(|i| {
                let text: String = (0..(4 + i % 4))
                    .map(|j| ['B', 'P', 'V', 'X', 'E'][(i * 3 + j) % 5])
                    .collect();
                Example::from_text(&text, (i % 2) as i64)
            })
            .collect()
    }

    fn without_seconds(results: &[LevelResult]) -> Vec<LevelResult> {
        let mut results = results.to_vec();
        for result in &mut results {
            for row in &mut result.history {
                row.seconds = 0.0;
            }
        }
        results
    }

    /// A sweep interrupted after any checkpoint (simulated by a panic in the progress callback,
    /// which runs right after each commit) resumes and ends with the same curves and model bytes.
    #[test]
    fn interrupted_sweep_resumes_to_identical_results() {
        check_resume(Strategy::Sequential);
    }

    #[test]
    fn interrupted_native_sweep_resumes_to_identical_results() {
        check_resume(Strategy::Native);
    }

    #[test]
    fn auto_is_native_on_the_cpu() {
        assert_eq!(Strategy::Auto.resolve(), Strategy::Native);
        assert_eq!(Strategy::Batched.resolve(), Strategy::Batched);
    }

    /// Known gap: a batched sweep resumed after a retraining epoch drifts by about 1e-4, which
    /// is why `sequential` is the default strategy.
    #[test]
    #[ignore = "known: batched resume after a retraining epoch drifts ~1e-4"]
    fn interrupted_batched_sweep_resumes_to_identical_results() {
        check_resume(Strategy::Batched);
    }

    fn check_resume(strategy: Strategy) {
        let _torch = nn::TorchThreads::acquire(1);
        let config = ModelConfig {
            variant: nn::Variant::RnnTanh,
            vocab_size: 128,
            embedding_dim: 4,
            hidden_size: 6,
            num_layers: 2,
            num_classes: 2,
            readout: nn::Readout::LastPadded,
            engine: nn::CellEngine::Loop,
            embedding_init: nn::EmbeddingInit::Normal,
        };
        let base = RecurrentModel::new(config, 2).unwrap();
        let (train, test) = (tiny_examples(30), tiny_examples(10));
        {
            let settings = SweepSettings {
                device: tch::Device::Cpu,
                target: PruneTarget::Hh,
                scope: ThresholdScope::Layer,
                levels: vec![30, 80],
                epochs: 2,
                batch_size: 8,
                lr: 0.01,
                clip: Some(1.0),
                strategy,
                threads: 2,
                shuffle_seed: shuffle_seed(9),
            };
            let reference_dir = tempfile::tempdir().unwrap();
            let reference = run_sweep(
                &base,
                &train,
                &test,
                &settings,
                reference_dir.path(),
                &|_| {},
            )
            .unwrap();
            assert_eq!(reference.len(), 2);
            let again_dir = tempfile::tempdir().unwrap();
            let again =
                run_sweep(&base, &train, &test, &settings, again_dir.path(), &|_| {}).unwrap();
            assert_eq!(
                without_seconds(&again),
                without_seconds(&reference),
                "{strategy:?} is not deterministic"
            );
            assert_eq!(reference[0].history.len(), 3);
            for stop_after in 1..4 {
                let dir = tempfile::tempdir().unwrap();
                let calls = std::cell::Cell::new(0);
                let interrupted = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    run_sweep(&base, &train, &test, &settings, dir.path(), &|_| {
                        calls.set(calls.get() + 1);
                        if calls.get() == stop_after {
                            panic!("simulated kill");
                        }
                    })
                }));
                assert!(interrupted.is_err());
                let resumed =
                    run_sweep(&base, &train, &test, &settings, dir.path(), &|_| {}).unwrap();
                assert_eq!(without_seconds(&resumed), without_seconds(&reference));
                for level in [30, 80] {
                    let a = std::fs::read(finished_model(dir.path(), level)).unwrap();
                    let b = std::fs::read(finished_model(reference_dir.path(), level)).unwrap();
                    assert!(a == b, "{strategy:?} stop {stop_after} p{level}");
                }
            }
        }
    }
}
