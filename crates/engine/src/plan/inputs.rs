//! Parsing and binding of input references: `STAGE.OUTPUT`, `STAGE[v1,v2].OUTPUT`,
//! `STAGE[*].OUTPUT` (fan-in), and `needs:` entries `STAGE` / `STAGE[v]`.

use std::collections::HashMap;

use crate::spec::{self, Scope};

use super::{Builder, Expanded, InputBinding, Instance};

/// A parsed reference to upstream instances.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputRef {
    pub stage: String,
    /// `None`: no brackets; `Some(None)`: `[*]`; `Some(Some(values))`: `[v1,v2]`.
    pub selector: Option<Option<Vec<String>>>,
    pub output: Option<String>,
}

impl InputRef {
    /// Parses `STAGE[sel].OUTPUT` (`with_output`) or `STAGE[sel]` (a `needs` entry).
    pub fn parse(text: &str, with_output: bool) -> Result<InputRef, String> {
        let text = text.trim();
        let (head, output) = if with_output {
            // The output follows the last `.` that is outside brackets.
            let close = text.rfind(']').map(|i| i + 1).unwrap_or(0);
            match text[close..].rfind('.') {
                Some(dot) => (
                    &text[..close + dot],
                    Some(text[close + dot + 1..].to_string()),
                ),
                None => return Err(format!("input `{text}` names no output")),
            }
        } else {
            (text, None)
        };
        let (stage, selector) = match head.find('[') {
            Some(open) => {
                if !head.ends_with(']') {
                    return Err(format!("`{text}`: unclosed `[`"));
                }
                let inner = &head[open + 1..head.len() - 1];
                let selector = if inner.trim() == "*" {
                    None
                } else {
                    Some(inner.split(',').map(|v| v.trim().to_string()).collect())
                };
                (&head[..open], Some(selector))
            }
            None => (head, None),
        };
        if stage.is_empty() {
            return Err(format!("`{text}` names no stage"));
        }
        if output.as_deref() == Some("") {
            return Err(format!("`{text}` names no output after the `.`"));
        }
        Ok(InputRef {
            stage: stage.to_string(),
            selector,
            output,
        })
    }
}

const INPUT_FORMS: &str =
    "write `STAGE.OUTPUT`, `STAGE[value].OUTPUT`, or `STAGE[*].OUTPUT` for all instances";

