# The reproduction's front door. `make demo` and `make test` install what is missing, build in
# release mode and run; the stages themselves are separate executables (see README.md).

SHELL := /bin/bash
# A stage that fails inside a pipe (`stage | tail -n 1 > file`) fails its recipe.
.SHELLFLAGS := -o pipefail -c
.DEFAULT_GOAL := help

HAS_FLAGS = $(shell for f in $(1); do grep -qw $$f /proc/cpuinfo 2>/dev/null || exit; done; echo yes)
AVX512 := $(call HAS_FLAGS,avx512f avx512cd avx512bw avx512dq avx512vl)
# BLAS provider, openblas or blis; by default the one `make bench` measured faster on this kind of
# CPU (README, "Choosing the BLAS"). With AVX-512, OpenBLAS: its AVX-512 kernels beat BLIS 0.9.0,
# which runs AVX2 kernels there, on an Intel Xeon (Emerald Rapids) and an AMD EPYC (Zen 4). Without
# it, BLIS: OpenBLAS 0.3.21 lost 2-4x on EfficientNet's skinny GEMM shapes on AMD Zen 3 (DESIGN §5).
BLAS ?= $(if $(AVX512),openblas,blis)
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
# ImageNet weights for the U-Nets' encoders (the paper's start, docs/WEIGHTS.md): timm's
# tf_efficientnet_b0 model.safetensors or import-weights' output; empty: random weights.
ENCODER_WEIGHTS ?=
SEG_START = $(if $(ENCODER_WEIGHTS),--encoder-weights $(ENCODER_WEIGHTS))
# The split Table 2 is computed on: test when the chest X-rays have a test folder, else val.
TABLE2_SPLIT ?= val

SCRATCH := $(if $(filter blis,$(BLAS)),.build,.build-$(BLAS))
BIN := $(SCRATCH)/release
# Every stage command runs through $(LAUNCH) (empty: here), e.g. on a Slurm cluster
#   make -j 17 reproduce PROFILE=paper LAUNCH="srun --ntasks=1 --cpus-per-task=8 --mem=16G"
# places each stage run as its own job step; stages take SLURM_CPUS_PER_TASK as their thread count.
LAUNCH ?=
STAGE = $(strip $(LAUNCH) $(BIN))
STAGE_FLAGS = --config $(CONFIG) --profile $(PROFILE) --artifacts $(ARTIFACTS)
DEMO_FLAGS = --config $(CONFIG) --profile $(DEMO_PROFILE) --artifacts $(ARTIFACTS)
export CXR_BLAS := $(BLAS)
# Instruction set of the numeric code (Package.swift): AVX-512 (F, CD, BW, DQ, VL) with 512-bit loops
# where this CPU has it, else AVX2 with FMA where it has both, else the x86-64 baseline;
# `make build TARGET_CPU=` builds the baseline anywhere, `VECTOR_BITS=256` keeps AVX-512 code at
# 256-bit vectors (LLVM's own preference for these CPUs).
TARGET_CPU ?= $(if $(AVX512),skylake-avx512,$(if $(call HAS_FLAGS,avx2 fma),haswell))
VECTOR_BITS ?= $(if $(filter skylake-avx512,$(TARGET_CPU)),512)
export CXR_TARGET_CPU := $(TARGET_CPU)
export CXR_VECTOR_BITS := $(VECTOR_BITS)

DEB_PACKAGES := pkg-config libpng-dev libjpeg-dev libblis-dev libopenblas-dev

.PHONY: help deps build test demo reproduce reproduce-so-far fuzz data segment crop classify ensembles table3 table4 fig6 gradcam bench bench-peers clean

