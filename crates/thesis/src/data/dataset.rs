//! The dataset as rows of (string, valid, split): its CSV form
//! (`string,valid,split`), its JSON summary, and the import of existing
//! labelled files (`string,valid`, or pandas's `,string,valid` with an index
//! column first) that the `data.csv` stage runs, with errors that name the
//! file, the 1-based line and the fix.
//!
//! Labels: `0`/`1`, and also `true`/`false` in any case, because pandas
//! writes boolean columns as `True`/`False`; anything else is an error.
//! Strings must be non-empty ASCII (codes 0..=127), since the model embeds
//! ASCII codes.

use std::collections::BTreeMap;
use std::fmt;
use std::fs::File;
use std::path::{Path, PathBuf};

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Everything that can go wrong while generating, reading, importing or
/// writing a dataset.
#[derive(Debug, Error)]
pub enum DataError {
    #[error("{}: file not found; check the path (the thesis's data is in data/thesis/)", .path.display())]
    FileNotFound { path: PathBuf },

    #[error("{}: cannot open the file: {source}", .path.display())]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },

    #[error("{}, line {line}: cannot read the CSV: {source}; fix the file's format (comma-separated, UTF-8)", .path.display())]
    Csv {
        path: PathBuf,
        line: u64,
        source: csv::Error,
    },

    #[error("{}, line 1: missing column `{column}`; columns found: {found:?}. The header must name `string` and `valid` (a leading unnamed pandas index column is fine){}", .path.display(), if .column == "split" { "; a dataset file also needs `split` (train/test)" } else { "" })]
    MissingColumn {
        path: PathBuf,
        column: String,
        found: Vec<String>,
    },

    #[error("{}, line {line}: no data rows (only a header, or nothing at all); add rows below a `string,valid` header or choose another file", .path.display())]
    Empty { path: PathBuf, line: u64 },

    #[error("{}, line {line}: the row has {fields} fields but column `{column}` is field {needed}; complete the row", .path.display())]
    ShortRow {
        path: PathBuf,
        line: u64,
        fields: usize,
        column: String,
        needed: usize,
    },

    #[error("{}, line {line}: label {label:?} in column `valid` is neither 0 nor 1 (true/false are accepted too); fix the label", .path.display())]
    BadLabel {
        path: PathBuf,
        line: u64,
        label: String,
    },

    #[error("{}, line {line}: split {value:?} in column `split` is neither train nor test; fix the value", .path.display())]
    BadSplit {
        path: PathBuf,
        line: u64,
        value: String,
    },

    #[error("{}, line {line}: the string is empty; remove the row (a sequence needs at least one character)", .path.display())]
    EmptyString { path: PathBuf, line: u64 },

    #[error("{}, line {line}: character {character:?} (U+{:04X}) at position {position} of the string is outside ASCII 0..=127; remove or replace it (the model embeds ASCII codes only)", .path.display(), u32::from(*.character))]
    NonAscii {
        path: PathBuf,
        line: u64,
        character: char,
        position: usize,
    },

    #[error("{}: cannot write: {reason}; check that the folder exists and is writable", .path.display())]
    Write { path: PathBuf, reason: String },

    #[error("invalid parameter `{parameter}`: {reason}")]
    InvalidParameter { parameter: String, reason: String },

    #[error("label set `{label_set}`: only {found} of {wanted} strings after {attempts} walks; lower the count, widen min_len..=max_len, change fork_probabilities, or set distinct_within_set = false")]
    GeneratorExhausted {
        label_set: String,
        wanted: usize,
        found: usize,
        attempts: u64,
    },
}

/// Which part of the data a row belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    Train,
    Test,
}

impl Split {
    pub fn as_str(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Test => "test",
        }
    }

    fn parse(value: &str) -> Option<Split> {
        match value.trim().to_ascii_lowercase().as_str() {
            "train" => Some(Split::Train),
            "test" => Some(Split::Test),
            _ => None,
        }
    }
}