impl Builder<'_> {
    /// Resolves an input reference of one instance to upstream instances and an output.
    pub(super) fn bind_input(
        &mut self,
        instances: &[Instance],
        by_stage: &HashMap<String, Expanded>,
        scope: &Scope<'_>,
        text: &str,
        path: &str,
    ) -> Option<InputBinding> {
        let text = self.interpolated(scope, text, path)?;
        let reference = match InputRef::parse(&text, true) {
            Ok(r) => r,
            Err(message) => {
                self.diagnostics.push(self.source.at_value(
                    path,
                    message,
                    Some(INPUT_FORMS.into()),
                ));
                return None;
            }
        };
        let ups = self.select(instances, by_stage, &reference, &text, path)?;
        let output = reference.output.clone().unwrap_or_default();
        for &up in &ups {
            let upstream = &instances[up];
            if !upstream.resolved.outputs.iter().any(|o| o.name == output) {
                let names: Vec<&str> = upstream
                    .resolved
                    .outputs
                    .iter()
                    .map(|o| o.name.as_str())
                    .collect();
                let help = match spec::suggest(&output, names.iter().copied()) {
                    Some(s) => format!("did you mean `{}.{s}`?", reference.stage),
                    None if names.is_empty() => {
                        format!("stage `{}` declares no outputs", reference.stage)
                    }
                    None => format!("outputs of `{}`: {}", reference.stage, names.join(", ")),
                };
                self.diagnostics.push(self.source.at_value(
                    path,
                    format!(
                        "stage `{}` has no output `{output}` (in `{text}`)",
                        reference.stage
                    ),
                    Some(help),
                ));
                return None;
            }
        }
        match reference.selector {
            Some(None) => Some(InputBinding::Many {
                instances: ups,
                output,
            }),
            _ => Some(InputBinding::One {
                instance: ups[0],
                output,
            }),
        }
    }

    /// Resolves a `needs` entry to upstream instances.
    pub(super) fn bind_need(
        &mut self,
        instances: &[Instance],
        by_stage: &HashMap<String, Expanded>,
        scope: &Scope<'_>,
        text: &str,
        path: &str,
    ) -> Option<Vec<usize>> {
        let text = self.interpolated(scope, text, path)?;
        let reference = match InputRef::parse(&text, false) {
            Ok(r) => r,
            Err(message) => {
                self.diagnostics.push(self.source.at_value(
                    path,
                    message,
                    Some("write `STAGE` or `STAGE[value]`".into()),
                ));
                return None;
            }
        };
        let mut reference = reference;
        if reference.selector.is_none() {
            // A bare stage in `needs` waits for all of its instances.
            reference.selector = Some(None);
        }
        self.select(instances, by_stage, &reference, &text, path)
    }

    fn interpolated(&mut self, scope: &Scope<'_>, text: &str, path: &str) -> Option<String> {
        match spec::substitute(text, scope) {
            Ok(serde_yaml::Value::String(s)) => Some(s),
            Ok(_) => {
                self.diagnostics.push(self.source.at_value(
                    path,
                    format!("`{text}` must be text naming an upstream stage"),
                    Some(INPUT_FORMS.into()),
                ));
                None
            }
            Err((message, help)) => {
                self.diagnostics
                    .push(self.source.at_value(path, message, help));
                None
            }
        }
    }

    fn select(
        &mut self,
        instances: &[Instance],
        by_stage: &HashMap<String, Expanded>,
        reference: &InputRef,
        text: &str,
        path: &str,
    ) -> Option<Vec<usize>> {
        let Some(expanded) = by_stage.get(&reference.stage) else {
            let declared = self.source.spec.stages.contains_key(&reference.stage);
            if !declared {
                let suggestion = spec::suggest(
                    &reference.stage,
                    self.source.spec.stages.keys().map(String::as_str),
                );
                self.diagnostics.push(self.source.at_value(
                    path,
                    format!(
                        "`{text}` refers to stage `{}`, which does not exist",
                        reference.stage
                    ),
                    Some(match suggestion {
                        Some(s) => format!("did you mean `{s}`?"),
                        None => format!(
                            "stages in this file: {}",
                            self.source.spec.stages.keys().cloned().collect::<Vec<_>>().join(", ")
                        ),
                    }),
                ));
            }
            // A declared stage that failed its own checks already has a diagnostic.
            return None;
        };
        let all = &expanded.indices;
        if all.is_empty() {
            // Every instance of that stage failed its own checks, already reported.
            return None;
        }
        let has_matrix = all.first().is_some_and(|&i| instances[i].label.is_some());
        match &reference.selector {
            None if has_matrix => {
                let example = all
                    .first()
                    .map(|&i| instances[i].name.clone())
                    .unwrap_or_default();
                self.diagnostics.push(self.source.at_value(
                    path,
                    format!(
                        "stage `{}` has {} instances; `{text}` must say which",
                        expanded.stage,
                        all.len()
                    ),
                    Some(format!(
                        "name one (e.g. `{example}`) or all with `{}[*]`",
                        expanded.stage
                    )),
                ));
                None
            }
            None | Some(None) => Some(all.clone()),
            Some(Some(values)) => {
                let wanted = values.join(",");
                match expanded.selected(&wanted, instances) {
                    Some(i) => Some(vec![i]),
                    None => {
                        let names: Vec<&str> =
                            all.iter().map(|&i| instances[i].name.as_str()).collect();
                        self.diagnostics.push(self.source.at_value(
                            path,
                            format!(
                                "`{text}`: stage `{}` has no instance `[{wanted}]`",
                                expanded.stage
                            ),
                            Some(format!("its instances are: {}", names.join(", "))),
                        ));
                        None
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_all_reference_forms() {
        let r = InputRef::parse("words.text", true).unwrap();
        assert_eq!(
            (r.stage.as_str(), r.selector, r.output.as_deref()),
            ("words", None, Some("text"))
        );
        let r = InputRef::parse("words[alpha].text", true).unwrap();
        assert_eq!(r.selector, Some(Some(vec!["alpha".to_string()])));
        let r = InputRef::parse("prune[lstm, both].summary", true).unwrap();
        assert_eq!(
            r.selector,
            Some(Some(vec!["lstm".to_string(), "both".to_string()]))
        );
        let r = InputRef::parse("words[*].text", true).unwrap();
        assert_eq!(r.selector, Some(None));
        // Matrix values may contain dots: the output is after the brackets.
        let r = InputRef::parse("sweep[0.5].out", true).unwrap();
        assert_eq!(r.selector, Some(Some(vec!["0.5".to_string()])));
        assert!(InputRef::parse("words", true).is_err());
        assert!(InputRef::parse("words[alpha", false).is_err());
    }
}
