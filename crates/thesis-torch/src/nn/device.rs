//! Where a tensor stage computes: the `device` parameter (`cpu`, `cuda`, `cuda:N`) and moving
//! models and batches there.
//!
//! `cuda` is "the GPU the executor gave this instance", `cuda:N` the N-th of the GPUs it was
//! given (so `resources.gpus` must be above N). Which physical GPU that is never enters a key:
//! results depend on the kind of device (CPU and CUDA kernels differ in the last bits), not on
//! which of a machine's GPUs ran them. Models are always initialised on the CPU (from the seed's
//! ChaCha stream) and then moved, so a model's starting values are the same on every device;
//! every file is written from a CPU copy, so a model trained on a GPU loads anywhere.

use tch::{Device, Tensor};

use super::NnResult;

pub use pipe_thesis::model::{DeviceError, DeviceSpec};

/// The libtorch device, given the CUDA ordinals of the GPUs the instance holds; fails with a
/// message saying how to get a GPU when this binary or machine has none.
pub fn resolve(spec: DeviceSpec, ordinals: &[usize]) -> Result<Device, DeviceError> {
    let DeviceSpec::Cuda(n) = spec else {
        return Ok(Device::Cpu);
    };
    if !tch::Cuda::is_available() {
        return Err(DeviceError::NoCuda);
    }
    let ordinal = *ordinals.get(n).ok_or(DeviceError::NotGiven {
        wanted: n,
        given: ordinals.len(),
    })?;
    let count = tch::Cuda::device_count().max(0) as usize;
    if ordinal >= count {
        return Err(DeviceError::Missing { ordinal, count });
    }
    Ok(Device::Cuda(ordinal))
}

/// A trainable leaf on `device` with `tensor`'s values; on the CPU the tensor itself, so CPU
/// runs compute exactly what they did before devices existed.
pub fn leaf_on(tensor: &Tensor, device: Device) -> NnResult<Tensor> {
    if tensor.device() == device {
        return Ok(tensor.shallow_clone());
    }
    Ok(tensor
        .f_to_device(device)?
        .f_detach()?
        .f_set_requires_grad(tensor.requires_grad())?)
}

/// `tensor` on `device` (no copy when it is there already).
pub fn on(tensor: &Tensor, device: Device) -> NnResult<Tensor> {
    if tensor.device() == device {
        return Ok(tensor.shallow_clone());
    }
    Ok(tensor.f_to_device(device)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_resolves_anywhere_and_cuda_says_how_to_get_one() {
        assert_eq!(resolve(DeviceSpec::Cpu, &[]).unwrap(), Device::Cpu);
        if !tch::Cuda::is_available() {
            let err = resolve(DeviceSpec::Cuda(0), &[0]).unwrap_err();
            assert_eq!(err, DeviceError::NoCuda);
            assert!(err.to_string().contains("make build-cuda"), "{err}");
        } else {
            let err = resolve(DeviceSpec::Cuda(1), &[0]).unwrap_err();
            assert!(matches!(
                err,
                DeviceError::NotGiven {
                    wanted: 1,
                    given: 1
                }
            ));
        }
    }
}
