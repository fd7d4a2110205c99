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

use std::borrow::Cow;
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

/// Bumped when the file's shape changes; an index of another format is ignored and rebuilt
/// (except [`LEGACY_FORMAT`], which is read and written anew).
const FORMAT: u32 = 7;

/// The postcard index of maps keyed by hex, parsed whole at load.
const LEGACY_FORMAT: u32 = 6;

/// The file starts with this, then the format and the blake3 of the rest ([`Stored`]). Parsing
/// the JSON index was the longest piece of a no-op decision's critical path (0.5-0.7 s of 52 MB
/// at 100,000 records); the checksum makes any damage an absent index, never a misread one.
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

/// A blake3 hash as its 32 bytes: a record's key or an object's name. The index keeps these
/// rather than their 64-character hex, which as `String`s were three allocations per instance.
type Hash32 = [u8; 32];

/// The bytes of a hash given in hex; `None` for anything else, which the index then never holds
/// (a lookup of it misses, so the record or object is read instead: slower, never wrong).
fn hash_of(hex: &str) -> Option<Hash32> {
    if hex.len() != 64 || hex.bytes().any(|b| b.is_ascii_uppercase()) {
        return None;
    }
    blake3::Hash::from_hex(hex).ok().map(|h| *h.as_bytes())
}

fn hex_of(hash: &Hash32) -> String {
    blake3::Hash::from_bytes(*hash).to_hex().to_string()
}

/// Row sizes of the three tables, each row led by the 32-byte hash it is sorted by: a record's
/// key, then the place of its postcard bytes; an object's name, then its stamp; the blake3 of an
/// artifact directory's path, then the place of the path and the latest key.
const RECORD_ROW: usize = 32 + 4 + 4;
const STAMP_ROW: usize = 32 + 7 * 8;
const LATEST_ROW: usize = 32 + 4 + 4 + 32;

/// What a latest-key row is sorted and found by.
fn path_hash(artifact_dir: &str) -> Hash32 {
    *blake3::hash(artifact_dir.as_bytes()).as_bytes()
}

/// How many leading bits of a row's hash pick its bucket ([`Table::buckets`]).
const BUCKET_BITS: u32 = 16;

/// One table of fixed-size rows sorted by their leading hash.
#[derive(Debug)]
struct Table {
    start: usize,
    rows: usize,
    row: usize,
    /// The first row of each value of the hash's leading [`BUCKET_BITS`] bits, then the end: a
    /// lookup reads one or two rows where a binary search over 100,000 read 17 cache lines.
    buckets: Vec<u32>,
}

impl Table {
    fn bucket(hash: &[u8]) -> usize {
        (u16::from_be_bytes([hash[0], hash[1]]) as usize) >> (16 - BUCKET_BITS)
    }

    /// The table of `rows` rows of `row` bytes at `start`, its buckets built in one pass.
    fn new(bytes: &[u8], start: usize, rows: usize, row: usize) -> Option<Table> {
        let end = start.checked_add(rows.checked_mul(row)?)?;
        if end > bytes.len() || rows > u32::MAX as usize {
            return None;
        }
        let mut buckets = vec![0u32; (1 << BUCKET_BITS) + 1];
        for i in 0..rows {
            buckets[Self::bucket(&bytes[start + i * row..]) + 1] += 1;
        }
        for b in 1..buckets.len() {
            buckets[b] += buckets[b - 1];
        }
        Some(Table {
            start,
            rows,
            row,
            buckets,
        })
    }

    fn end(&self) -> usize {
        self.start + self.rows * self.row
    }

