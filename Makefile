# The two commands a user needs: `make run` and `make test`. Everything else is set up on demand.
SHELL := /bin/bash
CARGO ?= cargo

.PHONY: setup build test run bench thesis lint fmt clean

# CPU libtorch from the PyPI wheels, prepared once outside the clone (see scripts/setup-libtorch.sh).
setup: .libtorch/build-version
.libtorch/build-version:
	./scripts/setup-libtorch.sh

build: setup
	$(CARGO) build --release

# The report test needs headless Chromium and the SLURM tests a live cluster; both are installed
# from Debian's packages when possible, and the tests say plainly why they skip when not.
test: setup
	@command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium >/dev/null) \
	  || echo "chromium not installed: the report screenshot test will skip"
	@./scripts/slurm-test-cluster.sh start || echo "no SLURM test cluster: the SLURM tests will say why and pass"
	@status=0; $(CARGO) test --release -- --test-threads=2 || status=$$?; \
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
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets -- -D warnings

fmt:
	$(CARGO) fmt

clean:
	$(CARGO) clean
	rm -rf cache artifacts
