//! `make bench`: prints performance figures, each next to the obvious alternative in the same run.
//!
//! `pipe-bench [SECTION] [ARGS]` runs one section; with no arguments, all of them.
//! - `engine`: no-op re-runs of 1,000 / 10,000 `cmd` instances (target < 1 s at 10,000) and
//!   storing a 1 GiB output vs plain multi-threaded blake3 (target ≥ 80 %).
//! - `train [sequences]`: one training epoch per variant, masked cells vs tch's fused built-ins.
//! - `kernels [sequences]`: the native kernels alone, per instruction-set path: one epoch of the
//!   thesis model and of 100 random networks per variant, and the pruned thesis model
//!   (`PIPE_BENCH_PARTS`, `PIPE_BENCH_VARIANTS` narrow it).
//! - `prune [variant [model.safetensors [dataset.csv]]]`: a 10-level pruning sweep: native levels
//!   vs libtorch batched levels vs one level at a time, of an untrained or the given model, on
//!   generated or the given data.
//! - `structure`: randomly structured networks: libtorch one at a time vs the native kernels vs
//!   padded libtorch groups, and the projected full sweep (about 5 min; `PIPE_BENCH_VARIANTS`,
//!   `PIPE_BENCH_GROUPS`, `PIPE_BENCH_ALONE`, `PIPE_BENCH_BATCHES` narrow or widen it).
//! - `scale`: no-op run, status, `exp show` and `diff` at 10,000 and 100,000 instances, each a
//!   whole `pipe` process with its peak memory (targets at 100,000: ≤ 1 s, ≤ 200 MB).
//! - `slurm [instances]`: 200 trivial instances through the local SLURM test cluster, one job
//!   array vs one job each (skipped without a cluster).

mod engine;
mod kernels;
mod prune;
mod slurm;
mod structure;
mod train;

use anyhow::{anyhow, Result};

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let section = args.next();
    let scratch = tempfile::Builder::new().prefix("pipe-bench").tempdir()?;
    let all = section.is_none();
    let wants = |name: &str| all || section.as_deref() == Some(name);
    if wants("engine") {
        engine::run(scratch.path())?;
    }
    if wants("scale") {
        // Driven from the small `pipe-bench-pipe`, so that this process's memory is not counted
        // in every measured peak (see its `scale` module).
        let driver = std::env::current_exe()?.with_file_name("pipe-bench-pipe");
        let status = std::process::Command::new(&driver)
            .env("PIPE_BENCH_SCALE", scratch.path())
            .status()
            .map_err(|e| anyhow!("cannot start {}: {e}", driver.display()))?;
        if !status.success() {
            return Err(anyhow!("the scale benchmark failed ({status})"));
        }
    }
    if wants("train") {
        let sequences = args.next().map(|a| a.parse()).transpose()?.unwrap_or(2_000);
        train::run(sequences).map_err(|e| anyhow!("{e}"))?;
    }
    if wants("kernels") {
        let sequences = args.next().map(|a| a.parse()).transpose()?.unwrap_or(2_000);
        kernels::run(sequences)?;
    }
    if wants("slurm") {
        let instances = args.next().map(|a| a.parse()).transpose()?.unwrap_or(200);
        slurm::run(scratch.path(), instances)?;
    }
    if wants("prune") {
        let variant = match args.next() {
            Some(name) => name.parse().map_err(anyhow::Error::msg)?,
            None => pipe_thesis_torch::nn::Variant::Gru,
        };
        let trained = args.next().map(std::path::PathBuf::from);
        let data = args.next().map(std::path::PathBuf::from);
        prune::run(scratch.path(), variant, trained.as_deref(), data.as_deref())?;
    }
    if wants("structure") {
        structure::run()?;
    }
    if let Some(name) = section.filter(|s| {
        ![
            "engine",
            "scale",
            "train",
            "kernels",
            "prune",
            "structure",
            "slurm",
        ]
        .contains(&s.as_str())
    }) {
        anyhow::bail!(
            "unknown section `{name}`; sections: engine, scale, train, kernels, prune, structure, slurm"
        );
    }
    Ok(())
}
