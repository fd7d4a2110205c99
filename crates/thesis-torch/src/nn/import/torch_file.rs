//! Reading PyTorch `torch.save` files (`.pt`/`.pth`) of state dicts without Python: the zip
//! format of PyTorch ≥ 1.6 (`<name>/data.pkl` + `<name>/data/<key>`) and the legacy format
//! (five pickles — magic number, protocol, system info, the object, the storage keys — then each
//! storage's raw bytes, preceded by its element count as 8 bytes).
//!
//! Only state dicts are understood: dicts (nested dicts flattened with `.`) whose values are
//! tensors rebuilt by `torch._utils._rebuild_tensor_v2` (or `_rebuild_parameter`). Values that are
//! not tensors (counters, strings) are skipped; anything that would need Python code to rebuild
//! is an error naming it.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::path::{Path, PathBuf};

use tch::{Kind, Tensor};

use super::pickle::{read_pickle, PickleError, Value};

/// The legacy format's first pickle (`torch.serialization.MAGIC_NUMBER`).
const LEGACY_MAGIC: i128 = 0x1950a86a20f9469cfc6c;

/// Why a PyTorch file could not be read; every message names the file.
#[derive(Debug, thiserror::Error)]
pub enum TorchFileError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Pickle { path: PathBuf, source: PickleError },
    #[error("{path}: not a zip archive torch.save wrote ({reason})")]
    Zip { path: PathBuf, reason: String },
    #[error("{path}: {reason}")]
    Unsupported { path: PathBuf, reason: String },
    #[error("libtorch error: {0}")]
    Torch(#[from] tch::TchError),
}

/// Where each storage's bytes are, by persistent-id key.
struct Storages {
    bytes: HashMap<String, Vec<u8>>,
}

