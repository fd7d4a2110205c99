# The two commands a user needs: `make run` and `make test`. Everything else is set up on demand.
SHELL := /bin/bash
CARGO ?= cargo

.PHONY: setup build build-cuda test run bench thesis lint fmt clean

# CPU libtorch from the PyPI wheels, prepared once outside the clone (see scripts/setup-libtorch.sh).
setup: .libtorch/build-version
.libtorch/build-version:
	./scripts/setup-libtorch.sh

build: setup
	$(CARGO) build --release

# `pipe-torch` linked against libtorch WITH CUDA (the same PyPI torch wheel), for a GPU machine
# that has PyTorch 2.11 but no Rust: target/cuda/release/{pipe,pipe-torch}, stripped; run them
# there through scripts/pipe-cuda (`pipe` itself links no libtorch and hands tensor runs to the
# `pipe-torch` beside it). Its own target directory, so the CPU build and `make test` are untouched.
build-cuda: setup
	libtorch="$$(./scripts/setup-libtorch-cuda.sh)" && \
	  LIBTORCH="$$libtorch" $(CARGO) build --release --bin pipe --bin pipe-torch --target-dir target/cuda-build
	@mkdir -p target/cuda/release
	strip -o target/cuda/release/pipe target/cuda-build/release/pipe
	strip -o target/cuda/release/pipe-torch target/cuda-build/release/pipe-torch
	@readelf -d target/cuda/release/pipe-torch | grep -q 'libtorch_cuda.so' \
	  || (echo "build-cuda: pipe-torch does not need libtorch_cuda.so" >&2; exit 1)
	@echo "build-cuda: target/cuda/release/pipe-torch ($$(du -h target/cuda/release/pipe-torch | cut -f1), needs libtorch_cuda.so) and pipe; run them with scripts/pipe-cuda"

# `pipe` hands runs that compute on libtorch to `pipe-torch` beside it, so the tests that run
# tensor stages through `pipe` need both binaries built (`cargo test` alone builds only `pipe`).
# Tests that need an optional environment are #[ignore = "needs ..."] (tests/common/mod.rs, `Env`).
# Here each environment is set up where possible (Chromium from Debian's packages, a one-node SLURM
# cluster, tmpfs mounts as root), and its tests then run by name with PIPE_REQUIRE_*=1, under which
# a missing environment fails instead of skipping. Where one cannot be had, its tests stay ignored.
test: setup
	@command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium >/dev/null) \
	  || echo "chromium not installed: the report screenshot test stays ignored"
	@status=0; slurm=0; \
	  if ./scripts/slurm-test-cluster.sh start; then slurm=1; else echo "no SLURM test cluster: the SLURM tests stay ignored"; fi; \
	  $(CARGO) build --release --bins || status=$$?; \
	  $(CARGO) test --release --workspace -- --test-threads=2 || status=$$?; \
	  if [ $$slurm = 1 ]; then PIPE_REQUIRE_SLURM=1 $(CARGO) test --release --test tests -- --ignored --test-threads=2 engine::slurm:: || status=$$?; fi; \
	  if command -v chromium >/dev/null; then PIPE_REQUIRE_CHROMIUM=1 $(CARGO) test --release --test tests -- --ignored thesis::analysis::report_opens_in_headless_chromium || status=$$?; fi; \
	  if [ -n "$$(ls -A ../shared/thesis-data 2>/dev/null)" ]; then PIPE_REQUIRE_THESIS_DATA=1 $(CARGO) test --release --test tests -- --ignored thesis::graph_oracle:: thesis::stats_thesis:: thesis::import:: || status=$$?; \
	  else echo "../shared/thesis-data is empty: the thesis-data tests stay ignored"; fi; \
	  if [ "$$(id -u)" = 0 ]; then PIPE_REQUIRE_MOUNT=1 $(CARGO) test --release --test tests -- --ignored engine::mounts:: || status=$$?; \
	  else echo "not root: the tmpfs (full and read-only disk) tests stay ignored"; fi; \
	  ./scripts/slurm-test-cluster.sh stop; exit $$status

run: build
	./target/release/pipe run pipelines/quick.yaml
	@echo "report: artifacts/report/report.html"

thesis: build
	./target/release/pipe run pipelines/thesis.yaml

bench: setup
	$(CARGO) build --release --bins
	@./scripts/slurm-test-cluster.sh start || echo "no SLURM test cluster: the slurm section will skip"
	@status=0; ./target/release/pipe-bench || status=$$?; \
	  ./scripts/slurm-test-cluster.sh stop; exit $$status

lint: setup
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt

clean:
	$(CARGO) clean
	rm -rf cache artifacts
