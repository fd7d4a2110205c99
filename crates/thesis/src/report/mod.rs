//! The HTML report (and a Markdown summary) of a pipeline run: one self-contained file with inline
//! SVG charts, no scripts, fonts or network, and the thesis's numbers beside ours for every figure
//! SPEC lists. Every upstream result is optional; a missing one leaves its section saying "not
//! run". Rendering is a pure function of the inputs and the run information, so the same inputs
//! give byte-identical output.

pub mod svg;
pub mod thesis;

mod common;
mod sections;
mod summary;

pub use summary::render_summary;

use std::fmt::Write as _;

use crate::analysis::Table;
use sections::{
    base_section, correlation_section, pearson_tables_section, pruning_section, random_section,
    regression_section, retraining_section, run_section, scatter_section, seeds_section,
    thesis_models_section,
};
use svg::escape;

pub use crate::model::Variant;

/// How the report names a variant: titles, the thesis's table keys, and fan-in labels.
pub trait VariantText {
    fn title(self) -> &'static str;
    /// The `mode` column of the thesis's `r_squared.csv`.
    fn thesis_mode(self) -> &'static str;
    /// Thesis table number of the variant's Pearson table.
    fn pearson_table(self) -> &'static str;
}

impl VariantText for Variant {
    fn title(self) -> &'static str {
        match self {
            Variant::RnnTanh => "RNN-tanh",
            Variant::RnnRelu => "RNN-ReLU",
            Variant::Lstm => "LSTM",
            Variant::Gru => "GRU",
        }
    }

    fn thesis_mode(self) -> &'static str {
        match self {
            Variant::RnnTanh => "RNN_TANH",
            Variant::RnnRelu => "RNN_RELU",
            Variant::Lstm => "LSTM",
            Variant::Gru => "GRU",
        }
    }

    fn pearson_table(self) -> &'static str {
        match self {
            Variant::RnnTanh => "6.1",
            Variant::RnnRelu => "6.2",
            Variant::Lstm => "6.3",
            Variant::Gru => "6.4",
        }
    }
}

/// Recognises a fan-in label such as `lstm`, `lstm-both`, `rnn_tanh-ih` or `RNN_ReLU`.
pub fn variant_from_label(label: &str) -> Option<Variant> {
    let lower = label.to_ascii_lowercase();
    if lower.contains("relu") {
        Some(Variant::RnnRelu)
    } else if lower.contains("tanh") {
        Some(Variant::RnnTanh)
    } else if lower.contains("lstm") {
        Some(Variant::Lstm)
    } else if lower.contains("gru") {
        Some(Variant::Gru)
    } else {
        None
    }
}

/// Which weights a pruning run pruned, in the order the thesis reports them.
const PRUNE_MODES: [(&str, &str, &str); 3] = [
    ("both", "_prune", "ih + hh"),
    ("ih", "_prune_i2h", "ih only"),
    ("hh", "_prune_h2h", "hh only"),
];

/// Upstream results, each a list of (fan-in label, table); any may be empty.
#[derive(Debug, Clone, Default)]
pub struct ReportInputs {
    /// `metrics.csv` of `rnn.train` per variant.
    pub base: Vec<(String, Table)>,
    /// `curves.csv` of `rnn.prune`.
    pub prune: Vec<(String, Table)>,
    /// `summary.csv` of `rnn.prune`.
    pub prune_summary: Vec<(String, Table)>,
    /// `results.csv` of `rnn.train_random` (`id,family,test_acc,...`).
    pub random: Vec<(String, Table)>,
    /// Per-network tables with the 23 properties and `test_acc` (`analysis.join`/`data.table`).
    pub networks: Vec<(String, Table)>,
    /// `correlations.csv` of `analysis.correlate`.
    pub correlations: Vec<(String, Table)>,
    /// `r2.csv` of `analysis.regress`.
    pub r2: Vec<(String, Table)>,
    /// `subsets.csv` of `analysis.regress`.
    pub subsets: Vec<(String, Table)>,
    /// `safe.json` of each `rnn.prune` instance (the unpruned accuracy it measured).
    pub prune_safe: Vec<(String, PruneSafe)>,
    /// Optional per-stage timings (any columns, shown as given).
    pub timings: Option<Table>,
}

/// The part of `rnn.prune`'s `safe.json` the report reads.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
pub struct PruneSafe {
    pub unpruned_test_acc: f64,
    pub safe_level: Option<u32>,
}

