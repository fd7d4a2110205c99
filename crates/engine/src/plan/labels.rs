//! Instance labels: a matrix instance's values as one safe, unique, reversible path component.

use indexmap::IndexMap;
use serde_yaml::Value;

use crate::spec;

/// The longest label kept whole; longer ones are shortened and end in a hash of the whole.
const MAX_LABEL_BYTES: usize = 200;

/// An instance's label: its matrix values, each escaped, joined by `-`. It names the instance's
/// artifact directory and its entry in a fan-in, so it must be one safe path component and differ
/// whenever the values differ. Letters, digits and `. _ + =` stay as they are; every other byte
/// (`-` and `%` included) becomes `%XX`, so the joining `-` is never ambiguous and the label can
/// be read back. A value made only of dots (`.`, `..`) has its dots escaped too.
pub fn matrix_label(matrix: &IndexMap<String, Value>) -> String {
    let label = matrix
        .values()
        .map(|v| escape_label_value(&spec::scalar_text(v).unwrap_or_default()))
        .collect::<Vec<_>>()
        .join("-");
    if label.len() <= MAX_LABEL_BYTES {
        return label;
    }
    // `~` never appears in an escaped value, so a shortened label cannot equal a whole one.
    let mut cut = MAX_LABEL_BYTES - 20;
    while !label.is_char_boundary(cut) {
        cut -= 1;
    }
    let hash = blake3::hash(label.as_bytes()).to_hex();
    format!("{}~{}", &label[..cut], &hash[..16])
}

fn escape_label_value(text: &str) -> String {
    let only_dots = !text.is_empty() && text.bytes().all(|b| b == b'.');
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        let keep = (byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'_' | b'+' | b'='))
            && !(only_dots && byte == b'.');
        if keep {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn label(values: &[&str]) -> String {
        let matrix: IndexMap<String, Value> = values
            .iter()
            .enumerate()
            .map(|(i, v)| (format!("k{i}"), Value::String(v.to_string())))
            .collect();
        matrix_label(&matrix)
    }

    #[test]
    fn labels_of_different_values_differ() {
        assert_ne!(label(&["x", "y-z"]), label(&["x-y", "z"]));
        let many = ["é", "ü", "a/b", "a_b", "a b", "a*b", "a%2Fb", "-"];
        let labels: HashSet<String> = many.iter().map(|v| label(&[v])).collect();
        assert_eq!(labels.len(), many.len());
    }

    #[test]
    fn labels_are_single_safe_path_components() {
        for value in [".", "..", "...", "a/../b", "/etc"] {
            let l = label(&[value]);
            assert!(!l.contains('/') && l != "." && l != "..", "{value} → {l}");
        }
        assert_eq!(label(&["rnn_tanh", "0.5"]), "rnn_tanh-0.5");
        assert_eq!(label(&[".."]), "%2E%2E");
    }

    #[test]
    fn long_labels_are_shortened_and_stay_distinct() {
        let a = "a".repeat(300);
        let b = format!("{}b", "a".repeat(299));
        assert!(label(&[&a]).len() <= MAX_LABEL_BYTES);
        assert_ne!(label(&[&a]), label(&[&b]));
    }
}
