//! The 23 graph properties the thesis recorded for each random network (the
//! feature columns of `results/structure/*.csv`), computed as networkx computes
//! them: one breadth-first search per source node gives eccentricities, closeness
//! and shortest-path lengths, and Brandes' accumulation on the same search gives
//! node and edge betweenness. Layer counts come from the [`Dag`].

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::{Dag, Graph, GraphError};

/// Property names, in the column order of `results/structure/*.csv` and of
/// [`Properties::to_array`].
pub const PROPERTY_NAMES: [&str; 23] = [
    "layers",
    "nodes",
    "edges",
    "source_nodes",
    "sink_nodes",
    "diameter",
    "density",
    "average_shortest_path_length",
    "eccentricity_mean",
    "eccentricity_var",
    "eccentricity_std",
    "degree_mean",
    "degree_var",
    "degree_std",
    "closeness_mean",
    "closeness_var",
    "closeness_std",
    "nodes_betweenness_mean",
    "nodes_betweenness_var",
    "nodes_betweenness_std",
    "edge_betweenness_mean",
    "edge_betweenness_var",
    "edge_betweenness_std",
];

/// The thesis's per-graph features. Distance-based values are on the undirected
/// graph; `layers`, `source_nodes` and `sink_nodes` on its [`Dag`]. Each
/// `_var` is the sample variance (divisor count − 1) and each `_std` its square
/// root. Fields are declared in [`PROPERTY_NAMES`] order, so serialization keeps
/// the CSV column order.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Properties {
    /// Number of DAG layers (deepest longest-path index + 1).
    pub layers: usize,
    /// Number of nodes.
    pub nodes: usize,
    /// Number of undirected edges.
    pub edges: usize,
    /// Size of DAG layer 0 (the sources).
    pub source_nodes: usize,
    /// Size of the last DAG layer.
    pub sink_nodes: usize,
    /// Largest eccentricity.
    pub diameter: usize,
    /// `E / (n (n - 1))`: half of networkx's undirected density, as recorded.
    pub density: f64,
    /// Mean distance over ordered pairs of distinct nodes.
    pub average_shortest_path_length: f64,
    /// Mean of the node eccentricities.
    pub eccentricity_mean: f64,
    /// Sample variance of the node eccentricities.
    pub eccentricity_var: f64,
    /// Sample standard deviation of the node eccentricities.
    pub eccentricity_std: f64,
    /// Mean degree centrality, `degree / (n - 1)`.
    pub degree_mean: f64,
    /// Sample variance of the degree centralities.
    pub degree_var: f64,
    /// Sample standard deviation of the degree centralities.
    pub degree_std: f64,
    /// Mean closeness centrality, `(n - 1) / sum of distances`.
    pub closeness_mean: f64,
    /// Sample variance of the closeness centralities.
    pub closeness_var: f64,
    /// Sample standard deviation of the closeness centralities.
    pub closeness_std: f64,
    /// Mean node betweenness: shortest-path fractions over ordered pairs,
    /// divided by `(n - 1)(n - 2)`.
    pub nodes_betweenness_mean: f64,
    /// Sample variance of the node betweenness.
    pub nodes_betweenness_var: f64,
    /// Sample standard deviation of the node betweenness.
    pub nodes_betweenness_std: f64,
    /// Mean edge betweenness: shortest-path fractions over ordered pairs,
    /// divided by `n (n - 1)`.
    pub edge_betweenness_mean: f64,
    /// Sample variance of the edge betweenness.
    pub edge_betweenness_var: f64,
    /// Sample standard deviation of the edge betweenness.
    pub edge_betweenness_std: f64,
}

impl Properties {
    /// All 23 values as numbers, in [`PROPERTY_NAMES`] order.
    pub fn to_array(&self) -> [f64; 23] {
        [
            self.layers as f64,
            self.nodes as f64,
            self.edges as f64,
            self.source_nodes as f64,
            self.sink_nodes as f64,
            self.diameter as f64,
            self.density,
            self.average_shortest_path_length,
            self.eccentricity_mean,
            self.eccentricity_var,
            self.eccentricity_std,
            self.degree_mean,
            self.degree_var,
            self.degree_std,
            self.closeness_mean,
            self.closeness_var,
            self.closeness_std,
            self.nodes_betweenness_mean,
            self.nodes_betweenness_var,
            self.nodes_betweenness_std,
            self.edge_betweenness_mean,
            self.edge_betweenness_var,
            self.edge_betweenness_std,
        ]
    }

