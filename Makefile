# fhirlock: two commands do everything on a fresh machine: `make demo` and `make test`.
SHELL := /usr/bin/env bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

CARGO ?= cargo
CRD_FILE := crds/securedfhirendpoints.fhirlock.io.yaml
# The pinned kube-apiserver, kubectl, kube-controller-manager (the tests' namespace controller) and
# etcd: built once from Go modules, then cached.
K8S_BINS = $(shell hack/k8s-bins/build.sh)

.PHONY: help
help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

.PHONY: demo
demo: ## a real control plane, the example endpoint applied, kubectl get and describe (DEMO_KEEP=1 keeps it running)
	hack/demo.sh

.PHONY: test
test: lint k8s-bins ## every test: lint, unit, property, apiserver and emulator conformance
	FHIRLOCK_K8S_BINS="$(K8S_BINS)" $(CARGO) test --workspace --locked
	tests/emulator-conformance/run.sh

.PHONY: soak
soak: k8s-bins ## the long resilience run (FHIRLOCK_SOAK=1): every fault kind in every phase, more SIGKILLs and restarts, 20x the fuzz cases
	$(CARGO) build --workspace --bins --locked
	FHIRLOCK_SOAK=1 $(CARGO) test --locked -p fhirlock-core --test fuzz
	FHIRLOCK_SOAK=1 $(CARGO) test --locked -p fhirlock-arm --test parser_fuzz
	FHIRLOCK_SOAK=1 FHIRLOCK_K8S_BINS="$(K8S_BINS)" $(CARGO) test --locked -p fhirlock-tests --test resilience -- --nocapture

.PHONY: lint
lint: ## cargo fmt --check, clippy with warnings as errors, the core's dependency graph, function and file sizes
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings
	hack/check-deps.sh
	hack/check-size.py

.PHONY: k8s-bins
k8s-bins: ## build the pinned kube-apiserver, kubectl, kube-controller-manager (namespace controller, for tests) and etcd (skips when cached)
	@echo "k8s-bins: $(K8S_BINS)"

.PHONY: crds
crds: ## regenerate crds/ from the Rust API types
	$(CARGO) run --quiet -p fhirlock -- crd > $(CRD_FILE)
	$(MAKE) --no-print-directory deploy-crds

.PHONY: clean
clean: ## remove build output (not the cached Kubernetes binaries)
	$(CARGO) clean

# --- Deployment and GitOps (issue 6): deploy/, hack/helm, hack/gitops-check, hack/image ---------

.PHONY: gitops-tools
gitops-tools: ## build the pinned helm, gitops-check (kstatus, gopher-lua), alert-check (PromQL), Prometheus, Flux and Argo CD CRDs (skips when cached)
	@echo "helm: $$(hack/helm/build.sh)"
	@echo "gitops-check: $$(hack/gitops-check/build.sh)"
	@echo "alert-check: $$(hack/alert-check/build.sh)"
	@echo "prometheus-crds: $$(hack/prometheus-crds/build.sh)"
	@echo "gitops-crds: $$(hack/gitops-crds/build.sh)"

.PHONY: deploy-crds
deploy-crds: ## copy crds/ into the Helm chart and the kustomize base (after `make crds`)
	cp $(CRD_FILE) deploy/helm/fhirlock/crds/
	cp $(CRD_FILE) deploy/kustomize/base/crds/

.PHONY: image
image: ## build the OCI image (static fhirlock, non-root, no shell) without Docker into target/image/
	hack/image/build.sh

RELEASE_DIR ?= target/dist
.PHONY: release
release: ## the release artefacts, without Docker, into RELEASE_DIR (target/dist): static amd64 and arm64 binaries, CycloneDX SBOMs, OCI images, the chart, SHA256SUMS
	hack/release/release.sh $(RELEASE_DIR)

# --- Benchmarks (issue 7): bench/ ---------------------------------------------------------------

.PHONY: bench
bench: k8s-bins ## benchmarks B1-B5 into docs/benchmarks.md (release builds; BENCH="b1 b4" runs some)
	$(CARGO) build --release --locked -p fhirlock -p arm-emulator -p fhirlock-bench
	FHIRLOCK_K8S_BINS="$(K8S_BINS)" target/release/fhirlock-bench $(BENCH)

# --- Live test (issue 12): tests/live.rs, docs/operations.md ------------------------------------

.PHONY: live-test
live-test: k8s-bins ## the live scenario: on real Azure when AZURE_SUBSCRIPTION_ID (and _TENANT_ID, _CLIENT_ID, _CLIENT_SECRET) is set, else on the emulator
	$(CARGO) build --locked -p fhirlock -p arm-emulator --bins
	if [ -n "$${AZURE_SUBSCRIPTION_ID:-}" ]; then export FHIRLOCK_LIVE_AZURE=1; t=live_scenario_on_azure; else t=live_scenario_on_the_emulator; fi; \
	FHIRLOCK_K8S_BINS="$(K8S_BINS)" $(CARGO) test --locked -p fhirlock-tests --test live -- --exact "$$t" --nocapture

.PHONY: live-sweep
live-sweep: ## delete live-test resource groups older than FHIRLOCK_LIVE_SWEEP_HOURS (default 6) in the AZURE_* subscription
	FHIRLOCK_LIVE_AZURE=1 FHIRLOCK_LIVE_SWEEP=1 $(CARGO) test --locked -p fhirlock-tests --test live -- --exact live_sweep_on_azure --nocapture
