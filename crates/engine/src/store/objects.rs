//! Outputs into and out of the object store: storing only regular files and directories (never
//! through a link, never sharing an inode with a file outside the cache), verifying objects by
//! hash, and materializing them as artifacts.

use std::collections::HashMap;
use std::fs;
use std::path::Path;

use super::{
    hash_file, hash_file_parallel, io_err, write_atomic, FileIdentity, Manifest, ManifestEntry,
    OutputKind, OutputRecord, Result, Store, StoreError,
};

impl Store {
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
            let tmp = crate::atomic::temporary_path(&dest);
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
        self.materialize_known(output, dest, &HashMap::new())
    }

    /// [`Store::materialize`], given the identities of objects verified just now: a file
    /// artifact that already is such an object is left as it is after one look at it.
    pub fn materialize_known(
        &self,
        output: &OutputRecord,
        dest: &Path,
        identities: &HashMap<String, FileIdentity>,
    ) -> Result<()> {
        match output.kind {
            OutputKind::File => {
                if let (Some(&object), Ok(shown)) =
                    (identities.get(&output.hash), fs::symlink_metadata(dest))
                {
                    use std::os::unix::fs::MetadataExt;
                    if (shown.dev(), shown.ino()) == object {
                        return Ok(());
                    }
                }
                link_or_copy(&self.object_path(&output.hash), dest)
            }
            OutputKind::Dir => {
                let manifest = self.manifest(output)?;
                let tmp = crate::atomic::temporary_path(dest);
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
        self.forget_object(hash);
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
    let tmp = crate::atomic::temporary_path(dest);
    if fs::hard_link(src, &tmp).is_err() {
        fs::copy(src, &tmp).map_err(io_err("cannot copy artifact", dest))?;
    }
    fs::rename(&tmp, dest).map_err(|e| {
        let _ = fs::remove_file(&tmp);
        io_err("cannot place artifact", dest)(e)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

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
