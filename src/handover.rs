//! Hands a command that must compute on libtorch to the binary beside this one that links it.
//!
//! `pipe` plans, decides, reports and runs everything but the tensor stages without libtorch,
//! whose start-up alone costs about 0.3 s and 120 MB. A run that must compute a tensor stage (or
//! give an instance a GPU, which only libtorch can count) is replaced, before it records or locks
//! anything, by `pipe-torch` with the same arguments and environment: the same command line
//! with every plugin runnable. Nothing is lost in between, since nothing has started.

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;

use anyhow::{anyhow, Context, Result};

use crate::exec::Foreign;

/// Names the binary to hand over to, instead of `<this binary>-torch` beside it.
pub const TORCH_BINARY_ENV: &str = "PIPE_TORCH";

/// The binary that links libtorch: `$PIPE_TORCH`, else `<this binary's name>-torch` beside it
/// (`pipe` → `pipe-torch`).
fn torch_binary() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os(TORCH_BINARY_ENV) {
        return Ok(PathBuf::from(path));
    }
    let this = std::env::current_exe().context("cannot find this binary's own path")?;
    let mut name = this.file_name().map(OsString::from).unwrap_or_default();
    name.push("-torch");
    Ok(this.with_file_name(name))
}

/// What a handover says about its reason.
pub fn describe(instance: &str, why: &Foreign) -> String {
    match why {
        Foreign::Plugin(kind) => format!("{instance} runs `{kind}`, which computes on libtorch"),
        Foreign::Gpu => format!("{instance} needs a GPU, which only libtorch can count"),
    }
}

/// Replaces this process with the torch binary, with this process's arguments and environment.
/// Returns only when that fails, with an error saying what to build.
pub fn hand_over(reason: &str) -> anyhow::Error {
    let binary = match torch_binary() {
        Ok(binary) => binary,
        Err(e) => return e,
    };
    tracing::info!("{reason}: handing over to {}", binary.display());
    let error = std::process::Command::new(&binary)
        .args(std::env::args_os().skip(1))
        .exec();
    anyhow!(
        "{reason}, but this binary does not link libtorch and cannot start {} ({error}); build \
         it with `make build` (or `cargo build --release`), or name it with {TORCH_BINARY_ENV}",
        binary.display()
    )
}
