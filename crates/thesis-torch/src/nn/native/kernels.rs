//! Scalar kernels over flat `f32` buffers: accumulation, dense products, weight gradients,
//! reductions and the activation functions, all written so their loops vectorise.
//!
//! Products are accumulated with `f32::mul_add` (fused, one rounding) so that the AVX2 and
//! AVX-512 builds use FMA instructions and the portable build the same correctly rounded
//! operation ([`super::isa`]). Element-wise kernels give the same bits for any register blocking;
//! reductions fix their logical lanes (8 or 32) so their order of additions is the same on every
//! path.

/// y += a·x (fused)
#[inline(always)]
pub(super) fn axpy(a: f32, x: &[f32], y: &mut [f32]) {
    for (y, &x) in y.iter_mut().zip(x) {
        *y = a.mul_add(x, *y);
    }
}

/// Lanes per block of [`accumulate`] and [`preactivation`]: four AVX-512 or eight AVX2
/// accumulators, enough independent chains to hide the fused multiply-add's latency. Each lane's
/// sum is the same for any block width.
const BLOCK_LANES: usize = 64;

/// `count` terms `weight(r) · sources[r·size ..]`: one sum of [`accumulate`] or [`preactivation`].
pub(super) struct Terms<'a, W: Fn(usize) -> f32> {
    pub(super) count: usize,
    pub(super) weight: W,
    pub(super) sources: &'a [f32],
}

impl<'a> Terms<'a, fn(usize) -> f32> {
    /// No terms (a row without a recurrent part, or the first step).
    pub(super) fn none() -> Self {
        Terms {
            count: 0,
            weight: |_| 0.0,
            sources: &[],
        }
    }
}

/// Adds the terms, zero weights skipped, to the block of lanes starting at `start`: fixed-size,
/// so the compiler keeps the lanes in registers.
#[inline(always)]
fn add_block<W: Fn(usize) -> f32>(
    lanes: &mut [f32; BLOCK_LANES],
    start: usize,
    terms: &Terms<'_, W>,
    size: usize,
) {
    for r in 0..terms.count {
        let w = (terms.weight)(r);
        if w == 0.0 {
            continue;
        }
        let at = r * size + start;
        let Ok(source) = <&[f32; BLOCK_LANES]>::try_from(&terms.sources[at..at + BLOCK_LANES])
        else {
            continue;
        };
        for l in 0..BLOCK_LANES {
            lanes[l] = w.mul_add(source[l], lanes[l]);
        }
    }
}

/// [`add_block`] for the lanes after the last full block.
#[inline(always)]
fn add_tail<W: Fn(usize) -> f32>(
    tail: &mut [f32],
    start: usize,
    terms: &Terms<'_, W>,
    size: usize,
) {
    for r in 0..terms.count {
        let w = (terms.weight)(r);
        if w != 0.0 {
            axpy(
                w,
                &terms.sources[r * size + start..r * size + start + tail.len()],
                tail,
            );
        }
    }
}

/// out[i] += Σ_r weight(r) · sources[r·size + i] over r = 0..count, for every i in ascending r
/// (so exactly what `count` calls of [`axpy`] compute), but a block of lanes at a time held in
/// registers: one load and store of `out` per block instead of one per term. Zero weights are
/// skipped (masked inputs).
#[inline(always)]
pub(super) fn accumulate(
    out: &mut [f32],
    count: usize,
    weight: impl Fn(usize) -> f32,
    sources: &[f32],
    size: usize,
) {
    let terms = Terms {
        count,
        weight,
        sources,
    };
    let full = out.len() / BLOCK_LANES * BLOCK_LANES;
    for (block, chunk) in out[..full].chunks_exact_mut(BLOCK_LANES).enumerate() {
        let mut lanes = [0f32; BLOCK_LANES];
        lanes.copy_from_slice(chunk);
        add_block(&mut lanes, block * BLOCK_LANES, &terms, size);
        chunk.copy_from_slice(&lanes);
    }
    if full < out.len() {
        add_tail(&mut out[full..], full, &terms, size);
    }
}

