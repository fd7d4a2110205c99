//! The recurrent model as configuration: its variants, shapes, readout and tensor names, which
//! plugins declare and keys hash without libtorch (`pipe-thesis-torch` computes with them).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The four recurrent variants of the thesis.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Variant {
    RnnTanh,
    RnnRelu,
    Lstm,
    Gru,
}

impl Variant {
    /// All variants, in the thesis's order.
    pub const ALL: [Variant; 4] = [
        Variant::RnnTanh,
        Variant::RnnRelu,
        Variant::Lstm,
        Variant::Gru,
    ];

    /// Number of gate blocks stacked in the weight matrices (rows = gates · hidden).
    pub fn gate_count(self) -> i64 {
        match self {
            Variant::RnnTanh | Variant::RnnRelu => 1,
            Variant::Lstm => 4,
            Variant::Gru => 3,
        }
    }

    /// The snake_case name used in configs and file names.
    pub fn name(self) -> &'static str {
        match self {
            Variant::RnnTanh => "rnn_tanh",
            Variant::RnnRelu => "rnn_relu",
            Variant::Lstm => "lstm",
            Variant::Gru => "gru",
        }
    }
}

impl fmt::Display for Variant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Variant {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Variant::ALL
            .into_iter()
            .find(|v| v.name() == s)
            .ok_or_else(|| {
                format!("unknown variant `{s}` (expected rnn_tanh, rnn_relu, lstm or gru)")
            })
    }
}

/// How a recurrent stack is executed. Both compute the same mathematics on masked weights; they
/// differ in the last bits of the floats, so the choice is part of a run's configuration.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum CellEngine {
    /// Hand-written cells: input projection at once, then a time loop (this module).
    #[default]
    Loop,
    /// libtorch's multi-layer kernels (`Tensor::lstm` / `gru` / `rnn_tanh` / `rnn_relu`) fed with
    /// the masked weights, so masking stays exact while the time loop runs in C++.
    Fused,
}

impl CellEngine {
    /// The faster engine per variant on one CPU thread (measured with `examples/epoch_bench`):
    /// libtorch's LSTM runs through oneDNN and is about 3× faster than the loop; for the plain
    /// RNNs the loop (biases folded into the projection) is about 20 % faster; GRU is a tie.
    pub fn fastest_on_cpu(variant: Variant) -> CellEngine {
        match variant {
            Variant::Lstm => CellEngine::Fused,
            Variant::RnnTanh | Variant::RnnRelu | Variant::Gru => CellEngine::Loop,
        }
    }
}

/// Which time step the classifier reads.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Readout {
    /// The thesis code: the output at the last time step of the right-padded batch (padding
    /// tokens pass through the embedding and the recurrence).
    #[default]
    LastPadded,
    /// The output at each sequence's own last position.
    TrueLength,
}

/// How the embedding table is initialised (the recurrent and head parameters are always
/// U(−1/√H, 1/√H); for the head that is also PyTorch's `Linear` default since its fan-in is H).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum EmbeddingInit {
    /// N(0, 1), PyTorch's `nn.Embedding` default.
    #[default]
    Normal,
    /// U(−1/√H, 1/√H) like every other parameter.
    Uniform,
}

/// Shape and behaviour of a [`RecurrentModel`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    pub variant: Variant,
    #[serde(default = "default_vocab_size")]
    pub vocab_size: i64,
    pub embedding_dim: i64,
    pub hidden_size: i64,
    pub num_layers: i64,
    #[serde(default = "default_num_classes")]
    pub num_classes: i64,
    #[serde(default)]
    pub readout: Readout,
    #[serde(default)]
    pub engine: CellEngine,
    #[serde(default)]
    pub embedding_init: EmbeddingInit,
}

/// The vocabulary of the thesis: the 128 ASCII codes.
pub fn default_vocab_size() -> i64 {
    128
}

/// Valid or invalid.
pub fn default_num_classes() -> i64 {
    2
}

impl ModelConfig {
    /// The thesis's configuration: E = 50, H = 50, 3 layers, 128 ASCII codes, 2 classes.
    pub fn thesis(variant: Variant) -> Self {
        ModelConfig {
            variant,
            vocab_size: default_vocab_size(),
            embedding_dim: 50,
            hidden_size: 50,
            num_layers: 3,
            num_classes: default_num_classes(),
            readout: Readout::default(),
            engine: CellEngine::default(),
            embedding_init: EmbeddingInit::default(),
        }
    }

    /// Every size is at least 1; the error says which is not.
    pub fn validate(&self) -> Result<(), String> {
        let positive = [
            ("vocab_size", self.vocab_size),
            ("embedding_dim", self.embedding_dim),
            ("hidden_size", self.hidden_size),
            ("num_layers", self.num_layers),
            ("num_classes", self.num_classes),
        ];
        for (field, value) in positive {
            if value < 1 {
                return Err(format!("{field} must be at least 1, got {value}"));
            }
        }
        Ok(())
    }

    /// Every tensor of the model with its shape, parameters first (in initialisation order),
    /// then masks.
    pub fn tensor_shapes(&self) -> Vec<(String, Vec<i64>)> {
        let gates = self.variant.gate_count() * self.hidden_size;
        let mut shapes = vec![(
            "embedding.weight".to_string(),
            vec![self.vocab_size, self.embedding_dim],
        )];
        for layer in 0..self.num_layers {
            let input = self.layer_input_size(layer);
            shapes.push((param_name("weight_ih", layer), vec![gates, input]));
            shapes.push((
                param_name("weight_hh", layer),
                vec![gates, self.hidden_size],
            ));
            shapes.push((param_name("bias_ih", layer), vec![gates]));
            shapes.push((param_name("bias_hh", layer), vec![gates]));
        }
        shapes.push((
            "head.weight".to_string(),
            vec![self.num_classes, self.hidden_size],
        ));
        shapes.push(("head.bias".to_string(), vec![self.num_classes]));
        for layer in 0..self.num_layers {
            let input = self.layer_input_size(layer);
            shapes.push((
                mask_name(WeightKind::InputToHidden, layer),
                vec![gates, input],
            ));
            shapes.push((
                mask_name(WeightKind::HiddenToHidden, layer),
                vec![gates, self.hidden_size],
            ));
        }
        shapes
    }

    /// The input width of recurrent layer `layer` (the embedding's for the first).
    pub fn layer_input_size(&self, layer: i64) -> i64 {
        if layer == 0 {
            self.embedding_dim
        } else {
            self.hidden_size
        }
    }
}

/// The two maskable weight matrices of a recurrent layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WeightKind {
    /// `weight_ih_l{k}`
    InputToHidden,
    /// `weight_hh_l{k}`
    HiddenToHidden,
}

impl WeightKind {
    fn stem(self) -> &'static str {
        match self {
            WeightKind::InputToHidden => "weight_ih",
            WeightKind::HiddenToHidden => "weight_hh",
        }
    }
}

/// `rnn.{stem}_l{layer}`, PyTorch's name of a recurrent layer's parameter.
pub fn param_name(stem: &str, layer: i64) -> String {
    format!("rnn.{stem}_l{layer}")
}

/// `mask.rnn.weight_ih_l{k}` / `mask.rnn.weight_hh_l{k}`
pub fn mask_name(kind: WeightKind, layer: i64) -> String {
    format!("mask.{}", param_name(kind.stem(), layer))
}
