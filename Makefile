# Paddock: `make run` starts a local server, `make test` runs everything CI checks.
SHELL := /bin/bash
export CARGO_TARGET_DIR ?= $(HOME)/.cache/paddock/target
VENV ?= $(HOME)/.cache/paddock/venv
PYTHON := $(VENV)/bin/python
BIN := $(CARGO_TARGET_DIR)/debug
RUN_DIR ?= .paddock
CLIENT_PORT ?= 2181
ADMIN_PORT ?= 8080

.PHONY: run test deps system-deps python-deps build fmt-check clippy unit-test cluster-test kazoo-test chart-test

## run: a local single-node server on 127.0.0.1 with its data under .paddock/
run: system-deps
	cargo build --bin paddock-server
	@echo "Paddock: ZooKeeper clients connect to 127.0.0.1:$(CLIENT_PORT); metrics on http://127.0.0.1:$(ADMIN_PORT)/metrics"
	@echo "  try: /usr/share/zookeeper/bin/zkCli.sh -server 127.0.0.1:$(CLIENT_PORT)   or: echo srvr | nc 127.0.0.1 $(CLIENT_PORT)"
	@echo "  data: $(RUN_DIR)/data   (Ctrl-C stops the server)"
	$(BIN)/paddock-server --data-dir $(RUN_DIR)/data --client-addr 127.0.0.1:$(CLIENT_PORT) \
		--admin-addr 127.0.0.1:$(ADMIN_PORT) --advertise-peer 127.0.0.1:2888

## test: everything CI runs
test: deps fmt-check clippy unit-test cluster-test kazoo-test chart-test

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
unit-test: build
	cargo test --workspace --exclude paddock-server
	cargo test -p paddock-server --lib --bins --test zk

cluster-test: build
	cargo test -p paddock-server --test cluster -- --test-threads=1

kazoo-test: build python-deps
	PADDOCK_SERVER_BIN=$(BIN)/paddock-server $(PYTHON) -m pytest -q server/tests/kazoo

# The Helm chart rendered by Helm's own engine (helm-python-sdk), linted, and every object
# validated against the Kubernetes schemas (kubernetes-validate).
chart-test: python-deps
	$(PYTHON) -m pytest -q charts/paddock/tests
