//! `data.reber` (generate the Reber-grammar dataset) and `data.csv` (import existing
//! `string,valid` files). Both write `dataset.csv` (`string,valid,split`) and `summary.json`.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::data::{self, ForkProbabilities, GeneratorParams, LabelSet, TestSize};
use pipe_engine::stage::{InputSpec, OutputDecl, Plugin, StageContext, StageError};

fn dataset_outputs() -> Vec<OutputDecl> {
    vec![
        OutputDecl::new("dataset", "dataset.csv"),
        OutputDecl::new("summary", "summary.json"),
    ]
}

fn write_dataset(dataset: &data::Dataset, ctx: &mut StageContext<'_>) -> Result<(), StageError> {
    dataset
        .write_csv(&ctx.output("dataset.csv"))
        .map_err(StageError::failed)?;
    let summary = dataset.summary();
    summary
        .write_json(&ctx.output("summary.json"))
        .map_err(StageError::failed)?;
    ctx.set_metrics(serde_json::json!({
        "train": summary.train.total,
        "test": summary.test.total,
        "valid": summary.all.valid,
        "invalid": summary.all.invalid,
        "mode_length": summary.mode_length,
    }));
    Ok(())
}

pub struct Reber;

/// The thesis's dataset by default (SPEC §1); the pipeline seed drives the generator.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct ReberParams {
    /// Number of strings, valid and invalid together.
    pub total: usize,
    /// Share of valid strings.
    pub valid_fraction: f64,
    /// Test split: `{count: N}` or `{fraction: F}`.
    pub test: TestSize,
    /// Shortest kept string, counting B and E.
    pub min_len: usize,
    /// Longest kept string, counting B and E.
    pub max_len: usize,
    /// Probability of each fork's edge towards the end (even = the thesis data).
    pub fork_probabilities: ForkProbabilities,
    /// Keep a walk only if its string is new within its set (as the thesis data shows).
    pub distinct_within_set: bool,
    /// Relabelled edge sets for invalid strings, with their weights.
    pub invalid_label_sets: Vec<LabelSet>,
}

impl Default for ReberParams {
    fn default() -> Self {
        let g = GeneratorParams::default();
        ReberParams {
            total: g.total,
            valid_fraction: g.valid_fraction,
            test: g.test,
            min_len: g.min_len,
            max_len: g.max_len,
            fork_probabilities: g.fork_probabilities,
            distinct_within_set: g.distinct_within_set,
            invalid_label_sets: g.invalid_label_sets,
        }
    }
}

impl ReberParams {
    fn generator(&self, seed: u64) -> GeneratorParams {
        GeneratorParams {
            total: self.total,
            valid_fraction: self.valid_fraction,
            test: self.test,
            min_len: self.min_len,
            max_len: self.max_len,
            seed,
            fork_probabilities: self.fork_probabilities,
            distinct_within_set: self.distinct_within_set,
            invalid_label_sets: self.invalid_label_sets.clone(),
        }
    }
}

impl Plugin for Reber {
    type Params = ReberParams;
    const KIND: &'static str = "data.reber";
    const VERSION: u32 = 1;
    const ABOUT: &'static str =
        "Generate the Reber-grammar classification dataset (valid and invalid strings)";

    fn inputs(&self) -> InputSpec {
        InputSpec::Named(Vec::new())
    }

    fn outputs(&self, _: &ReberParams) -> Vec<OutputDecl> {
        dataset_outputs()
    }

    fn check(&self, params: &ReberParams) -> Result<(), (String, String)> {
        params
            .generator(0)
            .validate()
            .map_err(|e| (String::new(), e.to_string()))
    }

    fn run(&self, params: ReberParams, ctx: &mut StageContext<'_>) -> Result<(), StageError> {
        ctx.progress(&format!("generating {} strings", params.total));
        let dataset = data::generate(&params.generator(ctx.seed)).map_err(StageError::failed)?;
        write_dataset(&dataset, ctx)
    }
}

pub struct CsvImport;

/// Either `train` and `test` files, or one `file` split with a seeded shuffle.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CsvParams {
    /// Training rows (`string,valid`), relative to the pipeline file.
    #[serde(default)]
    pub train: Option<String>,
    /// Test rows, relative to the pipeline file.
    #[serde(default)]
    pub test: Option<String>,
    /// One file to split instead of `train`/`test`.
    #[serde(default)]
    pub file: Option<String>,
    /// With `file`: the test split, `{count: N}` or `{fraction: F}`.
    #[serde(default)]
    pub test_size: Option<TestSize>,
}

impl Plugin for CsvImport {
    type Params = CsvParams;
    const KIND: &'static str = "data.csv";
    const VERSION: u32 = 1;
    const ABOUT: &'static str =
        "Import `string,valid` CSV files (train/test, or one file with a seeded split)";

    fn inputs(&self) -> InputSpec {
        InputSpec::Named(Vec::new())
    }

    fn outputs(&self, _: &CsvParams) -> Vec<OutputDecl> {
        dataset_outputs()
    }

    fn files(&self, params: &CsvParams) -> Vec<String> {
        [&params.train, &params.test, &params.file]
            .into_iter()
            .flatten()
            .cloned()
            .collect()
    }

    fn check(&self, params: &CsvParams) -> Result<(), (String, String)> {
        match (&params.train, &params.test, &params.file) {
            (Some(_), Some(_), None) if params.test_size.is_none() => Ok(()),
            (None, None, Some(_)) if params.test_size.is_some() => Ok(()),
            (None, None, Some(_)) => Err((
                "test_size".into(),
                "`file` needs `test_size: {count: N}` or `{fraction: F}`".into(),
            )),
            _ => Err((
                String::new(),
                "give either `train` and `test`, or `file` with `test_size`".into(),
            )),
        }
    }

    fn run(&self, params: CsvParams, ctx: &mut StageContext<'_>) -> Result<(), StageError> {
        let dataset = match (&params.train, &params.test, &params.file, params.test_size) {
            (Some(train), Some(test), _, _) => {
                data::Dataset::import_train_test(&ctx.project_path(train), &ctx.project_path(test))
            }
            (_, _, Some(file), Some(size)) => {
                data::Dataset::import_with_split(&ctx.project_path(file), size, ctx.seed)
            }
            _ => return Err(StageError::Failed("parameters were not checked".into())),
        }
        .map_err(StageError::failed)?;
        write_dataset(&dataset, ctx)
    }
}
