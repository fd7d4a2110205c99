//! One exclusive lock per cache (`cache/lock`), held for the whole of `run`, `gc` and `verify`.
//! A second process waits and says so, rather than failing or interleaving writes.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};

use super::{io_err, Result, Store};

/// Held until dropped (the OS also releases it if the process dies).
pub struct CacheLock {
    _file: File,
}

impl Store {
    /// Takes the cache lock; if another process holds it, calls `on_wait` once and blocks.
    pub fn lock(&self, on_wait: impl FnOnce(&str)) -> Result<CacheLock> {
        let path = self.root().join("lock");
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io_err("cannot open cache lock", &path))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim();
                let who = if holder.is_empty() {
                    "another pipe process".to_string()
                } else {
                    format!("another pipe process (pid {holder})")
                };
                on_wait(&format!(
                    "waiting for {who}, which holds the cache lock {}",
                    path.display()
                ));
                file.lock()
                    .map_err(io_err("cannot take cache lock", &path))?;
            }
            Err(TryLockError::Error(e)) => return Err(io_err("cannot take cache lock", &path)(e)),
        }
        // Best effort: the pid only makes the waiting message friendlier.
        let _ = file.set_len(0);
        let _ = file.seek(SeekFrom::Start(0));
        let _ = write!(file, "{}", std::process::id());
        let _ = file.flush();
        Ok(CacheLock { _file: file })
    }
}
