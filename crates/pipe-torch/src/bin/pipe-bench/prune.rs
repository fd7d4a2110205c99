//! `rnn.prune` retraining: one variant's sweep of 10 levels × 1 epoch (plus the epoch-0
//! evaluation), natively, as one batched tensor program and one level at a time on libtorch,
//! all on one thread.

use std::path::Path;
use std::time::Instant;

use anyhow::Result;
use pipe::data::{reber, GeneratorParams, Split, TestSize};
use pipe_thesis_torch::nn::load_examples;
use pipe_thesis_torch::nn::sweep::{run_sweep, Strategy, SweepSettings};
use pipe_thesis_torch::nn::{
    CellEngine, Example, ModelConfig, PruneTarget, RecurrentModel, ThresholdScope, Variant,
};

/// `trained`: a base model to prune instead of an untrained one; `data`: a dataset.csv (e.g.
/// the thesis's) to take the first 1,500 training and 500 test sequences from instead of
/// generated ones.
pub fn run(
    root: &Path,
    variant: Variant,
    trained: Option<&Path>,
    data: Option<&Path>,
) -> Result<()> {
    tch::set_num_threads(1);
    let dataset = reber::generate(&GeneratorParams {
        total: 2_000,
        test: TestSize::Count(500),
        ..GeneratorParams::default()
    })?;
    let pick = |split: Split| -> Vec<Example> {
        dataset
            .split_rows(split)
            .map(|row| Example::from_text(&row.string, i64::from(row.valid)))
            .collect()
    };
    let (train, test) = match data {
        Some(path) => {
            let (mut train, mut test) = load_examples(path)?;
            train.truncate(1_500);
            test.truncate(500);
            (train, test)
        }
        None => (pick(Split::Train), pick(Split::Test)),
    };
    let config = ModelConfig {
        engine: CellEngine::fastest_on_cpu(variant),
        ..ModelConfig::thesis(variant)
    };
    let base = match trained {
        Some(path) => RecurrentModel::load(config, path)?,
        None => RecurrentModel::new(config, 0)?,
    };
    let mut seconds = Vec::new();
    for strategy in [Strategy::Native, Strategy::Batched, Strategy::Sequential] {
        let settings = SweepSettings {
            device: tch::Device::Cpu,
            target: PruneTarget::Both,
            scope: ThresholdScope::Global,
            levels: (1..=10).map(|step| step * 10).collect(),
            epochs: 1,
            batch_size: 32,
            lr: 0.001,
            clip: Some(5.0),
            strategy,
            threads: 1,
            shuffle_seed: 0,
        };
        let checkpoints = root.join(format!("prune-{strategy:?}"));
        let started = Instant::now();
        run_sweep(&base, &train, &test, &settings, &checkpoints, &|_| {})?;
        seconds.push(started.elapsed().as_secs_f64());
    }
    println!(
        "prune sweep, {variant} (E 50, H 50, 3 layers), 10 levels × 1 epoch + epoch-0 evaluation, \
         {} train / {} test sequences, 1 thread: native {:.1} s, libtorch batched {:.1} s, \
         libtorch one level at a time {:.1} s; native is {:.1}× one level at a time and {:.1}× \
         batched",
        train.len(),
        test.len(),
        seconds[0],
        seconds[1],
        seconds[2],
        seconds[2] / seconds[0],
        seconds[1] / seconds[0]
    );
    Ok(())
}