    /// The value of the property called `name` (one of [`PROPERTY_NAMES`]).
    pub fn get(&self, name: &str) -> Option<f64> {
        let index = PROPERTY_NAMES.iter().position(|&known| known == name)?;
        Some(self.to_array()[index])
    }
}

/// Computes the properties of one connected graph with at least 3 nodes.
pub fn graph_properties(graph: &Graph) -> Result<Properties, GraphError> {
    graph.validate()?;
    let n = graph.n;
    // Betweenness is normalized by (n - 1)(n - 2) and sample variances need two
    // values; both fail below three nodes.
    if n < 3 {
        return Err(GraphError::TooFewNodes { id: graph.id, n });
    }
    let dag = Dag::from_graph(graph)?;
    let paths = ShortestPaths::compute(graph).ok_or(GraphError::Disconnected { id: graph.id })?;

    let n_f = n as f64;
    let pair_count = n_f * (n_f - 1.0);
    let edge_count = graph.edges.len();

    let eccentricity: Vec<f64> = paths.eccentricity.iter().map(|&e| e as f64).collect();
    let degree_centrality: Vec<f64> = paths
        .degree
        .iter()
        .map(|&d| d as f64 / (n_f - 1.0))
        .collect();
    let closeness: Vec<f64> = paths
        .distance_sum
        .iter()
        .map(|&total| (n_f - 1.0) / total as f64)
        .collect();
    let node_scale = 1.0 / ((n_f - 1.0) * (n_f - 2.0));
    let node_betweenness: Vec<f64> = paths
        .node_betweenness
        .iter()
        .map(|&raw| raw * node_scale)
        .collect();
    let edge_betweenness: Vec<f64> = paths
        .edge_betweenness
        .iter()
        .map(|&raw| raw / pair_count)
        .collect();
    let total_distance: usize = paths.distance_sum.iter().sum();

    let eccentricity_stats = Summary::of(&eccentricity);
    let degree_stats = Summary::of(&degree_centrality);
    let closeness_stats = Summary::of(&closeness);
    let node_betweenness_stats = Summary::of(&node_betweenness);
    let edge_betweenness_stats = Summary::of(&edge_betweenness);

    Ok(Properties {
        layers: dag.layer_count(),
        nodes: n,
        edges: edge_count,
        source_nodes: dag.sources().len(),
        sink_nodes: dag.last_layer().len(),
        diameter: paths.eccentricity.iter().copied().max().unwrap_or(0),
        density: edge_count as f64 / pair_count,
        average_shortest_path_length: total_distance as f64 / pair_count,
        eccentricity_mean: eccentricity_stats.mean,
        eccentricity_var: eccentricity_stats.variance,
        eccentricity_std: eccentricity_stats.std,
        degree_mean: degree_stats.mean,
        degree_var: degree_stats.variance,
        degree_std: degree_stats.std,
        closeness_mean: closeness_stats.mean,
        closeness_var: closeness_stats.variance,
        closeness_std: closeness_stats.std,
        nodes_betweenness_mean: node_betweenness_stats.mean,
        nodes_betweenness_var: node_betweenness_stats.variance,
        nodes_betweenness_std: node_betweenness_stats.std,
        edge_betweenness_mean: edge_betweenness_stats.mean,
        edge_betweenness_var: edge_betweenness_stats.variance,
        edge_betweenness_std: edge_betweenness_stats.std,
    })
}

/// [`graph_properties`] for many graphs in parallel; results keep input order.
pub fn properties_many(graphs: &[Graph]) -> Vec<Result<Properties, GraphError>> {
    graphs.par_iter().map(graph_properties).collect()
}

