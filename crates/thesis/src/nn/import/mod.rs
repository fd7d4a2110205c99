//! Models trained elsewhere: reads a weight file (safetensors, or a PyTorch `torch.save` state
//! dict in the zip or the legacy format), renames its tensors to `pipe`'s names with regex rules,
//! checks every tensor against the declared [`ModelConfig`] and builds the [`RecurrentModel`]
//! that `rnn.train` would have written.
//!
//! Every mismatch is reported at once, each naming the tensor (and its name in the file) with
//! the shape the configuration expects, so one pass over the rules fixes the file.

pub mod pickle;
pub mod torch_file;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use regex::Regex;
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

use super::tensors::read_safetensors_map;
use super::{ModelConfig, NnError, RecurrentModel};
pub use torch_file::{read_torch_file, TorchFileError};

/// The container format of a weight file.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum WeightFormat {
    /// From the first bytes: a zip or pickle is PyTorch, anything else safetensors.
    #[default]
    Auto,
    Safetensors,
    /// `torch.save` of a state dict, zip or legacy format (`.pt`, `.pth`, `.bin`).
    Pytorch,
}

/// What is wrong with one tensor.
#[derive(Debug, Clone, PartialEq)]
pub enum TensorProblem {
    Missing {
        name: String,
        expected: Vec<i64>,
    },
    WrongShape {
        name: String,
        source: String,
        found: Vec<i64>,
        expected: Vec<i64>,
    },
    NotFloat {
        name: String,
        source: String,
        kind: String,
    },
    NotBinary {
        name: String,
        source: String,
    },
    Extra {
        name: String,
        source: String,
    },
}

fn from(name: &str, source: &str) -> String {
    if name == source {
        String::new()
    } else {
        format!(" (`{source}` in the file)")
    }
}

impl fmt::Display for TensorProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TensorProblem::Missing { name, expected } => {
                write!(f, "missing tensor `{name}` (expected shape {expected:?})")
            }
            TensorProblem::WrongShape {
                name,
                source,
                found,
                expected,
            } => write!(
                f,
                "tensor `{name}`{} has shape {found:?}, expected {expected:?}",
                from(name, source)
            ),
            TensorProblem::NotFloat { name, source, kind } => write!(
                f,
                "tensor `{name}`{} has dtype {kind}, a model tensor must be floating point",
                from(name, source)
            ),
            TensorProblem::NotBinary { name, source } => write!(
                f,
                "mask `{name}`{} holds values other than 0 and 1",
                from(name, source)
            ),
            TensorProblem::Extra { name, source } => write!(
                f,
                "unexpected tensor `{name}`{} (the model has no such parameter or mask)",
                from(name, source)
            ),
        }
    }
}

/// Why a model could not be imported. Each message is complete; print it with `{}`.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error(transparent)]
    Torch(#[from] TorchFileError),
    #[error(transparent)]
    Model(#[from] NnError),
    #[error("rename rule `{pattern}`: not a regular expression ({reason})")]
    BadPattern { pattern: String, reason: String },
    #[error(
        "{path}: tensor `{source_name}` matches two rename rules, `{first}` and `{second}`; make \
         the patterns exclusive"
    )]
    AmbiguousRename {
        path: PathBuf,
        source_name: String,
        first: String,
        second: String,
    },
    #[error("{path}: tensors `{first}` and `{second}` are both renamed to `{target}`")]
    RenameCollision {
        path: PathBuf,
        first: String,
        second: String,
        target: String,
    },
    #[error(
        "{path}: the tensors do not fit the declared model ({config}):\n  {}\nfix the model \
         parameters, or map the file's names with `rename:` (regex → pipe name) and leave \
         tensors out with `drop:`",
        problems.iter().map(|p| p.to_string()).collect::<Vec<_>>().join("\n  ")
    )]
    Mismatch {
        path: PathBuf,
        config: String,
        problems: Vec<TensorProblem>,
    },
}

/// How the file's tensor names become `pipe`'s: `rename` maps a regex (matching the whole name)
/// to a replacement (`$1` for a group); `drop` lists regexes of tensors to leave out. Names no
/// rule matches are kept.
#[derive(Debug, Clone, Default)]
pub struct NameRules {
    rename: Vec<(String, Regex, String)>,
    drop: Vec<Regex>,
}

fn anchored(pattern: &str) -> Result<Regex, ImportError> {
    Regex::new(&format!("^(?:{pattern})$")).map_err(|e| ImportError::BadPattern {
        pattern: pattern.to_string(),
        reason: e.to_string(),
    })
}

impl NameRules {
    pub fn new(rename: &BTreeMap<String, String>, drop: &[String]) -> Result<Self, ImportError> {
        Ok(NameRules {
            rename: rename
                .iter()
                .map(|(pattern, to)| Ok((pattern.clone(), anchored(pattern)?, to.clone())))
                .collect::<Result<_, ImportError>>()?,
            drop: drop.iter().map(|p| anchored(p)).collect::<Result<_, _>>()?,
        })
    }

