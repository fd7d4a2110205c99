//! What `model.import` is asked to read: the weight file's format, and its renaming rules as
//! patterns checked at planning time.

use regex::Regex;
use serde::{Deserialize, Serialize};

/// The container format of a weight file.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum WeightFormat {
    /// From the first bytes: a zip or pickle is PyTorch, anything else safetensors.
    #[default]
    Auto,
    Safetensors,
    /// `torch.save` of a state dict, zip or legacy format (`.pt`, `.pth`, `.bin`).
    Pytorch,
}

/// A rename or drop rule that is not a regular expression.
#[derive(Debug, Clone, thiserror::Error)]
#[error("rename rule `{pattern}`: not a regular expression ({reason})")]
pub struct BadPattern {
    pub pattern: String,
    pub reason: String,
}

/// A rename or drop rule as a regex that must match a whole tensor name.
pub fn anchored_pattern(pattern: &str) -> Result<Regex, BadPattern> {
    Regex::new(&format!("^(?:{pattern})$")).map_err(|e| BadPattern {
        pattern: pattern.to_string(),
        reason: e.to_string(),
    })
}
