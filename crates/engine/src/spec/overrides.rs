//! `pipe run FILE -S stage.param=value` and `-S vars.NAME=value`: changes to a parsed pipeline
//! without editing the file. Values are YAML; the plan then validates them like the file's own,
//! and names the override, not a line, in its messages.

use serde_yaml::{Mapping, Value};

use super::{suggest, Diagnostic, SourceFile, SpecErrors};

impl SourceFile {
    /// Applies `-S` overrides in order; every malformed one is reported at once.
    pub fn with_overrides(mut self, overrides: &[String]) -> Result<Self, SpecErrors> {
        let mut problems = Vec::new();
        for text in overrides {
            if let Err(message) = self.apply(text) {
                problems.push(Diagnostic {
                    file: self.path.clone(),
                    pos: None,
                    message: format!("in `-S {text}`: {message}"),
                    help: Some(
                        "write `-S STAGE.PARAM=VALUE` or `-S vars.NAME=VALUE` (VALUE is YAML)"
                            .into(),
                    ),
                });
            }
        }
        if problems.is_empty() {
            Ok(self)
        } else {
            Err(SpecErrors(problems))
        }
    }

    fn apply(&mut self, text: &str) -> Result<(), String> {
        let (target, raw) = text
            .split_once('=')
            .ok_or_else(|| "no `=` between the name and the value".to_string())?;
        let value: Value =
            serde_yaml::from_str(raw).map_err(|e| format!("the value is not YAML: {e}"))?;
        let mut parts = target.split('.');
        let head = parts.next().unwrap_or_default();
        let rest: Vec<&str> = parts.collect();
        if rest.is_empty() || rest.iter().any(|p| p.is_empty()) {
            return Err(format!("`{target}` names no parameter"));
        }
        if head.contains('[') {
            return Err(format!(
                "`{head}` names one instance; overrides apply to a whole stage \
                 (a per-instance value belongs in `foreach`)"
            ));
        }
        let path = if head == "vars" {
            let [name] = rest.as_slice() else {
                return Err("a variable is `vars.NAME`".into());
            };
            self.spec.vars.insert((*name).to_string(), value);
            format!("vars.{name}")
        } else {
            let Some(stage) = self.spec.stages.get_mut(head) else {
                let stages = self.spec.stages.keys().map(String::as_str);
                return Err(match suggest(head, stages) {
                    Some(s) => format!("no stage `{head}`; did you mean `{s}`?"),
                    None => format!("no stage `{head}`"),
                });
            };
            set_dotted(&mut stage.with, &rest, value);
            format!("stages.{head}.with.{}", rest.join("."))
        };
        self.overrides.push((path, text.to_string()));
        Ok(())
    }
}

/// Sets `map.a.b.c = value`, creating the maps on the way.
fn set_dotted(map: &mut Mapping, path: &[&str], value: Value) {
    let key = Value::String(path[0].to_string());
    if path.len() == 1 {
        map.insert(key, value);
        return;
    }
    let entry = map
        .entry(key)
        .or_insert_with(|| Value::Mapping(Mapping::new()));
    if !entry.is_mapping() {
        *entry = Value::Mapping(Mapping::new());
    }
    if let Value::Mapping(inner) = entry {
        set_dotted(inner, &path[1..], value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn source() -> SourceFile {
        SourceFile::parse(
            Path::new("p.yaml"),
            "vars: {n: 1}\nstages:\n  a:\n    uses: cmd\n    with: {run: 'echo ${vars.n}', env: {X: y}}\n",
        )
        .unwrap()
    }

    #[test]
    fn overrides_set_parameters_nested_values_and_variables() {
        let s = source()
            .with_overrides(&[
                "a.threads=2".into(),
                "a.env.X=z".into(),
                "vars.n=[1, 2]".into(),
            ])
            .unwrap();
        let with = &s.spec.stages["a"].with;
        assert_eq!(with["threads"], Value::from(2));
        assert_eq!(with["env"]["X"], Value::from("z"));
        assert!(s.spec.vars["n"].is_sequence());
    }

    #[test]
    fn bad_overrides_are_named_with_a_suggestion() {
        let err = source()
            .with_overrides(&["b.threads=2".into(), "a[x].run=true".into(), "a.run".into()])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("in `-S b.threads=2`: no stage `b`; did you mean `a`?"),
            "{err}"
        );
        assert!(err.contains("names one instance"), "{err}");
        assert!(err.contains("no `=`"), "{err}");
    }
}