help:
	@echo "make demo     install missing C libraries, build, and run the whole study on synthetic data, ending with its report"
	@echo "make reproduce PROFILE=paper|fast|quick   the whole study on the real data: every table and figure, and report.html (ENCODER_WEIGHTS=FILE: ImageNet start, docs/WEIGHTS.md)"
	@echo "make reproduce-classify-LOSS PROFILE=...  (or any reproduce-STEP) rerun one stage of the reproduction; make -n reproduce prints the plan"
	@echo "make reproduce-so-far PROFILE=...         the report of what a running or interrupted reproduction has finished so far"
	@echo "make test     install missing C libraries, build, and run the test suite"
	@echo "make segment  real data: prepare the lung set, train the five U-Nets, Table 1 and the top-3 (PROFILE=paper|fast)"
	@echo "make crop     real data: the top-3 U-Nets' masks for every chest X-ray, ANDed, cropped, contrast-stretched"
	@echo "make classify real data: the twelve classifiers on the crops and Table 2"
	@echo "make ensembles real data: Tables 3 and 4, the prediction-level and model-level ensembles (RANK_ON=test FIT_ON=test WEIGHTS=paper: the paper's protocol)"
	@echo "make gradcam  real data: Fig 6, Grad-CAM of the proposed model and the best single classifier"
	@echo "make build    release build of every stage (BLAS=blis|openblas; default here: $(BLAS))"
	@echo "make bench    the engine's speed and peak memory per workload, as JSON (BENCH_STEPS=5)"
	@echo "make bench-peers PEERS_PY=/tmp/peers/bin/python   the engine against tuned PyTorch, alternating, 3 rounds, as a table"
	@echo "make reproduce LAUNCH=\"srun …\" / make reproduce-sbatch SUBMIT=1   the reproduction on a Slurm cluster (README)"
	@echo "make regress  the whole study on the committed real subset, compared with the baseline of this BLAS (data/regress/baseline.json for BLIS, baseline-openblas.json for OpenBLAS)"
	@echo "make fuzz     mutation-fuzz the PNG/JPEG decoders for FUZZ_SECONDS (60) over the test images and FUZZ_CORPUS"
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

# bin/ points at the stages of the last build, whichever BLAS it used.
build: deps
	swift build -c release --scratch-path $(SCRATCH)
	ln -sfn $(SCRATCH)/release bin

# Tests build in release mode (numerics are 10-50x slower in debug) with testing enabled, in
# their own folder (one per BLAS) so they never force a rebuild of the stage binaries.
TEST_SCRATCH := .build-test$(if $(filter-out blis,$(BLAS)),-$(BLAS))
test: build
	swift build -c release --scratch-path $(TEST_SCRATCH) -Xswiftc -enable-testing --build-tests
	swift test -c release --scratch-path $(TEST_SCRATCH) -Xswiftc -enable-testing --skip-build

# `make print-BLAS` (any variable): its value here, e.g. the BLAS provider this CPU defaults to.
print-%:
	@echo '$($*)'

SEG_LOSSES := bce weighted-bce-dice focal tversky focal-tversky
LOSSES := cce cce-entropy kl focal hinge smoothed-cce smoothed-focal calibrated-cce calibrated-kl \
          calibrated-focal calibrated-hinge calibrated-negative-entropy

# The whole study on synthetic data at DEMO_PROFILE (demo: minutes; ci: smaller), every stage in
# order, ending with the report: `make reproduce` on the built-in phantoms.
demo:
	@$(MAKE) --no-print-directory reproduce PROFILE=$(DEMO_PROFILE)
	@echo
	@echo "demo: datasets in $(ARTIFACTS)/prepare/{synthetic,synthetic-lungs}/<key>/ (see their contact-sheet.png)"
	@echo "demo: five U-Nets in $(ARTIFACTS)/segment-train/<loss>-synthetic-lungs/<key>/, Table 1 in $(ARTIFACTS)/segment-evaluate/synthetic-lungs/<key>/table1.md"
	@echo "demo: lung crops in $(ARTIFACTS)/mask-crop/synthetic-crops/<key>/ (see contact-sheet.png, crops.csv)"
	@echo "demo: twelve classifiers in $(ARTIFACTS)/classify-train/<loss>-synthetic-crops/<key>/; Tables 2-4 in $(ARTIFACTS)/evaluate/$(DEMO_PROFILE)-table{2,3,4}/<key>/"
	@echo "demo: ensembles in $(ARTIFACTS)/ensemble/<method>-top<K>-synthetic-crops/<key>/; Fig 6 in $(ARTIFACTS)/gradcam/*/<key>/sheet.png"
	@echo "demo: the report, every table beside the paper's: $$(cat $(ARTIFACTS)/runs/$(DEMO_PROFILE)/report.path)/report.html"