impl fmt::Display for Split {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How many rows go to the test split.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TestSize {
    /// Exactly this many rows.
    Count(usize),
    /// This share of all rows, rounded to the nearest count.
    Fraction(f64),
}

impl TestSize {
    /// The number of test rows among `total` rows.
    pub fn count_for(&self, total: usize) -> Result<usize, DataError> {
        match *self {
            TestSize::Count(count) if count <= total => Ok(count),
            TestSize::Count(count) => Err(DataError::InvalidParameter {
                parameter: "test".into(),
                reason: format!("{count} test rows requested but there are only {total} rows"),
            }),
            TestSize::Fraction(fraction) if (0.0..=1.0).contains(&fraction) => {
                Ok((total as f64 * fraction).round() as usize)
            }
            TestSize::Fraction(fraction) => Err(DataError::InvalidParameter {
                parameter: "test".into(),
                reason: format!("fraction {fraction} is not within 0..=1"),
            }),
        }
    }
}

/// One labelled sequence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Row {
    pub string: String,
    pub valid: bool,
    pub split: Split,
}

/// A labelled, split set of sequences, in a fixed order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Dataset {
    pub rows: Vec<Row>,
}

/// Counts of one split (or of all rows) by class.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClassCounts {
    pub valid: usize,
    pub invalid: usize,
    pub total: usize,
}

impl ClassCounts {
    fn add(&mut self, valid: bool) {
        if valid {
            self.valid += 1;
        } else {
            self.invalid += 1;
        }
        self.total += 1;
    }
}

/// What a dataset holds, for the stage's JSON output and the report.
/// Lengths count characters (`B` and `E` included); the mode is the smallest
/// of equally common lengths; min/max/mode are absent for an empty dataset.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    pub all: ClassCounts,
    pub train: ClassCounts,
    pub test: ClassCounts,
    pub min_length: Option<usize>,
    pub max_length: Option<usize>,
    pub mode_length: Option<usize>,
    pub length_histogram: BTreeMap<usize, usize>,
    pub length_histogram_valid: BTreeMap<usize, usize>,
    pub length_histogram_invalid: BTreeMap<usize, usize>,
}

impl Summary {
    pub fn write_json(&self, path: &Path) -> Result<(), DataError> {
        let write_error = |reason: String| DataError::Write {
            path: path.to_owned(),
            reason,
        };
        let file = File::create(path).map_err(|e| write_error(e.to_string()))?;
        serde_json::to_writer_pretty(file, self).map_err(|e| write_error(e.to_string()))
    }
}

/// Where the `data.csv` stage takes an existing dataset from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ImportSpec {
    /// Separate train and test files, each `string,valid`.
    TrainTest { train: PathBuf, test: PathBuf },
    /// One `string,valid` file, split with a seeded shuffle.
    Single {
        path: PathBuf,
        test: TestSize,
        seed: u64,
    },
}

/// Runs an import as `spec` describes.
pub fn import(spec: &ImportSpec) -> Result<Dataset, DataError> {
    match spec {
        ImportSpec::TrainTest { train, test } => Dataset::import_train_test(train, test),
        ImportSpec::Single { path, test, seed } => Dataset::import_with_split(path, *test, *seed),
    }
}

impl Dataset {
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The rows of one split, in dataset order.
    pub fn split_rows(&self, split: Split) -> impl Iterator<Item = &Row> {
        self.rows.iter().filter(move |row| row.split == split)
    }

    /// Writes `string,valid,split` with valid as 0/1 and split as train/test.
    pub fn write_csv(&self, path: &Path) -> Result<(), DataError> {
        let write_error = |reason: String| DataError::Write {
            path: path.to_owned(),
            reason,
        };
        let mut writer = csv::Writer::from_path(path).map_err(|e| write_error(e.to_string()))?;
        writer
            .write_record(["string", "valid", "split"])
            .map_err(|e| write_error(e.to_string()))?;
        for row in &self.rows {
            let valid = if row.valid { "1" } else { "0" };
            writer
                .write_record([row.string.as_str(), valid, row.split.as_str()])
                .map_err(|e| write_error(e.to_string()))?;
        }
        writer.flush().map_err(|e| write_error(e.to_string()))
    }

    /// Reads a file written by [`Dataset::write_csv`] (`string,valid,split`).
    pub fn read_csv(path: &Path) -> Result<Dataset, DataError> {
        let rows = read_labelled(path, true)?
            .into_iter()
            .map(|record| Row {
                string: record.string,
                valid: record.valid,
                // read_labelled(.., true) fills the split of every record.
                split: record.split.unwrap_or(Split::Train),
            })
            .collect();
        Ok(Dataset { rows })
    }

