//! The contract between the engine and a stage plugin.
//!
//! A plugin implements [`Plugin`] with typed parameters; the blanket [`Stage`] impl turns that into
//! the object-safe interface the engine calls. Plugins never see the store: they read inputs from
//! paths, write outputs into `out_dir`, and may keep resume state in `checkpoint_dir`.

pub mod child;
mod registry;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde::Serialize;

pub use registry::Registry;

/// An output a stage instance promises to produce: its name and its path under `out_dir`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputDecl {
    pub name: String,
    pub path: String,
}

impl OutputDecl {
    pub fn new(name: &str, path: &str) -> Self {
        OutputDecl {
            name: name.to_string(),
            path: path.to_string(),
        }
    }
}

/// The inputs a plugin accepts.
#[derive(Debug, Clone)]
pub enum InputSpec {
    /// Any names (the `cmd` plugin).
    Any,
    /// Exactly these names.
    Named(Vec<InputDecl>),
}

#[derive(Debug, Clone)]
pub struct InputDecl {
    pub name: &'static str,
    /// `STAGE[*].OUTPUT`: one path per upstream instance.
    pub fan_in: bool,
    pub required: bool,
    pub about: &'static str,
}

/// Parameters after typing: canonical JSON (defaults filled in), outputs and thread budget.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub params: crate::store::CanonicalJson,
    pub outputs: Vec<OutputDecl>,
    pub threads: usize,
    /// GPUs an instance needs (e.g. 1 for `device: cuda`); the stage's `resources.gpus` may ask
    /// for more. Not part of the key: which GPU, or how many, does not change what is computed.
    pub gpus: u32,
    /// Project files (relative to the pipeline file) whose content is part of the key.
    pub files: Vec<String>,
    /// Whether the engine hands the instance its upstream timings ([`Plugin::timings`]).
    pub timings: bool,
}

/// Why parameters were rejected; `field` is dotted relative to `with`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParamError {
    Unknown {
        field: String,
        suggestion: Option<String>,
        known: Vec<String>,
    },
    Missing {
        field: String,
    },
    Invalid {
        field: String,
        message: String,
    },
}

/// A stage that failed while running.
#[derive(Debug, thiserror::Error)]
pub enum StageError {
    #[error("{0}")]
    Failed(String),
    #[error("input `{0}` was not provided")]
    MissingInput(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

impl StageError {
    /// Wraps a domain error (data, graph, nn...) whose message says what went wrong.
    pub fn failed(error: impl std::fmt::Display) -> Self {
        StageError::Failed(error.to_string())
    }

    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        StageError::Io {
            context: context.into(),
            source,
        }
    }
}

/// Paths of one input, as handed to the plugin.
#[derive(Debug, Clone)]
pub enum InputPaths {
    One(PathBuf),
    /// Fan-in: (instance label, path), in the upstream stage's instance order.
    Many(Vec<(String, PathBuf)>),
}

/// One GPU handed to a running instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gpu {
    /// Its CUDA device number in this process (`cuda:<ordinal>`), i.e. after the
    /// `CUDA_VISIBLE_DEVICES` that `pipe` itself inherited.
    pub ordinal: usize,
    /// How a child process names it in `CUDA_VISIBLE_DEVICES` (an index, a UUID or a MIG id).
    pub id: String,
}

/// Everything a running stage instance may use.
pub struct StageContext<'a> {
    pub instance: String,
    pub params: serde_json::Value,
    pub seed: u64,
    pub threads: usize,
    /// Where outputs are written (their declared relative paths).
    pub out_dir: PathBuf,
    /// A scratch directory, removed after the run.
    pub work_dir: PathBuf,
    /// Survives crashes and is removed after success: resume state for long stages.
    pub checkpoint_dir: PathBuf,
    /// Where the plugin may append a human-readable log (kept beside the record).
    pub log_path: PathBuf,
    /// The pipeline file's directory: project-relative paths in parameters resolve against it.
    pub project_dir: PathBuf,
    pub inputs: BTreeMap<String, InputPaths>,
    /// The GPUs this instance was given, its own while it runs (empty: none). In-process
    /// plugins use `cuda:<ordinal>`; `cmd` exports the ids as `CUDA_VISIBLE_DEVICES`.
    pub gpus: Vec<Gpu>,
    /// Other instances hold the run's GPUs and this one has none: `cmd` hides them.
    pub(crate) hide_gpus: bool,
    pub(crate) metrics: Option<serde_json::Value>,
    pub(crate) progress: &'a (dyn Fn(&str) + Sync),
    /// The key lock's descriptor, which processes the stage starts inherit.
    pub(crate) key_lock_fd: Option<std::os::fd::RawFd>,
}

