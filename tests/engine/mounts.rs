//! A cache on a small or read-only filesystem (a tmpfs this test mounts; needs root, as on CI).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::{require, stderr, stdout, Env, Sandbox};

/// A tmpfs mounted for one test, unmounted when dropped.
struct Mount {
    at: PathBuf,
}

impl Mount {
    /// `None` (after printing a visible skip line) where this machine cannot mount.
    fn tmpfs(at: &Path, size: &str, test: &str) -> Option<Mount> {
        std::fs::create_dir_all(at).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "none"])
            .arg(at)
            .status()
            .is_ok_and(|s| s.success());
        let available = if ok {
            Ok(())
        } else {
            Err("`mount -t tmpfs` failed".to_string())
        };
        if !require(test, Env::Mount, available) {
            return None;
        }
        Some(Mount {
            at: at.to_path_buf(),
        })
    }

    fn remount_read_only(&self) {
        let ok = Command::new("mount")
            .args(["-o", "remount,ro"])
            .arg(&self.at)
            .status()
            .unwrap();
        assert!(ok.success());
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.at).status();
    }
}

#[test]
#[ignore = "needs permission to mount a tmpfs (root); make test runs it"]
fn a_command_that_fills_the_disk_says_so_and_leaves_nothing_behind() {
    let sandbox = Sandbox::new();
    let Some(_mount) = Mount::tmpfs(&sandbox.cache(), "4m", "disk full") else {
        return;
    };
    sandbox.write(
        "stages:\n  a:\n    uses: cmd\n    with: {run: 'echo filling; head -c 8000000 /dev/zero > \"$PIPE_OUT/big\"', outputs: {o: big}}\n",
    );
    let out = sandbox.cli(&["run", "pipeline.yaml"]);
    assert_eq!(out.status.code(), Some(1));
    let said = format!("{}{}", stdout(&out), stderr(&out));
    assert!(said.contains("disk holding the cache is full"), "{said}");
    assert!(
        said.contains("filling"),
        "the log's tail is in the message: {said}"
    );
    let gc = sandbox.cli(&["gc"]);
    assert!(gc.status.success(), "{}", stderr(&gc));
    let staging_dirs = std::fs::read_dir(sandbox.cache().join("staging"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .count();
    assert_eq!(staging_dirs, 0);
}

#[test]
#[ignore = "needs permission to mount a tmpfs (root); make test runs it"]
fn a_read_only_cache_answers_status_and_show_and_refuses_run_clearly() {
    let sandbox = Sandbox::new();
    let Some(mount) = Mount::tmpfs(&sandbox.cache(), "8m", "read-only cache") else {
        return;
    };
    sandbox.write(
        "stages:\n  a:\n    uses: cmd\n    with: {run: 'echo hi > \"$PIPE_OUT/o\"', outputs: {o: o}}\n",
    );
    assert!(sandbox.cli(&["run", "pipeline.yaml"]).status.success());
    mount.remount_read_only();

    let status = sandbox.cli(&["status", "pipeline.yaml"]);
    assert!(status.status.success(), "{}", stderr(&status));
    assert!(
        stdout(&status).contains("up to date"),
        "{}",
        stdout(&status)
    );
    let show = sandbox.cli(&["show", "pipeline.yaml", "a"]);
    assert!(show.status.success(), "{}", stderr(&show));

    let run = sandbox.cli(&["run", "pipeline.yaml"]);
    assert_eq!(run.status.code(), Some(3), "{}", stderr(&run));
    assert!(stderr(&run).contains("read-only"), "{}", stderr(&run));
}

#[test]
#[ignore = "needs permission to mount a tmpfs (root); make test runs it"]
fn a_record_write_that_hits_a_full_disk_leaves_nothing_gc_cannot_remove() {
    let sandbox = Sandbox::new();
    let Some(_mount) = Mount::tmpfs(&sandbox.cache(), "4m", "record write on a full disk") else {
        return;
    };
    // The output fills the disk to the last byte; storing it is a rename, the record is not.
    sandbox.write(
        "stages:\n  a:\n    uses: cmd\n    with: {run: 'head -c 8000000 /dev/urandom > \"$PIPE_OUT/big\" || true', outputs: {o: big}}\n",
    );
    let out = sandbox.cli(&["run", "pipeline.yaml"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stdout(&out).contains("No space left") || stderr(&out).contains("No space left"));
    let leftovers = |dir: &str| -> Vec<String> {
        std::fs::read_dir(sandbox.cache().join(dir))
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains(".tmp-"))
            .collect()
    };
    assert!(
        leftovers("records").is_empty(),
        "{:?}",
        leftovers("records")
    );
    let gc = sandbox.cli(&["gc"]);
    assert!(gc.status.success(), "{}", stderr(&gc));
    let objects = walk_files(&sandbox.cache().join("objects"));
    assert!(objects.is_empty(), "gc left {objects:?}");
}

fn walk_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk_files(&path));
        } else {
            out.push(path);
        }
    }
    out
}