# `make reproduce PROFILE=…`: the whole study, one Make target per stage run, each recipe one stage
# command that reuses a complete artifact and resumes interrupted training, so an interrupted
# reproduction continues where it stopped and `make -j N` runs the independent U-Nets and
# classifiers side by side. PROFILE ci or demo runs on built-in synthetic phantoms; paper, fast or
# quick on the real data (LUNGS_SRC, CXR_SRC), with a patient-disjoint test split held out of the
# chest X-rays (CXR_TEST_FRACTION) so every table is scored on images no run selected on. Each step
# writes the folder its stage printed to $(RUN)/<step>.path: the report finds every artifact by
# its key, and `make reproduce-classify-focal` (or any step) reruns one stage.
RUN = $(ARTIFACTS)/runs/$(PROFILE)
R_FLAGS = --config $(CONFIG) --profile $(PROFILE) --artifacts $(ARTIFACTS)
CXR_TEST_FRACTION ?= 0.2
# The ensemble sizes of Tables 3 and 4 (top-K), and the model-level ensembles the proposed model combines.
TOPS ?= 3 5
R_SEG_LOSSES = $(SEG_LOSSES)
R_LOSSES = $(LOSSES)
ifneq ($(filter $(PROFILE),ci demo),)
R_LUNGS := synthetic-lungs
# The synthetic lung set has no classes (a classifier's Grad-CAM needs them); its crops carry exact masks.
R_FIG6_LUNGS :=
R_CXR := synthetic
R_PREPARE = mkdir -p data && \
  $(STAGE)/prepare $(R_FLAGS) --layout synthetic --source data/synthetic-$(PROFILE) --name synthetic && \
  $(STAGE)/prepare $(R_FLAGS) --layout montgomery --source data/synthetic-$(PROFILE)/montgomery --name synthetic-lungs --test-fraction 0.25
else ifeq ($(PROFILE),regress)
# The CI regression (make regress): the committed real subset, two U-Nets, three classifiers.
R_LUNGS := lungs
R_CXR := cxr
R_SEG_LOSSES = bce focal-tversky
R_LOSSES = cce focal calibrated-negative-entropy
TOPS = 2 3
R_PREPARE = $(STAGE)/prepare $(R_FLAGS) --layout pairs --source data/regress/lungs --name lungs --test-fraction 0.25 && \
  $(STAGE)/prepare $(R_FLAGS) --layout kermany --source data/regress/kermany --name cxr
else
R_LUNGS := lungs
R_CXR := cxr-holdout
R_PREPARE = $(STAGE)/prepare $(R_FLAGS) --layout $(LUNGS_LAYOUT) --source $(LUNGS_SRC) --name lungs --test-fraction $(LUNGS_TEST_FRACTION) && \
  $(STAGE)/prepare $(R_FLAGS) --layout $(CXR_LAYOUT) --source $(CXR_SRC) --name cxr-holdout --test-fraction $(CXR_TEST_FRACTION)
endif
R_CROPS = $(R_CXR)-crops
R_FIG6_LUNGS ?= $(R_LUNGS)
R_UNETS := $(addprefix reproduce-unet-,$(R_SEG_LOSSES))
R_CLASSIFIERS := $(addprefix reproduce-classify-,$(R_LOSSES))
.PHONY: reproduce reproduce-data reproduce-table1 reproduce-crop reproduce-table2 reproduce-table3 reproduce-table4 \
        reproduce-fig6 $(R_UNETS) $(R_CLASSIFIERS)

