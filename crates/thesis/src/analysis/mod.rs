//! Thesis experiment 4, performance prediction (SPEC §5, thesis ch. 6.3–6.4): per-property Pearson
//! correlation with test accuracy, joining graph properties with training results, and the three
//! regressors of Table 6.5 with a split R², a k-fold cross-validated R², importances and the
//! random-forest feature subsets of Tables B.1/B.2. The stage plugins in `stages::analysis` are
//! thin wrappers around these functions; the report reuses them to recompute the thesis's numbers
//! from its vendored tables.

pub mod table;

use ndarray::{Array1, Array2, Axis};

pub use table::Table;

use crate::graph::PROPERTY_NAMES;
use crate::stats::{
    cross_validate_r2, pearson, prepare_split, r2_score, shuffled_split, split_from_test_rows,
    AdaBoostRegressorParams, BayesianRidgeParams, CrossValidation, RandomForestRegressorParams,
    Regressor, ScalerFit, StatsError,
};

/// Everything that can go wrong in the analysis.
#[derive(Debug, thiserror::Error)]
pub enum AnalysisError {
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{origin}: {message}")]
    Csv { origin: String, message: String },
    #[error("column `{column}` is missing (columns: {available})")]
    MissingColumn { column: String, available: String },
    #[error("column `{column}`, data row {row}: `{value}` is not a number")]
    NotNumeric {
        column: String,
        row: usize,
        value: String,
    },
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Stats(#[from] StatsError),
}

/// Shorthand for results in this module.
pub type Result<T> = std::result::Result<T, AnalysisError>;

/// The accuracy column every analysis predicts.
pub const TARGET: &str = "test_acc";

/// The five variances of Tables B.1/B.2, "only variances" column.
pub const VARIANCE_PROPERTIES: [&str; 5] = [
    "eccentricity_var",
    "degree_var",
    "closeness_var",
    "nodes_betweenness_var",
    "edge_betweenness_var",
];

/// "Only nodes and edges" of Tables B.1/B.2: the four counts.
pub const COUNT_PROPERTIES: [&str; 4] = ["nodes", "edges", "source_nodes", "sink_nodes"];

/// A property's correlation with accuracy; `None` where it is undefined (a constant column).
#[derive(Debug, Clone, PartialEq)]
pub struct PropertyCorrelation {
    pub property: String,
    pub pearson: Option<f64>,
    pub p_value: Option<f64>,
    /// Why the value is missing; empty otherwise.
    pub note: String,
}

/// Pearson correlation of each of `properties` with `target`. Constant columns (in either the
/// property or the target) give an empty value and a note instead of an error.
pub fn correlate(
    table: &Table,
    properties: &[String],
    target: &str,
) -> Result<Vec<PropertyCorrelation>> {
    let y = Array1::from(table.numeric_column(target)?);
    properties
        .iter()
        .map(|property| {
            let x = Array1::from(table.numeric_column(property)?);
            Ok(match pearson(x.view(), y.view()) {
                Ok(c) => PropertyCorrelation {
                    property: property.clone(),
                    pearson: Some(c.r),
                    p_value: Some(c.p_value),
                    note: String::new(),
                },
                Err(StatsError::ConstantColumn { .. }) => PropertyCorrelation {
                    property: property.clone(),
                    pearson: None,
                    p_value: None,
                    note: format!("constant {}: correlation undefined", constant_side(&x, &y)),
                },
                Err(StatsError::TooFewRows { got, .. }) => PropertyCorrelation {
                    property: property.clone(),
                    pearson: None,
                    p_value: None,
                    note: format!("only {got} rows: correlation undefined"),
                },
                Err(other) => return Err(other.into()),
            })
        })
        .collect()
}

fn constant_side(x: &Array1<f64>, y: &Array1<f64>) -> &'static str {
    let constant = |v: &Array1<f64>| v.iter().all(|a| Some(a) == v.first());
    if constant(y) {
        "accuracy"
    } else if constant(x) {
        "property"
    } else {
        "values"
    }
}

/// The 23 property names, as owned strings.
pub fn all_properties() -> Vec<String> {
    PROPERTY_NAMES.iter().map(|s| s.to_string()).collect()
}

