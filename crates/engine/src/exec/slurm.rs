//! The SLURM executor: the coordinator submits cache misses as `sbatch` jobs running
//! `pipe exec <key>` over a shared cache, and learns results from the cache itself.
//!
//! - **Submission**: ready misses of one stage (and thread budget and GPU count) go out together
//!   as ONE job array; an instance needing GPUs (`resources.gpus`, or 1 for `device: cuda`) gets
//!   an `#SBATCH --gres=gpu:N` line in the batch script, and `pipe exec` uses the GPUs SLURM
//!   hands the job in `CUDA_VISIBLE_DEVICES`; task `i` runs the key on line `i + 1` of `cache/slurm/arrays/<name>.keys`. A lone
//!   instance is an array of one, so there is one code path. At most `max_jobs` instances are
//!   queued or running at once.
//! - **Completion**: a record in the cache means success (workers write it atomically, as the
//!   local executor does). A job that left `squeue` without a record failed; its log is
//!   `cache/logs/<key>.out`. There is no accounting daemon to ask (`sacct`), and none is needed.
//! - **Resume**: every submission is remembered in `cache/slurm/<key>.jobid` (and appended to
//!   `cache/slurm/submissions.log`). A new coordinator adopts a job whose id `squeue` still
//!   lists instead of submitting the key again; what jobs finished meanwhile are cache hits.
//! - **Interrupts**: SIGINT/SIGTERM cancel (`scancel`) the jobs this run submitted or adopted,
//!   then the run stops with [`ExecError::Interrupted`](super::ExecError::Interrupted). A
//!   coordinator that is killed outright cancels nothing: its jobs finish and are adopted.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use crate::plan::Plan;
use crate::spec::{Resources, SlurmSettings};
use crate::store::{write_atomic, Store};

use super::{instance, worker, Backend, Event, ExecError, JobResult};

/// Instances queued or running at once when `settings.slurm.max_jobs` is not set.
const DEFAULT_MAX_JOBS: usize = 500;
/// `squeue` failing this many times in a row ends the run (the controller is gone).
const SQUEUE_FAILURES_TOLERATED: u32 = 30;

/// Errors of talking to SLURM itself (not of an instance, which fails on its own).
#[derive(Debug, thiserror::Error)]
pub enum SlurmError {
    #[error("cannot run `{program}`: {source}; is SLURM installed and on PATH?")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("`squeue` failed {times} times in a row (last: {message}); is slurmctld running?")]
    Squeue { times: u32, message: String },
    #[error("cannot find the `pipe` binary for workers: {0}")]
    Program(std::io::Error),
    #[error("cannot install the interrupt handler: {0}")]
    Signals(String),
}

/// How the coordinator submits and polls.
#[derive(Debug, Clone)]
pub struct SlurmOptions {
    pub settings: SlurmSettings,
    /// The `pipe` binary the jobs run (`pipe exec`); must be visible on every node.
    pub program: PathBuf,
    /// The first pause between polls; it grows to `max_poll` while nothing finishes.
    pub poll: Duration,
    pub max_poll: Duration,
    /// Submit the ready instances of a stage as one job array (the default); `false` submits
    /// one job per instance, which only benchmarks want.
    pub arrays: bool,
    /// Counters for benchmarks and tests; shared so the caller can read them after the run.
    pub stats: Arc<SlurmStats>,
}

impl SlurmOptions {
    /// Options whose workers run the current executable (the `pipe` CLI).
    pub fn new(settings: SlurmSettings) -> Result<Self, SlurmError> {
        let program = std::env::current_exe().map_err(SlurmError::Program)?;
        Ok(Self::with_program(settings, program))
    }

    pub fn with_program(settings: SlurmSettings, program: PathBuf) -> Self {
        SlurmOptions {
            settings,
            program,
            poll: Duration::from_millis(100),
            max_poll: Duration::from_secs(2),
            arrays: true,
            stats: Arc::default(),
        }
    }
}

/// What the coordinator did and how long its own work (not the jobs') took.
#[derive(Debug, Default)]
pub struct SlurmStats {
    /// `sbatch` calls (one per array).
    pub submissions: AtomicU64,
    /// Instances submitted, and instances adopted from an earlier coordinator.
    pub submitted: AtomicU64,
    pub adopted: AtomicU64,
    pub polls: AtomicU64,
    /// Microseconds spent writing job descriptions and in `sbatch`, and in `squeue`.
    pub submit_micros: AtomicU64,
    pub poll_micros: AtomicU64,
}

