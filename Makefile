# Paddock: `make run` starts a local cluster and sidecar, `make test` runs everything CI checks.
SHELL := /bin/bash
CACHE := $(HOME)/.cache/paddock
export CARGO_TARGET_DIR ?= $(CACHE)/target
# RocksDB is built once per machine, optimized, by scripts/rocksdb.sh, and every cargo command
# below (debug and release, clippy too) links that library instead of compiling its C++ again.
ROCKSDB_VERSION := $(shell awk '/^name = "librocksdb-sys"$$/ { getline; gsub(/version = |"/, ""); print; exit }' Cargo.lock)
export ROCKSDB_LIB_DIR := $(CACHE)/rocksdb/$(ROCKSDB_VERSION)
export ROCKSDB_STATIC := 1
VENV ?= $(HOME)/.cache/paddock/venv
PYTHON := $(VENV)/bin/python
BIN := $(CARGO_TARGET_DIR)/debug
VERSION := $(shell awk '/^\[workspace.package\]/ { p = 1 } p && /^version = / { gsub(/version = |"/, ""); print; exit }' Cargo.toml)
# The release binaries `make images` and `make bench` share (one cargo command, one feature set).
RELEASE_BUILD := cargo build --release -p paddock-server -p paddock-sidecar -p paddock-operator -p paddock-e2e --bins


.PHONY: run test deps system-deps python-deps rocksdb porcupine kube-tools build fmt-check imports-check clippy rust-test kazoo-test chart-test images test-image image-test bench soak

## run: a local 3-node cluster and one sidecar on 127.0.0.1 (temp dir; Ctrl-C stops it)
# The same cargo command as `make test` builds with, so neither rebuilds after the other.
run: build
	BIN=$(BIN) scripts/run-local.sh

## test: everything CI runs
test: deps fmt-check imports-check clippy rust-test kazoo-test chart-test image-test

deps: system-deps python-deps

# RocksDB's bindings need libclang and its C++ a compiler; the zkCli test needs Debian's
# zookeeper (Java client); the robustness suite's network faults need iproute2 and iptables;
# the cluster suite's skewed clock needs faketime (libfaketime); the image is laid out by umoci
# and read back by skopeo.
system-deps:
	@missing=""; \
	[ -e /usr/lib/llvm-14/lib/libclang.so ] || ls /usr/lib/x86_64-linux-gnu/libclang*.so* >/dev/null 2>&1 || missing="$$missing clang libclang-dev"; \
	command -v clang >/dev/null || missing="$$missing clang"; \
	command -v c++ >/dev/null || missing="$$missing g++"; \
	[ -x /usr/share/zookeeper/bin/zkCli.sh ] || missing="$$missing zookeeper"; \
	command -v nc >/dev/null || missing="$$missing netcat-openbsd"; \
	command -v ip >/dev/null || missing="$$missing iproute2"; \
	command -v iptables >/dev/null || missing="$$missing iptables"; \
	[ -e /usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1 ] || missing="$$missing faketime"; \
	command -v umoci >/dev/null || missing="$$missing umoci"; \
	command -v skopeo >/dev/null || missing="$$missing skopeo"; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

python-deps:
	@[ -x $(PYTHON) ] || python3 -m venv $(VENV)
	@$(PYTHON) -c "import kazoo, pytest, yaml, kubernetes_validate, puresasl" 2>/dev/null || \
		$(PYTHON) -m pip install --quiet kazoo pytest pyyaml kubernetes-validate==1.37.0 pure-sasl

rocksdb: system-deps
	@scripts/rocksdb.sh >/dev/null

# The one debug build every command shares (`make run`, the tests): the whole workspace, every
# target. A command selecting fewer packages resolves other dependency features and compiles
# those crates again.
build: rocksdb
	cargo build --workspace --all-targets

# The porcupine linearizability checker (e2e/porcupine, Go) the robustness checkers run, built
# once per machine by scripts/porcupine.sh; rust-test hands its path to the tests.
porcupine:
	@scripts/porcupine.sh >/dev/null

# The Kubernetes control plane (etcd, kube-apiserver, kube-controller-manager, kube-scheduler,
# kube-proxy, kubectl), CoreDNS and helm, built once per machine from the pinned modules in
# e2e/kube-tools by scripts/kube-tools.sh (~15 minutes cold); e2e/tests/kube runs them.
kube-tools:
	@scripts/kube-tools.sh >/dev/null

