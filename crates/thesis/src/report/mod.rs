//! The HTML report (and a Markdown summary) of a pipeline run: one self-contained file with inline
//! SVG charts, no scripts, fonts or network, and the thesis's numbers beside ours for every figure
//! SPEC lists. Every upstream result is optional; a missing one leaves its section saying "not
//! run". Rendering is a pure function of the inputs and the run information, so the same inputs
//! give byte-identical output.

pub mod svg;
pub mod thesis;

use std::collections::BTreeMap;
use std::fmt::Write as _;

use ndarray::Array1;

use crate::analysis::{self, Table, TARGET};
use crate::stats::pearson;
use svg::{escape, LineChart, PointGroup, Series, PALETTE, THESIS_COLOUR};

pub use crate::nn::Variant;

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
    /// Optional per-stage timings (any columns, shown as given).
    pub timings: Option<Table>,
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

/// Tables of one input kind whose label names `variant`.
fn for_variant(items: &[(String, Table)], variant: Variant) -> Vec<&(String, Table)> {
    items
        .iter()
        .filter(|(label, _)| variant_from_label(label) == Some(variant))
        .collect()
}

fn numbers(table: &Table, column: &str) -> Option<Vec<f64>> {
    table.numeric_column(column).ok()
}

fn xy(table: &Table, x: &str, y: &str) -> Vec<(f64, f64)> {
    match (numbers(table, x), numbers(table, y)) {
        (Some(xs), Some(ys)) => xs.into_iter().zip(ys).collect(),
        _ => Vec::new(),
    }
}

/// Rows of `table` whose `column` equals `value`.
fn rows_where(table: &Table, column: &str, value: &str) -> Table {
    table.filter_equal(column, value).unwrap_or_default()
}

fn fmt(value: Option<f64>, decimals: usize) -> String {
    match value {
        Some(v) if v.is_finite() => format!("{v:.decimals$}"),
        _ => "—".to_string(),
    }
}

fn mean(values: &[f64]) -> Option<f64> {
    (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
}

/// "barabasi_albert"/"ba" → BA, "watts_strogatz"/"ws" → WS.
fn family_of(text: &str) -> Option<&'static str> {
    let lower = text.to_ascii_lowercase();
    if lower.contains("barabasi") || lower == "ba" {
        Some("BA")
    } else if lower.contains("watts") || lower == "ws" {
        Some("WS")
    } else {
        None
    }
}

/// Test accuracies split by graph family, from a table with a `family` or `graph` column.
fn accuracy_by_family(table: &Table) -> BTreeMap<&'static str, Vec<f64>> {
    let mut by_family: BTreeMap<&'static str, Vec<f64>> = BTreeMap::new();
    let family_column = ["family", "graph"]
        .into_iter()
        .find(|c| table.has_column(c));
    let (Some(column), Some(accuracies)) = (family_column, numbers(table, TARGET)) else {
        return by_family;
    };
    let Ok(families) = table.text_column(column) else {
        return by_family;
    };
    for (family, acc) in families.iter().zip(accuracies) {
        if let Some(f) = family_of(family) {
            by_family.entry(f).or_default().push(acc);
        }
    }
    by_family
}

/// Pruning percentages as percent, whether the table stores 0.1 or 10.
fn as_percent(values: &[f64]) -> Vec<f64> {
    let fractional = values.iter().all(|v| *v <= 1.0);
    values
        .iter()
        .map(|v| if fractional { v * 100.0 } else { *v })
        .collect()
}

/// (prune %, epoch, test_acc) of our curves for one weights mode.
fn our_prune_rows(curves: &[&(String, Table)], mode: &str) -> Vec<(f64, f64, f64)> {
    let mut rows = Vec::new();
    for (label, table) in curves {
        let selected = if table.has_column("weights") {
            rows_where(table, "weights", mode)
        } else if label.ends_with(mode) {
            table.clone()
        } else {
            continue;
        };
        let (Some(p), Some(e), Some(a)) = (
            numbers(&selected, "prune"),
            numbers(&selected, "epoch"),
            numbers(&selected, "test_acc"),
        ) else {
            continue;
        };
        for ((p, e), a) in as_percent(&p).into_iter().zip(e).zip(a) {
            rows.push((p, e, a));
        }
    }
    rows
}

