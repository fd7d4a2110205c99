//! Helpers the sections share: picking tables and columns, number formatting, the thesis's
//! and our pruning rows and correlations, and small HTML pieces.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::analysis::{self, Table, TARGET};
use crate::report::svg::escape;
use crate::report::thesis;
use crate::report::{variant_from_label, ReportInputs, Variant};

/// Tables of one input kind whose label names `variant`.
pub(super) fn for_variant(items: &[(String, Table)], variant: Variant) -> Vec<&(String, Table)> {
    items
        .iter()
        .filter(|(label, _)| variant_from_label(label) == Some(variant))
        .collect()
}

pub(super) fn numbers(table: &Table, column: &str) -> Option<Vec<f64>> {
    table.numeric_column(column).ok()
}

pub(super) fn xy(table: &Table, x: &str, y: &str) -> Vec<(f64, f64)> {
    match (numbers(table, x), numbers(table, y)) {
        (Some(xs), Some(ys)) => xs.into_iter().zip(ys).collect(),
        _ => Vec::new(),
    }
}

/// Rows of `table` whose `column` equals `value`.
pub(super) fn rows_where(table: &Table, column: &str, value: &str) -> Table {
    table.filter_equal(column, value).unwrap_or_default()
}

pub(super) fn fmt(value: Option<f64>, decimals: usize) -> String {
    match value {
        Some(v) if v.is_finite() => format!("{v:.decimals$}"),
        _ => "—".to_string(),
    }
}

pub(super) fn mean(values: &[f64]) -> Option<f64> {
    (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
}

/// "barabasi_albert"/"ba" → BA, "watts_strogatz"/"ws" → WS.
pub(super) fn family_of(text: &str) -> Option<&'static str> {
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
pub(super) fn accuracy_by_family(table: &Table) -> BTreeMap<&'static str, Vec<f64>> {
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
pub(super) fn as_percent(values: &[f64]) -> Vec<f64> {
    let fractional = values.iter().all(|v| *v <= 1.0);
    values
        .iter()
        .map(|v| if fractional { v * 100.0 } else { *v })
        .collect()
}

/// (prune %, epoch, test_acc) of our curves for one weights mode.
pub(super) fn our_prune_rows(curves: &[&(String, Table)], mode: &str) -> Vec<(f64, f64, f64)> {
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

pub(super) fn thesis_prune_rows(variant: Variant, suffix: &str) -> Vec<(f64, f64, f64)> {
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
pub(super) fn thesis_correlations(variant: Variant) -> BTreeMap<String, f64> {
    let table = thesis::structure_table(variant);
    analysis::correlate(&table, &analysis::all_properties(), TARGET)
        .map(|rows| {
            rows.into_iter()
                .filter_map(|c| Some((c.property, c.pearson?)))
                .collect()
        })
        .unwrap_or_default()
}

pub(super) fn our_correlations(
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

pub(super) fn not_run(what: &str) -> String {
    format!(
        r#"<p class="notrun">pipe: {} — not run (no input wired).</p>"#,
        escape(what)
    )
}

/// A cell for people: a number with a fraction shown to 4 decimals (`0.9399999999999996` →
/// `0.9400`); integers and text as they are.
pub(super) fn readable(cell: &str) -> String {
    match cell.parse::<f64>() {
        Ok(v) if cell.contains('.') && v.is_finite() => format!("{v:.4}"),
        _ => cell.to_string(),
    }
}

pub(super) fn html_table(table: &Table) -> String {
    let mut out = String::from("<table><tr>");
    for h in &table.header {
        let _ = write!(out, "<th>{}</th>", escape(h));
    }
    out.push_str("</tr>");
    for row in &table.rows {
        out.push_str("<tr>");
        for cell in row {
            let _ = write!(out, "<td>{}</td>", escape(&readable(cell)));
        }
        out.push_str("</tr>");
    }
    out.push_str("</table>");
    out
}

pub(super) fn card(body: &mut String, content: &str) {
    let _ = write!(body, r#"<div class="card">{content}</div>"#);
}

/// (split R², CV mean, CV std) per model name from an `r2.csv`.
pub(super) fn r2_rows(table: &Table) -> BTreeMap<String, [Option<f64>; 3]> {
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

#[cfg(test)]
mod tests {
    use super::readable;

    #[test]
    fn table_cells_are_rounded_for_people() {
        assert_eq!(readable("0.9399999999999996"), "0.9400");
        assert_eq!(readable("1.0"), "1.0000");
        assert_eq!(readable("70"), "70");
        assert_eq!(readable("both"), "both");
        assert_eq!(readable(""), "");
    }
}
