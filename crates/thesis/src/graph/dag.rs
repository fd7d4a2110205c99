//! The directed acyclic graph the thesis builds its recurrent network from: every
//! undirected edge is oriented from the lower to the higher node label, and each
//! node sits in the layer given by the longest directed path reaching it from a
//! source (sources are layer 0). The network's layers and skip connections follow
//! from these layer indices.

use super::{Graph, GraphError};

/// A graph oriented low label → high label, with its longest-path layering.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dag {
    /// Directed edges `(u, v)` with `u < v`, sorted.
    edges: Vec<(usize, usize)>,
    /// Layer index of each node.
    node_layers: Vec<usize>,
    /// Nodes of each layer, ascending.
    layers: Vec<Vec<usize>>,
    /// Whether each node has an outgoing edge.
    has_successor: Vec<bool>,
}

impl Dag {
    /// Orients `graph` and computes the layering.
    ///
    /// Ascending label order is a topological order of this orientation, so one
    /// pass over the sorted edges settles each node's longest path before any of
    /// its out-edges is read: iterative, no recursion.
    pub fn from_graph(graph: &Graph) -> Result<Self, GraphError> {
        graph.validate()?;
        let mut node_layers = vec![0; graph.n];
        let mut has_successor = vec![false; graph.n];
        // Sorted by (u, v): every edge into u (from a smaller label) precedes the
        // edges out of u, so node_layers[u] is final when first read here.
        for &(u, v) in &graph.edges {
            node_layers[v] = node_layers[v].max(node_layers[u] + 1);
            has_successor[u] = true;
        }
        let layer_count = node_layers.iter().max().map_or(0, |&deepest| deepest + 1);
        let mut layers = vec![Vec::new(); layer_count];
        for (node, &layer) in node_layers.iter().enumerate() {
            layers[layer].push(node);
        }
        Ok(Dag {
            edges: graph.edges.clone(),
            node_layers,
            layers,
            has_successor,
        })
    }

    /// Number of layers (deepest layer index + 1; 0 for an empty graph).
    pub fn layer_count(&self) -> usize {
        self.layers.len()
    }

    /// Nodes of each layer, ascending within a layer.
    pub fn layers(&self) -> &[Vec<usize>] {
        &self.layers
    }

    /// Layer index of every node, indexed by node label.
    pub fn node_layers(&self) -> &[usize] {
        &self.node_layers
    }

    /// Nodes without incoming edges; exactly layer 0.
    pub fn sources(&self) -> &[usize] {
        self.layers.first().map_or(&[], Vec::as_slice)
    }

    /// Nodes without outgoing edges. Every node of the last layer is one, but a
    /// sink can also sit in an earlier layer.
    pub fn sinks(&self) -> Vec<usize> {
        (0..self.node_layers.len())
            .filter(|&node| !self.has_successor[node])
            .collect()
    }

    /// The last layer, the one feeding the classifier.
    pub fn last_layer(&self) -> &[usize] {
        self.layers.last().map_or(&[], Vec::as_slice)
    }

    /// Directed edges `(u, v)`, `u < v`, sorted.
    pub fn edges(&self) -> &[(usize, usize)] {
        &self.edges
    }

    /// For each directed edge `(u, v)`, in [`Dag::edges`] order, the pair
    /// `(layer(u), layer(v))`; `layer(v) > layer(u) + 1` marks a skip connection.
    pub fn edge_layers(&self) -> Vec<(usize, usize)> {
        self.edges
            .iter()
            .map(|&(u, v)| (self.node_layers[u], self.node_layers[v]))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::GraphFamily;

    fn dag(n: usize, edges: &[(usize, usize)]) -> Dag {
        let graph =
            Graph::new(0, GraphFamily::BarabasiAlbert, n, edges.iter().copied()).expect("valid");
        Dag::from_graph(&graph).expect("valid")
    }

    #[test]
    fn longest_path_not_shortest_path_sets_the_layer() {
        // 0→1→2→3 and the shortcut 0→3: shortest path to 3 has length 1, the
        // longest 3, so 3 is in layer 3 and 0→3 skips layers 1 and 2.
        let dag = dag(4, &[(0, 1), (1, 2), (2, 3), (0, 3)]);
        assert_eq!(dag.node_layers(), &[0, 1, 2, 3]);
        assert_eq!(dag.layer_count(), 4);
        assert_eq!(dag.layers(), &[vec![0], vec![1], vec![2], vec![3]]);
        assert_eq!(dag.sources(), &[0]);
        assert_eq!(dag.sinks(), vec![3]);
        assert_eq!(dag.edges(), &[(0, 1), (0, 3), (1, 2), (2, 3)]);
        assert_eq!(dag.edge_layers(), vec![(0, 1), (0, 3), (1, 2), (2, 3)]);
    }

    #[test]
    fn orientation_follows_labels_not_input_order() {
        // Given as 4-0, 4-1, 3-2, 4-3: sources 0, 1 and 2; 3 hangs off 2, and 4
        // below 3, so 4 is in layer 2 although 0 and 1 reach it in one step.
        let dag = dag(5, &[(4, 0), (4, 1), (3, 2), (4, 3)]);
        assert_eq!(dag.node_layers(), &[0, 0, 0, 1, 2]);
        assert_eq!(dag.layers(), &[vec![0, 1, 2], vec![3], vec![4]]);
        assert_eq!(dag.sources(), &[0, 1, 2]);
        assert_eq!(dag.sinks(), vec![4]);
        assert_eq!(dag.last_layer(), &[4]);
        assert_eq!(dag.edge_layers(), vec![(0, 2), (0, 2), (0, 1), (1, 2)]);
    }

    #[test]
    fn sinks_can_sit_before_the_last_layer() {
        // 0→1→2 and 0→3: node 3 is a sink in layer 1, the last layer is {2}.
        let dag = dag(4, &[(0, 1), (1, 2), (0, 3)]);
        assert_eq!(dag.layers(), &[vec![0], vec![1, 3], vec![2]]);
        assert_eq!(dag.sinks(), vec![2, 3]);
        assert_eq!(dag.last_layer(), &[2]);
    }

    #[test]
    fn empty_graph_has_no_layers() {
        let dag = dag(0, &[]);
        assert_eq!(dag.layer_count(), 0);
        assert!(dag.sources().is_empty());
        assert!(dag.last_layer().is_empty());
    }
}