impl StageContext<'_> {
    /// The single path of input `name`.
    pub fn input(&self, name: &str) -> Result<&Path, StageError> {
        match self.inputs.get(name) {
            Some(InputPaths::One(p)) => Ok(p),
            _ => Err(StageError::MissingInput(name.to_string())),
        }
    }

    /// The paths of fan-in input `name`; a single input is returned as one entry.
    pub fn fan_in(&self, name: &str) -> Result<Vec<(String, PathBuf)>, StageError> {
        match self.inputs.get(name) {
            Some(InputPaths::Many(items)) => Ok(items.clone()),
            Some(InputPaths::One(p)) => Ok(vec![(String::new(), p.clone())]),
            None => Err(StageError::MissingInput(name.to_string())),
        }
    }

    /// A project-relative path from the parameters, made absolute.
    pub fn project_path(&self, relative: &str) -> PathBuf {
        self.project_dir.join(relative)
    }

    /// Path where output file `relative` is to be written.
    pub fn output(&self, relative: &str) -> PathBuf {
        self.out_dir.join(relative)
    }

    /// Shows a one-line status in the progress display (e.g. "epoch 3/50 acc 0.91").
    pub fn progress(&self, message: &str) {
        (self.progress)(message);
    }

    /// Runs a process to completion in its own process group, holding the instance's key lock;
    /// whatever it leaves running is killed when it ends, or when `pipe` dies.
    pub fn run_process(
        &self,
        command: &mut std::process::Command,
    ) -> std::io::Result<std::process::ExitStatus> {
        child::run_in_own_group(command, self.key_lock_fd)
    }

    /// The `CUDA_VISIBLE_DEVICES` a child process of this instance must see: its own GPUs, or
    /// none while others hold the run's GPUs; `None` leaves the inherited value alone.
    pub fn visible_devices(&self) -> Option<String> {
        if !self.gpus.is_empty() {
            let ids: Vec<&str> = self.gpus.iter().map(|g| g.id.as_str()).collect();
            Some(ids.join(","))
        } else if self.hide_gpus {
            Some(String::new())
        } else {
            None
        }
    }

    /// Small metrics kept in the stage record and shown by `pipe show`.
    pub fn set_metrics(&mut self, metrics: serde_json::Value) {
        self.metrics = Some(metrics);
    }
}

/// A stage plugin with typed parameters. Implement this; the engine sees it as [`Stage`].
pub trait Plugin: Send + Sync + 'static {
    /// Parameters; use `#[serde(deny_unknown_fields)]` and defaults for optional ones.
    type Params: DeserializeOwned + Serialize + JsonSchema;
    /// The name used in `uses:`.
    const KIND: &'static str;
    /// Bump whenever the same parameters and inputs would give different outputs: every cached
    /// result of the old version is then recomputed.
    const VERSION: u32;
    const ABOUT: &'static str;
    /// Whether the outputs can depend on the instance name (`StageContext::instance`, which
    /// `cmd` hands to its command as `$PIPE_INSTANCE`). Then the name is part of the key;
    /// otherwise two instances with equal parameters, seed and inputs share one result. A
    /// plugin that uses the name only in log messages leaves this `false`.
    const OBSERVES_INSTANCE: bool = false;
    /// The metrics `pipe exp show` puts in its table (a trailing `*` matches a prefix); empty
    /// shows every metric the plugin records.
    const HEADLINE_METRICS: &'static [&'static str] = &[];

    fn inputs(&self) -> InputSpec {
        InputSpec::Any
    }
    fn outputs(&self, params: &Self::Params) -> Vec<OutputDecl>;
    fn threads(&self, _params: &Self::Params) -> usize {
        1
    }
    /// GPUs an instance needs (e.g. 1 for `device: cuda`); the executor never runs more GPU
    /// instances at once than it has GPUs, and hands each its own in [`StageContext::gpus`].
    fn gpus(&self, _params: &Self::Params) -> u32 {
        0
    }
    /// Project files the stage reads (paths relative to the pipeline file's directory); their
    /// content is hashed into the key, so editing one re-runs the stage.
    fn files(&self, _params: &Self::Params) -> Vec<String> {
        Vec::new()
    }
    /// Whether the instance is handed, as its input `timings`, a CSV of how long every instance
    /// upstream of it took (`stage,instance,seconds`, from their records). Its content is then
    /// part of the key, like any input's, so the instance re-runs when an upstream one re-ran.
    fn timings(&self, _params: &Self::Params) -> bool {
        false
    }
    /// Checks beyond types (ranges, relations); `Err((field, message))`.
    fn check(&self, _params: &Self::Params) -> Result<(), (String, String)> {
        Ok(())
    }
    fn run(&self, params: Self::Params, ctx: &mut StageContext<'_>) -> Result<(), StageError>;
    /// Whether [`Plugin::run`] can compute in this binary. `false` for a plugin that is declared
    /// here (so plans, keys and reports know it) but computes in another binary: `pipe` without
    /// libtorch declares the tensor stages and hands a run that must compute one to `pipe-torch`.
    fn runnable(&self) -> bool {
        true
    }
}

