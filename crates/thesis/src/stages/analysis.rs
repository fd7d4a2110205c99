//! Thesis experiment 4 as stages: `data.table` (import any project CSV, optionally filtered and
//! narrowed), `analysis.join` (graph properties + training results on `id`), `analysis.correlate`
//! (Tables 6.1–6.4) and `analysis.regress` (Table 6.5, importances, Tables B.1/B.2). The numerical
//! work lives in [`crate::analysis`].

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::analysis::{self, format_value, RegressionSettings, Table, TARGET};
use crate::stats::ScalerFit;
use pipe_engine::stage::{InputDecl, InputSpec, OutputDecl, Plugin, StageContext, StageError};

fn read_table(path: &std::path::Path) -> Result<Table, StageError> {
    Table::read(path).map_err(StageError::failed)
}

fn write_table(table: &Table, ctx: &StageContext<'_>, name: &str) -> Result<(), StageError> {
    table.write(&ctx.output(name)).map_err(StageError::failed)
}

fn table_input(name: &'static str, about: &'static str) -> InputDecl {
    InputDecl {
        name,
        fan_in: false,
        required: true,
        about,
    }
}

pub struct DataTable;

/// A project CSV file, optionally filtered by column values and narrowed to some columns.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DataTableParams {
    /// The CSV file (with a header line), relative to the pipeline file.
    pub file: String,
    /// Keep only rows whose column equals the value (text, or numerically equal numbers).
    #[serde(default)]
    pub filter: BTreeMap<String, serde_json::Value>,
    /// Keep only these columns, in this order (default: all).
    #[serde(default)]
    pub columns: Option<Vec<String>>,
}

