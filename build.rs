//! Embeds the libtorch library directory as an rpath so `target/*/pipe` and `cargo test`
//! binaries run without `LD_LIBRARY_PATH`; against a libtorch with CUDA (`make build-cuda`) it
//! also keeps `libtorch_cuda.so` linked.
use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    let Some(libtorch) = std::env::var_os("LIBTORCH") else {
        return;
    };
    let libtorch = PathBuf::from(libtorch);
    // Resolve the `.libtorch` link so the rpath names the real, shared directory.
    let resolved = libtorch.canonicalize().unwrap_or(libtorch);
    let lib = resolved.join("lib");
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display());
    // `pipe` itself links no libtorch: only the binaries that do keep libtorch_cuda.so.
    if lib.join("libtorch_cuda.so").exists()
        && std::env::var("CARGO_PKG_NAME").as_deref() != Ok("pipe")
    {
        // Nothing calls libtorch_cuda.so directly (it registers the CUDA kernels when loaded), so
        // the linker's --as-needed would drop it and the binary would be CPU-only. Its own
        // dependencies (cuBLAS, cuDNN, NCCL, ...) are not in the wheel: they are found at run
        // time in the GPU machine's PyTorch (scripts/pipe-cuda), hence --allow-shlib-undefined.
        // As link args of the final binaries only, they need no RUSTFLAGS, so build
        // scripts link as usual and no explicit --target is needed.
        for arg in [
            "-Wl,--no-as-needed",
            "-ltorch_cuda",
            "-lc10_cuda",
            "-Wl,--as-needed",
            "-Wl,--allow-shlib-undefined",
        ] {
            println!("cargo:rustc-link-arg={arg}");
        }
    }
}