/// Per-node and per-edge quantities gathered from one BFS per source.
struct ShortestPaths {
    degree: Vec<usize>,
    eccentricity: Vec<usize>,
    distance_sum: Vec<usize>,
    /// Unnormalized node betweenness, summed over ordered (source, target) pairs.
    node_betweenness: Vec<f64>,
    /// Unnormalized edge betweenness, in `graph.edges` order, ordered pairs.
    edge_betweenness: Vec<f64>,
}

impl ShortestPaths {
    /// Brandes' algorithm (unweighted). `None` if the graph is disconnected.
    fn compute(graph: &Graph) -> Option<Self> {
        let n = graph.n;
        // Neighbour lists carrying the index of the connecting edge.
        let mut incident: Vec<Vec<(usize, usize)>> = vec![Vec::new(); n];
        for (edge, &(u, v)) in graph.edges.iter().enumerate() {
            incident[u].push((v, edge));
            incident[v].push((u, edge));
        }
        let mut result = ShortestPaths {
            degree: incident.iter().map(Vec::len).collect(),
            eccentricity: vec![0; n],
            distance_sum: vec![0; n],
            node_betweenness: vec![0.0; n],
            edge_betweenness: vec![0.0; graph.edges.len()],
        };

        let mut distance = vec![usize::MAX; n];
        let mut path_count = vec![0.0_f64; n];
        let mut predecessors: Vec<Vec<(usize, usize)>> = vec![Vec::new(); n];
        let mut dependency = vec![0.0_f64; n];
        let mut visit_order = Vec::with_capacity(n);
        for source in 0..n {
            distance.fill(usize::MAX);
            path_count.fill(0.0);
            dependency.fill(0.0);
            predecessors.iter_mut().for_each(Vec::clear);
            visit_order.clear();

            distance[source] = 0;
            path_count[source] = 1.0;
            visit_order.push(source);
            // visit_order doubles as the BFS queue: entries before `head` are done.
            let mut head = 0;
            while let Some(&node) = visit_order.get(head) {
                head += 1;
                for &(next, edge) in &incident[node] {
                    if distance[next] == usize::MAX {
                        distance[next] = distance[node] + 1;
                        visit_order.push(next);
                    }
                    if distance[next] == distance[node] + 1 {
                        path_count[next] += path_count[node];
                        predecessors[next].push((node, edge));
                    }
                }
            }
            if visit_order.len() < n {
                return None;
            }
            result.eccentricity[source] =
                visit_order.last().map_or(0, |&farthest| distance[farthest]);
            result.distance_sum[source] = distance.iter().sum();

            // Dependencies accumulate from the farthest nodes back to the source.
            for &target in visit_order.iter().rev() {
                let share = (1.0 + dependency[target]) / path_count[target];
                for &(previous, edge) in &predecessors[target] {
                    let flow = path_count[previous] * share;
                    result.edge_betweenness[edge] += flow;
                    dependency[previous] += flow;
                }
                if target != source {
                    result.node_betweenness[target] += dependency[target];
                }
            }
        }
        Some(result)
    }
}

/// Mean, sample variance and sample standard deviation of at least two values.
struct Summary {
    mean: f64,
    variance: f64,
    std: f64,
}

