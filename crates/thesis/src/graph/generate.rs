//! Seeded random graph generators: Barabási–Albert and connected Watts–Strogatz,
//! following networkx's algorithms step by step (same structure, not the same
//! random stream: Python's Mersenne Twister is not reproduced), and the generation
//! of a whole set of graphs for one experiment. All randomness comes from the
//! caller's `Rng`, so a seed fixes the result.

use std::collections::BTreeSet;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::{is_connected, Graph, GraphError, GraphFamily};

/// How a Barabási–Albert graph starts before preferential attachment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum BarabasiAlbertSeed {
    /// networkx >= 2.6: a star on nodes `0..=m` with centre 0; attachment
    /// starts at node `m + 1`.
    Star,
    /// Older networkx, what the thesis's graphs show: nodes `0..m` isolated, node
    /// `m` joined to all of them, attachment from node `m + 1` on.
    Legacy,
}

/// How the Barabási–Albert `m` or the Watts–Strogatz `k` is chosen for a graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ParameterRule {
    /// The same value for every graph.
    Fixed(usize),
    /// The thesis's rule: `m = n / 10` for Barabási–Albert, `k = n / 5` for
    /// Watts–Strogatz (integer division).
    Thesis,
}

impl ParameterRule {
    /// The parameter for a graph of `family` with `n` nodes.
    pub fn resolve(self, family: GraphFamily, n: usize) -> usize {
        match (self, family) {
            (ParameterRule::Fixed(value), _) => value,
            (ParameterRule::Thesis, GraphFamily::BarabasiAlbert) => n / 10,
            (ParameterRule::Thesis, GraphFamily::WattsStrogatz) => n / 5,
        }
    }
}

/// Everything that shapes a generated set of graphs, apart from the seed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct GenerationConfig {
    /// Graphs drawn per family.
    pub graphs_per_family: usize,
    /// Smallest node count (inclusive).
    pub min_nodes: usize,
    /// Largest node count (inclusive).
    pub max_nodes: usize,
    /// Barabási–Albert edges per new node, `m`.
    pub attachment: ParameterRule,
    /// Barabási–Albert starting graph.
    pub seed_graph: BarabasiAlbertSeed,
    /// Watts–Strogatz lattice degree, `k`.
    pub ring_neighbours: ParameterRule,
    /// Watts–Strogatz rewiring probability, `p`.
    pub rewire_probability: f64,
    /// Watts–Strogatz attempts to get a connected graph.
    pub connect_tries: usize,
}

impl Default for GenerationConfig {
    fn default() -> Self {
        Self::thesis()
    }
}

impl GenerationConfig {
    /// The thesis's settings (SPEC §4): 100 graphs per family, n in 10..=50,
    /// m = n / 10 with the legacy seed graph, k = n / 5, p = 1.0, 10 tries.
    pub fn thesis() -> Self {
        GenerationConfig {
            graphs_per_family: 100,
            min_nodes: 10,
            max_nodes: 50,
            attachment: ParameterRule::Thesis,
            seed_graph: BarabasiAlbertSeed::Legacy,
            ring_neighbours: ParameterRule::Thesis,
            rewire_probability: 1.0,
            connect_tries: 10,
        }
    }
}

/// Generates `graphs_per_family` Barabási–Albert graphs (ids `0..count`) and then
/// as many Watts–Strogatz graphs (ids `count..2 * count`), each with `n` drawn
/// uniformly from `min_nodes..=max_nodes`.
pub fn generate_graph_set<R: Rng + ?Sized>(
    config: &GenerationConfig,
    rng: &mut R,
) -> Result<Vec<Graph>, GraphError> {
    if config.min_nodes > config.max_nodes {
        return Err(GraphError::EmptyNodeRange {
            min: config.min_nodes,
            max: config.max_nodes,
        });
    }
    let count = config.graphs_per_family;
    let mut graphs = Vec::with_capacity(2 * count);
    for id in 0..count {
        let family = GraphFamily::BarabasiAlbert;
        let n = rng.random_range(config.min_nodes..=config.max_nodes);
        let m = config.attachment.resolve(family, n);
        let edges = barabasi_albert_edges(n, m, config.seed_graph, rng)?;
        graphs.push(Graph::new(id, family, n, edges)?);
    }
    for id in count..2 * count {
        let family = GraphFamily::WattsStrogatz;
        let n = rng.random_range(config.min_nodes..=config.max_nodes);
        let k = config.ring_neighbours.resolve(family, n);
        let edges = connected_watts_strogatz_edges(
            n,
            k,
            config.rewire_probability,
            config.connect_tries,
            rng,
        )?;
        graphs.push(Graph::new(id, family, n, edges)?);
    }
    Ok(graphs)
}

