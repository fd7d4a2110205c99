//! The one way `pipe` replaces a file, for the store and for plugins' checkpoints alike: write a
//! temporary sibling, fsync it, rename it over the target, fsync the directory. A kill at any
//! moment leaves the old file or the new one, never half of one; a failed write leaves no
//! temporary file behind.

use std::io::Write;
use std::path::{Path, PathBuf};

/// A temporary sibling of `path` (`.NAME.tmp-PID-N`), unique per process and per call, so
/// concurrent writers of one path (two threads, or two processes on a shared cache) never share
/// one.
fn temporary_for(path: &Path) -> PathBuf {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp-{}-{n}", std::process::id()))
}

/// Whether a directory entry name is one of [`temporary_path`]'s.
pub fn is_temporary_name(name: &str) -> bool {
    name.starts_with('.') && name.contains(".tmp-")
}

/// Syncs the directory holding `path`, so a rename into it survives a power loss.
fn sync_parent(path: &Path) -> std::io::Result<()> {
    let parent = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::File::open(parent)?.sync_all()
}

/// Replaces `path` with `bytes` atomically (see the module doc).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    write_atomic_with(path, |file| file.write_all(bytes))
}

/// Replaces `path` with what `write` puts into the temporary file, atomically.
pub fn write_atomic_with(
    path: &Path,
    write: impl FnOnce(&mut std::fs::File) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let temporary = temporary_for(path);
    let result = (|| {
        let mut file = std::fs::File::create(&temporary)?;
        write(&mut file)?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&temporary, path)?;
        sync_parent(path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    result
}

/// The temporary path to write a file into before [`rename_into_place`], for writers (such as
/// libtorch's `save`) that must be given a path rather than a file.
pub fn temporary_path(path: &Path) -> PathBuf {
    temporary_for(path)
}

/// Syncs `temporary` and renames it over `path`; removes it if that fails.
pub fn rename_into_place(temporary: &Path, path: &Path) -> std::io::Result<()> {
    let result = std::fs::File::open(temporary)
        .and_then(|f| f.sync_all())
        .and_then(|()| std::fs::rename(temporary, path))
        .and_then(|()| sync_parent(path));
    if result.is_err() {
        let _ = std::fs::remove_file(temporary);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_the_file_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        std::fs::write(&path, b"old").unwrap();
        write_atomic(&path, b"new").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new");
        let failed = write_atomic_with(&path, |_| Err(std::io::Error::other("disk full")));
        assert!(failed.is_err());
        assert_eq!(std::fs::read(&path).unwrap(), b"new");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