/// `out[i] = bias + Σ_r a(r)·a.sources[r·size + i] + Σ_r b(r)·b.sources[r·size + i]`, each sum in
/// ascending r with zero weights skipped: the same bits as `out.fill(bias)` and [`accumulate`]
/// with `a`, then with `b`, but one pass, each block held in registers from the bias to the last
/// term. (For the small rows of randomly structured networks, the separate fill showed as 12 % of
/// the forward pass in a profile.)
#[inline(always)]
pub(super) fn preactivation<A: Fn(usize) -> f32, B: Fn(usize) -> f32>(
    out: &mut [f32],
    bias: f32,
    a: &Terms<'_, A>,
    b: &Terms<'_, B>,
    size: usize,
) {
    let full = out.len() / BLOCK_LANES * BLOCK_LANES;
    for (block, chunk) in out[..full].chunks_exact_mut(BLOCK_LANES).enumerate() {
        let start = block * BLOCK_LANES;
        let mut lanes = [bias; BLOCK_LANES];
        add_block(&mut lanes, start, a, size);
        add_block(&mut lanes, start, b, size);
        chunk.copy_from_slice(&lanes);
    }
    if full < out.len() {
        let tail = &mut out[full..];
        tail.fill(bias);
        add_tail(tail, full, a, size);
        add_tail(tail, full, b, size);
    }
}

/// `out` (`rows × size`) += `weights` (`rows × count`, row-major) · `sources` (`count × size`):
/// [`accumulate`] for a dense matrix, four rows at a time so each source load serves four
/// rows. Per lane the terms are added in ascending r as there; zero weights are not skipped.
#[inline(always)]
pub(super) fn accumulate_rows(
    out: &mut [f32],
    weights: &[f32],
    count: usize,
    sources: &[f32],
    size: usize,
) {
    const ROWS: usize = 4;
    const LANES: usize = 16;
    let rows = out.len() / size;
    let full = size / LANES * LANES;
    let blocks = rows / ROWS;
    for block in 0..blocks {
        let w = &weights[block * ROWS * count..(block + 1) * ROWS * count];
        let (w0, rest) = w.split_at(count);
        let (w1, rest) = rest.split_at(count);
        let (w2, w3) = rest.split_at(count);
        let o = &mut out[block * ROWS * size..(block + 1) * ROWS * size];
        for start in (0..full).step_by(LANES) {
            let mut lanes = [[0f32; LANES]; ROWS];
            for (i, row) in lanes.iter_mut().enumerate() {
                row.copy_from_slice(&o[i * size + start..i * size + start + LANES]);
            }
            let terms = w0.iter().zip(w1).zip(w2.iter().zip(w3));
            for (r, ((&v0, &v1), (&v2, &v3))) in terms.enumerate() {
                let at = r * size + start;
                let Ok(x) = <&[f32; LANES]>::try_from(&sources[at..at + LANES]) else {
                    continue;
                };
                for l in 0..LANES {
                    lanes[0][l] = v0.mul_add(x[l], lanes[0][l]);
                    lanes[1][l] = v1.mul_add(x[l], lanes[1][l]);
                    lanes[2][l] = v2.mul_add(x[l], lanes[2][l]);
                    lanes[3][l] = v3.mul_add(x[l], lanes[3][l]);
                }
            }
            for (i, row) in lanes.iter().enumerate() {
                o[i * size + start..i * size + start + LANES].copy_from_slice(row);
            }
        }
        if full < size {
            for (i, w) in [w0, w1, w2, w3].into_iter().enumerate() {
                for (r, &weight) in w.iter().enumerate() {
                    axpy(
                        weight,
                        &sources[r * size + full..(r + 1) * size],
                        &mut o[i * size + full..(i + 1) * size],
                    );
                }
            }
        }
    }
    for j in blocks * ROWS..rows {
        let row = &weights[j * count..(j + 1) * count];
        accumulate(
            &mut out[j * size..(j + 1) * size],
            count,
            |r| row[r],
            sources,
            size,
        );
    }
}

