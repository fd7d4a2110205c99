//! A small in-memory CSV table (header + text cells) for the analysis stages: read, filter, select
//! columns, pull numeric columns and write back. Cells stay text so a filtered or selected table
//! is written back byte-for-byte as it was read.

use std::path::Path;

use super::{AnalysisError, Result};

/// A CSV file as header and rows of text cells.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Table {
    pub header: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

impl Table {
    /// Reads a CSV file with a header line; every row must have as many cells as the header.
    pub fn read(path: &Path) -> Result<Table> {
        let text = std::fs::read_to_string(path).map_err(|source| AnalysisError::Io {
            context: format!("cannot read {}", path.display()),
            source,
        })?;
        Table::parse(&text, &path.display().to_string())
    }

    /// Parses CSV text; `origin` names it in error messages.
    pub fn parse(text: &str, origin: &str) -> Result<Table> {
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(true)
            .from_reader(text.as_bytes());
        let csv_error = |e: csv::Error| AnalysisError::Csv {
            origin: origin.to_string(),
            message: e.to_string(),
        };
        let header: Vec<String> = reader
            .headers()
            .map_err(csv_error)?
            .iter()
            .map(String::from)
            .collect();
        let mut rows = Vec::new();
        for record in reader.records() {
            let record = record.map_err(csv_error)?;
            rows.push(record.iter().map(String::from).collect());
        }
        Ok(Table { header, rows })
    }

    /// Writes the table as CSV.
    pub fn write(&self, path: &Path) -> Result<()> {
        let mut writer = csv::Writer::from_path(path).map_err(|e| AnalysisError::Csv {
            origin: path.display().to_string(),
            message: e.to_string(),
        })?;
        let write_error = |e: csv::Error| AnalysisError::Csv {
            origin: path.display().to_string(),
            message: e.to_string(),
        };
        writer.write_record(&self.header).map_err(write_error)?;
        for row in &self.rows {
            writer.write_record(row).map_err(write_error)?;
        }
        writer.flush().map_err(|source| AnalysisError::Io {
            context: format!("cannot write {}", path.display()),
            source,
        })
    }

    /// Position of column `name`.
    pub fn column_index(&self, name: &str) -> Result<usize> {
        self.header
            .iter()
            .position(|h| h == name)
            .ok_or_else(|| AnalysisError::MissingColumn {
                column: name.to_string(),
                available: self.header.join(", "),
            })
    }

    pub fn has_column(&self, name: &str) -> bool {
        self.header.iter().any(|h| h == name)
    }

    /// The cells of column `name`, as text.
    pub fn text_column(&self, name: &str) -> Result<Vec<&str>> {
        let index = self.column_index(name)?;
        Ok(self.rows.iter().map(|row| row[index].as_str()).collect())
    }

    /// The cells of column `name`, parsed as numbers.
    pub fn numeric_column(&self, name: &str) -> Result<Vec<f64>> {
        let index = self.column_index(name)?;
        self.rows
            .iter()
            .enumerate()
            .map(|(row_number, row)| {
                row[index]
                    .trim()
                    .parse::<f64>()
                    .map_err(|_| AnalysisError::NotNumeric {
                        column: name.to_string(),
                        row: row_number,
                        value: row[index].clone(),
                    })
            })
            .collect()
    }

    /// The rows whose `column` equals `value` (as text, or as numbers when both parse).
    pub fn filter_equal(&self, column: &str, value: &str) -> Result<Table> {
        let index = self.column_index(column)?;
        let wanted_number = value.trim().parse::<f64>().ok();
        let matches = |cell: &str| {
            cell == value
                || matches!(
                    (wanted_number, cell.trim().parse::<f64>().ok()),
                    (Some(a), Some(b)) if a == b
                )
        };
        Ok(Table {
            header: self.header.clone(),
            rows: self
                .rows
                .iter()
                .filter(|row| matches(&row[index]))
                .cloned()
                .collect(),
        })
    }

    /// Only the named columns, in the given order.
    pub fn select(&self, columns: &[String]) -> Result<Table> {
        let indices: Vec<usize> = columns
            .iter()
            .map(|c| self.column_index(c))
            .collect::<Result<_>>()?;
        Ok(Table {
            header: columns.to_vec(),
            rows: self
                .rows
                .iter()
                .map(|row| indices.iter().map(|&i| row[i].clone()).collect())
                .collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_select_and_numbers() {
        let table = Table::parse("a,b,c\n1,x,2.5\n2,y,3\n1.0,z,4\n", "inline").unwrap();
        let ones = table.filter_equal("a", "1").unwrap();
        assert_eq!(ones.rows.len(), 2);
        let picked = ones.select(&["c".to_string(), "b".to_string()]).unwrap();
        assert_eq!(picked.header, vec!["c", "b"]);
        assert_eq!(picked.numeric_column("c").unwrap(), vec![2.5, 4.0]);
        assert!(matches!(
            table.numeric_column("b"),
            Err(AnalysisError::NotNumeric { .. })
        ));
        assert!(matches!(
            table.select(&["d".to_string()]),
            Err(AnalysisError::MissingColumn { .. })
        ));
    }
}
