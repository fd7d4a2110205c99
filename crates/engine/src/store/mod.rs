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
//! ```
//! A record is written only after every object it names is in place, so a crash at any point
//! leaves either a complete result or none.

mod canonical;
mod hashing;
mod lock;
mod maintenance;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use canonical::canonical_json;
pub use hashing::{hash_file, hash_file_parallel};
pub use lock::{CacheLock, KeyLock};
pub use maintenance::{GcReport, RecordScan, VerifyProblem, VerifyReport};

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

/// A cache key: blake3 over everything that determines an instance's outputs. Prints short.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Key(pub blake3::Hash);

impl Key {
    pub fn hex(&self) -> String {
        self.0.to_hex().to_string()
    }
    pub fn short(&self) -> String {
        self.hex()[..12].to_string()
    }
}

impl std::fmt::Display for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.short())
    }
}

/// The content hash of each input, as it entered the key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum InputHash {
    One(String),
    /// Fan-in: instance label → hash.
    Many(BTreeMap<String, String>),
}

/// Everything that goes into a key, and nothing else.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyMaterial {
    pub kind: String,
    pub version: u32,
    pub params: serde_json::Value,
    pub seed: u64,
    pub inputs: BTreeMap<String, InputHash>,
    /// The instance name (`stage[values]`), for plugins that can observe it (`cmd` exposes it as
    /// `$PIPE_INSTANCE`); `None` for plugins whose outputs cannot depend on it, so identical
    /// instances of those share one result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_instance: Option<String>,
}

