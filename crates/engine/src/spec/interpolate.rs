//! `${vars.NAME}`, `${KEY}` (a `foreach` key of the instance) and `${seed}` substitution.
//!
//! A string that is exactly one `${...}` takes the referenced value with its type (a number stays a
//! number, a list stays a list); inside a longer string the value is spliced in as text. `$${` is a
//! literal `${`, so shell code can still use `${VAR}`.

use indexmap::IndexMap;
use serde_yaml::Value;

/// What `${...}` can refer to for one instance.
pub struct Scope<'a> {
    pub vars: &'a IndexMap<String, Value>,
    pub matrix: &'a IndexMap<String, Value>,
    pub seed: u64,
}

/// A failed substitution: where inside the value (dotted, relative) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterpolationError {
    pub path: String,
    pub message: String,
    pub help: Option<String>,
}

impl Scope<'_> {
    fn lookup(&self, reference: &str) -> Result<Value, (String, Option<String>)> {
        let reference = reference.trim();
        if let Some(name) = reference.strip_prefix("vars.") {
            return self.vars.get(name).cloned().ok_or_else(|| {
                let help = crate::spec::suggest(name, self.vars.keys().map(String::as_str))
                    .map(|s| format!("did you mean `${{vars.{s}}}`?"))
                    .or_else(|| {
                        Some(format!(
                            "add `{name}:` under `vars:` at the top of the file"
                        ))
                    });
                (format!("unknown variable `${{vars.{name}}}`"), help)
            });
        }
        if reference == "seed" {
            return Ok(Value::from(self.seed));
        }
        if let Some(value) = self.matrix.get(reference) {
            return Ok(value.clone());
        }
        let mut known: Vec<String> = self.matrix.keys().map(|k| format!("${{{k}}}")).collect();
        known.extend(self.vars.keys().map(|k| format!("${{vars.{k}}}")));
        known.push("${seed}".into());
        let help = Some(format!("references available here: {}", known.join(", ")));
        Err((format!("unknown reference `${{{reference}}}`"), help))
    }
}

/// Substitutes every `${...}` in `value` (recursively through maps and lists).
pub fn interpolate(value: &Value, scope: &Scope<'_>) -> Result<Value, InterpolationError> {
    walk(value, scope, "")
}

fn walk(value: &Value, scope: &Scope<'_>, path: &str) -> Result<Value, InterpolationError> {
    let child = |key: &str| {
        if path.is_empty() {
            key.to_string()
        } else {
            format!("{path}.{key}")
        }
    };
    match value {
        Value::String(s) => substitute(s, scope).map_err(|(message, help)| InterpolationError {
            path: path.to_string(),
            message,
            help,
        }),
        Value::Sequence(items) => items
            .iter()
            .enumerate()
            .map(|(i, v)| walk(v, scope, &child(&i.to_string())))
            .collect::<Result<Vec<_>, _>>()
            .map(Value::Sequence),
        Value::Mapping(map) => {
            let mut out = serde_yaml::Mapping::new();
            for (k, v) in map {
                let key = scalar_text(k).unwrap_or_default();
                out.insert(k.clone(), walk(v, scope, &child(&key))?);
            }
            Ok(Value::Mapping(out))
        }
        other => Ok(other.clone()),
    }
}

/// Substitutes within one string.
pub fn substitute(text: &str, scope: &Scope<'_>) -> Result<Value, (String, Option<String>)> {
    let trimmed = text.trim();
    if trimmed.starts_with("${") && trimmed.ends_with('}') && trimmed[2..].find("${").is_none() {
        let inner = &trimmed[2..trimmed.len() - 1];
        if !inner.contains('}') {
            return scope.lookup(inner);
        }
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        if rest[..start].ends_with('$') {
            // `$${` → literal `${`.
            out.push_str(&rest[..start - 1]);
            out.push_str("${");
            rest = &rest[start + 2..];
            continue;
        }
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            return Err((
                format!("unclosed `${{` in `{text}`"),
                Some("close it with `}`, or write `$${` for a literal `${`".into()),
            ));
        };
        let value = scope.lookup(&after[..end])?;
        match scalar_text(&value) {
            Some(s) => out.push_str(&s),
            None => {
                return Err((
                    format!(
                        "`${{{}}}` is a list or map and cannot be spliced into text",
                        &after[..end]
                    ),
                    Some("use it as the whole value, e.g. `key: ${...}`".into()),
                ))
            }
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(Value::String(out))
}

/// The text of a scalar value as the user wrote it (`lstm`, `3`, `0.5`, `true`).
pub fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Null => Some("null".into()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope_parts() -> (IndexMap<String, Value>, IndexMap<String, Value>) {
        let mut vars = IndexMap::new();
        vars.insert("greeting".to_string(), Value::from("hello"));
        vars.insert("epochs".to_string(), Value::from(5));
        let mut matrix = IndexMap::new();
        matrix.insert("word".to_string(), Value::from("alpha"));
        (vars, matrix)
    }

    #[test]
    fn splices_text_and_keeps_types_for_whole_values() {
        let (vars, matrix) = scope_parts();
        let scope = Scope {
            vars: &vars,
            matrix: &matrix,
            seed: 7,
        };
        let v: Value = serde_yaml::from_str(
            "{a: '${vars.greeting} ${word}', b: '${vars.epochs}', c: '${seed}', d: 'x $${HOME}'}",
        )
        .unwrap();
        let out = interpolate(&v, &scope).unwrap();
        assert_eq!(out["a"], Value::from("hello alpha"));
        assert_eq!(out["b"], Value::from(5));
        assert_eq!(out["c"], Value::from(7u64));
        assert_eq!(out["d"], Value::from("x ${HOME}"));
    }

    #[test]
    fn unknown_reference_names_path_and_suggests() {
        let (vars, matrix) = scope_parts();
        let scope = Scope {
            vars: &vars,
            matrix: &matrix,
            seed: 7,
        };
        let v: Value = serde_yaml::from_str("{run: {deep: '${vars.greting}'}}").unwrap();
        let err = interpolate(&v, &scope).unwrap_err();
        assert_eq!(err.path, "run.deep");
        assert!(err.help.unwrap().contains("${vars.greeting}"));
    }
}