fmt-check:
	cargo fmt --all -- --check

# Imports run one way: no circle between crates, nor between files or top-level modules of a
# crate (the checker has its own tests).
imports-check: python-deps
	$(PYTHON) -m pytest -q scripts/tests
	$(PYTHON) scripts/check-imports.py --crates server/src sidecar/src operator/src testkit/src contract/src tls/src sidecar-client/src e2e/src

clippy: rocksdb
	cargo clippy --workspace --all-targets -- -D warnings

# Every Rust test in one cargo command: a command that selects fewer packages or targets
# resolves other features and compiles RocksDB again (15 minutes). One test at a time: the
# cluster suite (tests/cluster) and the e2e suite (e2e/tests/e2e: servers and sidecars
# configured by the operator's own rendering, app processes, SIGKILL/SIGSTOP/rollouts/
# partitions) start several processes per test, and the machine has 2 cores.
rust-test: build porcupine kube-tools test-image
	PADDOCK_PORCUPINE=$$(scripts/porcupine.sh) PADDOCK_KUBE_TOOLS=$$(scripts/kube-tools.sh) PADDOCK_IMAGE=$(TEST_IMAGE) \
		cargo test --workspace -- --test-threads=1

## soak: the robustness suite's faults in turn on one cluster for DURATION (default 30m), every round's history checked; the table goes to $(CACHE)/soak-report.md
# The same cargo command as rust-test (nothing recompiles); only the soak test runs.
DURATION ?= 30m
soak: build porcupine
	PADDOCK_PORCUPINE=$$(scripts/porcupine.sh) PADDOCK_SOAK_DURATION=$(DURATION) PADDOCK_SOAK_REPORT=$(CACHE)/soak-report.md \
		cargo test --workspace -- --test-threads=1 --ignored --exact soak::soak --nocapture
	@cat $(CACHE)/soak-report.md

kazoo-test: build python-deps
	PADDOCK_SERVER_BIN=$(BIN)/paddock-server $(PYTHON) -m pytest -q server/tests/kazoo

# The Helm chart rendered and linted by the helm binary, and every object validated against the
# Kubernetes schemas (kubernetes-validate); its installation on a real control plane is in
# rust-test (e2e/tests/kube).
chart-test: python-deps kube-tools
	PADDOCK_HELM=$$(scripts/kube-tools.sh)/helm $(PYTHON) -m pytest -q charts/paddock/tests

## images: the Paddock image (server, sidecar, operator, CLI) as an OCI archive, built without a container engine
# The release binaries laid out by images/build.sh into $(CACHE)/images/; `docker build .` makes
# the same image from the Dockerfile. Load it with `docker load -i`, `podman load -i`,
# `kind load image-archive` or `skopeo copy oci-archive:...` (docs/quickstart.md).
images: system-deps rocksdb
	$(RELEASE_BUILD)
	images/build.sh $(CARGO_TARGET_DIR)/release $(CACHE)/images/paddock-$(VERSION).oci.tar

# The image made from the test build's binaries (nothing compiles again): the pods of the
# real-control-plane tests run it, and image-test unpacks it with umoci and runs each binary
# from its root file system (chroot).
TEST_IMAGE := $(CACHE)/images/paddock-debug.oci.tar
test-image: system-deps build
	images/build.sh $(BIN) $(TEST_IMAGE)

image-test: test-image python-deps
	PADDOCK_IMAGE=$(TEST_IMAGE) $(PYTHON) -m pytest -q images/tests

## bench: Paddock and Apache ZooKeeper side by side (3 nodes each, loopback); table into docs/benchmarks.md
# Installs Debian's zookeeper (system-deps) and a JDK for jcmd if missing, builds the release
# binaries, then paddock-bench starts each ensemble in turn, drives it and stops it (~6 min).
bench: rocksdb
	@command -v jcmd >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq default-jdk-headless >/dev/null; }
	$(RELEASE_BUILD)
	$(CARGO_TARGET_DIR)/release/paddock-bench --paddock-server $(CARGO_TARGET_DIR)/release/paddock-server \
		--paddock-sidecar $(CARGO_TARGET_DIR)/release/paddock-sidecar --out docs/benchmarks.md