reproduce: reproduce-fig6
	$(STAGE)/report $(R_FLAGS) --name $(PROFILE) --segmentation $$(cat $(RUN)/table1.path) \
	  --table2 $$(cat $(RUN)/table2.path) --table3 $$(cat $(RUN)/table3.path) --table4 $$(cat $(RUN)/table4.path) \
	  --gradcam $$(cat $(RUN)/fig6-best.path) $$(cat $(RUN)/fig6-proposed.path) $(if $(R_FIG6_LUNGS),$$(cat $(RUN)/fig6-lungs.path)) \
	  | tail -n 1 > $(RUN)/report.path
	@echo "reproduce: $$(cat $(RUN)/report.path)/report.html"

reproduce-data: build
	@mkdir -p $(RUN)
	$(R_PREPARE)

$(R_UNETS): reproduce-unet-%: reproduce-data
	$(STAGE)/segment train $(R_FLAGS) --loss $* --data $(R_LUNGS) $(SEG_START) | tail -n 1 > $(RUN)/unet-$*.path

reproduce-table1: $(R_UNETS)
	$(STAGE)/segment evaluate $(R_FLAGS) --trained-on $(R_LUNGS) --data $(R_LUNGS) | tail -n 1 > $(RUN)/table1.path

reproduce-crop: reproduce-table1
	$(STAGE)/segment predict $(R_FLAGS) --ensemble-of $(R_LUNGS) --data $(R_CXR)
	$(STAGE)/mask-crop $(R_FLAGS) --data $(R_CXR) | tail -n 1 > $(RUN)/crop.path

$(R_CLASSIFIERS): reproduce-classify-%: reproduce-crop
	$(STAGE)/classify-train $(R_FLAGS) --loss $* --data $(R_CROPS) --encoder-from $(R_LUNGS) | tail -n 1 > $(RUN)/classify-$*.path

reproduce-table2: $(R_CLASSIFIERS)
	$(STAGE)/evaluate $(R_FLAGS) $(foreach l,$(R_LOSSES),$$(cat $(RUN)/classify-$(l).path)/predictions-test.csv) \
	  --name $(PROFILE)-table2 --names $(R_LOSSES) | tail -n 1 > $(RUN)/table2.path

reproduce-table3: reproduce-table2
	@$(MAKE) --no-print-directory table3 FLAGS="$(R_FLAGS)" CROPS=$(R_CROPS) SPLIT=test TABLE=$(PROFILE)-table3 TOPS="$(TOPS)"
	@cp $(ARTIFACTS)/$(PROFILE)-table3.path $(RUN)/table3.path

reproduce-table4: reproduce-table3
	@$(MAKE) --no-print-directory table4 FLAGS="$(R_FLAGS)" CROPS=$(R_CROPS) SPLIT=test TABLE=$(PROFILE)-table4 TOPS="$(TOPS)"
	@cp $(ARTIFACTS)/$(PROFILE)-table4.path $(RUN)/table4.path

reproduce-fig6: reproduce-table4
	@$(MAKE) --no-print-directory fig6 FLAGS="$(R_FLAGS)" CROPS=$(R_CROPS) LUNGS=$(R_FIG6_LUNGS) FIG6_PATHS=$(RUN)/fig6 TOPS="$(TOPS)"

# The report of a reproduction still running or interrupted: Table 1 of the U-Nets and Table 2 of the
# classifiers finished so far (under "-so-far" names, never replacing the run's own artifacts), the
# later tables and Fig 6 once done; the report lists what it lacks. Runs here, not through LAUNCH.
reproduce-so-far: build
	@scripts/reproduce-so-far.sh $(RUN) $(BIN) $(PROFILE) $(R_LUNGS) "$(R_LOSSES)" $(R_FLAGS)

