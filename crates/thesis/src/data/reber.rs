//! Reber-grammar generator: valid strings are random walks of the Reber
//! automaton, invalid strings are walks of the same graph whose ten edges carry
//! other letters, all framed by `B…E`. The defaults ([`GeneratorParams::default`])
//! rebuild the thesis's dataset as its published data shows it was made.
//!
//! What `data/thesis/reber_sequences.csv` reveals about the unpublished
//! original generator (and why the defaults differ from a naive reading of
//! the measured edge frequencies):
//! - Every Reber string of length 11..=20 occurs exactly once (24, 36, 53, …,
//!   783 strings: all there are), and longer lengths thin out as if each string
//!   of length L had been drawn with probability 2^-(L-2). So each set of
//!   strings was filled with walks that pick either edge at every fork with
//!   probability 1/2, keeping a walk only if its length is in range and the
//!   string is new, until the set held its quota. The edge frequencies that
//!   the kept strings show (start→T 0.59, 4→S 0.10, …) are an effect of this
//!   de-duplication, not the generator's probabilities; walks with those
//!   probabilities give a length histogram at total-variation distance 0.51
//!   from the original, the even walks with de-duplication 0.01.
//! - The invalid strings come from eight label sets with quotas 1500, 1500,
//!   500, 2000 (Reber letters only, 5,500) and 2000, 2000, 1500, 1500 (7,000);
//!   the last two are `MNOQCAURFD` and `QOMNCAURFD` (the `?` of the spec: the
//!   first set uses N, the second O; every string via edge 1→3 fits that and
//!   the quotas then come out exactly 1500 each). Strings are distinct within
//!   a set but not across sets: the original has 8 strings twice, produced by
//!   both `MNOQWVURZY` and `MNOQCAURFD`.

use std::collections::HashSet;

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::dataset::{DataError, Dataset, Row, Split, TestSize};

/// The ten edges of the Reber graph as (from, to) states, in the order that
/// label sets use. State 0 -B-> 1 and 6 -E-> end frame every string. Each
/// state 1..=5 owns edges `2(s-1)` and `2(s-1)+1`.
pub const REBER_EDGES: [(usize, usize); 10] = [
    (1, 2),
    (1, 3),
    (2, 2),
    (2, 4),
    (3, 3),
    (3, 5),
    (4, 3),
    (4, 6),
    (5, 4),
    (5, 6),
];

/// The letters of the real Reber grammar on [`REBER_EDGES`].
pub const REBER_LABELS: &str = "TPSXTVXSPV";

const START_STATE: usize = 1;
const END_STATE: usize = 6;

/// Probability of taking each state's edge that leads towards the end, at the
/// forks of the walk (the other edge gets the rest).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ForkProbabilities {
    /// State 1: edge 1→2 (Reber letter T); the other is 1→3 (P).
    pub one_to_two: f64,
    /// State 2: edge 2→4 (X); the other is the loop 2→2 (S).
    pub two_to_four: f64,
    /// State 3: edge 3→5 (V); the other is the loop 3→3 (T).
    pub three_to_five: f64,
    /// State 4: edge 4→6 (S, to the end); the other is 4→3 (X).
    pub four_to_six: f64,
    /// State 5: edge 5→6 (V, to the end); the other is 5→4 (P).
    pub five_to_six: f64,
}

impl ForkProbabilities {
    /// Either edge with probability 1/2: what the thesis's data fits.
    pub fn even() -> Self {
        Self {
            one_to_two: 0.5,
            two_to_four: 0.5,
            three_to_five: 0.5,
            four_to_six: 0.5,
            five_to_six: 0.5,
        }
    }

    /// The edge frequencies measured in the thesis's kept valid strings
    /// (SPEC §1). They describe the de-duplicated result, not the walk; use
    /// them with `distinct_within_set = false` only to study that reading.
    pub fn measured_in_thesis_strings() -> Self {
        Self {
            one_to_two: 0.59,
            two_to_four: 0.32,
            three_to_five: 0.36,
            four_to_six: 0.10,
            five_to_six: 0.15,
        }
    }

    /// Probability that the walk takes the second edge of `state` (1..=5).
    fn second_edge(&self, state: usize) -> f64 {
        match state {
            1 => 1.0 - self.one_to_two,
            2 => self.two_to_four,
            3 => self.three_to_five,
            4 => self.four_to_six,
            _ => self.five_to_six,
        }
    }

