# netpol-guard: the two commands a newcomer needs are `make demo` and `make test`.
# Everything else is a step of those two. Nothing here needs anything installed by hand
# beyond python3 (3.11+) and go (to build the local control plane from Go modules).

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test install binaries crds lint unit service e2e bench clean

# The virtualenv is rebuilt when pyproject.toml changes.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# kube-apiserver, kube-controller-manager, etcd and kubectl built from Go modules into a cache
# (minutes on two cores the first time; skipped when the cache is current).
binaries: $(STAMP)
	$(BIN)/python tests/e2e/build_binaries.py

# The real CRDs of the coverage sources (ClusterNetworkPolicy, AdminNetworkPolicy, ...) from their
# pinned Go modules into a cache beside the binaries (seconds the first time).
crds: $(STAMP)
	$(BIN)/python tests/e2e/fetch_crds.py

# Main job: a real local control plane + netpol-guard, replaying deny / fix / allow / audit with kubectl.
# `make demo DEMO_ARGS=--keep` leaves it running and prints the KUBECONFIG export.
demo: binaries
	$(BIN)/python tests/e2e/demo.py $(DEMO_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check webhook tests
	$(BIN)/mypy webhook
	$(BIN)/lint-imports
	$(BIN)/hadolint Dockerfile

# All tests: unit, service (real uvicorn over TLS), e2e (real kube-apiserver + etcd + kubectl).
test: lint binaries crds
	$(BIN)/python -m pytest

unit: $(STAMP)
	$(BIN)/python -m pytest tests/unit

service: $(STAMP)
	$(BIN)/python -m pytest tests/service

e2e: binaries crds
	$(BIN)/python -m pytest tests/e2e

# Benchmarks print numbers; they are not tests. Engine, service over TLS, overload (3 MB review storm),
# per-API-call latency through kube-apiserver, kubectl apply latency, generation.
bench: binaries
	$(BIN)/python -m tests.bench.bench_engine
	$(BIN)/python -m tests.bench.bench_sources
	$(BIN)/python -m tests.bench.bench_service
	$(BIN)/python -m tests.bench.bench_overload
	$(BIN)/python tests/bench/bench_admission_latency.py
	$(BIN)/python tests/bench/bench_apply.py
	$(BIN)/python tests/bench/bench_generate.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