/// Reads a `torch.save` state dict (either format) into name → tensor, in the file's order
/// sorted by name.
pub fn read_torch_file(path: &Path) -> Result<BTreeMap<String, Tensor>, TorchFileError> {
    let data = std::fs::read(path).map_err(|source| TorchFileError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    if data.starts_with(b"PK\x03\x04") {
        read_zip(path, &data)
    } else {
        read_legacy(path, &data)
    }
}

fn unsupported(path: &Path, reason: impl Into<String>) -> TorchFileError {
    TorchFileError::Unsupported {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

fn read_legacy(path: &Path, data: &[u8]) -> Result<BTreeMap<String, Tensor>, TorchFileError> {
    let pickle_error = |source| TorchFileError::Pickle {
        path: path.to_path_buf(),
        source,
    };
    let mut pos = 0;
    let mut next = |what: &str| -> Result<Value, TorchFileError> {
        let (value, used) = read_pickle(&data[pos..]).map_err(|e| match e {
            PickleError::UnsupportedOpcode { .. } | PickleError::Truncated(_) if pos == 0 => {
                unsupported(
                    path,
                    "neither a zip archive nor a legacy torch.save file (and not safetensors); \
                     set `format:` if the extension misleads",
                )
            }
            other => pickle_error(other),
        })?;
        tracing::trace!("{}: {what} pickle at byte {pos}", path.display());
        pos += used;
        Ok(value)
    };
    if next("magic")?.as_int() != Some(LEGACY_MAGIC) {
        return Err(unsupported(
            path,
            "not a torch.save file (the first pickle is not torch's magic number)",
        ));
    }
    let protocol = next("protocol")?;
    if protocol.as_int() != Some(1001) {
        return Err(unsupported(
            path,
            format!("legacy torch protocol {protocol:?}, only 1001 is known"),
        ));
    }
    let info = next("system info")?;
    if let Value::Dict(entries) = &info {
        let little = entries
            .iter()
            .find(|(k, _)| k.as_str() == Some("little_endian"))
            .map(|(_, v)| v.clone());
        if little == Some(Value::Bool(false)) {
            return Err(unsupported(path, "written on a big-endian machine"));
        }
    }
    let object = next("state dict")?;
    let keys = next("storage keys")?;
    let keys: Vec<String> = keys
        .as_sequence()
        .ok_or_else(|| unsupported(path, "the storage-key list is not a list"))?
        .iter()
        .map(|k| {
            k.as_str()
                .map(str::to_string)
                .ok_or_else(|| unsupported(path, "a storage key is not a string"))
        })
        .collect::<Result<_, _>>()?;
    // The element sizes come from the persistent ids in the object.
    let mut element_sizes = HashMap::new();
    collect_storage_kinds(path, &object, &mut element_sizes)?;
    let mut storages = Storages {
        bytes: HashMap::new(),
    };
    for key in keys {
        let truncated = || unsupported(path, format!("storage {key} is cut short"));
        let count_bytes: [u8; 8] = data
            .get(pos..pos + 8)
            .and_then(|b| b.try_into().ok())
            .ok_or_else(truncated)?;
        let count = u64::from_le_bytes(count_bytes) as usize;
        let size = element_sizes
            .get(&key)
            .map(|k: &Kind| k.elt_size_in_bytes());
        let size = size.ok_or_else(|| {
            unsupported(
                path,
                format!("storage {key} is used by no tensor, its type is unknown"),
            )
        })?;
        let start = pos + 8;
        let end = count
            .checked_mul(size)
            .and_then(|n| start.checked_add(n))
            .filter(|&end| end <= data.len())
            .ok_or_else(truncated)?;
        storages.bytes.insert(key, data[start..end].to_vec());
        pos = end;
    }
    flatten_state_dict(path, &object, &storages)
}

fn read_zip(path: &Path, data: &[u8]) -> Result<BTreeMap<String, Tensor>, TorchFileError> {
    let zip_error = |e: zip::result::ZipError| TorchFileError::Zip {
        path: path.to_path_buf(),
        reason: e.to_string(),
    };
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(data)).map_err(zip_error)?;
    let pickle_name = archive
        .file_names()
        .find(|name| name.ends_with("data.pkl") && name.matches('/').count() == 1)
        .map(str::to_string)
        .ok_or_else(|| TorchFileError::Zip {
            path: path.to_path_buf(),
            reason: "no `<name>/data.pkl` entry (a TorchScript module is not a state dict)".into(),
        })?;
    let prefix = pickle_name.trim_end_matches("data.pkl").to_string();
    let mut read_entry = |name: &str| -> Result<Vec<u8>, TorchFileError> {
        let mut entry = archive.by_name(name).map_err(zip_error)?;
        let mut bytes = Vec::with_capacity(entry.size() as usize);
        entry
            .read_to_end(&mut bytes)
            .map_err(|source| TorchFileError::Io {
                path: path.to_path_buf(),
                source,
            })?;
        Ok(bytes)
    };
    if let Ok(order) = read_entry(&format!("{prefix}byteorder")) {
        if order != b"little" {
            return Err(unsupported(path, "written in big-endian byte order"));
        }
    }
    let pickle = read_entry(&pickle_name)?;
    let (object, _) = read_pickle(&pickle).map_err(|source| TorchFileError::Pickle {
        path: path.to_path_buf(),
        source,
    })?;
    let mut kinds = HashMap::new();
    collect_storage_kinds(path, &object, &mut kinds)?;
    let mut storages = Storages {
        bytes: HashMap::new(),
    };
    for key in kinds.keys() {
        let bytes = read_entry(&format!("{prefix}data/{key}"))?;
        storages.bytes.insert(key.clone(), bytes);
    }
    flatten_state_dict(path, &object, &storages)
}

/// The dtype of `torch.<Name>Storage`.
fn storage_kind(name: &str) -> Option<Kind> {
    Some(match name {
        "torch.FloatStorage" => Kind::Float,
        "torch.DoubleStorage" => Kind::Double,
        "torch.HalfStorage" => Kind::Half,
        "torch.BFloat16Storage" => Kind::BFloat16,
        "torch.LongStorage" => Kind::Int64,
        "torch.IntStorage" => Kind::Int,
        "torch.ShortStorage" => Kind::Int16,
        "torch.CharStorage" => Kind::Int8,
        "torch.ByteStorage" => Kind::Uint8,
        "torch.BoolStorage" => Kind::Bool,
        _ => return None,
    })
}

/// `('storage', torch.FloatStorage, key, location, numel[, view])` → (key, dtype).
fn storage_id(path: &Path, id: &Value) -> Result<(String, Kind), TorchFileError> {
    let items = id
        .as_sequence()
        .ok_or_else(|| unsupported(path, format!("a persistent id that is not a tuple: {id:?}")))?;
    match items {
        [Value::Str(tag), storage_type, Value::Str(key), _location, _numel, rest @ ..]
            if tag == "storage" =>
        {
            if let Some(view) = rest.first().filter(|v| **v != Value::None) {
                return Err(unsupported(
                    path,
                    format!("storage {key} is a legacy storage view ({view:?}), not supported"),
                ));
            }
            let type_name = storage_type.global_name().unwrap_or_default();
            let kind = storage_kind(&type_name).ok_or_else(|| {
                unsupported(
                    path,
                    format!("storage {key} has unknown type `{type_name}`"),
                )
            })?;
            Ok((key.clone(), kind))
        }
        _ => Err(unsupported(
            path,
            format!("a persistent id that is not a storage: {id:?}"),
        )),
    }
}

fn collect_storage_kinds(
    path: &Path,
    value: &Value,
    kinds: &mut HashMap<String, Kind>,
) -> Result<(), TorchFileError> {
    match value {
        Value::PersistentId(id) => {
            let (key, kind) = storage_id(path, id)?;
            kinds.insert(key, kind);
        }
        Value::Tuple(items) | Value::List(items) => {
            for item in items {
                collect_storage_kinds(path, item, kinds)?;
            }
        }
        Value::Dict(entries) => {
            for (_, item) in entries {
                collect_storage_kinds(path, item, kinds)?;
            }
        }
        Value::Call { args, .. } => collect_storage_kinds(path, args, kinds)?,
        _ => {}
    }
    Ok(())
}

/// Name → tensor for every tensor of a (possibly nested) dict.
fn flatten_state_dict(
    path: &Path,
    object: &Value,
    storages: &Storages,
) -> Result<BTreeMap<String, Tensor>, TorchFileError> {
    let Value::Dict(_) = object else {
        return Err(unsupported(
            path,
            "the saved object is not a dict of tensors (save `model.state_dict()`)",
        ));
    };
    let mut out = BTreeMap::new();
    flatten_into(path, "", object, storages, &mut out)?;
    if out.is_empty() {
        return Err(unsupported(path, "the saved dict holds no tensors"));
    }
    Ok(out)
}

fn flatten_into(
    path: &Path,
    prefix: &str,
    value: &Value,
    storages: &Storages,
    out: &mut BTreeMap<String, Tensor>,
) -> Result<(), TorchFileError> {
    match value {
        Value::Dict(entries) => {
            for (key, item) in entries {
                let key = match key {
                    Value::Str(s) => s.clone(),
                    Value::Int(i) => i.to_string(),
                    other => {
                        return Err(unsupported(
                            path,
                            format!("a dict key that is not a string: {other:?}"),
                        ))
                    }
                };
                let name = if prefix.is_empty() {
                    key
                } else {
                    format!("{prefix}.{key}")
                };
                flatten_into(path, &name, item, storages, out)?;
            }
        }
        Value::Call { .. } => {
            out.insert(
                prefix.to_string(),
                rebuild_tensor(path, prefix, value, storages)?,
            );
        }
        // Not a tensor (a step counter, a version string): nothing to import.
        _ => {}
    }
    Ok(())
}

fn rebuild_tensor(
    path: &Path,
    name: &str,
    value: &Value,
    storages: &Storages,
) -> Result<Tensor, TorchFileError> {
    let Value::Call { callable, args, .. } = value else {
        return Err(unsupported(path, format!("`{name}` is not a tensor")));
    };
    let function = callable.global_name().unwrap_or_default();
    let args = args.as_sequence().unwrap_or_default();
    match function.as_str() {
        "torch._utils._rebuild_parameter" | "torch._utils._rebuild_parameter_with_state" => {
            let data = args
                .first()
                .ok_or_else(|| unsupported(path, format!("`{name}`: a parameter without data")))?;
            rebuild_tensor(path, name, data, storages)
        }
        "torch._utils._rebuild_tensor_v2" | "torch._utils._rebuild_tensor" => {
            let bad = |what: &str| unsupported(path, format!("`{name}`: {what}"));
            let [Value::PersistentId(id), offset, size, stride, ..] = args else {
                return Err(bad("unexpected arguments to _rebuild_tensor_v2"));
            };
            let (key, kind) = storage_id(path, id)?;
            let ints = |v: &Value| -> Option<Vec<i64>> {
                v.as_sequence()?
                    .iter()
                    .map(|x| x.as_int().and_then(|i| i64::try_from(i).ok()))
                    .collect()
            };
            let size = ints(size).ok_or_else(|| bad("the size is not a tuple of integers"))?;
            let stride =
                ints(stride).ok_or_else(|| bad("the stride is not a tuple of integers"))?;
            let offset = offset
                .as_int()
                .and_then(|i| i64::try_from(i).ok())
                .ok_or_else(|| bad("the storage offset is not an integer"))?;
            let bytes = storages
                .bytes
                .get(&key)
                .ok_or_else(|| bad(&format!("storage {key} is not in the file")))?;
            let element = kind.elt_size_in_bytes();
            let numel = (bytes.len() / element) as i64;
            // The last element the view reaches must lie inside the storage.
            let empty = size.contains(&0);
            let last = offset
                + size
                    .iter()
                    .zip(&stride)
                    .map(|(n, s)| (n - 1).max(0) * s)
                    .sum::<i64>();
            if size.len() != stride.len() || offset < 0 || (!empty && last >= numel) {
                return Err(bad(&format!(
                    "size {size:?}, stride {stride:?} and offset {offset} do not fit its storage \
                     of {numel} elements"
                )));
            }
            let storage =
                Tensor::f_from_data_size(&bytes[..numel as usize * element], &[numel], kind)?;
            Ok(storage.f_as_strided(size, stride, offset)?.f_contiguous()?)
        }
        other => Err(unsupported(
            path,
            format!("`{name}` is rebuilt by `{other}`, which is not a plain tensor"),
        )),
    }
}
