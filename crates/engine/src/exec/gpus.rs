//! GPUs as a resource: which GPUs this process may hand out, how many an instance needs, and the
//! check that a run can have them before anything runs.
//!
//! The engine does not link libtorch, so the CUDA device count comes from a probe the binary
//! installs once ([`set_cuda_probe`]; `pipe-torch` installs `tch::Cuda::device_count`, `pipe` none). It is asked
//! only when some instance needs a GPU, so CPU-only runs never initialise CUDA.
//!
//! - `PIPE_GPUS=0,1` (indices as this process sees them) overrides the count; without CUDA it
//!   simulates GPUs, which is how the slot logic is tested. `PIPE_GPUS=` (empty) means none.
//! - An inherited `CUDA_VISIBLE_DEVICES` is respected: ordinal `i` is its `i`-th entry, and that
//!   entry is what a `cmd` child gets in its own `CUDA_VISIBLE_DEVICES`.
//!
//! A GPU's index never enters a key: results depend on the kind of device (`cpu` or `cuda`, in
//! the stage's parameters), not on which of a machine's identical GPUs ran them.

use std::sync::OnceLock;

use crate::plan::Plan;
use crate::stage::Gpu;

static PROBE: OnceLock<CudaProbe> = OnceLock::new();

/// How the binary answers questions about CUDA.
#[derive(Debug, Clone, Copy)]
pub struct CudaProbe {
    /// CUDA devices this process sees.
    pub count: fn() -> usize,
    /// Whether this binary can compute on CUDA at all (for messages only).
    pub built_with_cuda: fn() -> bool,
}

/// Installs the CUDA probe (once per process; later calls are ignored).
pub fn set_cuda_probe(probe: CudaProbe) {
    let _ = PROBE.set(probe);
}

/// Whether this binary installed a CUDA probe: one without cannot count GPUs, so it hands
/// instances that need one to a binary that can ([`super::first_foreign`]).
pub fn has_cuda_probe() -> bool {
    PROBE.get().is_some()
}

/// Why the GPUs cannot be determined or do not suffice.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GpuError {
    #[error(
        "PIPE_GPUS=`{value}`: {problem}; write the GPU indices this process sees, separated by \
         commas (e.g. `PIPE_GPUS=0,1`), or leave it empty for none"
    )]
    BadList { value: String, problem: String },
    #[error(
        "stage `{stage}` (instance `{instance}`) needs {needed} GPU(s), but {found}; get a GPU: \
         build the CUDA binary with `make build-cuda` and run it on a machine with a GPU \
         (scripts/pipe-cuda), or set PIPE_GPUS=0,1,... to name the GPUs pipe may use; or set \
         `device: cpu`"
    )]
    NotEnough {
        stage: String,
        instance: String,
        needed: u32,
        found: String,
    },
}

/// The GPUs this process may hand out, from `PIPE_GPUS`, `CUDA_VISIBLE_DEVICES` and the CUDA
/// device count.
pub fn discover() -> Result<Vec<Gpu>, GpuError> {
    discover_from(
        std::env::var("PIPE_GPUS").ok().as_deref(),
        std::env::var("CUDA_VISIBLE_DEVICES").ok().as_deref(),
        || PROBE.get().map(|probe| (probe.count)()).unwrap_or(0),
    )
}

/// [`discover`] from given values (`None`: the variable is unset).
pub fn discover_from(
    pipe_gpus: Option<&str>,
    visible: Option<&str>,
    count: impl FnOnce() -> usize,
) -> Result<Vec<Gpu>, GpuError> {
    // CUDA reads `CUDA_VISIBLE_DEVICES` up to the first invalid entry; `-1` hides everything.
    let visible: Option<Vec<String>> = visible.map(|v| {
        v.split(',')
            .map(str::trim)
            .take_while(|e| !e.is_empty() && !e.starts_with('-'))
            .map(String::from)
            .collect()
    });
    let id = |ordinal: usize| match &visible {
        Some(ids) => ids.get(ordinal).cloned(),
        None => Some(ordinal.to_string()),
    };
    if let Some(list) = pipe_gpus {
        let mut gpus: Vec<Gpu> = Vec::new();
        for entry in list.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let bad = |problem: String| GpuError::BadList {
                value: list.to_string(),
                problem,
            };
            let ordinal: usize = entry
                .parse()
                .map_err(|_| bad(format!("`{entry}` is not a GPU index")))?;
            if gpus.iter().any(|g| g.ordinal == ordinal) {
                return Err(bad(format!("GPU {ordinal} is named twice")));
            }
            let id = id(ordinal).ok_or_else(|| {
                bad(format!(
                    "GPU {ordinal} is not among the {} that CUDA_VISIBLE_DEVICES leaves",
                    visible.as_ref().map_or(0, Vec::len)
                ))
            })?;
            gpus.push(Gpu { ordinal, id });
        }
        return Ok(gpus);
    }
    if visible.as_ref().is_some_and(Vec::is_empty) {
        return Ok(Vec::new());
    }
    let mut n = count();
    if let Some(ids) = &visible {
        n = n.min(ids.len());
    }
    Ok((0..n)
        .filter_map(|ordinal| id(ordinal).map(|id| Gpu { ordinal, id }))
        .collect())
}

