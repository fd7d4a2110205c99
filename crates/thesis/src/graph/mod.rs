//! Random graphs for the randomly structured recurrent networks (SPEC §4): the
//! `Graph` value a stage writes to `graphs.json`, seeded Barabási–Albert and
//! Watts–Strogatz generators, the low-to-high DAG orientation with its longest-path
//! layering, and the 23 graph properties the thesis recorded per network.

mod dag;
mod generate;
mod properties;

pub use dag::Dag;
pub use generate::{
    barabasi_albert_edges, connected_watts_strogatz_edges, generate_graph_set,
    generate_graph_set_seeded, BarabasiAlbertSeed, GenerationConfig, ParameterRule,
};
pub use properties::{graph_properties, properties_many, Properties, PROPERTY_NAMES};

use serde::{Deserialize, Serialize};

/// The random graph model a graph was drawn from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GraphFamily {
    /// Preferential attachment, serialized as `"barabasi_albert"`.
    BarabasiAlbert,
    /// Rewired ring lattice, serialized as `"watts_strogatz"`.
    WattsStrogatz,
}

impl GraphFamily {
    /// The name the thesis's CSVs and `graphs.json` use.
    pub fn name(self) -> &'static str {
        match self {
            GraphFamily::BarabasiAlbert => "barabasi_albert",
            GraphFamily::WattsStrogatz => "watts_strogatz",
        }
    }
}

impl std::fmt::Display for GraphFamily {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// An undirected simple graph on the nodes `0..n`.
///
/// `edges` holds each edge once as `(u, v)` with `u < v`, sorted; [`Graph::new`]
/// establishes that form. A deserialized graph is checked again by the functions
/// that consume it ([`Dag::from_graph`], [`graph_properties`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Graph {
    /// Identifier, unique within a generated set.
    pub id: usize,
    /// The model the graph was drawn from.
    pub family: GraphFamily,
    /// Number of nodes; nodes are labelled `0..n`.
    pub n: usize,
    /// Undirected edges, `(u, v)` with `u < v`, sorted, no duplicates.
    pub edges: Vec<(usize, usize)>,
}

impl Graph {
    /// Builds a graph from edges given in any orientation and order; rejects self
    /// loops, duplicate edges and labels outside `0..n`.
    pub fn new(
        id: usize,
        family: GraphFamily,
        n: usize,
        edges: impl IntoIterator<Item = (usize, usize)>,
    ) -> Result<Self, GraphError> {
        let mut normalized: Vec<(usize, usize)> = edges
            .into_iter()
            .map(|(u, v)| (u.min(v), u.max(v)))
            .collect();
        normalized.sort_unstable();
        let graph = Graph {
            id,
            family,
            n,
            edges: normalized,
        };
        graph.validate()?;
        Ok(graph)
    }

    /// Checks the invariants documented on [`Graph`].
    pub fn validate(&self) -> Result<(), GraphError> {
        let invalid = |u: usize, v: usize, reason: &'static str| GraphError::InvalidEdge {
            id: self.id,
            u,
            v,
            reason,
        };
        for (index, &(u, v)) in self.edges.iter().enumerate() {
            if u == v {
                return Err(invalid(u, v, "self loop"));
            }
            if u > v {
                return Err(invalid(u, v, "not stored as (low, high)"));
            }
            if v >= self.n {
                return Err(invalid(u, v, "label outside 0..n"));
            }
            if index > 0 && self.edges[index - 1] >= (u, v) {
                return Err(invalid(u, v, "duplicate or unsorted edge"));
            }
        }
        Ok(())
    }

    /// Neighbour lists of the undirected graph, each sorted ascending.
    pub fn adjacency(&self) -> Vec<Vec<usize>> {
        let mut neighbours = vec![Vec::new(); self.n];
        for &(u, v) in &self.edges {
            neighbours[u].push(v);
            neighbours[v].push(u);
        }
        for list in &mut neighbours {
            list.sort_unstable();
        }
        neighbours
    }

    /// Whether every node is reachable from every other (true for `n <= 1`).
    pub fn is_connected(&self) -> bool {
        is_connected(&self.adjacency())
    }
}

/// Breadth-first reachability from node 0 over neighbour lists.
pub(crate) fn is_connected(neighbours: &[Vec<usize>]) -> bool {
    let n = neighbours.len();
    if n <= 1 {
        return true;
    }
    let mut seen = vec![false; n];
    let mut queue = std::collections::VecDeque::from([0]);
    seen[0] = true;
    let mut reached = 1;
    while let Some(node) = queue.pop_front() {
        for &next in &neighbours[node] {
            if !seen[next] {
                seen[next] = true;
                reached += 1;
                queue.push_back(next);
            }
        }
    }
    reached == n
}

