//! The record index (`cache/index.bin`): one file that spares a no-op run its 100,000 small
//! reads and re-hashes. It holds, for every record the coordinator has seen, the outputs it
//! names, the objects they consist of and its metrics; for every object, the file stamp (device,
//! inode, size, mtime, ctime) it had when it last hashed to its name; and each instance's latest
//! key.
//!
//! It is a cache of the records, never their replacement: a key it lacks is read from
//! `records/<key>.json`, an object whose stamp differs is hashed again, and a missing or
//! unreadable index is rebuilt as records are read. Anything that removes records (`gc`,
//! `verify`, a damaged hit) removes them here too. Writing to an object in place, replacing it,
//! or changing its permissions changes its ctime, which no user can set back, so an edited object
//! is re-hashed; only damage below the file system (a flipped bit on disk) goes unseen, and that
//! is what `pipe verify`, which re-hashes everything, is for.

use std::collections::{BTreeMap, HashMap};
use std::fs::Metadata;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{
    hash_file_parallel, write_atomic, Key, OutputKind, OutputMap, OutputRecord, RawJson, Result,
    Store,
};

/// The index's file under the cache root.
pub const INDEX_FILE: &str = "index.bin";

/// Where earlier versions kept the index, as JSON: removed when the binary one is written.
const JSON_INDEX_FILE: &str = "index.json";

/// The last JSON index's format, whose shape the binary one keeps (so it is read, not rebuilt).
const JSON_FORMAT: u32 = 5;

/// Bumped when the file's shape changes; an index of another format is ignored and rebuilt.
const FORMAT: u32 = 6;

/// The file starts with this, then the format and the blake3 of the rest, which is postcard.
/// Parsing the JSON index was the longest piece of a no-op decision's critical path (0.5-0.7 s
/// of 52 MB at 100,000 records); the checksum makes any damage an absent index, never a
/// misread one.
const MAGIC: &[u8; 12] = b"pipe-index\0\n";

/// How old a file's last change must be for its stamp to be kept ([`Stamp::settled`]).
const SETTLE_SECONDS: u64 = 2;

/// What identifies one state of an object file: any write, rename or chmod changes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stamp([u64; 7]);

impl Stamp {
    pub fn of(meta: &Metadata) -> Stamp {
        use std::os::unix::fs::MetadataExt;
        Stamp([
            meta.dev(),
            meta.ino(),
            meta.len(),
            meta.mtime() as u64,
            meta.mtime_nsec() as u64,
            meta.ctime() as u64,
            meta.ctime_nsec() as u64,
        ])
    }

    /// Whether the file was last changed long enough ago that a change made now would give a
    /// different stamp. File times are coarse (a few ms), so a write right after the stamp was
    /// taken could leave it unchanged; such a "racily clean" stamp (git's term) is not kept, and
    /// the object is hashed again next time.
    pub fn settled(&self) -> bool {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        self.0[5] + SETTLE_SECONDS <= now
    }

    /// The file's device and inode: what a hard link to it shares.
    pub fn identity(&self) -> FileIdentity {
        (self.0[0], self.0[1])
    }
}

/// A file's (device, inode).
pub type FileIdentity = (u64, u64);

/// The part of a record a cache hit needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IndexedRecord {
    /// The record file's stamp when it was read or written: a record changed or damaged since
    /// is read again instead of trusted from here.
    pub record: Stamp,
    pub outputs: OutputMap,
    /// How long the run that produced the record took (for plugins that ask for timings).
    pub seconds: f64,
    /// The objects of each directory output: its manifest (whose size is not recorded), then
    /// its entries with their sizes. A file output is its one object, named in `outputs`.
    #[serde(default)]
    pub directories: BTreeMap<String, Vec<(String, Option<u64>)>>,
    /// The record's metrics, so a run can note a reused instance's metrics in its history
    /// without reading the record; as text, since a hit needs none of it.
    #[serde(default)]
    pub metrics: Option<RawJson>,
}

impl IndexedRecord {
    /// Whether every directory output's objects are listed.
    pub fn complete(&self) -> bool {
        self.outputs
            .iter()
            .all(|(name, o)| o.kind == OutputKind::File || self.directories.contains_key(name))
    }

