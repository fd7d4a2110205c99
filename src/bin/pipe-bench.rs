//! `make bench`: prints the engine's performance figures next to the obvious alternative.
//!
//! 1. No-op re-run of generated pipelines of 1,000 and 10,000 `cmd` instances: seconds from
//!    reading the file to deciding there is nothing to do (target: under 1 s at 10,000).
//! 2. Storing a 1 GiB artifact (hash + move into the cache) next to plain multi-threaded blake3
//!    over the same file (target: at least 80 % of its throughput).
//! 3. `rnn.prune` retraining: one variant's sweep of 10 levels × 1 epoch (plus the epoch-0
//!    evaluation) on 2,000 Reber sequences at the thesis's model size, all levels batched as one
//!    tensor program next to one level at a time, on one thread (`pipe-bench prune [variant]`).

use std::io::Write;
use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result};
use pipe::data::{reber, GeneratorParams, Split, TestSize};
use pipe::nn::{
    CellEngine, Example, ModelConfig, PruneTarget, RecurrentModel, ThresholdScope, Variant,
};
use pipe::stages::prune::{run_sweep, Strategy, SweepSettings};
use pipe::{Plan, RunOptions, Store};

fn main() -> Result<()> {
    let only = std::env::args().nth(1);
    let scratch = tempfile::Builder::new().prefix("pipe-bench").tempdir()?;
    if only.as_deref().is_none_or(|o| o == "noop") {
        for n in [1_000, 10_000] {
            noop_rerun(scratch.path(), n)?;
        }
    }
    if only.as_deref().is_none_or(|o| o == "hash") {
        hashing(scratch.path(), 1 << 30)?;
    }
    if only.as_deref().is_none_or(|o| o == "prune") {
        let variant = match std::env::args().nth(2) {
            Some(name) => name.parse().map_err(anyhow::Error::msg)?,
            None => Variant::Gru,
        };
        prune_sweep(scratch.path(), variant)?;
    }
    Ok(())
}

fn noop_rerun(root: &Path, instances: usize) -> Result<()> {
    let dir = root.join(format!("noop-{instances}"));
    std::fs::create_dir_all(&dir)?;
    let values: Vec<String> = (0..instances).map(|i| i.to_string()).collect();
    let yaml = format!(
        "stages:\n  gen:\n    uses: cmd\n    foreach:\n      i: [{}]\n    with:\n      run: 'echo ${{i}} > \"$PIPE_OUT/v.txt\"'\n      outputs: {{v: v.txt}}\n",
        values.join(", ")
    );
    let file = dir.join("pipeline.yaml");
    std::fs::write(&file, yaml)?;
    let store = Store::open(&dir.join("cache"))?;
    let options = RunOptions {
        jobs: std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2),
        force: Vec::new(),
        only: Vec::new(),
        artifacts: dir.join("artifacts"),
    };
    let started = Instant::now();
    let plan = Plan::load(&file)?;
    let first = pipe::run(&plan, &store, &options, &|_| {})?;
    let cold = started.elapsed().as_secs_f64();
    anyhow::ensure!(
        first.ran().len() == instances,
        "first run ran {}",
        first.ran().len()
    );

    let mut best = f64::INFINITY;
    let mut plan_seconds = 0.0;
    for _ in 0..3 {
        let started = Instant::now();
        let plan = Plan::load(&file)?;
        plan_seconds = started.elapsed().as_secs_f64();
        let again = pipe::run(&plan, &store, &options, &|_| {})?;
        anyhow::ensure!(
            again.ran().is_empty(),
            "no-op run executed {}",
            again.ran().len()
        );
        best = best.min(started.elapsed().as_secs_f64());
    }
    println!(
        "no-op re-run, {instances:>6} cmd instances: {best:.3} s (of which planning {plan_seconds:.3} s); \
         first run executing all: {cold:.1} s ({:.2} ms per instance)",
        cold * 1000.0 / instances as f64
    );
    Ok(())
}