impl KeyMaterial {
    /// The key. Changing what is hashed here invalidates every user's cache: the golden test in
    /// this module pins it. Destructured, so a new field cannot be left out of the hash.
    pub fn key(&self) -> Key {
        let KeyMaterial {
            kind,
            version,
            params,
            seed,
            inputs,
            observed_instance,
        } = self;
        let mut fields = serde_json::json!({
            "kind": kind,
            "version": version,
            "params": params,
            "seed": seed,
            "inputs": inputs,
        });
        // Absent rather than null, so keys of plugins that do not observe it stay as they were.
        if let Some(instance) = observed_instance {
            fields["instance"] = serde_json::Value::String(instance.clone());
        }
        let encoded = canonical_json(&fields);
        let mut hasher = blake3::Hasher::new();
        hasher.update(b"pipe-key-v1\0");
        hasher.update(encoded.as_bytes());
        Key(hasher.finalize())
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
    pub outputs: BTreeMap<String, OutputRecord>,
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
        ] {
            let dir = root.join(sub);
            fs::create_dir_all(&dir).map_err(io_err("cannot create cache directory", &dir))?;
        }
        // Absolute, because stages run in their own working directories.
        let root = root
            .canonicalize()
            .map_err(io_err("cannot resolve cache directory", root))?;
        Ok(Store { root })
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
        self.note_latest(artifact_dir, &record.key)
    }

    /// Remembers `key` as what the instance at `artifact_dir` last produced.
    pub fn note_latest(&self, artifact_dir: &str, key: &str) -> Result<()> {
        let path = self.instance_index_path(artifact_dir);
        let entry = serde_json::json!({ "key": key });
        // Cache hits call this for every instance: skip the synced write when nothing changed.
        if read_json::<serde_json::Value>(&path)
            .ok()
            .flatten()
            .as_ref()
            == Some(&entry)
        {
            return Ok(());
        }
        write_json_atomic(&path, &entry)
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

    /// Moves a finished output (file or directory) into the object store.
    ///
    /// Only regular files and directories are stored. A symbolic link (anywhere in the output),
    /// a FIFO, a socket or a device is refused before anything is moved, so an output can never
    /// make `pipe` move, delete or change the permissions of a file outside `$PIPE_OUT`.
    pub fn put_output(&self, path: &Path, relative: &str, name: &str) -> Result<OutputRecord> {
        let meta = fs::symlink_metadata(path).map_err(|_| StoreError::MissingOutput {
            name: name.to_string(),
            path: path.to_path_buf(),
        })?;
        check_storable(path, &meta.file_type(), name)?;
        if meta.is_dir() {
            let mut entries = Vec::new();
            collect_files(path, path, name, &mut entries)?;
            entries.sort();
            let mut manifest = Manifest {
                entries: Vec::new(),
            };
            let mut total = 0;
            for rel in entries {
                let (hash, size) = self.put_file(&path.join(&rel), name)?;
                total += size;
                manifest.entries.push(ManifestEntry {
                    path: rel,
                    hash,
                    size,
                });
            }
            let encoded = serde_json::to_vec(&manifest).map_err(|e| StoreError::BadRecord {
                path: path.to_path_buf(),
                message: e.to_string(),
            })?;
            let hash = self.put_bytes(&encoded)?;
            Ok(OutputRecord {
                path: relative.to_string(),
                hash,
                size: total,
                kind: OutputKind::Dir,
            })
        } else {
            let (hash, size) = self.put_file(path, name)?;
            Ok(OutputRecord {
                path: relative.to_string(),
                hash,
                size,
                kind: OutputKind::File,
            })
        }
    }

    /// Hashes a staged regular file and renames it into the object store (or drops it if the
    /// object already exists). A file with other hard links (it may be a file outside the
    /// staging directory, or a staged input) is copied instead, so its other names never share
    /// an inode, or a permission change, with an object.
    pub fn put_file(&self, path: &Path, name: &str) -> Result<(String, u64)> {
        use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
        // O_NOFOLLOW: never read through a link; O_NONBLOCK: a FIFO swapped in cannot block.
        let file = fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(path)
            .map_err(|e| match e.raw_os_error() {
                Some(libc::ELOOP) => StoreError::NotStorable {
                    name: name.to_string(),
                    path: path.to_path_buf(),
                    what: "a symbolic link",
                },
                _ => StoreError::Io {
                    context: "cannot open staged file",
                    path: path.to_path_buf(),
                    source: e,
                },
            })?;
        let meta = file
            .metadata()
            .map_err(io_err("cannot stat staged file", path))?;
        check_storable(path, &meta.file_type(), name)?;
        let (hash, size) = hash_file_parallel(path).map_err(io_err("cannot hash output", path))?;
        let hex = hash.to_hex().to_string();
        let dest = self.object_path(&hex);
        if dest.exists() {
            fs::remove_file(path).map_err(io_err("cannot remove staged file", path))?;
        } else if meta.nlink() > 1 {
            let tmp = unique_tmp(&dest);
            let parent = dest.parent().unwrap_or(&self.root);
            fs::create_dir_all(parent).map_err(io_err("cannot create object directory", parent))?;
            let copied = copy_synced(path, &tmp).and_then(|()| {
                set_read_only(&tmp)?;
                fs::rename(&tmp, &dest).map_err(io_err("cannot move output into the cache", &dest))
            });
            if copied.is_err() {
                let _ = fs::remove_file(&tmp);
            }
            copied?;
            fs::remove_file(path).map_err(io_err("cannot remove staged file", path))?;
        } else {
            let parent = dest.parent().unwrap_or(&self.root);
            fs::create_dir_all(parent).map_err(io_err("cannot create object directory", parent))?;
            file.sync_all()
                .map_err(io_err("cannot sync staged file", path))?;
            set_read_only(path)?;
            fs::rename(path, &dest).map_err(io_err("cannot move output into the cache", &dest))?;
        }
        Ok((hex, size))
    }

    fn put_bytes(&self, bytes: &[u8]) -> Result<String> {
        let hex = blake3::hash(bytes).to_hex().to_string();
        let dest = self.object_path(&hex);
        if !dest.exists() {
            write_atomic(&dest, bytes)?;
            set_read_only(&dest)?;
        }
        Ok(hex)
    }

    /// Reads a directory output's manifest.
    pub fn manifest(&self, output: &OutputRecord) -> Result<Manifest> {
        let path = self.object_path(&output.hash);
        let bytes = fs::read(&path).map_err(io_err("cannot read manifest", &path))?;
        serde_json::from_slice(&bytes).map_err(|e| StoreError::BadRecord {
            path,
            message: e.to_string(),
        })
    }

    /// Whether the output's objects exist and hash to their names.
    pub fn output_intact(&self, output: &OutputRecord) -> bool {
        self.damaged_objects(output).is_empty()
    }

    /// The objects of an output that are missing or do not hash to their names.
    pub fn damaged_objects(&self, output: &OutputRecord) -> Vec<String> {
        let object_ok = |hash: &str, size: u64| {
            let path = self.object_path(hash);
            match fs::metadata(&path) {
                Ok(m) if m.len() == size => {
                    hash_file_parallel(&path).is_ok_and(|(h, _)| h.to_hex().as_str() == hash)
                }
                _ => false,
            }
        };
        match output.kind {
            OutputKind::File => {
                if object_ok(&output.hash, output.size) {
                    Vec::new()
                } else {
                    vec![output.hash.clone()]
                }
            }
            OutputKind::Dir => {
                let manifest_path = self.object_path(&output.hash);
                let manifest_ok = hash_file(&manifest_path)
                    .is_ok_and(|(h, _)| h.to_hex().as_str() == output.hash);
                match self.manifest(output) {
                    Ok(manifest) if manifest_ok => manifest
                        .entries
                        .iter()
                        .filter(|e| !object_ok(&e.hash, e.size))
                        .map(|e| e.hash.clone())
                        .collect(),
                    _ => vec![output.hash.clone()],
                }
            }
        }
    }

    /// Makes `dest` show the output: hard links to the objects (copies across filesystems).
    pub fn materialize(&self, output: &OutputRecord, dest: &Path) -> Result<()> {
        match output.kind {
            OutputKind::File => link_or_copy(&self.object_path(&output.hash), dest),
            OutputKind::Dir => {
                let manifest = self.manifest(output)?;
                let tmp = unique_tmp(dest);
                let placed = (|| {
                    for entry in &manifest.entries {
                        link_or_copy(&self.object_path(&entry.hash), &tmp.join(&entry.path))?;
                    }
                    fs::create_dir_all(&tmp).map_err(io_err("cannot create directory", &tmp))?;
                    remove_existing(dest)?;
                    fs::rename(&tmp, dest).map_err(io_err("cannot place artifact", dest))
                })();
                if placed.is_err() {
                    let _ = fs::remove_dir_all(&tmp);
                }
                placed
            }
        }
    }

    /// Removes an object found corrupt, so it is recomputed.
    pub fn discard_object(&self, hash: &str) {
        let _ = fs::remove_file(self.object_path(hash));
    }

    /// Removes a record (its objects stay until `gc`).
    pub fn discard_record(&self, key: &str) {
        let _ = fs::remove_file(self.root.join("records").join(format!("{key}.json")));
    }
}