# The reproduction as Slurm batch jobs, one per stage run, with afterok dependencies taken from this
# Makefile's own graph (scripts/reproduce-sbatch.sh); SUBMIT=1 submits them, else run the printed
# submit.sh later. SBATCH_FLAGS go to every sbatch (default: one task, 2 CPUs).
SUBMIT ?= 0
.PHONY: reproduce-sbatch
reproduce-sbatch: build
	@mkdir -p $(RUN)
	scripts/reproduce-sbatch.sh $(abspath $(RUN))/sbatch $(SUBMIT) PROFILE=$(PROFILE) ARTIFACTS=$(ARTIFACTS) CONFIG=$(CONFIG) BLAS=$(BLAS) \
	  $(if $(LAUNCH),LAUNCH="$(LAUNCH)")

# The study on real data (hours at PROFILE=paper on a CPU). Every stage skips work whose
# artifact already exists, so rerunning a target only does what changed.
data: build
	$(STAGE)/prepare $(STAGE_FLAGS) --layout $(LUNGS_LAYOUT) --source $(LUNGS_SRC) --name lungs --test-fraction $(LUNGS_TEST_FRACTION)
	$(STAGE)/prepare $(STAGE_FLAGS) --layout $(CXR_LAYOUT) --source $(CXR_SRC) --name cxr

segment: data
	@for loss in $(SEG_LOSSES); do \
	  $(STAGE)/segment train $(STAGE_FLAGS) --loss $$loss --data lungs $(SEG_START) || exit 1; \
	done
	$(STAGE)/segment evaluate $(STAGE_FLAGS) --trained-on lungs --data lungs

crop: segment
	$(STAGE)/segment predict $(STAGE_FLAGS) --ensemble-of lungs --data cxr
	$(STAGE)/mask-crop $(STAGE_FLAGS) --data cxr

classify: crop
	@rm -f $(ARTIFACTS)/classify-models.txt
	@for loss in $(LOSSES); do \
	  $(STAGE)/classify-train $(STAGE_FLAGS) --loss $$loss --data cxr-crops --encoder-from lungs \
	    | tail -n 1 >> $(ARTIFACTS)/classify-models.txt || exit 1; \
	done
	$(STAGE)/evaluate $(STAGE_FLAGS) $$(sed 's|$$|/predictions-$(TABLE2_SPLIT).csv|' $(ARTIFACTS)/classify-models.txt) --name table2-$(TABLE2_SPLIT) --names $(LOSSES)

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
	@best=$$($(STAGE)/ensemble rank $(FLAGS) $(RANK_FLAGS) --data $(CROPS)) || exit 1; \
	  echo "$${best##*$$'\n'}/predictions-$(SPLIT).csv" >> $(ARTIFACTS)/$(TABLE)-files.txt; \
	for k in $(TOPS); do for m in $(ENSEMBLE_METHODS); do \
	  folder=$$($(STAGE)/ensemble $(FLAGS) $(RANK_FLAGS) $(WEIGHT_FLAGS) --method $$m --top $$k --data $(CROPS)) || exit 1; \
	  echo "$${folder##*$$'\n'}/predictions-$(SPLIT).csv" >> $(ARTIFACTS)/$(TABLE)-files.txt; \
	done; done
	@folder=$$($(STAGE)/evaluate $(FLAGS) $$(cat $(ARTIFACTS)/$(TABLE)-files.txt) --name $(TABLE) \
	  --names best-single $(foreach k,$(TOPS),$(foreach m,$(ENSEMBLE_METHODS),top$(k)-$(m)))) || exit 1; \
	  echo "$$folder" | tee $(ARTIFACTS)/$(TABLE).path

