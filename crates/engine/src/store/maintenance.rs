//! `pipe gc` (remove what no record reaches) and `pipe verify` (re-hash every stored output).

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};

use super::lock::lock_file_free;
use super::{io_err, OutputKind, Record, Result, Store};
use crate::atomic::is_temporary_name;

#[derive(Debug, Default)]
pub struct GcReport {
    pub objects_removed: usize,
    pub bytes_freed: u64,
    pub objects_kept: usize,
    pub staging_removed: usize,
    pub checkpoints_removed: usize,
    /// Temporary files of writes that were interrupted (a kill, a full disk).
    pub temporaries_removed: usize,
    /// Records dropped because `--keep` did not reach them.
    pub records_removed: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyProblem {
    pub instance: String,
    pub output: String,
    pub detail: String,
}

#[derive(Debug, Default)]
pub struct VerifyReport {
    pub records: usize,
    pub outputs: usize,
    pub problems: Vec<VerifyProblem>,
}

/// The records of a cache, and the record files that cannot be read (truncated, not JSON).
#[derive(Debug, Default)]
pub struct RecordScan {
    pub records: Vec<Record>,
    pub unreadable: Vec<(PathBuf, String)>,
}

impl Store {
    /// Every record in the cache, and the record files that cannot be read.
    pub fn scan_records(&self) -> Result<RecordScan> {
        let dir = self.root().join("records");
        let mut scan = RecordScan::default();
        for entry in fs::read_dir(&dir).map_err(io_err("cannot list records", &dir))? {
            let entry = entry.map_err(io_err("cannot list records", &dir))?;
            let path = entry.path();
            if path.extension().is_none_or(|e| e != "json") {
                continue;
            }
            match fs::read(&path).map(|b| serde_json::from_slice::<Record>(&b)) {
                Ok(Ok(record)) => scan.records.push(record),
                Ok(Err(e)) => scan.unreadable.push((path, e.to_string())),
                Err(e) => scan.unreadable.push((path, e.to_string())),
            }
        }
        scan.records.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(scan)
    }

    /// Every readable record in the cache (unreadable ones are skipped with a warning).
    pub fn records(&self) -> Result<Vec<Record>> {
        let scan = self.scan_records()?;
        for (path, message) in &scan.unreadable {
            tracing::warn!("skipping unreadable record {}: {message}", path.display());
        }
        Ok(scan.records)
    }

    /// Removes objects that no record reaches, leftover staging directories, and checkpoints of
    /// instances that have finished. Call with the cache lock held.
    pub fn gc(&self) -> Result<GcReport> {
        self.gc_keeping(None, false)
    }

    /// [`Store::gc`], but with `keep` also dropping every record whose key it does not hold
    /// (and so the objects only those reached). With `dry_run` nothing is removed: the report
    /// says what would be.
    pub fn gc_keeping(&self, keep: Option<&HashSet<String>>, dry_run: bool) -> Result<GcReport> {
        let mut records = self.records()?;
        let mut dropped = 0;
        if let Some(keep) = keep {
            records.retain(|record| {
                let kept = keep.contains(&record.key);
                if !kept {
                    dropped += 1;
                    if !dry_run {
                        self.discard_record(&record.key);
                    }
                }
                kept
            });
        }
        let mut live: HashSet<String> = HashSet::new();
        let finished: HashSet<&str> = records.iter().map(|r| r.key.as_str()).collect();
        for record in &records {
            for output in record.outputs.values() {
                live.insert(output.hash.clone());
                if output.kind == OutputKind::Dir {
                    if let Ok(manifest) = self.manifest(output) {
                        live.extend(manifest.entries.into_iter().map(|e| e.hash));
                    }
                }
            }
        }
        let mut report = GcReport {
            records_removed: dropped,
            ..GcReport::default()
        };
        let objects = self.root().join("objects");
        for shard in fs::read_dir(&objects).map_err(io_err("cannot list objects", &objects))? {
            let shard = shard
                .map_err(io_err("cannot list objects", &objects))?
                .path();
            let Some(prefix) = shard.file_name().map(|n| n.to_string_lossy().into_owned()) else {
                continue;
            };
            for object in fs::read_dir(&shard).map_err(io_err("cannot list objects", &shard))? {
                let path = object
                    .map_err(io_err("cannot list objects", &shard))?
                    .path();
                let name = path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                if !is_temporary_name(&name) && live.contains(&format!("{prefix}{name}")) {
                    report.objects_kept += 1;
                    continue;
                }
                let size = fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
                if dry_run || fs::remove_file(&path).is_ok() {
                    report.objects_removed += 1;
                    report.bytes_freed += size;
                }
            }
            if !dry_run {
                let _ = fs::remove_dir(&shard); // only succeeds when empty
            }
        }
        if dry_run {
            return Ok(report);
        }
        self.with_index(|index| {
            index.retain_records(&finished);
            index.retain_objects(&live);
        });
        self.save_index()?;
        report.staging_removed = self.clear_staging()?;
        for sub in ["records", "instances"] {
            report.temporaries_removed += remove_temporaries(&self.root().join(sub));
        }
        let checkpoints = self.root().join("checkpoints");
        for entry in
            fs::read_dir(&checkpoints).map_err(io_err("cannot list checkpoints", &checkpoints))?
        {
            let path = entry
                .map_err(io_err("cannot list checkpoints", &checkpoints))?
                .path();
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            if finished.contains(name.as_str()) && fs::remove_dir_all(&path).is_ok() {
                report.checkpoints_removed += 1;
            }
        }
        Ok(report)
    }

