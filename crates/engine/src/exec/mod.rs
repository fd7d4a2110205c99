//! The local executor: walks the plan, reuses cached instances, runs the rest in parallel under a
//! thread budget and the GPUs it has ([`gpus`]), and records results atomically.
//!
//! Scheduling (which instance is ready, which are skipped) is `schedule`'s: it decides ready
//! instances in parallel batches and applies the decisions on the calling thread. A backend runs
//! the misses: each on a scoped worker thread reporting back over a channel (local), or as SLURM
//! jobs running `pipe exec <key>` over a shared cache ([`slurm`], [`worker`]). A failed instance
//! skips only its dependents. A killed process leaves only staging directories (removed on the
//! next run) and checkpoints (used to resume).

mod decide;
pub mod gpus;
mod instance;
mod schedule;
pub mod slurm;
pub mod worker;

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::Instant;

use rayon::prelude::*;
use schedule::Schedule;

use crate::plan::Plan;
use crate::store::{OutputMap, Store, StoreError};

pub use decide::{
    changed_keys, key_material, lookup, timings_table, Lookup, Reason, TIMINGS_INPUT,
};
pub use slurm::{SlurmError, SlurmOptions, SlurmStats};
pub use worker::{execute_described, JobDescription, WorkerError};

/// How to run a plan.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Thread slots shared by running instances.
    pub jobs: usize,
    /// Stage or instance names to recompute even if cached.
    pub force: Vec<String>,
    /// Stage or instance names to run (with what they need); empty = everything.
    pub only: Vec<String>,
    pub artifacts: PathBuf,
}

/// What happened to one instance.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Ran {
        seconds: f64,
        reason: Reason,
    },
    /// Reused from the cache; `cutoff` when an upstream instance re-ran with identical output.
    Cached {
        cutoff: bool,
    },
    Failed {
        error: String,
        log: Option<PathBuf>,
    },
    Skipped {
        because: String,
    },
}

/// Engine events, in the order they happen; the progress display and tests consume them.
#[derive(Debug, Clone)]
pub enum Event<'a> {
    Planned {
        total: usize,
    },
    Started {
        instance: &'a str,
        reason: &'a Reason,
    },
    Progress {
        instance: &'a str,
        message: &'a str,
    },
    Finished {
        instance: &'a str,
        outcome: &'a Outcome,
    },
}

/// An owned account of one engine event: what tests assert on ("was not re-run", "was cut off")
/// instead of timings or printed text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventRecord {
    Planned { total: usize },
    Started { instance: String },
    Ran { instance: String },
    Reused { instance: String },
    CutOff { instance: String },
    Failed { instance: String },
    Skipped { instance: String },
}

impl Event<'_> {
    /// The owned record of this event; progress messages have none.
    pub fn record(&self) -> Option<EventRecord> {
        let owned = |name: &str| name.to_string();
        Some(match self {
            Event::Planned { total } => EventRecord::Planned { total: *total },
            Event::Started { instance, .. } => EventRecord::Started {
                instance: owned(instance),
            },
            Event::Progress { .. } => return None,
            Event::Finished { instance, outcome } => {
                let instance = owned(instance);
                match outcome {
                    Outcome::Ran { .. } => EventRecord::Ran { instance },
                    Outcome::Cached { cutoff: false } => EventRecord::Reused { instance },
                    Outcome::Cached { cutoff: true } => EventRecord::CutOff { instance },
                    Outcome::Failed { .. } => EventRecord::Failed { instance },
                    Outcome::Skipped { .. } => EventRecord::Skipped { instance },
                }
            }
        })
    }
}

#[derive(Debug, Clone)]
pub struct InstanceReport {
    /// The instance's index in the plan.
    pub index: usize,
    pub name: String,
    pub key: Option<String>,
    pub outcome: Outcome,
}

/// The result of `run`.
#[derive(Debug, Clone, Default)]
pub struct RunSummary {
    pub reports: Vec<InstanceReport>,
    pub seconds: f64,
}

impl RunSummary {
    fn names(&self, pick: impl Fn(&Outcome) -> bool) -> Vec<&str> {
        self.reports
            .iter()
            .filter(|r| pick(&r.outcome))
            .map(|r| r.name.as_str())
            .collect()
    }
    pub fn ran(&self) -> Vec<&str> {
        self.names(|o| matches!(o, Outcome::Ran { .. }))
    }
    pub fn cached(&self) -> Vec<&str> {
        self.names(|o| matches!(o, Outcome::Cached { .. }))
    }
    pub fn failed(&self) -> Vec<&str> {
        self.names(|o| matches!(o, Outcome::Failed { .. }))
    }
    pub fn skipped(&self) -> Vec<&str> {
        self.names(|o| matches!(o, Outcome::Skipped { .. }))
    }
    pub fn success(&self) -> bool {
        self.failed().is_empty() && self.skipped().is_empty()
    }
}

