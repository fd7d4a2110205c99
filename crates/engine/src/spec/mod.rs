//! The pipeline file: its serde schema, parsing with positions, and `${...}` interpolation.
//!
//! This layer only reads and checks the shape of the file. Expanding `foreach`, checking plugins,
//! parameters and inputs is the plan's job (`crate::plan`), which reports through the same
//! [`Diagnostic`] type so every problem of a file is shown at once, each with file:line:column.

mod interpolate;
mod location;
mod overrides;
mod resources;

use std::fmt;
use std::path::{Path, PathBuf};

use indexmap::IndexMap;
use serde::Deserialize;

pub use interpolate::{interpolate, scalar_text, substitute, InterpolationError, Scope};
pub use location::{DuplicateKey, LocationIndex, Pos};
pub use resources::{check_cluster_settings, Resources, SlurmSettings};

/// A parsed pipeline file, before expansion.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineSpec {
    /// Seed handed to every stage (a stage may override it).
    #[serde(default)]
    pub seed: u64,
    /// Values available as `${vars.NAME}` in `with`, `inputs` and `foreach`.
    #[serde(default)]
    pub vars: IndexMap<String, serde_yaml::Value>,
    #[serde(default)]
    pub settings: Settings,
    pub stages: IndexMap<String, StageSpec>,
}

/// Pipeline-wide settings.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Default for `--jobs` (parallel thread slots).
    pub jobs: Option<usize>,
    /// Where instances run: `local` (threads of this process) or `slurm` (cluster jobs).
    #[serde(default)]
    pub executor: ExecutorKind,
    /// How the SLURM executor submits (used only with `executor: slurm`).
    pub slurm: Option<SlurmSettings>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExecutorKind {
    #[default]
    Local,
    Slurm,
}

/// One `stages:` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StageSpec {
    /// Plugin kind, e.g. `cmd` or `rnn.train`.
    pub uses: String,
    /// Plugin parameters (typed and checked by the plugin).
    #[serde(default)]
    pub with: serde_yaml::Mapping,
    /// Named inputs: `STAGE.OUTPUT`, `STAGE[v].OUTPUT` or the fan-in `STAGE[*].OUTPUT`.
    #[serde(default)]
    pub inputs: IndexMap<String, String>,
    /// Ordering-only dependencies: `STAGE` or `STAGE[v]`.
    #[serde(default)]
    pub needs: Vec<String>,
    /// Matrix: key → list of values (or `${vars.x}` naming a list); the cartesian product.
    #[serde(default)]
    pub foreach: IndexMap<String, serde_yaml::Value>,
    /// Overrides the pipeline seed for this stage.
    pub seed: Option<u64>,
    /// What one instance asks a cluster for (SLURM executor); never part of the key.
    pub resources: Option<Resources>,
}

/// A parsed file with what error reporting needs.
#[derive(Debug)]
pub struct SourceFile {
    pub path: PathBuf,
    pub spec: PipelineSpec,
    /// The file's text, where diagnostics find their lines and columns.
    text: String,
    /// Built from `text` at the first diagnostic after parsing, not held for the whole run: at
    /// 100,000 instances it was 9 MB, and a valid file never needs it again.
    locations: std::sync::OnceLock<LocationIndex>,
    /// `-S` overrides applied to `spec`: (dotted path they set, their text).
    pub overrides: Vec<(String, String)>,
}

/// One problem in a pipeline file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub file: PathBuf,
    pub pos: Option<Pos>,
    pub message: String,
    pub help: Option<String>,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(pos) = self.pos {
            write!(f, ":{}:{}", pos.line, pos.col)?;
        }
        write!(f, ": {}", self.message)?;
        if let Some(help) = &self.help {
            write!(f, "\n  help: {help}")?;
        }
        Ok(())
    }
}

/// Every problem found in a pipeline file; nothing runs while there is one.
#[derive(Debug, thiserror::Error)]
pub struct SpecErrors(pub Vec<Diagnostic>);

impl fmt::Display for SpecErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "error: {d}")?;
        }
        let n = self.0.len();
        write!(
            f,
            "\n{n} error{} in the pipeline file; nothing was run",
            if n == 1 { "" } else { "s" }
        )
    }
}

