//! The cache: content-addressed objects, stage records, the per-cache lock, `gc` and `verify`.
//!
//! ```text
//! cache/objects/ab/cdef…        immutable, read-only blobs named by the blake3 of their content
//! cache/records/<key>.json      what produced an instance's outputs, written atomically
//! cache/instances/<stage>/<label>.json   the key an instance last produced (for `pipe status`)
//! cache/staging/<key>-<pid>-<n>/  one attempt's scratch and outputs; removed afterwards
//! cache/staging/<key>.lock      held while an instance of <key> runs, and by its processes
//! cache/checkpoints/<key>/      in-stage resume state, removed when the instance finishes
//! cache/logs/<key>.log          the instance's log
//! cache/runs/<id>.json          one record per `pipe run`: who, when, what, each instance's outcome
//! cache/index.bin               the record index: what a no-op run needs, in one read ([`index`])
//! ```
//! A record is written only after every object it names is in place, so a crash at any point
//! leaves either a complete result or none.

mod canonical;
mod hashing;
mod index;
mod key;
mod lock;
mod maintenance;
mod objects;
mod raw;
mod runs;

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use serde::{Deserialize, Serialize};

pub use canonical::{canonical_json, CanonicalJson};
pub use hashing::{hash_file, hash_file_parallel};
pub use index::{Cached, FileIdentity, IndexedRecord, INDEX_FILE};
pub use key::{InputHash, Key, KeyMaterial};
pub use lock::{CacheLock, KeyLock};
pub use maintenance::{GcReport, RecordScan, VerifyProblem, VerifyReport};
pub use raw::RawJson;
pub use runs::{InstanceColumns, RunHead, RunInstance, RunOutcome, RunRecord, RunState};

/// Errors of the cache itself (I/O, corrupt records).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{context} ({path}): {source}")]
    Io {
        context: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("record {path} is unreadable: {message}")]
    BadRecord { path: PathBuf, message: String },
    #[error("output `{name}` was not written: expected {path}")]
    MissingOutput { name: String, path: PathBuf },
    #[error(
        "output `{name}`: {path} is {what}; pipe stores only regular files and directories \
         (write a copy of the content instead, e.g. `cp -rL`)"
    )]
    NotStorable {
        name: String,
        path: PathBuf,
        what: &'static str,
    },
    #[error(
        "key {key} is held by another process (a leftover command of a killed run?) through \
         {path}; wait for it to end, or kill it"
    )]
    KeyBusy { key: String, path: PathBuf },
    #[error(
        "the cache at {path} is read-only ({source}); `pipe status` and `pipe show` still work, \
         to run pass a writable `--cache` (or copy the cache)"
    )]
    ReadOnly {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

pub(crate) fn io_err<'a>(
    context: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> StoreError + 'a {
    move |source| StoreError::Io {
        context,
        path: path.to_path_buf(),
        source,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OutputKind {
    File,
    Dir,
}

/// One stored output: its content hash (for a directory, the hash of its manifest).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputRecord {
    pub path: String,
    pub hash: String,
    pub size: u64,
    pub kind: OutputKind,
}

/// An instance's outputs by name, in name order. A sorted vector rather than a `BTreeMap`: a map
/// of one or two outputs takes about 100 bytes instead of a 1 KB B-tree node, which at 100,000
/// instances (held by the index and by the scheduler) was about 200 MB, and zeroing those pages
/// a third of a no-op `pipe status`.
pub type OutputMap = litemap::LiteMap<String, OutputRecord>;

/// A directory output's listing, stored as an object of its own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub entries: Vec<ManifestEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestEntry {
    pub path: String,
    pub hash: String,
    pub size: u64,
}

/// What a finished instance produced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub key: String,
    pub instance: String,
    pub stage: String,
    #[serde(flatten)]
    pub material: KeyMaterial,
    pub outputs: OutputMap,
    #[serde(default)]
    pub metrics: Option<serde_json::Value>,
    /// Unix seconds when the run started, and how long it took: never part of the key.
    pub started_at: u64,
    pub seconds: f64,
    pub pipe_version: String,
}

/// A cache directory.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
    /// Loaded on first use; shared by clones (the executor's threads).
    index: Arc<RwLock<Option<index::Index>>>,
}