    /// The objects of output `name` with their sizes; `None` for a directory whose manifest
    /// could not be read.
    fn objects(&self, name: &str, output: &OutputRecord) -> Option<Vec<(String, Option<u64>)>> {
        match output.kind {
            OutputKind::File => Some(vec![(output.hash.clone(), Some(output.size))]),
            OutputKind::Dir => self.directories.get(name).cloned(),
        }
    }
}

/// The index in `bytes`, if they are one of this format and intact.
fn decode(bytes: &[u8]) -> Option<IndexFile> {
    let rest = bytes.strip_prefix(MAGIC.as_slice())?;
    let (format, rest) = rest.split_first_chunk::<4>()?;
    let (checksum, payload) = rest.split_first_chunk::<32>()?;
    if u32::from_le_bytes(*format) != FORMAT || blake3::hash(payload).as_bytes() != checksum {
        return None;
    }
    postcard::from_bytes::<IndexFile>(payload)
        .ok()
        .filter(|f| f.format == FORMAT)
}

/// The JSON index an earlier version wrote, if it is of [`JSON_FORMAT`].
fn read_json_index(path: &Path) -> Option<IndexFile> {
    let bytes = std::fs::read(path).ok()?;
    let mut file = serde_json::from_slice::<IndexFile>(&bytes).ok()?;
    (file.format == JSON_FORMAT).then(|| {
        file.format = FORMAT;
        for entry in file.records.values_mut() {
            entry.outputs = exact(std::mem::take(&mut entry.outputs));
        }
        file
    })
}

/// `outputs` in an allocation of its own length: JSON, which gives no length up front, grows a map
/// to room for four, which for 100,000 one-output records was 26 MB of the index's 100 MB.
/// (postcard gives the length, so the binary index needs no such pass.)
fn exact(outputs: OutputMap) -> OutputMap {
    let mut entries = outputs.into_tuple_vec();
    entries.shrink_to_fit();
    OutputMap::from_sorted_store_unchecked(entries)
}

/// A map keyed by hex hashes and artifact paths: foldhash rather than SipHash, which was 5 % of a
/// no-op run's samples at 100,000 instances (the keys are the cache's own, not an attacker's).
type ByName<V> = HashMap<String, V, foldhash::fast::RandomState>;

#[derive(Debug, Default, Serialize, Deserialize)]
struct IndexFile {
    format: u32,
    records: ByName<IndexedRecord>,
    stamps: ByName<Stamp>,
    latest: ByName<String>,
}

/// The loaded index and whether it differs from the file.
#[derive(Debug, Default)]
pub struct Index {
    file: IndexFile,
    dirty: bool,
}

impl Index {
    /// Reads the index of the cache at `root`; an absent, damaged or other-format index starts
    /// empty. The JSON index of the format before is read instead when there is no binary one,
    /// and written anew as binary, so that upgrading does not re-hash every object (at 100,000
    /// instances that took 4 minutes).
    pub fn load(root: &Path) -> Index {
        let binary = std::fs::read(root.join(INDEX_FILE))
            .ok()
            .and_then(|bytes| decode(&bytes));
        let (file, dirty) = match binary {
            Some(file) => (file, false),
            None => match read_json_index(&root.join(JSON_INDEX_FILE)) {
                Some(file) => (file, true),
                None => (IndexFile::default(), false),
            },
        };
        Index { file, dirty }
    }

    /// The bytes to write, if anything changed since loading.
    pub fn encode_if_changed(&mut self) -> Option<Vec<u8>> {
        if !self.dirty {
            return None;
        }
        self.file.format = FORMAT;
        let payload = postcard::to_stdvec(&self.file).ok()?;
        let mut bytes = Vec::with_capacity(MAGIC.len() + 4 + 32 + payload.len());
        bytes.extend_from_slice(MAGIC);
        bytes.extend_from_slice(&FORMAT.to_le_bytes());
        bytes.extend_from_slice(blake3::hash(&payload).as_bytes());
        bytes.extend_from_slice(&payload);
        self.dirty = false;
        Some(bytes)
    }

    pub fn record(&self, key: &str) -> Option<&IndexedRecord> {
        self.file.records.get(key)
    }

    pub fn insert_record(&mut self, key: &str, record: IndexedRecord) {
        if self.file.records.get(key) != Some(&record) {
            self.file.records.insert(key.to_string(), record);
            self.dirty = true;
        }
    }