/// Everything that can go wrong while generating graphs or computing their
/// properties.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum GraphError {
    /// Distances (and so most properties) are undefined on a disconnected graph.
    #[error("graph {id} is disconnected: its distance-based properties are undefined")]
    Disconnected { id: usize },
    /// The properties divide by `n - 1`; a graph needs at least two nodes.
    #[error("graph {id} has {n} node(s); graph properties need at least 2")]
    TooFewNodes { id: usize, n: usize },
    /// An edge breaks the invariants of [`Graph`].
    #[error("graph {id}: edge ({u}, {v}) is invalid: {reason}")]
    InvalidEdge {
        id: usize,
        u: usize,
        v: usize,
        reason: &'static str,
    },
    /// Barabási–Albert needs `1 <= m < n`.
    #[error("Barabási–Albert needs 1 <= m < n, got n = {n}, m = {m}")]
    InvalidBarabasiAlbert { n: usize, m: usize },
    /// A `graphs.json` that cannot be read or is not a graph list.
    #[error("{path}: {message}")]
    File { path: String, message: String },
    /// Watts–Strogatz needs `2 <= k < n` and a probability `p` in `[0, 1]`.
    #[error("Watts–Strogatz needs 2 <= k < n and 0 <= p <= 1, got n = {n}, k = {k}, p = {p}")]
    InvalidWattsStrogatz { n: usize, k: usize, p: f64 },
    /// Every try produced a disconnected Watts–Strogatz graph.
    #[error("no connected Watts–Strogatz graph (n = {n}, k = {k}, p = {p}) in {tries} tries")]
    WattsStrogatzNotConnected {
        n: usize,
        k: usize,
        p: f64,
        tries: usize,
    },
    /// The node-count range to draw `n` from is empty.
    #[error("node range {min}..={max} is empty")]
    EmptyNodeRange { min: usize, max: usize },
}

/// Reads and validates a `graphs.json` (a list of [`Graph`]s, as `graph.random` writes it).
pub fn read_graphs(path: &std::path::Path) -> Result<Vec<Graph>, GraphError> {
    let file_error = |message: String| GraphError::File {
        path: path.display().to_string(),
        message,
    };
    let bytes = std::fs::read(path).map_err(|e| file_error(format!("cannot read: {e}")))?;
    let graphs: Vec<Graph> =
        serde_json::from_slice(&bytes).map_err(|e| file_error(format!("not a graph list: {e}")))?;
    for g in &graphs {
        g.validate()?;
    }
    Ok(graphs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_normalizes_orientation_and_order() {
        let graph = Graph::new(3, GraphFamily::WattsStrogatz, 4, [(2, 1), (0, 3), (1, 0)])
            .expect("valid edges");
        assert_eq!(graph.edges, vec![(0, 1), (0, 3), (1, 2)]);
        assert!(graph.is_connected());
    }

    #[test]
    fn new_rejects_bad_edges() {
        let family = GraphFamily::BarabasiAlbert;
        assert!(matches!(
            Graph::new(0, family, 3, [(1, 1)]),
            Err(GraphError::InvalidEdge { id: 0, .. })
        ));
        assert!(matches!(
            Graph::new(0, family, 3, [(0, 3)]),
            Err(GraphError::InvalidEdge { .. })
        ));
        assert!(matches!(
            Graph::new(0, family, 3, [(0, 1), (1, 0)]),
            Err(GraphError::InvalidEdge { .. })
        ));
    }

    #[test]
    fn family_serializes_as_thesis_names() {
        let json =
            serde_json::to_string(&[GraphFamily::BarabasiAlbert, GraphFamily::WattsStrogatz])
                .expect("serializable");
        assert_eq!(json, r#"["barabasi_albert","watts_strogatz"]"#);
    }

    #[test]
    fn graph_round_trips_through_json() {
        let graph = Graph::new(7, GraphFamily::WattsStrogatz, 3, [(0, 1), (1, 2)]).expect("valid");
        let json = serde_json::to_string(&graph).expect("serializable");
        assert_eq!(
            json,
            r#"{"id":7,"family":"watts_strogatz","n":3,"edges":[[0,1],[1,2]]}"#
        );
        let back: Graph = serde_json::from_str(&json).expect("deserializable");
        assert_eq!(back, graph);
    }
}
