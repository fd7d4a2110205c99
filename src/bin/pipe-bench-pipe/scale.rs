//! Engine decisions at scale: no-op `pipe run`, `pipe status`, `pipe exp show` and `pipe diff` on
//! 10,000 and 100,000 instances (and `pipe status` with no cache on a pipeline whose every second
//! instance reads another's output), each timed as a whole `pipe` process with its peak memory.
//!
//! The instances use `bench.value`, an in-process plugin (the way `crates/example-plugin` adds a
//! stage), so that filling the cache takes seconds instead of the minutes 100,000 `bash`
//! processes take; what a no-op decides is the same for any plugin. The timed commands are this
//! binary as `pipe` (itself plus that plugin, so the same start-up as `target/release/pipe`, no
//! libtorch). `pipe-bench scale` runs this driver here rather than in itself: Linux counts the
//! memory of the process a child was spawned from in the child's peak, so timing from the 112 MB
//! `pipe-bench` (libtorch) would floor every peak at 112 MB; from here the floor is this driver's
//! own, about 19 MB (`pipe --version` alone peaks at 9 MB).

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use anyhow::{ensure, Context, Result};

/// Set to a scratch directory: this binary runs the scale benchmark there instead of `pipe`.
pub const DRIVER: &str = "PIPE_BENCH_SCALE";

/// Both scales, then the figures measured before the index (issue #15) for comparison.
pub fn run(scratch: &Path) -> Result<()> {
    // `PIPE_BENCH_SCALES=1000,5000` measures other sizes.
    let sizes: Vec<usize> = match std::env::var("PIPE_BENCH_SCALES") {
        Ok(list) => list
            .split(',')
            .map(|n| {
                n.trim()
                    .parse()
                    .context("PIPE_BENCH_SCALES: a comma-separated list of counts")
            })
            .collect::<Result<_>>()?,
        Err(_) => vec![10_000, 100_000],
    };
    for n in sizes {
        scale(scratch, n)?;
    }
    println!(
        "  before the record index (measured 2026-11 on this kind of machine, 100,000 cmd \
         instances): no-op run 7.2 s / 690 MB, status 3.5 s"
    );
    println!(
        "  before the index of format 7 (2123fad, 2026-12-02, a 2-core AVX-512 EPYC, medians of \
         alternating runs at 100,000): no-op run 1.65 s / 275 MB, status 1.02 s / 274 MB, \
         exp show 0.31 s / 254 MB"
    );
    println!(
        "  status, wired (no cache, 50,000 instances reading 50,000 by name) before reference \
         lookup by selector (2026-12-02, this machine): 26.9 s at 100,000 instances"
    );
    Ok(())
}

fn scale(root: &Path, instances: usize) -> Result<()> {
    let dir = root.join(format!("scale-{instances}"));
    std::fs::create_dir_all(&dir)?;
    let file = dir.join("pipeline.yaml");
    let write_pipeline = |suffix: &str| -> Result<()> {
        let values: Vec<String> = (0..instances).map(|i| format!("v{i}")).collect();
        let yaml = format!(
            "stages:\n  gen:\n    uses: bench.value\n    foreach:\n      i: [{}]\n    with:\n      value: '${{i}}{suffix}'\n",
            values.join(", ")
        );
        Ok(std::fs::write(&file, yaml)?)
    };
    write_pipeline("")?;
    let fill = Instant::now();
    let first = pipe_process(&dir, &["run", "pipeline.yaml"])?;
    ensure!(first.ok, "the first run failed: {}", first.stderr);
    let fill = fill.elapsed().as_secs_f64();

    // Best of three for each command: the first no-op also warms the page cache.
    let best = |args: &[&str]| -> Result<Measured> {
        let mut best: Option<Measured> = None;
        for _ in 0..3 {
            let m = pipe_process(&dir, args)?;
            ensure!(m.ok, "`pipe {}` failed: {}", args.join(" "), m.stderr);
            if best.as_ref().is_none_or(|b| m.seconds < b.seconds) {
                best = Some(m);
            }
        }
        best.context("no measurement")
    };
    let noop = best(&["run", "pipeline.yaml"])?;
    ensure!(
        noop.stdout.contains(&format!("0 ran, {instances} cached")),
        "the no-op run was not a no-op: {}",
        noop.stdout.lines().last().unwrap_or_default()
    );
    let status = best(&["status", "pipeline.yaml"])?;
    let exp_show = best(&["exp", "show", "pipeline.yaml", "--format", "csv"])?;
    // A second version of every value, so that `diff` compares two different runs.
    write_pipeline("x")?;
    let second = pipe_process(&dir, &["run", "pipeline.yaml"])?;
    ensure!(second.ok, "the edited run failed: {}", second.stderr);
    let diff = best(&["diff", "--format", "json"])?;
    let startup = best(&["--version"])?;
    let wired = wired_status(root, instances)?;

    println!("{instances:>7} instances (filling the cache: {fill:.1} s)");
    for (what, m) in [
        ("no-op run", &noop),
        ("status", &status),
        ("exp show", &exp_show),
        ("diff", &diff),
        ("pipe --version", &startup),
        ("status, wired", &wired),
    ] {
        println!(
            "  {what:<15} {:>7.3} s  {:>6.0} MB peak",
            m.seconds,
            m.peak_kib as f64 / 1024.0
        );
    }
    Ok(())
}