    fn row<'b>(&self, bytes: &'b [u8], i: usize) -> &'b [u8] {
        &bytes[self.start + i * self.row..self.start + (i + 1) * self.row]
    }

    /// The row led by `hash`.
    fn find<'b>(&self, bytes: &'b [u8], hash: &Hash32) -> Option<&'b [u8]> {
        let b = Self::bucket(hash);
        let (low, high) = (self.buckets[b] as usize, self.buckets[b + 1] as usize);
        (low..high)
            .map(|i| self.row(bytes, i))
            .find(|row| row[..32] == hash[..])
    }

    fn rows<'b>(&self, bytes: &'b [u8]) -> impl Iterator<Item = &'b [u8]> + use<'b, '_> {
        (0..self.rows).map(move |i| self.row(bytes, i))
    }
}

/// The index file as read, looked up in place: three tables of fixed-size rows sorted by hash,
/// then the records' postcard bytes and the paths they point into. Nothing is parsed at load but
/// the three lengths (and each table's buckets); a record is decoded when it is looked up. At
/// 100,000 records the parsed maps of format 6 took about 100 MB of small allocations (and
/// 0.1-0.2 s to build), the file itself 30 MB.
#[derive(Debug)]
struct Stored {
    bytes: Vec<u8>,
    records: Table,
    stamps: Table,
    latest: Table,
}

/// A little-endian `u32` at `at`, as a `usize`.
fn u32_at(bytes: &[u8], at: usize) -> Option<usize> {
    let chunk = bytes.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes(chunk.try_into().ok()?) as usize)
}

fn hash_at(row: &[u8]) -> Option<Hash32> {
    row.get(..32)?.try_into().ok()
}

impl Stored {
    /// The tables of a format-7 payload, if their lengths fit it.
    fn parse(bytes: Vec<u8>, payload_start: usize) -> Option<Stored> {
        let table = |at: usize, row: usize| Table::new(&bytes, at + 4, u32_at(&bytes, at)?, row);
        let records = table(payload_start, RECORD_ROW)?;
        let stamps = table(records.end(), STAMP_ROW)?;
        let latest = table(stamps.end(), LATEST_ROW)?;
        Some(Stored {
            bytes,
            records,
            stamps,
            latest,
        })
    }

    /// The bytes at the offset and length a row holds at `at`.
    fn slice(&self, row: &[u8], at: usize) -> Option<&[u8]> {
        let offset = u32_at(row, at)?;
        let len = u32_at(row, at + 4)?;
        self.bytes.get(offset..offset.checked_add(len)?)
    }

    fn record_bytes(&self, key: &Hash32) -> Option<&[u8]> {
        let row = self.records.find(&self.bytes, key)?;
        self.slice(row, 32)
    }

    fn stamp(&self, hash: &Hash32) -> Option<Stamp> {
        let row = self.stamps.find(&self.bytes, hash)?;
        Some(stamp_from(&row[32..]))
    }

    fn latest(&self, artifact_dir: &str) -> Option<Hash32> {
        let row = self.latest.find(&self.bytes, &path_hash(artifact_dir))?;
        // A collision of blake3 is not expected; the path is compared all the same.
        (self.slice(row, 32)? == artifact_dir.as_bytes()).then_some(())?;
        hash_at(&row[40..])
    }

    fn record_rows(&self) -> impl Iterator<Item = (Hash32, &[u8])> + '_ {
        self.records
            .rows(&self.bytes)
            .filter_map(|row| Some((hash_at(row)?, self.slice(row, 32)?)))
    }

    fn stamp_rows(&self) -> impl Iterator<Item = (Hash32, Stamp)> + '_ {
        self.stamps
            .rows(&self.bytes)
            .filter_map(|row| Some((hash_at(row)?, stamp_from(&row[32..]))))
    }

    /// Each latest-key row: the hash of its path, the path, the key.
    fn latest_rows(&self) -> impl Iterator<Item = (Hash32, &str, Hash32)> + '_ {
        self.latest.rows(&self.bytes).filter_map(|row| {
            let path = std::str::from_utf8(self.slice(row, 32)?).ok()?;
            Some((hash_at(row)?, path, hash_at(&row[40..])?))
        })
    }
}

