//! blake3 of files: streaming for small files, memory-mapped and multi-threaded for large ones.

use std::fs::File;
use std::io;
use std::path::Path;

/// Above this size the multi-threaded path pays for its start-up cost.
const PARALLEL_THRESHOLD: u64 = 8 * 1024 * 1024;

/// Single-threaded blake3 of a file: (hash, size).
pub fn hash_file(path: &Path) -> io::Result<(blake3::Hash, u64)> {
    let mut file = File::open(path)?;
    let mut hasher = blake3::Hasher::new();
    let size = io::copy(&mut file, &mut hasher)?;
    Ok((hasher.finalize(), size))
}

/// blake3 of a file, using every core (rayon) for large files.
pub fn hash_file_parallel(path: &Path) -> io::Result<(blake3::Hash, u64)> {
    let size = std::fs::metadata(path)?.len();
    if size < PARALLEL_THRESHOLD {
        return hash_file(path);
    }
    let mut hasher = blake3::Hasher::new();
    hasher.update_mmap_rayon(path)?;
    Ok((hasher.finalize(), size))
}