/// Errors that stop the whole run (a failing instance does not: it is reported in the summary).
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("`{0}` matches no stage or instance in this pipeline")]
    UnknownSelector(String),
    #[error(transparent)]
    Slurm(#[from] SlurmError),
    #[error("interrupted: cancelled {cancelled} SLURM job(s) of this run")]
    Interrupted { cancelled: usize },
    /// Raised before anything runs.
    #[error(transparent)]
    Gpu(#[from] gpus::GpuError),
}

/// The instances `only` selects (with their dependencies) and the set `force` names.
pub fn selection(
    plan: &Plan,
    only: &[String],
    force: &[String],
) -> Result<(HashSet<usize>, HashSet<usize>), ExecError> {
    let pick = |names: &[String]| -> Result<Vec<usize>, ExecError> {
        let mut out = Vec::new();
        for name in names {
            let found = plan.select(name);
            if found.is_empty() {
                return Err(ExecError::UnknownSelector(name.clone()));
            }
            out.extend(found);
        }
        Ok(out)
    };
    let selected = if only.is_empty() {
        (0..plan.instances.len()).collect()
    } else {
        plan.with_dependencies(&pick(only)?)
    };
    let forced = pick(force)?.into_iter().collect();
    Ok((selected, forced))
}

/// Where cache misses run.
#[derive(Debug, Clone, Default)]
pub enum Executor {
    /// Scoped threads of this process, under `RunOptions::jobs` thread slots.
    #[default]
    Local,
    /// One SLURM job (or one job array per stage) per batch of ready instances.
    Slurm(SlurmOptions),
}

/// Runs the plan with the local executor. Takes the cache lock for the duration.
pub fn run(
    plan: &Plan,
    store: &Store,
    options: &RunOptions,
    observe: &(dyn Fn(Event<'_>) + Sync),
) -> Result<RunSummary, ExecError> {
    run_with(plan, store, options, &Executor::Local, observe)
}

/// Runs the plan on `executor`. Takes the cache lock for the duration; cluster workers write
/// records without it (each to its own key), so the lock still means "one coordinator".
pub fn run_with(
    plan: &Plan,
    store: &Store,
    options: &RunOptions,
    executor: &Executor,
    observe: &(dyn Fn(Event<'_>) + Sync),
) -> Result<RunSummary, ExecError> {
    let started = Instant::now();
    let (selected, forced) = selection(plan, &options.only, &options.force)?;
    let _lock = store.lock(|message| tracing::warn!("{message}"))?;
    crate::phases::mark("cache locked");
    let schedule = Schedule {
        plan,
        store,
        options,
        selected: &selected,
        forced: &forced,
    };
    let mut outcomes = match executor {
        Executor::Local => {
            let leftovers = store.clear_staging()?;
            if leftovers > 0 {
                tracing::info!(
                    "removed {leftovers} staging directories left by an interrupted run"
                );
            }
            let gpus = local_gpus(plan, store, &selected, &options.force)?;
            crate::phases::mark("staging cleared");
            let outcomes = std::thread::scope(|scope| {
                let mut backend = LocalBackend::new(scope, plan, options.jobs, gpus, observe);
                schedule.drive(&mut backend, observe)
            })?;
            // Leftover processes of a killed run that held their staging at the start are gone
            // by now (the watchdog killed them): their directories go too.
            store.clear_staging()?;
            outcomes
        }
        Executor::Slurm(slurm_options) => {
            let mut backend = slurm::SlurmBackend::new(plan, store, slurm_options, observe)?;
            schedule.drive(&mut backend, observe)?
        }
    };
    crate::phases::mark("instances decided and run");
    store.save_index()?;
    crate::phases::mark("index saved");

    // At its exact size: grown by doubling, the list of 100,000 was the run's peak.
    let mut reports = Vec::with_capacity(outcomes.iter().filter(|o| o.is_some()).count());
    for &i in &plan.order {
        if let Some((outcome, key)) = outcomes[i].take() {
            reports.push(InstanceReport {
                index: i,
                name: plan.instances[i].name.clone(),
                key,
                outcome,
            });
        }
    }
    Ok(RunSummary {
        reports,
        seconds: started.elapsed().as_secs_f64(),
    })
}

type JobResult = Result<instance::Finished, instance::Failure>;

/// The GPUs the local executor hands out; checked before anything runs, so a run that would need
/// a GPU it cannot have stops at once. Asks CUDA only when a selected instance needs a GPU, and
/// lets an instance that is up to date in the cache through without one.
fn local_gpus(
    plan: &Plan,
    store: &Store,
    selected: &HashSet<usize>,
    force: &[String],
) -> Result<Vec<crate::stage::Gpu>, ExecError> {
    if !selected.iter().any(|&i| gpus::instance_gpus(plan, i) > 0) {
        return Ok(Vec::new());
    }
    let available = gpus::discover()?;
    if gpus::check_enough(plan, selected, &available, "").is_err() {
        let up_to_date: HashSet<usize> = status(plan, store, force)?
            .into_iter()
            .filter(|(_, s)| *s == Status::UpToDate)
            .map(|(i, _)| i)
            .collect();
        gpus::check_enough(
            plan,
            selected.iter().filter(|i| !up_to_date.contains(i)),
            &available,
            gpus::source_text(),
        )?;
    }
    Ok(available)
}

/// What the scheduler needs from an executor: start ready jobs, report finished ones.
trait Backend<'p> {
    /// Starts what it can from the front of `queue` (leaving the rest queued), emitting
    /// `Event::Started` for each; returns the indices it took.
    fn start(&mut self, queue: &mut VecDeque<instance::Job<'p>>) -> Result<Vec<usize>, ExecError>;
    /// Jobs started and not yet reported by `wait`.
    fn in_flight(&self) -> usize;
    /// Blocks until at least one started job finished (empty only if none can).
    fn wait(&mut self) -> Result<Vec<(usize, JobResult)>, ExecError>;
}

/// Runs each job on a scoped thread while thread slots and GPUs last; an instance wider than
/// `jobs` runs alone, an instance needing GPUs waits until that many are free (none is ever held
/// by two instances at once).
struct LocalBackend<'scope, 'env> {
    scope: &'scope std::thread::Scope<'scope, 'env>,
    plan: &'env Plan,
    observe: &'env (dyn Fn(Event<'_>) + Sync),
    sender: mpsc::Sender<(usize, Vec<crate::stage::Gpu>, JobResult)>,
    receiver: mpsc::Receiver<(usize, Vec<crate::stage::Gpu>, JobResult)>,
    jobs: usize,
    free_slots: usize,
    /// GPUs no running instance holds; each job takes its own and gives them back.
    free_gpus: Vec<crate::stage::Gpu>,
    /// Whether this run has GPUs at all: then an instance without any is shown none.
    has_gpus: bool,
    running: usize,
}

impl<'scope, 'env> LocalBackend<'scope, 'env> {
    fn new(
        scope: &'scope std::thread::Scope<'scope, 'env>,
        plan: &'env Plan,
        jobs: usize,
        gpus: Vec<crate::stage::Gpu>,
        observe: &'env (dyn Fn(Event<'_>) + Sync),
    ) -> Self {
        let (sender, receiver) = mpsc::channel();
        let jobs = jobs.max(1);
        LocalBackend {
            scope,
            plan,
            observe,
            sender,
            receiver,
            jobs,
            free_slots: jobs,
            has_gpus: !gpus.is_empty(),
            free_gpus: gpus,
            running: 0,
        }
    }
}

impl<'env> Backend<'env> for LocalBackend<'_, 'env> {
    fn start(
        &mut self,
        queue: &mut VecDeque<instance::Job<'env>>,
    ) -> Result<Vec<usize>, ExecError> {
        let mut started = Vec::new();
        while let Some(job) = queue.front() {
            let threads = self.plan.instances[job.index].resolved.threads;
            let gpus = gpus::instance_gpus(self.plan, job.index) as usize;
            if self.running > 0 && (threads > self.free_slots || gpus > self.free_gpus.len()) {
                break;
            }
            let Some(mut job) = queue.pop_front() else {
                break;
            };
            // Checked before the run (`local_gpus`): with nothing running, all GPUs are free.
            job.gpus = self
                .free_gpus
                .drain(..gpus.min(self.free_gpus.len()))
                .collect();
            job.hide_gpus = self.has_gpus && job.gpus.is_empty();
            self.free_slots = self.free_slots.saturating_sub(threads);
            self.running += 1;
            let i = job.index;
            started.push(i);
            (self.observe)(Event::Started {
                instance: &self.plan.instances[i].name,
                reason: &job.reason,
            });
            let sender = self.sender.clone();
            let observe = self.observe;
            let held = job.gpus.clone();
            self.scope.spawn(move || {
                let result = job.execute(observe);
                let _ = sender.send((i, held, result));
            });
        }
        Ok(started)
    }

    fn in_flight(&self) -> usize {
        self.running
    }

    fn wait(&mut self) -> Result<Vec<(usize, JobResult)>, ExecError> {
        let Ok((i, gpus, result)) = self.receiver.recv() else {
            return Ok(Vec::new());
        };
        self.running -= 1;
        self.free_gpus.extend(gpus);
        // Lowest ordinals first, so which GPU an instance gets does not drift with finish order.
        self.free_gpus.sort_by_key(|g| g.ordinal);
        self.free_slots =
            (self.free_slots + self.plan.instances[i].resolved.threads).min(self.jobs);
        Ok(vec![(i, result)])
    }
}

/// One line of `pipe status`.
#[derive(Debug, Clone, PartialEq)]
pub enum Status {
    UpToDate,
    WillRun(Reason),
    /// Its key depends on upstream instances that will run first.
    AfterUpstream(Vec<String>),
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Status::UpToDate => write!(f, "up to date"),
            Status::WillRun(reason) => write!(f, "will run ({reason})"),
            Status::AfterUpstream(names) => {
                // A fan-in can wait on dozens of instances: name a few, count the rest.
                const SHOWN: usize = 4;
                let mut listed = names
                    .iter()
                    .take(SHOWN)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ");
                if names.len() > SHOWN {
                    listed.push_str(&format!(" and {} more", names.len() - SHOWN));
                }
                let verb = if names.len() == 1 {
                    "changes"
                } else {
                    "change"
                };
                write!(f, "will run if {listed} {verb} its output")
            }
        }
    }
}

