//! Processes that stages start: each in its own process group, killed with everything it
//! started when it ends, and killed by a watchdog when `pipe` itself dies, even by `kill -9`.
//!
//! The watchdog is one `bash` per `pipe` process, in a process group of its own (so a Ctrl-C at
//! the terminal does not reach it) and deaf to INT/TERM/HUP. `pipe` tells it on its stdin which
//! process groups are running; when `pipe` dies for any reason the pipe closes, `read` sees the
//! end of input, and the watchdog kills every group still listed.

use std::io::{self, Write};
use std::os::fd::RawFd;
use std::os::unix::process::CommandExt;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::Mutex;

const WATCHDOG: &str = r#"
trap '' INT TERM HUP QUIT
declare -A groups
while read -r op id; do
  if [ "$op" = "+" ]; then groups[$id]=1; else unset "groups[$id]"; fi
done
for id in "${!groups[@]}"; do kill -KILL -- "-$id" 2>/dev/null; done
"#;

struct Watchdog {
    stdin: ChildStdin,
    // Kept so the watchdog is not reaped early; it exits when `pipe` does.
    _child: Child,
}

static WATCHDOG_STATE: Mutex<Option<Option<Watchdog>>> = Mutex::new(None);

fn tell_watchdog(line: &str) {
    let Ok(mut state) = WATCHDOG_STATE.lock() else {
        return;
    };
    let watchdog = state.get_or_insert_with(|| match start_watchdog() {
        Ok(w) => Some(w),
        Err(e) => {
            tracing::warn!(
                "cannot start the process watchdog ({e}); commands of a killed run may outlive it"
            );
            None
        }
    });
    if let Some(w) = watchdog {
        // A watchdog that died cannot be told; the group is still killed on normal completion.
        let _ = writeln!(w.stdin, "{line}");
        let _ = w.stdin.flush();
    }
}

fn start_watchdog() -> io::Result<Watchdog> {
    let mut child = Command::new("/bin/bash")
        .arg("-c")
        .arg(WATCHDOG)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()?;
    let stdin = child
        .stdin
        .take()
        .ok_or_else(|| io::Error::other("the watchdog has no stdin"))?;
    Ok(Watchdog {
        stdin,
        _child: child,
    })
}

/// Runs `command` to completion in a new process group and then kills whatever of that group is
/// still alive (background jobs it left behind). `hold` is a descriptor the command inherits and
/// keeps open while any of its processes lives (the key lock).
pub fn run_in_own_group(command: &mut Command, hold: Option<RawFd>) -> io::Result<ExitStatus> {
    command.process_group(0);
    if let Some(fd) = hold {
        // SAFETY: only async-signal-safe fcntl calls between fork and exec.
        unsafe {
            command.pre_exec(move || {
                let flags = libc::fcntl(fd, libc::F_GETFD);
                if flags < 0 || libc::fcntl(fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC) < 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    let mut child = command.spawn()?;
    let group = i32::try_from(child.id()).map_err(io::Error::other)?;
    tell_watchdog(&format!("+ {group}"));
    let status = child.wait();
    kill_group(group);
    tell_watchdog(&format!("- {group}"));
    status
}

fn kill_group(group: i32) {
    if group > 1 {
        // SAFETY: a plain syscall; the negative pid names only this command's process group.
        unsafe {
            libc::kill(-group, libc::SIGKILL);
        }
    }
}

/// Whether the filesystem holding `path` has no space left for unprivileged writes.
pub fn disk_full(path: &std::path::Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c_path) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: statvfs writes into the zeroed struct we own; the path is NUL-terminated.
    unsafe {
        let mut stat: libc::statvfs = std::mem::zeroed();
        libc::statvfs(c_path.as_ptr(), &mut stat) == 0 && stat.f_bavail == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn background_children_die_with_the_command() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("late");
        let mut command = Command::new("/bin/bash");
        command
            .arg("-c")
            .arg(format!("(sleep 0.5; touch {}) & exit 0", marker.display()));
        let status = run_in_own_group(&mut command, None).unwrap();
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(1);
        while Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(!marker.exists(), "a background job outlived its command");
    }
}
