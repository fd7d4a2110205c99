//! The run section: what ran, with which inputs and settings.

use std::fmt::Write as _;

use crate::analysis::Table;
use crate::report::common::html_table;
use crate::report::svg::escape;
use crate::report::{Html, ReportInputs, RunInfo};

pub(in crate::report) fn run_section(html: &mut Html, inputs: &ReportInputs, run: &RunInfo) {
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
        Some(table) => body.push_str(&html_table(&stage_budget(table).unwrap_or_else(|| table.clone()))),
        None => body.push_str(
            r#"<p class="note">Not included: set the report's <code>stage_timings: true</code> to have the engine hand it every upstream instance's time from its record, or wire a table of your own to its <code>timings</code> input.</p>"#,
        ),
    }
}

/// The time budget per stage (instances, total and mean seconds, share of the total) of a
/// `stage,instance,seconds` table, in the order stages first appear; `None` for another shape.
fn stage_budget(table: &Table) -> Option<Table> {
    let column = |name: &str| table.header.iter().position(|h| h == name);
    let (stage, seconds) = (column("stage")?, column("seconds")?);
    let mut stages: Vec<(String, usize, f64)> = Vec::new();
    for row in &table.rows {
        let took: f64 = row.get(seconds)?.parse().ok()?;
        let name = row.get(stage)?;
        match stages.iter_mut().find(|(s, _, _)| s == name) {
            Some(entry) => {
                entry.1 += 1;
                entry.2 += took;
            }
            None => stages.push((name.clone(), 1, took)),
        }
    }
    let total: f64 = stages.iter().map(|(_, _, t)| t).sum();
    let mut rows: Vec<Vec<String>> = stages
        .iter()
        .map(|(name, count, took)| {
            vec![
                name.clone(),
                count.to_string(),
                format!("{took:.1}"),
                format!("{:.2}", took / *count as f64),
                format!("{:.1} %", 100.0 * took / total.max(f64::MIN_POSITIVE)),
            ]
        })
        .collect();
    rows.push(vec![
        "all".into(),
        table.rows.len().to_string(),
        format!("{total:.1}"),
        String::new(),
        "100 %".into(),
    ]);
    Some(Table {
        header: ["stage", "instances", "seconds", "mean s", "share"]
            .map(String::from)
            .to_vec(),
        rows,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_sums_each_stage_and_its_share() {
        let table = Table {
            header: ["stage", "instance", "seconds"].map(String::from).to_vec(),
            rows: vec![
                vec!["data".into(), "data".into(), "1.0".into()],
                vec!["base".into(), "base[lstm]".into(), "2.0".into()],
                vec!["base".into(), "base[gru]".into(), "5.0".into()],
            ],
        };
        let budget = stage_budget(&table).unwrap();
        assert_eq!(budget.rows[0], ["data", "1", "1.0", "1.00", "12.5 %"]);
        assert_eq!(budget.rows[1], ["base", "2", "7.0", "3.50", "87.5 %"]);
        assert_eq!(budget.rows[2][..3], ["all", "3", "8.0"]);
        let other = Table {
            header: vec!["what".into()],
            rows: vec![],
        };
        assert!(stage_budget(&other).is_none());
    }
}
