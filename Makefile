# The reproduction's front door. `make demo` and `make test` install what is missing, build in
# release mode and run; the stages themselves are separate executables (see README.md).

SHELL := /bin/bash
.DEFAULT_GOAL := help

# BLAS provider: blis (default, fastest here on EfficientNet's GEMM shapes) or openblas.
BLAS ?= blis
# Configuration profile of the demo: demo (minutes) or ci (smaller).
DEMO_PROFILE ?= demo
# Configuration profile of the real-data targets (data, segment, crop, classify): paper (the
# paper's sizes and epochs), or fast (256² U-Nets, 224² classifier).
PROFILE ?= paper
ARTIFACTS ?= artifacts
CONFIG ?= pipeline.json
# Real data: the lung image/mask pairs the U-Nets learn from and the chest X-rays to classify.
LUNGS_SRC ?= ../shared/data/pediatric-lungs
LUNGS_LAYOUT ?= pairs
LUNGS_TEST_FRACTION ?= 0.2
CXR_SRC ?= ../shared/data/kermany224
CXR_LAYOUT ?= kermany
# The split Table 2 is computed on: test when the chest X-rays have a test folder, else val.
TABLE2_SPLIT ?= val

SCRATCH := $(if $(filter blis,$(BLAS)),.build,.build-$(BLAS))
BIN := $(SCRATCH)/release
STAGE_FLAGS = --config $(CONFIG) --profile $(PROFILE) --artifacts $(ARTIFACTS)
DEMO_FLAGS = --config $(CONFIG) --profile $(DEMO_PROFILE) --artifacts $(ARTIFACTS)
export CXR_BLAS := $(BLAS)
# Instruction set of the numeric code (Package.swift): AVX2 with FMA where this CPU has both, else
# the x86-64 baseline; `make build TARGET_CPU=` builds the baseline anywhere.
TARGET_CPU ?= $(shell grep -qw avx2 /proc/cpuinfo 2>/dev/null && grep -qw fma /proc/cpuinfo 2>/dev/null && echo haswell)
export CXR_TARGET_CPU := $(TARGET_CPU)

DEB_PACKAGES := pkg-config libpng-dev libjpeg-dev libblis-dev libopenblas-dev

.PHONY: help deps build test demo data segment crop classify ensembles table3 table4 fig6 gradcam bench clean

help:
	@echo "make demo     install missing C libraries, build, and run every built stage on synthetic data"
	@echo "make test     install missing C libraries, build, and run the test suite"
	@echo "make segment  real data: prepare the lung set, train the five U-Nets, Table 1 and the top-3 (PROFILE=paper|fast)"
	@echo "make crop     real data: the top-3 U-Nets' masks for every chest X-ray, ANDed, cropped, contrast-stretched"
	@echo "make classify real data: the twelve classifiers on the crops and Table 2"
	@echo "make ensembles real data: Tables 3 and 4, the prediction-level and model-level ensembles (RANK_ON=test FIT_ON=test WEIGHTS=paper: the paper's protocol)"
	@echo "make gradcam  real data: Fig 6, Grad-CAM of the proposed model and the best single classifier"
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

SEG_LOSSES := bce weighted-bce-dice focal tversky focal-tversky
LOSSES := cce cce-entropy kl focal hinge smoothed-cce smoothed-focal calibrated-cce calibrated-kl \
          calibrated-focal calibrated-hinge calibrated-negative-entropy

