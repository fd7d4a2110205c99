//! The thesis's own numbers, compiled into the binary from the vendored tables in
//! `data/thesis/results/` (MIT, Harshil Darji; see the README there) and from the tables printed in
//! the thesis text (`data/thesis/text_tables/`), so a report needs no files outside the build.

use crate::analysis::Table;

use super::{Variant, VariantText};

const PRUNE_RNN_TANH: &str = include_str!("../../../../data/thesis/results/prune/rnn_tanh.csv");
const PRUNE_RNN_RELU: &str = include_str!("../../../../data/thesis/results/prune/rnn_relu.csv");
const PRUNE_LSTM: &str = include_str!("../../../../data/thesis/results/prune/lstm.csv");
const PRUNE_GRU: &str = include_str!("../../../../data/thesis/results/prune/gru.csv");
const STRUCTURE_RNN_TANH: &str =
    include_str!("../../../../data/thesis/results/structure/rnn_tanh.csv");
const STRUCTURE_RNN_RELU: &str =
    include_str!("../../../../data/thesis/results/structure/rnn_relu.csv");
const STRUCTURE_LSTM: &str = include_str!("../../../../data/thesis/results/structure/lstm.csv");
const STRUCTURE_GRU: &str = include_str!("../../../../data/thesis/results/structure/gru.csv");
const R_SQUARED: &str = include_str!("../../../../data/thesis/results/regression/r_squared.csv");
const RF_SUBSETS: &str =
    include_str!("../../../../data/thesis/results/regression/rf_subsets_r_squared.csv");
const PEARSON_TEXT: &str =
    include_str!("../../../../data/thesis/text_tables/tables_6_1_to_6_4.csv");

/// Highest "safe" pruning percentage per mode (both, ih, hh), thesis ch. 7.2 (SPEC §3).
pub fn safe_prune_percent(variant: Variant) -> [u32; 3] {
    match variant {
        Variant::RnnTanh => [80, 70, 80],
        Variant::RnnRelu => [70, 70, 70],
        Variant::Lstm => [60, 70, 90],
        Variant::Gru => [80, 80, 90],
    }
}

fn parse(text: &str, origin: &str) -> Table {
    // The embedded files are fixed at compile time and covered by tests; an unreadable one would
    // be a build defect, shown as an empty table rather than a failed report.
    Table::parse(text, origin).unwrap_or_default()
}

/// `results/prune/<variant>.csv`: base training (mode = variant) and pruning rows.
pub fn prune_table(variant: Variant) -> Table {
    let text = match variant {
        Variant::RnnTanh => PRUNE_RNN_TANH,
        Variant::RnnRelu => PRUNE_RNN_RELU,
        Variant::Lstm => PRUNE_LSTM,
        Variant::Gru => PRUNE_GRU,
    };
    parse(text, "thesis prune table")
}

/// `results/structure/<variant>.csv`: 200 random networks, 23 properties, `test_acc`, `graph`.
pub fn structure_table(variant: Variant) -> Table {
    let text = match variant {
        Variant::RnnTanh => STRUCTURE_RNN_TANH,
        Variant::RnnRelu => STRUCTURE_RNN_RELU,
        Variant::Lstm => STRUCTURE_LSTM,
        Variant::Gru => STRUCTURE_GRU,
    };
    parse(text, "thesis structure table")
}

/// Table 6.5 at full precision: (BayesianRidge, RandomForest, AdaBoost).
pub fn r_squared(variant: Variant) -> Option<[f64; 3]> {
    let table = parse(R_SQUARED, "thesis r_squared.csv");
    let row = table
        .rows
        .iter()
        .find(|row| row.first().map(String::as_str) == Some(variant.thesis_mode()))?;
    let value = |i: usize| row.get(i).and_then(|v| v.parse::<f64>().ok());
    Some([value(1)?, value(2)?, value(3)?])
}

/// Tables B.1/B.2 R² for a subset name of `analysis::feature_subsets` (only RNN_ReLU and GRU).
pub fn rf_subset_r2(variant: Variant, subset: &str) -> Option<f64> {
    let (column, thesis_row) = (
        match variant {
            Variant::RnnRelu => "RNN_ReLU",
            Variant::Gru => "GRU",
            _ => return None,
        },
        match subset {
            "without_nodes_edges" => "without_node_edge",
            "only_nodes_edges" => "only_node_edge",
            "only_variances" => "only_var",
            // "All properties" of Tables B.1/B.2 is the random forest of Table 6.5.
            "all" => return r_squared(variant).map(|r| r[1]),
            _ => return None,
        },
    );
    let table = parse(RF_SUBSETS, "thesis rf_subsets_r_squared.csv");
    let index = table.column_index(column).ok()?;
    table
        .rows
        .iter()
        .find(|row| row.first().map(String::as_str) == Some(thesis_row))
        .and_then(|row| row.get(index)?.parse().ok())
}

/// The correlations printed in Tables 6.1–6.4 (two decimals), in the text's order.
pub fn printed_pearson(variant: Variant) -> Vec<(String, f64)> {
    let table = parse(PEARSON_TEXT, "thesis Tables 6.1-6.4");
    table
        .rows
        .iter()
        .filter(|row| row.first().map(String::as_str) == Some(variant.name()))
        .filter_map(|row| Some((row.get(1)?.clone(), row.get(2)?.parse().ok()?)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_tables_parse() {
        for variant in Variant::ALL {
            assert_eq!(structure_table(variant).rows.len(), 200);
            assert_eq!(prune_table(variant).rows.len(), 380);
            assert!(r_squared(variant).is_some());
            assert_eq!(printed_pearson(variant).len(), 12);
        }
        assert_eq!(rf_subset_r2(Variant::Gru, "only_variances"), Some(0.76));
        assert_eq!(rf_subset_r2(Variant::Lstm, "only_variances"), None);
    }
}