impl SlurmStats {
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
    fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

/// The SLURM job last submitted (or adopted) for the instance at `artifact_dir`, and its log.
pub fn last_job(store: &Store, artifact_dir: &str) -> Option<(String, PathBuf)> {
    let path = store
        .root()
        .join("slurm")
        .join("last")
        .join(format!("{artifact_dir}.json"));
    let note: serde_json::Value = serde_json::from_slice(&fs::read(path).ok()?).ok()?;
    let key = note.get("key")?.as_str()?;
    let job = note.get("job")?.as_str()?;
    Some((
        job.to_string(),
        store.root().join("logs").join(format!("{key}.out")),
    ))
}

/// Whether `sinfo` answers (within 5 s): the cheap check the CLI, tests and benchmarks make
/// before relying on a cluster. `sinfo` retries for a while when slurmctld is down; a cluster
/// that slow to answer is treated as absent.
pub fn cluster_available() -> Result<(), String> {
    let mut child = Command::new("sinfo")
        .args(["-h", "-o", "%P"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| format!("`sinfo` cannot run ({e}): SLURM is not installed here"))?;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => return Ok(()),
            Ok(Some(_)) => {
                let mut message = String::new();
                if let Some(mut err) = child.stderr.take() {
                    let _ = std::io::Read::read_to_string(&mut err, &mut message);
                }
                return Err(format!("`sinfo` failed: {}", message.trim()));
            }
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err("`sinfo` did not answer within 5 s: is slurmctld running?".into());
            }
            Err(e) => return Err(format!("`sinfo`: {e}")),
        }
    }
}

/// Coordinators running in this process, and whether SIGINT/SIGTERM arrived during one.
static COORDINATORS: AtomicUsize = AtomicUsize::new(0);
static INTERRUPTED: AtomicBool = AtomicBool::new(false);
static HANDLERS: OnceLock<Result<(), String>> = OnceLock::new();

/// Installs (once per process) the SIGINT/SIGTERM action: while a coordinator runs, the first
/// signal asks it to cancel its jobs and stop, a second one terminates as usual; with no
/// coordinator running, the default action (termination) happens at once, so the local executor
/// and library users keep the behaviour they had.
fn install_signal_handlers() -> Result<(), SlurmError> {
    HANDLERS
        .get_or_init(|| {
            for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
                // SAFETY: the action only uses atomics and `emulate_default_handler`, which are
                // async-signal-safe.
                unsafe { signal_hook::low_level::register(signal, move || on_signal(signal)) }
                    .map_err(|e| e.to_string())?;
            }
            Ok(())
        })
        .clone()
        .map_err(SlurmError::Signals)
}

fn on_signal(signal: i32) {
    if COORDINATORS.load(Ordering::SeqCst) == 0 || INTERRUPTED.swap(true, Ordering::SeqCst) {
        let _ = signal_hook::low_level::emulate_default_handler(signal);
    }
}

struct InFlight<'p> {
    job: instance::Job<'p>,
    /// `<array id>_<task>` as `squeue --array` prints it.
    job_id: String,
}

pub(super) struct SlurmBackend<'p> {
    plan: &'p Plan,
    store: &'p Store,
    options: &'p SlurmOptions,
    observe: &'p (dyn Fn(Event<'_>) + Sync),
    in_flight: HashMap<usize, InFlight<'p>>,
    /// Results known without polling (a failed `sbatch`).
    ready: Vec<(usize, JobResult)>,
    /// Job ids `squeue` listed when this coordinator started: what it may adopt.
    alive_at_start: HashSet<String>,
    /// The pipeline file as planned, copied into every job description.
    pipeline_text: String,
    pause: Duration,
    squeue_failures: u32,
}

