//! Turning strings into model input: each character becomes its ASCII code
//! (the embedding has 128 rows), and a batch is right-padded with code 0 to
//! its longest sequence, as the thesis did. Plain `Vec`s, so this module
//! needs no tensor library; the `nn` module wraps the result.

/// The code used for padding (ASCII NUL, never part of a Reber string).
pub const PAD_CODE: i64 = 0;

/// A batch of encoded sequences, right-padded with [`PAD_CODE`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaddedBatch {
    /// Row-major `[batch, max_len]` codes: sequence `i` occupies
    /// `tokens[i * max_len..(i + 1) * max_len]`.
    pub tokens: Vec<i64>,
    pub batch: usize,
    pub max_len: usize,
    /// True length of each sequence (i64, ready to become a tensor).
    pub lengths: Vec<i64>,
}

/// The character codes of `sequence`. Datasets from this module hold ASCII
/// only (checked on import), so every code is below 128.
pub fn encode(sequence: &str) -> Vec<i64> {
    sequence.chars().map(|c| i64::from(u32::from(c))).collect()
}

/// Encodes and right-pads a batch of strings.
pub fn pad_batch<S: AsRef<str>>(sequences: &[S]) -> PaddedBatch {
    let encoded: Vec<Vec<i64>> = sequences.iter().map(|s| encode(s.as_ref())).collect();
    pad_encoded(&encoded)
}

/// Right-pads already encoded sequences to the longest one.
pub fn pad_encoded(sequences: &[Vec<i64>]) -> PaddedBatch {
    let max_len = sequences.iter().map(Vec::len).max().unwrap_or(0);
    let mut tokens = Vec::with_capacity(sequences.len() * max_len);
    let mut lengths = Vec::with_capacity(sequences.len());
    for sequence in sequences {
        tokens.extend_from_slice(sequence);
        tokens.resize(tokens.len() + max_len - sequence.len(), PAD_CODE);
        // A Vec's length always fits in i64 on supported platforms.
        lengths.push(i64::try_from(sequence.len()).unwrap_or(i64::MAX));
    }
    PaddedBatch {
        tokens,
        batch: sequences.len(),
        max_len,
        lengths,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_ascii_codes() {
        assert_eq!(encode("BTXSE"), vec![66, 84, 88, 83, 69]);
        assert!(encode("").is_empty());
    }

    #[test]
    fn pads_right_with_zero() {
        let batch = pad_batch(&["BTXSE", "BPE", "BTSXSE"]);
        assert_eq!(batch.batch, 3);
        assert_eq!(batch.max_len, 6);
        assert_eq!(batch.lengths, vec![5, 3, 6]);
        assert_eq!(
            batch.tokens,
            vec![
                66, 84, 88, 83, 69, 0, //
                66, 80, 69, 0, 0, 0, //
                66, 84, 83, 88, 83, 69,
            ]
        );
    }

    #[test]
    fn empty_batch() {
        let batch = pad_batch::<&str>(&[]);
        assert_eq!((batch.batch, batch.max_len), (0, 0));
        assert!(batch.tokens.is_empty() && batch.lengths.is_empty());
    }
}
