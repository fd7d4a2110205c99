//! The layer sizes and connections a DAG defines: layers by depth, one main connection per
//! layer and one skip connection per joined layer pair, with their input masks.

use crate::graph::{Dag, Graph};
use crate::nn::{NnError, NnResult};

/// One recurrent layer of the architecture: from a source (the embedding for layer 0, else a
/// layer's output) to a target layer's units.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Connection {
    /// The layer read, or `None` for the embedding (layer 0's main connection).
    pub source: Option<usize>,
    /// The layer whose units this recurrence computes.
    pub target: usize,
    /// Edges as (target unit, source unit) positions within their layers; ignored (dense) when
    /// `source` is `None`.
    pub edges: Vec<(usize, usize)>,
}

impl Connection {
    /// Whether this is a skip connection (it jumps over at least one layer).
    pub fn is_skip(&self) -> bool {
        self.source.is_some_and(|source| self.target > source + 1)
    }
}

/// The layer sizes and connections a DAG defines.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetworkStructure {
    /// Units per layer (|layer l|).
    pub layer_sizes: Vec<usize>,
    /// Main connections for layers 0..L in order, then skip connections sorted by (target, source).
    pub connections: Vec<Connection>,
}

impl NetworkStructure {
    /// Builds the structure of `graph` (oriented low → high label, longest-path layers).
    pub fn from_graph(graph: &Graph) -> NnResult<Self> {
        let dag = Dag::from_graph(graph).map_err(|e| NnError::InvalidConfig(e.to_string()))?;
        Self::from_dag(&dag)
    }

    /// Builds the structure of an already layered DAG.
    pub fn from_dag(dag: &Dag) -> NnResult<Self> {
        let layers = dag.layers();
        if layers.is_empty() {
            return Err(NnError::InvalidConfig(
                "a random network needs a graph with at least one node".into(),
            ));
        }
        let node_layers = dag.node_layers();
        // Position of each node within its layer (layers list their nodes ascending).
        let mut position = vec![0usize; node_layers.len()];
        for nodes in layers {
            for (index, &node) in nodes.iter().enumerate() {
                position[node] = index;
            }
        }
        let mut connections: Vec<Connection> = (0..layers.len())
            .map(|target| Connection {
                source: target.checked_sub(1),
                target,
                edges: Vec::new(),
            })
            .collect();
        let mut skips: std::collections::BTreeMap<(usize, usize), Vec<(usize, usize)>> =
            std::collections::BTreeMap::new();
        for &(u, v) in dag.edges() {
            let (from, to) = (node_layers[u], node_layers[v]);
            let edge = (position[v], position[u]);
            if to == from + 1 {
                connections[to].edges.push(edge);
            } else {
                skips.entry((to, from)).or_default().push(edge);
            }
        }
        for ((target, source), edges) in skips {
            connections.push(Connection {
                source: Some(source),
                target,
                edges,
            });
        }
        Ok(NetworkStructure {
            layer_sizes: layers.iter().map(Vec::len).collect(),
            connections,
        })
    }

    /// Number of layers.
    pub fn layer_count(&self) -> usize {
        self.layer_sizes.len()
    }

    /// Width of the input a connection reads.
    pub(super) fn input_width(&self, connection: &Connection) -> usize {
        match connection.source {
            Some(layer) => self.layer_sizes[layer],
            None => self.layer_sizes[0],
        }
    }

    /// The `[G·|target|, |input|]` input mask of a connection: the edge mask repeated on every
    /// gate block (row g·H + r is unit r of gate g), all ones for the embedding's dense input.
    pub(super) fn input_mask(&self, connection: &Connection, gates: usize) -> Vec<f32> {
        let rows = self.layer_sizes[connection.target];
        let columns = self.input_width(connection);
        let mut block = vec![0f32; rows * columns];
        if connection.source.is_none() {
            block.fill(1.0);
        } else {
            for &(row, column) in &connection.edges {
                block[row * columns + column] = 1.0;
            }
        }
        block.repeat(gates)
    }

    /// Last layer index.
    pub(super) fn last_layer(&self) -> usize {
        self.layer_sizes.len() - 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::GraphFamily;

    fn graph(n: usize, edges: &[(usize, usize)]) -> Graph {
        Graph::new(0, GraphFamily::BarabasiAlbert, n, edges.iter().copied()).unwrap()
    }

    #[test]
    fn structure_follows_layers_and_groups_skips_by_layer_pair() {
        // 0→1→2→3 plus 0→3 and 1→3: layers {0},{1},{2},{3}; skips (0→3) and (1→3).
        let s = NetworkStructure::from_graph(&graph(4, &[(0, 1), (1, 2), (2, 3), (0, 3), (1, 3)]))
            .unwrap();
        assert_eq!(s.layer_sizes, vec![1, 1, 1, 1]);
        assert_eq!(s.connections.len(), 6);
        let skips: Vec<_> = s
            .connections
            .iter()
            .filter(|c| c.is_skip())
            .map(|c| (c.source, c.target))
            .collect();
        assert_eq!(skips, vec![(Some(0), 3), (Some(1), 3)]);
    }

    #[test]
    fn gate_blocks_all_carry_the_edge_mask() {
        let s = NetworkStructure::from_graph(&graph(4, &[(0, 2), (1, 3), (0, 3)])).unwrap();
        // Layers {0,1} → {2,3}: edges 2←0, 3←0, 3←1.
        let mask = s.input_mask(&s.connections[1], 3);
        let block = [1.0, 0.0, 1.0, 1.0];
        assert_eq!(mask, [block, block, block].concat());
    }
}
