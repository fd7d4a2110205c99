//! Replays the thesis's performance-prediction numbers (SPEC §5) from `thesis-data/results`:
//! MinMax fitted on all 200 rows, the thesis's 20 test rows, Bayesian ridge R² as Table 6.5 to
//! 4 decimals. Also prints the Pearson correlations per variant and, for information, forest and
//! AdaBoost R² and a 10-fold cross-validated R². Needs the data (`common::Env::ThesisData`).

use std::path::Path;

use ndarray::{Array1, Array2};
use pipe::stats::{
    cross_validate_r2, pearson_columns, prepare_split, r2_score, split_from_test_rows,
    AdaBoostRegressorParams, BayesianRidgeParams, RandomForestRegressorParams, Regressor,
    ScalerFit,
};

use crate::common::{require, thesis_data_dir, Env};

const FIRST_PROPERTY: &str = "layers";
const LAST_PROPERTY: &str = "edge_betweenness_std";
const TARGET: &str = "test_acc";

/// Table 6.5, Bayesian ridge column.
const THESIS_BAYES_R2: [(&str, f64); 4] = [
    ("rnn_tanh", 0.47919),
    ("rnn_relu", 0.36075),
    ("gru", 0.67225),
    ("lstm", 0.37206),
];

struct PropertyTable {
    names: Vec<String>,
    x: Array2<f64>,
    y: Array1<f64>,
}

/// Reads the 23 property columns and the accuracy from a `results/structure/<variant>.csv`.
fn read_structure(path: &Path) -> PropertyTable {
    let text = std::fs::read_to_string(path).expect("structure CSV is readable");
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().expect("header line").split(',').collect();
    let column = |name: &str| header.iter().position(|h| *h == name).expect(name);
    let (first, last, target) = (
        column(FIRST_PROPERTY),
        column(LAST_PROPERTY),
        column(TARGET),
    );
    let names: Vec<String> = header[first..=last].iter().map(|s| s.to_string()).collect();
    let mut values = Vec::new();
    let mut targets = Vec::new();
    let mut n_rows = 0;
    for line in lines.filter(|l| !l.trim().is_empty()) {
        let fields: Vec<&str> = line.split(',').collect();
        for field in &fields[first..=last] {
            values.push(field.parse::<f64>().expect("numeric property"));
        }
        targets.push(fields[target].parse::<f64>().expect("numeric accuracy"));
        n_rows += 1;
    }
    PropertyTable {
        x: Array2::from_shape_vec((n_rows, names.len()), values).expect("rectangular"),
        names,
        y: Array1::from(targets),
    }
}

/// The thesis's full-precision R² per variant from `results/regression/r_squared.csv`.
fn read_thesis_r2(path: &Path, variant: &str) -> Option<f64> {
    let text = std::fs::read_to_string(path).ok()?;
    let mode = variant.to_uppercase();
    text.lines()
        .map(|line| line.split(',').collect::<Vec<_>>())
        .find(|fields| fields.first() == Some(&mode.as_str()))
        .and_then(|fields| fields.get(1)?.parse().ok())
}

fn read_test_rows(path: &Path) -> Vec<usize> {
    std::fs::read_to_string(path)
        .expect("test rows CSV is readable")
        .lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.trim().parse().expect("row number"))
        .collect()
}

#[test]
#[ignore = "needs the thesis's data: make test runs it when ../shared/thesis-data is there"]
fn bayesian_ridge_reproduces_thesis_table_6_5() {
    let data = thesis_data_dir("results");
    if !require(
        "bayesian_ridge_reproduces_thesis_table_6_5",
        Env::ThesisData,
        data.as_ref().map(|_| ()).map_err(Clone::clone),
    ) {
        return;
    }
    let Ok(data) = data else { return };
    let results = data.join("results");
    let test_rows = read_test_rows(&results.join("regression/test_rows_random_state_7.csv"));
    assert_eq!(test_rows.len(), 20);
    for (variant, thesis_r2) in THESIS_BAYES_R2 {
        let table = read_structure(&results.join(format!("structure/{variant}.csv")));
        assert_eq!(
            table.x.dim(),
            (200, 23),
            "{variant}: 200 networks, 23 properties"
        );
        let split = split_from_test_rows(table.x.nrows(), &test_rows).unwrap();
        let prepared =
            prepare_split(table.x.view(), table.y.view(), &split, ScalerFit::AllRows).unwrap();
        let regressors = [
            Regressor::BayesianRidge(BayesianRidgeParams::default()),
            Regressor::RandomForest(RandomForestRegressorParams::default()),
            Regressor::AdaBoost(AdaBoostRegressorParams::default()),
        ];
        let mut scores = Vec::new();
        for regressor in &regressors {
            let predicted = regressor
                .fit_predict(
                    prepared.x_train.view(),
                    prepared.y_train.view(),
                    prepared.x_test.view(),
                )
                .unwrap();
            scores.push(r2_score(prepared.y_test.view(), predicted.view()).unwrap());
        }
        let cv = cross_validate_r2(
            table.x.view(),
            table.y.view(),
            10,
            0,
            ScalerFit::TrainRows,
            |x_train, y_train, x_test| regressors[0].fit_predict(x_train, y_train, x_test),
        )
        .unwrap();
        let thesis_full = read_thesis_r2(&results.join("regression/r_squared.csv"), variant);
        println!(
            "{variant}: BayesianRidge R² {:.12} (thesis {thesis_r2:.5}, r_squared.csv {thesis_full:?}); \
             RandomForest {:.4}; AdaBoost {:.4} (seed 0); BayesianRidge 10-fold CV {:.4} ± {:.4}",
            scores[0], scores[1], scores[2], cv.mean, cv.std
        );
        if let Some(full) = thesis_full {
            assert!(
                (scores[0] - full).abs() < 1e-9,
                "{variant}: BayesianRidge R² {} differs from r_squared.csv {full}",
                scores[0]
            );
        }
        assert!(
            (scores[0] - thesis_r2).abs() < 5e-5,
            "{variant}: BayesianRidge R² {} does not round to the thesis's {thesis_r2}",
            scores[0]
        );

        let correlations = pearson_columns(table.x.view(), table.y.view()).unwrap();
        println!("{variant}: Pearson correlation with test_acc");
        for (name, correlation) in table.names.iter().zip(&correlations) {
            println!(
                "  {name:<32} r = {:>8.4}  p = {:.3e}",
                correlation.r, correlation.p_value
            );
        }
    }
}