impl<'p> SlurmBackend<'p> {
    pub(super) fn new(
        plan: &'p Plan,
        store: &'p Store,
        options: &'p SlurmOptions,
        observe: &'p (dyn Fn(Event<'_>) + Sync),
    ) -> Result<Self, ExecError> {
        let alive_at_start = squeue_ids()?;
        let pipeline_text = worker::pipeline_text(plan)?;
        // Staging directories of jobs still running belong to them; only the rest are leftovers.
        let live_keys = remembered_jobs(store)
            .into_iter()
            .filter(|(_, id)| alive_at_start.contains(id))
            .map(|(key, _)| key)
            .collect::<HashSet<_>>();
        if let Err(e) = store.clear_staging_except(&live_keys) {
            tracing::warn!("cannot clear staging: {e}");
        }
        install_signal_handlers()?;
        if COORDINATORS.fetch_add(1, Ordering::SeqCst) == 0 {
            INTERRUPTED.store(false, Ordering::SeqCst);
        }
        Ok(SlurmBackend {
            plan,
            store,
            options,
            observe,
            in_flight: HashMap::new(),
            ready: Vec::new(),
            alive_at_start,
            pipeline_text,
            pause: options.poll,
            squeue_failures: 0,
        })
    }

    fn slurm_dir(&self) -> PathBuf {
        self.store.root().join("slurm")
    }

    fn job_id_path(&self, key: &str) -> PathBuf {
        self.slurm_dir().join(format!("{key}.jobid"))
    }

    /// The job id an earlier coordinator submitted for `key`, if that job is still queued or
    /// running.
    fn adoptable(&self, key: &str) -> Option<String> {
        let id = fs::read_to_string(self.job_id_path(key)).ok()?;
        let id = id.trim().to_string();
        self.alive_at_start.contains(&id).then_some(id)
    }

    fn started(&mut self, job: instance::Job<'p>, job_id: String) {
        let instance = &self.plan.instances[job.index];
        (self.observe)(Event::Started {
            instance: &instance.name,
            reason: &job.reason,
        });
        // For `pipe show`, which has no key for an instance that failed (no record).
        let note = serde_json::json!({"key": job.key.hex(), "job": job_id});
        let _ = write_atomic(
            &self
                .slurm_dir()
                .join("last")
                .join(format!("{}.json", instance.artifact_dir())),
            note.to_string().as_bytes(),
        );
        self.in_flight.insert(job.index, InFlight { job, job_id });
    }

    /// Submits `jobs` (one stage, one thread budget) as one array.
    fn submit(&mut self, jobs: Vec<instance::Job<'p>>) {
        let clock = Instant::now();
        let result = self.try_submit(&jobs);
        SlurmStats::add(
            &self.options.stats.submit_micros,
            clock.elapsed().as_micros() as u64,
        );
        match result {
            Ok(array_id) => {
                SlurmStats::add(&self.options.stats.submissions, 1);
                SlurmStats::add(&self.options.stats.submitted, jobs.len() as u64);
                let mut ledger = String::new();
                for (task, job) in jobs.into_iter().enumerate() {
                    let job_id = format!("{array_id}_{task}");
                    let key = job.key.hex();
                    // Best effort: losing it only means a restarted coordinator resubmits.
                    let _ = write_atomic(&self.job_id_path(&key), job_id.as_bytes());
                    ledger.push_str(&format!("{job_id} {key}\n"));
                    self.started(job, job_id);
                }
                let _ = fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(self.slurm_dir().join("submissions.log"))
                    .and_then(|mut f| f.write_all(ledger.as_bytes()));
            }
            Err(message) => {
                for job in jobs {
                    let failure = instance::Failure {
                        key: job.key.hex(),
                        message: format!("cannot submit to SLURM: {message}"),
                        log: None,
                    };
                    self.ready.push((job.index, Err(failure)));
                }
            }
        }
    }

    /// Writes the job descriptions, the key list and the batch script, then calls `sbatch`;
    /// returns the array's job id.
    fn try_submit(&self, jobs: &[instance::Job<'p>]) -> Result<String, String> {
        let Some(first) = jobs.first() else {
            return Err("nothing to submit".into());
        };
        let root = self.store.root();
        for job in jobs {
            worker::describe(self.store, job, &self.pipeline_text).map_err(|e| e.to_string())?;
        }
        let instance = &self.plan.instances[first.index];
        let name = format!("{}-{}", instance.stage, first.key.short());
        let arrays = self.slurm_dir().join("arrays");
        let keys: String = jobs.iter().map(|j| format!("{}\n", j.key.hex())).collect();
        let list = arrays.join(format!("{name}.keys"));
        write_atomic(&list, keys.as_bytes()).map_err(|e| e.to_string())?;
        let script = arrays.join(format!("{name}.sh"));
        let gpus = super::gpus::instance_gpus(self.plan, first.index);
        write_atomic(
            &script,
            batch_script(root, &list, &self.options.program, gpus).as_bytes(),
        )
        .map_err(|e| e.to_string())?;
        let out_dir = self.slurm_dir().join("out");
        fs::create_dir_all(&out_dir).map_err(|e| format!("{}: {e}", out_dir.display()))?;

        let resources = self
            .plan
            .source
            .spec
            .stages
            .get(&instance.stage)
            .and_then(|s| s.resources.clone())
            .unwrap_or_default();
        let mut args = sbatch_args(
            &self.options.settings,
            &resources,
            instance.resolved.threads,
            jobs.len(),
        );
        args.push(format!("--job-name=pipe-{}", instance.stage));
        // SLURM's own output: only what happens before `pipe exec` takes over its log.
        args.push(format!("--output={}/%A_%a.out", out_dir.display()));
        args.push(format!("--chdir={}", self.plan.project_dir.display()));
        args.push(script.display().to_string());
        let output = Command::new("sbatch")
            .args(&args)
            .output()
            .map_err(|e| format!("cannot run sbatch: {e}"))?;
        if !output.status.success() {
            return Err(format!(
                "sbatch {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&output.stderr).trim()
            ));
        }
        // `--parsable` prints `id` or `id;cluster`.
        let stdout = String::from_utf8_lossy(&output.stdout);
        let id = stdout.trim().split(';').next().unwrap_or("").to_string();
        if id.is_empty() || !id.chars().all(|c| c.is_ascii_digit()) {
            return Err(format!("sbatch printed no job id: `{}`", stdout.trim()));
        }
        tracing::info!(
            "submitted {} instance(s) of `{}` as job array {id}",
            jobs.len(),
            instance.stage
        );
        Ok(id)
    }

    /// The result of an in-flight instance whose record appeared.
    fn finished_by_record(&mut self, index: usize) -> Option<(usize, JobResult)> {
        let flight = self.in_flight.get(&index)?;
        let record = self.store.record(&flight.job.key).ok().flatten()?;
        let flight = self.in_flight.remove(&index)?;
        Some((
            index,
            Ok(instance::Finished {
                record,
                reason: flight.job.reason,
            }),
        ))
    }

    fn failed_without_record(&mut self, index: usize) -> Option<(usize, JobResult)> {
        let flight = self.in_flight.remove(&index)?;
        let key = flight.job.key.hex();
        let log = self.store.root().join("logs").join(format!("{key}.out"));
        let message = match last_line(&log) {
            Some(line) => format!("SLURM job {} ended without a result: {line}", flight.job_id),
            None if log.exists() => format!("SLURM job {} ended without a result", flight.job_id),
            None => format!(
                "SLURM job {} ended without a result and without a log at {}: can the node see \
                 the cache directory {} (it must be on a shared filesystem)? SLURM's own output: \
                 {}",
                flight.job_id,
                log.display(),
                self.store.root().display(),
                self.slurm_dir().join("out").display()
            ),
        };
        Some((
            index,
            Err(instance::Failure {
                key,
                message,
                log: log.exists().then_some(log),
            }),
        ))
    }

    /// Cancels every job this coordinator submitted or adopted; returns how many.
    fn cancel_all(&mut self) -> usize {
        let ids: Vec<String> = self.in_flight.values().map(|f| f.job_id.clone()).collect();
        if !ids.is_empty() {
            if let Err(e) = Command::new("scancel").args(&ids).status() {
                tracing::warn!("scancel failed: {e}");
            }
            for flight in self.in_flight.values() {
                let _ = fs::remove_file(self.job_id_path(&flight.job.key.hex()));
            }
        }
        self.in_flight.clear();
        ids.len()
    }

    /// Sleeps `self.pause` in small steps so an interrupt is noticed at once.
    fn pause(&mut self) {
        let until = Instant::now() + self.pause;
        while Instant::now() < until && !interrupted() {
            std::thread::sleep(Duration::from_millis(20).min(self.pause));
        }
        self.pause = (self.pause.mul_f64(1.5)).min(self.options.max_poll);
    }
}