    /// Imports separate train and test files (`string,valid` or
    /// `,string,valid`); train rows come first, each file in its own order.
    pub fn import_train_test(train: &Path, test: &Path) -> Result<Dataset, DataError> {
        let mut rows = Vec::new();
        for (path, split) in [(train, Split::Train), (test, Split::Test)] {
            rows.extend(read_labelled(path, false)?.into_iter().map(|record| Row {
                string: record.string,
                valid: record.valid,
                split,
            }));
        }
        Ok(Dataset { rows })
    }

    /// Imports one `string,valid` (or `,string,valid`) file and marks a
    /// seeded random choice of `test` rows as test; rows keep the file order.
    pub fn import_with_split(path: &Path, test: TestSize, seed: u64) -> Result<Dataset, DataError> {
        let records = read_labelled(path, false)?;
        let test_count = test.count_for(records.len())?;
        let mut order: Vec<usize> = (0..records.len()).collect();
        order.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
        let mut is_test = vec![false; records.len()];
        for &index in order.iter().take(test_count) {
            is_test[index] = true;
        }
        let rows = records
            .into_iter()
            .zip(is_test)
            .map(|(record, test)| Row {
                string: record.string,
                valid: record.valid,
                split: if test { Split::Test } else { Split::Train },
            })
            .collect();
        Ok(Dataset { rows })
    }

    pub fn summary(&self) -> Summary {
        let mut summary = Summary::default();
        for row in &self.rows {
            summary.all.add(row.valid);
            match row.split {
                Split::Train => summary.train.add(row.valid),
                Split::Test => summary.test.add(row.valid),
            }
            let length = row.string.chars().count();
            *summary.length_histogram.entry(length).or_insert(0) += 1;
            let by_class = if row.valid {
                &mut summary.length_histogram_valid
            } else {
                &mut summary.length_histogram_invalid
            };
            *by_class.entry(length).or_insert(0) += 1;
        }
        summary.min_length = summary.length_histogram.keys().next().copied();
        summary.max_length = summary.length_histogram.keys().next_back().copied();
        // Ascending keys with a strict `>` keep the smallest of tied lengths.
        let mut mode: Option<(usize, usize)> = None;
        for (&length, &count) in &summary.length_histogram {
            if mode.is_none_or(|(_, best)| count > best) {
                mode = Some((length, count));
            }
        }
        summary.mode_length = mode.map(|(length, _)| length);
        summary
    }

    pub fn write_summary_json(&self, path: &Path) -> Result<(), DataError> {
        self.summary().write_json(path)
    }
}

/// One data row of an input file, checked.
struct LabelledRecord {
    string: String,
    valid: bool,
    split: Option<Split>,
}

/// Finds a column by name (case-insensitive, surrounding spaces ignored).
fn find_column(path: &Path, headers: &csv::StringRecord, name: &str) -> Result<usize, DataError> {
    headers
        .iter()
        .position(|header| header.trim().eq_ignore_ascii_case(name))
        .ok_or_else(|| DataError::MissingColumn {
            path: path.to_owned(),
            column: name.to_owned(),
            found: headers.iter().map(str::to_owned).collect(),
        })
}

fn parse_label(label: &str) -> Option<bool> {
    match label.trim().to_ascii_lowercase().as_str() {
        "1" | "true" => Some(true),
        "0" | "false" => Some(false),
        _ => None,
    }
}