# The whole study on synthetic data, every stage in order: lungs → five U-Nets → Table 1 and the
# top-3 → masks for the chest X-rays → crops → twelve classifiers → Table 2.
demo: build
	@mkdir -p data
	$(BIN)/prepare $(DEMO_FLAGS) --layout synthetic --source data/synthetic-$(DEMO_PROFILE) --name synthetic
	$(BIN)/prepare $(DEMO_FLAGS) --layout montgomery --source data/synthetic-$(DEMO_PROFILE)/montgomery --name synthetic-lungs --test-fraction 0.25
	@for loss in $(SEG_LOSSES); do \
	  $(BIN)/segment train $(DEMO_FLAGS) --loss $$loss --data synthetic-lungs || exit 1; \
	done
	$(BIN)/segment evaluate $(DEMO_FLAGS) --trained-on synthetic-lungs --data synthetic-lungs
	$(BIN)/segment predict $(DEMO_FLAGS) --ensemble-of synthetic-lungs --data synthetic
	$(BIN)/mask-crop $(DEMO_FLAGS) --data synthetic
	@rm -f $(ARTIFACTS)/demo-predictions.txt
	@for loss in $(LOSSES); do \
	  $(BIN)/classify-train $(DEMO_FLAGS) --loss $$loss --data synthetic-crops --encoder-from synthetic-lungs \
	    | tail -n 1 >> $(ARTIFACTS)/demo-predictions.txt || exit 1; \
	done
	$(BIN)/evaluate $(DEMO_FLAGS) $$(sed 's|$$|/predictions-test.csv|' $(ARTIFACTS)/demo-predictions.txt) --name demo-table2 --names $(LOSSES)
	@$(MAKE) --no-print-directory table3 FLAGS="$(DEMO_FLAGS)" CROPS=synthetic-crops SPLIT=test TABLE=demo-table3
	@$(MAKE) --no-print-directory table4 FLAGS="$(DEMO_FLAGS)" CROPS=synthetic-crops SPLIT=test TABLE=demo-table4
	@$(MAKE) --no-print-directory fig6 FLAGS="$(DEMO_FLAGS)" CROPS=synthetic-crops
	@echo
	@echo "demo: datasets in $(ARTIFACTS)/prepare/{synthetic,synthetic-lungs}/<key>/ (see their contact-sheet.png)"
	@echo "demo: five U-Nets in $(ARTIFACTS)/segment-train/<loss>-synthetic-lungs/<key>/"
	@echo "demo: Table 1 and the top-3: $(ARTIFACTS)/segment-evaluate/synthetic-lungs/<key>/table1.md"
	@echo "demo: lung crops in $(ARTIFACTS)/mask-crop/synthetic-crops/<key>/ (see contact-sheet.png, crops.csv)"
	@echo "demo: twelve classifiers in $(ARTIFACTS)/classify-train/<loss>-synthetic-crops/<key>/"
	@echo "demo: Table 2 on the synthetic test split: $(ARTIFACTS)/evaluate/demo-table2/<key>/table.md (figures in plots/)"
	@echo "demo: ensembles of the top-3 and top-5 in $(ARTIFACTS)/ensemble/<method>-top<K>-synthetic-crops/<key>/ (ensemble.json)"
	@echo "demo: Table 3 on the synthetic test split, against the best single classifier: $(ARTIFACTS)/evaluate/demo-table3/<key>/table.md"
	@echo "demo: Table 4 (model-level top-3, top-5 and the proposed weighted average): $(ARTIFACTS)/evaluate/demo-table4/<key>/table.md"
	@echo "demo: Fig 6, Grad-CAM of the proposed model and of the best single classifier: $(ARTIFACTS)/gradcam/{proposed,<loss>}-synthetic-crops-on-synthetic-crops/<key>/sheet.png"
	@echo "demo: report is not built yet (README.md)"

# The study on real data (hours at PROFILE=paper on a CPU). Every stage skips work whose
# artifact already exists, so rerunning a target only does what changed.
data: build
	$(BIN)/prepare $(STAGE_FLAGS) --layout $(LUNGS_LAYOUT) --source $(LUNGS_SRC) --name lungs --test-fraction $(LUNGS_TEST_FRACTION)
	$(BIN)/prepare $(STAGE_FLAGS) --layout $(CXR_LAYOUT) --source $(CXR_SRC) --name cxr

segment: data
	@for loss in $(SEG_LOSSES); do \
	  $(BIN)/segment train $(STAGE_FLAGS) --loss $$loss --data lungs || exit 1; \
	done
	$(BIN)/segment evaluate $(STAGE_FLAGS) --trained-on lungs --data lungs

crop: segment
	$(BIN)/segment predict $(STAGE_FLAGS) --ensemble-of lungs --data cxr
	$(BIN)/mask-crop $(STAGE_FLAGS) --data cxr

classify: crop
	@rm -f $(ARTIFACTS)/classify-models.txt
	@for loss in $(LOSSES); do \
	  $(BIN)/classify-train $(STAGE_FLAGS) --loss $$loss --data cxr-crops --encoder-from lungs \
	    | tail -n 1 >> $(ARTIFACTS)/classify-models.txt || exit 1; \
	done
	$(BIN)/evaluate $(STAGE_FLAGS) $$(sed 's|$$|/predictions-$(TABLE2_SPLIT).csv|' $(ARTIFACTS)/classify-models.txt) --name table2-$(TABLE2_SPLIT) --names $(LOSSES)