    /// Forgets one record. Latest keys naming it stay: they only spare `note_latest` a write of
    /// the same key, which is still right, and `gc`/`verify` prune them with
    /// [`Index::retain_records`]; a scan of every latest key here would make a `gc` that drops
    /// many records quadratic.
    pub fn remove_record(&mut self, key: &str) {
        if self.file.records.remove(key).is_some() {
            self.dirty = true;
        }
    }

    /// Drops every record (and latest key) whose key `keep` lacks.
    pub fn retain_records<S: std::borrow::Borrow<str> + Eq + std::hash::Hash>(
        &mut self,
        keep: &std::collections::HashSet<S>,
    ) {
        let before = (self.file.records.len(), self.file.latest.len());
        self.file
            .records
            .retain(|key, _| keep.contains(key.as_str()));
        self.file
            .latest
            .retain(|_, key| keep.contains(key.as_str()));
        self.dirty |= before != (self.file.records.len(), self.file.latest.len());
    }

    /// Drops the stamps of objects `keep` lacks.
    pub fn retain_objects(&mut self, keep: &std::collections::HashSet<String>) {
        let before = self.file.stamps.len();
        self.file.stamps.retain(|hash, _| keep.contains(hash));
        self.dirty |= before != self.file.stamps.len();
    }

    /// Whether `hash` was verified with exactly this stamp.
    pub fn verified(&self, hash: &str, stamp: &Stamp) -> bool {
        self.file.stamps.get(hash) == Some(stamp)
    }

    pub fn note_verified(&mut self, hash: &str, stamp: Stamp) {
        if self.file.stamps.insert(hash.to_string(), stamp) != Some(stamp) {
            self.dirty = true;
        }
    }

    pub fn forget_object(&mut self, hash: &str) {
        if self.file.stamps.remove(hash).is_some() {
            self.dirty = true;
        }
    }

    pub fn latest(&self, artifact_dir: &str) -> Option<&str> {
        self.file.latest.get(artifact_dir).map(String::as_str)
    }

    pub fn note_latest(&mut self, artifact_dir: &str, key: &str) {
        if self.latest(artifact_dir) != Some(key) {
            self.file
                .latest
                .insert(artifact_dir.to_string(), key.to_string());
            self.dirty = true;
        }
    }
}

/// A cached result, its objects checked: what `pipe run` reuses and `pipe status` reports on.
#[derive(Debug, Clone, PartialEq)]
pub enum Cached {
    Intact {
        outputs: OutputMap,
        /// The producing run's seconds, from the record.
        seconds: f64,
        /// The identity of each file output's object as just verified, so that placing the
        /// artifact need not look at the object again.
        identities: HashMap<String, FileIdentity>,
    },
    /// The outputs with missing or corrupt objects, and those objects.
    Damaged(Vec<(String, Vec<String>)>),
}

impl Store {
    /// Runs `f` on the index, loading it on first use.
    pub(super) fn with_index<R>(&self, f: impl FnOnce(&mut Index) -> R) -> R {
        let mut guard = self
            .index
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(guard.get_or_insert_with(|| Index::load(&self.root)))
    }

    /// Reads the index now rather than at its first use (so that it can overlap other work).
    pub fn load_index(&self) {
        self.with_index(|_| ());
    }

    /// Writes the index if it changed. Only a coordinator holding the cache lock calls this, so
    /// two writers never race; a process that dies first only leaves the index behind the
    /// records, which costs reads, never a wrong reuse.
    pub fn save_index(&self) -> Result<()> {
        match self.with_index(Index::encode_if_changed) {
            Some(bytes) => {
                write_atomic(&self.root.join(INDEX_FILE), &bytes)?;
                // An index.json of an earlier version is 50 MB no version reads any more.
                let _ = std::fs::remove_file(self.root.join(JSON_INDEX_FILE));
                Ok(())
            }
            None => Ok(()),
        }
    }

