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
    duplicates: Vec<DuplicateKey>,
    /// The first document was read to its end without a syntax error.
    complete: bool,
}

/// A key written twice in the same mapping (serde would silently keep the last one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DuplicateKey {
    /// Dotted path of the mapping holding the key (empty for the top level).
    pub parent: String,
    pub key: String,
    pub first: Pos,
    pub second: Pos,
}

enum Frame {
    Map {
        path: String,
        pending_key: Option<String>,
        /// Keys seen so far in this mapping, with their positions.
        seen: HashMap<String, Pos>,
    },
    Seq {
        path: String,
        next: usize,
    },
    /// A mapping or sequence used as a key (`? [a, b]: x`): not addressable, skipped.
    ComplexKey,
}

impl LocationIndex {
    /// Builds the index of the first document; a document that does not parse gives a partial
    /// index (serde_yaml reports the syntax error itself, with its own position).
    pub fn build(text: &str) -> Self {
        let mut index = LocationIndex::default();
        let mut parser = Parser::new_from_str(text);
        let mut stack: Vec<Frame> = Vec::new();
        // Complex and alias keys get a placeholder that never equals a written key.
        let mut opaque_keys = 0usize;
        while let Ok((event, marker)) = parser.next_token() {
            let pos = Pos {
                line: marker.line(),
                col: marker.col() + 1,
            };
            if matches!(stack.last(), Some(Frame::ComplexKey)) {
                match event {
                    Event::MappingStart(..) | Event::SequenceStart(..) => {
                        stack.push(Frame::ComplexKey);
                    }
                    Event::MappingEnd | Event::SequenceEnd => {
                        stack.pop();
                        if let Some(Frame::Map { pending_key, .. }) = stack.last_mut() {
                            opaque_keys += 1;
                            *pending_key = Some(format!("\0complex key {opaque_keys}"));
                        }
                    }
                    _ => {}
                }
                continue;
            }
            let at_key = matches!(
                stack.last(),
                Some(Frame::Map {
                    pending_key: None,
                    ..
                })
            );
            match event {
                Event::StreamEnd | Event::DocumentEnd => {
                    index.complete = true;
                    break;
                }
                Event::Scalar(text, ..) if at_key => {
                    if let Some(Frame::Map {
                        path,
                        pending_key,
                        seen,
                    }) = stack.last_mut()
                    {
                        match seen.get(&text) {
                            Some(&first) => index.duplicates.push(DuplicateKey {
                                parent: path.clone(),
                                key: text.clone(),
                                first,
                                second: pos,
                            }),
                            None => {
                                seen.insert(text.clone(), pos);
                                index.keys.insert(join(path, &text), pos);
                            }
                        }
                        *pending_key = Some(text);
                    }
                }
                Event::Scalar(..) => {
                    let path = Self::value_path(&mut stack);
                    index.values.entry(path).or_insert(pos);
                }
                Event::MappingStart(..) | Event::SequenceStart(..) if at_key => {
                    stack.push(Frame::ComplexKey);
                }
                Event::MappingStart(..) | Event::SequenceStart(..) => {
                    let path = Self::value_path(&mut stack);
                    index.values.entry(path.clone()).or_insert(pos);
                    if matches!(event, Event::MappingStart(..)) {
                        stack.push(Frame::Map {
                            path,
                            pending_key: None,
                            seen: HashMap::new(),
                        });
                    } else {
                        stack.push(Frame::Seq { path, next: 0 });
                    }
                }
                Event::MappingEnd | Event::SequenceEnd => {
                    stack.pop();
                }
                Event::Alias(_) if at_key => {
                    if let Some(Frame::Map { pending_key, .. }) = stack.last_mut() {
                        opaque_keys += 1;
                        *pending_key = Some(format!("\0alias key {opaque_keys}"));
                    }
                }
                Event::Alias(_) => {
                    Self::value_path(&mut stack);
                }
                _ => {}
            }
        }
        index
    }

    /// Keys written twice in one mapping, in file order of their second occurrence.
    pub fn duplicates(&self) -> &[DuplicateKey] {
        &self.duplicates
    }

    /// Whether the first document was read to its end (so [`Self::duplicates`] is the full list).
    pub fn complete(&self) -> bool {
        self.complete
    }

    /// The path of the value that starts now, advancing the parent frame past it.
    fn value_path(stack: &mut [Frame]) -> String {
        match stack.last_mut() {
            None | Some(Frame::ComplexKey) => String::new(),
            Some(Frame::Map {
                path, pending_key, ..
            }) => {
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

    #[test]
    fn duplicate_keys_are_found_per_mapping() {
        let text =
            "a: 1\nb: {x: 1, y: 2, x: 3}\na: 2\nc: [{x: 1}, {x: 2}]\n\"d.e\": 1\nd: {e: 2}\n";
        let index = LocationIndex::build(text);
        assert!(index.complete());
        let found: Vec<(String, String, Pos, Pos)> = index
            .duplicates()
            .iter()
            .map(|d| (d.parent.clone(), d.key.clone(), d.first, d.second))
            .collect();
        assert_eq!(
            found,
            vec![
                (
                    "b".into(),
                    "x".into(),
                    Pos { line: 2, col: 5 },
                    Pos { line: 2, col: 17 }
                ),
                (
                    String::new(),
                    "a".into(),
                    Pos { line: 1, col: 1 },
                    Pos { line: 3, col: 1 }
                ),
            ]
        );
    }

    #[test]
    fn complex_and_alias_keys_do_not_shift_paths() {
        let text = "m:\n  ? [a, b]\n  : 1\n  ? [c]\n  : 2\n  k: &v x\n  *v : 3\n  z: 4\n";
        let index = LocationIndex::build(text);
        assert!(index.duplicates().is_empty(), "{:?}", index.duplicates());
        assert_eq!(index.key("m.z"), Some(Pos { line: 8, col: 3 }));
        assert_eq!(index.value("m.z"), Some(Pos { line: 8, col: 6 }));
    }

    #[test]
    fn only_the_first_document_is_indexed() {
        let index = LocationIndex::build("a: 1\n---\na: 2\n");
        assert!(index.duplicates().is_empty());
        assert_eq!(index.value("a"), Some(Pos { line: 1, col: 4 }));
        let broken = LocationIndex::build("a: 1\na: [\n");
        assert!(!broken.complete());
    }
}
