# The study as a DAG: world+pretrain -> zero-shot -> fine-tune runs -> evaluate -> figures.
# Every executed notebook is a target under build/<profile>/; papermill writes a temporary file that
# is moved into place only when the notebook ran through.
SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c
.DELETE_ON_ERROR:
.SUFFIXES:

PROFILE ?= mini
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
# fine-tuning runs are many small processes: run JOBS at once, each on CPU_CORES/JOBS threads
JOBS ?= 2
# the profile whose figures are published to paper_figures/
PUBLISH_PROFILE ?= mini
CPU_CORES := $(shell nproc 2>/dev/null || echo 2)
FT_THREADS := $(shell echo $$(( $(CPU_CORES) / $(JOBS) > 0 ? $(CPU_CORES) / $(JOBS) : 1 )))
B := build/$(PROFILE)
NB := notebooks
P := params
export PYTHONHASHSEED := 0
export PYTHONUNBUFFERED := 1

.PHONY: all reproduce smoke setup test test-lib test-notebooks world pretrain zero-shot finetune evaluate figures bench dry-run clean-profile help
all: reproduce

help:
	@echo "make reproduce [PROFILE=mini|smoke|paper]  run the whole study (creates .venv first)"
	@echo "make smoke                                  the same DAG on tiny sizes"
	@echo "make test                                   unit tests + notebook tests (nbval)"
	@echo "make bench                                  benchmark table"
	@echo "make dry-run PROFILE=paper                  show the commands the DAG would run"

# ------------------------------------------------------------------ environment
setup: $(VENV)/.installed
$(VENV)/.installed: requirements-lock.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -r requirements-lock.txt
	$(PY) -c "import torch, torchvision, open_clip, peft, papermill, nbval; print('environment ok: torch', torch.__version__)"
	touch $@

# ------------------------------------------------------------------ papermill
# $(1) notebook name, $(2) output notebook, $(3) extra papermill args
pfiles = $(foreach f,$(wildcard $(P)/$(1).yaml $(P)/$(PROFILE)/$(1).yaml),-f $(f))
define papermill
	@mkdir -p $(dir $(2))
	$(4) $(PY) -m papermill $(NB)/$(1).ipynb $(2).tmp.ipynb -k python3 --cwd . --no-progress-bar --log-output \
	  $(call pfiles,$(1)) -p profile $(PROFILE) $(3) \
	  || { mv -f $(2).tmp.ipynb $(2).failed.ipynb 2>/dev/null; echo "FAILED: see $(2).failed.ipynb" >&2; exit 1; }
	mv $(2).tmp.ipynb $(2)
endef

PROFILE_YAML := $(P)/profiles/$(PROFILE).yaml $(wildcard $(P)/profiles/*.yaml)
CORE := lib/__init__.py lib/config.py lib/paths.py lib/data.py lib/models.py lib/provenance.py lib/stages.py $(wildcard lib/real_data.py)

# ------------------------------------------------------------------ stages
$(B)/00_pretrain.ipynb: $(NB)/00_pretrain.ipynb $(wildcard $(P)/00_pretrain.yaml $(P)/$(PROFILE)/00_pretrain.yaml) $(PROFILE_YAML) $(CORE) lib/world.py lib/pretrain.py
	$(call papermill,00_pretrain,$@)

$(B)/01_zero_shot.ipynb: $(NB)/01_zero_shot.ipynb $(B)/00_pretrain.ipynb $(wildcard $(P)/01_zero_shot.yaml $(P)/$(PROFILE)/01_zero_shot.yaml) $(CORE) lib/evaluate.py lib/metrics.py
	$(call papermill,01_zero_shot,$@)

FT_DEPS := $(NB)/02_finetune.ipynb $(B)/00_pretrain.ipynb $(wildcard $(P)/02_finetune.yaml $(P)/$(PROFILE)/02_finetune.yaml) $(CORE) lib/methods.py lib/train.py
# one rule per run, generated from the profile's grid
define run_finetune
	$(call papermill,02_finetune,$@,$(foreach f,$(5),-f $(f)) -p task $(1) -p method $(2) -p variant $(3) -p seed $(4),CLIPMIS_THREADS=$(FT_THREADS))
endef
$(B)/grid.mk: $(VENV)/.installed $(PROFILE_YAML) lib/grid.py $(wildcard $(P)/methods/*.yaml $(P)/$(PROFILE)/methods/*.yaml)
	@mkdir -p $(dir $@)
	$(PY) -m lib.grid $(PROFILE) > $@.tmp && mv $@.tmp $@
ifeq ($(filter setup help clean-profile,$(MAKECMDGOALS)),)
-include $(B)/grid.mk
endif

$(B)/results/finetune.csv: $(RUNS) lib/stages.py
	$(PY) -m lib.aggregate finetune $(PROFILE)

$(B)/03_evaluate.ipynb: $(NB)/03_evaluate.ipynb $(B)/results/finetune.csv $(B)/01_zero_shot.ipynb $(wildcard $(P)/03_evaluate.yaml $(P)/$(PROFILE)/03_evaluate.yaml) $(CORE) lib/evaluate.py lib/metrics.py lib/analysis.py
	$(call papermill,03_evaluate,$@)

$(B)/04_figures.ipynb: $(NB)/04_figures.ipynb $(B)/03_evaluate.ipynb $(wildcard $(P)/04_figures.yaml $(P)/$(PROFILE)/04_figures.yaml) lib/plots.py lib/analysis.py lib/manifest.py
	$(call papermill,04_figures,$@,$(if $(filter $(PROFILE),$(PUBLISH_PROFILE)),-p publish True))

world pretrain: setup $(B)/00_pretrain.ipynb
zero-shot: setup $(B)/01_zero_shot.ipynb
finetune: setup $(B)/results/finetune.csv
evaluate: setup $(B)/03_evaluate.ipynb
figures: setup $(B)/04_figures.ipynb

reproduce: setup
	$(MAKE) --no-print-directory -j$(JOBS) $(B)/04_figures.ipynb PROFILE=$(PROFILE)

smoke: setup
	$(MAKE) --no-print-directory reproduce PROFILE=smoke

dry-run: setup
	$(MAKE) --no-print-directory -n $(B)/04_figures.ipynb PROFILE=$(PROFILE)

# ------------------------------------------------------------------ tests and benchmarks
test: setup
	$(MAKE) --no-print-directory smoke
	$(PY) -m pytest -q tests
	$(PY) -m pytest -q --nbval-lax --nbval-current-env -p no:cacheprovider $(NB)

bench: setup
	$(PY) bench/run_all.py

clean-profile:
	rm -rf $(B)
