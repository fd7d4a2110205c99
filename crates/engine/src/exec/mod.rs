//! The local executor: walks the plan, reuses cached instances, runs the rest in parallel under a
//! thread budget and the GPUs it has ([`gpus`]), and records results atomically.
//!
//! Scheduling (which instance is ready, which are skipped) stays on the calling thread
//! ([`Schedule`]); a backend runs the misses: each on a scoped worker thread reporting back over
//! a channel (local), or as SLURM jobs running `pipe exec <key>` over a shared cache
//! ([`slurm`], [`worker`]). A failed instance
//! skips only its dependents. A killed process leaves only staging directories (removed on the
//! next run) and checkpoints (used to resume).

mod decide;
pub mod gpus;
mod instance;
pub mod slurm;
pub mod worker;

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Instant;

use crate::plan::Plan;
use crate::store::{OutputRecord, Store, StoreError};

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
    pub name: String,
    pub stage: String,
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

#[derive(Clone)]
enum State {
    Pending,
    /// A cache miss waiting for thread slots.
    Queued,
    Running,
    Done(BTreeMap<String, OutputRecord>),
    Failed,
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
    store.save_index()?;

    let reports = plan
        .order
        .iter()
        .filter_map(|&i| {
            outcomes[i].take().map(|(outcome, key)| InstanceReport {
                name: plan.instances[i].name.clone(),
                stage: plan.instances[i].stage.clone(),
                key,
                outcome,
            })
        })
        .collect();
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

/// The executor-independent part of a run: which instance is ready, hit or miss, skipped.
struct Schedule<'p> {
    plan: &'p Plan,
    store: &'p Store,
    options: &'p RunOptions,
    selected: &'p HashSet<usize>,
    forced: &'p HashSet<usize>,
}

type Outcomes = Vec<Option<(Outcome, Option<String>)>>;