/// `pipe status` with no cache on `instances` instances, half of them reading one output of the
/// other half by name (`gen[${i}].v`): planning that binds one reference per instance.
fn wired_status(root: &Path, instances: usize) -> Result<Measured> {
    let dir = root.join(format!("scale-{instances}-wired"));
    std::fs::create_dir_all(&dir)?;
    let values: Vec<String> = (0..instances / 2).map(|i| format!("v{i}")).collect();
    let values = values.join(", ");
    let yaml = format!(
        "stages:\n  gen:\n    uses: bench.value\n    foreach:\n      i: [{values}]\n    with:\n      value: '${{i}}'\n  \
         use:\n    uses: cmd\n    foreach:\n      i: [{values}]\n    inputs: {{x: 'gen[${{i}}].v'}}\n    with:\n      \
         run: 'cat \"$PIPE_IN_X\" > \"$PIPE_OUT/w.txt\"'\n      outputs: {{w: w.txt}}\n"
    );
    std::fs::write(dir.join("pipeline.yaml"), yaml)?;
    let mut best: Option<Measured> = None;
    for _ in 0..3 {
        let m = pipe_process(&dir, &["status", "pipeline.yaml"])?;
        ensure!(
            m.ok,
            "`pipe status` of the wired pipeline failed: {}",
            m.stderr
        );
        ensure!(
            m.stdout
                .contains(&format!("{instances} of {instances} instances would run")),
            "the wired pipeline did not plan {instances} instances: {}",
            m.stdout.lines().last().unwrap_or_default()
        );
        if best.as_ref().is_none_or(|b| m.seconds < b.seconds) {
            best = Some(m);
        }
    }
    best.context("no measurement")
}

struct Measured {
    ok: bool,
    seconds: f64,
    peak_kib: i64,
    stdout: String,
    stderr: String,
}

/// Runs this binary as `pipe ARGS` in `dir` and measures its wall time and peak resident memory.
fn pipe_process(dir: &Path, args: &[&str]) -> Result<Measured> {
    let exe = std::env::current_exe().context("cannot find pipe-bench-pipe itself")?;
    let started = Instant::now();
    let child = Command::new(&exe)
        .args(args)
        .current_dir(dir)
        .env_remove(DRIVER)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .with_context(|| {
            format!(
                "cannot start {} (built by `cargo build --release`)",
                exe.display()
            )
        })?;
    let pid = child.id() as libc::pid_t;
    // Read the pipes on threads so a chatty child never blocks, then reap it with wait4 for its
    // own peak RSS (RUSAGE_CHILDREN would give the maximum over every child so far).
    let mut child = child;
    let mut out = child.stdout.take().context("no stdout")?;
    let mut err = child.stderr.take().context("no stderr")?;
    let out_reader = std::thread::spawn(move || {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut out, &mut s).map(|_| s)
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut err, &mut s).map(|_| s)
    });
    let mut status: libc::c_int = 0;
    // SAFETY: an all-zero rusage is a valid value for wait4 to overwrite.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: pid is our own unreaped child; status and usage are valid for writes.
    let reaped = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let seconds = started.elapsed().as_secs_f64();
    ensure!(
        reaped == pid,
        "wait4 failed: {}",
        std::io::Error::last_os_error()
    );
    let stdout = out_reader.join().map_err(|_| anyhow::anyhow!("reader"))??;
    let stderr = err_reader.join().map_err(|_| anyhow::anyhow!("reader"))??;
    Ok(Measured {
        ok: libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        seconds,
        peak_kib: usage.ru_maxrss,
        stdout,
        stderr,
    })
}
