//! Reading and writing named tensors as safetensors files: exact names and shapes checked, no
//! tensor left unused, and atomic replacement.

use std::collections::BTreeMap;
use std::path::Path;

use tch::{Kind, Tensor};

use super::{NnError, NnResult};

/// Reads a safetensors file into a name → tensor map, naming the file on failure.
pub(crate) fn read_safetensors_map(path: &Path) -> NnResult<BTreeMap<String, Tensor>> {
    if !path.exists() {
        return Err(NnError::Io {
            path: path.to_path_buf(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "file not found"),
        });
    }
    let tensors = Tensor::read_safetensors(path).map_err(|error| NnError::Unreadable {
        path: path.to_path_buf(),
        // The safetensors message without tch's "safetensors error <path>:" prefix.
        reason: match error {
            tch::TchError::SafeTensorError { err, .. } => err.to_string(),
            other => other.to_string(),
        },
    })?;
    Ok(tensors.into_iter().collect())
}

/// Removes `name` from `stored`, checking presence, shape and dtype f32.
pub(crate) fn take_checked(
    stored: &mut BTreeMap<String, Tensor>,
    path: &Path,
    name: &str,
    expected: &[i64],
) -> NnResult<Tensor> {
    let value = stored.remove(name).ok_or_else(|| NnError::MissingTensor {
        path: path.to_path_buf(),
        name: name.to_string(),
        expected: super::shape_text(expected),
    })?;
    if value.size() != expected {
        return Err(NnError::WrongShape {
            path: path.to_path_buf(),
            name: name.to_string(),
            found: value.size(),
            expected: expected.to_vec(),
        });
    }
    if value.kind() != Kind::Float {
        return Err(NnError::WrongKind {
            path: path.to_path_buf(),
            name: name.to_string(),
            found: value.kind(),
            expected: Kind::Float,
        });
    }
    Ok(value)
}

/// Fails on the first (alphabetically) tensor nobody asked for.
pub(crate) fn reject_leftovers(stored: BTreeMap<String, Tensor>, path: &Path) -> NnResult<()> {
    match stored.into_keys().next() {
        Some(name) => Err(NnError::UnexpectedTensor {
            path: path.to_path_buf(),
            name,
        }),
        None => Ok(()),
    }
}

/// Writes named tensors as safetensors via `<path>.tmp` and a rename, so a crash never leaves
/// a half-written file under the final name.
pub(crate) fn write_safetensors_atomic(path: &Path, named: &[(String, Tensor)]) -> NnResult<()> {
    let mut sorted: Vec<(String, Tensor)> = Vec::with_capacity(named.len());
    for (name, tensor) in named {
        // Detached contiguous CPU copies: safetensors needs contiguous data, detaching keeps
        // autograd out of serialisation, and a file written from a GPU loads anywhere (on the
        // CPU `to_device` is a no-op).
        sorted.push((
            name.clone(),
            tensor
                .f_detach()?
                .f_to_device(tch::Device::Cpu)?
                .f_contiguous()?,
        ));
    }
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    let temporary = pipe_engine::atomic::temporary_path(path);
    if let Err(e) = Tensor::write_safetensors(&sorted, &temporary) {
        let _ = std::fs::remove_file(&temporary);
        return Err(e.into());
    }
    pipe_engine::atomic::rename_into_place(&temporary, path).map_err(|source| NnError::Io {
        path: path.to_path_buf(),
        source,
    })
}
