//! Randomly structured recurrent networks (thesis experiment 3, SPEC §4), one at a time and
//! batched many at once.
//!
//! The architecture follows the thesis code: layer 0 holds the DAG's sources and is a dense
//! recurrent layer fed by Embedding(128, |layer 0|); each layer l ≥ 1 is a recurrent layer from
//! layer l−1 to layer l whose input-to-hidden weights are masked to the DAG's edges (the mask is
//! applied to every gate block, unlike the original's misaligned `np.repeat`) with a dense
//! hidden-to-hidden matrix; every pair of layers (j, l > j+1) joined by at least one DAG edge gets
//! a separate masked recurrent layer j → l (one per layer pair, as the original's
//! `layer_connected` loop builds them) whose output sequence is added to layer l's; the sum is
//! what later layers read; only the last layer feeds Linear(|last|, 2).
//!
//! [`RandomNetwork`] is that architecture written out literally (one recurrence per connection),
//! the reference. [`NetworkGroup`] computes the same mathematics for many networks at once:
//! all recurrences that end in the same layer run as one block-diagonal recurrence (a slot axis,
//! so each block keeps its own weights and state), and networks are stacked on a leading network
//! axis, padded to common widths and layer counts. Padded weights, biases and masks are zero, so
//! padded units stay exactly zero, read nothing, feed nothing and get exactly zero gradients;
//! Adam (elementwise) then leaves them at zero. Each network has its own loss (the group's loss
//! is the sum of the per-network batch means, so gradients do not mix) and its own
//! gradient-norm clipping.
mod group;
mod group_train;
mod network;
mod plan;
mod structure;

pub use group::NetworkGroup;
pub use group_train::{
    clip_grad_norm_per_network, evaluate_group, per_network_cross_entropy, train_group_epoch,
    GroupPass,
};
pub use network::RandomNetwork;
pub use plan::{network_seed, plan_groups};
pub use structure::{Connection, NetworkStructure};

/// Token codes the embedding accepts (ASCII).
pub const VOCAB_SIZE: i64 = 128;
/// Output classes (invalid, valid).
pub const CLASS_COUNT: i64 = 2;