/// `out` = `weights ∘ mask` (`rows × count`), transposed to `count × rows` when `transpose`;
/// `out` is a reused buffer, so a batch allocates nothing.
#[inline(always)]
pub(super) fn masked_weights(
    out: &mut Vec<f32>,
    weights: &[f32],
    mask: &[f32],
    rows: usize,
    count: usize,
    transpose: bool,
) {
    out.resize(rows * count, 0.0);
    for j in 0..rows {
        for k in 0..count {
            let value = weights[j * count + k] * mask[j * count + k];
            if transpose {
                out[k * rows + j] = value;
            } else {
                out[j * count + k] = value;
            }
        }
    }
}

/// `grads[j·count + k] += Σ_t Σ_b d(t, j)[b] · x(t, k)[b]` for live (unmasked) weights, over the
/// time steps `steps`: a matrix's weight gradients, four live inputs `k` of a row at a time (so
/// eight or more independent accumulator registers), each summed in 32 lanes across all steps
/// and reduced once. Which weights share a pass does not change any weight's sum.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub(super) fn weight_gradients<'a>(
    grads: &mut [f32],
    mask: &[f32],
    rows: usize,
    count: usize,
    steps: std::ops::Range<usize>,
    d: impl Fn(usize, usize) -> &'a [f32],
    x: impl Fn(usize, usize) -> &'a [f32],
) {
    const LANES: usize = 32;
    #[inline(always)]
    fn add_products(lanes: &mut [f32; LANES], tail: &mut f32, d: &[f32], x: &[f32]) {
        let (d_chunks, d_rest) = d.as_chunks::<LANES>();
        let (x_chunks, x_rest) = x.as_chunks::<LANES>();
        for (a, b) in d_chunks.iter().zip(x_chunks) {
            for l in 0..LANES {
                lanes[l] = a[l].mul_add(b[l], lanes[l]);
            }
        }
        for (&a, &b) in d_rest.iter().zip(x_rest) {
            *tail = a.mul_add(b, *tail);
        }
    }
    #[inline(always)]
    fn reduce(lanes: &[f32; LANES], tail: f32) -> f32 {
        let mut half = [0f32; 8];
        for (l, value) in lanes.iter().enumerate() {
            half[l % 8] += value;
        }
        ((half[0] + half[4]) + (half[1] + half[5]))
            + ((half[2] + half[6]) + (half[3] + half[7]))
            + tail
    }
    let mut live = [0usize; 4];
    for j in 0..rows {
        let row_mask = &mask[j * count..(j + 1) * count];
        let mut ks = (0..count).filter(|&k| row_mask[k] != 0.0);
        loop {
            let mut found = 0;
            for slot in live.iter_mut() {
                let Some(k) = ks.next() else { break };
                *slot = k;
                found += 1;
            }
            if found == 4 {
                let (mut l0, mut l1, mut l2, mut l3) =
                    ([0f32; LANES], [0f32; LANES], [0f32; LANES], [0f32; LANES]);
                let mut tails = [0f32; 4];
                for t in steps.clone() {
                    let d_row = d(t, j);
                    add_products(&mut l0, &mut tails[0], d_row, x(t, live[0]));
                    add_products(&mut l1, &mut tails[1], d_row, x(t, live[1]));
                    add_products(&mut l2, &mut tails[2], d_row, x(t, live[2]));
                    add_products(&mut l3, &mut tails[3], d_row, x(t, live[3]));
                }
                for (lanes, (&k, &tail)) in [l0, l1, l2, l3].iter().zip(live.iter().zip(&tails)) {
                    grads[j * count + k] += reduce(lanes, tail);
                }
            } else {
                // The same per-weight sums one weight at a time.
                for &k in &live[..found] {
                    let mut lanes = [0f32; LANES];
                    let mut tail = 0f32;
                    for t in steps.clone() {
                        add_products(&mut lanes, &mut tail, d(t, j), x(t, k));
                    }
                    grads[j * count + k] += reduce(&lanes, tail);
                }
                break;
            }
        }
    }
}