    /// The outputs and objects of the record of `key`, from the index or else from the record
    /// (which then enters the index). A directory output whose manifest cannot be read has no
    /// objects listed, so the entry is incomplete and a hit finds that output damaged.
    pub fn indexed_record(&self, key: &Key) -> Result<Option<IndexedRecord>> {
        let hex = key.hex();
        let path = self.record_path(key);
        // One stat, so that a removed, edited or truncated record is never trusted from here.
        let stamp = match std::fs::metadata(&path) {
            Ok(meta) => Stamp::of(&meta),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(super::io_err("cannot read", &path)(e)),
        };
        if let Some(found) = self.with_index(|index| index.record(&hex).cloned()) {
            if found.record == stamp && stamp.settled() && found.complete() {
                return Ok(Some(found));
            }
        }
        let Some(record) = self.record(key)? else {
            return Ok(None);
        };
        let entry = self.index_entry(
            stamp,
            record.outputs,
            record.seconds,
            record.metrics.as_ref(),
        );
        if entry.complete() {
            self.with_index(|index| index.insert_record(&hex, entry.clone()));
        }
        Ok(Some(entry))
    }

    /// The index entry of `outputs`, whose record file has `record`'s stamp: directory outputs'
    /// objects read from their manifests.
    pub(super) fn index_entry(
        &self,
        record: Stamp,
        outputs: OutputMap,
        seconds: f64,
        metrics: Option<&serde_json::Value>,
    ) -> IndexedRecord {
        let mut directories = BTreeMap::new();
        for (name, output) in &outputs {
            if output.kind == OutputKind::Dir {
                if let Ok(manifest) = self.manifest(output) {
                    let objects = std::iter::once((output.hash.clone(), None))
                        .chain(manifest.entries.into_iter().map(|e| (e.hash, Some(e.size))));
                    directories.insert(name.clone(), objects.collect());
                }
            }
        }
        IndexedRecord {
            record,
            outputs,
            seconds,
            directories,
            metrics: metrics.and_then(|m| RawJson::of(m).ok()),
        }
    }

    /// The metrics of the records with keys `hexes`: from the index where it holds the record
    /// (as it does for every record this process wrote or reused), else from the record file.
    pub fn records_metrics(&self, hexes: &[&str]) -> Vec<Option<RawJson>> {
        let indexed: Vec<Option<Option<RawJson>>> = self.with_index(|index| {
            hexes
                .iter()
                .map(|hex| index.record(hex).map(|r| r.metrics.clone()))
                .collect()
        });
        indexed
            .into_iter()
            .zip(hexes)
            .map(|(found, hex)| match found {
                Some(metrics) => metrics,
                None => self
                    .record_by_hex(hex)
                    .and_then(|r| r.metrics)
                    .and_then(|m| RawJson::of(&m).ok()),
            })
            .collect()
    }

    /// The cached result of `key`, every object checked: by its stamp where it was verified
    /// before, else by hashing it (and then remembering its stamp).
    pub fn cached(&self, key: &Key) -> Result<Option<Cached>> {
        let Some(entry) = self.indexed_record(key)? else {
            return Ok(None);
        };
        let mut damaged = Vec::new();
        let mut identities = HashMap::new();
        for (name, output) in &entry.outputs {
            let Some(objects) = entry.objects(name, output) else {
                damaged.push((name.clone(), vec![output.hash.clone()]));
                continue;
            };
            let mut bad = Vec::new();
            for (hash, size) in objects {
                match self.object_verified(&hash, size) {
                    Some(stamp) if output.kind == OutputKind::File => {
                        identities.insert(hash, stamp.identity());
                    }
                    Some(_) => {}
                    None => bad.push(hash),
                }
            }
            if !bad.is_empty() {
                damaged.push((name.clone(), bad));
            }
        }
        Ok(Some(if damaged.is_empty() {
            Cached::Intact {
                outputs: entry.outputs,
                seconds: entry.seconds,
                identities,
            }
        } else {
            Cached::Damaged(damaged)
        }))
    }

    /// Drops what the index knows of an object that was removed.
    pub(super) fn forget_object(&self, hash: &str) {
        self.with_index(|index| index.forget_object(hash));
    }

