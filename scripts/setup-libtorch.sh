#!/usr/bin/env bash
# Prepares a CPU-only libtorch from the PyPI wheels (the only reachable source) outside the clone,
# and links it as ./.libtorch so `.cargo/config.toml` can point LIBTORCH at it.
# Idempotent: a second call (or a second clone) reuses the prepared directory.
set -euo pipefail

TORCH_VERSION=2.11.0
CUDART_VERSION=13.0.96
CUPTI_VERSION=13.0.85
ROOT="${PIPE_LIBTORCH_HOME:-${XDG_CACHE_HOME:-$HOME/.cache}/pipe-libtorch}"
DEST="$ROOT/libtorch-$TORCH_VERSION-cpu"
WHEELS="$ROOT/wheels"
REPO="$(cd "$(dirname "$0")/.." && pwd)"

if [ ! -f "$DEST/build-version" ]; then
  echo "setup: preparing CPU libtorch $TORCH_VERSION in $DEST (one time, about 1 minute)"
  mkdir -p "$WHEELS"
  if ! ls "$WHEELS"/torch-$TORCH_VERSION-*.whl >/dev/null 2>&1; then
    python3 -m pip download --quiet --no-deps --only-binary=:all: \
      --platform manylinux_2_28_x86_64 --python-version 3.11 --implementation cp \
      "torch==$TORCH_VERSION" -d "$WHEELS"
  fi
  if ! ls "$WHEELS"/nvidia_cuda_runtime-$CUDART_VERSION-*.whl >/dev/null 2>&1 \
     || ! ls "$WHEELS"/nvidia_cuda_cupti-$CUPTI_VERSION-*.whl >/dev/null 2>&1; then
    python3 -m pip download --quiet --no-deps --only-binary=:all: \
      "nvidia-cuda-runtime==$CUDART_VERSION" "nvidia-cuda-cupti==$CUPTI_VERSION" -d "$WHEELS"
  fi
  TMP="$(mktemp -d "$ROOT/.unpack.XXXXXX")"
  trap 'rm -rf "$TMP"' EXIT
  # CUDA, python-binding and nvshmem libraries are left out so torch-sys links the CPU library only.
  python3 - "$WHEELS" "$TMP/libtorch" "$TORCH_VERSION" "$CUDART_VERSION" "$CUPTI_VERSION" <<'PY'
import glob, os, sys, zipfile
wheels, dest, tv, rv, cv = sys.argv[1:]
skip = ("libtorch_cuda", "libc10_cuda", "libtorch_python", "libtorch_nvshmem", "libcaffe2_nvrtc")
with zipfile.ZipFile(glob.glob(f"{wheels}/torch-{tv}-*.whl")[0]) as z:
    for name in z.namelist():
        if not (name.startswith("torch/lib/") or name.startswith("torch/include/")) or name.endswith("/"):
            continue
        if os.path.basename(name).startswith(skip):
            continue
        out = os.path.join(dest, name[len("torch/"):])
        os.makedirs(os.path.dirname(out), exist_ok=True)
        with z.open(name) as src, open(out, "wb") as dst:
            dst.write(src.read())
for pattern, lib in ((f"nvidia_cuda_runtime-{rv}-*.whl", "libcudart.so.13"), (f"nvidia_cuda_cupti-{cv}-*.whl", "libcupti.so.13")):
    with zipfile.ZipFile(glob.glob(f"{wheels}/{pattern}")[0]) as z:
        with z.open(f"nvidia/cu13/lib/{lib}") as src, open(os.path.join(dest, "lib", lib), "wb") as dst:
            dst.write(src.read())
with open(os.path.join(dest, "build-version"), "w") as f:
    f.write(tv + "\n")
PY
  rm -rf "$DEST"
  mv "$TMP/libtorch" "$DEST"
fi

ln -sfn "$DEST" "$REPO/.libtorch"
echo "setup: libtorch $TORCH_VERSION ready at $DEST (linked as .libtorch)"
