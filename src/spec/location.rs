//! Maps a path inside a YAML document (`stages.train.with.lr`) to its line and column.
//!
//! serde_yaml's `Value` keeps no positions, so errors found after parsing (unknown plugin, bad
//! parameter, dangling input) would otherwise only name a field. One extra pass over the marked
//! event stream of yaml-rust2 gives every key and value its position.

use std::collections::HashMap;

use yaml_rust2::parser::{Event, Parser};

/// A 1-based line and column in the pipeline file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Pos {
    pub line: usize,
    pub col: usize,
}

/// Positions of every mapping key and value, addressed by their dotted path.
#[derive(Debug, Default)]
pub struct LocationIndex {
    keys: HashMap<String, Pos>,
    values: HashMap<String, Pos>,
}

enum Frame {
    Map {
        path: String,
        pending_key: Option<String>,
    },
    Seq {
        path: String,
        next: usize,
    },
}

impl LocationIndex {
    /// Builds the index; a document that does not parse gives an empty index (serde_yaml reports
    /// the syntax error itself, with its own position).
    pub fn build(text: &str) -> Self {
        let mut index = LocationIndex::default();
        let mut parser = Parser::new_from_str(text);
        let mut stack: Vec<Frame> = Vec::new();
        while let Ok((event, marker)) = parser.next_token() {
            let pos = Pos {
                line: marker.line(),
                col: marker.col() + 1,
            };
            match event {
                Event::StreamEnd => break,
                Event::Scalar(text, ..) => {
                    if let Some(Frame::Map { path, pending_key }) = stack.last_mut() {
                        if pending_key.is_none() {
                            let full = join(path, &text);
                            index.keys.insert(full, pos);
                            *pending_key = Some(text);
                            continue;
                        }
                    }
                    let path = Self::value_path(&mut stack);
                    index.values.insert(path, pos);
                }
                Event::MappingStart(..) | Event::SequenceStart(..) => {
                    let path = Self::value_path(&mut stack);
                    index.values.insert(path.clone(), pos);
                    if matches!(event, Event::MappingStart(..)) {
                        stack.push(Frame::Map {
                            path,
                            pending_key: None,
                        });
                    } else {
                        stack.push(Frame::Seq { path, next: 0 });
                    }
                }
                Event::MappingEnd | Event::SequenceEnd => {
                    stack.pop();
                }
                Event::Alias(_) => {
                    Self::value_path(&mut stack);
                }
                _ => {}
            }
        }
        index
    }

    /// The path of the value that starts now, advancing the parent frame past it.
    fn value_path(stack: &mut [Frame]) -> String {
        match stack.last_mut() {
            None => String::new(),
            Some(Frame::Map { path, pending_key }) => {
                let key = pending_key.take().unwrap_or_default();
                join(path, &key)
            }
            Some(Frame::Seq { path, next }) => {
                let p = join(path, &next.to_string());
                *next += 1;
                p
            }
        }
    }

    /// Position of the key at `path` (where "unknown field" errors should point).
    pub fn key(&self, path: &str) -> Option<Pos> {
        self.keys.get(path).copied()
    }

    /// Position of the value at `path`, falling back to its key, then to the nearest parent.
    pub fn value(&self, path: &str) -> Option<Pos> {
        let mut current = path;
        loop {
            if let Some(pos) = self.values.get(current).or_else(|| self.keys.get(current)) {
                return Some(*pos);
            }
            match current.rfind('.') {
                Some(cut) => current = &current[..cut],
                None => return None,
            }
        }
    }
}

fn join(parent: &str, child: &str) -> String {
    if parent.is_empty() {
        child.to_string()
    } else {
        format!("{parent}.{child}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_keys_and_values_in_nested_maps_and_sequences() {
        let text = "seed: 1\nstages:\n  train:\n    uses: rnn.train\n    with:\n      lr: 0.1\n    needs: [a, b]\n";
        let index = LocationIndex::build(text);
        assert_eq!(
            index.key("stages.train.uses"),
            Some(Pos { line: 4, col: 5 })
        );
        assert_eq!(
            index.value("stages.train.with.lr"),
            Some(Pos { line: 6, col: 11 })
        );
        assert_eq!(
            index.value("stages.train.needs.1"),
            Some(Pos { line: 7, col: 16 })
        );
        // Unknown leaf falls back to the nearest known parent.
        assert_eq!(
            index.value("stages.train.with.lr.x"),
            Some(Pos { line: 6, col: 11 })
        );
    }
}
