//! One exclusive lock per cache, held for the whole of `run`, `gc` and `verify`, and one lock per
//! key, held while an instance of that key runs (and by the processes it starts).
//!
//! The cache lock is taken on the cache directory itself, not on a file in it: a lock file that
//! someone deletes mid-run would let a second run lock a new file and execute the same keys.
//! `cache/lock` only holds the holder's pid, for the waiting message.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use super::{io_err, Key, Result, Store, StoreError};

/// Held until dropped (the OS also releases it if the process dies).
pub struct CacheLock {
    _dir: File,
}

/// Held while an instance runs; the processes a stage starts inherit it, so a leftover process
/// of a killed run still holds it and nothing else runs that key meanwhile.
pub struct KeyLock {
    file: File,
}

impl KeyLock {
    /// The descriptor a child process must keep open to hold the lock.
    pub fn raw_fd(&self) -> std::os::fd::RawFd {
        use std::os::fd::AsRawFd;
        self.file.as_raw_fd()
    }
}

/// Whether an I/O error means the cache cannot be written at all.
fn is_read_only(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EROFS) | Some(libc::EACCES) | Some(libc::EPERM)
    )
}

impl Store {
    /// Takes the cache lock; if another process holds it, calls `on_wait` once and blocks.
    pub fn lock(&self, on_wait: impl FnOnce(&str)) -> Result<CacheLock> {
        let root = self.root();
        let dir = File::open(root).map_err(io_err("cannot open cache directory", root))?;
        let pid_path = root.join("lock");
        let mut pid_file = match OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&pid_path)
        {
            Ok(file) => file,
            Err(e) if is_read_only(&e) => {
                return Err(StoreError::ReadOnly {
                    path: root.to_path_buf(),
                    source: e,
                })
            }
            Err(e) => return Err(io_err("cannot open cache lock", &pid_path)(e)),
        };
        match dir.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = pid_file.read_to_string(&mut holder);
                let holder = holder.trim();
                let who = if holder.is_empty() {
                    "another pipe process".to_string()
                } else {
                    format!("another pipe process (pid {holder})")
                };
                on_wait(&format!(
                    "waiting for {who}, which holds the lock of the cache {}",
                    root.display()
                ));
                dir.lock().map_err(io_err("cannot take cache lock", root))?;
            }
            Err(TryLockError::Error(e)) => return Err(io_err("cannot take cache lock", root)(e)),
        }
        // Best effort: the pid only makes the waiting message friendlier.
        let _ = pid_file.set_len(0);
        let _ = pid_file.seek(SeekFrom::Start(0));
        let _ = write!(pid_file, "{}", std::process::id());
        let _ = pid_file.flush();
        Ok(CacheLock { _dir: dir })
    }

    /// The pid of the process holding the cache lock, if one does.
    pub(crate) fn lock_holder(&self) -> Option<u32> {
        let dir = File::open(self.root()).ok()?;
        match dir.try_lock() {
            Err(TryLockError::WouldBlock) => std::fs::read_to_string(self.root().join("lock"))
                .ok()?
                .trim()
                .parse()
                .ok(),
            _ => None,
        }
    }

    fn key_lock_path(&self, key: &Key) -> std::path::PathBuf {
        self.root()
            .join("staging")
            .join(format!("{}.lock", key.hex()))
    }

    /// Takes the lock of `key`, waiting up to `patience` for a holder (a leftover process of a
    /// killed run, which the run's watchdog is killing) to let go.
    pub fn lock_key(&self, key: &Key, patience: Duration) -> Result<KeyLock> {
        let path = self.key_lock_path(key);
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io_err("cannot open key lock", &path))?;
        let started = Instant::now();
        loop {
            match file.try_lock() {
                Ok(()) => return Ok(KeyLock { file }),
                Err(TryLockError::WouldBlock) if started.elapsed() < patience => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(TryLockError::WouldBlock) => {
                    return Err(StoreError::KeyBusy {
                        key: key.hex(),
                        path,
                    })
                }
                Err(TryLockError::Error(e)) => {
                    return Err(io_err("cannot take key lock", &path)(e))
                }
            }
        }
    }

    /// Whether some process holds the lock of the key whose hex is `key_hex`.
    pub(crate) fn key_lock_held(&self, key_hex: &str) -> bool {
        let path = self.root().join("staging").join(format!("{key_hex}.lock"));
        matches!(try_lock_file(&path), Some(Err(TryLockError::WouldBlock)))
    }
}

/// Whether the lock file at `path` is free (exists and nobody holds it).
pub(crate) fn lock_file_free(path: &Path) -> bool {
    matches!(try_lock_file(path), Some(Ok(())))
}

/// Tries (and at once releases) the lock file at `path`; `None` when it cannot be opened.
fn try_lock_file(path: &Path) -> Option<Result<(), TryLockError>> {
    let file = OpenOptions::new().write(true).open(path).ok()?;
    Some(file.try_lock())
}