    fn named_values(&self) -> [(&'static str, f64); 5] {
        [
            ("one_to_two", self.one_to_two),
            ("two_to_four", self.two_to_four),
            ("three_to_five", self.three_to_five),
            ("four_to_six", self.four_to_six),
            ("five_to_six", self.five_to_six),
        ]
    }
}

impl Default for ForkProbabilities {
    fn default() -> Self {
        Self::even()
    }
}

/// One relabelling of the Reber graph used for invalid strings: ten letters
/// in [`REBER_EDGES`] order, and a weight giving its share of the invalid
/// strings (the thesis's own counts by default).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct LabelSet {
    pub labels: String,
    pub weight: usize,
}

impl LabelSet {
    pub fn new(labels: &str, weight: usize) -> Self {
        Self {
            labels: labels.to_owned(),
            weight,
        }
    }

    /// The eight label sets of the thesis, weighted by how many strings each
    /// contributed to its 12,500 invalid strings.
    pub fn thesis_sets() -> Vec<LabelSet> {
        vec![
            LabelSet::new("PTSXTVXSPV", 1500),
            LabelSet::new("TPSXTVPVXS", 1500),
            LabelSet::new("TPXSVTXSPV", 500),
            LabelSet::new("TPTVSXXSPV", 2000),
            LabelSet::new("ACDFJIHGLK", 2000),
            LabelSet::new("MNOQWVURZY", 2000),
            LabelSet::new("MNOQCAURFD", 1500),
            LabelSet::new("QOMNCAURFD", 1500),
        ]
    }
}

/// Everything that determines a generated dataset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GeneratorParams {
    /// Number of strings, valid and invalid together.
    pub total: usize,
    /// Share of valid strings (rounded to a count; the rest are invalid).
    pub valid_fraction: f64,
    /// Size of the test split, taken after shuffling.
    pub test: TestSize,
    /// Shortest kept string, counting `B` and `E`.
    pub min_len: usize,
    /// Longest kept string, counting `B` and `E`.
    pub max_len: usize,
    pub seed: u64,
    pub fork_probabilities: ForkProbabilities,
    /// Keep a walk only if its string is not yet in its set (the thesis did).
    pub distinct_within_set: bool,
    pub invalid_label_sets: Vec<LabelSet>,
}

impl Default for GeneratorParams {
    /// The thesis's dataset: 25,000 strings, half valid, 6,250 for testing,
    /// lengths 11..=53, even forks, distinct strings per set, its label sets.
    fn default() -> Self {
        Self {
            total: 25_000,
            valid_fraction: 0.5,
            test: TestSize::Count(6_250),
            min_len: 11,
            max_len: 53,
            seed: 0,
            fork_probabilities: ForkProbabilities::even(),
            distinct_within_set: true,
            invalid_label_sets: LabelSet::thesis_sets(),
        }
    }
}

impl GeneratorParams {
    fn valid_count(&self) -> usize {
        // Validated: 0 <= valid_fraction <= 1, so the product fits in total.
        (self.total as f64 * self.valid_fraction).round() as usize
    }

    /// Checks every parameter without generating anything.
    pub fn validate(&self) -> Result<(), DataError> {
        let invalid = |parameter: &str, reason: String| {
            Err(DataError::InvalidParameter {
                parameter: parameter.to_owned(),
                reason,
            })
        };
        if self.total == 0 {
            return invalid("total", "must be at least 1".into());
        }
        if !(0.0..=1.0).contains(&self.valid_fraction) {
            return invalid(
                "valid_fraction",
                format!("{} is not within 0..=1", self.valid_fraction),
            );
        }
        self.test.count_for(self.total)?;
        if self.min_len > self.max_len {
            return invalid(
                "min_len",
                format!("{} is larger than max_len {}", self.min_len, self.max_len),
            );
        }
        for (name, value) in self.fork_probabilities.named_values() {
            if !(0.0..=1.0).contains(&value) {
                return invalid(
                    &format!("fork_probabilities.{name}"),
                    format!("{value} is not a probability"),
                );
            }
        }
        for set in &self.invalid_label_sets {
            parse_labels(&set.labels)?;
        }
        let weight_sum: usize = self.invalid_label_sets.iter().map(|s| s.weight).sum();
        if self.valid_count() < self.total && weight_sum == 0 {
            return invalid(
                "invalid_label_sets",
                "invalid strings are requested but no label set has a positive weight".into(),
            );
        }
        Ok(())
    }
}