/// Reads and checks every row of a labelled CSV file. Columns are found by
/// header name, so other columns (a pandas index) are ignored; `split` is
/// required only when `with_split`.
fn read_labelled(path: &Path, with_split: bool) -> Result<Vec<LabelledRecord>, DataError> {
    let file = File::open(path).map_err(|source| {
        if source.kind() == std::io::ErrorKind::NotFound {
            DataError::FileNotFound {
                path: path.to_owned(),
            }
        } else {
            DataError::Open {
                path: path.to_owned(),
                source,
            }
        }
    })?;
    let csv_error = |source: csv::Error| DataError::Csv {
        path: path.to_owned(),
        line: source.position().map_or(1, |p| p.line()),
        source,
    };
    // Flexible: a short row gets our own error naming the missing column.
    let mut reader = csv::ReaderBuilder::new().flexible(true).from_reader(file);
    let headers = reader.headers().map_err(csv_error)?.clone();
    if headers.iter().all(|h| h.trim().is_empty()) {
        return Err(DataError::Empty {
            path: path.to_owned(),
            line: 1,
        });
    }
    let string_column = find_column(path, &headers, "string")?;
    let valid_column = find_column(path, &headers, "valid")?;
    let split_column = if with_split {
        Some(find_column(path, &headers, "split")?)
    } else {
        None
    };

    let mut records = Vec::new();
    for result in reader.records() {
        let record = result.map_err(csv_error)?;
        let line = record.position().map_or(0, |p| p.line());
        let field = |column: usize, name: &str| {
            record.get(column).ok_or_else(|| DataError::ShortRow {
                path: path.to_owned(),
                line,
                fields: record.len(),
                column: name.to_owned(),
                needed: column + 1,
            })
        };
        let string = field(string_column, "string")?;
        if string.is_empty() {
            return Err(DataError::EmptyString {
                path: path.to_owned(),
                line,
            });
        }
        if let Some((index, character)) = string.chars().enumerate().find(|(_, c)| !c.is_ascii()) {
            return Err(DataError::NonAscii {
                path: path.to_owned(),
                line,
                character,
                position: index + 1,
            });
        }
        let label = field(valid_column, "valid")?;
        let valid = parse_label(label).ok_or_else(|| DataError::BadLabel {
            path: path.to_owned(),
            line,
            label: label.to_owned(),
        })?;
        let split = match split_column {
            Some(column) => {
                let value = field(column, "split")?;
                Some(Split::parse(value).ok_or_else(|| DataError::BadSplit {
                    path: path.to_owned(),
                    line,
                    value: value.to_owned(),
                })?)
            }
            None => None,
        };
        records.push(LabelledRecord {
            string: string.to_owned(),
            valid,
            split,
        });
    }
    if records.is_empty() {
        // The line where the first data row was expected.
        return Err(DataError::Empty {
            path: path.to_owned(),
            line: reader.position().line(),
        });
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// A scratch folder unique to one test, removed at the end.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(name: &str) -> Self {
            let dir = std::env::temp_dir().join(format!("pipe-data-{name}-{}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            Scratch(dir)
        }

        fn file(&self, name: &str, contents: &str) -> PathBuf {
            let path = self.0.join(name);
            File::create(&path)
                .unwrap()
                .write_all(contents.as_bytes())
                .unwrap();
            path
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn sample() -> Dataset {
        Dataset {
            rows: vec![
                Row {
                    string: "BTXSE".into(),
                    valid: true,
                    split: Split::Train,
                },
                Row {
                    string: "BPVVE".into(),
                    valid: true,
                    split: Split::Test,
                },
                Row {
                    string: "BTTXSE".into(),
                    valid: false,
                    split: Split::Train,
                },
            ],
        }
    }

    #[test]
    fn csv_round_trip() {
        let scratch = Scratch::new("round-trip");
        let path = scratch.0.join("data.csv");
        sample().write_csv(&path).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.starts_with("string,valid,split\nBTXSE,1,train\n"),
            "{text}"
        );
        assert_eq!(Dataset::read_csv(&path).unwrap(), sample());
    }

    #[test]
    fn summary_counts_and_lengths() {
        let summary = sample().summary();
        assert_eq!(
            summary.all,
            ClassCounts {
                valid: 2,
                invalid: 1,
                total: 3
            }
        );
        assert_eq!(summary.train.total, 2);
        assert_eq!(summary.test.valid, 1);
        assert_eq!(summary.min_length, Some(5));
        assert_eq!(summary.max_length, Some(6));
        assert_eq!(summary.mode_length, Some(5));
        assert_eq!(summary.length_histogram_invalid.get(&6), Some(&1));
        let json = serde_json::to_value(&summary).unwrap();
        assert_eq!(json["length_histogram"]["5"], 2);
        assert_eq!(Dataset::default().summary().mode_length, None);
    }

    #[test]
    fn summary_json_file() {
        let scratch = Scratch::new("summary");
        let path = scratch.0.join("summary.json");
        sample().write_summary_json(&path).unwrap();
        let back: Summary = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(back, sample().summary());
    }

    #[test]
    fn imports_both_header_forms_and_boolean_labels() {
        let scratch = Scratch::new("headers");
        let plain = scratch.file("plain.csv", "string,valid\nBTXSE,1\nBTTXSE,False\n");
        let pandas = scratch.file("pandas.csv", ",string,valid\n7,BPVVE,0\n8,BTXSE,true\n");
        let dataset = Dataset::import_train_test(&plain, &pandas).unwrap();
        let got: Vec<(&str, bool, Split)> = dataset
            .rows
            .iter()
            .map(|r| (r.string.as_str(), r.valid, r.split))
            .collect();
        assert_eq!(
            got,
            vec![
                ("BTXSE", true, Split::Train),
                ("BTTXSE", false, Split::Train),
                ("BPVVE", false, Split::Test),
                ("BTXSE", true, Split::Test),
            ]
        );
    }

    #[test]
    fn seeded_split_of_one_file() {
        let scratch = Scratch::new("split");
        let mut contents = String::from("string,valid\n");
        for i in 0..100 {
            contents.push_str(&format!("B{}E,{}\n", "T".repeat(i + 1), i % 2));
        }
        let path = scratch.file("all.csv", &contents);
        let first = Dataset::import_with_split(&path, TestSize::Fraction(0.25), 1).unwrap();
        assert_eq!(first.split_rows(Split::Test).count(), 25);
        assert_eq!(first.rows[0].string, "BTE");
        let again = import(&ImportSpec::Single {
            path: path.clone(),
            test: TestSize::Fraction(0.25),
            seed: 1,
        })
        .unwrap();
        assert_eq!(first, again);
        let other = Dataset::import_with_split(&path, TestSize::Count(25), 2).unwrap();
        assert_ne!(first, other);
        assert!(Dataset::import_with_split(&path, TestSize::Count(101), 2).is_err());
    }

    /// Imports `contents` and returns the error message.
    fn import_error(scratch: &Scratch, name: &str, contents: &str) -> String {
        let path = scratch.file(name, contents);
        Dataset::import_with_split(&path, TestSize::Count(0), 0)
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn import_errors_name_file_line_and_fix() {
        let scratch = Scratch::new("errors");

        let missing = scratch.0.join("nowhere.csv");
        let message = Dataset::import_with_split(&missing, TestSize::Count(0), 0)
            .unwrap_err()
            .to_string();
        assert!(message.contains("nowhere.csv: file not found"), "{message}");

        let message = import_error(&scratch, "nolabel.csv", "string,label\nBTXSE,1\n");
        assert!(
            message.contains("nolabel.csv, line 1: missing column `valid`")
                && message.contains(r#"["string", "label"]"#),
            "{message}"
        );

        let message = import_error(&scratch, "label.csv", "string,valid\nBTXSE,1\nBPVVE,2\n");
        assert!(
            message.contains("label.csv, line 3: label \"2\"") && message.contains("fix the label"),
            "{message}"
        );

        let message = import_error(&scratch, "ascii.csv", ",string,valid\n0,BTXSE,1\n1,BTé,0\n");
        assert!(
            message.contains("ascii.csv, line 3: character 'é' (U+00E9) at position 3"),
            "{message}"
        );

        for (name, contents, line) in [("empty.csv", "", 1), ("header.csv", "string,valid\n", 2)] {
            let message = import_error(&scratch, name, contents);
            assert!(
                message.contains(&format!("{name}, line {line}: no data rows")),
                "{message}"
            );
        }

        // Bytes that are not UTF-8 (here Latin-1 'é') stop the CSV reader.
        let path = scratch.0.join("latin1.csv");
        std::fs::write(&path, b"string,valid\nBTXSE,1\nBT\xe9,0\n").unwrap();
        let message = Dataset::import_with_split(&path, TestSize::Count(0), 0)
            .unwrap_err()
            .to_string();
        assert!(
            message.contains("latin1.csv, line 3: cannot read the CSV"),
            "{message}"
        );

        let message = import_error(&scratch, "short.csv", "string,valid\nBTXSE,1\nBPVVE\n");
        assert!(
            message.contains("short.csv, line 3: the row has 1 fields but column `valid`"),
            "{message}"
        );

        let message = import_error(&scratch, "blank.csv", "string,valid\n\"\",1\n");
        assert!(
            message.contains("blank.csv, line 2: the string is empty"),
            "{message}"
        );

        let path = scratch.file("nosplit.csv", "string,valid\nBTXSE,1\n");
        let message = Dataset::read_csv(&path).unwrap_err().to_string();
        assert!(
            message.contains("missing column `split`") && message.contains("train/test"),
            "{message}"
        );

        let path = scratch.file("badsplit.csv", "string,valid,split\nBTXSE,1,dev\n");
        let message = Dataset::read_csv(&path).unwrap_err().to_string();
        assert!(
            message.contains("badsplit.csv, line 2: split \"dev\""),
            "{message}"
        );
    }
}
