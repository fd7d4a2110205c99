//! Run history: one record per `pipe run` (and `--dry-run`, marked as such) in
//! `cache/runs/<id>.json`, written atomically when the run starts and again when it ends. A
//! record without an end whose process no longer holds the cache lock was interrupted.
//!
//! Beside each ended run's record, `<id>.head.json` holds everything but the instance list, with
//! its outcome counts: at 100,000 instances a record is 16 MB, and listing runs or picking two to
//! compare reads the heads only. A record without a head (a run still going or killed, an older
//! cache, a crash between the two writes) is read whole.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use indexmap::IndexMap;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::{
    io_err, read_json, write_json_atomic, write_json_compact_atomic, RawJson, Result, Store,
};

/// How a run's head file is named after its id.
const HEAD_SUFFIX: &str = ".head.json";

/// What happened to one instance in a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
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
    /// What `pipe exp show` tabulates of it, an [`InstanceColumns`] kept as text: `diff`, `why`
    /// and `runs` skip it (absent in the records of older versions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub columns: Option<RawJson>,
}

/// An instance's stage, matrix values, resolved parameters and its plugin's headline metrics, as
/// the run saw them: `exp show` reads them from the run's record alone, without expanding the
/// pipeline or reading a record per instance (at 100,000 instances on a cold page cache that was
/// 43 s).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstanceColumns {
    pub stage: String,
    /// Matrix values as text, in the file's order.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub matrix: IndexMap<String, String>,
    pub params: serde_json::Value,
    /// Headline metrics only ([`crate::stage::Stage::headline_metrics`]); absent for an
    /// instance that produced none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<serde_json::Value>,
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
    /// The pipeline's stages in file order (absent in the records of older versions).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stages: Vec<String>,
    /// Empty while the run goes on (and written then as absent); a finished run's record is
    /// written with its instances streamed in ([`Store::finish_run`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub instances: Vec<RunInstance>,
}

/// How many instances a finished run's record is written with at a time.
const RECORD_CHUNK: usize = 4096;

/// A finished run's record as written: the record, then its instances, made a chunk at a time.
#[derive(Serialize)]
#[serde(bound(serialize = "Chunked<F>: Serialize"))]
struct FinishedRecord<'a, F> {
    #[serde(flatten)]
    record: &'a RunRecord,
    instances: Chunked<F>,
}

/// Instances serialized as they are made, counting each outcome for the run's head.
struct Chunked<F> {
    len: usize,
    chunk: F,
    counts: std::cell::RefCell<BTreeMap<RunOutcome, usize>>,
}

impl<F: Fn(std::ops::Range<usize>) -> Vec<RunInstance>> Serialize for Chunked<F> {
    fn serialize<S: serde::Serializer>(
        &self,
        serializer: S,
    ) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        let mut seq = serializer.serialize_seq(Some(self.len))?;
        let mut counts = self.counts.borrow_mut();
        for start in (0..self.len).step_by(RECORD_CHUNK) {
            let instances = (self.chunk)(start..(start + RECORD_CHUNK).min(self.len));
            for instance in &instances {
                *counts.entry(instance.outcome).or_insert(0) += 1;
            }
            // Encoded in parallel, written in order.
            let encoded: Vec<serde_json::Result<Box<serde_json::value::RawValue>>> = instances
                .par_iter()
                .map(serde_json::value::to_raw_value)
                .collect();
            for instance in encoded {
                seq.serialize_element(&instance.map_err(serde::ser::Error::custom)?)?;
            }
        }
        seq.end()
    }
}

/// A run record without its instances: what listing and picking runs need.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunHead {
    pub id: String,
    pub started_at: u64,
    pub ended_at: Option<u64>,
    pub user: String,
    pub host: String,
    pub pid: u32,
    pub pipeline: PathBuf,
    pub pipeline_hash: String,
    pub arguments: Vec<String>,
    pub dry_run: bool,
    /// How many instances had each outcome.
    pub counts: BTreeMap<RunOutcome, usize>,
}

impl RunHead {
    pub fn count(&self, outcome: RunOutcome) -> usize {
        self.counts.get(&outcome).copied().unwrap_or(0)
    }
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
            stages: Vec::new(),
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