/// The object-safe interface the engine calls.
pub trait Stage: Send + Sync {
    fn kind(&self) -> &'static str;
    fn version(&self) -> u32;
    fn about(&self) -> &'static str;
    fn observes_instance(&self) -> bool;
    fn headline_metrics(&self) -> &'static [&'static str];
    fn inputs(&self) -> InputSpec;
    fn params_schema(&self) -> schemars::Schema;
    /// Validates and normalises one instance's `with:`; `schema` is this stage's
    /// [`Stage::params_schema`], which the planner builds once per stage, not per instance.
    fn resolve(
        &self,
        with: &serde_yaml::Value,
        schema: &schemars::Schema,
    ) -> Result<Resolved, Vec<ParamError>>;
    fn run(&self, ctx: &mut StageContext<'_>) -> Result<(), StageError>;
    /// [`Plugin::runnable`].
    fn runnable(&self) -> bool;
}

impl<P: Plugin> Stage for P {
    fn kind(&self) -> &'static str {
        P::KIND
    }
    fn version(&self) -> u32 {
        P::VERSION
    }
    fn about(&self) -> &'static str {
        P::ABOUT
    }
    fn observes_instance(&self) -> bool {
        P::OBSERVES_INSTANCE
    }
    fn headline_metrics(&self) -> &'static [&'static str] {
        P::HEADLINE_METRICS
    }
    fn inputs(&self) -> InputSpec {
        Plugin::inputs(self)
    }
    fn params_schema(&self) -> schemars::Schema {
        schemars::schema_for!(P::Params)
    }

    fn resolve(
        &self,
        with: &serde_yaml::Value,
        schema: &schemars::Schema,
    ) -> Result<Resolved, Vec<ParamError>> {
        let mut errors = check_keys(schema, with);
        if !errors.is_empty() {
            return Err(errors);
        }
        // Through JSON: serde_yaml's `Value` only accepts YAML tags (`!count 5`) for enums, while
        // users write maps (`{count: 5}`).
        let json = match serde_json::to_value(with) {
            Ok(json) => json,
            Err(e) => {
                return Err(vec![ParamError::Invalid {
                    field: String::new(),
                    message: format!("parameters must be plain YAML data (string keys): {e}"),
                }])
            }
        };
        let typed: P::Params = match serde_path_to_error::deserialize(json) {
            Ok(t) => t,
            Err(e) => {
                let field = e.path().to_string();
                errors.push(ParamError::Invalid {
                    field: if field == "." { String::new() } else { field },
                    message: e.into_inner().to_string(),
                });
                return Err(errors);
            }
        };
        if let Err((field, message)) = self.check(&typed) {
            return Err(vec![ParamError::Invalid { field, message }]);
        }
        let threads = self.threads(&typed);
        if threads == 0 {
            return Err(vec![ParamError::Invalid {
                field: "threads".into(),
                message: "must be at least 1 (the thread slots an instance takes); remove it for \
                          the default"
                    .into(),
            }]);
        }
        let params = serde_json::to_value(&typed).map_err(|e| {
            vec![ParamError::Invalid {
                field: String::new(),
                message: format!("parameters cannot be encoded: {e}"),
            }]
        })?;
        Ok(Resolved {
            files: self.files(&typed),
            outputs: self.outputs(&typed),
            gpus: self.gpus(&typed),
            timings: self.timings(&typed),
            threads,
            params: crate::store::CanonicalJson::of(&params),
        })
    }

    fn run(&self, ctx: &mut StageContext<'_>) -> Result<(), StageError> {
        let typed: P::Params = serde_json::from_value(ctx.params.clone())
            .map_err(|e| StageError::Failed(format!("parameters do not decode: {e}")))?;
        Plugin::run(self, typed, ctx)
    }

    fn runnable(&self) -> bool {
        Plugin::runnable(self)
    }
}

