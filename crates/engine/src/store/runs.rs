//! Run history: one record per `pipe run` (and `--dry-run`, marked as such) in
//! `cache/runs/<id>.json`, written atomically when the run starts and again when it ends. A
//! record without an end whose process no longer holds the cache lock was interrupted.

use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{io_err, read_json, write_json_atomic, Result, Store};

/// What happened to one instance in a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunOutcome {
    Ran,
    Cached,
    CutOff,
    Failed,
    Skipped,
    /// A dry run's "would run".
    WouldRun,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunInstance {
    pub name: String,
    /// Absent when it was never known (an instance after a failure, a dry run's pending one).
    pub key: Option<String>,
    pub outcome: RunOutcome,
    pub seconds: f64,
}

/// One `pipe run`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    /// `<start unix milliseconds, 13 digits>-<pid>`: sorts by start time.
    pub id: String,
    pub started_at: u64,
    /// Unset while the run goes on, and for ever if it was killed.
    pub ended_at: Option<u64>,
    pub user: String,
    pub host: String,
    pub pid: u32,
    pub pipeline: PathBuf,
    /// blake3 of the pipeline file's bytes.
    pub pipeline_hash: String,
    /// The command line after `pipe`, as given.
    pub arguments: Vec<String>,
    pub dry_run: bool,
    pub instances: Vec<RunInstance>,
}

/// How a run ended, as `pipe runs` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunState {
    Succeeded,
    Failed,
    Running,
    Interrupted,
}

impl std::fmt::Display for RunState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RunState::Succeeded => "ok",
            RunState::Failed => "failed",
            RunState::Running => "running",
            RunState::Interrupted => "interrupted",
        })
    }
}

impl RunRecord {
    /// A record for a run starting now.
    pub fn start(pipeline: &Path, arguments: Vec<String>, dry_run: bool) -> Self {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let started_at = now.as_secs();
        let pid = std::process::id();
        let pipeline_hash = fs::read(pipeline)
            .map(|bytes| blake3::hash(&bytes).to_hex().to_string())
            .unwrap_or_default();
        RunRecord {
            id: format!("{:013}-{pid}", now.as_millis()),
            started_at,
            ended_at: None,
            user: std::env::var("USER")
                .or_else(|_| std::env::var("LOGNAME"))
                .unwrap_or_else(|_| "unknown".into()),
            host: fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_string())
                .unwrap_or_else(|_| "unknown".into()),
            pid,
            pipeline: pipeline
                .canonicalize()
                .unwrap_or_else(|_| pipeline.to_path_buf()),
            pipeline_hash,
            arguments,
            dry_run,
            instances: Vec::new(),
        }
    }

    /// Counts of each outcome, in `RunOutcome` order.
    pub fn count(&self, outcome: RunOutcome) -> usize {
        self.instances
            .iter()
            .filter(|i| i.outcome == outcome)
            .count()
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Store {
    fn run_path(&self, id: &str) -> PathBuf {
        self.root().join("runs").join(format!("{id}.json"))
    }

    /// Writes the record of a run that is starting (or updates it).
    pub fn save_run(&self, record: &RunRecord) -> Result<()> {
        write_json_atomic(&self.run_path(&record.id), record)
    }

    /// Marks the run ended now, with its instances, and writes it.
    pub fn finish_run(&self, record: &mut RunRecord, instances: Vec<RunInstance>) -> Result<()> {
        record.instances = instances;
        record.ended_at = Some(unix_now());
        self.save_run(record)
    }

    /// The runs that ran (not dry runs) and ended, newest first: what `diff`, `why` and
    /// `exp show` compare.
    pub fn finished_runs(&self) -> Result<Vec<RunRecord>> {
        Ok(self
            .runs()?
            .into_iter()
            .map(|(r, _)| r)
            .filter(|r| !r.dry_run && r.ended_at.is_some())
            .collect())
    }

    /// Every run, newest first, with how it ended; unreadable records are skipped.
    pub fn runs(&self) -> Result<Vec<(RunRecord, RunState)>> {
        let dir = self.root().join("runs");
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_err("cannot list runs", &dir)(e)),
        };
        let holder = self.lock_holder();
        let mut runs = Vec::new();
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().is_none_or(|x| x != "json") {
                continue;
            }
            let Ok(Some(record)) = read_json::<RunRecord>(&path) else {
                tracing::warn!("skipping unreadable run record {}", path.display());
                continue;
            };
            let state = match record.ended_at {
                Some(_)
                    if record
                        .instances
                        .iter()
                        .any(|i| matches!(i.outcome, RunOutcome::Failed | RunOutcome::Skipped)) =>
                {
                    RunState::Failed
                }
                Some(_) => RunState::Succeeded,
                None if record.dry_run => RunState::Interrupted,
                None if holder == Some(record.pid) => RunState::Running,
                None => RunState::Interrupted,
            };
            runs.push((record, state));
        }
        runs.sort_by(|a, b| b.0.id.cmp(&a.0.id));
        Ok(runs)
    }
}