# Table 4: the best single classifier, the model-level ensembles of the top-3 and top-5, and the
# proposed weighted average of the two.
table4:
	@rm -f $(ARTIFACTS)/$(TABLE)-files.txt
	@best=$$($(STAGE)/ensemble rank $(FLAGS) $(RANK_FLAGS) --data $(CROPS)) || exit 1; \
	  echo "$${best##*$$'\n'}/predictions-$(SPLIT).csv" >> $(ARTIFACTS)/$(TABLE)-files.txt; \
	for k in $(TOPS); do \
	  folder=$$($(STAGE)/ensemble $(FLAGS) $(RANK_FLAGS) $(WEIGHT_FLAGS) --method model-level --top $$k --data $(CROPS)) || exit 1; \
	  echo "$${folder##*$$'\n'}/predictions-$(SPLIT).csv" >> $(ARTIFACTS)/$(TABLE)-files.txt; \
	done; \
	folder=$$($(STAGE)/ensemble proposed $(FLAGS) $(WEIGHT_FLAGS) --sizes $(TOPS) --data $(CROPS)) || exit 1; \
	  echo "$${folder##*$$'\n'}/predictions-$(SPLIT).csv" >> $(ARTIFACTS)/$(TABLE)-files.txt
	@folder=$$($(STAGE)/evaluate $(FLAGS) $$(cat $(ARTIFACTS)/$(TABLE)-files.txt) --name $(TABLE) \
	  --names best-single $(foreach k,$(TOPS),model-level-top$(k)) proposed) || exit 1; \
	  echo "$$folder" | tee $(ARTIFACTS)/$(TABLE).path

# Fig 6: Grad-CAM of the proposed model (the weighted sum of its model-level ensembles' NewConv maps)
# and of the best single classifier (its DCL), on the test split of CROPS; and of the best single
# classifier on the test split of LUNGS (when given: a labelled lung set), whose hand-drawn masks give the
# share of each map inside the lungs.
fig6:
	@best=$$($(STAGE)/ensemble rank $(FLAGS) $(RANK_FLAGS) --data $(CROPS)) || exit 1; \
	  folder=$$($(STAGE)/gradcam $(FLAGS) --model "$${best##*$$'\n'}" --data $(CROPS)) || exit 1; \
	  echo "$$folder"; $(if $(FIG6_PATHS),echo "$${folder##*$$'\n'}" > $(FIG6_PATHS)-best.path,true)
	@proposed=$$($(STAGE)/ensemble proposed $(FLAGS) $(WEIGHT_FLAGS) --sizes $(TOPS) --data $(CROPS)) || exit 1; \
	  folder=$$($(STAGE)/gradcam $(FLAGS) --model "$${proposed##*$$'\n'}" --data $(CROPS)) || exit 1; \
	  echo "$$folder"; $(if $(FIG6_PATHS),echo "$${folder##*$$'\n'}" > $(FIG6_PATHS)-proposed.path,true)
	$(if $(LUNGS),@best=$$($(STAGE)/ensemble rank $(FLAGS) $(RANK_FLAGS) --data $(CROPS)) || exit 1; \
	  folder=$$($(STAGE)/gradcam $(FLAGS) --model "$${best##*$$'\n'}" --data $(LUNGS)) || exit 1; \
	  echo "$$folder"; $(if $(FIG6_PATHS),echo "$${folder##*$$'\n'}" > $(FIG6_PATHS)-lungs.path,true))

gradcam: ensembles
	@$(MAKE) --no-print-directory fig6 FLAGS="$(STAGE_FLAGS)" CROPS=cxr-crops LUNGS=lungs

ensembles: classify
	@$(MAKE) --no-print-directory table3 FLAGS="$(STAGE_FLAGS)" CROPS=cxr-crops SPLIT=$(TABLE2_SPLIT) TABLE=table3-$(TABLE2_SPLIT)
	@$(MAKE) --no-print-directory table4 FLAGS="$(STAGE_FLAGS)" CROPS=cxr-crops SPLIT=$(TABLE2_SPLIT) TABLE=table4-$(TABLE2_SPLIT)