/// Top-level unknown and missing keys, checked against the schema so the user gets a suggestion
/// (serde alone stops at the first problem and suggests nothing).
fn check_keys(schema: &schemars::Schema, with: &serde_yaml::Value) -> Vec<ParamError> {
    let properties: Vec<String> = schema
        .get("properties")
        .and_then(|p| p.as_object())
        .map(|p| p.keys().cloned().collect())
        .unwrap_or_default();
    let required: Vec<String> = schema
        .get("required")
        .and_then(|r| r.as_array())
        .map(|r| {
            r.iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    let mut errors = Vec::new();
    let empty = serde_yaml::Mapping::new();
    let map = match with {
        serde_yaml::Value::Mapping(m) => m,
        serde_yaml::Value::Null => &empty,
        _ => {
            return vec![ParamError::Invalid {
                field: String::new(),
                message: "`with` must be a map of parameter names to values".into(),
            }]
        }
    };
    for key in map.keys() {
        let name = crate::spec::scalar_text(key).unwrap_or_default();
        if !properties.contains(&name) {
            errors.push(ParamError::Unknown {
                suggestion: crate::spec::suggest(&name, properties.iter().map(String::as_str))
                    .map(String::from),
                known: properties.clone(),
                field: name,
            });
        }
    }
    for name in required {
        if !map.contains_key(name.as_str()) {
            errors.push(ParamError::Missing { field: name });
        }
    }
    errors
}

/// One line per parameter for `pipe plugins`: name, type, default, description.
pub fn describe_params(schema: &schemars::Schema) -> Vec<String> {
    let required: Vec<&str> = schema
        .get("required")
        .and_then(|r| r.as_array())
        .map(|r| r.iter().filter_map(|v| v.as_str()).collect())
        .unwrap_or_default();
    let Some(props) = schema.get("properties").and_then(|p| p.as_object()) else {
        return Vec::new();
    };
    props
        .iter()
        .map(|(name, prop)| {
            let ty = type_name(prop, schema);
            let mut line = format!("{name}: {ty}");
            if let Some(default) = prop.get("default") {
                if default.is_null() {
                    line.push_str(" (optional)");
                } else {
                    line.push_str(&format!(" = {default}"));
                }
            } else if required.contains(&name.as_str()) {
                line.push_str(" (required)");
            }
            if let Some(desc) = prop.get("description").and_then(|d| d.as_str()) {
                line.push_str(&format!("  — {}", desc.replace('\n', " ")));
            }
            line
        })
        .collect()
}

fn type_name(prop: &serde_json::Value, root: &schemars::Schema) -> String {
    if let Some(reference) = prop.get("$ref").and_then(|r| r.as_str()) {
        let name = reference.rsplit('/').next().unwrap_or(reference);
        let def = root
            .get("$defs")
            .and_then(|d| d.get(name))
            .and_then(|d| d.get("enum"))
            .and_then(|e| e.as_array());
        if let Some(values) = def {
            let names: Vec<String> = values
                .iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect();
            return names.join("|");
        }
        return name.to_string();
    }
    if let Some(values) = prop.get("enum").and_then(|e| e.as_array()) {
        return values
            .iter()
            .filter_map(|v| v.as_str().map(String::from))
            .collect::<Vec<_>>()
            .join("|");
    }
    match prop.get("type") {
        Some(serde_json::Value::String(t)) => t.clone(),
        Some(serde_json::Value::Array(ts)) => ts
            .iter()
            .filter_map(|t| t.as_str())
            .filter(|t| *t != "null")
            .collect::<Vec<_>>()
            .join("|"),
        _ => "value".into(),
    }
}
