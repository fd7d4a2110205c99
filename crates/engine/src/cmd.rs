//! `cmd`: runs a shell command with declared inputs and outputs.
//!
//! The command runs in a fresh directory with `PIPE_OUT` (where it writes its outputs),
//! `PIPE_IN_<NAME>` per input (a path; for a fan-in, a directory with one entry per upstream
//! instance), `PIPE_SEED`, `PIPE_THREADS`, `PIPE_INSTANCE`, and `PIPE_CHECKPOINT` (a directory
//! that survives a crash, for resumable commands), `PIPE_PROJECT` (the pipeline file's directory),
//! and, where the run hands out GPUs, `CUDA_VISIBLE_DEVICES` (its own, or empty when it has none).
//! Its output goes to the log.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::stage::child::disk_full;
use crate::stage::{InputPaths, OutputDecl, Plugin, StageContext, StageError};

pub struct Cmd;

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CmdParams {
    /// The shell command (run with `bash -c`, or `sh -c` where bash is missing).
    pub run: String,
    /// Output name → path relative to `$PIPE_OUT` (a file or a directory).
    #[serde(default)]
    pub outputs: BTreeMap<String, String>,
    /// Extra environment variables.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Project files the command reads (relative to the pipeline file): editing one re-runs it.
    #[serde(default)]
    pub files: Vec<String>,
    /// Thread slots the command uses (default 1).
    #[serde(default = "one")]
    pub threads: usize,
}

fn one() -> usize {
    1
}

impl Plugin for Cmd {
    type Params = CmdParams;
    const KIND: &'static str = "cmd";
    const VERSION: u32 = 1;
    const OBSERVES_INSTANCE: bool = true;
    const ABOUT: &'static str =
        "Run a shell command; inputs as $PIPE_IN_<NAME>, outputs written under $PIPE_OUT";

    fn outputs(&self, params: &CmdParams) -> Vec<OutputDecl> {
        params
            .outputs
            .iter()
            .map(|(name, path)| OutputDecl::new(name, path))
            .collect()
    }

    fn threads(&self, params: &CmdParams) -> usize {
        params.threads
    }

    fn files(&self, params: &CmdParams) -> Vec<String> {
        params.files.clone()
    }

    fn check(&self, params: &CmdParams) -> Result<(), (String, String)> {
        if params.run.trim().is_empty() {
            return Err(("run".into(), "the command is empty".into()));
        }
        if params.run.contains('\0') {
            return Err((
                "run".into(),
                "the command contains a NUL byte, which no shell can be given".into(),
            ));
        }
        let mut normalised: Vec<(&str, &str, Vec<&str>)> = Vec::new();
        for (name, path) in &params.outputs {
            let p = std::path::Path::new(path);
            if path.is_empty()
                || path.contains('\0')
                || p.is_absolute()
                || p.components()
                    .any(|c| matches!(c, std::path::Component::ParentDir))
            {
                return Err((
                    format!("outputs.{name}"),
                    format!(
                        "`{path}` must be a relative path inside $PIPE_OUT (no `..`, not absolute)"
                    ),
                ));
            }
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            {
                return Err((
                    format!("outputs.{name}"),
                    "output names use letters, digits, `_` and `-`".into(),
                ));
            }
            let parts = normalise(path).unwrap_or_default();
            if parts.is_empty() {
                return Err((
                    format!("outputs.{name}"),
                    format!(
                        "`{path}` is $PIPE_OUT itself; name a file or directory inside it, e.g. `{name}.txt`"
                    ),
                ));
            }
            normalised.push((name, path, parts));
        }
        for (i, (a_name, a_path, a)) in normalised.iter().enumerate() {
            for (b_name, b_path, b) in &normalised[i + 1..] {
                if a == b {
                    return Err((
                        format!("outputs.{b_name}"),
                        format!(
                            "outputs `{a_name}` and `{b_name}` are the same path `{b_path}`; give each its own path"
                        ),
                    ));
                }
                let (outer, inner) = if b.starts_with(a) {
                    ((a_name, a_path), (b_name, b_path))
                } else if a.starts_with(b) {
                    ((b_name, b_path), (a_name, a_path))
                } else {
                    continue;
                };
                return Err((
                    format!("outputs.{}", inner.0),
                    format!(
                        "`{}` (output `{}`) is inside `{}` (output `{}`); outputs may not contain each other: declare only the directory, or move `{}` beside it",
                        inner.1, inner.0, outer.1, outer.0, inner.1
                    ),
                ));
            }
        }
        for (name, value) in &params.env {
            let valid = name
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid {
                return Err((
                    format!("env.{name}"),
                    format!(
                        "`{name}` is not a valid environment variable name; use letters, digits and `_`, not starting with a digit (e.g. `MY_VAR`)"
                    ),
                ));
            }
            if let Some(rest) = name.strip_prefix("PIPE_") {
                return Err((
                    format!("env.{name}"),
                    format!(
                        "`{name}` is reserved: pipe sets the `PIPE_` variables ($PIPE_OUT, $PIPE_IN_<NAME>, ...) itself; rename it, e.g. `MY_{rest}`"
                    ),
                ));
            }
            if name == "CUDA_VISIBLE_DEVICES" {
                return Err((
                    format!("env.{name}"),
                    "pipe sets `CUDA_VISIBLE_DEVICES` itself, to the GPUs this instance holds; ask for GPUs with `resources: {gpus: N}` instead".into(),
                ));
            }
            if value.contains('\0') {
                return Err((
                    format!("env.{name}"),
                    "the value contains a NUL byte, which an environment variable cannot hold"
                        .into(),
                ));
            }
        }
        for (i, file) in params.files.iter().enumerate() {
            if file.is_empty() {
                return Err((
                    format!("files.{i}"),
                    "an empty path; list project files relative to the pipeline file".into(),
                ));
            }
            if std::path::Path::new(file).is_absolute() || normalise(file).is_none() {
                return Err((
                    format!("files.{i}"),
                    format!(
                        "`{file}` is outside the project: files must be inside the pipeline's directory (relative, no `..` leaving it); copy the file into the project and list its relative path"
                    ),
                ));
            }
        }
        Ok(())
    }