impl<'p> Backend<'p> for SlurmBackend<'p> {
    fn start(&mut self, queue: &mut VecDeque<instance::Job<'p>>) -> Result<Vec<usize>, ExecError> {
        if interrupted() {
            return Ok(Vec::new());
        }
        let max_jobs = self.options.settings.max_jobs.unwrap_or(DEFAULT_MAX_JOBS);
        let room = max_jobs.saturating_sub(self.in_flight.len());
        let take = room.min(queue.len());
        // One array per (stage, thread budget, GPUs), in the order the jobs became ready.
        let mut groups: Vec<((String, usize, u32), Vec<instance::Job<'p>>)> = Vec::new();
        let taken: Vec<usize> = queue.iter().take(take).map(|job| job.index).collect();
        for job in queue.drain(..take) {
            let key = job.key.hex();
            if let Some(job_id) = self.adoptable(&key) {
                tracing::info!(
                    "adopting SLURM job {job_id} for {}",
                    self.plan.instances[job.index].name
                );
                SlurmStats::add(&self.options.stats.adopted, 1);
                self.started(job, job_id);
                continue;
            }
            let instance = &self.plan.instances[job.index];
            let group = (
                instance.stage.clone(),
                instance.resolved.threads,
                super::gpus::instance_gpus(self.plan, job.index),
            );
            match groups
                .iter_mut()
                .find(|(g, _)| self.options.arrays && *g == group)
            {
                Some((_, jobs)) => jobs.push(job),
                None => groups.push((group, vec![job])),
            }
        }
        for (_, jobs) in groups {
            self.submit(jobs);
        }
        Ok(taken)
    }

    fn in_flight(&self) -> usize {
        self.in_flight.len() + self.ready.len()
    }

    fn wait(&mut self) -> Result<Vec<(usize, JobResult)>, ExecError> {
        loop {
            if interrupted() {
                let cancelled = self.cancel_all();
                return Err(ExecError::Interrupted { cancelled });
            }
            let mut done: Vec<(usize, JobResult)> = std::mem::take(&mut self.ready);
            let indices: Vec<usize> = self.in_flight.keys().copied().collect();
            for &i in &indices {
                done.extend(self.finished_by_record(i));
            }
            if !done.is_empty() || self.in_flight.is_empty() {
                self.pause = self.options.poll;
                return Ok(done);
            }
            let clock = Instant::now();
            let alive = squeue_ids();
            SlurmStats::add(&self.options.stats.polls, 1);
            SlurmStats::add(
                &self.options.stats.poll_micros,
                clock.elapsed().as_micros() as u64,
            );
            match alive {
                Ok(alive) => {
                    self.squeue_failures = 0;
                    let gone: Vec<usize> = self
                        .in_flight
                        .iter()
                        .filter(|(_, f)| !alive.contains(&f.job_id))
                        .map(|(&i, _)| i)
                        .collect();
                    // A job may write its record and leave the queue between the two looks.
                    for i in gone {
                        match self.finished_by_record(i) {
                            Some(result) => done.push(result),
                            None => done.extend(self.failed_without_record(i)),
                        }
                    }
                }
                Err(e) => {
                    self.squeue_failures += 1;
                    tracing::warn!("{e}");
                    if self.squeue_failures >= SQUEUE_FAILURES_TOLERATED {
                        return Err(SlurmError::Squeue {
                            times: self.squeue_failures,
                            message: e.to_string(),
                        }
                        .into());
                    }
                }
            }
            if !done.is_empty() {
                self.pause = self.options.poll;
                return Ok(done);
            }
            self.pause();
        }
    }
}