# Table 3: the best single classifier (by MCC on ensemble.rankOn), then vote, average, weighted and
# stacking of the top-3 and top-5, scored on SPLIT through evaluate (intervals, significance against
# the best single classifier). Called by demo and ensembles with FLAGS, CROPS, SPLIT and TABLE.
ENSEMBLE_METHODS := vote average weighted stacking
# The splits members are ranked and weights fitted on (default: the configuration's, val), and the
# weight procedure: RANK_ON=test FIT_ON=test WEIGHTS=paper is the paper's protocol.
RANK_ON ?=
FIT_ON ?=
WEIGHTS ?=
RANK_FLAGS = $(if $(RANK_ON),--rank-on $(RANK_ON))
WEIGHT_FLAGS = $(if $(FIT_ON),--fit-on $(FIT_ON)) $(if $(WEIGHTS),--weights $(WEIGHTS))
table3:
	@rm -f $(ARTIFACTS)/$(TABLE)-files.txt
	@best=$$($(BIN)/ensemble rank $(FLAGS) $(RANK_FLAGS) --data $(CROPS)) || exit 1; \
	  echo "$${best##*$$'\n'}/predictions-$(SPLIT).csv" >> $(ARTIFACTS)/$(TABLE)-files.txt; \
	for k in 3 5; do for m in $(ENSEMBLE_METHODS); do \
	  folder=$$($(BIN)/ensemble $(FLAGS) $(RANK_FLAGS) $(WEIGHT_FLAGS) --method $$m --top $$k --data $(CROPS)) || exit 1; \
	  echo "$${folder##*$$'\n'}/predictions-$(SPLIT).csv" >> $(ARTIFACTS)/$(TABLE)-files.txt; \
	done; done
	$(BIN)/evaluate $(FLAGS) $$(cat $(ARTIFACTS)/$(TABLE)-files.txt) --name $(TABLE) \
	  --names best-single $(foreach k,3 5,$(foreach m,$(ENSEMBLE_METHODS),top$(k)-$(m)))

# Table 4: the best single classifier, the model-level ensembles of the top-3 and top-5, and the
# proposed weighted average of the two.
table4:
	@rm -f $(ARTIFACTS)/$(TABLE)-files.txt
	@best=$$($(BIN)/ensemble rank $(FLAGS) $(RANK_FLAGS) --data $(CROPS)) || exit 1; \
	  echo "$${best##*$$'\n'}/predictions-$(SPLIT).csv" >> $(ARTIFACTS)/$(TABLE)-files.txt; \
	for k in 3 5; do \
	  folder=$$($(BIN)/ensemble $(FLAGS) $(RANK_FLAGS) $(WEIGHT_FLAGS) --method model-level --top $$k --data $(CROPS)) || exit 1; \
	  echo "$${folder##*$$'\n'}/predictions-$(SPLIT).csv" >> $(ARTIFACTS)/$(TABLE)-files.txt; \
	done; \
	folder=$$($(BIN)/ensemble proposed $(FLAGS) $(WEIGHT_FLAGS) --data $(CROPS)) || exit 1; \
	  echo "$${folder##*$$'\n'}/predictions-$(SPLIT).csv" >> $(ARTIFACTS)/$(TABLE)-files.txt
	$(BIN)/evaluate $(FLAGS) $$(cat $(ARTIFACTS)/$(TABLE)-files.txt) --name $(TABLE) \
	  --names best-single model-level-top3 model-level-top5 proposed

# Fig 6: Grad-CAM of the proposed model (the weighted sum of its model-level ensembles' NewConv maps)
# and of the best single classifier (its DCL), on the test split of CROPS.
fig6:
	@best=$$($(BIN)/ensemble rank $(FLAGS) $(RANK_FLAGS) --data $(CROPS)) || exit 1; \
	  $(BIN)/gradcam $(FLAGS) --model "$${best##*$$'\n'}" --data $(CROPS) || exit 1
	@proposed=$$($(BIN)/ensemble proposed $(FLAGS) $(WEIGHT_FLAGS) --data $(CROPS)) || exit 1; \
	  $(BIN)/gradcam $(FLAGS) --model "$${proposed##*$$'\n'}" --data $(CROPS)

gradcam: ensembles
	@$(MAKE) --no-print-directory fig6 FLAGS="$(STAGE_FLAGS)" CROPS=cxr-crops

ensembles: classify
	@$(MAKE) --no-print-directory table3 FLAGS="$(STAGE_FLAGS)" CROPS=cxr-crops SPLIT=$(TABLE2_SPLIT) TABLE=table3-$(TABLE2_SPLIT)
	@$(MAKE) --no-print-directory table4 FLAGS="$(STAGE_FLAGS)" CROPS=cxr-crops SPLIT=$(TABLE2_SPLIT) TABLE=table4-$(TABLE2_SPLIT)

BENCH_STEPS ?= 5
bench: build
	$(BIN)/bench --steps $(BENCH_STEPS) --threads 2

clean:
	rm -rf .build .build-* $(ARTIFACTS)