/// Whether `sequence` is a string of the real Reber grammar (`B`, a walk from
/// state 1 to state 6 with [`REBER_LABELS`], `E`).
pub fn accepts(sequence: &str) -> bool {
    const REBER: [u8; 10] = *b"TPSXTVXSPV";
    follows_labels(sequence.as_bytes(), &REBER)
}

/// Whether `sequence` is `B`, a complete walk labelled by `labels`, `E`.
/// Labels are deterministic per state (checked by `parse_labels`).
fn follows_labels(sequence: &[u8], labels: &[u8; 10]) -> bool {
    let Some(inner) = sequence
        .strip_prefix(b"B")
        .and_then(|rest| rest.strip_suffix(b"E"))
    else {
        return false;
    };
    let mut state = START_STATE;
    for &letter in inner {
        if state == END_STATE {
            return false;
        }
        let first = 2 * (state - 1);
        state = if labels[first] == letter {
            REBER_EDGES[first].1
        } else if labels[first + 1] == letter {
            REBER_EDGES[first + 1].1
        } else {
            return false;
        };
    }
    state == END_STATE
}

/// Validates a label set: ten printable ASCII letters other than the frame
/// letters `B`/`E`, the two edges of each state labelled differently (so a
/// string has exactly one walk and distinct walks give distinct strings).
fn parse_labels(labels: &str) -> Result<[u8; 10], DataError> {
    let reject = |reason: String| DataError::InvalidParameter {
        parameter: format!("invalid_label_sets[\"{labels}\"]"),
        reason,
    };
    let bytes: [u8; 10] = labels.as_bytes().try_into().map_err(|_| {
        reject(format!(
            "needs exactly 10 ASCII letters, one per edge in the order {REBER_EDGES:?}"
        ))
    })?;
    if let Some(bad) = bytes
        .iter()
        .find(|b| !b.is_ascii_graphic() || **b == b'B' || **b == b'E')
    {
        return Err(reject(format!(
            "letter {:?} is not printable ASCII or is a frame letter B/E",
            char::from(*bad)
        )));
    }
    for state in 1..=5 {
        let first = 2 * (state - 1);
        if bytes[first] == bytes[first + 1] {
            return Err(reject(format!(
                "both edges of state {state} are labelled {:?}",
                char::from(bytes[first])
            )));
        }
    }
    Ok(bytes)
}

/// Number of distinct walks (= distinct strings, labels being deterministic)
/// whose framed length lies in `min_len..=max_len`, saturating.
fn distinct_strings_in_range(min_len: usize, max_len: usize) -> u128 {
    // walks_at[s] = number of partial walks of the current length ending in s.
    let mut walks_at = [0u128; END_STATE + 1];
    walks_at[START_STATE] = 1;
    let mut total = 0u128;
    // A partial walk of k letters framed by B…E has length k + 2.
    for letters in 1..=max_len.saturating_sub(2) {
        let mut next = [0u128; END_STATE + 1];
        for &(from, to) in REBER_EDGES.iter() {
            next[to] = next[to].saturating_add(walks_at[from]);
        }
        if letters + 2 >= min_len {
            total = total.saturating_add(next[END_STATE]);
        }
        next[END_STATE] = 0;
        walks_at = next;
    }
    total
}

/// Writes one random walk labelled by `labels` into `out` (`B…E`). Returns
/// false, leaving `out` partial, as soon as the string cannot end within
/// `max_len` (so walks that never end cost bounded time).
fn random_walk(
    rng: &mut ChaCha8Rng,
    labels: &[u8; 10],
    forks: &ForkProbabilities,
    max_len: usize,
    out: &mut String,
) -> bool {
    out.clear();
    out.push('B');
    let mut state = START_STATE;
    while state != END_STATE {
        // This letter and the closing E must still fit.
        if out.len() + 2 > max_len {
            return false;
        }
        let first = 2 * (state - 1);
        let edge = if rng.random_bool(forks.second_edge(state)) {
            first + 1
        } else {
            first
        };
        out.push(char::from(labels[edge]));
        state = REBER_EDGES[edge].1;
    }
    out.push('E');
    true
}

