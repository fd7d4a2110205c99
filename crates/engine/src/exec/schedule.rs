//! Which instance is ready, hit or miss, skipped: the executor-independent part of a run.
//!
//! Every instance waits on a count of unfinished dependencies; one that reaches zero joins the
//! ready set, so a finished job costs work in its dependents only, never a pass over the plan.
//! The ready set is decided in batches: key material, cache lookup and (for a hit) the artifacts
//! of a batch are computed in parallel, then applied in plan order on this thread, so events,
//! queue order and the first error are what a one-by-one walk would give.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::path::Path;

use rayon::prelude::*;

use super::decide::{key_material, lookup, timings_table, Lookup, Reason};
use super::{instance, Backend, Event, ExecError, Outcome, RunOptions};
use crate::plan::Plan;
use crate::store::{FileIdentity, Key, KeyMaterial, OutputMap, Store, StoreError};

/// How many ready instances are decided at once. A decision holds the hit's outputs and object
/// identities until it is applied: 100,000 of them at once held 35 MB of heap (heaptrack). A
/// later chunk sees the claims of an earlier one, which is what deciding one by one would see.
const DECIDE_CHUNK: usize = 1024;

#[derive(Clone)]
enum State {
    Pending,
    /// A cache miss waiting for thread slots.
    Queued,
    Running,
    Done(OutputMap),
    /// Done, with no dependents to read its outputs: not holding them saved 30 MB of a
    /// 100,000-instance run.
    DoneLeaf,
    Failed,
}

/// Each instance's outcome and key, by instance index (`None`: never decided).
pub(super) type Outcomes = Vec<Option<(Outcome, Option<String>)>>;

pub(super) struct Schedule<'p> {
    pub plan: &'p Plan,
    pub store: &'p Store,
    pub options: &'p RunOptions,
    pub selected: &'p HashSet<usize>,
    pub forced: &'p HashSet<usize>,
}

/// What deciding one ready instance found, before it is applied.
enum Decision {
    /// An upstream output it binds is missing: it cannot get a key.
    NoKey,
    /// Same key as instance `j`, queued or running: decided again once `j` finishes.
    WaitsFor(usize),
    Hit {
        key: Key,
        outputs: OutputMap,
        seconds: f64,
        placed: Result<(), StoreError>,
    },
    Miss {
        key: Key,
        material: KeyMaterial,
        reason: Reason,
        timings: Option<String>,
    },
}

/// The run's bookkeeping, owned by the scheduling thread.
struct Progress {
    state: Vec<State>,
    outcomes: Outcomes,
    ran_this_run: Vec<bool>,
    /// Each finished instance's seconds, for instances that ask for their upstream timings.
    seconds: Vec<Option<f64>>,
    /// Unfinished dependencies per instance.
    waiting: Vec<usize>,
    dependents: Vec<Vec<usize>>,
    /// Instances to decide, by position in plan order.
    ready: BTreeSet<usize>,
    position: Vec<usize>,
    /// Keys of queued and running misses (and each one's key, to release it), and the instances
    /// waiting for each.
    claimed: HashMap<Key, usize>,
    claim_of: Vec<Option<Key>>,
    waiting_for_key: HashMap<usize, Vec<usize>>,
}

impl Progress {
    fn new(plan: &Plan, selected: &HashSet<usize>) -> Progress {
        let n = plan.instances.len();
        let mut position = vec![0; n];
        for (p, &i) in plan.order.iter().enumerate() {
            position[i] = p;
        }
        let mut dependents = vec![Vec::new(); n];
        for instance in &plan.instances {
            for &d in &instance.deps {
                dependents[d].push(instance.index);
            }
        }
        let waiting: Vec<usize> = plan.instances.iter().map(|i| i.deps.len()).collect();
        let ready = selected
            .iter()
            .filter(|&&i| waiting[i] == 0)
            .map(|&i| position[i])
            .collect();
        Progress {
            state: vec![State::Pending; n],
            outcomes: vec![None; n],
            ran_this_run: vec![false; n],
            seconds: vec![None; n],
            waiting,
            dependents,
            ready,
            position,
            claimed: HashMap::new(),
            claim_of: vec![None; n],
            waiting_for_key: HashMap::new(),
        }
    }

