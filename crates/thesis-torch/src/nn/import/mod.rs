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
use tch::{Kind, Tensor};

use super::tensors::read_safetensors_map;
use super::{ModelConfig, NnError, RecurrentModel};
pub use torch_file::{read_torch_file, TorchFileError};

pub use pipe_thesis::model::WeightFormat;

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
    #[error(transparent)]
    BadPattern(#[from] pipe_thesis::model::BadPattern),
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
    Ok(pipe_thesis::model::anchored_pattern(pattern)?)
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

/// Safetensors when the first 8 bytes are a header length that fits the file and the header
/// opens with `{` (checked first: the length's low byte can be 0x80, like a pickle's PROTO); a
/// zip archive or a pickle (0x80) is PyTorch; anything else is read as safetensors to get its
/// error message.
fn detect(path: &Path) -> Result<WeightFormat, ImportError> {
    let io = |source| NnError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut file = std::fs::File::open(path).map_err(io)?;
    let size = file.metadata().map_err(io)?.len();
    let mut head = Vec::with_capacity(9);
    std::io::Read::read_to_end(&mut std::io::Read::take(&mut file, 9), &mut head).map_err(io)?;
    if head.len() == 9 {
        let header = u64::from_le_bytes(head[..8].try_into().unwrap_or_default());
        if head[8] == b'{' && header <= size - 8 {
            return Ok(WeightFormat::Safetensors);
        }
    }
    Ok(if head.starts_with(b"PK") || head.first() == Some(&0x80) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::{CellEngine, EmbeddingInit, Readout, Variant};

    fn fixture(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("src/nn/import/fixtures")
            .join(name)
    }

    /// The thesis's weights as the repository ships them (`data/thesis/weights`).
    fn thesis_weights(file: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../data/thesis/weights")
            .join(file)
    }

    fn tiny_config() -> ModelConfig {
        ModelConfig {
            variant: Variant::RnnTanh,
            vocab_size: 128,
            embedding_dim: 2,
            hidden_size: 3,
            num_layers: 1,
            num_classes: 2,
            readout: Readout::LastPadded,
            engine: CellEngine::Loop,
            embedding_init: EmbeddingInit::Normal,
        }
    }

    /// The names `nn.RNN`-style files use → pipe's, for the thesis's own `.pt` layout.
    fn thesis_rules() -> NameRules {
        let layer = r"recurrent\.recurrent_layers\.(\d+)";
        let rename: BTreeMap<String, String> = [
            (format!(r"{layer}\.weight_ih"), "rnn.weight_ih_l$1"),
            (format!(r"{layer}\.weight_hh"), "rnn.weight_hh_l$1"),
            (format!(r"{layer}\.bias_ih"), "rnn.bias_ih_l$1"),
            (format!(r"{layer}\.bias_hh"), "rnn.bias_hh_l$1"),
            (format!(r"{layer}\.mask_i2h"), "mask.rnn.weight_ih_l$1"),
            (format!(r"{layer}\.mask_h2h"), "mask.rnn.weight_hh_l$1"),
            (r"out\.(weight|bias)".to_string(), "head.$1"),
        ]
        .into_iter()
        .map(|(from, to)| (from, to.to_string()))
        .collect();
        NameRules::new(&rename, &[]).unwrap()
    }

    fn values(tensor: &Tensor) -> Vec<f32> {
        Vec::try_from(tensor.reshape([-1])).unwrap()
    }

    /// The value the fixture script gives element `i` of its `k`-th tensor.
    fn expected(k: usize, n: usize) -> Vec<f32> {
        (0..n)
            .map(|i| ((i + 1) as f64 / 100.0 * (k + 1) as f64) as f32)
            .collect()
    }

    #[test]
    fn zip_state_dict_with_views_shared_storage_and_float64() {
        let stored = read_weights(&fixture("tiny_rnn_tanh.pt"), WeightFormat::Auto).unwrap();
        assert_eq!(stored["optimizer.step"].kind(), Kind::Int64);
        assert_eq!(stored["head.bias"].kind(), Kind::Double);
        let rules = NameRules::new(&BTreeMap::new(), &[r"optimizer\..*".to_string()]).unwrap();
        let path = fixture("tiny_rnn_tanh.pt");
        let model = import_model(&path, WeightFormat::Pytorch, &rules, tiny_config()).unwrap();
        let named: BTreeMap<String, Tensor> = model.named_parameters().into_iter().collect();
        let order = [
            ("embedding.weight", 256),
            ("rnn.weight_ih_l0", 6),
            ("rnn.weight_hh_l0", 9),
            ("rnn.bias_ih_l0", 3),
            ("rnn.bias_hh_l0", 3),
            ("head.weight", 6),
            ("head.bias", 2),
        ];
        for (k, (name, n)) in order.into_iter().enumerate() {
            assert_eq!(values(&named[name]), expected(k, n), "{name}");
        }
        assert_eq!(named["rnn.weight_hh_l0"].size(), [3, 3]);
        // Masks absent from the file are all ones.
        for (name, mask) in model.named_masks() {
            assert!(values(&mask).iter().all(|&v| v == 1.0), "{name}");
        }
    }

    #[test]
    fn every_mismatch_is_named_with_its_expected_shape() {
        let path = fixture("tiny_rnn_tanh.pt");
        let stored = read_weights(&path, WeightFormat::Pytorch).unwrap();
        let mut config = tiny_config();
        config.hidden_size = 4;
        let rules = NameRules::new(
            &[(r"head\.bias".to_string(), "head.offset".to_string())].into(),
            &[],
        )
        .unwrap();
        let error = renamed_and_checked(&path, stored, &rules, &config).unwrap_err();
        let ImportError::Mismatch { problems, .. } = &error else {
            panic!("{error}")
        };
        assert!(problems.contains(&TensorProblem::WrongShape {
            name: "rnn.weight_hh_l0".into(),
            source: "rnn.weight_hh_l0".into(),
            found: vec![3, 3],
            expected: vec![4, 4],
        }));
        assert!(problems.contains(&TensorProblem::Missing {
            name: "head.bias".into(),
            expected: vec![2],
        }));
        assert!(problems.contains(&TensorProblem::Extra {
            name: "head.offset".into(),
            source: "head.bias".into(),
        }));
        assert!(problems.contains(&TensorProblem::Extra {
            name: "optimizer.step".into(),
            source: "optimizer.step".into(),
        }));
        let message = error.to_string();
        assert!(
            message.contains("missing tensor `head.bias` (expected shape [2])"),
            "{message}"
        );
        assert!(
            message.contains("unexpected tensor `head.offset` (`head.bias` in the file)"),
            "{message}"
        );
        assert!(
            message
                .contains("(rnn_tanh, 1 layers, hidden 4, embedding 2, vocabulary 128, 2 classes)"),
            "{message}"
        );
    }

    #[test]
    fn rename_rules_must_be_unambiguous_and_valid() {
        let path = fixture("tiny_rnn_tanh.pt");
        let rules = NameRules::new(
            &[
                (r"head\..*".to_string(), "a".to_string()),
                (r".*\.bias".to_string(), "b".to_string()),
            ]
            .into(),
            &[],
        )
        .unwrap();
        let stored = read_weights(&path, WeightFormat::Pytorch).unwrap();
        let error = renamed_and_checked(&path, stored, &rules, &tiny_config()).unwrap_err();
        assert!(
            matches!(error, ImportError::AmbiguousRename { ref source_name, .. }
            if source_name == "head.bias")
        );
        let collide = NameRules::new(
            &[(r"rnn\.bias_..(_l0)".to_string(), "x".to_string())].into(),
            &[],
        )
        .unwrap();
        let stored = read_weights(&path, WeightFormat::Pytorch).unwrap();
        let error = renamed_and_checked(&path, stored, &collide, &tiny_config()).unwrap_err();
        assert!(matches!(error, ImportError::RenameCollision { ref target, .. } if target == "x"));
        let bad = NameRules::new(&[("(".to_string(), "x".to_string())].into(), &[]).unwrap_err();
        assert!(bad.to_string().starts_with("rename rule `(`"), "{bad}");
    }

    #[test]
    fn not_a_weight_file_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notes.pt");
        std::fs::write(&path, [0x80, 2, b'K', 7, b'.']).unwrap();
        let error = read_weights(&path, WeightFormat::Auto).unwrap_err();
        assert!(
            error.to_string().contains("not a torch.save file"),
            "{error}"
        );
        std::fs::write(&path, b"PK\x03\x04garbage").unwrap();
        let error = read_weights(&path, WeightFormat::Pytorch).unwrap_err();
        assert!(error.to_string().contains("not a zip archive"), "{error}");
    }

    /// The thesis's legacy `.pt` files and their safetensors copies (made with PyTorch) hold the
    /// same values, bit for bit, and the `.pt` masks are all ones.
    #[test]
    fn legacy_thesis_files_match_their_safetensors_copies() {
        // The safetensors copies already carry pipe's (= nn.RNN's) names.
        let nn_rnn = NameRules::default();
        for variant in [
            Variant::RnnTanh,
            Variant::RnnRelu,
            Variant::Lstm,
            Variant::Gru,
        ] {
            let config = ModelConfig::thesis(variant);
            let pt = thesis_weights(&format!("{}.pt", variant.name()));
            let st = thesis_weights(&format!("{}.safetensors", variant.name()));
            let legacy = read_weights(&pt, WeightFormat::Auto).unwrap();
            assert_eq!(legacy.len(), 1 + 6 * 3 + 2, "{}", variant.name());
            let from_pt = renamed_and_checked(&pt, legacy, &thesis_rules(), &config).unwrap();
            let safetensors = read_weights(&st, WeightFormat::Auto).unwrap();
            let from_st = renamed_and_checked(&st, safetensors, &nn_rnn, &config).unwrap();
            for (name, tensor) in &from_pt {
                match from_st.get(name) {
                    Some(other) => assert!(tensor.equal(other), "{}: {name}", variant.name()),
                    None => assert!(values(tensor).iter().all(|&v| v == 1.0), "{name}"),
                }
            }
            assert_eq!(from_pt.len(), from_st.len() + 6);
        }
    }
}
