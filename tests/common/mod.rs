//! A sandbox directory with a pipeline file, a cache and an artifacts folder, driven either through
//! the library or through the `pipe` binary; and [`require`], how a test that needs an optional
//! environment (SLURM, Chromium, the thesis's data) is ignored, run, or skipped visibly ([`Env`]).

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use pipe::{EventRecord, Plan, RunOptions, RunSummary, Store};

pub struct Sandbox {
    pub dir: tempfile::TempDir,
}

impl Sandbox {
    pub fn new() -> Self {
        Sandbox {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn cache(&self) -> PathBuf {
        self.path().join("cache")
    }

    pub fn artifacts(&self) -> PathBuf {
        self.path().join("artifacts")
    }

    /// Writes `pipeline.yaml` and returns its path.
    pub fn write(&self, yaml: &str) -> PathBuf {
        let path = self.path().join("pipeline.yaml");
        std::fs::write(&path, yaml).expect("write pipeline");
        path
    }

    /// Plans and runs `yaml` through the library.
    pub fn run(&self, yaml: &str) -> RunSummary {
        self.run_with(yaml, |_| {})
    }

    /// Plans and runs `yaml`, returning the engine's event stream as well.
    pub fn run_recorded(&self, yaml: &str) -> (RunSummary, Vec<EventRecord>) {
        let path = self.write(yaml);
        let plan = Plan::load(&pipe_thesis_torch::registry(), &path)
            .unwrap_or_else(|e| panic!("plan failed:\n{e}"));
        let store = Store::open(&self.cache()).expect("store");
        let options = RunOptions {
            jobs: 2,
            force: Vec::new(),
            only: Vec::new(),
            artifacts: self.artifacts(),
        };
        let events = std::sync::Mutex::new(Vec::new());
        let summary = pipe::run(&plan, &store, &options, &|event| {
            if let Some(record) = event.record() {
                events.lock().expect("events").push(record);
            }
        })
        .expect("run");
        (summary, events.into_inner().expect("events"))
    }

    pub fn run_with(&self, yaml: &str, adjust: impl FnOnce(&mut RunOptions)) -> RunSummary {
        let path = self.write(yaml);
        let plan = Plan::load(&pipe_thesis_torch::registry(), &path)
            .unwrap_or_else(|e| panic!("plan failed:\n{e}"));
        let store = Store::open(&self.cache()).expect("store");
        let mut options = RunOptions {
            jobs: 2,
            force: Vec::new(),
            only: Vec::new(),
            artifacts: self.artifacts(),
        };
        adjust(&mut options);
        pipe::run(&plan, &store, &options, &|_| {}).expect("run")
    }

    /// Runs the `pipe` binary with `--cache`/`--artifacts` pointing into the sandbox.
    pub fn cli(&self, args: &[&str]) -> Output {
        self.cli_command(args).output().expect("run pipe")
    }

    pub fn cli_command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_pipe"));
        command
            .current_dir(self.path())
            .arg("--cache")
            .arg(self.cache())
            .arg("--artifacts")
            .arg(self.artifacts())
            .args(args)
            .env_remove("RUST_LOG");
        command
    }

    pub fn read_artifact(&self, relative: &str) -> String {
        std::fs::read_to_string(self.artifacts().join(relative))
            .unwrap_or_else(|e| panic!("artifact {relative}: {e}"))
    }

    /// Number of finished stage records in the cache (not temporary files of a record being
    /// written; 0 when the cache was never created).
    pub fn record_count(&self) -> usize {
        std::fs::read_dir(self.cache().join("records"))
            .map(|d| {
                d.flatten()
                    .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
                    .count()
            })
            .unwrap_or(0)
    }
}

pub fn sorted(names: Vec<&str>) -> Vec<String> {
    let mut v: Vec<String> = names.into_iter().map(String::from).collect();
    v.sort();
    v
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Starts `pipe run pipeline.yaml` in its own process group, waits until a file named `marker`
/// appears in one of the cache's checkpoint directories, then SIGKILLs the whole group: a crash
/// with no chance to clean up. Returns how many records had been written by then.
pub fn run_and_kill_at_checkpoint(sandbox: &Sandbox, marker: &str) -> usize {
    use std::os::unix::process::CommandExt;
    use std::time::{Duration, Instant};
    let mut child = sandbox
        .cli_command(&["run", "pipeline.yaml"])
        .process_group(0)
        .spawn()
        .expect("spawn pipe");
    let checkpoints = sandbox.cache().join("checkpoints");
    let start = Instant::now();
    loop {
        let found = std::fs::read_dir(&checkpoints)
            .map(|d| d.flatten().any(|e| e.path().join(marker).exists()))
            .unwrap_or(false);
        if found {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "no checkpoint `{marker}` appeared"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let group = i32::try_from(child.id()).expect("pid");
    assert!(group > 1);
    // SAFETY: plain syscall; the negative pid names the child's own process group only.
    assert_eq!(unsafe { libc::kill(-group, libc::SIGKILL) }, 0);
    let _ = child.wait();
    sandbox.record_count()
}

/// The instances that finished with `pick` in an event stream, sorted.
pub fn finished(events: &[EventRecord], pick: fn(&EventRecord) -> Option<&String>) -> Vec<String> {
    let mut names: Vec<String> = events.iter().filter_map(pick).cloned().collect();
    names.sort();
    names
}

pub fn ran(e: &EventRecord) -> Option<&String> {
    match e {
        EventRecord::Ran { instance } => Some(instance),
        _ => None,
    }
}

pub fn reused(e: &EventRecord) -> Option<&String> {
    match e {
        EventRecord::Reused { instance } | EventRecord::CutOff { instance } => Some(instance),
        _ => None,
    }
}

/// Waits until `done` holds, polling; panics after `timeout`.
pub fn wait_until(what: &str, timeout: std::time::Duration, mut done: impl FnMut() -> bool) {
    let start = std::time::Instant::now();
    while !done() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// SIGKILLs one process (not its group): what `kill -9 PID` on `pipe` does.
pub fn kill9(pid: u32) {
    let pid = i32::try_from(pid).expect("pid");
    // SAFETY: plain syscall on our own child.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
}

/// Whether a process with this pid exists (and is not a zombie).
pub fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

/// An optional environment some tests need.
///
/// The rule for such tests, one mechanism for all of them:
///
/// * the test is `#[ignore = "needs …"]`, so a plain `cargo test` lists it as *ignored* (never
///   as a pass that checked nothing), and its first line is `if !require(…) { return; }`;
/// * `make test` sets the environment up where it can (Chromium from the Debian packages, a
///   one-node SLURM cluster from `scripts/slurm-test-cluster.sh`, the thesis's data beside the
///   clone) and then runs the ignored tests of each environment it has, by name, with
///   `--ignored` and the environment's `PIPE_REQUIRE_*` variable set to 1;
/// * under that variable a missing environment is a failure with the reason; without it (someone
///   running `cargo test -- --ignored` by hand) the test prints `SKIPPED: <test>: needs <what>:
///   <why>` to stderr and returns.
#[derive(Clone, Copy, Debug)]
pub enum Env {
    /// A SLURM cluster that answers `sinfo` (`scripts/slurm-test-cluster.sh start`).
    Slurm,
    /// Headless Chromium on the PATH (`apt-get install chromium`).
    Chromium,
    /// The thesis's own data in `../shared/thesis-data` (or `PIPE_THESIS_DATA`).
    ThesisData,
    /// Permission to mount a tmpfs (root, as on CI): a cache on a full or read-only disk.
    Mount,
}

impl Env {
    /// The variable that turns a missing environment into a failure.
    pub fn require_var(self) -> &'static str {
        match self {
            Env::Slurm => "PIPE_REQUIRE_SLURM",
            Env::Chromium => "PIPE_REQUIRE_CHROMIUM",
            Env::ThesisData => "PIPE_REQUIRE_THESIS_DATA",
            Env::Mount => "PIPE_REQUIRE_MOUNT",
        }
    }

    pub fn what(self) -> &'static str {
        match self {
            Env::Slurm => "a SLURM cluster (scripts/slurm-test-cluster.sh start)",
            Env::Chromium => "headless Chromium (apt-get install chromium)",
            Env::ThesisData => "the thesis's data (../shared/thesis-data or PIPE_THESIS_DATA)",
            Env::Mount => "permission to mount a tmpfs (root)",
        }
    }
}

/// Whether `test` can run: `available` is `Err(why)` when `env` is missing. Missing, it panics
/// if the environment's `PIPE_REQUIRE_*` variable is 1, else prints the skip line and returns
/// false (see [`Env`]).
pub fn require(test: &str, env: Env, available: Result<(), String>) -> bool {
    let Err(why) = available else {
        return true;
    };
    let required = std::env::var(env.require_var()).is_ok_and(|v| v == "1");
    assert!(
        !required,
        "{test}: needs {}, but {why} ({}=1 says it must be there)",
        env.what(),
        env.require_var()
    );
    eprintln!("SKIPPED: {test}: needs {}: {why}", env.what());
    false
}

/// `name` on the PATH, if it is there.
pub fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// The thesis's data directory: `PIPE_THESIS_DATA` if set, else `../shared/thesis-data` beside
/// the crate, else `/work/shared/thesis-data`; `Err` says where it looked.
pub fn thesis_data_dir(needed: &str) -> Result<PathBuf, String> {
    let candidates: Vec<PathBuf> = match std::env::var_os("PIPE_THESIS_DATA") {
        Some(dir) => vec![PathBuf::from(dir)],
        None => vec![
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/thesis-data"),
            PathBuf::from("/work/shared/thesis-data"),
        ],
    };
    candidates
        .iter()
        .find(|dir| dir.join(needed).exists())
        .cloned()
        .ok_or_else(|| {
            let looked: Vec<String> = candidates
                .iter()
                .map(|d| d.join(needed).display().to_string())
                .collect();
            format!("none of {} exists", looked.join(", "))
        })
}