    /// `pipe`'s name for `name`, or `None` when it is dropped.
    fn apply(&self, path: &Path, name: &str) -> Result<Option<String>, ImportError> {
        if self.drop.iter().any(|r| r.is_match(name)) {
            return Ok(None);
        }
        let mut matching = self.rename.iter().filter(|(_, r, _)| r.is_match(name));
        let Some((first, regex, to)) = matching.next() else {
            return Ok(Some(name.to_string()));
        };
        if let Some((second, _, _)) = matching.next() {
            return Err(ImportError::AmbiguousRename {
                path: path.to_path_buf(),
                source_name: name.to_string(),
                first: first.clone(),
                second: second.clone(),
            });
        }
        Ok(Some(regex.replace(name, to.as_str()).into_owned()))
    }
}

/// Reads every tensor of a weight file under its own name.
pub fn read_weights(
    path: &Path,
    format: WeightFormat,
) -> Result<BTreeMap<String, Tensor>, ImportError> {
    let format = match format {
        WeightFormat::Auto => detect(path)?,
        other => other,
    };
    Ok(match format {
        WeightFormat::Pytorch => read_torch_file(path)?,
        _ => read_safetensors_map(path)?,
    })
}

/// A zip archive or a pickle (protocol ≥ 2 starts with 0x80) is PyTorch; otherwise safetensors
/// (an 8-byte header length, then JSON).
fn detect(path: &Path) -> Result<WeightFormat, ImportError> {
    let mut head = [0u8; 4];
    let read = std::fs::File::open(path)
        .and_then(|mut f| std::io::Read::read(&mut f, &mut head))
        .map_err(|source| NnError::Io {
            path: path.to_path_buf(),
            source,
        })?;
    Ok(if head[..read].starts_with(b"PK") || head[0] == 0x80 {
        WeightFormat::Pytorch
    } else {
        WeightFormat::Safetensors
    })
}

/// A short description of a configuration for messages.
fn describe(config: &ModelConfig) -> String {
    format!(
        "{}, {} layers, hidden {}, embedding {}, vocabulary {}, {} classes",
        config.variant.name(),
        config.num_layers,
        config.hidden_size,
        config.embedding_dim,
        config.vocab_size,
        config.num_classes
    )
}

/// Renames the file's tensors and checks them against `config`: every parameter present with its
/// shape (masks may be absent: all ones), floating point, nothing else. Floating tensors of
/// another precision are converted to f32 (the model's dtype).
pub fn renamed_and_checked(
    path: &Path,
    stored: BTreeMap<String, Tensor>,
    rules: &NameRules,
    config: &ModelConfig,
) -> Result<BTreeMap<String, Tensor>, ImportError> {
    // pipe name → (file name, tensor)
    let mut renamed: BTreeMap<String, (String, Tensor)> = BTreeMap::new();
    for (source, tensor) in stored {
        let Some(target) = rules.apply(path, &source)? else {
            continue;
        };
        if let Some((first, _)) = renamed.get(&target) {
            return Err(ImportError::RenameCollision {
                path: path.to_path_buf(),
                first: first.clone(),
                second: source,
                target,
            });
        }
        renamed.insert(target, (source, tensor));
    }
    let mut problems = Vec::new();
    let mut checked = BTreeMap::new();
    for (name, expected) in config.tensor_shapes() {
        let Some((source, tensor)) = renamed.remove(&name) else {
            if !name.starts_with("mask.") {
                problems.push(TensorProblem::Missing { name, expected });
            }
            continue;
        };
        if tensor.size() != expected {
            problems.push(TensorProblem::WrongShape {
                name,
                source,
                found: tensor.size(),
                expected,
            });
        } else if name.starts_with("mask.") {
            // Masks may be stored as bool or integers (the thesis's are bool); only 0/1 counts.
            let mask = tensor.f_to_kind(Kind::Float).map_err(NnError::from)?;
            let binary = mask
                .f_eq(0.0)
                .and_then(|zero| zero.f_logical_or(&mask.f_eq(1.0)?))
                .and_then(|ok| ok.f_all())
                .and_then(|all| all.f_int64_value(&[]))
                .map_err(NnError::from)?;
            if binary == 1 {
                checked.insert(name, mask);
            } else {
                problems.push(TensorProblem::NotBinary { name, source });
            }
        } else if !tensor.is_floating_point() {
            problems.push(TensorProblem::NotFloat {
                name,
                source,
                kind: format!("{:?}", tensor.kind()),
            });
        } else {
            checked.insert(name, tensor.f_to_kind(Kind::Float).map_err(NnError::from)?);
        }
    }
    for (name, (source, _)) in renamed {
        problems.push(TensorProblem::Extra { name, source });
    }
    if problems.is_empty() {
        Ok(checked)
    } else {
        Err(ImportError::Mismatch {
            path: path.to_path_buf(),
            config: describe(config),
            problems,
        })
    }
}

/// The model a weight file holds, as `config` declares it.
pub fn import_model(
    path: &Path,
    format: WeightFormat,
    rules: &NameRules,
    config: ModelConfig,
) -> Result<RecurrentModel, ImportError> {
    let stored = read_weights(path, format)?;
    let checked = renamed_and_checked(path, stored, rules, &config)?;
    Ok(RecurrentModel::from_tensors(config, checked, path)?)
}