/// Fills one set: `count` strings from walks labelled by `labels`, within the
/// length range, distinct if asked, and never a real Reber string when
/// `must_be_invalid` (such a walk is redrawn).
fn draw_set(
    rng: &mut ChaCha8Rng,
    params: &GeneratorParams,
    labels: &[u8; 10],
    count: usize,
    must_be_invalid: bool,
) -> Result<Vec<String>, DataError> {
    let set_name = || String::from_utf8_lossy(labels).into_owned();
    if params.distinct_within_set {
        let available = distinct_strings_in_range(params.min_len, params.max_len);
        if (count as u128) > available {
            return Err(DataError::InvalidParameter {
                parameter: "total".into(),
                reason: format!(
                    "label set `{}` needs {count} distinct strings but only {available} have \
                     length {}..={}; lower total, widen the length range, or set \
                     distinct_within_set = false",
                    set_name(),
                    params.min_len,
                    params.max_len
                ),
            });
        }
    }
    // Generous: the thesis's valid set needs about 160 walks per kept string.
    let max_attempts = 2_000 * count as u64 + 10_000_000;
    let mut kept = Vec::with_capacity(count);
    let mut seen: HashSet<String> = HashSet::with_capacity(count);
    let mut walk = String::with_capacity(params.max_len + 1);
    let mut attempts = 0u64;
    while kept.len() < count {
        if attempts == max_attempts {
            return Err(DataError::GeneratorExhausted {
                label_set: set_name(),
                wanted: count,
                found: kept.len(),
                attempts,
            });
        }
        attempts += 1;
        let ended = random_walk(
            rng,
            labels,
            &params.fork_probabilities,
            params.max_len,
            &mut walk,
        );
        if !ended || walk.len() < params.min_len {
            continue;
        }
        if must_be_invalid && accepts(&walk) {
            continue;
        }
        if params.distinct_within_set {
            if seen.contains(walk.as_str()) {
                continue;
            }
            seen.insert(walk.clone());
        }
        kept.push(walk.clone());
    }
    Ok(kept)
}

/// Splits `total` in proportion to `weights` (largest remainder, ties to the
/// earlier set), so the counts sum to `total` exactly.
fn apportion(total: usize, weights: &[usize]) -> Vec<usize> {
    let weight_sum: usize = weights.iter().sum();
    if weight_sum == 0 {
        return vec![0; weights.len()];
    }
    let mut counts: Vec<usize> = weights.iter().map(|w| total * w / weight_sum).collect();
    let mut remainders: Vec<(usize, usize)> = weights
        .iter()
        .enumerate()
        .map(|(index, w)| ((total * w) % weight_sum, index))
        .collect();
    remainders.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    let missing = total - counts.iter().sum::<usize>();
    for &(_, index) in remainders.iter().take(missing) {
        counts[index] += 1;
    }
    counts
}

