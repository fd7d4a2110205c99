//! Running one instance: stage its inputs, call the plugin, store its outputs, write the record.

use std::collections::BTreeMap;
use std::fs;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use crate::plan::{InputBinding, Plan};
use crate::stage::{InputPaths, StageContext};
use crate::store::{Key, KeyMaterial, OutputMap, OutputRecord, Record, Store};

use super::{Event, Reason};

/// How long an attempt waits for a leftover process of a killed run to release its key.
const KEY_LOCK_PATIENCE: std::time::Duration = std::time::Duration::from_secs(30);

pub(super) struct Job<'a> {
    pub plan: &'a Plan,
    pub store: &'a Store,
    pub index: usize,
    pub key: Key,
    pub material: KeyMaterial,
    pub reason: Reason,
    /// Outputs of the upstream instances, by instance index.
    pub upstream: BTreeMap<usize, OutputMap>,
    /// The upstream timings CSV, for an instance that asked for it (staged as input `timings`).
    pub timings: Option<String>,
    /// The GPUs the executor gave this attempt (its own while it runs).
    pub gpus: Vec<crate::stage::Gpu>,
    /// Other instances hold the run's GPUs: child processes get an empty
    /// `CUDA_VISIBLE_DEVICES`, so they cannot use one of those by default.
    pub hide_gpus: bool,
}

pub(super) struct Finished {
    pub record: Record,
    pub reason: Reason,
}

pub(super) struct Failure {
    pub key: String,
    pub message: String,
    pub log: Option<PathBuf>,
}