fn stamp_from(bytes: &[u8]) -> Stamp {
    let mut words = [0u64; 7];
    for (word, chunk) in words.iter_mut().zip(bytes.chunks_exact(8)) {
        *word = u64::from_le_bytes(chunk.try_into().unwrap_or_default());
    }
    Stamp(words)
}

/// What this process changed on top of the stored index: `None` removes an entry.
#[derive(Debug, Default)]
struct Changes {
    records: HashMap<Hash32, Option<IndexedRecord>, foldhash::fast::RandomState>,
    stamps: HashMap<Hash32, Option<Stamp>, foldhash::fast::RandomState>,
    latest: HashMap<String, Option<Hash32>, foldhash::fast::RandomState>,
}

/// The loaded index: the stored file, what changed since, and whether it did.
#[derive(Debug, Default)]
pub struct Index {
    stored: Option<Stored>,
    changes: Changes,
    dirty: bool,
}

/// The index in `bytes`: of this format and intact, or of format 6 (converted, to be written
/// anew); `None` for anything else.
fn decode(bytes: Vec<u8>) -> Option<Index> {
    let rest = bytes.strip_prefix(MAGIC.as_slice())?;
    let (format, rest) = rest.split_first_chunk::<4>()?;
    let (checksum, payload) = rest.split_first_chunk::<32>()?;
    let mut hasher = blake3::Hasher::new();
    hasher.update_rayon(payload);
    if hasher.finalize().as_bytes() != checksum {
        return None;
    }
    match u32::from_le_bytes(*format) {
        FORMAT => {
            let payload_start = MAGIC.len() + 4 + 32;
            Some(Index {
                stored: Some(Stored::parse(bytes, payload_start)?),
                ..Index::default()
            })
        }
        LEGACY_FORMAT => postcard::from_bytes::<LegacyIndex>(payload)
            .ok()
            .filter(|f| f.format == LEGACY_FORMAT)
            .map(Index::from_legacy),
        _ => None,
    }
}

/// The JSON index an earlier version wrote, if it is of [`JSON_FORMAT`].
fn read_json_index(path: &Path) -> Option<Index> {
    let bytes = std::fs::read(path).ok()?;
    let file = serde_json::from_slice::<LegacyIndex>(&bytes).ok()?;
    (file.format == JSON_FORMAT).then(|| Index::from_legacy(file))
}

/// The shape of the index of formats 5 (JSON) and 6 (postcard): maps keyed by hex, parsed whole.
#[derive(Debug, Default, Serialize, Deserialize)]
struct LegacyIndex {
    format: u32,
    records: HashMap<String, IndexedRecord>,
    stamps: HashMap<String, Stamp>,
    latest: HashMap<String, String>,
}

impl Index {
    /// Reads the index of the cache at `root`; an absent, damaged or other-format index starts
    /// empty. An index of format 6, or the JSON one of format 5 where there is no binary one, is
    /// read and written anew in this format, so that upgrading does not re-hash every object (at
    /// 100,000 instances that took 4 minutes).
    pub fn load(root: &Path) -> Index {
        if let Some(index) = std::fs::read(root.join(INDEX_FILE)).ok().and_then(decode) {
            return index;
        }
        read_json_index(&root.join(JSON_INDEX_FILE)).unwrap_or_default()
    }

    /// An index holding an older one's entries as changes, to be written in this format.
    fn from_legacy(file: LegacyIndex) -> Index {
        let mut index = Index::default();
        for (key, record) in file.records {
            index.insert_record(&key, record);
        }
        for (hash, stamp) in file.stamps {
            index.note_verified(&hash, stamp);
        }
        for (dir, key) in file.latest {
            index.note_latest(&dir, &key);
        }
        index.dirty = true;
        index
    }