/// The relative paths of the regular files under `dir`; anything else is refused.
fn collect_files(root: &Path, dir: &Path, name: &str, out: &mut Vec<String>) -> Result<()> {
    for entry in fs::read_dir(dir).map_err(io_err("cannot list output directory", dir))? {
        let entry = entry.map_err(io_err("cannot list output directory", dir))?;
        let path = entry.path();
        let ty = entry.file_type().map_err(io_err("cannot stat", &path))?;
        check_storable(&path, &ty, name)?;
        if ty.is_dir() {
            collect_files(root, &path, name, out)?;
        } else {
            let rel = path.strip_prefix(root).unwrap_or(&path);
            let Some(rel) = rel.to_str() else {
                return Err(StoreError::NotStorable {
                    name: name.to_string(),
                    path: path.clone(),
                    what: "a file whose name is not UTF-8",
                });
            };
            out.push(rel.to_string());
        }
    }
    Ok(())
}

/// Regular files and directories are stored; links and special files are refused.
fn check_storable(path: &Path, ty: &fs::FileType, name: &str) -> Result<()> {
    use std::os::unix::fs::FileTypeExt;
    let what = if ty.is_symlink() {
        "a symbolic link"
    } else if ty.is_fifo() {
        "a FIFO"
    } else if ty.is_socket() {
        "a socket"
    } else if ty.is_block_device() || ty.is_char_device() {
        "a device file"
    } else {
        return Ok(());
    };
    Err(StoreError::NotStorable {
        name: name.to_string(),
        path: path.to_path_buf(),
        what,
    })
}

/// Copies `src` to a new file `dest` and syncs it.
fn copy_synced(src: &Path, dest: &Path) -> Result<()> {
    let mut from = fs::File::open(src).map_err(io_err("cannot open staged file", src))?;
    let mut to = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(dest)
        .map_err(io_err("cannot write", dest))?;
    std::io::copy(&mut from, &mut to).map_err(io_err("cannot copy output into the cache", dest))?;
    to.sync_all().map_err(io_err("cannot sync", dest))
}

