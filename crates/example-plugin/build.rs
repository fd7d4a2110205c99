//! Embeds the libtorch library directory as an rpath so `target/*/pipe` and `cargo test`
//! binaries run without `LD_LIBRARY_PATH`.
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
}