    /// Whether the object exists with this size and hashes to its name; a stamp the index
    /// verified before stands in for the hash.
    /// The object's stamp if it is intact.
    fn object_verified(&self, hash: &str, size: Option<u64>) -> Option<Stamp> {
        let path = self.object_path(hash);
        let meta = std::fs::metadata(&path).ok()?;
        if size.is_some_and(|s| s != meta.len()) || !meta.is_file() {
            return None;
        }
        let stamp = Stamp::of(&meta);
        if self.with_index(|index| index.verified(hash, &stamp)) {
            return Some(stamp);
        }
        // The stamp is taken before hashing: a write during the hash changes it, so the object
        // is hashed again next time.
        let intact = hash_file_parallel(&path).is_ok_and(|(h, _)| h.to_hex().as_str() == hash);
        if intact && stamp.settled() {
            self.with_index(|index| index.note_verified(hash, stamp));
        }
        intact.then_some(stamp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stamp_changes_with_any_write_and_with_chmod() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("o");
        std::fs::write(&path, b"abc").unwrap();
        let stamp = |p: &Path| Stamp::of(&std::fs::metadata(p).unwrap());
        let first = stamp(&path);
        assert_eq!(first, stamp(&path));
        // Same size, same second: only the nanoseconds or ctime tell.
        std::fs::write(&path, b"abd").unwrap();
        let written = stamp(&path);
        assert_ne!(first, written);
        let mut perms = std::fs::metadata(&path).unwrap().permissions();
        perms.set_readonly(true);
        std::fs::set_permissions(&path, perms).unwrap();
        assert_ne!(written, stamp(&path));
    }

    /// A store holding one record of a file and a directory output, and that record's key.
    fn store_with_one_record(dir: &Path) -> (Store, Key) {
        let store = Store::open(&dir.join("cache")).unwrap();
        let out = dir.join("out");
        std::fs::create_dir_all(out.join("tree")).unwrap();
        std::fs::write(out.join("f.txt"), b"hello").unwrap();
        std::fs::write(out.join("tree/inner.txt"), b"inner").unwrap();
        let material = crate::store::KeyMaterial {
            kind: "t".into(),
            version: 1,
            params: serde_json::json!({}).into(),
            seed: 0,
            inputs: BTreeMap::new(),
            observed_instance: None,
        };
        let key = material.key();
        let outputs: OutputMap = [
            (
                "f".to_string(),
                store.put_output(&out.join("f.txt"), "f.txt", "f").unwrap(),
            ),
            (
                "t".to_string(),
                store.put_output(&out.join("tree"), "tree", "t").unwrap(),
            ),
        ]
        .into_iter()
        .collect();
        let record = crate::store::Record {
            key: key.hex(),
            instance: "a".into(),
            stage: "a".into(),
            material,
            outputs,
            metrics: None,
            started_at: 0,
            seconds: 0.0,
            pipe_version: "test".into(),
        };
        store.write_record(&record, "a").unwrap();
        store.save_index().unwrap();
        (store, key)
    }

    fn make_writable(path: &Path) {
        let mut perms = std::fs::metadata(path).unwrap().permissions();
        #[allow(clippy::permissions_set_readonly_false)]
        perms.set_readonly(false);
        std::fs::set_permissions(path, perms).unwrap();
    }

    #[test]
    fn a_hit_from_the_index_still_sees_an_object_edited_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let (store, key) = store_with_one_record(dir.path());
        // A fresh process: only the index file.
        let fresh = Store::open(&dir.path().join("cache")).unwrap();
        // Only stamps of objects unchanged for a while are kept: wait, so that this hit keeps
        // them and the flips below are judged by stamp, not by hash.
        std::thread::sleep(std::time::Duration::from_secs(SETTLE_SECONDS + 1));
        let Some(Cached::Intact { outputs, .. }) = fresh.cached(&key).unwrap() else {
            panic!("the stored record is a hit");
        };
        let object = store.object_path(&outputs.get("f").unwrap().hash);
        let stamp = Stamp::of(&std::fs::metadata(&object).unwrap());
        assert!(fresh.with_index(|i| i.verified(&outputs.get("f").unwrap().hash, &stamp)));
        fresh.save_index().unwrap();
        for name in ["f", "t"] {
            let object = if name == "f" {
                store.object_path(&outputs.get("f").unwrap().hash)
            } else {
                let manifest = store.manifest(outputs.get("t").unwrap()).unwrap();
                store.object_path(&manifest.entries[0].hash)
            };
            // Same length, same second: only the stamp (ctime, mtime nanoseconds) can tell.
            make_writable(&object);
            let original = std::fs::read(&object).unwrap();
            let mut flipped = original.clone();
            flipped[0] ^= 1;
            std::fs::write(&object, &flipped).unwrap();
            let fresh = Store::open(&dir.path().join("cache")).unwrap();
            match fresh.cached(&key).unwrap() {
                Some(Cached::Damaged(damaged)) => assert_eq!(damaged[0].0, name),
                other => panic!("{name}: a flipped byte went unseen: {other:?}"),
            }
            std::fs::write(&object, &original).unwrap();
        }
    }