impl Drop for SlurmBackend<'_> {
    fn drop(&mut self) {
        COORDINATORS.fetch_sub(1, Ordering::SeqCst);
    }
}

fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// The `sbatch` options for one array of `count` instances of a stage.
fn sbatch_args(
    settings: &SlurmSettings,
    resources: &Resources,
    threads: usize,
    count: usize,
) -> Vec<String> {
    let mut args = vec!["--parsable".to_string(), format!("--array=0-{}", count - 1)];
    args.push(format!(
        "--cpus-per-task={}",
        resources.cpus.map(|c| c as usize).unwrap_or(threads.max(1))
    ));
    if let Some(mem) = &resources.mem {
        args.push(format!("--mem={mem}"));
    }
    if let Some(time) = &resources.time {
        args.push(format!("--time={time}"));
    }
    if let Some(partition) = resources.partition.as_ref().or(settings.partition.as_ref()) {
        args.push(format!("--partition={partition}"));
    }
    if let Some(account) = &settings.account {
        args.push(format!("--account={account}"));
    }
    args.extend(settings.extra_args.iter().cloned());
    args
}

/// The batch script of one array: its GPU request (`gpus` per task, as a directive so the script
/// alone resubmits the same job), map the task id to a key, then run `pipe exec` with its output
/// in `cache/logs/<key>.out`.
fn batch_script(cache: &Path, list: &Path, program: &Path, gpus: u32) -> String {
    let gres = if gpus > 0 {
        format!("#SBATCH --gres=gpu:{gpus}\n")
    } else {
        String::new()
    };
    format!(
        r#"#!/bin/sh
{gres}# Written by `pipe run --executor slurm`: task N runs the key on line N+1 of the list.
cache={cache}
if [ ! -d "$cache/jobs" ]; then
  echo "pipe: node $(hostname) cannot see the cache directory $cache; it must be on a filesystem every node mounts at the same path" >&2
  exit 3
fi
key=$(sed -n "$((${{SLURM_ARRAY_TASK_ID:-0}} + 1))p" {list})
exec {program} exec --cache "$cache" "$key" >>"$cache/logs/$key.out" 2>&1
"#,
        cache = shell_quote(&cache.display().to_string()),
        list = shell_quote(&list.display().to_string()),
        program = shell_quote(&program.display().to_string()),
    )
}

fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// Ids of every queued or running job, array tasks one per line (`123_4`).
fn squeue_ids() -> Result<HashSet<String>, SlurmError> {
    let output = Command::new("squeue")
        .args(["--noheader", "--array", "--format=%i"])
        .output()
        .map_err(|source| SlurmError::Spawn {
            program: "squeue".into(),
            source,
        })?;
    if !output.status.success() {
        return Err(SlurmError::Squeue {
            times: 1,
            message: String::from_utf8_lossy(&output.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect())
}

/// `(key, job id)` of every submission remembered in the cache.
fn remembered_jobs(store: &Store) -> Vec<(String, String)> {
    let Ok(entries) = fs::read_dir(store.root().join("slurm")) else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let key = name.strip_suffix(".jobid")?.to_string();
            let id = fs::read_to_string(e.path()).ok()?.trim().to_string();
            Some((key, id))
        })
        .collect()
}

fn last_line(path: &Path) -> Option<String> {
    let text = fs::read_to_string(path).ok()?;
    text.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .map(|l| l.trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resources_map_to_sbatch_options() {
        let settings = SlurmSettings {
            partition: Some("cpu".into()),
            account: Some("lab".into()),
            extra_args: vec!["--qos=short".into()],
            max_jobs: None,
        };
        let resources = Resources {
            cpus: None,
            mem: Some("4G".into()),
            time: Some("01:00:00".into()),
            gpus: Some(1),
            partition: Some("gpu".into()),
        };
        assert_eq!(
            sbatch_args(&settings, &resources, 2, 20),
            [
                "--parsable",
                "--array=0-19",
                "--cpus-per-task=2",
                "--mem=4G",
                "--time=01:00:00",
                "--partition=gpu",
                "--account=lab",
                "--qos=short"
            ]
        );
        let plain = sbatch_args(&SlurmSettings::default(), &Resources::default(), 1, 1);
        assert_eq!(plain, ["--parsable", "--array=0-0", "--cpus-per-task=1"]);
    }

    #[test]
    fn batch_script_quotes_paths() {
        let script = batch_script(
            Path::new("/shared/it's/cache"),
            Path::new("/shared/list.keys"),
            Path::new("/opt/pipe"),
            0,
        );
        assert!(
            script.contains(r"cache='/shared/it'\''s/cache'"),
            "{script}"
        );
        assert!(script.contains("exec '/opt/pipe' exec --cache \"$cache\" \"$key\""));
        assert!(!script.contains("gres"), "{script}");
    }

    #[test]
    fn batch_script_asks_for_the_gpus_before_any_command() {
        let script = batch_script(
            Path::new("/shared/cache"),
            Path::new("/shared/list.keys"),
            Path::new("/opt/pipe"),
            2,
        );
        let lines: Vec<&str> = script.lines().collect();
        // sbatch reads directives only above the first command.
        assert_eq!(
            lines[..2],
            ["#!/bin/sh", "#SBATCH --gres=gpu:2"],
            "{script}"
        );
    }
}
