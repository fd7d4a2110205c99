//! `pipe exec <key>`: one instance run in another process or on another host, over a shared
//! cache, exactly as the local executor runs it.
//!
//! Before submitting, the coordinator writes a self-contained job description to
//! `cache/jobs/<key>.json`: the pipeline file (path and text), the instance name, the key
//! material and the output records of its upstream instances. The worker re-plans that text,
//! finds the instance, recomputes its key from the recorded upstream outputs and refuses to run
//! if it differs (a project file or the `pipe` binary changed since submission), then builds the
//! same [`instance::Job`] the local executor builds: staging, hashing and the atomic record are
//! one code path for both.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::plan::Plan;
use crate::spec::SourceFile;
use crate::store::{write_atomic, KeyMaterial, OutputMap, Record, Store};

use super::{instance, key_material, Event, Reason};

/// The version of [`JobDescription`]'s layout; a worker refuses descriptions it does not know.
const FORMAT: u32 = 1;

/// Everything a worker needs to rebuild one instance's job: `cache/jobs/<key>.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobDescription {
    pub format: u32,
    /// Absolute path of the pipeline file (its directory is the project directory).
    pub pipeline: PathBuf,
    /// The pipeline text the coordinator planned, so an edit after submission cannot change
    /// what the job runs.
    pub pipeline_text: String,
    pub instance: String,
    pub key: String,
    pub material: KeyMaterial,
    /// Output records of the upstream instances, by instance name.
    pub upstream: BTreeMap<String, OutputMap>,
    /// Why the coordinator runs it (for the log).
    pub reason: String,
    /// The upstream timings CSV, for an instance that asked for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timings: Option<String>,
}

/// Why `pipe exec` could not run (or finish) an instance.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error(
        "this node ({host}) cannot see the cache directory {path}: the cache must be on a \
         filesystem every node mounts at the same path"
    )]
    CacheNotVisible { host: String, path: PathBuf },
    #[error(
        "no job description for key {key} ({path} does not exist): was it submitted by \
         `pipe run --executor slurm` with this cache?"
    )]
    NoDescription { key: String, path: PathBuf },
    #[error("`{0}` is not an instance key (keys are lowercase hexadecimal)")]
    InvalidKey(String),
    /// Found before anything is written: the caller hands the job to a binary that can.
    #[error("instance {instance} cannot compute in this binary ({why:?})")]
    Foreign {
        instance: String,
        why: super::Foreign,
    },
    #[error("job description {path} is unreadable: {message}")]
    BadDescription { path: PathBuf, message: String },
    #[error("the pipeline in the job description no longer plans:\n{0}")]
    Plan(crate::spec::SpecErrors),
    #[error("instance `{0}` is not in the pipeline of the job description")]
    UnknownInstance(String),
    #[error(
        "instance `{instance}` now has key {actual}, not {expected}: a project file or the \
         `pipe` binary changed since submission; run `pipe run` again"
    )]
    KeyChanged {
        instance: String,
        expected: String,
        actual: String,
    },
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error("{0} (on node {host}: did the job ask for GPUs with `resources: {{gpus: N}}`?)", host = hostname())]
    Gpu(#[from] super::gpus::GpuError),
    #[error("{instance} failed: {message}{}", log.as_ref().map(|l| format!("; log: {}", l.display())).unwrap_or_default())]
    Failed {
        instance: String,
        message: String,
        log: Option<PathBuf>,
    },
}

impl WorkerError {
    /// The exit code of `pipe exec`: 1 the instance failed, 3 the cache directory is not visible
    /// here, 2 anything else (no or an unreadable job description for the key, a changed key).
    pub fn exit_code(&self) -> i32 {
        match self {
            WorkerError::Failed { .. } => 1,
            WorkerError::CacheNotVisible { .. } => 3,
            _ => 2,
        }
    }
}

/// Where the description of `key` lives.
pub fn description_path(cache_root: &Path, key: &str) -> PathBuf {
    cache_root.join("jobs").join(format!("{key}.json"))
}

/// Reads the pipeline file's text once per run, for every description of that run.
pub(super) fn pipeline_text(plan: &Plan) -> Result<String, crate::store::StoreError> {
    std::fs::read_to_string(&plan.source.path).map_err(|source| crate::store::StoreError::Io {
        context: "cannot read the pipeline file",
        path: plan.source.path.clone(),
        source,
    })
}

/// Writes the description of `job` (atomically) for a worker to pick up.
pub(super) fn describe(
    store: &Store,
    job: &instance::Job<'_>,
    pipeline_text: &str,
) -> Result<PathBuf, crate::store::StoreError> {
    let plan = job.plan;
    let file_name = plan
        .source
        .path
        .file_name()
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("pipeline.yaml"));
    let pipeline = plan.project_dir.join(file_name);
    let description = JobDescription {
        format: FORMAT,
        pipeline,
        pipeline_text: pipeline_text.to_string(),
        instance: plan.instances[job.index].name.clone(),
        key: job.key.hex(),
        material: job.material.clone(),
        upstream: job
            .upstream
            .iter()
            .map(|(&i, outputs)| (plan.instances[i].name.clone(), outputs.clone()))
            .collect(),
        reason: job.reason.to_string(),
        timings: job.timings.clone(),
    };
    let path = description_path(store.root(), &description.key);
    let bytes = serde_json::to_vec_pretty(&description).map_err(|e| {
        crate::store::StoreError::BadRecord {
            path: path.clone(),
            message: e.to_string(),
        }
    })?;
    write_atomic(&path, &bytes)?;
    Ok(path)
}