impl Job<'_> {
    pub fn execute(self, observe: &(dyn Fn(Event<'_>) + Sync)) -> Result<Finished, Failure> {
        let instance = &self.plan.instances[self.index];
        let log_path = self.store.log_path(&self.key);
        let fail = |message: String| Failure {
            key: self.key.hex(),
            message,
            log: log_path.exists().then(|| log_path.clone()),
        };
        // Held for the whole attempt, and by the processes the stage starts: a process left by a
        // killed run keeps it, so this attempt waits for the watchdog to end that process
        // instead of running beside it.
        let key_lock = self
            .store
            .lock_key(&self.key, KEY_LOCK_PATIENCE)
            .map_err(|e| fail(e.to_string()))?;
        let staging = self.store.new_attempt_dir(&self.key);
        let out_dir = staging.join("out");
        let work_dir = staging.join("work");
        let checkpoint_dir = self.store.checkpoint_dir(&self.key);
        for dir in [&out_dir, &work_dir, &checkpoint_dir] {
            fs::create_dir_all(dir)
                .map_err(|e| fail(format!("cannot create {}: {e}", dir.display())))?;
        }
        let _ = fs::remove_file(&log_path);
        let inputs = self
            .stage_inputs(&staging.join("in"))
            .map_err(|e| fail(format!("cannot stage inputs: {e}")))?;

        let name = instance.name.as_str();
        let progress = |message: &str| {
            observe(Event::Progress {
                instance: name,
                message,
            })
        };
        let mut ctx = StageContext {
            instance: instance.name.clone(),
            params: instance.resolved.params.value(),
            seed: instance.seed,
            threads: instance.resolved.threads,
            out_dir: out_dir.clone(),
            work_dir,
            checkpoint_dir: checkpoint_dir.clone(),
            log_path: log_path.clone(),
            project_dir: self.plan.project_dir.clone(),
            inputs,
            gpus: self.gpus.clone(),
            hide_gpus: self.hide_gpus,
            metrics: None,
            progress: &progress,
            key_lock_fd: Some(key_lock.raw_fd()),
        };
        let started_at = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let inputs_before = input_stamps(&staging.join("in"));
        let clock = Instant::now();
        if self.gpus.is_empty() {
            tracing::info!("{name}: running ({})", self.reason);
        } else {
            let ids: Vec<&str> = self.gpus.iter().map(|g| g.id.as_str()).collect();
            tracing::info!("{name}: running ({}) on GPU {}", self.reason, ids.join(","));
        }
        let result = std::panic::catch_unwind(AssertUnwindSafe(|| instance.plugin.run(&mut ctx)));
        let seconds = clock.elapsed().as_secs_f64();
        let outcome = match result {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(format!("{e:#}")),
            Err(panic) => Err(format!(
                "the plugin panicked: {}",
                panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default()
            )),
        };
        // Inputs are hard links to cache objects: a stage that wrote into one has damaged the
        // object, which must not be reused or stored as if nothing happened.
        let changed = changed_inputs(&inputs_before, &input_stamps(&staging.join("in")));
        let outcome = match (outcome, changed.is_empty()) {
            (Ok(()), false) => Err(format!(
                "the stage changed its input file(s) in place: {}; inputs are shared with the \
                 cache, so write to $PIPE_OUT instead (the damaged cache objects are discarded)",
                changed.join(", ")
            )),
            (outcome, _) => outcome,
        };
        if !changed.is_empty() {
            self.discard_changed_inputs();
        }
        if let Err(message) = outcome {
            let _ = fs::remove_dir_all(&staging);
            let _ = fs::remove_dir(&checkpoint_dir); // only if the stage left no resume state
            return Err(fail(message));
        }

        let mut outputs = OutputMap::new();
        for decl in &instance.resolved.outputs {
            let path = out_dir.join(&decl.path);
            let stored = self
                .store
                .put_output(&path, &decl.path, &decl.name)
                .map_err(|e| match e {
                    crate::store::StoreError::MissingOutput { .. } => fail(format!(
                        "{e}; the stage finished without writing `{}`",
                        decl.path
                    )),
                    other => fail(other.to_string()),
                })?;
            outputs.insert(decl.name.clone(), stored);
        }
        let record = Record {
            key: self.key.hex(),
            instance: instance.name.clone(),
            stage: instance.stage.clone(),
            material: self.material,
            outputs,
            metrics: ctx.metrics.take(),
            started_at,
            seconds,
            pipe_version: env!("CARGO_PKG_VERSION").to_string(),
        };
        self.store
            .write_record(&record, &instance.artifact_dir())
            .map_err(|e| fail(e.to_string()))?;
        let _ = fs::remove_dir_all(&checkpoint_dir);
        let _ = fs::remove_dir_all(&staging);
        tracing::info!("{name}: done in {seconds:.2}s");
        Ok(Finished {
            record,
            reason: self.reason,
        })
    }

    /// Removes the cache objects behind input files the stage changed, so whatever reuses them
    /// next finds them missing and recomputes them.
    fn discard_changed_inputs(&self) {
        for output in self.upstream.values().flat_map(|o| o.values()) {
            for damaged in self.store.damaged_objects(output) {
                tracing::warn!("object {damaged} was changed by a stage; discarding it");
                self.store.discard_object(&damaged);
            }
        }
    }

    /// Hard-links each input's objects under `in/<input>/`, with the producer's file name (one
    /// input) or one entry per upstream instance label (fan-in).
    fn stage_inputs(&self, root: &Path) -> Result<BTreeMap<String, InputPaths>, String> {
        let instance = &self.plan.instances[self.index];
        let mut inputs = BTreeMap::new();
        if let Some(table) = &self.timings {
            let path = root.join(super::TIMINGS_INPUT).join("timings.csv");
            crate::store::write_atomic(&path, table.as_bytes()).map_err(|e| e.to_string())?;
            inputs.insert(super::TIMINGS_INPUT.to_string(), InputPaths::One(path));
        }
        for (name, binding) in &instance.inputs {
            let dir = root.join(name);
            let output_of = |up: usize, output: &str| -> Result<OutputRecord, String> {
                self.upstream
                    .get(&up)
                    .and_then(|o| o.get(output))
                    .cloned()
                    .ok_or_else(|| {
                        format!(
                            "output `{output}` of `{}` is not available",
                            self.plan.instances[up].name
                        )
                    })
            };
            match binding {
                InputBinding::One {
                    instance: up,
                    output,
                } => {
                    let record = output_of(*up, output)?;
                    let file_name = Path::new(&record.path)
                        .file_name()
                        .map(|n| n.to_os_string())
                        .unwrap_or_else(|| output.into());
                    let dest = dir.join(file_name);
                    self.store
                        .materialize(&record, &dest)
                        .map_err(|e| e.to_string())?;
                    inputs.insert(name.clone(), InputPaths::One(dest));
                }
                InputBinding::Many { instances, output } => {
                    let mut entries = Vec::new();
                    for &up in instances {
                        let record = output_of(up, output)?;
                        let label = self.plan.instances[up].entry_label();
                        let dest = dir.join(&label);
                        self.store
                            .materialize(&record, &dest)
                            .map_err(|e| e.to_string())?;
                        entries.push((label, dest));
                    }
                    fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
                    inputs.insert(name.clone(), InputPaths::Many(entries));
                }
            }
        }
        Ok(inputs)
    }
}

/// (length, modification time) of every file under the staged inputs, by relative path.
fn input_stamps(root: &Path) -> BTreeMap<String, (u64, i64, i64)> {
    use std::os::unix::fs::MetadataExt;
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, (u64, i64, i64)>) {
        let Ok(entries) = fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(meta) = fs::symlink_metadata(&path) else {
                continue;
            };
            if meta.is_dir() {
                walk(root, &path, out);
            } else {
                let rel = path.strip_prefix(root).unwrap_or(&path);
                out.insert(
                    rel.to_string_lossy().into_owned(),
                    (meta.len(), meta.mtime(), meta.mtime_nsec()),
                );
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

/// Input files whose length or modification time changed (a removed one is not a change: the
/// object is untouched).
fn changed_inputs(
    before: &BTreeMap<String, (u64, i64, i64)>,
    after: &BTreeMap<String, (u64, i64, i64)>,
) -> Vec<String> {
    before
        .iter()
        .filter(|(path, stamp)| after.get(*path).is_some_and(|now| now != *stamp))
        .map(|(path, _)| path.clone())
        .collect()
}
