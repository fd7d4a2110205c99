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

/// A rename or drop rule as a regex that must match a whole tensor name.
pub fn anchored_pattern(pattern: &str) -> Result<Regex, regex::Error> {
    Regex::new(&format!("^(?:{pattern})$"))
}