    /// The bytes to write, if anything changed since loading.
    pub fn encode_if_changed(&mut self) -> Option<Vec<u8>> {
        if !self.dirty {
            return None;
        }
        // Stored rows are copied as they are, borrowed until written: only changes are encoded.
        let mut records: Vec<(Hash32, Cow<[u8]>)> = Vec::new();
        let mut stamps: Vec<(Hash32, Stamp)> = Vec::new();
        let mut latest: Vec<(Hash32, &str, Hash32)> = Vec::new();
        if let Some(stored) = &self.stored {
            records.extend(
                stored
                    .record_rows()
                    .filter(|(key, _)| !self.changes.records.contains_key(key))
                    .map(|(key, bytes)| (key, Cow::Borrowed(bytes))),
            );
            stamps.extend(
                stored
                    .stamp_rows()
                    .filter(|(hash, _)| !self.changes.stamps.contains_key(hash)),
            );
            latest.extend(
                stored
                    .latest_rows()
                    .filter(|(_, dir, _)| !self.changes.latest.contains_key(*dir)),
            );
        }
        for (key, record) in &self.changes.records {
            if let Some(bytes) = record.as_ref().and_then(|r| postcard::to_stdvec(r).ok()) {
                records.push((*key, Cow::Owned(bytes)));
            }
        }
        stamps.extend(
            self.changes
                .stamps
                .iter()
                .filter_map(|(hash, stamp)| Some((*hash, (*stamp)?))),
        );
        latest.extend(
            self.changes
                .latest
                .iter()
                .filter_map(|(dir, key)| Some((path_hash(dir), dir.as_str(), (*key)?))),
        );
        records.sort_unstable_by_key(|a| a.0);
        stamps.sort_unstable_by_key(|a| a.0);
        latest.sort_unstable_by_key(|a| a.0);

        let header = MAGIC.len() + 4 + 32;
        let tables =
            12 + records.len() * RECORD_ROW + stamps.len() * STAMP_ROW + latest.len() * LATEST_ROW;
        let blob: usize = records.iter().map(|(_, b)| b.len()).sum::<usize>()
            + latest.iter().map(|(_, d, _)| d.len()).sum::<usize>();
        // Offsets are u32: an index past 4 GiB (about 20 million records) is not written, and
        // the records are read from their files instead.
        u32::try_from(header + tables + blob).ok()?;
        let mut out = Vec::with_capacity(header + tables + blob);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&FORMAT.to_le_bytes());
        out.extend_from_slice(&[0; 32]);
        let mut next = header + tables;
        let mut place = |out: &mut Vec<u8>, len: usize| {
            out.extend_from_slice(&(next as u32).to_le_bytes());
            out.extend_from_slice(&(len as u32).to_le_bytes());
            next += len;
        };
        out.extend_from_slice(&(records.len() as u32).to_le_bytes());
        for (key, bytes) in &records {
            out.extend_from_slice(key);
            place(&mut out, bytes.len());
        }
        out.extend_from_slice(&(stamps.len() as u32).to_le_bytes());
        for (hash, stamp) in &stamps {
            out.extend_from_slice(hash);
            for word in stamp.0 {
                out.extend_from_slice(&word.to_le_bytes());
            }
        }
        out.extend_from_slice(&(latest.len() as u32).to_le_bytes());
        for (hash, dir, key) in &latest {
            out.extend_from_slice(hash);
            place(&mut out, dir.len());
            out.extend_from_slice(key);
        }
        for (_, bytes) in &records {
            out.extend_from_slice(bytes);
        }
        for (_, dir, _) in &latest {
            out.extend_from_slice(dir.as_bytes());
        }
        let mut hasher = blake3::Hasher::new();
        hasher.update_rayon(&out[header..]);
        out[MAGIC.len() + 4..header].copy_from_slice(hasher.finalize().as_bytes());
        self.dirty = false;
        Some(out)
    }

    /// The indexed record of `key`, decoded.
    pub fn record(&self, key: &str) -> Option<IndexedRecord> {
        let key = hash_of(key)?;
        match self.changes.records.get(&key) {
            Some(changed) => changed.clone(),
            None => postcard::from_bytes(self.stored.as_ref()?.record_bytes(&key)?).ok(),
        }
    }

    /// Whether the index holds a record of `key`, without decoding it.
    fn has_record(&self, key: &Hash32) -> bool {
        match self.changes.records.get(key) {
            Some(changed) => changed.is_some(),
            None => self
                .stored
                .as_ref()
                .is_some_and(|s| s.record_bytes(key).is_some()),
        }
    }

    pub fn insert_record(&mut self, key: &str, record: IndexedRecord) {
        let Some(hash) = hash_of(key) else {
            return;
        };
        if self.record(key).as_ref() != Some(&record) {
            self.changes.records.insert(hash, Some(record));
            self.dirty = true;
        }
    }

    /// Forgets one record. Latest keys naming it stay: they only spare `note_latest` a write of
    /// the same key, which is still right, and `gc`/`verify` prune them with
    /// [`Index::retain_records`]; a scan of every latest key here would make a `gc` that drops
    /// many records quadratic.
    pub fn remove_record(&mut self, key: &str) {
        let Some(hash) = hash_of(key) else {
            return;
        };
        if self.has_record(&hash) {
            self.changes.records.insert(hash, None);
            self.dirty = true;
        }
    }

    /// Every record key and object name this index holds, stored or changed.
    fn keys<'a, V>(
        stored: impl Iterator<Item = Hash32> + 'a,
        changes: &'a HashMap<Hash32, Option<V>, foldhash::fast::RandomState>,
    ) -> impl Iterator<Item = Hash32> + 'a {
        stored
            .filter(|k| !changes.contains_key(k))
            .chain(changes.iter().filter(|(_, v)| v.is_some()).map(|(k, _)| *k))
    }

    /// Drops every record (and latest key) whose key `keep` lacks.
    pub fn retain_records<S: std::borrow::Borrow<str> + Eq + std::hash::Hash>(
        &mut self,
        keep: &std::collections::HashSet<S>,
    ) {
        let kept = |key: &Hash32| keep.contains(hex_of(key).as_str());
        let stored = self.stored.as_ref();
        let drop: Vec<Hash32> = Self::keys(
            stored
                .into_iter()
                .flat_map(|s| s.record_rows().map(|(k, _)| k)),
            &self.changes.records,
        )
        .filter(|k| !kept(k))
        .collect();
        let stale: Vec<String> = stored
            .into_iter()
            .flat_map(|s| s.latest_rows())
            .filter(|(_, dir, _)| !self.changes.latest.contains_key(*dir))
            .map(|(_, dir, key)| (dir.to_string(), Some(key)))
            .chain(self.changes.latest.iter().map(|(d, k)| (d.clone(), *k)))
            .filter(|(_, key)| key.is_some_and(|k| !kept(&k)))
            .map(|(dir, _)| dir)
            .collect();
        self.dirty |= !drop.is_empty() || !stale.is_empty();
        for key in drop {
            self.changes.records.insert(key, None);
        }
        for dir in stale {
            self.changes.latest.insert(dir, None);
        }
    }

    /// Drops the stamps of objects `keep` lacks.
    pub fn retain_objects(&mut self, keep: &std::collections::HashSet<String>) {
        let drop: Vec<Hash32> = Self::keys(
            self.stored
                .iter()
                .flat_map(|s| s.stamp_rows().map(|(k, _)| k)),
            &self.changes.stamps,
        )
        .filter(|k| !keep.contains(&hex_of(k)))
        .collect();
        self.dirty |= !drop.is_empty();
        for hash in drop {
            self.changes.stamps.insert(hash, None);
        }
    }

    fn stamp(&self, hash: &Hash32) -> Option<Stamp> {
        match self.changes.stamps.get(hash) {
            Some(changed) => *changed,
            None => self.stored.as_ref()?.stamp(hash),
        }
    }

    /// Whether `hash` was verified with exactly this stamp.
    pub fn verified(&self, hash: &str, stamp: &Stamp) -> bool {
        hash_of(hash).is_some_and(|h| self.stamp(&h) == Some(*stamp))
    }

    pub fn note_verified(&mut self, hash: &str, stamp: Stamp) {
        let Some(hash) = hash_of(hash) else {
            return;
        };
        if self.stamp(&hash) != Some(stamp) {
            self.changes.stamps.insert(hash, Some(stamp));
            self.dirty = true;
        }
    }

    pub fn forget_object(&mut self, hash: &str) {
        let Some(hash) = hash_of(hash) else {
            return;
        };
        if self.stamp(&hash).is_some() {
            self.changes.stamps.insert(hash, None);
            self.dirty = true;
        }
    }

    fn latest_hash(&self, artifact_dir: &str) -> Option<Hash32> {
        match self.changes.latest.get(artifact_dir) {
            Some(changed) => *changed,
            None => self.stored.as_ref()?.latest(artifact_dir),
        }
    }

    /// Whether `key` is what the instance at `artifact_dir` last produced.
    pub fn latest_is(&self, artifact_dir: &str, key: &str) -> bool {
        hash_of(key).is_some_and(|k| self.latest_hash(artifact_dir) == Some(k))
    }

    pub fn note_latest(&mut self, artifact_dir: &str, key: &str) {
        let Some(hash) = hash_of(key) else {
            return;
        };
        if self.latest_hash(artifact_dir) != Some(hash) {
            self.changes
                .latest
                .insert(artifact_dir.to_string(), Some(hash));
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
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(guard.get_or_insert_with(|| Index::load(&self.root)))
    }

    /// Runs `f` on the index, loading it on first use, beside other readers: a no-op run's
    /// lookups decode records in parallel.
    pub(super) fn read_index<R>(&self, f: impl FnOnce(&Index) -> R) -> R {
        let read = || {
            self.index
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
        };
        if read().is_none() {
            self.load_index();
        }
        match read().as_ref() {
            Some(index) => f(index),
            None => f(&Index::default()),
        }
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
        if let Some(found) = self.read_index(|index| index.record(&hex)) {
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

    /// The metrics of the record with key `hex`: from the index where it holds the record (as it
    /// does for every record this process wrote or reused), else from the record file.
    pub fn record_metrics(&self, hex: &str) -> Option<RawJson> {
        match self.read_index(|index| index.record(hex)) {
            Some(entry) => entry.metrics,
            None => self
                .record_by_hex(hex)
                .and_then(|r| r.metrics)
                .and_then(|m| RawJson::of(&m).ok()),
        }
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
        if self.read_index(|index| index.verified(hash, &stamp)) {
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
        assert!(fresh.read_index(|i| i.verified(&outputs.get("f").unwrap().hash, &stamp)));
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

    /// Hex keys and object names for index tests (the index holds only real hashes).
    fn hex(seed: &str) -> String {
        blake3::hash(seed.as_bytes()).to_hex().to_string()
    }

    fn entry(hash: &str, seconds: f64) -> IndexedRecord {
        IndexedRecord {
            record: Stamp([1, 2, 3, 4, 5, 6, 7]),
            outputs: [(
                "v".to_string(),
                OutputRecord {
                    path: "v.txt".into(),
                    hash: hash.into(),
                    size: 2,
                    kind: OutputKind::File,
                },
            )]
            .into_iter()
            .collect(),
            seconds,
            directories: BTreeMap::new(),
            metrics: RawJson::of(&serde_json::json!({"length": 2})).ok(),
        }
    }

    fn write_and_load(dir: &Path, index: &mut Index) -> Index {
        let bytes = index.encode_if_changed().expect("changed");
        std::fs::write(dir.join(INDEX_FILE), bytes).unwrap();
        Index::load(dir)
    }

    #[test]
    fn stored_entries_are_found_in_place_and_changes_on_top_of_them_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let mut index = Index::default();
        for i in 0..50 {
            let name = format!("r{i}");
            index.insert_record(&hex(&name), entry(&hex(&format!("o{i}")), i as f64));
            index.note_verified(&hex(&format!("o{i}")), Stamp([i, 0, 0, 0, 0, 0, 0]));
            index.note_latest(&format!("gen/{name}"), &hex(&name));
        }
        let mut stored = write_and_load(dir.path(), &mut index);
        assert!(stored.stored.is_some() && !stored.dirty);
        for i in 0..50u64 {
            let name = format!("r{i}");
            assert_eq!(
                stored.record(&hex(&name)),
                Some(entry(&hex(&format!("o{i}")), i as f64))
            );
            assert!(stored.verified(&hex(&format!("o{i}")), &Stamp([i, 0, 0, 0, 0, 0, 0])));
            assert!(!stored.verified(&hex(&format!("o{i}")), &Stamp([i + 1, 0, 0, 0, 0, 0, 0])));
            assert!(stored.latest_is(&format!("gen/{name}"), &hex(&name)));
        }
        assert_eq!(stored.record(&hex("absent")), None);
        assert!(!stored.latest_is("gen/absent", &hex("r1")));
        // Looking up and noting what is already there changes nothing.
        stored.note_latest("gen/r3", &hex("r3"));
        stored.insert_record(&hex("r3"), entry(&hex("o3"), 3.0));
        assert!(stored.encode_if_changed().is_none());

        stored.remove_record(&hex("r1"));
        stored.forget_object(&hex("o2"));
        stored.note_latest("gen/r3", &hex("r4"));
        stored.insert_record(&hex("new"), entry(&hex("o9"), 9.5));
        let keep: std::collections::HashSet<String> = (0..50)
            .filter(|i| *i != 7)
            .map(|i| hex(&format!("r{i}")))
            .chain([hex("new")])
            .collect();
        stored.retain_records(&keep);
        let objects: std::collections::HashSet<String> = (0..50)
            .filter(|i| *i != 8)
            .map(|i| hex(&format!("o{i}")))
            .collect();
        stored.retain_objects(&objects);
        let again = write_and_load(dir.path(), &mut stored);
        assert_eq!(again.record(&hex("r1")), None, "removed");
        assert_eq!(again.record(&hex("r7")), None, "not kept");
        assert!(
            !again.latest_is("gen/r7", &hex("r7")),
            "its latest key went with it"
        );
        assert_eq!(again.record(&hex("new")), Some(entry(&hex("o9"), 9.5)));
        assert!(
            !again.verified(&hex("o2"), &Stamp([2, 0, 0, 0, 0, 0, 0])),
            "forgotten"
        );
        assert!(
            !again.verified(&hex("o8"), &Stamp([8, 0, 0, 0, 0, 0, 0])),
            "not kept"
        );
        assert!(again.verified(&hex("o9"), &Stamp([9, 0, 0, 0, 0, 0, 0])));
        assert!(again.latest_is("gen/r3", &hex("r4")));
        assert!(again.latest_is("gen/r5", &hex("r5")));
        assert_eq!(again.record(&hex("r5")), Some(entry(&hex("o5"), 5.0)));
    }

    #[test]
    fn an_index_of_another_format_or_damaged_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(INDEX_FILE);
        let k1 = hex("k1");
        let mut index = Index::default();
        index.note_latest("gen/a", &k1);
        let bytes = index.encode_if_changed().unwrap();
        std::fs::write(&path, &bytes).unwrap();
        assert!(Index::load(dir.path()).latest_is("gen/a", &k1));
        assert!(index.encode_if_changed().is_none(), "nothing changed");
        std::fs::write(&path, b"{\"format\": 99}").unwrap();
        assert!(!Index::load(dir.path()).latest_is("gen/a", &k1));
        std::fs::write(&path, &bytes[..bytes.len() - 1]).unwrap();
        assert!(
            !Index::load(dir.path()).latest_is("gen/a", &k1),
            "truncated"
        );
        let mut flipped = bytes.clone();
        let last = flipped.len() - 2;
        flipped[last] ^= 1;
        std::fs::write(&path, &flipped).unwrap();
        assert!(
            !Index::load(dir.path()).latest_is("gen/a", &k1),
            "a flipped bit"
        );
        let mut other = bytes.clone();
        other[MAGIC.len()] += 1;
        std::fs::write(&path, &other).unwrap();
        assert!(
            !Index::load(dir.path()).latest_is("gen/a", &k1),
            "another format"
        );
    }

    #[test]
    fn the_postcard_index_of_format_6_is_read_and_rewritten_in_place_form() {
        let dir = tempfile::tempdir().unwrap();
        let (k1, ab) = (hex("k1"), hex("ab"));
        let legacy = LegacyIndex {
            format: LEGACY_FORMAT,
            records: [(k1.clone(), entry(&ab, 0.5))].into_iter().collect(),
            stamps: [(ab.clone(), Stamp([1, 2, 3, 4, 5, 6, 7]))]
                .into_iter()
                .collect(),
            latest: [("gen/a".to_string(), k1.clone())].into_iter().collect(),
        };
        let payload = postcard::to_stdvec(&legacy).unwrap();
        let mut bytes = MAGIC.to_vec();
        bytes.extend_from_slice(&LEGACY_FORMAT.to_le_bytes());
        bytes.extend_from_slice(blake3::hash(&payload).as_bytes());
        bytes.extend_from_slice(&payload);
        std::fs::write(dir.path().join(INDEX_FILE), bytes).unwrap();
        let mut index = Index::load(dir.path());
        assert!(index.stored.is_none() && index.dirty, "to be written anew");
        assert_eq!(index.record(&k1), Some(entry(&ab, 0.5)));
        let again = write_and_load(dir.path(), &mut index);
        assert!(again.stored.is_some());
        assert_eq!(again.record(&k1), Some(entry(&ab, 0.5)));
        assert!(again.verified(&ab, &Stamp([1, 2, 3, 4, 5, 6, 7])));
        assert!(again.latest_is("gen/a", &k1));
    }

    #[test]
    fn the_json_index_of_the_format_before_is_read_and_rewritten_as_binary() {
        let dir = tempfile::tempdir().unwrap();
        let (k1, ab) = (hex("k1"), hex("ab"));
        let json = r#"{"format":5,"records":{"K1":{"record":[1,2,3,4,5,6,7],
            "outputs":{"v":{"path":"v.txt","hash":"AB","size":2,"kind":"file"}},"seconds":0.5,
            "metrics":{"length":2}}},"stamps":{"AB":[1,2,3,4,5,6,7]},"latest":{"gen/a":"K1"}}"#
            .replace("K1", &k1)
            .replace("AB", &ab);
        std::fs::write(dir.path().join(JSON_INDEX_FILE), &json).unwrap();
        let mut index = Index::load(dir.path());
        assert!(index.latest_is("gen/a", &k1));
        let record = index.record(&k1).expect("the record entry");
        assert_eq!(record.outputs.get("v").map(|o| o.size), Some(2));
        assert_eq!(
            record.metrics.as_ref().map(RawJson::text),
            Some(r#"{"length":2}"#)
        );
        assert!(index.verified(&ab, &Stamp([1, 2, 3, 4, 5, 6, 7])));
        let binary = write_and_load(dir.path(), &mut index);
        std::fs::remove_file(dir.path().join(JSON_INDEX_FILE)).unwrap();
        assert_eq!(binary.record(&k1), index.record(&k1));
        assert!(binary.latest_is("gen/a", &k1));
        let older = json.replace(r#""format":5"#, r#""format":4"#);
        std::fs::remove_file(dir.path().join(INDEX_FILE)).unwrap();
        std::fs::write(dir.path().join(JSON_INDEX_FILE), older).unwrap();
        assert!(
            !Index::load(dir.path()).latest_is("gen/a", &k1),
            "format 4 is rebuilt"
        );
    }
}
