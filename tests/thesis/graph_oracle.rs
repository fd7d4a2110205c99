//! Checks the graph properties against the thesis's recorded values: the 800
//! graphs of `thesis-data/graph_oracle.json` when the shared data is present,
//! and always the committed 40-graph subset in `tests/fixtures/`.

use std::collections::BTreeMap;
use std::path::Path;

use pipe::graph::{graph_properties, Graph, GraphFamily, PROPERTY_NAMES};
use serde::Deserialize;

use crate::common::{require, thesis_data_dir, Env};

/// One graph of `graph_oracle.json` with the thesis's recorded row.
#[derive(Deserialize)]
struct OracleRecord {
    mode: String,
    graph: GraphFamily,
    graph_nr: usize,
    nodes: Vec<usize>,
    edges: Vec<(usize, usize)>,
    /// Recorded values as strings, exactly as the CSV holds them.
    expected: BTreeMap<String, String>,
}

fn load_records(path: &Path) -> Vec<OracleRecord> {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|error| panic!("cannot read {}: {error}", path.display()));
    serde_json::from_str(&text)
        .unwrap_or_else(|error| panic!("cannot parse {}: {error}", path.display()))
}

fn close(actual: f64, expected: f64) -> bool {
    let tolerance = (1e-9 * expected.abs()).max(1e-12);
    (actual - expected).abs() <= tolerance
}

/// Compares every record's 23 properties; panics listing the mismatches.
fn check_records(records: &[OracleRecord]) {
    let mut mismatches = Vec::new();
    let mut matched_graphs = 0;
    for record in records {
        let label = format!("{} {} #{}", record.mode, record.graph, record.graph_nr);
        assert_eq!(
            record.nodes,
            (0..record.nodes.len()).collect::<Vec<_>>(),
            "{label}: nodes are not 0..n"
        );
        let graph = Graph::new(
            record.graph_nr,
            record.graph,
            record.nodes.len(),
            record.edges.iter().copied(),
        )
        .unwrap_or_else(|error| panic!("{label}: {error}"));
        let properties = match graph_properties(&graph) {
            Ok(properties) => properties,
            Err(error) => {
                mismatches.push(format!("{label}: {error}"));
                continue;
            }
        };
        let mut all_close = true;
        for name in PROPERTY_NAMES {
            let recorded = &record.expected[name];
            let expected: f64 = recorded
                .parse()
                .unwrap_or_else(|error| panic!("{label}: {name} = {recorded:?}: {error}"));
            let actual = properties.get(name).expect("known property");
            if !close(actual, expected) {
                all_close = false;
                mismatches.push(format!("{label}: {name} = {actual}, recorded {expected}"));
            }
        }
        matched_graphs += usize::from(all_close);
    }
    println!(
        "{matched_graphs} of {} graphs match on all 23 properties",
        records.len()
    );
    assert!(
        mismatches.is_empty(),
        "{} mismatches, first ones:\n{}",
        mismatches.len(),
        mismatches
            .iter()
            .take(30)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[test]
fn committed_subset_matches_the_thesis() {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/graph_oracle_subset.json");
    let records = load_records(&path);
    assert_eq!(records.len(), 40);
    check_records(&records);
}

#[test]
#[ignore = "needs the thesis's data: make test runs it when ../shared/thesis-data is there"]
fn all_thesis_graphs_match() {
    let dir = thesis_data_dir("graph_oracle.json");
    if !require(
        "all_thesis_graphs_match",
        Env::ThesisData,
        dir.as_ref().map(|_| ()).map_err(Clone::clone),
    ) {
        return;
    }
    let Ok(dir) = dir else { return };
    let path = dir.join("graph_oracle.json");
    let records = load_records(&path);
    assert_eq!(records.len(), 800);
    check_records(&records);
}