# CI regression on the committed real subset (data/regress/, rebuilt by `make regress-subset`): the
# whole study at the `regress` profile in a fresh artifact store (a stage reuses a complete artifact
# of the same key, and keys do not include the code, so an old store would hide a changed engine),
# recorded in regress.json (every stage run's key, output hashes, headline numbers) and compared
# with the baseline of this BLAS: a difference names the first stage run that diverged.
REGRESS_ARTIFACTS ?= artifacts-regress$(if $(filter-out blis,$(BLAS)),-$(BLAS))
REGRESS_BASELINE = data/regress/baseline$(if $(filter-out blis,$(BLAS)),-$(BLAS)).json
REGRESS_RECORD = $(REGRESS_ARTIFACTS)/regress.json
# The baselines were made on the kernel sets an AMD Zen 3 CPU picks (BLIS's zen3, OpenBLAS's Zen). Both
# need only AVX2 and FMA, so any such CPU is told to use them (BLIS takes its architecture id: 6 is zen3
# in Debian 12's BLIS 0.9.0) and reproduces the baselines bit for bit: checked on an Intel Xeon, where
# BLIS would pick haswell and OpenBLAS SkylakeX. `REGRESS_KERNELS=` runs the CPU's own choice instead
# (then `regress compare` checks only what does not depend on rounding, and says so).
REGRESS_KERNELS ?= $(if $(call HAS_FLAGS,avx2 fma),$(if $(filter openblas,$(BLAS)),OPENBLAS_CORETYPE=Zen,BLIS_ARCH_TYPE=6))
.PHONY: regress regress-update regress-run regress-subset
regress: regress-run
	$(BIN)/regress compare $(REGRESS_RECORD) --baseline $(REGRESS_BASELINE)

regress-update: regress-run
	cp $(REGRESS_RECORD) $(REGRESS_BASELINE)
	@echo "regress: $(REGRESS_BASELINE) rewritten; commit it and say why the outputs changed"

regress-run: build
	rm -rf $(REGRESS_ARTIFACTS)
	@start=$$(date +%s); \
	  $(REGRESS_KERNELS) $(MAKE) --no-print-directory reproduce PROFILE=regress ARTIFACTS=$(REGRESS_ARTIFACTS) || exit 1; \
	  echo "regress: the study on the subset took $$(( $$(date +%s) - start )) s"
	$(REGRESS_KERNELS) $(BIN)/regress record --artifacts $(REGRESS_ARTIFACTS) --report $$(cat $(REGRESS_ARTIFACTS)/runs/regress/report.path) --out $(REGRESS_RECORD)

regress-subset: build
	$(BIN)/regress subset --source ../shared/data --out data/regress

# A bounded mutation-fuzzing run of the PNG/JPEG decoders (see Sources/fuzz-decoders).
FUZZ_SECONDS ?= 60
fuzz: build
	$(BIN)/fuzz-decoders --seconds $(FUZZ_SECONDS) --out $(ARTIFACTS)/fuzz $(if $(FUZZ_CORPUS),--corpus $(FUZZ_CORPUS))

BENCH_STEPS ?= 5
bench: build
	$(BIN)/bench --steps $(BENCH_STEPS) --threads 2

# The engine against tuned PyTorch (../shared/peers), alternating, BENCH_ROUNDS rounds; a Python with
# torch, timm and segmentation-models-pytorch is the caller's (never a project dependency).
PEERS_PY ?= python3
PEERS_DIR ?= ../shared/peers
BENCH_ROUNDS ?= 3
# PEERS_EPOCHS=1 adds one real epoch of each training stage against bench/peers/epoch_torch.py
# (about 25 minutes); PEERS_STEPS=0 leaves out the step workloads.
PEERS_STEPS ?= 1
PEERS_EPOCHS ?= 0
bench-peers: build
	PEERS_STEPS=$(PEERS_STEPS) PEERS_EPOCHS=$(PEERS_EPOCHS) scripts/bench-peers.sh $(PEERS_PY) $(PEERS_DIR) $(BIN)/bench $(BENCH_ROUNDS) bench-peers.json

clean:
	rm -rf .build .build-* bin $(ARTIFACTS)