    fn run(&self, params: CmdParams, ctx: &mut StageContext<'_>) -> Result<(), StageError> {
        let shell = if std::path::Path::new("/bin/bash").exists() {
            "/bin/bash"
        } else {
            "/bin/sh"
        };
        let log =
            File::create(&ctx.log_path).map_err(|e| StageError::io("cannot create the log", e))?;
        let log_err = log
            .try_clone()
            .map_err(|e| StageError::io("cannot create the log", e))?;
        let mut command = Command::new(shell);
        command
            .arg("-c")
            .arg(&params.run)
            .current_dir(&ctx.work_dir)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .env("PIPE_OUT", &ctx.out_dir)
            .env("PIPE_SEED", ctx.seed.to_string())
            .env("PIPE_THREADS", ctx.threads.to_string())
            .env("PIPE_INSTANCE", &ctx.instance)
            .env("PIPE_CHECKPOINT", &ctx.checkpoint_dir)
            .env("PIPE_PROJECT", &ctx.project_dir);
        if let Some(visible) = ctx.visible_devices() {
            command.env("CUDA_VISIBLE_DEVICES", visible);
        }
        for (name, paths) in &ctx.inputs {
            let var = format!("PIPE_IN_{}", name.to_ascii_uppercase());
            let value = match paths {
                InputPaths::One(p) => p.clone(),
                InputPaths::Many(entries) => entries
                    .first()
                    .and_then(|(_, p)| p.parent().map(|d| d.to_path_buf()))
                    .unwrap_or_else(|| ctx.work_dir.clone()),
            };
            command.env(var, value);
        }
        command.envs(&params.env);
        ctx.progress(&format!(
            "$ {}",
            params.run.lines().next().unwrap_or_default()
        ));
        let status = ctx
            .run_process(&mut command)
            .map_err(|e| StageError::io(format!("cannot start {shell}"), e))?;
        if status.success() {
            return Ok(());
        }
        let full = if disk_full(&ctx.out_dir) {
            "; the disk holding the cache is full (free space, or point `--cache` elsewhere)"
        } else {
            ""
        };
        // The log may sit on the full disk: its tail travels in the error message.
        let tail = last_lines(&ctx.log_path, 15);
        let code = status
            .code()
            .map(|c| c.to_string())
            .unwrap_or_else(|| "a signal".into());
        Err(StageError::Failed(format!(
            "command exited with {code}{full}{}",
            if tail.is_empty() {
                String::new()
            } else {
                format!("; last lines of its output:\n{tail}")
            }
        )))
    }
}

/// The components of relative `path` with `.` and empty ones dropped and `a/..` folded; `None`
/// when a `..` climbs above the start.
fn normalise(path: &str) -> Option<Vec<&str>> {
    let mut parts = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            other => parts.push(other),
        }
    }
    Some(parts)
}

fn last_lines(path: &std::path::Path, n: usize) -> String {
    let Ok(file) = File::open(path) else {
        return String::new();
    };
    let lines: Vec<String> = BufReader::new(file).lines().map_while(Result::ok).collect();
    lines[lines.len().saturating_sub(n)..]
        .iter()
        .map(|l| format!("    {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}
