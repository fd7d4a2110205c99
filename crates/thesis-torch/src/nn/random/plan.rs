//! Planning a run: each network's initialisation seed, and cutting networks into groups of
//! similar shape.

use super::structure::NetworkStructure;

/// A network's initialisation seed, derived from the run's seed and the graph's id (SplitMix64
/// finaliser, so neighbouring ids get unrelated streams).
pub fn network_seed(run_seed: u64, graph_id: usize) -> u64 {
    let mut z = run_seed
        .wrapping_add(0x9E37_79B9_7F4A_7C15)
        .wrapping_add((graph_id as u64).wrapping_mul(0xBF58_476D_1CE4_E5B9));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Indices of `structures` cut into groups of at most `group_size`, after ordering by (layer
/// count, node count, position) so that a group's members have similar shapes and padding
/// stays small.
pub fn plan_groups(structures: &[NetworkStructure], group_size: usize) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..structures.len()).collect();
    order.sort_by_key(|&i| {
        let s = &structures[i];
        (s.layer_count(), s.layer_sizes.iter().sum::<usize>(), i)
    });
    order
        .chunks(group_size.max(1))
        .map(<[usize]>::to_vec)
        .collect()
}