/// Joins `properties.csv` (`id,family,<23>`) with `results.csv` (`id,...,test_acc,...`) on `id`:
/// `id,family,<23 properties>,test_acc` in the order of the properties table. Rows without a result
/// are left out; the second value counts them.
pub fn join_results(properties: &Table, results: &Table) -> Result<(Table, usize)> {
    let result_ids = results.text_column("id")?;
    let accuracies = results.text_column(TARGET)?;
    let mut accuracy_of = std::collections::BTreeMap::new();
    for (id, acc) in result_ids.iter().zip(&accuracies) {
        if accuracy_of.insert(id.trim(), *acc).is_some() {
            return Err(AnalysisError::Invalid(format!(
                "results list id `{id}` twice"
            )));
        }
    }
    let mut header = vec!["id".to_string()];
    let has_family = properties.has_column("family");
    if has_family {
        header.push("family".to_string());
    }
    header.extend(all_properties());
    header.push(TARGET.to_string());
    let mut with_target = properties.clone();
    with_target.header.push(TARGET.to_string());
    let id_index = properties.column_index("id")?;
    let mut unmatched = 0;
    with_target.rows = properties
        .rows
        .iter()
        .filter_map(|row| match accuracy_of.get(row[id_index].trim()) {
            Some(acc) => {
                let mut row = row.clone();
                row.push(acc.to_string());
                Some(row)
            }
            None => {
                unmatched += 1;
                None
            }
        })
        .collect();
    if with_target.rows.is_empty() {
        return Err(AnalysisError::Invalid(
            "no id of the properties table has a result".to_string(),
        ));
    }
    Ok((with_target.select(&header)?, unmatched))
}

/// How the regression splits and scales.
#[derive(Debug, Clone, PartialEq)]
pub struct RegressionSettings {
    pub scaler: ScalerFit,
    pub test_fraction: f64,
    /// Explicit test rows (0-based, table order); replace the seeded split.
    pub test_rows: Option<Vec<usize>>,
    pub folds: usize,
    pub seed: u64,
}

/// R² of one model: on the split and cross-validated.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelScore {
    pub model: &'static str,
    pub r2_split: f64,
    pub cv: CrossValidation,
}

/// Random forest on one feature subset (Tables B.1/B.2).
#[derive(Debug, Clone, PartialEq)]
pub struct SubsetScore {
    pub subset: &'static str,
    pub features: Vec<String>,
    pub r2_split: f64,
    pub cv: CrossValidation,
    /// Importance of each feature, fitted on the training rows.
    pub importances: Vec<f64>,
}

/// Everything `analysis.regress` writes.
#[derive(Debug, Clone, PartialEq)]
pub struct RegressionResults {
    pub scores: Vec<ModelScore>,
    pub properties: Vec<String>,
    /// Per model (same order as `scores`), per property: coefficient or importance.
    pub importances: Vec<Vec<f64>>,
    pub subsets: Vec<SubsetScore>,
    pub n_train: usize,
    pub n_test: usize,
}

/// The three regressors of Table 6.5, seeded.
pub fn regressors(seed: u64) -> [Regressor; 3] {
    [
        Regressor::BayesianRidge(BayesianRidgeParams::default()),
        Regressor::RandomForest(RandomForestRegressorParams {
            seed,
            ..Default::default()
        }),
        Regressor::AdaBoost(AdaBoostRegressorParams {
            seed,
            ..Default::default()
        }),
    ]
}

/// The random-forest feature subsets of Tables B.1/B.2, by name.
pub fn feature_subsets() -> Vec<(&'static str, Vec<String>)> {
    let all = all_properties();
    let without: Vec<String> = all
        .iter()
        .filter(|p| !COUNT_PROPERTIES.contains(&p.as_str()))
        .cloned()
        .collect();
    vec![
        ("all", all),
        (
            "only_nodes_edges",
            COUNT_PROPERTIES.iter().map(|s| s.to_string()).collect(),
        ),
        ("without_nodes_edges", without),
        (
            "only_variances",
            VARIANCE_PROPERTIES.iter().map(|s| s.to_string()).collect(),
        ),
    ]
}

fn feature_matrix(table: &Table, columns: &[String]) -> Result<Array2<f64>> {
    let mut x = Array2::zeros((table.rows.len(), columns.len()));
    for (j, column) in columns.iter().enumerate() {
        let values = table.numeric_column(column)?;
        x.index_axis_mut(Axis(1), j).assign(&Array1::from(values));
    }
    Ok(x)
}

