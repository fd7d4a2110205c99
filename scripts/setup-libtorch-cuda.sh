#!/usr/bin/env bash
# Prepares libtorch WITH CUDA for `make build-cuda`, next to the CPU one (scripts/setup-libtorch.sh)
# and from the same PyPI torch wheel: the CPU directory's files are hard-linked (no second copy of
# the 430 MB libtorch_cpu.so) and the wheel's CUDA libraries are added (libtorch_cuda.so,
# libc10_cuda.so, libtorch_cuda_linalg.so, libtorch_nvshmem.so, libcaffe2_nvrtc.so). Only
# libtorch_python.so stays out. cuBLAS, cuDNN, NCCL... are NOT here: the binary finds them at run
# time in the GPU machine's own PyTorch (scripts/pipe-cuda). Prints the directory.
# Idempotent: a second call reuses the prepared directory.
set -euo pipefail

TORCH_VERSION=2.11.0
ROOT="${PIPE_LIBTORCH_HOME:-${XDG_CACHE_HOME:-$HOME/.cache}/pipe-libtorch}"
CPU="$ROOT/libtorch-$TORCH_VERSION-cpu"
DEST="$ROOT/libtorch-$TORCH_VERSION-cuda"
WHEELS="$ROOT/wheels"
REPO="$(cd "$(dirname "$0")/.." && pwd)"

if [ ! -f "$DEST/build-version" ]; then
  # The CPU directory brings the wheel, include/, libcudart.so.13 and libcupti.so.13.
  [ -f "$CPU/build-version" ] || "$REPO/scripts/setup-libtorch.sh" >&2
  echo "setup: preparing CUDA libtorch $TORCH_VERSION in $DEST (one time)" >&2
  TMP="$(mktemp -d "$ROOT/.unpack-cuda.XXXXXX")"
  trap 'rm -rf "$TMP"' EXIT
  cp -al "$CPU" "$TMP/libtorch"
  rm -f "$TMP/libtorch/build-version"
  python3 - "$WHEELS" "$TMP/libtorch" "$TORCH_VERSION" <<'PY'
import glob, os, sys, zipfile
wheels, dest, tv = sys.argv[1:]
keep = ("libtorch_cuda", "libc10_cuda", "libtorch_nvshmem", "libcaffe2_nvrtc")
with zipfile.ZipFile(glob.glob(f"{wheels}/torch-{tv}-*.whl")[0]) as z:
    for name in z.namelist():
        base = os.path.basename(name)
        if not name.startswith("torch/lib/") or not base.startswith(keep):
            continue
        out = os.path.join(dest, "lib", base)
        with z.open(name) as src, open(out, "wb") as dst:
            dst.write(src.read())
with open(os.path.join(dest, "build-version"), "w") as f:
    f.write(tv + "\n")
PY
  rm -rf "$DEST"
  mv "$TMP/libtorch" "$DEST"
fi
echo "$DEST"