/// Σ x·y with eight partial sums (fused), so the loop vectorises and always sums in the same
/// order.
#[inline(always)]
pub(super) fn dot(x: &[f32], y: &[f32]) -> f32 {
    let mut lanes = [0f32; 8];
    let chunks = x.len() / 8 * 8;
    for (xs, ys) in x[..chunks].chunks_exact(8).zip(y[..chunks].chunks_exact(8)) {
        for lane in 0..8 {
            lanes[lane] = xs[lane].mul_add(ys[lane], lanes[lane]);
        }
    }
    let mut tail = 0f32;
    for (&a, &b) in x[chunks..].iter().zip(&y[chunks..]) {
        tail = a.mul_add(b, tail);
    }
    ((lanes[0] + lanes[4]) + (lanes[1] + lanes[5]))
        + ((lanes[2] + lanes[6]) + (lanes[3] + lanes[7]))
        + tail
}

#[inline(always)]
pub(super) fn sum(x: &[f32]) -> f32 {
    let mut lanes = [0f32; 8];
    let chunks = x.len() / 8 * 8;
    for xs in x[..chunks].chunks_exact(8) {
        for lane in 0..8 {
            lanes[lane] += xs[lane];
        }
    }
    let tail: f32 = x[chunks..].iter().sum();
    ((lanes[0] + lanes[4]) + (lanes[1] + lanes[5]))
        + ((lanes[2] + lanes[6]) + (lanes[3] + lanes[7]))
        + tail
}

/// e^x for f32 without a libm call (Cephes' polynomial after reducing by powers of two, evaluated
/// with fused multiply-adds), written with plain arithmetic and integer bit operations only, so
/// loops over it vectorise; relative error about 2e-7.
#[inline(always)]
pub(super) fn exp(x: f32) -> f32 {
    let x = x.clamp(-87.0, 88.0);
    // Round x·log2(e) to the nearest integer n with the 1.5·2²³ trick: afterwards the low bits of
    // `shifted` hold n, so 2ⁿ is built from them without a float-to-int conversion.
    const SHIFTER: f32 = 12_582_912.0;
    let shifted = x.mul_add(std::f32::consts::LOG2_E, SHIFTER);
    let n = shifted - SHIFTER;
    let r = n.mul_add(2.121_944_4e-4, n.mul_add(-0.693_359_4, x));
    let p = 1.987_569_1e-4f32.mul_add(r, 1.398_199_9e-3);
    let p = p.mul_add(r, 8.333_452e-3);
    let p = p.mul_add(r, 4.166_579_6e-2);
    let p = p.mul_add(r, 1.666_666_5e-1);
    let p = p.mul_add(r, 0.5);
    let p = p.mul_add(r * r, r) + 1.0;
    let power = f32::from_bits(
        shifted
            .to_bits()
            .wrapping_sub(SHIFTER.to_bits())
            .wrapping_add(127)
            << 23,
    );
    p * power
}

#[inline(always)]
pub(super) fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + exp(-x))
}

#[inline(always)]
pub(super) fn tanh(x: f32) -> f32 {
    // 1 − 2/(e^{2x} + 1) saturates correctly at both ends; near 0 the error is absolute (~1e-7).
    1.0 - 2.0 / (exp(2.0 * x) + 1.0)
}

#[inline(always)]
pub(super) fn sigmoid_in_place(values: &mut [f32]) {
    for v in values {
        *v = sigmoid(*v);
    }
}

