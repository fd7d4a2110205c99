//! The run section: what ran, with which inputs and settings.

use std::fmt::Write as _;

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
        Some(table) => body.push_str(&html_table(table)),
        None => body.push_str(
            r#"<p class="note">Not included: stages do not see each other's records. Wire a timings table (for example from <code>pipe show</code>) to the report's optional <code>timings</code> input to list them here.</p>"#,
        ),
    }
}
