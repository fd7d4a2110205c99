//! Where every parameter lives in a network's flat parameter vector.

use crate::nn::random::NetworkStructure;
use crate::nn::Variant;

use super::{CLASSES, VOCAB};

/// Where one connection's parameters live in the flat parameter vector.
#[derive(Clone, Debug)]
pub(super) struct ConnectionLayout {
    /// Layer read (`None`: the embedding).
    pub(super) source: Option<usize>,
    pub(super) target: usize,
    pub(super) input: usize,
    pub(super) hidden: usize,
    pub(super) weight_ih: usize,
    pub(super) weight_hh: usize,
    pub(super) bias_ih: usize,
    pub(super) bias_hh: usize,
}

/// Offsets of every parameter in `RandomNetwork::named_parameters` order.
#[derive(Clone, Debug)]
pub(super) struct Layout {
    pub(super) gates: usize,
    /// Width of the embedding (the input of layer 0's main connection).
    pub(super) embedding_width: usize,
    /// Dense matrices (the stacked model): computed with [`accumulate_rows`] and
    /// [`weight_gradients`] rather than term by term with zero weights skipped.
    pub(super) dense: bool,
    pub(super) layer_sizes: Vec<usize>,
    pub(super) connections: Vec<ConnectionLayout>,
    pub(super) head_weight: usize,
    pub(super) head_bias: usize,
    pub(super) total: usize,
}

impl Layout {
    pub(super) fn new(
        structure: &NetworkStructure,
        variant: Variant,
        embedding_width: usize,
    ) -> Self {
        let gates = variant.gate_count() as usize;
        let sizes = &structure.layer_sizes;
        let mut offset = VOCAB * embedding_width;
        let connections = structure
            .connections
            .iter()
            .map(|c| {
                let hidden = sizes[c.target];
                let input = c.source.map_or(embedding_width, |s| sizes[s]);
                let rows = gates * hidden;
                let layout = ConnectionLayout {
                    source: c.source,
                    target: c.target,
                    input,
                    hidden,
                    weight_ih: offset,
                    weight_hh: offset + rows * input,
                    bias_ih: offset + rows * (input + hidden),
                    bias_hh: offset + rows * (input + hidden + 1),
                };
                offset += rows * (input + hidden + 2);
                layout
            })
            .collect();
        let last = sizes[sizes.len() - 1];
        let head_weight = offset;
        let head_bias = offset + CLASSES * last;
        Layout {
            gates,
            embedding_width,
            dense: false,
            layer_sizes: sizes.clone(),
            connections,
            head_weight,
            head_bias,
            total: head_bias + CLASSES,
        }
    }

    pub(super) fn last_width(&self) -> usize {
        self.layer_sizes[self.layer_sizes.len() - 1]
    }
}