/// Why this process cannot compute an instance it would otherwise run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Foreign {
    /// Its plugin is declared here but computes in another binary ([`Plugin::runnable`]).
    ///
    /// [`Plugin::runnable`]: crate::stage::Plugin::runnable
    Plugin(&'static str),
    /// It needs a GPU and this binary has no CUDA probe ([`gpus::set_cuda_probe`]).
    Gpu,
}

/// Whether `instance` can compute in this process (`None`) or not, and why.
pub fn foreign(plan: &Plan, index: usize) -> Option<Foreign> {
    let instance = &plan.instances[index];
    if !instance.plugin.runnable() {
        Some(Foreign::Plugin(instance.plugin.kind()))
    } else if !gpus::has_cuda_probe() && gpus::instance_gpus(plan, index) > 0 {
        Some(Foreign::Gpu)
    } else {
        None
    }
}

/// The first instance (plan order) a run with `only` and `force` may compute that this process
/// cannot, and why: a binary that plans without libtorch then hands the run over before it
/// starts. An instance counts unless it is up to date in the cache; the selection and the cache
/// are read only when the plan has such an instance at all, so a plan without one costs a pass
/// over its instances.
pub fn first_foreign(
    plan: &Plan,
    store: &Store,
    only: &[String],
    force: &[String],
) -> Result<Option<(usize, Foreign)>, ExecError> {
    let mut candidates: HashMap<usize, Foreign> = (0..plan.instances.len())
        .filter_map(|i| foreign(plan, i).map(|why| (i, why)))
        .collect();
    if candidates.is_empty() {
        return Ok(None);
    }
    let (selected, _) = selection(plan, only, force)?;
    candidates.retain(|i, _| selected.contains(i));
    // `status` lists the instances in plan order.
    Ok(status(plan, store, force)?
        .into_iter()
        .filter(|(_, s)| *s != Status::UpToDate)
        .find_map(|(i, _)| candidates.get(&i).map(|why| (i, why.clone()))))
}