/// [`generate_graph_set`] driven by `ChaCha8Rng::seed_from_u64(seed)`, the
/// project's fixed choice of generator, so a seed alone names a graph set.
pub fn generate_graph_set_seeded(
    config: &GenerationConfig,
    seed: u64,
) -> Result<Vec<Graph>, GraphError> {
    generate_graph_set(config, &mut ChaCha8Rng::seed_from_u64(seed))
}

/// Edges of a Barabási–Albert graph on `n` nodes, `m` edges per new node.
///
/// Both seed graphs give exactly `m * (n - m)` edges: the star has `m` edges and
/// `n - m - 1` nodes attach with `m` each; the legacy start has `n - m` nodes
/// (node `m` included) attaching with `m` each.
pub fn barabasi_albert_edges<R: Rng + ?Sized>(
    n: usize,
    m: usize,
    seed_graph: BarabasiAlbertSeed,
    rng: &mut R,
) -> Result<Vec<(usize, usize)>, GraphError> {
    if m < 1 || m >= n {
        return Err(GraphError::InvalidBarabasiAlbert { n, m });
    }
    let mut edges = Vec::with_capacity(m * (n - m));
    // Each node appears once per incident edge, so a uniform pick from this list
    // is a degree-proportional pick.
    let mut repeated_nodes: Vec<usize> = Vec::with_capacity(2 * m * (n - m));
    match seed_graph {
        BarabasiAlbertSeed::Star => {
            for leaf in 1..=m {
                edges.push((0, leaf));
            }
            // networkx lists nodes in order, each repeated by its degree.
            repeated_nodes.extend(std::iter::repeat_n(0, m));
            repeated_nodes.extend(1..=m);
            for source in m + 1..n {
                let targets = random_subset(&repeated_nodes, m, rng);
                attach(source, &targets, &mut edges, &mut repeated_nodes);
            }
        }
        BarabasiAlbertSeed::Legacy => {
            let mut targets: Vec<usize> = (0..m).collect();
            for source in m..n {
                attach(source, &targets, &mut edges, &mut repeated_nodes);
                // Drawn after the last node too, as the old networkx loop did.
                targets = random_subset(&repeated_nodes, m, rng);
            }
        }
    }
    Ok(edges)
}

/// Joins `source` to every target and records the new degrees.
fn attach(
    source: usize,
    targets: &[usize],
    edges: &mut Vec<(usize, usize)>,
    repeated_nodes: &mut Vec<usize>,
) {
    edges.extend(targets.iter().map(|&target| (target, source)));
    repeated_nodes.extend_from_slice(targets);
    repeated_nodes.extend(std::iter::repeat_n(source, targets.len()));
}

/// `count` distinct entries of `pool`, drawn uniformly with repetition until
/// enough distinct ones are found (networkx's `_random_subset`), in ascending
/// order. `pool` must hold at least `count` distinct values.
fn random_subset<R: Rng + ?Sized>(pool: &[usize], count: usize, rng: &mut R) -> Vec<usize> {
    let mut chosen = BTreeSet::new();
    while chosen.len() < count {
        chosen.insert(pool[rng.random_range(0..pool.len())]);
    }
    chosen.into_iter().collect()
}

/// Edges of a connected Watts–Strogatz graph: up to `tries` independent draws of
/// [`watts_strogatz_edges`], returning the first connected one. Each has
/// `n * (k / 2)` edges (integer division: an odd `k` acts as `k - 1`).
pub fn connected_watts_strogatz_edges<R: Rng + ?Sized>(
    n: usize,
    k: usize,
    p: f64,
    tries: usize,
    rng: &mut R,
) -> Result<Vec<(usize, usize)>, GraphError> {
    if k < 2 || k >= n || !(0.0..=1.0).contains(&p) {
        return Err(GraphError::InvalidWattsStrogatz { n, k, p });
    }
    for _ in 0..tries {
        let neighbours = watts_strogatz_neighbours(n, k, p, rng);
        if is_connected(&neighbours) {
            let edges = neighbours
                .iter()
                .enumerate()
                .flat_map(|(u, list)| list.iter().filter(move |&&v| u < v).map(move |&v| (u, v)))
                .collect();
            return Ok(edges);
        }
    }
    Err(GraphError::WattsStrogatzNotConnected { n, k, p, tries })
}

