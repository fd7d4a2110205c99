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

test: setup
	$(CARGO) test --release -- --test-threads=2

run: build
	./target/release/pipe run pipelines/hello.yaml

thesis: build
	./target/release/pipe run pipelines/thesis.yaml

bench: setup
	$(CARGO) run --release --bin pipe-bench

lint: setup
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets -- -D warnings

fmt:
	$(CARGO) fmt

clean:
	$(CARGO) clean
	rm -rf cache artifacts