fn thesis_prune_rows(variant: Variant, suffix: &str) -> Vec<(f64, f64, f64)> {
    let table = rows_where(
        &thesis::prune_table(variant),
        "mode",
        &format!("{}{suffix}", variant.name()),
    );
    match (
        numbers(&table, "prune"),
        numbers(&table, "epoch"),
        numbers(&table, "test_acc"),
    ) {
        (Some(p), Some(e), Some(a)) => p
            .into_iter()
            .zip(e)
            .zip(a)
            .map(|((p, e), a)| (p, e, a))
            .collect(),
        _ => Vec::new(),
    }
}

/// Pearson r of each property with accuracy in the thesis's own structure table.
fn thesis_correlations(variant: Variant) -> BTreeMap<String, f64> {
    let table = thesis::structure_table(variant);
    analysis::correlate(&table, &analysis::all_properties(), TARGET)
        .map(|rows| {
            rows.into_iter()
                .filter_map(|c| Some((c.property, c.pearson?)))
                .collect()
        })
        .unwrap_or_default()
}

fn our_correlations(
    inputs: &ReportInputs,
    variant: Variant,
) -> Option<BTreeMap<String, (f64, f64)>> {
    let (_, table) = for_variant(&inputs.correlations, variant)
        .into_iter()
        .next()?;
    let properties = table.text_column("property").ok()?;
    let r = table.text_column("pearson").ok()?;
    let p = table.text_column("p_value").ok()?;
    Some(
        properties
            .iter()
            .zip(r.iter().zip(&p))
            .filter_map(|(name, (r, p))| {
                Some((
                    name.to_string(),
                    (r.parse().ok()?, p.parse().unwrap_or(f64::NAN)),
                ))
            })
            .collect(),
    )
}

