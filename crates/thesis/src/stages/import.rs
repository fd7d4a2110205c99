//! `model.import`: a model trained elsewhere (a safetensors file or a PyTorch state dict) as
//! the `model` + `config` artifacts `rnn.train` writes, so `rnn.prune`, `pipe eval` and every
//! downstream stage take it. The weight file is a project file: its content is in the key.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::Body;
use crate::model::{
    anchored_pattern, defaults, CellEngine, EmbeddingInit, ModelConfig, Readout, Variant,
    WeightFormat,
};
use pipe_engine::stage::{InputSpec, OutputDecl, Plugin, StageContext, StageError};

/// The plugin; its computation is `pipe-thesis-torch`'s (`None` in a binary without libtorch).
pub struct Import(pub Option<Body<ImportParams>>);

/// The model's shape is declared (defaults: the thesis's), and every tensor is checked against it.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ImportParams {
    /// The weight file, relative to the pipeline file; its content is part of the key.
    pub file: String,
    /// auto (from the first bytes) | safetensors | pytorch (torch.save, zip or legacy).
    #[serde(default)]
    pub format: WeightFormat,
    /// rnn_tanh | rnn_relu | lstm | gru
    pub variant: Variant,
    #[serde(default = "defaults::layers")]
    pub layers: i64,
    #[serde(default = "defaults::width")]
    pub hidden: i64,
    #[serde(default = "defaults::width")]
    pub embedding: i64,
    #[serde(default = "default_vocabulary")]
    pub vocabulary: i64,
    #[serde(default = "default_classes")]
    pub classes: i64,
    /// last_padded (the thesis's code) or true_length.
    #[serde(default)]
    pub readout: Readout,
    /// loop | fused; the default picks the faster on CPU for the variant.
    #[serde(default)]
    pub engine: Option<CellEngine>,
    /// Regex (matching a whole name in the file) → pipe name, `$1` for a group:
    /// `'recurrent\.recurrent_layers\.(\d+)\.weight_ih': 'rnn.weight_ih_l$1'`. A name may match
    /// at most one rule; names no rule matches are kept.
    #[serde(default)]
    pub rename: BTreeMap<String, String>,
    /// Regexes of tensors in the file to leave out (matched against the file's names).
    #[serde(default)]
    pub drop: Vec<String>,
}

fn default_vocabulary() -> i64 {
    128
}

fn default_classes() -> i64 {
    2
}

impl ImportParams {
    pub fn model_config(&self) -> ModelConfig {
        ModelConfig {
            variant: self.variant,
            vocab_size: self.vocabulary,
            embedding_dim: self.embedding,
            hidden_size: self.hidden,
            num_layers: self.layers,
            num_classes: self.classes,
            readout: self.readout,
            engine: self
                .engine
                .unwrap_or_else(|| CellEngine::fastest_on_cpu(self.variant)),
            embedding_init: EmbeddingInit::default(),
        }
    }
}

impl Plugin for Import {
    type Params = ImportParams;
    const KIND: &'static str = "model.import";
    const VERSION: u32 = 1;
    const HEADLINE_METRICS: &'static [&'static str] = &["tensors", "parameters"];
    const ABOUT: &'static str =
        "Import a model trained elsewhere (safetensors or a PyTorch .pt/.pth state dict)";

    fn inputs(&self) -> InputSpec {
        InputSpec::Named(Vec::new())
    }

    fn outputs(&self, _: &ImportParams) -> Vec<OutputDecl> {
        vec![
            OutputDecl::new("model", "model.safetensors"),
            OutputDecl::new("config", "config.json"),
        ]
    }

    fn files(&self, params: &ImportParams) -> Vec<String> {
        vec![params.file.clone()]
    }

    fn check(&self, p: &ImportParams) -> Result<(), (String, String)> {
        let positive = [
            ("layers", p.layers),
            ("hidden", p.hidden),
            ("embedding", p.embedding),
            ("vocabulary", p.vocabulary),
            ("classes", p.classes),
        ];
        for (name, value) in positive {
            if value < 1 {
                return Err((name.into(), format!("must be at least 1, got {value}")));
            }
        }
        // Bad patterns fail at planning time, not after the run started.
        for pattern in p.rename.keys().chain(&p.drop) {
            anchored_pattern(pattern).map_err(|e| ("rename".to_string(), e.to_string()))?;
        }
        Ok(())
    }

    fn run(&self, params: ImportParams, ctx: &mut StageContext<'_>) -> Result<(), StageError> {
        super::compute(Self::KIND, self.0, params, ctx)
    }

    fn runnable(&self) -> bool {
        self.0.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_rename_or_drop_pattern_is_refused_when_planning() {
        let params = |with: serde_json::Value| -> ImportParams {
            let mut base = serde_json::json!({"file": "w.pt", "variant": "gru"});
            if let (Some(base), Some(extra)) = (base.as_object_mut(), with.as_object()) {
                base.extend(extra.clone());
            }
            serde_json::from_value(base).expect("params")
        };
        let plugin = Import(None);
        assert!(plugin.check(&params(serde_json::json!({}))).is_ok());
        for bad in [
            serde_json::json!({"rename": {"(": "x"}}),
            serde_json::json!({"drop": ["("]}),
        ] {
            let (field, message) = plugin.check(&params(bad)).expect_err("a bad pattern");
            assert_eq!(field, "rename");
            assert!(
                message.starts_with("rename rule `(`: not a regular expression"),
                "{message}"
            );
        }
    }
}