impl Store {
    /// Opens (creating if needed) the cache at `root`.
    pub fn open(root: &Path) -> Result<Store> {
        for sub in [
            "objects",
            "records",
            "instances",
            "staging",
            "checkpoints",
            "logs",
            "runs",
        ] {
            let dir = root.join(sub);
            fs::create_dir_all(&dir).map_err(io_err("cannot create cache directory", &dir))?;
        }
        // Absolute, because stages run in their own working directories.
        let root = root
            .canonicalize()
            .map_err(io_err("cannot resolve cache directory", root))?;
        Ok(Store {
            root,
            index: Arc::default(),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn object_path(&self, hash: &str) -> PathBuf {
        let (head, tail) = hash.split_at(2.min(hash.len()));
        self.root.join("objects").join(head).join(tail)
    }

    pub fn record_path(&self, key: &Key) -> PathBuf {
        self.root
            .join("records")
            .join(format!("{}.json", key.hex()))
    }

    /// A new staging directory for one attempt at `key`: never one an earlier attempt used, so
    /// a leftover process of a killed run cannot write into this attempt's outputs.
    pub fn new_attempt_dir(&self, key: &Key) -> PathBuf {
        use std::sync::atomic::{AtomicU64, Ordering};
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        self.root
            .join("staging")
            .join(format!("{}-{}-{n}", key.hex(), std::process::id()))
    }

    pub fn checkpoint_dir(&self, key: &Key) -> PathBuf {
        self.root.join("checkpoints").join(key.hex())
    }

    pub fn log_path(&self, key: &Key) -> PathBuf {
        self.root.join("logs").join(format!("{}.log", key.hex()))
    }

    fn instance_index_path(&self, artifact_dir: &str) -> PathBuf {
        self.root
            .join("instances")
            .join(format!("{artifact_dir}.json"))
    }

    /// The readable record of the key written as `hex` (as run records and indexes hold it).
    pub fn record_by_hex(&self, hex: &str) -> Option<Record> {
        let hash = blake3::Hash::from_hex(hex).ok()?;
        self.record(&Key(hash)).ok().flatten()
    }

    /// The record for `key`; a miss is `Ok(None)`, not an error.
    pub fn record(&self, key: &Key) -> Result<Option<Record>> {
        read_json(&self.record_path(key))
    }

    /// Writes the record atomically, then notes it as the instance's latest.
    pub fn write_record(&self, record: &Record, artifact_dir: &str) -> Result<()> {
        let key_path = self
            .root
            .join("records")
            .join(format!("{}.json", record.key));
        write_json_atomic(&key_path, record)?;
        if let Ok(meta) = fs::metadata(&key_path) {
            let entry = self.index_entry(
                index::Stamp::of(&meta),
                record.outputs.clone(),
                record.seconds,
                record.metrics.as_ref(),
            );
            if entry.complete() {
                self.with_index(|index| index.insert_record(&record.key, entry));
            }
        }
        self.note_latest(artifact_dir, &record.key)
    }

    /// Remembers `key` as what the instance at `artifact_dir` last produced.
    pub fn note_latest(&self, artifact_dir: &str, key: &str) -> Result<()> {
        // Cache hits call this for every instance: the index spares them the file.
        if self.read_index(|index| index.latest_is(artifact_dir, key)) {
            return Ok(());
        }
        let path = self.instance_index_path(artifact_dir);
        let entry = serde_json::json!({ "key": key });
        // Skip the synced write when nothing changed.
        if read_json::<serde_json::Value>(&path)
            .ok()
            .flatten()
            .as_ref()
            != Some(&entry)
        {
            write_json_atomic(&path, &entry)?;
        }
        self.with_index(|index| index.note_latest(artifact_dir, key));
        Ok(())
    }

    /// The record the instance at `artifact_dir` last produced, if it is still in the cache.
    pub fn latest_record(&self, artifact_dir: &str) -> Result<Option<Record>> {
        let Some(index) = read_json::<serde_json::Value>(&self.instance_index_path(artifact_dir))?
        else {
            return Ok(None);
        };
        let Some(key) = index.get("key").and_then(|k| k.as_str()) else {
            return Ok(None);
        };
        read_json(&self.root.join("records").join(format!("{key}.json")))
    }

    /// Removes a record (its objects stay until `gc`).
    pub fn discard_record(&self, key: &str) {
        let _ = fs::remove_file(self.root.join("records").join(format!("{key}.json")));
        self.with_index(|index| index.remove_record(key));
    }
}

/// Replaces `path` with `bytes` atomically ([`crate::atomic`]), creating its directory.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let parent = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(parent).map_err(io_err("cannot create directory", parent))?;
    crate::atomic::write_atomic(path, bytes).map_err(io_err("cannot write", path))
}

fn write_json_atomic<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    write_encoded_atomic(path, serde_json::to_vec_pretty(value))
}

/// Streams `value` into the file rather than encoding it in memory first: a run record of
/// 100,000 instances is 23 MB, which was 33 MB of the no-op run's peak heap.
fn write_json_compact_atomic<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let parent = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(parent).map_err(io_err("cannot create directory", parent))?;
    crate::atomic::write_atomic_with(path, |file| {
        let mut buffered = std::io::BufWriter::with_capacity(1 << 16, file);
        serde_json::to_writer(&mut buffered, value).map_err(std::io::Error::other)?;
        std::io::Write::flush(&mut buffered)
    })
    .map_err(io_err("cannot write", path))
}

fn write_encoded_atomic(path: &Path, encoded: serde_json::Result<Vec<u8>>) -> Result<()> {
    let bytes = encoded.map_err(|e| StoreError::BadRecord {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    write_atomic(path, &bytes)
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<Option<T>> {
    match fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| StoreError::BadRecord {
                path: path.to_path_buf(),
                message: e.to_string(),
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(StoreError::Io {
            context: "cannot read",
            path: path.to_path_buf(),
            source: e,
        }),
    }
}