/// Runs the instance described under `key` in the cache at `cache`, printing progress to
/// stderr. An instance whose record already exists is not run again.
pub fn execute_described(
    registry: &crate::stage::Registry,
    cache: &Path,
    key: &str,
) -> Result<Record, WorkerError> {
    // Checked before `Store::open`, which would otherwise create an empty cache on a node that
    // does not mount the shared one.
    if !cache.is_dir() {
        return Err(WorkerError::CacheNotVisible {
            host: hostname(),
            path: cache.to_path_buf(),
        });
    }
    if key.is_empty()
        || !key
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err(WorkerError::InvalidKey(key.to_string()));
    }
    // The cache is visible; a key nobody described is the caller's mistake, not the mount's.
    let path = description_path(cache, key);
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(WorkerError::NoDescription {
                key: key.to_string(),
                path,
            })
        }
        Err(e) => {
            return Err(WorkerError::BadDescription {
                path,
                message: e.to_string(),
            })
        }
    };
    let store = Store::open(cache)?;
    let description: JobDescription =
        serde_json::from_slice(&bytes).map_err(|e| WorkerError::BadDescription {
            path: path.clone(),
            message: e.to_string(),
        })?;
    if description.format != FORMAT || description.key != key {
        return Err(WorkerError::BadDescription {
            path,
            message: format!(
                "format {} for key {} (this worker reads format {FORMAT} for key {key})",
                description.format, description.key
            ),
        });
    }
    let source = SourceFile::parse(&description.pipeline, &description.pipeline_text)
        .map_err(WorkerError::Plan)?;
    let plan = Plan::from_source(registry, source).map_err(WorkerError::Plan)?;
    let instance = plan
        .instances
        .iter()
        .find(|i| i.name == description.instance)
        .ok_or_else(|| WorkerError::UnknownInstance(description.instance.clone()))?;
    if let Some(why) = super::foreign(&plan, instance.index) {
        return Err(WorkerError::Foreign {
            instance: instance.name.clone(),
            why,
        });
    }
    let by_name: BTreeMap<&str, usize> = plan
        .instances
        .iter()
        .map(|i| (i.name.as_str(), i.index))
        .collect();
    let mut upstream = BTreeMap::new();
    for (name, outputs) in &description.upstream {
        let index = *by_name
            .get(name.as_str())
            .ok_or_else(|| WorkerError::UnknownInstance(name.clone()))?;
        upstream.insert(index, outputs.clone());
    }
    let material = key_material(
        instance,
        &|u| upstream.get(&u).cloned(),
        &plan.instances,
        description.timings.as_deref(),
    );
    let actual = material.as_ref().map(|m| m.key().hex()).unwrap_or_default();
    let Some(material) = material.filter(|_| actual == key) else {
        return Err(WorkerError::KeyChanged {
            instance: instance.name.clone(),
            expected: key.to_string(),
            actual,
        });
    };
    let job_key = material.key();
    if let Some(record) = store.record(&job_key)? {
        eprintln!(
            "pipe exec: {} already has a record; nothing to do",
            instance.name
        );
        return Ok(record);
    }
    eprintln!(
        "pipe exec: {} on {} ({})",
        instance.name,
        hostname(),
        description.reason
    );
    // SLURM hands the job its GPUs as `CUDA_VISIBLE_DEVICES`; the instance takes what it needs.
    let needed = super::gpus::instance_gpus(&plan, instance.index) as usize;
    let gpus = if needed == 0 {
        Vec::new()
    } else {
        let available = super::gpus::discover()?;
        super::gpus::check_enough(
            &plan,
            [&instance.index],
            &available,
            super::gpus::source_text(),
        )?;
        available.into_iter().take(needed).collect()
    };
    let job = instance::Job {
        plan: &plan,
        store: &store,
        index: instance.index,
        key: job_key,
        material,
        // The coordinator's reason is only informative here; the description carries its text.
        reason: Reason::New,
        upstream,
        timings: description.timings.clone(),
        gpus,
        hide_gpus: false,
    };
    let observe = |event: Event<'_>| {
        if let Event::Progress { instance, message } = event {
            eprintln!("{instance}: {message}");
        }
    };
    match job.execute(&observe) {
        Ok(finished) => {
            eprintln!(
                "pipe exec: {} done in {:.2}s",
                instance.name, finished.record.seconds
            );
            Ok(finished.record)
        }
        Err(failure) => Err(WorkerError::Failed {
            instance: instance.name.clone(),
            message: failure.message,
            log: failure.log,
        }),
    }
}

/// This host's name, for messages (best effort).
pub(super) fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "this host".into())
}