fn filter_text(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

impl Plugin for DataTable {
    type Params = DataTableParams;
    const KIND: &'static str = "data.table";
    const VERSION: u32 = 1;
    const ABOUT: &'static str =
        "Import a CSV table from the project (optional row filter and column selection)";

    fn inputs(&self) -> InputSpec {
        InputSpec::Named(Vec::new())
    }

    fn outputs(&self, _: &DataTableParams) -> Vec<OutputDecl> {
        vec![OutputDecl::new("table", "table.csv")]
    }

    fn files(&self, params: &DataTableParams) -> Vec<String> {
        vec![params.file.clone()]
    }

    fn check(&self, params: &DataTableParams) -> Result<(), (String, String)> {
        for (column, value) in &params.filter {
            if value.is_array() || value.is_object() || value.is_null() {
                return Err((
                    format!("filter.{column}"),
                    "must be a single text, number or boolean".to_string(),
                ));
            }
        }
        Ok(())
    }

    fn run(&self, params: DataTableParams, ctx: &mut StageContext<'_>) -> Result<(), StageError> {
        let mut table = read_table(&ctx.project_path(&params.file))?;
        let rows_read = table.rows.len();
        for (column, value) in &params.filter {
            table = table
                .filter_equal(column, &filter_text(value))
                .map_err(StageError::failed)?;
        }
        if let Some(columns) = &params.columns {
            table = table.select(columns).map_err(StageError::failed)?;
        }
        write_table(&table, ctx, "table.csv")?;
        ctx.set_metrics(serde_json::json!({
            "rows_read": rows_read,
            "rows": table.rows.len(),
            "columns": table.header.len(),
        }));
        Ok(())
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NoParams {}

pub struct Join;

impl Plugin for Join {
    type Params = NoParams;
    const KIND: &'static str = "analysis.join";
    const VERSION: u32 = 1;
    const ABOUT: &'static str =
        "Join graph properties with training results on `id` (23 properties + test_acc)";

    fn inputs(&self) -> InputSpec {
        InputSpec::Named(vec![
            table_input("properties", "properties.csv from graph.properties"),
            table_input(
                "results",
                "results.csv from rnn.train_random (id,...,test_acc)",
            ),
        ])
    }

    fn outputs(&self, _: &NoParams) -> Vec<OutputDecl> {
        vec![OutputDecl::new("table", "table.csv")]
    }

    fn run(&self, _: NoParams, ctx: &mut StageContext<'_>) -> Result<(), StageError> {
        let properties = read_table(ctx.input("properties")?)?;
        let results = read_table(ctx.input("results")?)?;
        let (joined, unmatched) =
            analysis::join_results(&properties, &results).map_err(StageError::failed)?;
        write_table(&joined, ctx, "table.csv")?;
        ctx.set_metrics(serde_json::json!({
            "rows": joined.rows.len(),
            "without_result": unmatched,
        }));
        Ok(())
    }
}

pub struct Correlate;

/// Which columns to correlate with which.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct CorrelateParams {
    /// Property columns (default: the thesis's 23).
    pub properties: Vec<String>,
    /// The accuracy column.
    pub target: String,
}

impl Default for CorrelateParams {
    fn default() -> Self {
        CorrelateParams {
            properties: analysis::all_properties(),
            target: TARGET.to_string(),
        }
    }
}

impl Plugin for Correlate {
    type Params = CorrelateParams;
    const KIND: &'static str = "analysis.correlate";
    const VERSION: u32 = 1;
    const ABOUT: &'static str =
        "Pearson correlation (and p-value) of each graph property with test accuracy (Tables 6.1–6.4)";

    fn inputs(&self) -> InputSpec {
        InputSpec::Named(vec![table_input(
            "table",
            "a table with the property columns and test_acc (data.table or analysis.join)",
        )])
    }

    fn outputs(&self, _: &CorrelateParams) -> Vec<OutputDecl> {
        vec![OutputDecl::new("correlations", "correlations.csv")]
    }

    fn check(&self, params: &CorrelateParams) -> Result<(), (String, String)> {
        if params.properties.is_empty() {
            return Err(("properties".into(), "name at least one column".into()));
        }
        Ok(())
    }

    fn run(&self, params: CorrelateParams, ctx: &mut StageContext<'_>) -> Result<(), StageError> {
        let table = read_table(ctx.input("table")?)?;
        let correlations = analysis::correlate(&table, &params.properties, &params.target)
            .map_err(StageError::failed)?;
        let optional = |v: Option<f64>| v.map(format_value).unwrap_or_default();
        let output = Table {
            header: ["property", "pearson", "p_value", "note"]
                .map(String::from)
                .to_vec(),
            rows: correlations
                .iter()
                .map(|c| {
                    vec![
                        c.property.clone(),
                        optional(c.pearson),
                        optional(c.p_value),
                        c.note.clone(),
                    ]
                })
                .collect(),
        };
        write_table(&output, ctx, "correlations.csv")?;
        let undefined = correlations.iter().filter(|c| c.pearson.is_none()).count();
        let strongest = correlations
            .iter()
            .filter_map(|c| Some((c.property.as_str(), c.pearson?)))
            .max_by(|a, b| a.1.abs().total_cmp(&b.1.abs()));
        ctx.set_metrics(serde_json::json!({
            "rows": table.rows.len(),
            "undefined": undefined,
            "strongest": strongest.map(|(p, r)| format!("{p} {r:.3}")),
        }));
        Ok(())
    }
}

pub struct Regress;

/// Which rows the MinMax scaler is fitted on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ScalerChoice {
    /// All rows before splitting (the thesis code).
    AllRows,
    /// Training rows only (leak-free).
    TrainRows,
}

/// Split, scaling and cross-validation of the regression (SPEC §5).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct RegressParams {
    /// Where the MinMax scaler learns: `all_rows` (thesis) or `train_rows`.
    pub scaler: ScalerChoice,
    /// Share of rows held out when no `test_rows` file is given (seeded shuffle).
    pub test_fraction: f64,
    /// A project CSV whose first column lists the 0-based test rows; replaces the seeded split.
    pub test_rows: Option<String>,
    /// Folds of the cross-validated R².
    pub folds: usize,
}

impl Default for RegressParams {
    fn default() -> Self {
        RegressParams {
            scaler: ScalerChoice::AllRows,
            test_fraction: 0.1,
            test_rows: None,
            folds: 10,
        }
    }
}

fn read_test_rows(path: &std::path::Path) -> Result<Vec<usize>, StageError> {
    let table = read_table(path)?;
    let Some(column) = table.header.first() else {
        return Err(StageError::Failed(format!(
            "{} has no columns",
            path.display()
        )));
    };
    table
        .text_column(column)
        .map_err(StageError::failed)?
        .iter()
        .map(|cell| {
            cell.trim().parse::<usize>().map_err(|_| {
                StageError::Failed(format!("{}: `{cell}` is not a row number", path.display()))
            })
        })
        .collect()
}

impl Plugin for Regress {
    type Params = RegressParams;
    const KIND: &'static str = "analysis.regress";
    const VERSION: u32 = 1;
    const ABOUT: &'static str =
        "Predict test accuracy from the 23 properties: R² (split and k-fold), importances, RF subsets (Tables 6.5, B.1, B.2)";