/// The GPUs instance `index` needs: its stage's `resources.gpus`, at least what its parameters
/// imply (`device: cuda` implies 1).
pub fn instance_gpus(plan: &Plan, index: usize) -> u32 {
    let instance = &plan.instances[index];
    let asked = plan
        .source
        .spec
        .stages
        .get(&instance.stage)
        .and_then(|s| s.resources.as_ref())
        .and_then(|r| r.gpus)
        .unwrap_or(0);
    asked.max(instance.resolved.gpus)
}

/// The first selected instance needing more GPUs than `available` holds: the error to stop on.
pub fn check_enough<'a>(
    plan: &Plan,
    selected: impl IntoIterator<Item = &'a usize>,
    available: &[Gpu],
    source: &str,
) -> Result<(), GpuError> {
    let mut wanting: Vec<usize> = selected
        .into_iter()
        .copied()
        .filter(|&i| instance_gpus(plan, i) as usize > available.len())
        .collect();
    wanting.sort_unstable();
    match wanting.first() {
        None => Ok(()),
        Some(&i) => Err(GpuError::NotEnough {
            stage: plan.instances[i].stage.clone(),
            instance: plan.instances[i].name.clone(),
            needed: instance_gpus(plan, i),
            found: match available.len() {
                0 => format!("{source} no GPU"),
                n => format!("{source} only {n}"),
            },
        }),
    }
}

/// Where `discover` found its GPUs, for messages.
pub fn source_text() -> &'static str {
    if std::env::var_os("PIPE_GPUS").is_some() {
        "PIPE_GPUS names"
    } else if !PROBE.get().is_some_and(|probe| (probe.built_with_cuda)()) {
        "this pipe binary is built without CUDA and sees"
    } else {
        "this machine has"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(gpus: &[Gpu]) -> Vec<(usize, &str)> {
        gpus.iter().map(|g| (g.ordinal, g.id.as_str())).collect()
    }

    #[test]
    fn pipe_gpus_overrides_and_maps_through_visible_devices() {
        let none = || panic!("PIPE_GPUS must not ask CUDA");
        let gpus = discover_from(Some("0,1"), None, none).unwrap();
        assert_eq!(ids(&gpus), [(0, "0"), (1, "1")]);
        let gpus = discover_from(Some(" 1 "), Some("4,7"), || 0).unwrap();
        assert_eq!(ids(&gpus), [(1, "7")]);
        assert!(discover_from(Some(""), None, || 8).unwrap().is_empty());
        for bad in ["0,x", "0,0", "-1"] {
            let err = discover_from(Some(bad), None, || 0).unwrap_err();
            assert!(matches!(err, GpuError::BadList { .. }), "{bad}: {err}");
        }
        let err = discover_from(Some("2"), Some("4,7"), || 0).unwrap_err();
        assert!(err.to_string().contains("CUDA_VISIBLE_DEVICES"), "{err}");
    }

    #[test]
    fn the_device_count_respects_visible_devices() {
        assert_eq!(
            ids(&discover_from(None, None, || 2).unwrap()),
            [(0, "0"), (1, "1")]
        );
        assert_eq!(
            ids(&discover_from(None, Some("GPU-a1,GPU-b2"), || 2).unwrap()),
            [(0, "GPU-a1"), (1, "GPU-b2")]
        );
        assert!(discover_from(None, Some(""), || 2).unwrap().is_empty());
        assert!(discover_from(None, Some("-1"), || 2).unwrap().is_empty());
        assert_eq!(
            ids(&discover_from(None, Some("3,-1,5"), || 2).unwrap()),
            [(0, "3")]
        );
        assert!(discover_from(None, None, || 0).unwrap().is_empty());
    }
}