impl<'p> Schedule<'p> {
    fn drive(
        &self,
        backend: &mut dyn Backend<'p>,
        observe: &(dyn Fn(Event<'_>) + Sync),
    ) -> Result<Outcomes, ExecError> {
        let (plan, store, options) = (self.plan, self.store, self.options);
        let n = plan.instances.len();
        let mut state = vec![State::Pending; n];
        let mut outcomes: Outcomes = vec![None; n];
        let mut ran_this_run = vec![false; n];
        // Each finished instance's seconds, for instances that ask for their upstream timings.
        let mut seconds: Vec<Option<f64>> = vec![None; n];
        observe(Event::Planned {
            total: self.selected.len(),
        });
        let mut queue: VecDeque<instance::Job<'p>> = VecDeque::new();
        let mut claimed: std::collections::HashMap<crate::store::Key, usize> =
            std::collections::HashMap::new();
        loop {
            // Start or resolve everything that is ready, in plan order.
            let mut progressed = true;
            while progressed {
                progressed = false;
                for &i in &plan.order {
                    if !self.selected.contains(&i) || !matches!(state[i], State::Pending) {
                        continue;
                    }
                    let instance = &plan.instances[i];
                    if let Some(&bad) = instance
                        .deps
                        .iter()
                        .find(|&&d| matches!(state[d], State::Failed))
                    {
                        state[i] = State::Failed;
                        let outcome = Outcome::Skipped {
                            because: format!("`{}` did not finish", plan.instances[bad].name),
                        };
                        observe(Event::Finished {
                            instance: &instance.name,
                            outcome: &outcome,
                        });
                        outcomes[i] = Some((outcome, None));
                        progressed = true;
                        continue;
                    }
                    if !instance
                        .deps
                        .iter()
                        .all(|&d| matches!(state[d], State::Done(_)))
                    {
                        continue;
                    }
                    let upstream = |u: usize| match &state[u] {
                        State::Done(outputs) => Some(outputs.clone()),
                        _ => None,
                    };
                    let timings = timings_table(instance, &plan.instances, &|u| seconds[u]);
                    let Some(material) =
                        key_material(instance, &upstream, &plan.instances, timings.as_deref())
                    else {
                        continue;
                    };
                    let inputs: BTreeMap<usize, BTreeMap<String, OutputRecord>> = instance
                        .deps
                        .iter()
                        .filter_map(|&d| upstream(d).map(|o| (d, o)))
                        .collect();
                    // Two instances with the same key (same plugin, params and inputs) would
                    // share a staging directory: the second waits and then reuses the result.
                    let key = material.key();
                    if claimed.get(&key).is_some_and(|&j| {
                        j != i && matches!(state[j], State::Queued | State::Running)
                    }) {
                        continue;
                    }
                    progressed = true;
                    match lookup(store, instance, &material, self.forced.contains(&i)) {
                        Lookup::Hit {
                            outputs,
                            seconds: took,
                        } => {
                            seconds[i] = Some(took);
                            let artifact_dir = instance.artifact_dir();
                            materialize(store, &options.artifacts, &artifact_dir, &outputs)?;
                            let cutoff = instance.deps.iter().any(|&d| ran_this_run[d]);
                            let hex = key.hex();
                            store.note_latest(&artifact_dir, &hex)?;
                            let outcome = Outcome::Cached { cutoff };
                            observe(Event::Finished {
                                instance: &instance.name,
                                outcome: &outcome,
                            });
                            outcomes[i] = Some((outcome, Some(hex)));
                            state[i] = State::Done(outputs);
                        }
                        Lookup::Miss(reason) => {
                            state[i] = State::Queued;
                            claimed.insert(key, i);
                            queue.push_back(instance::Job {
                                plan,
                                store,
                                index: i,
                                key,
                                material,
                                reason,
                                upstream: inputs,
                                timings,
                                gpus: Vec::new(),
                                hide_gpus: false,
                            });
                        }
                    }
                }
            }
            for i in backend.start(&mut queue)? {
                state[i] = State::Running;
            }
            if backend.in_flight() == 0 {
                break;
            }
            for (i, result) in backend.wait()? {
                let instance = &plan.instances[i];
                match result {
                    Ok(finished) => {
                        materialize(
                            store,
                            &options.artifacts,
                            &instance.artifact_dir(),
                            &finished.record.outputs,
                        )?;
                        let outcome = Outcome::Ran {
                            seconds: finished.record.seconds,
                            reason: finished.reason,
                        };
                        observe(Event::Finished {
                            instance: &instance.name,
                            outcome: &outcome,
                        });
                        outcomes[i] = Some((outcome, Some(finished.record.key.clone())));
                        ran_this_run[i] = true;
                        seconds[i] = Some(finished.record.seconds);
                        state[i] = State::Done(finished.record.outputs);
                    }
                    Err(failure) => {
                        let outcome = Outcome::Failed {
                            error: failure.message,
                            log: failure.log,
                        };
                        observe(Event::Finished {
                            instance: &instance.name,
                            outcome: &outcome,
                        });
                        outcomes[i] = Some((outcome, Some(failure.key)));
                        state[i] = State::Failed;
                    }
                }
            }
        }
        Ok(outcomes)
    }
}

fn materialize(
    store: &Store,
    artifacts: &Path,
    dir: &str,
    outputs: &BTreeMap<String, OutputRecord>,
) -> Result<(), StoreError> {
    for output in outputs.values() {
        store.materialize(output, &artifacts.join(dir).join(&output.path))?;
    }
    Ok(())
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

/// For each instance (plan order): up to date, or will run and why. Reads the cache only.
pub fn status(
    plan: &Plan,
    store: &Store,
    force: &[String],
) -> Result<Vec<(usize, Status)>, ExecError> {
    let (_, forced) = selection(plan, &[], force)?;
    let mut known: Vec<Option<BTreeMap<String, OutputRecord>>> = vec![None; plan.instances.len()];
    let mut seconds: Vec<Option<f64>> = vec![None; plan.instances.len()];
    let mut out = Vec::new();
    for &i in &plan.order {
        let instance = &plan.instances[i];
        let upstream = |u: usize| known[u].clone();
        let timings = timings_table(instance, &plan.instances, &|u| seconds[u]);
        let status = match key_material(instance, &upstream, &plan.instances, timings.as_deref()) {
            None => Status::AfterUpstream(
                instance
                    .deps
                    .iter()
                    .filter(|&&d| known[d].is_none())
                    .map(|&d| plan.instances[d].name.clone())
                    .collect(),
            ),
            Some(material) => {
                if forced.contains(&i) {
                    Status::WillRun(Reason::Forced)
                } else {
                    match store.cached(&material.key()) {
                        Ok(Some(crate::store::Cached::Intact {
                            outputs,
                            seconds: took,
                        })) => {
                            known[i] = Some(outputs);
                            seconds[i] = Some(took);
                            Status::UpToDate
                        }
                        Ok(Some(crate::store::Cached::Damaged(damaged))) => Status::WillRun(
                            Reason::OutputDamaged(damaged.into_iter().map(|(n, _)| n).collect()),
                        ),
                        Ok(None) => {
                            Status::WillRun(decide::why_new_key(store, instance, &material))
                        }
                        Err(e) => Status::WillRun(Reason::RecordDamaged(e.to_string())),
                    }
                }
            }
        };
        out.push((i, status));
    }
    Ok(out)
}

/// The keys the plan's instances have now, for those whose inputs are all in the cache (what
/// `pipe gc --keep FILE` keeps). Reads the cache only.
pub fn current_keys(plan: &Plan, store: &Store) -> Vec<String> {
    let mut known: Vec<Option<BTreeMap<String, OutputRecord>>> = vec![None; plan.instances.len()];
    let mut seconds: Vec<Option<f64>> = vec![None; plan.instances.len()];
    let mut keys = Vec::new();
    for &i in &plan.order {
        let instance = &plan.instances[i];
        let upstream = |u: usize| known[u].clone();
        let timings = timings_table(instance, &plan.instances, &|u| seconds[u]);
        let Some(material) = key_material(instance, &upstream, &plan.instances, timings.as_deref())
        else {
            continue;
        };
        let key = material.key();
        if let Ok(Some(record)) = store.indexed_record(&key) {
            keys.push(key.hex());
            known[i] = Some(record.outputs);
            seconds[i] = Some(record.seconds);
        }
    }
    keys
}
