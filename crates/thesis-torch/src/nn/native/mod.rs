//! Randomly structured networks computed natively: forward and backward passes written out in
//! plain Rust over `f32` buffers, one network per thread, no libtorch.
//!
//! Why: these networks are tiny (8 layers of ~4 units on average, ~28 recurrences) and train at
//! batch 128, so on libtorch every one of the thousands of small operations per batch costs more
//! in dispatch, autograd bookkeeping and memory traffic than in arithmetic, and batching networks
//! into padded groups ([`super::random::NetworkGroup`]) wastes most of its work on padding. Here
//! each network keeps its exact shapes, every activation is stored feature-major (`[features ×
//! batch]` per time step) so that every inner loop runs over the 128 sequences of the batch and
//! vectorises, gate arithmetic is fused into one pass, masked input weights are skipped, and
//! networks run in parallel on rayon's threads. The mathematics is that of
//! [`super::random::RandomNetwork`] (the libtorch reference), which the tests compare against.
//!
//! The stacked model of the base and pruning experiments is the chain case of such a network
//! ([`NativeNetwork::from_model`]): there the matrices are dense (50 × 50 and up), so the
//! recurrences use dense kernels ([`accumulate_rows`], [`weight_gradients`]) instead of the
//! term-by-term ones, and hidden-to-hidden masks hold the pruned weights at zero.
//!
//! Determinism: each network is computed by one thread in a fixed order, and every instruction
//! set's build computes the same operations ([`Isa`]), so results are bit-identical across
//! runs, thread counts and machines.

mod backward;
mod batch;
mod epoch;
mod forward;
mod isa;
mod kernels;
mod layout;
mod network;
mod optim;
mod train;
mod workspace;

pub use batch::NativeBatch;
pub use epoch::{test_batches, train_and_evaluate_epoch, NativePass, TrainingSettings};
pub use forward::BatchOutcome;
pub use isa::Isa;
pub use network::NativeNetwork;
pub use train::train_model;

use crate::nn::random::{CLASS_COUNT, VOCAB_SIZE};

const CLASSES: usize = CLASS_COUNT as usize;
const VOCAB: usize = VOCAB_SIZE as usize;