impl SourceFile {
    /// Reads and parses a pipeline file.
    pub fn load(path: &Path) -> Result<Self, SpecErrors> {
        let bytes = std::fs::read(path).map_err(|e| {
            SpecErrors(vec![Diagnostic {
                file: path.to_path_buf(),
                pos: None,
                message: format!("cannot read the pipeline file: {e}"),
                help: Some("check the path given to `pipe`".into()),
            }])
        })?;
        let text = std::str::from_utf8(&bytes).map_err(|e| {
            let valid = String::from_utf8_lossy(&bytes[..e.valid_up_to()]);
            let line_start = valid.rfind('\n').map_or(0, |i| i + 1);
            let bad = bytes.get(e.valid_up_to()).copied().unwrap_or_default();
            SpecErrors(vec![Diagnostic {
                file: path.to_path_buf(),
                pos: Some(Pos {
                    line: valid.matches('\n').count() + 1,
                    col: valid[line_start..].chars().count() + 1,
                }),
                message: format!(
                    "the pipeline file is not valid UTF-8 (byte 0x{bad:02x} at offset {})",
                    e.valid_up_to()
                ),
                help: Some(
                    "save the file as UTF-8 (a Latin-1 or UTF-16 editor setting, or a stray binary byte, causes this)".into(),
                ),
            }])
        })?;
        Self::parse(path, text)
    }

    /// Parses pipeline text; `path` is only used in messages.
    pub fn parse(path: &Path, text: &str) -> Result<Self, SpecErrors> {
        let locations = LocationIndex::build(text);
        let duplicates = duplicate_key_errors(path, &locations);
        // A file that parsed to its end has its duplicates reported first: they are precise, and
        // serde_yaml would report only some of them (it keeps the last value in most maps).
        if !duplicates.is_empty() && locations.complete() {
            return Err(SpecErrors(duplicates));
        }
        let deserializer = serde_yaml::Deserializer::from_str(text);
        match serde_path_to_error::deserialize::<_, PipelineSpec>(deserializer) {
            Ok(_) if !duplicates.is_empty() => Err(SpecErrors(duplicates)),
            Ok(spec) => Ok(SourceFile {
                path: path.to_path_buf(),
                spec,
                text: text.to_string(),
                locations: std::sync::OnceLock::new(),
                overrides: Vec::new(),
            }),
            Err(err) => {
                let field = err.path().to_string();
                let inner = err.into_inner();
                let pos = inner
                    .location()
                    .map(|l| Pos {
                        line: l.line(),
                        col: l.column(),
                    })
                    .or_else(|| locations.value(&field))
                    // A problem of the whole document (empty file, no `stages`): its start.
                    .or(Some(Pos { line: 1, col: 1 }));
                let message = clean_serde_message(&inner.to_string());
                let help = help_for_shape_error(&field, &message);
                let message = if field.is_empty() || field == "." || field.contains('?') {
                    message
                } else {
                    format!("`{field}`: {message}")
                };
                Err(SpecErrors(vec![Diagnostic {
                    file: path.to_path_buf(),
                    pos,
                    message,
                    help,
                }]))
            }
        }
    }

    fn locations(&self) -> &LocationIndex {
        self.locations
            .get_or_init(|| LocationIndex::build(&self.text))
    }

    /// A diagnostic pointing at the key at `path` (or its value, or a parent).
    pub fn at_key(&self, path: &str, message: String, help: Option<String>) -> Diagnostic {
        if let Some(d) = self.in_override(path, &message, &help) {
            return d;
        }
        Diagnostic {
            file: self.path.clone(),
            pos: self
                .locations()
                .key(path)
                .or_else(|| self.locations().value(path)),
            message,
            help,
        }
    }

    /// A diagnostic pointing at the value at `path`.
    pub fn at_value(&self, path: &str, message: String, help: Option<String>) -> Diagnostic {
        if let Some(d) = self.in_override(path, &message, &help) {
            return d;
        }
        Diagnostic {
            file: self.path.clone(),
            pos: self.locations().value(path),
            message,
            help,
        }
    }
}

impl SourceFile {
    /// A problem at a path an override set is the override's, not the file's: it is named by
    /// its text instead of a line and column.
    fn in_override(&self, path: &str, message: &str, help: &Option<String>) -> Option<Diagnostic> {
        let (_, text) = self
            .overrides
            .iter()
            .find(|(set, _)| path == set || path.starts_with(&format!("{set}.")))?;
        Some(Diagnostic {
            file: self.path.clone(),
            pos: None,
            message: format!("in `-S {text}`: {message}"),
            help: help.clone(),
        })
    }
}

/// One diagnostic per key written twice in the same map, at the second, naming the first.
fn duplicate_key_errors(path: &Path, locations: &LocationIndex) -> Vec<Diagnostic> {
    locations
        .duplicates()
        .iter()
        .map(|d| {
            let first = format!(
                "the first is at line {}, column {}",
                d.first.line, d.first.col
            );
            let (message, help) = if d.parent.is_empty() {
                (
                    format!("duplicate top-level key `{}` ({first})", d.key),
                    "each of `seed`, `vars`, `settings` and `stages` may appear once; merge the two"
                        .to_string(),
                )
            } else {
                let parent = if d.parent.contains('\0') {
                    "a map".to_string()
                } else {
                    format!("`{}`", d.parent)
                };
                let help = if d.parent == "stages" {
                    "stage names must be unique: rename one of the two stages (YAML would keep only the last)"
                } else {
                    "a YAML map keeps one value per key: remove one of the two, or rename it"
                };
                (
                    format!("duplicate key `{}` in {parent} ({first})", d.key),
                    help.to_string(),
                )
            };
            Diagnostic {
                file: path.to_path_buf(),
                pos: Some(d.second),
                message,
                help: Some(help),
            }
        })
        .collect()
}

