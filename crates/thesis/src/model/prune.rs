//! What magnitude pruning is asked to do (SPEC §3): which matrices, over which weights a
//! threshold is taken, how the levels retrain, and the rule for a "safe" level.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::config::WeightKind;

/// Which recurrent matrices are pruned (biases, embedding and head never are).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PruneTarget {
    /// `weight_ih_l*` and `weight_hh_l*`
    Both,
    /// `weight_ih_l*` only (the thesis's "i2h")
    Ih,
    /// `weight_hh_l*` only (the thesis's "h2h")
    Hh,
}

impl PruneTarget {
    pub fn kinds(self) -> &'static [WeightKind] {
        match self {
            PruneTarget::Both => &[WeightKind::InputToHidden, WeightKind::HiddenToHidden],
            PruneTarget::Ih => &[WeightKind::InputToHidden],
            PruneTarget::Hh => &[WeightKind::HiddenToHidden],
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            PruneTarget::Both => "both",
            PruneTarget::Ih => "ih",
            PruneTarget::Hh => "hh",
        }
    }
}

/// Over which weights one threshold is computed.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum ThresholdScope {
    /// One threshold over the selected matrices of all layers pooled (the thesis's code).
    #[default]
    Global,
    /// One threshold per matrix (the thesis's text).
    Layer,
}

/// How the levels of one sweep are retrained; all compute the same mathematics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// The fastest on CPU (`pipe-bench prune`, 10 levels, one thread): native for every variant
    /// (with fused multiply-add: RNN-tanh 2.4×, GRU 2.4×, LSTM 1.0–1.3× sequential libtorch, whose
    /// LSTM is oneDNN's fused cell). On a GPU: batched.
    #[default]
    Auto,
    /// Every level as a `NativeNetwork` (plain Rust, no libtorch), levels in parallel on
    /// `threads`; bit-identical whatever the thread count and after a resume.
    Native,
    /// All levels stacked along a leading axis and trained as one tensor program (always the
    /// loop cells, whatever engine the base model's config names). 1.5× faster for GRU, but a
    /// run resumed after a kill drifts by about 1e-4 from an uninterrupted one, so it is not
    /// the default until that is found.
    Batched,
    /// One level after the other, each as a plain libtorch model with the config's cell
    /// engine; resumes bit-identically.
    Sequential,
}

impl Strategy {
    /// What `auto` means on the CPU; the other strategies stand for themselves.
    pub fn resolve(self) -> Strategy {
        match self {
            Strategy::Auto => Strategy::Native,
            chosen => chosen,
        }
    }
}

/// Whether `acc` is within `tolerance_points` percentage points below `reference`, the rule for
/// a "safe" pruning level: `acc >= reference − tolerance`, with a little slack so that
/// accuracies that are equal as fractions of the test set are not split by float rounding.
pub fn within_tolerance(acc: f64, reference: f64, tolerance_points: f64) -> bool {
    acc + 1e-9 >= reference - tolerance_points / 100.0
}