    fn outputs(&self, i: usize) -> Option<OutputMap> {
        match &self.state[i] {
            State::Done(outputs) => Some(outputs.clone()),
            _ => None,
        }
    }

    /// Records how `i` ended and makes what waited on it ready: dependents whose last dependency
    /// it was, every dependent of a failure (to be skipped), and instances that shared its key.
    fn settle(&mut self, i: usize, state: State, outcome: Outcome, key: Option<String>) {
        let failed = matches!(state, State::Failed);
        self.state[i] = match state {
            State::Done(_) if self.dependents[i].is_empty() => State::DoneLeaf,
            state => state,
        };
        self.outcomes[i] = Some((outcome, key));
        for k in 0..self.dependents[i].len() {
            let d = self.dependents[i][k];
            self.waiting[d] -= 1;
            if failed || self.waiting[d] == 0 {
                self.ready.insert(self.position[d]);
            }
        }
        for j in self.waiting_for_key.remove(&i).unwrap_or_default() {
            self.ready.insert(self.position[j]);
        }
    }
}

impl<'p> Schedule<'p> {
    pub(super) fn drive(
        &self,
        backend: &mut dyn Backend<'p>,
        observe: &(dyn Fn(Event<'_>) + Sync),
    ) -> Result<Outcomes, ExecError> {
        let plan = self.plan;
        let mut progress = Progress::new(plan, self.selected);
        observe(Event::Planned {
            total: self.selected.len(),
        });
        let mut queue: VecDeque<instance::Job<'p>> = VecDeque::new();
        loop {
            while !progress.ready.is_empty() {
                let batch = self.ready_batch(&mut progress, observe);
                for chunk in batch.chunks(DECIDE_CHUNK) {
                    let decisions: Vec<Decision> = chunk
                        .par_iter()
                        .map(|&i| self.decide(i, &progress))
                        .collect();
                    for (&i, decision) in chunk.iter().zip(decisions) {
                        self.apply(i, decision, &mut progress, &mut queue, observe)?;
                    }
                }
            }
            for i in backend.start(&mut queue)? {
                progress.state[i] = State::Running;
            }
            if backend.in_flight() == 0 {
                break;
            }
            for (i, result) in backend.wait()? {
                let instance = &plan.instances[i];
                if let Some(key) = progress.claim_of[i].take() {
                    progress.claimed.remove(&key);
                }
                match result {
                    Ok(finished) => {
                        materialize(
                            self.store,
                            &self.options.artifacts,
                            &instance.artifact_dir(),
                            &finished.record.outputs,
                            &HashMap::new(),
                        )?;
                        let outcome = Outcome::Ran {
                            seconds: finished.record.seconds,
                            reason: finished.reason,
                        };
                        observe(Event::Finished {
                            instance: &instance.name,
                            outcome: &outcome,
                        });
                        progress.ran_this_run[i] = true;
                        progress.seconds[i] = Some(finished.record.seconds);
                        let key = Some(finished.record.key.clone());
                        progress.settle(i, State::Done(finished.record.outputs), outcome, key);
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
                        progress.settle(i, State::Failed, outcome, Some(failure.key));
                    }
                }
            }
        }
        Ok(progress.outcomes)
    }

    /// Takes the ready set, in plan order: skips the dependents of failures on the way and
    /// returns the pending instances whose dependencies are all done.
    fn ready_batch(
        &self,
        progress: &mut Progress,
        observe: &(dyn Fn(Event<'_>) + Sync),
    ) -> Vec<usize> {
        let plan = self.plan;
        let mut batch = Vec::new();
        for p in std::mem::take(&mut progress.ready) {
            let i = plan.order[p];
            if !self.selected.contains(&i) || !matches!(progress.state[i], State::Pending) {
                continue;
            }
            let instance = &plan.instances[i];
            let failed_dep = instance
                .deps
                .iter()
                .find(|&&d| matches!(progress.state[d], State::Failed));
            if let Some(&bad) = failed_dep {
                let outcome = Outcome::Skipped {
                    because: format!("`{}` did not finish", plan.instances[bad].name),
                };
                observe(Event::Finished {
                    instance: &instance.name,
                    outcome: &outcome,
                });
                progress.settle(i, State::Failed, outcome, None);
            } else if progress.waiting[i] == 0 {
                batch.push(i);
            }
        }
        batch
    }

    /// Key material, cache lookup and, for a hit, its artifacts: the part of deciding `i` that
    /// reads shared state only, so a batch runs it in parallel.
    fn decide(&self, i: usize, progress: &Progress) -> Decision {
        let instance = &self.plan.instances[i];
        let upstream = |u: usize| progress.outputs(u);
        let timings = timings_table(instance, &self.plan.instances, &|u| progress.seconds[u]);
        let Some(material) = key_material(
            instance,
            &upstream,
            &self.plan.instances,
            timings.as_deref(),
        ) else {
            return Decision::NoKey;
        };
        // Two instances with the same key (same plugin, params and inputs) would share a
        // staging directory: the second waits and then reuses the result.
        let key = material.key();
        if let Some(&j) = progress.claimed.get(&key) {
            if j != i {
                return Decision::WaitsFor(j);
            }
        }
        match lookup(self.store, instance, &material, self.forced.contains(&i)) {
            Lookup::Hit {
                outputs,
                seconds,
                identities,
            } => {
                let placed = materialize(
                    self.store,
                    &self.options.artifacts,
                    &instance.artifact_dir(),
                    &outputs,
                    &identities,
                );
                Decision::Hit {
                    key,
                    outputs,
                    seconds,
                    placed,
                }
            }
            Lookup::Miss(reason) => Decision::Miss {
                key,
                material,
                reason,
                timings,
            },
        }
    }

    fn apply(
        &self,
        i: usize,
        decision: Decision,
        progress: &mut Progress,
        queue: &mut VecDeque<instance::Job<'p>>,
        observe: &(dyn Fn(Event<'_>) + Sync),
    ) -> Result<(), ExecError> {
        let instance = &self.plan.instances[i];
        match decision {
            Decision::NoKey => {}
            Decision::WaitsFor(j) => progress.waiting_for_key.entry(j).or_default().push(i),
            Decision::Hit {
                key,
                outputs,
                seconds,
                placed,
            } => {
                placed?;
                let hex = key.hex();
                self.store.note_latest(&instance.artifact_dir(), &hex)?;
                let cutoff = instance.deps.iter().any(|&d| progress.ran_this_run[d]);
                let outcome = Outcome::Cached { cutoff };
                observe(Event::Finished {
                    instance: &instance.name,
                    outcome: &outcome,
                });
                progress.seconds[i] = Some(seconds);
                progress.settle(i, State::Done(outputs), outcome, Some(hex));
            }
            Decision::Miss {
                key,
                material,
                reason,
                timings,
            } => {
                // An instance of this batch with the same key was queued just now.
                if let Some(&j) = progress.claimed.get(&key) {
                    progress.waiting_for_key.entry(j).or_default().push(i);
                    return Ok(());
                }
                let upstream = instance
                    .deps
                    .iter()
                    .filter_map(|&d| progress.outputs(d).map(|o| (d, o)))
                    .collect();
                progress.state[i] = State::Queued;
                progress.claimed.insert(key, i);
                progress.claim_of[i] = Some(key);
                queue.push_back(instance::Job {
                    plan: self.plan,
                    store: self.store,
                    index: i,
                    key,
                    material,
                    reason,
                    upstream,
                    timings,
                    gpus: Vec::new(),
                    hide_gpus: false,
                });
            }
        }
        Ok(())
    }
}

/// Shows an instance's outputs under `artifacts/<dir>`; `identities` are those of objects
/// verified just now ([`Store::materialize_known`]).
fn materialize(
    store: &Store,
    artifacts: &Path,
    dir: &str,
    outputs: &OutputMap,
    identities: &HashMap<String, FileIdentity>,
) -> Result<(), StoreError> {
    for output in outputs.values() {
        store.materialize_known(output, &artifacts.join(dir).join(&output.path), identities)?;
    }
    Ok(())
}