/// serde_yaml appends " at line L column C" itself; the diagnostic prints the position up front.
fn clean_serde_message(message: &str) -> String {
    match message.find(" at line ") {
        Some(cut) => message[..cut].to_string(),
        None => message.to_string(),
    }
}

fn help_for_shape_error(field: &str, message: &str) -> Option<String> {
    if message.contains("missing field `stages`") {
        return Some("a pipeline needs a `stages:` map of name → {uses, with, inputs}".into());
    }
    if message.starts_with("unknown field") {
        let known = match field.split('.').count() {
            1 | 0 => "seed, vars, settings, stages",
            _ if field.starts_with("settings.slurm") => resources::SLURM_KEYS,
            _ if field.starts_with("settings") => "jobs, executor, slurm",
            _ if field.contains(".resources") => resources::RESOURCE_KEYS,
            _ => "uses, with, inputs, needs, foreach, seed, resources",
        };
        return Some(format!("the keys allowed here are: {known}"));
    }
    None
}

/// The closest of `candidates` to `word`, if it is close enough to be a likely typo.
pub fn suggest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (strsim::damerau_levenshtein(word, c), c))
        .filter(|(d, c)| *d <= 2.max(c.len() / 3))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_minimal_pipeline() {
        let text = "stages:\n  a:\n    uses: cmd\n    with: {run: 'true', outputs: {}}\n";
        let file = SourceFile::parse(Path::new("p.yaml"), text).unwrap();
        assert_eq!(file.spec.stages["a"].uses, "cmd");
        assert_eq!(file.spec.seed, 0);
    }

    #[test]
    fn malformed_yaml_reports_line_and_column() {
        let text = "stages:\n  a:\n    uses: cmd\n   with: [\n";
        let err = SourceFile::parse(Path::new("p.yaml"), text).unwrap_err();
        let d = &err.0[0];
        assert!(d.pos.is_some(), "{d}");
        assert!(err.to_string().starts_with("error: p.yaml:"), "{err}");
    }

    #[test]
    fn unknown_stage_key_is_named_with_position() {
        let text = "stages:\n  a:\n    uses: cmd\n    wiht: {}\n";
        let err = SourceFile::parse(Path::new("p.yaml"), text).unwrap_err();
        let shown = err.to_string();
        assert!(shown.contains("p.yaml:4:"), "{shown}");
        assert!(shown.contains("unknown field `wiht`"), "{shown}");
    }

    #[test]
    fn duplicate_keys_anywhere_are_reported_at_the_second() {
        let text =
            "seed: 1\nstages:\n  a:\n    uses: cmd\n    with: {run: 'x', run: 'y'}\nseed: 2\n";
        let err = SourceFile::parse(Path::new("p.yaml"), text).unwrap_err();
        let shown = err.to_string();
        assert!(
            shown.contains("p.yaml:5:22: duplicate key `run` in `stages.a.with` (the first is at line 5, column 12)"),
            "{shown}"
        );
        assert!(
            shown.contains("p.yaml:6:1: duplicate top-level key `seed` (the first is at line 1"),
            "{shown}"
        );
        assert!(shown.contains("2 errors"), "{shown}");
    }

    #[test]
    fn a_document_level_problem_points_at_the_start() {
        for text in ["", "# only a comment\n", "seed: 1\n"] {
            let err = SourceFile::parse(Path::new("p.yaml"), text).unwrap_err();
            assert!(err.0[0].pos.is_some(), "{text:?}: {err}");
        }
    }

    #[test]
    fn non_utf8_is_reported_at_the_first_bad_byte() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.yaml");
        std::fs::write(&path, b"stages:\n  \xc3\xa9t\xe9: {}\n").unwrap();
        let err = SourceFile::load(&path).unwrap_err();
        let d = &err.0[0];
        assert_eq!(d.pos, Some(Pos { line: 2, col: 5 }), "{d}");
        assert!(
            d.message
                .starts_with("the pipeline file is not valid UTF-8"),
            "{d}"
        );
        assert!(d.message.contains("0xe9"), "{d}");
    }

    #[test]
    fn suggestions_find_close_names_only() {
        assert_eq!(
            suggest("rnn.trian", ["rnn.train", "cmd"]),
            Some("rnn.train")
        );
        assert_eq!(suggest("zzz", ["rnn.train", "cmd"]), None);
    }
}