/// Generates a shuffled, split Reber dataset; the same parameters (seed
/// included) always give the same dataset.
pub fn generate(params: &GeneratorParams) -> Result<Dataset, DataError> {
    params.validate()?;
    let mut rng = ChaCha8Rng::seed_from_u64(params.seed);
    let valid_count = params.valid_count();
    let invalid_count = params.total - valid_count;
    let test_count = params.test.count_for(params.total)?;

    let mut labelled: Vec<(String, bool)> = Vec::with_capacity(params.total);
    let reber = parse_labels(REBER_LABELS)?;
    for string in draw_set(&mut rng, params, &reber, valid_count, false)? {
        labelled.push((string, true));
    }
    let weights: Vec<usize> = params.invalid_label_sets.iter().map(|s| s.weight).collect();
    for (set, count) in params
        .invalid_label_sets
        .iter()
        .zip(apportion(invalid_count, &weights))
    {
        let labels = parse_labels(&set.labels)?;
        for string in draw_set(&mut rng, params, &labels, count, true)? {
            labelled.push((string, false));
        }
    }

    labelled.shuffle(&mut rng);
    let train_count = params.total - test_count;
    let rows = labelled
        .into_iter()
        .enumerate()
        .map(|(index, (string, valid))| Row {
            string,
            valid,
            split: if index < train_count {
                Split::Train
            } else {
                Split::Test
            },
        })
        .collect();
    Ok(Dataset { rows })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small_params(seed: u64) -> GeneratorParams {
        GeneratorParams {
            total: 2_000,
            test: TestSize::Fraction(0.25),
            seed,
            ..GeneratorParams::default()
        }
    }

    #[test]
    fn accepts_reber_strings_and_rejects_others() {
        for good in ["BTXSE", "BPVVE", "BTSSXXTVVE", "BPTVPXTTVVE", "BPTTTTVPSE"] {
            assert!(accepts(good), "{good}");
        }
        // The thesis's own examples of false strings (Table 4.1).
        for bad in [
            "BTTVPXTVPSE",
            "BPSXXTTVPSE",
            "BPSSSXXTVVE",
            "BTTTVPXTVVE",
            "BPSSXXTTVVE",
            "",
            "B",
            "BE",
            "TXSE",
            "BTXS",
            "BTXSEE",
            "BTXSXE",
        ] {
            assert!(!accepts(bad), "{bad}");
        }
    }

    #[test]
    fn distinct_string_count_matches_the_thesis_data() {
        // Every Reber string of length 11 and 12 is in the thesis's data.
        assert_eq!(distinct_strings_in_range(11, 11), 24);
        assert_eq!(distinct_strings_in_range(12, 12), 36);
        assert_eq!(distinct_strings_in_range(20, 20), 783);
        assert_eq!(distinct_strings_in_range(5, 5), 2);
    }

    #[test]
    fn apportion_is_exact_and_proportional() {
        let weights: Vec<usize> = LabelSet::thesis_sets().iter().map(|s| s.weight).collect();
        assert_eq!(
            apportion(12_500, &weights),
            vec![1500, 1500, 500, 2000, 2000, 2000, 1500, 1500]
        );
        let counts = apportion(1_001, &weights);
        assert_eq!(counts.iter().sum::<usize>(), 1_001);
        assert_eq!(apportion(3, &[1, 1]), vec![2, 1]);
    }

    #[test]
    fn small_dataset_has_exact_counts_lengths_and_validity() {
        let params = small_params(7);
        let dataset = generate(&params).unwrap();
        assert_eq!(dataset.rows.len(), 2_000);
        assert_eq!(dataset.rows.iter().filter(|r| r.valid).count(), 1_000);
        assert_eq!(
            dataset
                .rows
                .iter()
                .filter(|r| r.split == Split::Test)
                .count(),
            500
        );
        for row in &dataset.rows {
            assert!((11..=53).contains(&row.string.len()), "{}", row.string);
            assert_eq!(accepts(&row.string), row.valid, "{}", row.string);
        }
    }

    #[test]
    fn same_seed_same_dataset_other_seed_other_dataset() {
        let first = generate(&small_params(3)).unwrap();
        let again = generate(&small_params(3)).unwrap();
        let other = generate(&small_params(4)).unwrap();
        assert_eq!(first, again);
        assert_ne!(first, other);
    }

    #[test]
    fn rejects_bad_parameters() {
        let mut params = small_params(0);
        params.valid_fraction = 1.5;
        assert!(matches!(
            generate(&params),
            Err(DataError::InvalidParameter { .. })
        ));
        let mut params = small_params(0);
        params.invalid_label_sets = vec![LabelSet::new("TTSXTVXSPV", 1)];
        let message = generate(&params).unwrap_err().to_string();
        assert!(message.contains("state 1"), "{message}");
        let mut params = small_params(0);
        params.min_len = 11;
        params.max_len = 11;
        let message = generate(&params).unwrap_err().to_string();
        assert!(message.contains("only 24"), "{message}");
    }

    #[test]
    fn redraws_invalid_walks_that_spell_a_reber_string() {
        // Only the loop at state 2 differs from the Reber letters, so every
        // walk that skips that loop spells a valid string and must be redrawn.
        let params = GeneratorParams {
            total: 300,
            valid_fraction: 0.0,
            test: TestSize::Count(0),
            min_len: 5,
            invalid_label_sets: vec![LabelSet::new("TPQXTVXSPV", 1)],
            ..GeneratorParams::default()
        };
        let dataset = generate(&params).unwrap();
        assert_eq!(dataset.rows.len(), 300);
        assert!(dataset.rows.iter().all(|r| !r.valid && !accepts(&r.string)));
        assert!(dataset.rows.iter().all(|r| r.string.contains('Q')));
    }

    #[test]
    fn without_distinct_strings_repeat() {
        let params = GeneratorParams {
            total: 200,
            min_len: 5,
            max_len: 6,
            distinct_within_set: false,
            test: TestSize::Count(0),
            ..GeneratorParams::default()
        };
        let dataset = generate(&params).unwrap();
        let distinct: HashSet<&str> = dataset.rows.iter().map(|r| r.string.as_str()).collect();
        assert!(distinct.len() < 200);
    }
}
