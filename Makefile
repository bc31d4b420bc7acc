# Paddock: `make run` starts a local server, `make test` runs everything CI checks.
SHELL := /bin/bash
export CARGO_TARGET_DIR ?= $(HOME)/.cache/paddock/target
VENV ?= $(HOME)/.cache/paddock/venv
PYTHON := $(VENV)/bin/python
BIN := $(CARGO_TARGET_DIR)/debug
RUN_DIR ?= .paddock
CLIENT_PORT ?= 2181
ADMIN_PORT ?= 8080

.PHONY: run test deps system-deps python-deps build fmt-check clippy unit-test kazoo-test bench

## run: a local single-node server on 127.0.0.1 with its data under .paddock/
run: system-deps
	cargo build --bin paddock-server
	@echo "Paddock: ZooKeeper clients connect to 127.0.0.1:$(CLIENT_PORT); metrics on http://127.0.0.1:$(ADMIN_PORT)/metrics"
	@echo "  try: /usr/share/zookeeper/bin/zkCli.sh -server 127.0.0.1:$(CLIENT_PORT)   or: echo srvr | nc 127.0.0.1 $(CLIENT_PORT)"
	@echo "  data: $(RUN_DIR)/data   (Ctrl-C stops the server)"
	$(BIN)/paddock-server --data-dir $(RUN_DIR)/data --client-addr 127.0.0.1:$(CLIENT_PORT) \
		--admin-addr 127.0.0.1:$(ADMIN_PORT) --advertise-peer 127.0.0.1:2888

## test: everything CI runs
test: deps fmt-check clippy unit-test kazoo-test

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
	@$(PYTHON) -c "import kazoo, pytest" 2>/dev/null || $(PYTHON) -m pip install --quiet kazoo pytest

build:
	cargo build --workspace --all-targets

fmt-check:
	cargo fmt --all -- --check

clippy:
	cargo clippy --workspace --all-targets -- -D warnings

unit-test: build
	cargo test --workspace

kazoo-test: build python-deps
	PADDOCK_SERVER_BIN=$(BIN)/paddock-server $(PYTHON) -m pytest -q server/tests/kazoo
