# Paddock: `make run` starts a local cluster and sidecar, `make test` runs everything CI checks.
SHELL := /bin/bash
export CARGO_TARGET_DIR ?= $(HOME)/.cache/paddock/target
VENV ?= $(HOME)/.cache/paddock/venv
PYTHON := $(VENV)/bin/python
BIN := $(CARGO_TARGET_DIR)/debug

.PHONY: run test deps system-deps python-deps build fmt-check clippy unit-test cluster-test e2e-test kazoo-test chart-test

## run: a local 3-node cluster and one sidecar on 127.0.0.1 (temp dir; Ctrl-C stops it)
run: system-deps
	cargo build --bin paddock-server --bin paddock-sidecar
	BIN=$(BIN) scripts/run-local.sh

## test: everything CI runs
test: deps fmt-check clippy unit-test cluster-test e2e-test kazoo-test chart-test

deps: system-deps python-deps

# RocksDB's bindings need libclang; the zkCli test needs Debian's zookeeper (Java client).
system-deps:
	@missing=""; \
	[ -e /usr/lib/llvm-14/lib/libclang.so ] || ls /usr/lib/x86_64-linux-gnu/libclang*.so* >/dev/null 2>&1 || missing="$$missing clang libclang-dev"; \
	command -v clang >/dev/null || missing="$$missing clang"; \
	[ -x /usr/share/zookeeper/bin/zkCli.sh ] || missing="$$missing zookeeper"; \
	command -v nc >/dev/null || missing="$$missing netcat-openbsd"; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

python-deps:
	@[ -x $(PYTHON) ] || python3 -m venv $(VENV)
	@$(PYTHON) -c "import kazoo, pytest, yaml, helm_python, kubernetes_validate" 2>/dev/null || \
		$(PYTHON) -m pip install --quiet kazoo pytest pyyaml helm-python-sdk==0.2.2 kubernetes-validate==1.37.0

build:
	cargo build --workspace --all-targets

fmt-check:
	cargo fmt --all -- --check

clippy:
	cargo clippy --workspace --all-targets -- -D warnings

# Unit tests and the process-level suites; the cluster suite runs on its own, one test at a
# time (each starts several servers, and the machine has 2 cores).
# Every cargo command here selects the whole workspace, so that they all resolve the same
# features and share one build of RocksDB; the heavy suites are `test = false` and run below.
unit-test: build
	cargo test --workspace

cluster-test: build
	cargo test --workspace --test cluster -- --test-threads=1

# Pods as processes: servers and sidecars configured by the operator's own builders, app
# processes, faults (SIGKILL, SIGSTOP, SIGTERM rollouts, partitions); one test at a time.
e2e-test: build
	cargo test --workspace --test e2e -- --test-threads=1

kazoo-test: build python-deps
	PADDOCK_SERVER_BIN=$(BIN)/paddock-server $(PYTHON) -m pytest -q server/tests/kazoo

# The Helm chart rendered by Helm's own engine (helm-python-sdk), linted, and every object
# validated against the Kubernetes schemas (kubernetes-validate).
chart-test: python-deps
	$(PYTHON) -m pytest -q charts/paddock/tests
