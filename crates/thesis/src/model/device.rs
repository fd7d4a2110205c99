//! The `device` parameter of a tensor stage (`cpu`, `cuda`, `cuda:N`) as declared and hashed;
//! `pipe-thesis-torch` resolves it to a libtorch device.
//!
//! `cuda` is "the GPU the executor gave this instance", `cuda:N` the N-th of the GPUs it was
//! given (so `resources.gpus` must be above N). Which physical GPU that is never enters a key.

use std::borrow::Cow;
use std::fmt;

use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The `device` parameter of a tensor stage.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum DeviceSpec {
    #[default]
    Cpu,
    /// The N-th GPU of those the instance holds (`cuda` is `Cuda(0)`).
    Cuda(usize),
}

impl DeviceSpec {
    pub fn is_cpu(&self) -> bool {
        *self == DeviceSpec::Cpu
    }

    /// GPUs an instance with this device needs.
    pub fn gpus(self) -> u32 {
        match self {
            DeviceSpec::Cpu => 0,
            DeviceSpec::Cuda(n) => n as u32 + 1,
        }
    }
}

/// Why a stage cannot have the device it asks for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeviceError {
    #[error(
        "`device: cuda` needs CUDA, but this pipe binary was built against the CPU-only libtorch \
         or no GPU is visible; build the CUDA binary with `make build-cuda` and run it through \
         scripts/pipe-cuda on a machine with a GPU, or set `device: cpu`"
    )]
    NoCuda,
    #[error(
        "`device: cuda:{wanted}` is GPU {wanted} of the instance's own, but it was given \
         {given}; ask for more with `resources: {{gpus: {}}}`",
        wanted + 1
    )]
    NotGiven { wanted: usize, given: usize },
    #[error(
        "the executor gave this instance CUDA device {ordinal}, but CUDA sees {count}; does \
         PIPE_GPUS name GPUs this machine does not have?"
    )]
    Missing { ordinal: usize, count: usize },
}

impl fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceSpec::Cpu => write!(f, "cpu"),
            DeviceSpec::Cuda(0) => write!(f, "cuda"),
            DeviceSpec::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

impl std::str::FromStr for DeviceSpec {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let wrong = || format!("`{text}` is not a device; write `cpu`, `cuda` or `cuda:N`");
        match text {
            "cpu" => Ok(DeviceSpec::Cpu),
            "cuda" => Ok(DeviceSpec::Cuda(0)),
            _ => {
                let index = text.strip_prefix("cuda:").ok_or_else(wrong)?;
                if index.is_empty() || !index.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(wrong());
                }
                index.parse().map(DeviceSpec::Cuda).map_err(|_| wrong())
            }
        }
    }
}

// `cuda:0` is written `cuda`: the same device, so the same key.
impl Serialize for DeviceSpec {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for DeviceSpec {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for DeviceSpec {
    fn schema_name() -> Cow<'static, str> {
        "Device".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        schemars::json_schema!({
            "type": "string",
            "pattern": "^(cpu|cuda(:[0-9]+)?)$",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_parse_and_print_canonically() {
        for (text, device, shown) in [
            ("cpu", DeviceSpec::Cpu, "cpu"),
            ("cuda", DeviceSpec::Cuda(0), "cuda"),
            ("cuda:0", DeviceSpec::Cuda(0), "cuda"),
            ("cuda:3", DeviceSpec::Cuda(3), "cuda:3"),
        ] {
            let parsed: DeviceSpec = text.parse().unwrap();
            assert_eq!(parsed, device, "{text}");
            assert_eq!(parsed.to_string(), shown);
            let json = serde_json::to_value(parsed).unwrap();
            assert_eq!(json, serde_json::json!(shown));
            assert_eq!(serde_json::from_value::<DeviceSpec>(json).unwrap(), device);
        }
        for bad in [
            "gpu", "CUDA", "cuda:", "cuda:x", "cuda:-1", "cuda:1:2", "mps", "",
        ] {
            let err = bad.parse::<DeviceSpec>().unwrap_err();
            assert!(err.contains("`cpu`, `cuda` or `cuda:N`"), "{bad}: {err}");
        }
        assert_eq!(DeviceSpec::Cpu.gpus(), 0);
        assert_eq!(DeviceSpec::Cuda(0).gpus(), 1);
        assert_eq!(DeviceSpec::Cuda(2).gpus(), 3);
    }
}