fn hashing(root: &Path, bytes: usize) -> Result<()> {
    let path = root.join("big.bin");
    write_pseudo_random(&path, bytes)?;
    let gib = bytes as f64 / (1u64 << 30) as f64;

    let reference = best_of(3, || {
        let mut hasher = blake3::Hasher::new();
        hasher
            .update_mmap_rayon(&path)
            .context("blake3 reference")?;
        Ok(hasher.finalize())
    })?;
    let single = best_of(1, || Ok(pipe::store::hash_file(&path)?.0))?;
    let store = Store::open(&root.join("hash-cache"))?;
    let stored = best_of(3, || {
        // A fresh copy each time: storing moves the file into the cache.
        let staged = root.join("staged.bin");
        std::fs::hard_link(&path, &staged).context("stage copy")?;
        let record = store.put_output(&staged, "big.bin", "big")?;
        let object = store.object_path(&record.hash);
        let mut perms = std::fs::metadata(&object)?.permissions();
        #[allow(clippy::permissions_set_readonly_false)]
        perms.set_readonly(false);
        std::fs::set_permissions(&object, perms)?;
        std::fs::remove_file(&object)?;
        Ok(blake3::Hash::from_hex(&record.hash)?)
    })?;
    anyhow::ensure!(
        reference.1 == stored.1 && reference.1 == single.1,
        "hashes differ"
    );
    let gbps = |s: f64| gib * 1.073_741_824 / s;
    println!(
        "hash {gib:.0} GiB: pipe store {:.2} GB/s, plain blake3 (mmap+rayon) {:.2} GB/s, ratio {:.0} %; \
         single-threaded streaming {:.2} GB/s",
        gbps(stored.0),
        gbps(reference.0),
        100.0 * reference.0 / stored.0,
        gbps(single.0)
    );
    Ok(())
}

fn best_of(n: usize, mut f: impl FnMut() -> Result<blake3::Hash>) -> Result<(f64, blake3::Hash)> {
    let mut best = f64::INFINITY;
    let mut hash = blake3::Hash::from_bytes([0; 32]);
    for _ in 0..n {
        let started = Instant::now();
        hash = f()?;
        best = best.min(started.elapsed().as_secs_f64());
    }
    Ok((best, hash))
}

fn write_pseudo_random(path: &Path, bytes: usize) -> Result<()> {
    let mut file = std::io::BufWriter::new(std::fs::File::create(path)?);
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut block = vec![0u8; 1 << 20];
    for _ in 0..bytes / block.len() {
        for chunk in block.chunks_mut(8) {
            // xorshift64: incompressible bytes without a dependency.
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            chunk.copy_from_slice(&state.to_le_bytes());
        }
        file.write_all(&block)?;
    }
    file.flush()?;
    Ok(())
}

fn prune_sweep(root: &Path, variant: Variant) -> Result<()> {
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
    let (train, test) = (pick(Split::Train), pick(Split::Test));
    let config = ModelConfig {
        engine: CellEngine::fastest_on_cpu(variant),
        ..ModelConfig::thesis(variant)
    };
    // Timing does not depend on the values, so an untrained model stands in for a base model.
    let base = RecurrentModel::new(config, 0)?;
    let mut seconds = Vec::new();
    for strategy in [Strategy::Batched, Strategy::Sequential] {
        let settings = SweepSettings {
            target: PruneTarget::Both,
            scope: ThresholdScope::Global,
            levels: (1..=10).map(|step| step * 10).collect(),
            epochs: 1,
            batch_size: 32,
            lr: 0.001,
            clip: Some(5.0),
            strategy,
            shuffle_seed: 0,
        };
        let checkpoints = root.join(format!("prune-{strategy:?}"));
        let started = Instant::now();
        run_sweep(&base, &train, &test, &settings, &checkpoints, &|_| {})?;
        seconds.push(started.elapsed().as_secs_f64());
    }
    println!(
        "prune sweep, {variant} (E 50, H 50, 3 layers), 10 levels × 1 epoch + epoch-0 evaluation, \
         {} train / {} test sequences, 1 thread: batched {:.1} s, one level at a time {:.1} s, \
         ratio {:.2}×",
        train.len(),
        test.len(),
        seconds[0],
        seconds[1],
        seconds[1] / seconds[0]
    );
    Ok(())
}
