//! `pipe-torch`: the `pipe` command line with every plugin computable, the tensor plugins on
//! libtorch included, and `pipe eval`. `pipe` plans and decides without libtorch (whose start-up
//! costs 0.3 s and 120 MB) and hands a command that must compute on it to this binary beside it.

use pipe::cli::{EvalRequest, Evaluation, Tensors};
use pipe::exec::gpus::CudaProbe;

// As in `pipe`: deciding many instances is mostly small allocations.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn evaluate(request: &EvalRequest) -> Result<Evaluation, String> {
    pipe_thesis_torch::nn::evaluate_file(
        request.variant,
        request.readout,
        &request.weights,
        &request.data,
        request.batch_size,
        request.device,
        request.shuffle,
    )
    .map(|report| Evaluation {
        n: report.n,
        loss: report.loss,
        accuracy: report.accuracy,
    })
    .map_err(|e| e.to_string())
}

fn main() {
    let tensors = Tensors {
        cuda: CudaProbe {
            count: || tch::Cuda::device_count().max(0) as usize,
            // The CUDA build loads libtorch_cuda.so at start (`make build-cuda` keeps it linked).
            built_with_cuda: || {
                std::fs::read_to_string("/proc/self/maps")
                    .is_ok_and(|m| m.contains("libtorch_cuda"))
            },
        },
        evaluate,
    };
    pipe::cli::exit(pipe::cli::main_with_tensors(
        pipe_thesis_torch::registry(),
        tensors,
    ));
}