    fn inputs(&self) -> InputSpec {
        InputSpec::Named(vec![table_input(
            "table",
            "a table with the 23 property columns and test_acc",
        )])
    }

    fn outputs(&self, _: &RegressParams) -> Vec<OutputDecl> {
        vec![
            OutputDecl::new("r2", "r2.csv"),
            OutputDecl::new("importances", "importances.csv"),
            OutputDecl::new("subsets", "subsets.csv"),
            OutputDecl::new("subset_importances", "subset_importances.csv"),
        ]
    }

    fn files(&self, params: &RegressParams) -> Vec<String> {
        params.test_rows.iter().cloned().collect()
    }

    fn check(&self, params: &RegressParams) -> Result<(), (String, String)> {
        if !(params.test_fraction > 0.0 && params.test_fraction < 1.0) {
            return Err((
                "test_fraction".into(),
                "must lie strictly between 0 and 1".into(),
            ));
        }
        if params.folds < 2 {
            return Err(("folds".into(), "needs at least 2 folds".into()));
        }
        Ok(())
    }

    fn run(&self, params: RegressParams, ctx: &mut StageContext<'_>) -> Result<(), StageError> {
        let table = read_table(ctx.input("table")?)?;
        let test_rows = match &params.test_rows {
            Some(file) => Some(read_test_rows(&ctx.project_path(file))?),
            None => None,
        };
        let settings = RegressionSettings {
            scaler: match params.scaler {
                ScalerChoice::AllRows => ScalerFit::AllRows,
                ScalerChoice::TrainRows => ScalerFit::TrainRows,
            },
            test_fraction: params.test_fraction,
            test_rows,
            folds: params.folds,
            seed: ctx.seed,
        };
        ctx.progress("fitting BayesianRidge, RandomForest, AdaBoost");
        let results = analysis::regress(&table, &settings).map_err(StageError::failed)?;
        let strings = |names: &[&str]| names.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let r2 = Table {
            header: strings(&["model", "r2_split", "r2_cv_mean", "r2_cv_std"]),
            rows: results
                .scores
                .iter()
                .map(|s| {
                    vec![
                        s.model.to_string(),
                        format_value(s.r2_split),
                        format_value(s.cv.mean),
                        format_value(s.cv.std),
                    ]
                })
                .collect(),
        };
        write_table(&r2, ctx, "r2.csv")?;
        let importances = Table {
            header: strings(&[
                "property",
                "bayesian_ridge_coef",
                "random_forest",
                "adaboost",
            ]),
            rows: results
                .properties
                .iter()
                .enumerate()
                .map(|(j, property)| {
                    let mut row = vec![property.clone()];
                    row.extend(results.importances.iter().map(|m| format_value(m[j])));
                    row
                })
                .collect(),
        };
        write_table(&importances, ctx, "importances.csv")?;
        let subsets = Table {
            header: strings(&[
                "subset",
                "n_features",
                "r2_split",
                "r2_cv_mean",
                "r2_cv_std",
            ]),
            rows: results
                .subsets
                .iter()
                .map(|s| {
                    vec![
                        s.subset.to_string(),
                        s.features.len().to_string(),
                        format_value(s.r2_split),
                        format_value(s.cv.mean),
                        format_value(s.cv.std),
                    ]
                })
                .collect(),
        };
        write_table(&subsets, ctx, "subsets.csv")?;
        let subset_importances = Table {
            header: strings(&["subset", "property", "importance"]),
            rows: results
                .subsets
                .iter()
                .flat_map(|s| {
                    s.features
                        .iter()
                        .zip(&s.importances)
                        .map(|(f, v)| vec![s.subset.to_string(), f.clone(), format_value(*v)])
                })
                .collect(),
        };
        write_table(&subset_importances, ctx, "subset_importances.csv")?;
        let mut metrics = serde_json::Map::new();
        for score in &results.scores {
            metrics.insert(
                score.model.to_string(),
                serde_json::json!(format!(
                    "{:.4} (cv {:.3}±{:.3})",
                    score.r2_split, score.cv.mean, score.cv.std
                )),
            );
        }
        metrics.insert("train_rows".into(), results.n_train.into());
        metrics.insert("test_rows".into(), results.n_test.into());
        ctx.set_metrics(serde_json::Value::Object(metrics));
        Ok(())
    }
}
