# weft. The two commands a fresh machine needs:
#   make run    local demo: a real kube-apiserver on loopback (unless KUBECONFIG is set), CRDs, sample, operator
#   make test   installs what the tests need, then unit + end-to-end tests
SHELL := /bin/bash
CARGO ?= cargo
export CARGO_TERM_COLOR ?= never

.PHONY: all build release test unit e2e setup crds lint fmt run bench clean

all: build

build:
	$(CARGO) build --workspace --bins

release:
	$(CARGO) build --workspace --release --bins

setup:
	bash e2e/setup.sh

# The README's test command: set-up, then every test (unit and e2e) against real parts.
test: setup build
	$(CARGO) test --workspace --no-fail-fast -- --test-threads=$${WEFT_TEST_THREADS:-2}

unit:
	$(CARGO) test --workspace --lib --bins

e2e: setup build
	$(CARGO) test -p weft-e2e --no-fail-fast -- --test-threads=$${WEFT_TEST_THREADS:-2}

# Regenerate the CRD YAML from the Rust types (a test fails when it is stale).
crds:
	$(CARGO) run -q -p weft-crds --bin crdgen

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

run: build
	bash e2e/demo.sh

# Proxy vs direct vs HAProxy vs nginx (target/bench/proxy.tsv), then the proxy pair plaintext vs mTLS
# (target/bench/mtls.tsv). Not tests: figures, on an otherwise quiet machine.
bench:
	bash bench/run.sh
	bash bench/mtls.sh

clean:
	$(CARGO) clean