    #[test]
    fn a_record_removed_or_truncated_behind_the_index_is_not_trusted() {
        let dir = tempfile::tempdir().unwrap();
        let (store, key) = store_with_one_record(dir.path());
        let path = store.record_path(&key);
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, &text[..text.len() / 2]).unwrap();
        let fresh = Store::open(&dir.path().join("cache")).unwrap();
        assert!(fresh.cached(&key).is_err(), "a truncated record is damage");
        std::fs::remove_file(&path).unwrap();
        assert!(
            fresh.cached(&key).unwrap().is_none(),
            "a removed record is a miss"
        );
    }

    #[test]
    fn an_index_of_another_format_or_damaged_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(INDEX_FILE);
        let mut index = Index::default();
        index.note_latest("gen/a", "k1");
        let bytes = index.encode_if_changed().unwrap();
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(Index::load(dir.path()).latest("gen/a"), Some("k1"));
        assert!(index.encode_if_changed().is_none(), "nothing changed");
        std::fs::write(&path, b"{\"format\": 99}").unwrap();
        assert_eq!(Index::load(dir.path()).latest("gen/a"), None);
        std::fs::write(&path, &bytes[..bytes.len() - 1]).unwrap();
        assert_eq!(Index::load(dir.path()).latest("gen/a"), None, "truncated");
        let mut flipped = bytes.clone();
        let last = flipped.len() - 2;
        flipped[last] ^= 1;
        std::fs::write(&path, &flipped).unwrap();
        assert_eq!(
            Index::load(dir.path()).latest("gen/a"),
            None,
            "a flipped bit"
        );
        let mut other = bytes.clone();
        other[MAGIC.len()] += 1;
        std::fs::write(&path, &other).unwrap();
        assert_eq!(
            Index::load(dir.path()).latest("gen/a"),
            None,
            "another format"
        );
    }

    #[test]
    fn the_json_index_of_the_format_before_is_read_and_rewritten_as_binary() {
        let dir = tempfile::tempdir().unwrap();
        let json = r#"{"format":5,"records":{"k1":{"record":[1,2,3,4,5,6,7],
            "outputs":{"v":{"path":"v.txt","hash":"ab","size":2,"kind":"file"}},"seconds":0.5,
            "metrics":{"length":2}}},"stamps":{"ab":[1,2,3,4,5,6,7]},"latest":{"gen/a":"k1"}}"#;
        std::fs::write(dir.path().join(JSON_INDEX_FILE), json).unwrap();
        let mut index = Index::load(dir.path());
        assert_eq!(index.latest("gen/a"), Some("k1"));
        let record = index.record("k1").expect("the record entry");
        assert_eq!(record.outputs.get("v").map(|o| o.size), Some(2));
        assert_eq!(
            record.metrics.as_ref().map(RawJson::text),
            Some(r#"{"length":2}"#)
        );
        assert!(index.verified("ab", &Stamp([1, 2, 3, 4, 5, 6, 7])));
        let bytes = index.encode_if_changed().expect("written anew");
        std::fs::write(dir.path().join(INDEX_FILE), bytes).unwrap();
        std::fs::remove_file(dir.path().join(JSON_INDEX_FILE)).unwrap();
        let binary = Index::load(dir.path());
        assert_eq!(binary.record("k1"), index.record("k1"));
        assert_eq!(binary.latest("gen/a"), Some("k1"));
        let older = json.replace(r#""format":5"#, r#""format":4"#);
        std::fs::remove_file(dir.path().join(INDEX_FILE)).unwrap();
        std::fs::write(dir.path().join(JSON_INDEX_FILE), older).unwrap();
        assert_eq!(
            Index::load(dir.path()).latest("gen/a"),
            None,
            "format 4 is rebuilt"
        );
    }
}
