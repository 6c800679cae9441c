# netpol-guard: the two commands a newcomer needs are `make demo` and `make test`.
# Everything else is a step of those two. Nothing here needs anything installed by hand
# beyond python3 (3.11+) and go (to build the local control plane from Go modules).

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test install binaries crds chromium helm vapcost lint unit service browser e2e bench clean vap

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
	$(BIN)/python tests/e2e/crds.py

# helm, for the chart tests (helm lint, helm template), built from its Go module into its own cache
# (~4.5 minutes cold on two busy cores; skipped when current).
helm: $(STAMP)
	$(BIN)/python tests/tools/build_helm.py

# vapcost, the API server's admission CEL (k8s.io/apiserver) printing what each VAP validation costs, for
# tests/manifests/test_vap_cost.py and `make bench` (built from its Go module; a minute or two cold).
vapcost: $(STAMP)
	$(BIN)/python tests/tools/build_vapcost.py

# Main job: a real local control plane + netpol-guard, replaying deny / fix / allow / audit with kubectl.
# `make demo DEMO_ARGS=--keep` leaves it running and prints the KUBECONFIG export.
demo: binaries
	$(BIN)/python tests/e2e/demo.py $(DEMO_ARGS)

# Headless Chromium from the Debian package, for the page tests (tests/browser); installed once if missing.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
chromium:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || { \
	  echo "installing chromium (Debian package) for the page tests"; \
	  $(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; }

lint: $(STAMP)
	$(BIN)/ruff check webhook tests
	$(BIN)/mypy webhook
	$(BIN)/lint-imports
	$(BIN)/hadolint Dockerfile

# All tests: unit, service (real uvicorn over TLS), browser (headless Chromium), manifests (kubectl kustomize,
# helm lint/template, VAP costs), e2e (real kube-apiserver + etcd + kubectl).
test: lint binaries crds chromium helm vapcost
	$(BIN)/python -m pytest

unit: $(STAMP)
	$(BIN)/python -m pytest tests/unit

service: $(STAMP)
	$(BIN)/python -m pytest tests/service

browser: $(STAMP) chromium
	$(BIN)/python -m pytest tests/browser

e2e: binaries crds
	$(BIN)/python -m pytest tests/e2e

# Benchmarks print numbers; they are not tests. Engine, service over TLS, overload (3 MB review storm),
# per-API-call latency through kube-apiserver, background audit, kubectl apply latency, generation.
bench: binaries vapcost
	$(BIN)/python -m tests.bench.bench_engine
	$(BIN)/python -m tests.bench.bench_sources
	$(BIN)/python -m tests.bench.bench_service
	$(BIN)/python -m tests.bench.bench_overload
	$(BIN)/python tests/bench/bench_admission_latency.py
	$(BIN)/python -m tests.bench.bench_reports
	$(BIN)/python tests/bench/bench_apply.py
	$(BIN)/python tests/bench/bench_generate.py
	$(BIN)/python -m tests.bench.bench_vap

# The kustomize component manifests/components/vap and the chart's copy (vap.enabled), rendered from the default
# config (tests check both are current).
vap: $(STAMP)
	$(BIN)/python -m webhook vap --config manifests/base/config.yaml > manifests/components/vap/policies.yaml
	cp manifests/components/vap/policies.yaml charts/netpol-guard/files/vap-policies.yaml

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