/// One Watts–Strogatz draw as networkx's `watts_strogatz_graph`: a ring lattice
/// joining each node to its `k / 2` nearest neighbours on each side, then, round
/// by round (distance `j = 1..=k/2`) and node by node, the edge `(u, u + j)` is
/// moved with probability `p` to `(u, w)` for a uniform `w` that is neither `u`
/// nor already a neighbour (skipped when `u` is adjacent to every node).
fn watts_strogatz_neighbours<R: Rng + ?Sized>(
    n: usize,
    k: usize,
    p: f64,
    rng: &mut R,
) -> Vec<Vec<usize>> {
    let mut neighbours: Vec<BTreeSet<usize>> = vec![BTreeSet::new(); n];
    for distance in 1..=k / 2 {
        for u in 0..n {
            let v = (u + distance) % n;
            neighbours[u].insert(v);
            neighbours[v].insert(u);
        }
    }
    for distance in 1..=k / 2 {
        for u in 0..n {
            if rng.random::<f64>() >= p {
                continue;
            }
            let v = (u + distance) % n;
            let mut w = rng.random_range(0..n);
            let mut rewire = true;
            while w == u || neighbours[u].contains(&w) {
                w = rng.random_range(0..n);
                // networkx draws once more before noticing that `u` is saturated.
                if neighbours[u].len() >= n - 1 {
                    rewire = false;
                    break;
                }
            }
            if rewire {
                neighbours[u].remove(&v);
                neighbours[v].remove(&u);
                neighbours[u].insert(w);
                neighbours[w].insert(u);
            }
        }
    }
    neighbours
        .into_iter()
        .map(|set| set.into_iter().collect())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rng(seed: u64) -> ChaCha8Rng {
        ChaCha8Rng::seed_from_u64(seed)
    }

    #[test]
    fn star_seed_has_m_times_n_minus_m_edges() {
        for (n, m) in [(10, 1), (27, 2), (50, 5), (6, 5)] {
            let edges = barabasi_albert_edges(n, m, BarabasiAlbertSeed::Star, &mut rng(n as u64))
                .expect("valid parameters");
            let graph = Graph::new(0, GraphFamily::BarabasiAlbert, n, edges).expect("simple");
            assert_eq!(graph.edges.len(), m * (n - m), "n = {n}, m = {m}");
            assert!(graph.is_connected());
            // The star: node 0 joined to 1..=m.
            assert!((1..=m).all(|leaf| graph.edges.contains(&(0, leaf))));
        }
    }

    #[test]
    fn legacy_seed_has_m_times_n_minus_m_edges() {
        for (n, m) in [(10, 1), (27, 2), (50, 5), (6, 5)] {
            let edges = barabasi_albert_edges(n, m, BarabasiAlbertSeed::Legacy, &mut rng(n as u64))
                .expect("valid parameters");
            let graph = Graph::new(0, GraphFamily::BarabasiAlbert, n, edges).expect("simple");
            assert_eq!(graph.edges.len(), m * (n - m), "n = {n}, m = {m}");
            assert!(graph.is_connected());
            // Nodes 0..m start isolated, so node m is their only early neighbour:
            // no edges among 0..m, and each is joined to m.
            assert!(graph.edges.iter().all(|&(u, v)| !(u < m && v < m)));
            assert!((0..m).all(|node| graph.edges.contains(&(node, m))));
        }
    }

    #[test]
    fn barabasi_albert_rejects_bad_m() {
        for (n, m) in [(10, 0), (10, 10), (5, 7)] {
            assert_eq!(
                barabasi_albert_edges(n, m, BarabasiAlbertSeed::Star, &mut rng(1)),
                Err(GraphError::InvalidBarabasiAlbert { n, m })
            );
        }
    }

    #[test]
    fn watts_strogatz_is_connected_with_n_k_over_2_edges() {
        for (n, k, p) in [
            (10, 2, 1.0),
            (20, 4, 1.0),
            (33, 6, 0.3),
            (50, 10, 1.0),
            (15, 3, 1.0),
        ] {
            let edges = connected_watts_strogatz_edges(n, k, p, 100, &mut rng(n as u64))
                .expect("connected within 100 tries");
            let graph = Graph::new(0, GraphFamily::WattsStrogatz, n, edges).expect("simple");
            assert_eq!(graph.edges.len(), n * (k / 2), "n = {n}, k = {k}");
            assert!(graph.is_connected());
        }
    }

    #[test]
    fn watts_strogatz_without_rewiring_is_the_ring_lattice() {
        let edges = connected_watts_strogatz_edges(6, 4, 0.0, 1, &mut rng(0)).expect("connected");
        let mut expected: Vec<(usize, usize)> = (0..6)
            .flat_map(|u| [1, 2].map(|d| (u, (u + d) % 6)))
            .map(|(u, v)| (u.min(v), u.max(v)))
            .collect();
        expected.sort_unstable();
        assert_eq!(edges, expected);
    }

    #[test]
    fn watts_strogatz_rejects_bad_parameters_and_reports_failure() {
        assert!(matches!(
            connected_watts_strogatz_edges(10, 1, 0.5, 10, &mut rng(0)),
            Err(GraphError::InvalidWattsStrogatz { .. })
        ));
        assert!(matches!(
            connected_watts_strogatz_edges(10, 10, 0.5, 10, &mut rng(0)),
            Err(GraphError::InvalidWattsStrogatz { .. })
        ));
        assert!(matches!(
            connected_watts_strogatz_edges(10, 4, 1.5, 10, &mut rng(0)),
            Err(GraphError::InvalidWattsStrogatz { .. })
        ));
        assert!(matches!(
            connected_watts_strogatz_edges(10, 2, 1.0, 0, &mut rng(0)),
            Err(GraphError::WattsStrogatzNotConnected { tries: 0, .. })
        ));
    }

    #[test]
    fn thesis_rule_resolves_m_and_k() {
        assert_eq!(
            ParameterRule::Thesis.resolve(GraphFamily::BarabasiAlbert, 27),
            2
        );
        assert_eq!(
            ParameterRule::Thesis.resolve(GraphFamily::WattsStrogatz, 27),
            5
        );
        assert_eq!(
            ParameterRule::Fixed(3).resolve(GraphFamily::WattsStrogatz, 27),
            3
        );
    }

    #[test]
    fn graph_set_follows_the_config() {
        let config = GenerationConfig {
            graphs_per_family: 12,
            ..GenerationConfig::thesis()
        };
        let graphs = generate_graph_set_seeded(&config, 7).expect("generated");
        assert_eq!(graphs.len(), 24);
        for (index, graph) in graphs.iter().enumerate() {
            assert_eq!(graph.id, index);
            assert!((10..=50).contains(&graph.n));
            assert!(graph.is_connected());
            let (family, edge_count) = if index < 12 {
                let m = graph.n / 10;
                (GraphFamily::BarabasiAlbert, m * (graph.n - m))
            } else {
                (GraphFamily::WattsStrogatz, graph.n * (graph.n / 5 / 2))
            };
            assert_eq!(graph.family, family);
            assert_eq!(graph.edges.len(), edge_count);
        }
    }

    #[test]
    fn same_seed_same_graphs_different_seed_different_graphs() {
        let config = GenerationConfig {
            graphs_per_family: 10,
            ..GenerationConfig::thesis()
        };
        let first = generate_graph_set_seeded(&config, 42).expect("generated");
        let again = generate_graph_set_seeded(&config, 42).expect("generated");
        let other = generate_graph_set_seeded(&config, 43).expect("generated");
        assert_eq!(first, again);
        assert_ne!(first, other);
        // Star-seeded sets are reproducible too.
        let star = GenerationConfig {
            seed_graph: BarabasiAlbertSeed::Star,
            ..config
        };
        assert_eq!(
            generate_graph_set_seeded(&star, 5).expect("generated"),
            generate_graph_set_seeded(&star, 5).expect("generated")
        );
    }

    #[test]
    fn empty_node_range_is_an_error() {
        let config = GenerationConfig {
            min_nodes: 20,
            max_nodes: 10,
            ..GenerationConfig::thesis()
        };
        assert_eq!(
            generate_graph_set_seeded(&config, 0),
            Err(GraphError::EmptyNodeRange { min: 20, max: 10 })
        );
    }
}