fn set_read_only(path: &Path) -> Result<()> {
    let mut perms = fs::metadata(path)
        .map_err(io_err("cannot stat", path))?
        .permissions();
    perms.set_readonly(true);
    fs::set_permissions(path, perms).map_err(io_err("cannot make object read-only", path))
}

fn unique_tmp(dest: &Path) -> PathBuf {
    crate::atomic::temporary_path(dest)
}

pub(crate) fn is_tmp_name(name: &str) -> bool {
    crate::atomic::is_temporary_name(name)
}

/// Removes whatever is at `dest` (a directory, a file, or a link, which is not followed).
fn remove_existing(dest: &Path) -> Result<()> {
    match fs::symlink_metadata(dest) {
        Ok(meta) if meta.is_dir() => {
            fs::remove_dir_all(dest).map_err(io_err("cannot replace artifact", dest))
        }
        Ok(_) => fs::remove_file(dest).map_err(io_err("cannot replace artifact", dest)),
        Err(_) => Ok(()),
    }
}

/// Hard-links `src` to `dest` unless `dest` already is that file; atomic replace.
fn link_or_copy(src: &Path, dest: &Path) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    if let (Ok(a), Ok(b)) = (fs::metadata(src), fs::symlink_metadata(dest)) {
        if a.ino() == b.ino() && a.dev() == b.dev() {
            return Ok(());
        }
    }
    let parent = dest.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(parent).map_err(io_err("cannot create artifact directory", parent))?;
    if fs::symlink_metadata(dest).is_ok_and(|m| m.is_dir()) {
        fs::remove_dir_all(dest).map_err(io_err("cannot replace artifact", dest))?;
    }
    let tmp = unique_tmp(dest);
    if fs::hard_link(src, &tmp).is_err() {
        fs::copy(src, &tmp).map_err(io_err("cannot copy artifact", dest))?;
    }
    fs::rename(&tmp, dest).map_err(|e| {
        let _ = fs::remove_file(&tmp);
        io_err("cannot place artifact", dest)(e)
    })
}

/// Replaces `path` with `bytes` atomically ([`crate::atomic`]), creating its directory.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let parent = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(parent).map_err(io_err("cannot create directory", parent))?;
    crate::atomic::write_atomic(path, bytes).map_err(io_err("cannot write", path))
}

