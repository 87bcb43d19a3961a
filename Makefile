# The reproduction's front door. `make demo` and `make test` install what is missing, build in
# release mode and run; the stages themselves are separate executables (see README.md).

SHELL := /bin/bash
.DEFAULT_GOAL := help

# BLAS provider: blis (default, fastest here on EfficientNet's GEMM shapes) or openblas.
BLAS ?= blis
# Configuration profile for the demo: demo (minutes) or ci (smaller).
PROFILE ?= demo
ARTIFACTS ?= artifacts
CONFIG ?= pipeline.json

SCRATCH := $(if $(filter blis,$(BLAS)),.build,.build-$(BLAS))
BIN := $(SCRATCH)/release
STAGE_FLAGS = --config $(CONFIG) --profile $(PROFILE) --artifacts $(ARTIFACTS)
export CXR_BLAS := $(BLAS)

DEB_PACKAGES := pkg-config libpng-dev libjpeg-dev libblis-dev libopenblas-dev

.PHONY: help deps build test demo bench clean

help:
	@echo "make demo     install missing C libraries, build, and run every built stage on synthetic data"
	@echo "make test     install missing C libraries, build, and run the test suite"
	@echo "make build    release build of every stage (BLAS=blis|openblas)"
	@echo "make bench    the engine's speed and peak memory per workload, as JSON (BENCH_STEPS=5)"
	@echo "make deps     apt-get install the C libraries that are missing"
	@echo "make clean    remove build folders and artifacts/"

deps:
	@if ! command -v dpkg >/dev/null 2>&1; then \
	  echo "deps: not a Debian/Ubuntu system; install libpng, libjpeg and BLIS or OpenBLAS development files by hand"; \
	  exit 0; \
	fi; \
	missing=""; \
	for p in $(DEB_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  sudo=""; [ "$$(id -u)" -ne 0 ] && sudo=sudo; \
	  echo "deps: installing$$missing"; \
	  $$sudo apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

build: deps
	swift build -c release --scratch-path $(SCRATCH)

# Tests build in release mode (numerics are 10-50x slower in debug) with testing enabled, in
# their own folder so they never force a rebuild of the stage binaries.
test: build
	swift build -c release --scratch-path .build-test -Xswiftc -enable-testing --build-tests
	swift test -c release --scratch-path .build-test -Xswiftc -enable-testing --skip-build

LOSSES := cce cce-entropy kl focal hinge smoothed-cce smoothed-focal calibrated-cce calibrated-kl \
          calibrated-focal calibrated-hinge calibrated-negative-entropy

demo: build
	@mkdir -p data
	$(BIN)/prepare $(STAGE_FLAGS) --layout synthetic --source data/synthetic-$(PROFILE) --name synthetic
	$(BIN)/prepare $(STAGE_FLAGS) --layout montgomery --source data/synthetic-$(PROFILE)/montgomery --name synthetic-lungs
	@rm -f $(ARTIFACTS)/demo-predictions.txt
	@for loss in $(LOSSES); do \
	  $(BIN)/classify-train $(STAGE_FLAGS) --loss $$loss --data synthetic | tail -n 1 >> $(ARTIFACTS)/demo-predictions.txt || exit 1; \
	done
	$(BIN)/evaluate $(STAGE_FLAGS) $$(sed 's|$$|/predictions-test.csv|' $(ARTIFACTS)/demo-predictions.txt) --name demo-table2 --names $(LOSSES)
	@echo
	@echo "demo: datasets in $(ARTIFACTS)/prepare/{synthetic,synthetic-lungs}/<key>/ (see their contact-sheet.png)"
	@echo "demo: twelve classifiers in $(ARTIFACTS)/classify-train/<loss>-synthetic/<key>/"
	@echo "demo: Table 2 on the synthetic test split: $(ARTIFACTS)/evaluate/demo-table2/<key>/table.md (figures in plots/)"
	@echo "demo: segment, mask-crop, ensemble, gradcam and report are not built yet (README.md)"

BENCH_STEPS ?= 5
bench: build
	$(BIN)/bench --steps $(BENCH_STEPS) --threads 2

clean:
	rm -rf .build .build-* $(ARTIFACTS)
