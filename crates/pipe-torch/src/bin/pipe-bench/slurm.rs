//! SLURM figures: 200 trivial `cmd` instances through the local test cluster, submitted as one
//! job array vs one job per instance: seconds from start to all done, and the coordinator's own
//! time (job descriptions, `sbatch`, `squeue`) per instance. Skips when no cluster answers.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use pipe::exec::{slurm, Executor, SlurmOptions, SlurmStats};
use pipe::spec::SlurmSettings;
use pipe::{Plan, RunOptions, Store};

pub fn run(scratch: &Path, instances: usize) -> Result<()> {
    if let Err(why) = slurm::cluster_available() {
        println!(
            "slurm: skipped, no cluster ({why}); `scripts/slurm-test-cluster.sh start` starts one"
        );
        return Ok(());
    }
    // Workers run the `pipe` binary built next to this one.
    let program = std::env::current_exe()?
        .parent()
        .context("bench binary has no directory")?
        .join("pipe");
    anyhow::ensure!(
        program.exists(),
        "{} is missing: `cargo build --release` first",
        program.display()
    );
    for arrays in [true, false] {
        one(scratch, instances, arrays, &program)?;
    }
    bare_array(instances)
}

/// The cluster's own pace: one array of `true` tasks, no `pipe` at all, timed the same way.
fn bare_array(instances: usize) -> Result<()> {
    let started = Instant::now();
    let output = Command::new("sbatch")
        .args([
            "--parsable",
            &format!("--array=0-{}", instances - 1),
            "--output=/dev/null",
            "--wrap=true",
        ])
        .output()?;
    anyhow::ensure!(
        output.status.success(),
        "sbatch: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let id = String::from_utf8_lossy(&output.stdout)
        .trim()
        .split(';')
        .next()
        .unwrap_or_default()
        .to_string();
    loop {
        let queue = Command::new("squeue")
            .args(["--noheader", "--jobs", &id])
            .output()?;
        if queue.stdout.is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "slurm bare array of `true` (no pipe): {instances} tasks in {seconds:.1} s ({:.1} tasks/s): the cluster's own pace",
        instances as f64 / seconds
    );
    Ok(())
}

fn one(scratch: &Path, instances: usize, arrays: bool, program: &Path) -> Result<()> {
    let label = if arrays { "array" } else { "one job each" };
    let dir = scratch.join(format!("slurm-{}", if arrays { "array" } else { "single" }));
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
        jobs: 1,
        force: Vec::new(),
        only: Vec::new(),
        artifacts: dir.join("artifacts"),
    };
    let mut slurm_options = SlurmOptions::with_program(SlurmSettings::default(), program.into());
    slurm_options.arrays = arrays;
    slurm_options.max_poll = Duration::from_millis(500);
    let executor = Executor::Slurm(slurm_options.clone());
    let started = Instant::now();
    let plan = Plan::load(&pipe_thesis_torch::registry(), &file)?;
    let summary = pipe::run_with(&plan, &store, &options, &executor, &|_| {})?;
    let seconds = started.elapsed().as_secs_f64();
    anyhow::ensure!(
        summary.ran().len() == instances,
        "{label}: ran {} of {instances} ({} failed)",
        summary.ran().len(),
        summary.failed().len()
    );
    let stats = &slurm_options.stats;
    let submit = SlurmStats::get(&stats.submit_micros) as f64 / 1e6;
    let poll = SlurmStats::get(&stats.poll_micros) as f64 / 1e6;
    println!(
        "slurm {label:>12}: {instances} instances in {seconds:.1} s ({:.1} instances/s); {} sbatch, {} squeue polls; coordinator {:.1} ms per instance (submit {:.1} ms, poll {:.1} ms)",
        instances as f64 / seconds,
        SlurmStats::get(&stats.submissions),
        SlurmStats::get(&stats.polls),
        (submit + poll) * 1e3 / instances as f64,
        submit * 1e3 / instances as f64,
        poll * 1e3 / instances as f64,
    );
    Ok(())
}