fn write_json_atomic<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let bytes = serde_json::to_vec_pretty(value).map_err(|e| StoreError::BadRecord {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn material() -> KeyMaterial {
        let mut inputs = BTreeMap::new();
        inputs.insert("a".to_string(), InputHash::One("00ff".into()));
        KeyMaterial {
            kind: "cmd".into(),
            version: 1,
            params: serde_json::json!({"run": "echo hi", "outputs": {"x": "x.txt"}}),
            seed: 7,
            inputs,
            observed_instance: None,
        }
    }

    /// A fan-in input, a project file and an observed instance name: every kind of key part.
    fn material_with_every_part() -> KeyMaterial {
        let mut m = material();
        let mut fan_in = BTreeMap::new();
        fan_in.insert("p".to_string(), "11aa".to_string());
        fan_in.insert("q".to_string(), "22bb".to_string());
        m.inputs.insert("all".into(), InputHash::Many(fan_in));
        m.inputs
            .insert("file:data/x.csv".into(), InputHash::One("33cc".into()));
        m.observed_instance = Some("a[p]".into());
        m
    }

    /// Pins the key encoding: if this changes, every existing cache is invalidated. Change the
    /// expected value only together with a deliberate `pipe-key-vN` bump.
    #[test]
    fn key_encoding_is_pinned() {
        assert_eq!(
            material().key().hex(),
            "52cff3a9c9eac3ab0ce968415081876003fc1c237c5c000920c6ca11de9a419c"
        );
    }

    #[test]
    fn key_encoding_of_fan_in_files_and_instance_is_pinned() {
        assert_eq!(
            material_with_every_part().key().hex(),
            "b84a2ce7a8f02958b2d217b2e63bfb39d70098dfd7b7e09c35a0b64425793e0f"
        );
    }

    #[test]
    fn key_changes_with_each_component() {
        let full = material_with_every_part().key();
        let mut m = material_with_every_part();
        m.observed_instance = Some("a[q]".into());
        assert_ne!(m.key(), full);
        let mut m = material_with_every_part();
        if let Some(InputHash::Many(map)) = m.inputs.get_mut("all") {
            map.insert("r".into(), "22bb".into());
        }
        assert_ne!(m.key(), full, "a fan-in entry more changes the key");
        let mut m = material_with_every_part();
        m.inputs
            .insert("file:data/x.csv".into(), InputHash::One("33cd".into()));
        assert_ne!(m.key(), full, "a project file's content changes the key");
        let base = material().key();
        let mut m = material();
        m.version = 2;
        assert_ne!(m.key(), base);
        let mut m = material();
        m.seed = 8;
        assert_ne!(m.key(), base);
        let mut m = material();
        m.params["run"] = "echo ho".into();
        assert_ne!(m.key(), base);
        let mut m = material();
        m.inputs.insert("a".into(), InputHash::One("00fe".into()));
        assert_ne!(m.key(), base);
    }

    #[test]
    fn outputs_round_trip_and_corruption_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("cache")).unwrap();
        let out = dir.path().join("out");
        fs::create_dir_all(out.join("sub")).unwrap();
        fs::write(out.join("file.txt"), b"hello").unwrap();
        fs::write(out.join("sub/inner.txt"), b"inner").unwrap();
        let file = store
            .put_output(&out.join("file.txt"), "file.txt", "f")
            .unwrap();
        let tree = store.put_output(&out.join("sub"), "sub", "d").unwrap();
        assert_eq!(file.hash, blake3::hash(b"hello").to_hex().to_string());
        assert!(store.output_intact(&file) && store.output_intact(&tree));

        let view = dir.path().join("artifacts");
        store.materialize(&file, &view.join("file.txt")).unwrap();
        store.materialize(&tree, &view.join("sub")).unwrap();
        assert_eq!(fs::read(view.join("sub/inner.txt")).unwrap(), b"inner");

        // Same length, different bytes: only the hash can tell.
        let object = store.object_path(&file.hash);
        let mut perms = fs::metadata(&object).unwrap().permissions();
        #[allow(clippy::permissions_set_readonly_false)]
        perms.set_readonly(false);
        fs::set_permissions(&object, perms).unwrap();
        fs::remove_file(view.join("file.txt")).unwrap();
        fs::write(&object, b"jello").unwrap();
        assert!(!store.output_intact(&file));
    }

    #[test]
    fn links_and_special_files_are_refused_and_leave_their_targets_alone() {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("cache")).unwrap();
        let outside = dir.path().join("outside");
        fs::create_dir_all(&outside).unwrap();
        fs::write(outside.join("keep.txt"), b"precious").unwrap();
        let out = dir.path().join("out");
        fs::create_dir_all(out.join("tree")).unwrap();

        std::os::unix::fs::symlink(&outside, out.join("dir-link")).unwrap();
        std::os::unix::fs::symlink(outside.join("keep.txt"), out.join("tree/file-link")).unwrap();
        for (rel, name) in [("dir-link", "d"), ("tree", "t")] {
            let err = store.put_output(&out.join(rel), rel, name).unwrap_err();
            assert!(err.to_string().contains("symbolic link"), "{err}");
        }
        assert_eq!(fs::read(outside.join("keep.txt")).unwrap(), b"precious");
        let mode = fs::metadata(outside.join("keep.txt"))
            .unwrap()
            .permissions()
            .mode();
        assert_ne!(mode & 0o200, 0, "the outside file stays writable");

        let fifo = std::ffi::CString::new(out.join("fifo").to_str().unwrap()).unwrap();
        // SAFETY: plain syscall on a NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);
        let err = store
            .put_output(&out.join("fifo"), "fifo", "f")
            .unwrap_err();
        assert!(err.to_string().contains("FIFO"), "{err}");

        // A hard link to an outside file is copied: the outside file keeps its inode and mode.
        fs::hard_link(outside.join("keep.txt"), out.join("hard.txt")).unwrap();
        let stored = store
            .put_output(&out.join("hard.txt"), "hard.txt", "h")
            .unwrap();
        let object = fs::metadata(store.object_path(&stored.hash)).unwrap();
        let kept = fs::metadata(outside.join("keep.txt")).unwrap();
        assert_ne!(object.ino(), kept.ino());
        assert_ne!(kept.permissions().mode() & 0o200, 0);
    }
}