impl ReportInputs {
    fn labels(&self) -> Vec<(&'static str, Vec<&str>)> {
        fn names(items: &[(String, Table)]) -> Vec<&str> {
            items.iter().map(|(l, _)| l.as_str()).collect()
        }
        vec![
            ("base", names(&self.base)),
            ("prune", names(&self.prune)),
            ("prune_summary", names(&self.prune_summary)),
            (
                "prune_safe",
                self.prune_safe.iter().map(|(l, _)| l.as_str()).collect(),
            ),
            ("random", names(&self.random)),
            ("networks", names(&self.networks)),
            ("correlations", names(&self.correlations)),
            ("r2", names(&self.r2)),
            ("subsets", names(&self.subsets)),
        ]
    }
}

/// What was run: shown at the top of the report.
#[derive(Debug, Clone)]
pub struct RunInfo {
    pub title: String,
    pub instance: String,
    pub seed: u64,
    /// When the run happened, as the pipeline states it (never read from the clock).
    pub when: Option<String>,
    /// Free text from the pipeline (what this run is for).
    pub description: Option<String>,
    /// The report stage's own parameters.
    pub params: serde_json::Value,
}

struct Html {
    body: String,
    toc: Vec<(String, String)>,
    missing: Vec<String>,
}

impl Html {
    fn section(&mut self, id: &str, title: &str) {
        self.toc.push((id.to_string(), title.to_string()));
        let _ = write!(self.body, r#"<h2 id="{id}">{}</h2>"#, escape(title));
    }
}

const CSS: &str = "body{font-family:sans-serif;margin:24px;max-width:1400px;color:#222}\
h1{font-size:22px}h2{border-bottom:1px solid #ccc;padding-top:12px}h3{margin:14px 0 4px}\
.grid{display:flex;flex-wrap:wrap;gap:10px;align-items:flex-start}\
.card{border:1px solid #ddd;padding:6px;background:#fafafa}\
table{border-collapse:collapse;margin:6px 0 12px}td,th{border:1px solid #ccc;padding:2px 7px;font-size:12px;text-align:right}\
th{background:#eee}td:first-child,th:first-child{text-align:left}\
.notrun{color:#a33;font-style:italic}.note{color:#555;font-size:13px}\
pre{background:#f4f4f4;padding:8px;font-size:12px;overflow:auto}\
.key span{display:inline-block;width:14px;height:10px;margin:0 3px 0 10px}";

/// Renders the whole report.
pub fn render_html(inputs: &ReportInputs, run: &RunInfo) -> String {
    let mut html = Html {
        body: String::new(),
        toc: Vec::new(),
        missing: Vec::new(),
    };
    run_section(&mut html, inputs, run);
    thesis_models_section(&mut html, inputs);
    seeds_section(&mut html, inputs);
    base_section(&mut html, inputs);
    pruning_section(&mut html, inputs);
    retraining_section(&mut html, inputs);
    random_section(&mut html, inputs);
    scatter_section(&mut html, inputs);
    correlation_section(&mut html, inputs);
    pearson_tables_section(&mut html, inputs);
    regression_section(&mut html, inputs);
    let mut out = String::new();
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{t}</title><style>{CSS}</style></head><body><h1>{t}</h1><nav><strong>Contents</strong><ol>",
        t = escape(&run.title)
    );
    for (id, title) in &html.toc {
        let _ = write!(out, r##"<li><a href="#{id}">{}</a></li>"##, escape(title));
    }
    out.push_str("</ol></nav>");
    if !html.missing.is_empty() {
        let _ = write!(
            out,
            r#"<p class="notrun">Not run in this pipeline: {}.</p>"#,
            escape(&html.missing.join("; "))
        );
    }
    out.push_str(&html.body);
    out.push_str("</body></html>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use common::{as_percent, family_of};

    #[test]
    fn labels_name_variants() {
        assert_eq!(variant_from_label("lstm-both"), Some(Variant::Lstm));
        assert_eq!(variant_from_label("RNN_ReLU"), Some(Variant::RnnRelu));
        assert_eq!(variant_from_label("rnn_tanh-hh"), Some(Variant::RnnTanh));
        assert_eq!(variant_from_label("mlp"), None);
        assert_eq!(as_percent(&[0.1, 1.0]), vec![10.0, 100.0]);
        assert_eq!(family_of("watts_strogatz"), Some("WS"));
    }
}