/// Split R², cross-validated R² and importances of the three regressors on the 23 properties, and
/// the random forest on the feature subsets.
pub fn regress(table: &Table, settings: &RegressionSettings) -> Result<RegressionResults> {
    let properties = all_properties();
    let x = feature_matrix(table, &properties)?;
    let y = Array1::from(table.numeric_column(TARGET)?);
    let split = match &settings.test_rows {
        Some(rows) => split_from_test_rows(x.nrows(), rows)?,
        None => shuffled_split(x.nrows(), settings.test_fraction, settings.seed)?,
    };
    let models = regressors(settings.seed);
    let score_on = |regressor: &Regressor, x: &Array2<f64>| -> Result<(f64, CrossValidation)> {
        let prepared = prepare_split(x.view(), y.view(), &split, settings.scaler)?;
        let predicted = regressor.fit_predict(
            prepared.x_train.view(),
            prepared.y_train.view(),
            prepared.x_test.view(),
        )?;
        let r2 = r2_score(prepared.y_test.view(), predicted.view())?;
        let cv = cross_validate_r2(
            x.view(),
            y.view(),
            settings.folds,
            settings.seed,
            settings.scaler,
            |x_train, y_train, x_test| regressor.fit_predict(x_train, y_train, x_test),
        )?;
        Ok((r2, cv))
    };
    let importances_on = |regressor: &Regressor, x: &Array2<f64>| -> Result<Vec<f64>> {
        let prepared = prepare_split(x.view(), y.view(), &split, settings.scaler)?;
        Ok(regressor
            .fit_importances(prepared.x_train.view(), prepared.y_train.view())?
            .to_vec())
    };
    let mut scores = Vec::new();
    let mut importances = Vec::new();
    for regressor in &models {
        let (r2_split, cv) = score_on(regressor, &x)?;
        scores.push(ModelScore {
            model: regressor.name(),
            r2_split,
            cv,
        });
        importances.push(importances_on(regressor, &x)?);
    }
    let forest = &models[1];
    let mut subsets = Vec::new();
    for (subset, features) in feature_subsets() {
        let x_subset = feature_matrix(table, &features)?;
        let (r2_split, cv) = score_on(forest, &x_subset)?;
        subsets.push(SubsetScore {
            subset,
            importances: importances_on(forest, &x_subset)?,
            features,
            r2_split,
            cv,
        });
    }
    Ok(RegressionResults {
        scores,
        properties,
        importances,
        subsets,
        n_train: split.train_rows.len(),
        n_test: split.test_rows.len(),
    })
}

/// Numbers as the CSVs write them: shortest round-trip form, so outputs are exact and stable.
pub fn format_value(value: f64) -> String {
    format!("{value}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_property_gets_a_note() {
        let table = Table::parse("a,b,test_acc\n1,5,0.1\n2,5,0.2\n3,5,0.4\n", "inline").unwrap();
        let result = correlate(&table, &["a".into(), "b".into()], TARGET).unwrap();
        assert!(result[0].pearson.unwrap() > 0.9);
        assert_eq!(result[1].pearson, None);
        assert!(result[1].note.contains("constant property"));
    }

    #[test]
    fn join_keeps_property_order_and_counts_missing() {
        let mut header = vec!["id".to_string(), "family".to_string()];
        header.extend(all_properties());
        let row = |id: &str| {
            let mut r = vec![id.to_string(), "watts_strogatz".to_string()];
            r.extend((0..23).map(|v| v.to_string()));
            r
        };
        let properties = Table {
            header,
            rows: vec![row("2"), row("0"), row("1")],
        };
        let results = Table::parse(
            "id,family,test_acc,test_loss\n0,ws,0.5,1\n2,ws,0.7,1\n",
            "inline",
        )
        .unwrap();
        let (joined, unmatched) = join_results(&properties, &results).unwrap();
        assert_eq!(unmatched, 1);
        assert_eq!(joined.text_column("id").unwrap(), vec!["2", "0"]);
        assert_eq!(joined.numeric_column(TARGET).unwrap(), vec![0.7, 0.5]);
        assert_eq!(joined.header.len(), 2 + 23 + 1);
    }
}