impl Summary {
    fn of(values: &[f64]) -> Self {
        let count = values.len() as f64;
        let mean = values.iter().sum::<f64>() / count;
        // Two passes: squared deviations from the mean avoid the cancellation of
        // the sum-of-squares formula when the variance is tiny.
        let variance = values.iter().map(|&x| (x - mean).powi(2)).sum::<f64>() / (count - 1.0);
        Summary {
            mean,
            variance,
            std: variance.sqrt(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::GraphFamily;

    fn graph(n: usize, edges: &[(usize, usize)]) -> Graph {
        Graph::new(9, GraphFamily::WattsStrogatz, n, edges.iter().copied()).expect("valid")
    }

    fn assert_close(actual: f64, expected: f64) {
        assert!((actual - expected).abs() <= 1e-12, "{actual} != {expected}");
    }

    #[test]
    fn path_of_three_nodes() {
        // 0 - 1 - 2: node 1 lies on the shortest path of the ordered pairs
        // (0, 2) and (2, 0); each edge carries 4 of the 6 ordered pairs.
        let p = graph_properties(&graph(3, &[(0, 1), (1, 2)])).expect("connected");
        assert_eq!((p.layers, p.nodes, p.edges), (3, 3, 2));
        assert_eq!((p.source_nodes, p.sink_nodes, p.diameter), (1, 1, 2));
        assert_close(p.density, 2.0 / 6.0);
        assert_close(p.average_shortest_path_length, 8.0 / 6.0);
        assert_close(p.eccentricity_mean, 5.0 / 3.0);
        assert_close(p.eccentricity_var, 1.0 / 3.0);
        assert_close(p.degree_mean, 2.0 / 3.0);
        assert_close(p.closeness_mean, (2.0 / 3.0 + 1.0 + 2.0 / 3.0) / 3.0);
        // Node betweenness: 2 ordered pairs through node 1, / ((n-1)(n-2)) = 2.
        assert_close(p.nodes_betweenness_mean, 1.0 / 3.0);
        assert_close(p.nodes_betweenness_var, 1.0 / 3.0);
        assert_close(p.edge_betweenness_mean, 4.0 / 6.0);
        assert_close(p.edge_betweenness_var, 0.0);
        assert_close(p.eccentricity_std, p.eccentricity_var.sqrt());
    }

    #[test]
    fn split_shortest_paths_share_betweenness() {
        // Square 0-1-3-2-0: the pair (0, 3) has two shortest paths, via 1 and via 2.
        let p = graph_properties(&graph(4, &[(0, 1), (1, 3), (0, 2), (2, 3)])).expect("connected");
        // Every node lies halfway on one unordered pair: raw 2 * 0.5 = 1 per node,
        // / (3 * 2).
        assert_close(p.nodes_betweenness_mean, 1.0 / 6.0);
        assert_close(p.nodes_betweenness_var, 0.0);
        // DAG: 0 → 1, 0 → 2, then 3: three layers, one source, one sink.
        assert_eq!((p.layers, p.source_nodes, p.sink_nodes), (3, 1, 1));
    }

    #[test]
    fn named_access_matches_array_order() {
        let p = graph_properties(&graph(3, &[(0, 1), (1, 2), (0, 2)])).expect("connected");
        let values = p.to_array();
        for (index, name) in PROPERTY_NAMES.iter().enumerate() {
            assert_eq!(p.get(name), Some(values[index]));
        }
        assert_eq!(p.get("test_acc"), None);
        // Serialized field order is the CSV column order.
        let json = serde_json::to_string(&p).expect("serializable");
        let positions: Vec<usize> = PROPERTY_NAMES
            .iter()
            .map(|name| json.find(&format!("\"{name}\":")).expect("field present"))
            .collect();
        assert!(positions.windows(2).all(|pair| pair[0] < pair[1]), "{json}");
    }

    #[test]
    fn disconnected_graph_names_its_id() {
        let error = graph_properties(&graph(4, &[(0, 1), (2, 3)])).expect_err("disconnected");
        assert_eq!(error, GraphError::Disconnected { id: 9 });
        assert!(error.to_string().contains("graph 9"));
    }

    #[test]
    fn tiny_graph_is_rejected() {
        assert_eq!(
            graph_properties(&graph(2, &[(0, 1)])),
            Err(GraphError::TooFewNodes { id: 9, n: 2 })
        );
    }

    #[test]
    fn many_keeps_order_and_errors() {
        let graphs = [
            graph(3, &[(0, 1), (1, 2)]),
            graph(4, &[(0, 1), (2, 3)]),
            graph(3, &[(0, 1), (1, 2), (0, 2)]),
        ];
        let results = properties_many(&graphs);
        assert_eq!(results.len(), 3);
        assert_eq!(results[0], graph_properties(&graphs[0]));
        assert!(results[1].is_err());
        assert_eq!(results[2].as_ref().map(|p| p.edges), Ok(3));
    }
}