/// For each instance (plan order): up to date, or will run and why. Reads the cache only.
pub fn status(
    plan: &Plan,
    store: &Store,
    force: &[String],
) -> Result<Vec<(usize, Status)>, ExecError> {
    let (_, forced) = selection(plan, &[], force)?;
    let mut statuses = walk_cache(plan, |instance, material| {
        let Some(material) = material else {
            return (Status::AfterUpstream(Vec::new()), None);
        };
        if forced.contains(&instance.index) {
            return (Status::WillRun(Reason::Forced), None);
        }
        match store.cached(&material.key()) {
            Ok(Some(crate::store::Cached::Intact {
                outputs, seconds, ..
            })) => (Status::UpToDate, Some((outputs, seconds))),
            Ok(Some(crate::store::Cached::Damaged(damaged))) => (
                Status::WillRun(Reason::OutputDamaged(
                    damaged.into_iter().map(|(n, _)| n).collect(),
                )),
                None,
            ),
            Ok(None) => (
                Status::WillRun(decide::why_new_key(store, instance, material)),
                None,
            ),
            Err(e) => (Status::WillRun(Reason::RecordDamaged(e.to_string())), None),
        }
    });
    // Name the upstream instances whose outputs are not known.
    let known: Vec<bool> = statuses.iter().map(|s| *s == Status::UpToDate).collect();
    for (i, status) in statuses.iter_mut().enumerate() {
        if let Status::AfterUpstream(names) = status {
            *names = plan.instances[i]
                .deps
                .iter()
                .filter(|&&d| !known[d])
                .map(|&d| plan.instances[d].name.clone())
                .collect();
        }
    }
    let mut statuses: Vec<Option<Status>> = statuses.into_iter().map(Some).collect();
    Ok(plan
        .order
        .iter()
        .filter_map(|&i| statuses[i].take().map(|s| (i, s)))
        .collect())
}

