//! Engine figures: no-op re-runs of large generated pipelines, and hashing a 1 GiB output.

use std::io::Write;
use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result};
use pipe::{Plan, RunOptions, Store};

/// Both engine benchmarks: no-op re-runs at 1,000 and 10,000 instances, then 1 GiB hashing.
pub fn run(scratch: &Path) -> Result<()> {
    for n in [1_000, 10_000] {
        noop_rerun(scratch, n)?;
    }
    hashing(scratch, 1 << 30)
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
    let plan = Plan::load(&pipe_thesis_torch::registry(), &file)?;
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
        let plan = Plan::load(&pipe_thesis_torch::registry(), &file)?;
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
