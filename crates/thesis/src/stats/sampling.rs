//! Random draws built only on `RngCore::next_u64` of a seeded `ChaCha8Rng`, so results depend on
//! the ChaCha stream alone and not on how a `rand` release happens to implement ranges or shuffles.

use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// The generator every seeded routine in `stats` starts from.
pub(crate) fn seeded_rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

/// Uniform integer in `0..bound` (bound > 0), unbiased by rejection (Lemire's method).
pub(crate) fn uniform_index(rng: &mut ChaCha8Rng, bound: usize) -> usize {
    let bound = bound as u64;
    if bound <= 1 {
        return 0;
    }
    // Reject the few low products that would make some results more likely than others.
    let threshold = bound.wrapping_neg() % bound;
    loop {
        let product = u128::from(rng.next_u64()) * u128::from(bound);
        if (product as u64) >= threshold {
            return (product >> 64) as usize;
        }
    }
}

/// Uniform float in [0, 1) with 53 random bits.
pub(crate) fn uniform_unit(rng: &mut ChaCha8Rng) -> f64 {
    (rng.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// Fisher–Yates shuffle in place.
pub(crate) fn shuffle<T>(rng: &mut ChaCha8Rng, items: &mut [T]) {
    for i in (1..items.len()).rev() {
        let j = uniform_index(rng, i + 1);
        items.swap(i, j);
    }
}

/// A random permutation of `0..n`.
pub(crate) fn permutation(rng: &mut ChaCha8Rng, n: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    shuffle(rng, &mut order);
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_gives_same_permutation() {
        let a = permutation(&mut seeded_rng(3), 50);
        let b = permutation(&mut seeded_rng(3), 50);
        let c = permutation(&mut seeded_rng(4), 50);
        assert_eq!(a, b);
        assert_ne!(a, c);
        let mut sorted = a.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..50).collect::<Vec<_>>());
    }

    #[test]
    fn uniform_draws_stay_in_range() {
        let mut rng = seeded_rng(1);
        for bound in 1..20 {
            assert!(uniform_index(&mut rng, bound) < bound);
        }
        for _ in 0..1000 {
            let u = uniform_unit(&mut rng);
            assert!((0.0..1.0).contains(&u));
        }
    }
}