/// The keys the plan's instances have now, for those whose inputs are all in the cache (what
/// `pipe gc --keep FILE` keeps). Reads the cache only.
pub fn current_keys(plan: &Plan, store: &Store) -> Vec<String> {
    let mut keys = walk_cache(plan, |_, material| {
        let Some(key) = material.map(|m| m.key()) else {
            return (None, None);
        };
        match store.indexed_record(&key) {
            Ok(Some(record)) => (Some(key.hex()), Some((record.outputs, record.seconds))),
            _ => (None, None),
        }
    });
    plan.order.iter().filter_map(|&i| keys[i].take()).collect()
}

/// What a cached instance contributes to its dependents' keys: its outputs and its seconds.
type Known = (OutputMap, f64);

/// Visits every instance with its key material as the cache alone gives it (`None` where an
/// upstream instance's outputs are unknown), dependencies first, each level of the DAG in
/// parallel. A visit returns its result and, for a cached instance, what it contributes to its
/// dependents' keys; the results come back by instance index.
fn walk_cache<T: Send>(
    plan: &Plan,
    visit: impl Fn(&crate::plan::Instance, Option<&crate::store::KeyMaterial>) -> (T, Option<Known>)
        + Sync,
) -> Vec<T> {
    let n = plan.instances.len();
    let mut level = vec![0usize; n];
    for &i in &plan.order {
        level[i] = plan.instances[i]
            .deps
            .iter()
            .map(|&d| level[d] + 1)
            .max()
            .unwrap_or(0);
    }
    let mut levels: Vec<Vec<usize>> = Vec::new();
    for &i in &plan.order {
        if levels.len() <= level[i] {
            levels.resize_with(level[i] + 1, Vec::new);
        }
        levels[level[i]].push(i);
    }
    // Only what a dependent reads is kept: the outputs of 100,000 leaves were 30 MB of `status`.
    let mut read_by_others = vec![false; n];
    for instance in &plan.instances {
        for &d in &instance.deps {
            read_by_others[d] = true;
        }
    }
    let mut results: Vec<Option<T>> = (0..n).map(|_| None).collect();
    let mut known: Vec<Option<Known>> = vec![None; n];
    for members in levels {
        let visited: Vec<(T, Option<Known>)> = {
            let known = |u: usize| known[u].as_ref();
            members
                .par_iter()
                .map(|&i| {
                    let instance = &plan.instances[i];
                    let upstream = |u: usize| known(u).map(|(outputs, _)| outputs.clone());
                    let timings =
                        timings_table(instance, &plan.instances, &|u| known(u).map(|k| k.1));
                    let material =
                        key_material(instance, &upstream, &plan.instances, timings.as_deref());
                    let (result, outputs) = visit(instance, material.as_ref());
                    (result, outputs.filter(|_| read_by_others[i]))
                })
                .collect()
        };
        for (i, (result, outputs)) in members.into_iter().zip(visited) {
            results[i] = Some(result);
            known[i] = outputs;
        }
    }
    results.into_iter().flatten().collect()
}