    /// Removes staging directories left by interrupted runs, except those whose key some live
    /// process still holds (a leftover command of a killed run) and those of `keep`. Call with
    /// the cache lock held.
    pub fn clear_staging(&self) -> Result<usize> {
        self.clear_staging_except(&HashSet::new())
    }

    /// [`Store::clear_staging`], also keeping the attempts of the keys in `keep` (hex).
    pub fn clear_staging_except(&self, keep: &HashSet<String>) -> Result<usize> {
        let staging = self.root().join("staging");
        let mut removed = 0;
        for entry in fs::read_dir(&staging).map_err(io_err("cannot list staging", &staging))? {
            let path = entry
                .map_err(io_err("cannot list staging", &staging))?
                .path();
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let key = name.split(['-', '.']).next().unwrap_or_default();
            if keep.contains(key) {
                continue;
            }
            if name.ends_with(".lock") {
                if lock_file_free(&path) {
                    let _ = fs::remove_file(&path);
                }
                continue;
            }
            if self.key_lock_held(key) {
                tracing::warn!(
                    "{} is still held by a process of an earlier run; leaving it",
                    path.display()
                );
                continue;
            }
            make_writable(&path);
            if fs::remove_dir_all(&path).is_ok() || fs::remove_file(&path).is_ok() {
                removed += 1;
            }
        }
        shrink_if_empty(&staging)?;
        Ok(removed)
    }

    /// Re-hashes every output of every record. With `repair`, corrupt objects and the records
    /// that name them are removed, so the next run recomputes them.
    pub fn verify(&self, repair: bool) -> Result<VerifyReport> {
        let mut report = VerifyReport::default();
        let scan = self.scan_records()?;
        for (path, message) in scan.unreadable {
            report.records += 1;
            report.problems.push(VerifyProblem {
                instance: path.display().to_string(),
                output: "(record)".into(),
                detail: format!("the record is unreadable: {message}"),
            });
            if repair {
                let _ = fs::remove_file(&path);
            }
        }
        let mut intact: HashSet<String> = HashSet::new();
        for record in scan.records {
            report.records += 1;
            let mut broken = false;
            for (name, output) in &record.outputs {
                report.outputs += 1;
                let damaged = self.damaged_objects(output);
                if !damaged.is_empty() {
                    broken = true;
                    report.problems.push(VerifyProblem {
                        instance: record.instance.clone(),
                        output: name.clone(),
                        detail: format!(
                            "object {} is missing or does not match its hash",
                            &output.hash[..12]
                        ),
                    });
                    if repair {
                        damaged.iter().for_each(|hash| self.discard_object(hash));
                    }
                }
            }
            if broken && repair {
                self.discard_record(&record.key);
            } else {
                intact.insert(record.key);
            }
        }
        if repair {
            // The index may only name records that exist and were found intact.
            self.with_index(|index| index.retain_records(&intact));
            self.save_index()?;
        }
        Ok(report)
    }
}

/// Directories a stage made read-only block removal; files need no write bit to be unlinked (and
/// must keep their read-only bit: staged inputs are hard links to objects).
fn make_writable(path: &Path) {
    if let Ok(meta) = fs::symlink_metadata(path) {
        if meta.is_dir() {
            let mut perms = meta.permissions();
            #[allow(clippy::permissions_set_readonly_false)]
            perms.set_readonly(false);
            let _ = fs::set_permissions(path, perms);
            if let Ok(entries) = fs::read_dir(path) {
                for entry in entries.flatten() {
                    make_writable(&entry.path());
                }
            }
        }
    }
}

/// Removes the temporary files of interrupted atomic writes directly under `dir` (and one level
/// of subdirectories, as in `instances/<stage>/`). Call with the cache lock held.
fn remove_temporaries(dir: &Path) -> usize {
    let mut removed = 0;
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if is_temporary_name(&name) {
            if fs::remove_file(&path).is_ok() || fs::remove_dir_all(&path).is_ok() {
                removed += 1;
            }
        } else if entry.file_type().is_ok_and(|t| t.is_dir()) {
            removed += remove_temporaries(&path);
        }
    }
    removed
}

/// Replaces an empty directory that grew large by a fresh one. A directory keeps the size its
/// most entries needed (ext4 never shrinks one), and listing it reads all of it: after a run of
/// 100,000 instances the empty `staging/` took 0.3 s to list at every later run.
fn shrink_if_empty(dir: &Path) -> Result<()> {
    const LARGE: u64 = 1 << 16;
    if fs::metadata(dir).is_ok_and(|m| m.len() > LARGE) && fs::remove_dir(dir).is_ok() {
        fs::create_dir(dir).map_err(io_err("cannot create", dir))?;
    }
    Ok(())
}