#[inline(always)]
pub(super) fn tanh_in_place(values: &mut [f32]) {
    for v in values {
        *v = tanh(*v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(count: usize, seed: u32) -> Vec<f32> {
        (0..count)
            .map(|i| {
                let x = (i as u32).wrapping_mul(2_654_435_761).wrapping_add(seed) >> 8;
                x as f32 / (1u32 << 24) as f32 - 0.5
            })
            .collect()
    }

    #[test]
    fn blocked_accumulation_is_bit_identical_to_one_axpy_per_term() {
        // Full blocks only (128), a block and a remainder (100), remainders only (62, 7).
        for size in [128usize, 100, 62, 7] {
            let count = 9;
            let sources = values(count * size, 1);
            let mut weights = values(count, 2);
            weights[3] = 0.0;
            let mut expected = values(size, 3);
            let mut blocked = expected.clone();
            for (r, &w) in weights.iter().enumerate() {
                axpy(w, &sources[r * size..(r + 1) * size], &mut expected);
            }
            accumulate(&mut blocked, count, |r| weights[r], &sources, size);
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&blocked), bits(&expected), "size {size}");
        }
    }

    #[test]
    fn a_preactivation_is_bit_identical_to_a_fill_and_two_accumulations() {
        for size in [128usize, 100, 62, 7] {
            let (count_a, count_b) = (9, 4);
            let sources_a = values(count_a * size, 6);
            let sources_b = values(count_b * size, 7);
            let mut weights_a = values(count_a, 8);
            weights_a[2] = 0.0;
            let weights_b = values(count_b, 9);
            let bias = 0.37;
            let mut expected = vec![bias; size];
            accumulate(&mut expected, count_a, |r| weights_a[r], &sources_a, size);
            accumulate(&mut expected, count_b, |r| weights_b[r], &sources_b, size);
            let mut fused = values(size, 10);
            let a = Terms {
                count: count_a,
                weight: |r| weights_a[r],
                sources: &sources_a,
            };
            let b = Terms {
                count: count_b,
                weight: |r| weights_b[r],
                sources: &sources_b,
            };
            preactivation(&mut fused, bias, &a, &b, size);
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&fused), bits(&expected), "size {size}");
            preactivation(&mut fused, bias, &a, &Terms::none(), size);
            let mut only_a = vec![bias; size];
            accumulate(&mut only_a, count_a, |r| weights_a[r], &sources_a, size);
            assert_eq!(bits(&fused), bits(&only_a), "size {size}, no second sum");
        }
    }

    #[test]
    fn a_weights_gradient_does_not_depend_on_which_weights_share_its_pass() {
        let (rows, count, size, steps) = (3, 11, 70, 4);
        let d = values(steps * rows * size, 4);
        let x = values(steps * count * size, 5);
        let gradients = |mask: &[f32]| {
            let mut grads = vec![0f32; rows * count];
            weight_gradients(
                &mut grads,
                mask,
                rows,
                count,
                0..steps,
                |t, j| &d[(t * rows + j) * size..(t * rows + j + 1) * size],
                |t, k| &x[(t * count + k) * size..(t * count + k + 1) * size],
            );
            grads
        };
        let all = gradients(&vec![1.0; rows * count]);
        // Masking every third weight regroups the live ones (and leaves remainders of 1–3).
        let mask: Vec<f32> = (0..rows * count)
            .map(|i| if i % 3 == 1 { 0.0 } else { 1.0 })
            .collect();
        let some = gradients(&mask);
        for i in 0..rows * count {
            let expected = if mask[i] == 0.0 { 0.0 } else { all[i] };
            assert_eq!(some[i].to_bits(), expected.to_bits(), "weight {i}");
        }
        // And the sum is the gradient (against f64).
        let exact: f64 = (0..steps)
            .flat_map(|t| (0..size).map(move |b| (t, b)))
            .map(|(t, b)| f64::from(d[t * rows * size + b]) * f64::from(x[t * count * size + b]))
            .sum();
        assert!(
            (f64::from(all[0]) - exact).abs() < 1e-5,
            "{} vs {exact}",
            all[0]
        );
    }

    #[test]
    fn exp_sigmoid_and_tanh_match_libm() {
        for i in -2000..=2000 {
            let x = i as f32 / 100.0;
            let relative = |a: f32, b: f32| (a - b).abs() / b.abs().max(1e-30);
            assert!(relative(exp(x), x.exp()) < 1e-6, "exp({x})");
            assert!(
                (sigmoid(x) - 1.0 / (1.0 + (-x).exp())).abs() < 1e-6,
                "sigmoid({x})"
            );
            assert!((tanh(x) - x.tanh()).abs() < 1e-6, "tanh({x})");
        }
        // Clamped, not overflowing or underflowing to garbage.
        assert!(exp(-1000.0) > 0.0 && exp(-1000.0) < 1e-37);
        assert!(exp(1000.0).is_finite());
        assert_eq!(tanh(100.0), 1.0);
        assert_eq!(tanh(-100.0), -1.0);
    }
}