fn not_run(what: &str) -> String {
    format!(
        r#"<p class="notrun">pipe: {} — not run (no input wired).</p>"#,
        escape(what)
    )
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

fn run_section(html: &mut Html, inputs: &ReportInputs, run: &RunInfo) {
    html.section("run", "What was run");
    let body = &mut html.body;
    let _ = write!(
        body,
        "<table><tr><th>report instance</th><td>{}</td></tr><tr><th>seed</th><td>{}</td></tr><tr><th>when</th><td>{}</td></tr>",
        escape(&run.instance),
        run.seed,
        escape(run.when.as_deref().unwrap_or("not stated (set the report's `when` parameter)"))
    );
    if let Some(description) = &run.description {
        let _ = write!(
            body,
            "<tr><th>about</th><td>{}</td></tr>",
            escape(description)
        );
    }
    for (name, labels) in inputs.labels() {
        let shown = if labels.is_empty() {
            "not run".to_string()
        } else {
            labels.join(", ")
        };
        let _ = write!(
            body,
            "<tr><th>input {name}</th><td>{}</td></tr>",
            escape(&shown)
        );
    }
    body.push_str("</table>");
    let params = serde_json::to_string_pretty(&run.params).unwrap_or_default();
    let _ = write!(
        body,
        "<h3>Report parameters</h3><pre>{}</pre>",
        escape(&params)
    );
    body.push_str("<h3>Stage timings</h3>");
    match &inputs.timings {
        Some(table) => body.push_str(&html_table(table)),
        None => body.push_str(
            r#"<p class="note">Not included: stages do not see each other's records. Wire a timings table (for example from <code>pipe show</code>) to the report's optional <code>timings</code> input to list them here.</p>"#,
        ),
    }
}

fn html_table(table: &Table) -> String {
    let mut out = String::from("<table><tr>");
    for h in &table.header {
        let _ = write!(out, "<th>{}</th>", escape(h));
    }
    out.push_str("</tr>");
    for row in &table.rows {
        out.push_str("<tr>");
        for cell in row {
            let _ = write!(out, "<td>{}</td>", escape(cell));
        }
        out.push_str("</tr>");
    }
    out.push_str("</table>");
    out
}

fn card(body: &mut String, content: &str) {
    let _ = write!(body, r#"<div class="card">{content}</div>"#);
}

fn base_section(html: &mut Html, inputs: &ReportInputs) {
    html.section("base", "1. Base models: training curves");
    if inputs.base.is_empty() {
        html.missing.push("base training".into());
        html.body
            .push_str(&not_run("base training (rnn.train metrics)"));
    }
    html.body.push_str(r#"<p class="note">Solid: pipe; dashed grey: thesis (<code>results/prune/&lt;variant&gt;.csv</code>, mode = variant). The thesis's losses are sums over batches, so they are drawn in their own chart.</p>"#);
    let mut summary = String::from("<table><tr><th>variant</th><th>thesis final test acc</th><th>pipe final test acc</th><th>thesis best</th><th>pipe best</th></tr>");
    for variant in Variant::ALL {
        let thesis_table = rows_where(&thesis::prune_table(variant), "mode", variant.name());
        let ours = for_variant(&inputs.base, variant);
        let _ = write!(
            html.body,
            "<h3>{}</h3><div class=\"grid\">",
            variant.title()
        );
        let mut series = Vec::new();
        if let Some((_, table)) = ours.first() {
            series.push(Series {
                label: "pipe train".into(),
                points: xy(table, "epoch", "train_acc"),
                colour: PALETTE[0].into(),
                dashed: false,
            });
            series.push(Series {
                label: "pipe test".into(),
                points: xy(table, "epoch", "test_acc"),
                colour: PALETTE[1].into(),
                dashed: false,
            });
        }
        series.push(Series {
            label: "thesis train".into(),
            points: xy(&thesis_table, "epoch", "train_acc"),
            colour: "#999999".into(),
            dashed: true,
        });
        series.push(Series {
            label: "thesis test".into(),
            points: xy(&thesis_table, "epoch", "test_acc"),
            colour: THESIS_COLOUR.into(),
            dashed: true,
        });
        let accuracy = LineChart {
            title: &format!("{} accuracy", variant.title()),
            x_label: "epoch",
            y_label: "accuracy",
            series: &series,
            y_fixed: None,
            width: 420.0,
            height: 260.0,
            show_legend: true,
        }
        .render();
        card(&mut html.body, &accuracy);
        if let Some((_, table)) = ours.first() {
            let loss_series = [
                Series {
                    label: "pipe train".into(),
                    points: xy(table, "epoch", "train_loss"),
                    colour: PALETTE[0].into(),
                    dashed: false,
                },
                Series {
                    label: "pipe test".into(),
                    points: xy(table, "epoch", "test_loss"),
                    colour: PALETTE[1].into(),
                    dashed: false,
                },
            ];
            card(
                &mut html.body,
                &LineChart {
                    title: &format!("{} loss (pipe)", variant.title()),
                    x_label: "epoch",
                    y_label: "loss",
                    series: &loss_series,
                    y_fixed: None,
                    width: 360.0,
                    height: 260.0,
                    show_legend: true,
                }
                .render(),
            );
        } else {
            card(
                &mut html.body,
                &not_run(&format!("{} base training", variant.title())),
            );
        }
        let thesis_loss = [
            Series {
                label: "thesis train (sum)".into(),
                points: xy(&thesis_table, "epoch", "train_loss"),
                colour: "#999999".into(),
                dashed: true,
            },
            Series {
                label: "thesis test (sum)".into(),
                points: xy(&thesis_table, "epoch", "test_loss"),
                colour: THESIS_COLOUR.into(),
                dashed: true,
            },
        ];
        card(
            &mut html.body,
            &LineChart {
                title: &format!("{} loss (thesis)", variant.title()),
                x_label: "epoch",
                y_label: "loss (sum over batches)",
                series: &thesis_loss,
                y_fixed: None,
                width: 360.0,
                height: 260.0,
                show_legend: true,
            }
            .render(),
        );
        html.body.push_str("</div>");
        let thesis_acc = numbers(&thesis_table, "test_acc").unwrap_or_default();
        let our_acc = ours
            .first()
            .and_then(|(_, t)| numbers(t, "test_acc"))
            .unwrap_or_default();
        let best = |v: &[f64]| v.iter().copied().reduce(f64::max);
        let _ = write!(
            summary,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            variant.title(),
            fmt(thesis_acc.last().copied(), 4),
            fmt(our_acc.last().copied(), 4),
            fmt(best(&thesis_acc), 4),
            fmt(best(&our_acc), 4)
        );
    }
    summary.push_str("</table>");
    html.body.push_str("<h3>Final test accuracy</h3>");
    html.body.push_str(&summary);
}

/// (level, accuracy right after pruning) from (level, epoch, accuracy) rows, by level.
fn epoch_zero(rows: Vec<(f64, f64, f64)>) -> Vec<(f64, f64)> {
    let mut points: Vec<(f64, f64)> = rows
        .into_iter()
        .filter(|r| r.1 == 0.0)
        .map(|r| (r.0, r.2))
        .collect();
    points.sort_by(|a, b| a.0.total_cmp(&b.0));
    points
}

/// The rule `rnn.prune` writes into `safe.json`, with its default tolerance: the highest level
/// whose accuracy right after pruning is within one point of the unpruned model's.
const SAFE_TOLERANCE_POINTS: f64 = 1.0;

fn safe_level(after_pruning: &[(f64, f64)], unpruned: Option<f64>) -> Option<f64> {
    let unpruned = unpruned?;
    after_pruning
        .iter()
        .filter(|(_, acc)| {
            crate::nn::prune::within_tolerance(*acc, unpruned, SAFE_TOLERANCE_POINTS)
        })
        .map(|(level, _)| *level)
        .reduce(f64::max)
}

fn last_value(table: &Table, column: &str) -> Option<f64> {
    numbers(table, column)?.last().copied()
}

fn pruning_section(html: &mut Html, inputs: &ReportInputs) {
    html.section("pruning", "2. Accuracy right after pruning vs p");
    if inputs.prune.is_empty() {
        html.missing.push("pruning".into());
        html.body.push_str(&not_run("pruning (rnn.prune curves)"));
    }
    html.body.push_str(r#"<p class="note">Epoch 0 of each pruning run: test accuracy right after magnitude pruning, before retraining. Solid: pipe; dashed: thesis, same colour per mode.</p><div class="grid">"#);
    for variant in Variant::ALL {
        let curves = for_variant(&inputs.prune, variant);
        let mut series = Vec::new();
        for (i, (mode, suffix, title)) in PRUNE_MODES.iter().enumerate() {
            let ours = epoch_zero(our_prune_rows(&curves, mode));
            if !ours.is_empty() {
                series.push(Series {
                    label: format!("pipe {title}"),
                    points: ours,
                    colour: PALETTE[i].into(),
                    dashed: false,
                });
            }
            series.push(Series {
                label: format!("thesis {title}"),
                points: epoch_zero(thesis_prune_rows(variant, suffix)),
                colour: PALETTE[i].into(),
                dashed: true,
            });
        }
        let chart = LineChart {
            title: &format!("{}: accuracy after pruning", variant.title()),
            x_label: "pruned %",
            y_label: "test accuracy",
            series: &series,
            y_fixed: Some((0.0, 1.0)),
            width: 420.0,
            height: 280.0,
            show_legend: true,
        }
        .render();
        card(&mut html.body, &chart);
    }
    html.body.push_str("</div>");
    html.body.push_str(r#"<h3>Highest safe pruning percentage (thesis ch. 7.2)</h3><p class="note">Safe: the highest level whose test accuracy right after pruning is within 1 point of the unpruned model's final test accuracy. "thesis, stated": the levels the thesis's text gives; "thesis data": the same rule applied to the thesis's own raw results; "pipe": this run.</p><table><tr><th>variant</th><th>mode</th><th>thesis, stated</th><th>thesis data, same rule</th><th>pipe</th></tr>"#);
    for variant in Variant::ALL {
        let stated = thesis::safe_prune_percent(variant);
        let thesis_base = rows_where(&thesis::prune_table(variant), "mode", variant.name());
        let thesis_unpruned = last_value(&thesis_base, "test_acc");
        let our_unpruned = for_variant(&inputs.base, variant)
            .first()
            .and_then(|(_, table)| last_value(table, "test_acc"));
        let curves = for_variant(&inputs.prune, variant);
        for ((mode, suffix, title), stated) in PRUNE_MODES.iter().zip(stated) {
            let theirs = safe_level(
                &epoch_zero(thesis_prune_rows(variant, suffix)),
                thesis_unpruned,
            );
            let ours = epoch_zero(our_prune_rows(&curves, mode));
            let ours = if ours.is_empty() {
                "not run".to_string()
            } else {
                safe_level(&ours, our_unpruned).map_or("none".into(), |l| format!("{l}"))
            };
            let _ = write!(
                html.body,
                "<tr><td>{}</td><td>{title}</td><td>{stated}</td><td>{}</td><td>{ours}</td></tr>",
                variant.title(),
                theirs.map_or("none".into(), |l| format!("{l}"))
            );
        }
    }
    html.body.push_str("</table>");
    for (label, table) in &inputs.prune_summary {
        let _ = write!(
            html.body,
            "<h3>pipe pruning summary: {}</h3>",
            escape(label)
        );
        html.body.push_str(&html_table(table));
    }
}

fn retraining_section(html: &mut Html, inputs: &ReportInputs) {
    html.section("retraining", "3. Accuracy during retraining, per p");
    if inputs.prune.is_empty() {
        html.body
            .push_str(&not_run("pruning and retraining (rnn.prune curves)"));
    }
    html.body.push_str(r#"<p class="note">Test accuracy per retraining epoch (0 = right after pruning); one colour per pruning percentage, solid pipe, dashed thesis.</p><p class="key">"#);
    for (i, colour) in PALETTE.iter().enumerate() {
        let _ = write!(
            html.body,
            r#"<span style="background:{colour}"></span>{}%"#,
            (i + 1) * 10
        );
    }
    html.body.push_str("</p>");
    for variant in Variant::ALL {
        let curves = for_variant(&inputs.prune, variant);
        let _ = write!(
            html.body,
            "<h3>{}</h3><div class=\"grid\">",
            variant.title()
        );
        for (mode, suffix, title) in PRUNE_MODES {
            let ours = our_prune_rows(&curves, mode);
            let theirs = thesis_prune_rows(variant, suffix);
            let mut series = Vec::new();
            for (i, colour) in PALETTE.iter().enumerate() {
                let p = ((i + 1) * 10) as f64;
                let line = |rows: &[(f64, f64, f64)]| -> Vec<(f64, f64)> {
                    let mut points: Vec<(f64, f64)> = rows
                        .iter()
                        .filter(|r| (r.0 - p).abs() < 1e-6)
                        .map(|r| (r.1, r.2))
                        .collect();
                    points.sort_by(|a, b| a.0.total_cmp(&b.0));
                    points
                };
                let our_line = line(ours.as_slice());
                if !our_line.is_empty() {
                    series.push(Series {
                        label: format!("pipe {p}%"),
                        points: our_line,
                        colour: colour.to_string(),
                        dashed: false,
                    });
                }
                series.push(Series {
                    label: format!("thesis {p}%"),
                    points: line(theirs.as_slice()),
                    colour: colour.to_string(),
                    dashed: true,
                });
            }
            let chart = LineChart {
                title: &format!("{} {title}: retraining", variant.title()),
                x_label: "retraining epoch",
                y_label: "test accuracy",
                series: &series,
                y_fixed: Some((0.0, 1.0)),
                width: 360.0,
                height: 250.0,
                show_legend: false,
            }
            .render();
            card(&mut html.body, &chart);
        }
        html.body.push_str("</div>");
    }
}

fn random_section(html: &mut Html, inputs: &ReportInputs) {
    html.section(
        "random",
        "4. Randomly structured networks: Watts–Strogatz vs Barabási–Albert",
    );
    let have_ours = !inputs.random.is_empty() || !inputs.networks.is_empty();
    if !have_ours {
        html.missing.push("random networks".into());
        html.body.push_str(&not_run(
            "random networks (rnn.train_random results or a network table)",
        ));
    }
    let mut table = String::from("<table><tr><th>variant</th><th>thesis mean acc</th><th>thesis BA</th><th>thesis WS</th><th>pipe mean acc</th><th>pipe BA</th><th>pipe WS</th></tr>");
    html.body.push_str(r#"<p class="note">Test accuracy of the random networks per graph family: box = quartiles, whiskers = min/max, diamond = mean.</p><div class="grid">"#);
    for variant in Variant::ALL {
        let theirs = accuracy_by_family(&thesis::structure_table(variant));
        let ours_source = for_variant(&inputs.random, variant)
            .into_iter()
            .chain(for_variant(&inputs.networks, variant))
            .map(|(_, t)| accuracy_by_family(t))
            .find(|m| !m.is_empty())
            .unwrap_or_default();
        let groups: Vec<(String, String, Vec<f64>)> = vec![
            (
                "thesis BA".into(),
                "#888888".into(),
                theirs.get("BA").cloned().unwrap_or_default(),
            ),
            (
                "thesis WS".into(),
                "#444444".into(),
                theirs.get("WS").cloned().unwrap_or_default(),
            ),
            (
                "pipe BA".into(),
                PALETTE[0].into(),
                ours_source.get("BA").cloned().unwrap_or_default(),
            ),
            (
                "pipe WS".into(),
                PALETTE[1].into(),
                ours_source.get("WS").cloned().unwrap_or_default(),
            ),
        ];
        card(
            &mut html.body,
            &svg::box_chart(
                &format!("{}: WS vs BA", variant.title()),
                "test accuracy",
                &groups,
                360.0,
                260.0,
            ),
        );
        let all =
            |m: &BTreeMap<&str, Vec<f64>>| m.values().flatten().copied().collect::<Vec<f64>>();
        let family_mean = |m: &BTreeMap<&str, Vec<f64>>, f: &str| m.get(f).and_then(|v| mean(v));
        let _ = write!(
            table,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            variant.title(),
            fmt(mean(&all(&theirs)), 4),
            fmt(family_mean(&theirs, "BA"), 4),
            fmt(family_mean(&theirs, "WS"), 4),
            fmt(mean(&all(&ours_source)), 4),
            fmt(family_mean(&ours_source, "BA"), 4),
            fmt(family_mean(&ours_source, "WS"), 4)
        );
    }
    html.body.push_str("</div><h3>Mean test accuracy</h3>");
    table.push_str("</table>");
    html.body.push_str(&table);
}

fn scatter_section(html: &mut Html, inputs: &ReportInputs) {
    html.section("scatter", "5. Property vs accuracy");
    if inputs.networks.is_empty() {
        html.missing.push("per-network property tables".into());
        html.body.push_str(&not_run(
            "per-network property tables (analysis.join or data.table)",
        ));
    }
    html.body.push_str(r#"<p class="note">The properties of Tables 6.1–6.4. Hollow grey: thesis networks; filled blue: pipe networks. Titles give r (thesis data | pipe).</p>"#);
    for variant in Variant::ALL {
        let thesis_table = thesis::structure_table(variant);
        let ours = for_variant(&inputs.networks, variant)
            .first()
            .map(|(_, t)| t.clone());
        let _ = write!(
            html.body,
            "<h3>{}</h3><div class=\"grid\">",
            variant.title()
        );
        for (property, _) in thesis::printed_pearson(variant) {
            let r_of = |t: &Table| -> Option<f64> {
                let x = Array1::from(numbers(t, &property)?);
                let y = Array1::from(numbers(t, TARGET)?);
                pearson(x.view(), y.view()).ok().map(|c| c.r)
            };
            let mut groups = vec![PointGroup {
                label: "thesis".into(),
                points: xy(&thesis_table, &property, TARGET),
                colour: THESIS_COLOUR.into(),
                hollow: true,
            }];
            if let Some(table) = &ours {
                groups.push(PointGroup {
                    label: "pipe".into(),
                    points: xy(table, &property, TARGET),
                    colour: PALETTE[0].into(),
                    hollow: false,
                });
            }
            let title = format!(
                "{property} (r {} | {})",
                fmt(r_of(&thesis_table), 2),
                fmt(ours.as_ref().and_then(r_of), 2)
            );
            card(
                &mut html.body,
                &svg::scatter_chart(&title, &property, "test accuracy", &groups, 300.0, 220.0),
            );
        }
        html.body.push_str("</div>");
    }
}

fn correlation_section(html: &mut Html, inputs: &ReportInputs) {
    html.section(
        "correlations",
        "6. Correlation of each property with accuracy",
    );
    if inputs.correlations.is_empty() {
        html.missing.push("correlations".into());
        html.body
            .push_str(&not_run("correlations (analysis.correlate)"));
    }
    html.body.push_str(r#"<p class="note">Pearson r with test accuracy, all 23 properties: grey = thesis (recomputed from its <code>results/structure</code> table), blue = pipe.</p><div class="grid">"#);
    let properties = analysis::all_properties();
    for variant in Variant::ALL {
        let theirs = thesis_correlations(variant);
        let ours = our_correlations(inputs, variant);
        let mut groups = vec![(
            "thesis".to_string(),
            THESIS_COLOUR.to_string(),
            properties.iter().map(|p| theirs.get(p).copied()).collect(),
        )];
        if let Some(ours) = &ours {
            groups.push((
                "pipe".to_string(),
                PALETTE[0].to_string(),
                properties
                    .iter()
                    .map(|p| ours.get(p).map(|v| v.0))
                    .collect(),
            ));
        }
        card(
            &mut html.body,
            &svg::bar_chart(
                &format!("{}: Pearson r with test accuracy", variant.title()),
                &properties,
                &groups,
                (-1.0, 1.0),
                430.0,
            ),
        );
    }
    html.body.push_str("</div>");
}

fn pearson_tables_section(html: &mut Html, inputs: &ReportInputs) {
    html.section("tables-6-1-4", "7. Tables 6.1–6.4 side by side");
    html.body.push_str(r#"<p class="note">Thesis (text) = the value printed in the thesis (2 decimals); thesis (data) = recomputed by pipe from the thesis's structure table; pipe = this run's <code>analysis.correlate</code>.</p><div class="grid">"#);
    for variant in Variant::ALL {
        let printed: BTreeMap<String, f64> = thesis::printed_pearson(variant).into_iter().collect();
        let theirs = thesis_correlations(variant);
        let ours = our_correlations(inputs, variant);
        let mut table = format!(
            "<div class=\"card\"><strong>Table {} — {}</strong><table><tr><th>property</th><th>thesis (text)</th><th>thesis (data)</th><th>pipe r</th><th>pipe p</th></tr>",
            variant.pearson_table(),
            variant.title()
        );
        for property in analysis::all_properties() {
            let our = ours.as_ref().and_then(|m| m.get(&property).copied());
            let _ = write!(
                table,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                escape(&property),
                fmt(printed.get(&property).copied(), 2),
                fmt(theirs.get(&property).copied(), 3),
                if ours.is_some() {
                    fmt(our.map(|o| o.0), 3)
                } else {
                    "not run".into()
                },
                our.map(|o| o.1)
                    .filter(|p| p.is_finite())
                    .map(|p| format!("{p:.1e}"))
                    .unwrap_or_else(|| "—".into())
            );
        }
        table.push_str("</table></div>");
        html.body.push_str(&table);
    }
    html.body.push_str("</div>");
}

/// (split R², CV mean, CV std) per model name from an `r2.csv`.
fn r2_rows(table: &Table) -> BTreeMap<String, [Option<f64>; 3]> {
    let mut rows = BTreeMap::new();
    for row in &table.rows {
        let value = |name: &str| {
            table
                .column_index(name)
                .ok()
                .and_then(|i| row.get(i)?.parse::<f64>().ok())
        };
        if let Some(model) = row.first() {
            rows.insert(
                model.clone(),
                [value("r2_split"), value("r2_cv_mean"), value("r2_cv_std")],
            );
        }
    }
    rows
}

fn regression_section(html: &mut Html, inputs: &ReportInputs) {
    html.section(
        "regression",
        "8. Performance prediction: R² (Table 6.5) and RF subsets (Tables B.1/B.2)",
    );
    if inputs.r2.is_empty() {
        html.missing.push("regression".into());
        html.body
            .push_str(&not_run("regression (analysis.regress)"));
    }
    html.body.push_str(r#"<p class="note">R² on the 20 held-out rows (thesis | pipe), and pipe's k-fold cross-validated R² (mean ± std). Random forest and AdaBoost were unseeded in the thesis and match only in kind.</p><table><tr><th>variant</th><th>model</th><th>thesis R²</th><th>pipe R² (split)</th><th>pipe R² (CV)</th></tr>"#);
    let models = [
        "BayesianRidge",
        "RandomForestRegressor",
        "AdaBoostRegressor",
    ];
    for variant in Variant::ALL {
        let theirs = thesis::r_squared(variant);
        let ours = for_variant(&inputs.r2, variant)
            .first()
            .map(|(_, t)| r2_rows(t));
        for (i, model) in models.iter().enumerate() {
            let our = ours.as_ref().and_then(|m| m.get(*model).copied());
            let cv = match our {
                Some([_, Some(m), Some(s)]) => format!("{m:.4} ± {s:.4}"),
                _ => "—".into(),
            };
            let _ = write!(
                html.body,
                "<tr><td>{}</td><td>{model}</td><td>{}</td><td>{}</td><td>{cv}</td></tr>",
                variant.title(),
                fmt(theirs.map(|t| t[i]), 5),
                if ours.is_some() {
                    fmt(our.and_then(|o| o[0]), 5)
                } else {
                    "not run".into()
                }
            );
        }
    }
    html.body.push_str("</table><h3>Random forest on feature subsets (Tables B.1/B.2)</h3><table><tr><th>variant</th><th>subset</th><th>thesis R²</th><th>pipe R² (split)</th><th>pipe R² (CV)</th></tr>");
    for variant in Variant::ALL {
        let ours = for_variant(&inputs.subsets, variant)
            .first()
            .map(|(_, t)| r2_rows(t));
        for (subset, _) in analysis::feature_subsets() {
            let our = ours.as_ref().and_then(|m| m.get(subset).copied());
            let cv = match our {
                Some([_, Some(m), Some(s)]) => format!("{m:.3} ± {s:.3}"),
                _ => "—".into(),
            };
            let _ = write!(
                html.body,
                "<tr><td>{}</td><td>{subset}</td><td>{}</td><td>{}</td><td>{cv}</td></tr>",
                variant.title(),
                fmt(thesis::rf_subset_r2(variant, subset), 2),
                if ours.is_some() {
                    fmt(our.and_then(|o| o[0]), 3)
                } else {
                    "not run".into()
                }
            );
        }
    }
    html.body.push_str("</table>");
}

/// A short Markdown summary: what ran, the headline numbers beside the thesis's.
pub fn render_summary(inputs: &ReportInputs, run: &RunInfo) -> String {
    let mut md = format!("# {}\n\n", run.title);
    let _ = writeln!(
        md,
        "- report instance: `{}`, seed {}",
        run.instance, run.seed
    );
    let _ = writeln!(
        md,
        "- when: {}",
        run.when.as_deref().unwrap_or("not stated")
    );
    for (name, labels) in inputs.labels() {
        let shown = if labels.is_empty() {
            "not run".to_string()
        } else {
            labels.join(", ")
        };
        let _ = writeln!(md, "- input {name}: {shown}");
    }
    md.push_str("\n## Base models: final test accuracy\n\n| variant | thesis | pipe |\n| --- | --- | --- |\n");
    for variant in Variant::ALL {
        let thesis_table = rows_where(&thesis::prune_table(variant), "mode", variant.name());
        let theirs = numbers(&thesis_table, "test_acc").and_then(|v| v.last().copied());
        let ours = for_variant(&inputs.base, variant)
            .first()
            .and_then(|(_, t)| numbers(t, "test_acc"))
            .and_then(|v| v.last().copied());
        let _ = writeln!(
            md,
            "| {} | {} | {} |",
            variant.title(),
            fmt(theirs, 4),
            fmt(ours, 4)
        );
    }
    md.push_str("\n## Table 6.5: R² (thesis | pipe split | pipe CV)\n\n| variant | model | thesis | pipe | pipe CV |\n| --- | --- | --- | --- | --- |\n");
    let models = [
        "BayesianRidge",
        "RandomForestRegressor",
        "AdaBoostRegressor",
    ];
    for variant in Variant::ALL {
        let theirs = thesis::r_squared(variant);
        let ours = for_variant(&inputs.r2, variant)
            .first()
            .map(|(_, t)| r2_rows(t));
        for (i, model) in models.iter().enumerate() {
            let our = ours.as_ref().and_then(|m| m.get(*model).copied());
            let _ = writeln!(
                md,
                "| {} | {model} | {} | {} | {} ± {} |",
                variant.title(),
                fmt(theirs.map(|t| t[i]), 5),
                fmt(our.and_then(|o| o[0]), 5),
                fmt(our.and_then(|o| o[1]), 4),
                fmt(our.and_then(|o| o[2]), 4)
            );
        }
    }
    md.push_str("\n## Strongest correlations with accuracy (pipe | thesis data)\n\n");
    for variant in Variant::ALL {
        let theirs = thesis_correlations(variant);
        match our_correlations(inputs, variant) {
            Some(ours) => {
                let mut ranked: Vec<(&String, f64)> = ours.iter().map(|(k, v)| (k, v.0)).collect();
                ranked.sort_by(|a, b| b.1.abs().total_cmp(&a.1.abs()).then(a.0.cmp(b.0)));
                let top: Vec<String> = ranked
                    .iter()
                    .take(3)
                    .map(|(p, r)| format!("{p} {r:.2} | {}", fmt(theirs.get(*p).copied(), 2)))
                    .collect();
                let _ = writeln!(md, "- {}: {}", variant.title(), top.join("; "));
            }
            None => {
                let _ = writeln!(md, "- {}: not run", variant.title());
            }
        }
    }
    md
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The 1-point rule on the thesis's own raw results (checked by hand from the CSVs): looser
    /// stated levels show up as differences in 4 of 12 places.
    #[test]
    fn safe_levels_of_the_thesis_data_under_the_one_point_rule() {
        let expected = [
            (Variant::RnnTanh, [70.0, 70.0, 80.0]),
            (Variant::RnnRelu, [60.0, 70.0, 70.0]),
            (Variant::Lstm, [60.0, 70.0, 80.0]),
            (Variant::Gru, [80.0, 80.0, 70.0]),
        ];
        for (variant, levels) in expected {
            let base = rows_where(&thesis::prune_table(variant), "mode", variant.name());
            let unpruned = last_value(&base, "test_acc");
            for ((_, suffix, title), level) in PRUNE_MODES.iter().zip(levels) {
                let after = epoch_zero(thesis_prune_rows(variant, suffix));
                assert_eq!(
                    safe_level(&after, unpruned),
                    Some(level),
                    "{variant} {title}"
                );
            }
        }
        assert_eq!(safe_level(&[(10.0, 0.5)], Some(1.0)), None);
        assert_eq!(safe_level(&[(10.0, 0.995)], None), None);
    }

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