    pub fn head(&self) -> RunHead {
        let mut counts = BTreeMap::new();
        for instance in &self.instances {
            *counts.entry(instance.outcome).or_insert(0) += 1;
        }
        self.head_with(counts)
    }

    fn head_with(&self, counts: BTreeMap<RunOutcome, usize>) -> RunHead {
        RunHead {
            id: self.id.clone(),
            started_at: self.started_at,
            ended_at: self.ended_at,
            user: self.user.clone(),
            host: self.host.clone(),
            pid: self.pid,
            pipeline: self.pipeline.clone(),
            pipeline_hash: self.pipeline_hash.clone(),
            arguments: self.arguments.clone(),
            dry_run: self.dry_run,
            counts,
        }
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

    fn run_head_path(&self, id: &str) -> PathBuf {
        self.root().join("runs").join(format!("{id}{HEAD_SUFFIX}"))
    }

    /// Writes the record and, once the run has ended, its head: after the record, so a head
    /// never claims an end its record lacks. A head without an end would never be trusted
    /// ([`Store::read_head`]), so a starting run writes none.
    pub fn save_run(&self, record: &RunRecord) -> Result<()> {
        // Compact: at 100,000 instances the pretty form was 17 MB and its writing a tenth of a
        // no-op run.
        write_json_compact_atomic(&self.run_path(&record.id), record)?;
        if record.ended_at.is_none() {
            return Ok(());
        }
        write_json_atomic(&self.run_head_path(&record.id), &record.head())
    }

    /// Ends the run: writes its record with its `len` instances, which `chunk` makes a range at
    /// a time (in order), then its head. At 100,000 instances the whole list with its columns
    /// was about 60 MB, held at the end of a run when its memory peaked.
    pub fn finish_run(
        &self,
        record: &mut RunRecord,
        len: usize,
        chunk: impl Fn(std::ops::Range<usize>) -> Vec<RunInstance>,
    ) -> Result<()> {
        record.ended_at = Some(unix_now());
        record.instances.clear();
        let finished = FinishedRecord {
            record,
            instances: Chunked {
                len,
                chunk,
                counts: Default::default(),
            },
        };
        write_json_compact_atomic(&self.run_path(&record.id), &finished)?;
        let head = record.head_with(finished.instances.counts.into_inner());
        write_json_atomic(&self.run_head_path(&record.id), &head)
    }

    /// The whole record of a listed run.
    pub fn load_run(&self, head: &RunHead) -> Result<RunRecord> {
        let path = self.run_path(&head.id);
        read_json::<RunRecord>(&path)?.ok_or_else(|| {
            io_err("cannot read run record", &path)(std::io::ErrorKind::NotFound.into())
        })
    }

    /// Finished runs (not dry runs), newest first.
    pub fn finished_runs(&self) -> Result<Vec<RunHead>> {
        Ok(self
            .runs()?
            .into_iter()
            .map(|(r, _)| r)
            .filter(|r| !r.dry_run && r.ended_at.is_some())
            .collect())
    }

    /// Every run, newest first, with its state.
    pub fn runs(&self) -> Result<Vec<(RunHead, RunState)>> {
        let dir = self.root().join("runs");
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_err("cannot list runs", &dir)(e)),
        };
        let holder = self.lock_holder();
        let mut runs = Vec::new();
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(id) = name.strip_suffix(".json") else {
                continue;
            };
            if id.ends_with(".head") || crate::atomic::is_temporary_name(&name) {
                continue;
            }
            let Some(head) = self.read_head(id) else {
                tracing::warn!("skipping unreadable run record {}", entry.path().display());
                continue;
            };
            let state = match head.ended_at {
                Some(_) if head.count(RunOutcome::Failed) + head.count(RunOutcome::Skipped) > 0 => {
                    RunState::Failed
                }
                Some(_) => RunState::Succeeded,
                None if head.dry_run => RunState::Interrupted,
                None if holder == Some(head.pid) => RunState::Running,
                None => RunState::Interrupted,
            };
            runs.push((head, state));
        }
        runs.sort_by(|a, b| b.0.id.cmp(&a.0.id));
        Ok(runs)
    }

    /// The head of run `id`: its head file when that tells the run ended, else (no head yet, or
    /// the run may have ended since its head was written) the record itself.
    fn read_head(&self, id: &str) -> Option<RunHead> {
        if let Ok(Some(head)) = read_json::<RunHead>(&self.run_head_path(id)) {
            if head.ended_at.is_some() && head.id == id {
                return Some(head);
            }
        }
        let head = read_json::<RunRecord>(&self.run_path(id))
            .ok()
            .flatten()?
            .head();
        if head.ended_at.is_some() {
            // A record written before heads existed: its head spares the next listing the
            // whole read (best effort: a read-only cache stays as it is).
            let _ = write_json_atomic(&self.run_head_path(id), &head);
        }
        Some(head)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn instance(name: &str, outcome: RunOutcome) -> RunInstance {
        RunInstance {
            name: name.into(),
            key: Some(format!("key-{name}")),
            outcome,
            seconds: 1.0,
            columns: None,
        }
    }

    /// A cache under `dir` and a run of a pipeline file there, just started.
    fn store_and_run(dir: &Path) -> (Store, RunRecord) {
        let store = Store::open(&dir.join("cache")).unwrap();
        let pipeline = dir.join("p.yaml");
        fs::write(&pipeline, "stages: {}\n").unwrap();
        (
            store,
            RunRecord::start(&pipeline, vec!["run".into()], false),
        )
    }

    #[test]
    fn runs_are_listed_from_their_heads_and_a_record_without_one_from_itself() {
        let dir = tempfile::tempdir().unwrap();
        let (store, mut run) = store_and_run(dir.path());
        store.save_run(&run).unwrap();
        let instances = vec![
            instance("a", RunOutcome::Ran),
            instance("b", RunOutcome::Cached),
            instance("c", RunOutcome::Cached),
        ];
        store
            .finish_run(&mut run, instances.len(), |range| instances[range].to_vec())
            .unwrap();
        run.instances = instances;

        // Listing reads the head alone: an unreadable record does not hide its run from the
        // list, while reading the record itself fails.
        let record = fs::read(store.run_path(&run.id)).unwrap();
        fs::write(store.run_path(&run.id), b"not json").unwrap();
        let runs = store.runs().unwrap();
        assert_eq!(runs.len(), 1);
        let (head, state) = &runs[0];
        assert_eq!(
            (head.count(RunOutcome::Ran), head.count(RunOutcome::Cached)),
            (1, 2)
        );
        assert_eq!(*state, RunState::Succeeded);
        assert!(store.load_run(head).is_err());

        // A record without a head (an older cache) is listed from the record, and gets its head.
        fs::write(store.run_path(&run.id), record).unwrap();
        fs::remove_file(store.run_head_path(&run.id)).unwrap();
        let runs = store.runs().unwrap();
        assert_eq!(runs[0].0, run.head());
        assert_eq!(store.load_run(&runs[0].0).unwrap(), run);
        let written: RunHead = read_json(&store.run_head_path(&run.id)).unwrap().unwrap();
        assert_eq!(written, run.head());
    }

    #[test]
    fn a_record_made_chunk_by_chunk_keeps_every_instance_in_order_with_its_counts() {
        let dir = tempfile::tempdir().unwrap();
        let (store, mut run) = store_and_run(dir.path());
        let instances: Vec<RunInstance> = (0..2 * RECORD_CHUNK + 5)
            .map(|i| {
                let outcome = if i % 3 == 0 {
                    RunOutcome::Ran
                } else {
                    RunOutcome::Cached
                };
                instance(&format!("i{i}"), outcome)
            })
            .collect();
        store
            .finish_run(&mut run, instances.len(), |range| instances[range].to_vec())
            .unwrap();
        let (head, _) = store.runs().unwrap().remove(0);
        let loaded = store.load_run(&head).unwrap();
        assert_eq!(loaded.instances, instances);
        assert_eq!(head.count(RunOutcome::Ran), instances.len().div_ceil(3));
        assert_eq!(head, loaded.head());
    }
}
