# The study as a DAG: world+pretrain -> zero-shot -> fine-tuning units -> evaluation units -> figures.
# Every executed notebook and every result table is a target under $(BUILD)/<profile>/. A notebook runs
# into <target>.tmp.ipynb (look there while it runs) and is moved into place only when it ran through.
SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c
.DELETE_ON_ERROR:
.SUFFIXES:
# GNU make >= 4.3: the rules below use grouped targets (`a b &: c`), which older makes (macOS ships
# 3.81) read as something else; stop before reading them
ifeq ($(filter grouped-target,$(.FEATURES)),)
$(error GNU make $(MAKE_VERSION) is too old: this Makefile needs GNU make >= 4.3 (grouped targets). Install it \
  (macOS: brew install make, then run gmake; Debian/Ubuntu >= 21.04 / WSL2: apt install make) and run again)
endif

PROFILE ?= study3
# JOBS units run at once; each unit's process takes the CPUs it may use (SLURM_CPUS_PER_TASK, else its CPU
# affinity) divided by the units sharing its host (JOBS, or 1 when LAUNCH sends each unit to its own
# allocation): lib.pipeline.common.unit_threads, in the unit, not on the Make host
JOBS ?= 2
# prefix of every unit of work, e.g. LAUNCH="srun --gres=gpu:1 -c 8" inside a SLURM allocation
LAUNCH ?=
# PY: the interpreter that runs everything. Default: the project's .venv (made by `make setup` from the
# lock); PY=python (or any interpreter) uses the active environment and never builds .venv.
VENV ?= .venv
PYTHON ?= python3
PY ?= $(VENV)/bin/python
BUILD ?= $(or $(CLIPMIS_BUILD),build)
export CLIPMIS_BUILD := $(abspath $(BUILD))
B := $(BUILD)/$(PROFILE)
NB := notebooks
P := params
# JOBS must be a positive integer (checked here, in Make, before any shell arithmetic uses it):
# one word, nothing left once the digits are removed, no leading 0
JOBS_REST := $(subst 0,,$(subst 1,,$(subst 2,,$(subst 3,,$(subst 4,,$(subst 5,,$(subst 6,,$(subst 7,,$(subst 8,,$(subst 9,,$(JOBS)))))))))))
ifneq ($(words $(JOBS))$(JOBS_REST)$(filter 0%,$(JOBS)),1)
$(error JOBS='$(JOBS)' is not a positive integer (how many units run at once): write e.g. JOBS=2, or leave it out for the default 2)
endif
# the units sharing one host's CPUs: JOBS locally, 1 when LAUNCH gives each unit its own allocation
UNIT_ENV := CLIPMIS_UNITS_PER_HOST=$(if $(strip $(LAUNCH)),1,$(JOBS))
CLIPMIS_T0 ?= $(shell date +%s)
export CLIPMIS_T0
# the math libraries' CPU kernels pinned to AVX2 paths in every process (lib/determinism.py):
# the same bytes on any x86-64 machine with AVX2; CLIPMIS_NO_ISA_PINS=1 turns this off
PINS := $(shell $(PY) -m lib.determinism --kv 2>/dev/null)
$(foreach kv,$(PINS),$(eval export $(kv)))
export PYTHONHASHSEED := 0
export PYTHONUNBUFFERED := 1

.PHONY: all reproduce smoke setup test test-unit test-notebooks world pretrain zero-shot finetune evaluate figures \
        bench verify publish release-check dry-run commands clean-profile help
all: reproduce

help:
	@echo "make reproduce [PROFILE=study3|study4|mini|smoke|paper] the whole study (creates .venv first unless PY=... is given)"
	@echo "make smoke                                  the same DAG on tiny sizes (build/smoke)"
	@echo "make test                                   unit tests + notebook tests (nbval), as CI runs them"
	@echo "make test-unit                              the fast unit tests only (pytest -m 'not slow' -n auto)"
	@echo "make bench                                  benchmark table"
	@echo "make verify                                 compare a fresh run with paper_figures/ (tolerances, verdicts)"
	@echo "make publish [PROFILE=study3]               copy the build's figures, tables, notebooks to paper_figures/ + README block"
	@echo "make release-check                          LICENSE, CITATION.cff, CHANGELOG, .zenodo.json, pyproject agree"
	@echo "make setup [CPU=1] [PYTHON=python3.11]      .venv from the lock (CPU=1: CPU-only torch, requirements-cpu.txt)"
	@echo "make dry-run PROFILE=paper                  show the commands the DAG would run"
	@echo "make commands PROFILE=paper [PHASE=...]     one shell command per unit of work, phase by phase (SLURM arrays)"
	@echo "make clean-profile PROFILE=<name>           delete build/<name> (one profile only)"
	@echo "variables: PROFILE JOBS LAUNCH PY BUILD (or CLIPMIS_BUILD) LOCK=none LOG_CELLS=1 CPU=1"

# ------------------------------------------------------------------ inputs are checked before any work
PROFILES := $(basename $(notdir $(wildcard $(P)/profiles/*.yaml)))
NO_PROFILE_GOALS := help setup release-check
ifneq ($(filter-out $(NO_PROFILE_GOALS),$(or $(MAKECMDGOALS),all)),)
ifneq ($(words $(PROFILE)),1)
$(error PROFILE='$(PROFILE)' is not a profile; valid profiles: $(PROFILES) (files params/profiles/<name>.yaml))
endif
ifeq ($(filter $(PROFILE),$(PROFILES)),)
$(error PROFILE='$(PROFILE)' is not a profile; valid profiles: $(PROFILES) (files params/profiles/<name>.yaml))
endif
endif

# ------------------------------------------------------------------ environment
ifeq ($(PY),$(VENV)/bin/python)
SETUP := $(VENV)/.installed
setup: $(SETUP)
# CPU=1: CPU-only torch/torchvision from PyTorch's CPU index and the lock without its CUDA lines
# (requirements-cpu.txt: Linux without a GPU, Binder); remembered in .venv/.installed, CPU=0 goes back
CPU ?= $(if $(shell grep -sx requirements-cpu.txt $(VENV)/.installed),1)
SETUP_LOCK := $(if $(filter 1,$(CPU)),requirements-cpu.txt,requirements-lock.txt)
# checks first (Python 3.11, free disk, a venv of another Python), then a venv with a working pip: one
# whose creation failed half-way (python but no pip) is made again; pip shows its progress
$(VENV)/.installed: $(SETUP_LOCK) pyproject.toml
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "error: no '$(PYTHON)' on PATH. make setup needs Python 3.11 (3.11.5 or newer): install it (Debian/Ubuntu: sudo apt install python3.11 python3.11-venv; macOS: brew install python@3.11; or pyenv / uv python install 3.11), then run make setup PYTHON=python3.11" >&2; exit 1; }
	@echo "[setup 1/5] checking $(PYTHON), free disk and $(VENV)"
	@$(PYTHON) tools/check_setup.py --venv $(VENV) $(if $(filter 1,$(CPU)),--cpu)
	@if $(PY) -m pip --version >/dev/null 2>&1; then echo "[setup 2/5] $(VENV) exists and has pip"; \
	 else \
	   if [ -e $(VENV)/pyvenv.cfg ]; then echo "[setup 2/5] $(VENV) is half made (no working pip: an earlier creation failed); making it again"; rm -rf -- $(VENV); \
	   elif [ -e $(VENV) ]; then echo "error: $(VENV) exists but is not a virtual environment (no pyvenv.cfg): move it away or set VENV=<another folder>" >&2; exit 1; \
	   else echo "[setup 2/5] creating $(VENV) with $$($(PYTHON) -c 'import sys; print(sys.executable, sys.version.split()[0])')"; fi; \
	   $(PYTHON) -m venv $(VENV) || { rm -rf -- $(VENV); echo "error: '$(PYTHON) -m venv' failed. On Debian/Ubuntu/WSL2 install the venv module: sudo apt install python3.11-venv (or python3-venv); then run make setup again" >&2; exit 1; }; \
	 fi
	@echo "[setup 3/5] installing $(SETUP_LOCK) into $(VENV) (minutes: on Linux ~6 GB with torch's CUDA wheels, less with CPU=1)"
	$(PY) -m pip install --progress-bar on -r $(SETUP_LOCK)
	@echo "[setup 4/5] installing the project itself (pip install -e .) and CLIP_benchmark's class names and prompts (the colab profile)"
	$(PY) -m pip install --no-deps --no-build-isolation -e .
	$(PY) -m pip install --no-deps clip-benchmark==1.6.2
	@echo "[setup 5/5] checking the environment"
	$(PY) -c "import torch, torchvision, open_clip, peft, papermill, nbval, lib; print('environment ok: torch', torch.__version__)"
	@echo $(SETUP_LOCK) > $@
else
SETUP :=
# installed, not imported (importing them took ~7 s of every make reproduce); a stage that cannot import one fails at once
setup:
	@$(PY) -c "import importlib.util as u, sys; sys.exit(any(u.find_spec(m) is None for m in ('torch', 'open_clip', 'peft', 'papermill', 'lib')))" 2>/dev/null \
	  || { echo "PY=$(PY) lacks the project's packages: run '$(PY) -m pip install -r requirements-colab.txt && $(PY) -m pip install -e .' (or use the default .venv: make setup)" >&2; exit 1; }
	@echo "using $(PY) ($$($(PY) -c 'import sys; print(sys.prefix)')); no .venv"
endif

# ------------------------------------------------------------------ papermill
# $(1) notebook, $(2) output notebook, $(3) extra papermill args, $(4) environment assignments, $(5) the
# unit's log label (default: the notebook's name).
# papermill --log-output writes the cells' output to its stderr; that stream passes through LOG_FILTER:
# papermill's "Executing Cell n" / "Ending Cell n" lines are dropped (LOG_CELLS=1 keeps them), empty lines
# too, and a line that does not start with a [label] gets the unit's, so every line says whose it is.
LOG_CELLS ?=
LOG_FILTER = awk -v l='[$(1)] ' -v show='$(LOG_CELLS)' '/^[[:space:]]*$$/ || (show != "1" && /^(Executing|Ending) Cell [0-9]*-*$$/) {next} {print (/^\[[^]]+\] / ? "" : l) $$0; fflush()}'
define papermill
	@mkdir -p $(dir $(2))
	{ $(4) CLIPMIS_RUN_LABEL='$(or $(5),$(1))' $(LAUNCH) $(PY) -m papermill $(NB)/$(1).ipynb $(2).tmp.ipynb -k python3 --cwd . \
	  --no-progress-bar --log-output -p profile $(PROFILE) $(3) 2>&1 1>&3 | $(call LOG_FILTER,$(or $(5),$(1))) >&2; } 3>&1 \
	  || { mv -f $(2).tmp.ipynb $(2).failed.ipynb 2>/dev/null; echo "FAILED: see $(2).failed.ipynb" >&2; exit 1; }
	mv $(2).tmp.ipynb $(2)
endef

PROFILE_YAML := $(wildcard $(P)/profiles/*.yaml)
LIB_PY := $(wildcard lib/*.py lib/*/*.py)

# ------------------------------------------------------------------ the grid (one rule per unit), checked first
# writing grid.mk validates the whole configuration (profile, every stage file, every method file), so
# it depends on every one of those files: a changed file is checked before Make runs anything. It also
# holds each stage's code (CODE_<STAGE>: the import closure inside lib/ of the stage's entry modules,
# declared in lib/pipeline/stages.py), so it depends on every lib/ file too: an edited import is seen.
$(B)/grid.mk: $(SETUP) $(PROFILE_YAML) $(LIB_PY) \
              $(wildcard $(P)/*.yaml $(P)/$(PROFILE)/*.yaml $(P)/methods/*.yaml $(P)/$(PROFILE)/methods/*.yaml)
	@mkdir -p $(@D)
	$(PY) -m lib.pipeline.grid $(PROFILE) --make > $@.tmp.$$$$ && mv $@.tmp.$$$$ $@ || { rm -f $@.tmp.$$$$; exit 1; }

# ------------------------------------------------------------------ stages
# Every stage's rule is generated into grid.mk from the declared pipeline (lib/pipeline/stages.py:
# each stage's runner, inputs, products, parameter files and code), with each stage's code (CODE_<NAME>)
# and target (STAGE_<name>). What stays here is how a stage runs: papermill (above) for a notebook, and
# the recipes of the two unit stages, each a job of tasks_per_job tasks ($(1), space-separated;
# params/<profile>/02_finetune.yaml and 03_evaluate.yaml, default 1): a fine-tuning job executes each
# task's 02_finetune notebook (every method: sweep, selection, seeds) in one kernel
# (lib.pipeline.notebook_job: papermill's recipe above, per notebook); an evaluation job evaluates its
# tasks' (task, method) units in one process ($(2) lists the methods).
define finetune_unit
	$(UNIT_ENV) $(LAUNCH) $(PY) -m lib.pipeline.notebook_job $(PROFILE) $(1)
	@$(PY) -m lib.pipeline.grid $(PROFILE) --progress finetune
endef
define evaluate_unit
	@mkdir -p $(@D)
	$(UNIT_ENV) $(LAUNCH) $(PY) -m lib.pipeline.evaluate $(PROFILE) $(1) --methods $(2)
	@$(PY) -m lib.pipeline.grid $(PROFILE) --progress evaluate
endef

GRID_GOALS := $(filter-out help setup clean-profile test test-unit test-notebooks bench smoke verify commands release-check,$(or $(MAKECMDGOALS),all))
ifneq ($(GRID_GOALS),)
include $(B)/grid.mk
endif

# ------------------------------------------------------------------ entry points (one make per profile at a time)
# LOCK=none: no lock, for a filesystem without file locks (lib.pipeline.lock says when it meets one)
LOCK ?=
export CLIPMIS_LOCK := $(LOCK)
LOCKED = $(PY) -m lib.pipeline.lock $(BUILD)/.$(PROFILE).lock --
# each builds one stage's target (STAGE_<name>, from grid.mk) and everything it needs
world pretrain: setup
	$(LOCKED) $(MAKE) --no-print-directory -j$(JOBS) $(STAGE_pretrain) PROFILE=$(PROFILE)
zero-shot: setup
	$(LOCKED) $(MAKE) --no-print-directory -j$(JOBS) $(STAGE_zero_shot) PROFILE=$(PROFILE)
finetune: setup
	$(LOCKED) $(MAKE) --no-print-directory -j$(JOBS) $(STAGE_finetune) PROFILE=$(PROFILE)
evaluate: setup
	$(LOCKED) $(MAKE) --no-print-directory -j$(JOBS) $(STAGE_evaluate) PROFILE=$(PROFILE)
figures: setup
	$(LOCKED) $(MAKE) --no-print-directory -j$(JOBS) $(STAGE_figures) PROFILE=$(PROFILE)

# reproduce builds into $(B) only and ends with `make verify`'s report against paper_figures/ (when
# paper_figures/ holds this profile); a difference is reported, not a failure of the build (make verify
# exits 1 on it). Nothing tracked by git is written: `make publish` is the one step that does.
reproduce: setup
	$(LOCKED) $(MAKE) --no-print-directory -j$(JOBS) $(STAGE_figures) PROFILE=$(PROFILE)
	@$(PY) -m lib.pipeline.publish $(PROFILE) --summary
	@$(PY) -m lib.pipeline.verify $(PROFILE) --report

# publish: the build's figures, tables, claims.md and executed notebooks -> paper_figures/, and the README
# results block; only from a complete, up-to-date build (make -q), never as a side effect of a run
publish: setup
	@$(MAKE) --no-print-directory -q $(STAGE_figures) PROFILE=$(PROFILE) >/dev/null 2>&1 \
	  || { echo "error: $(B) is missing or out of date with the sources: run make reproduce PROFILE=$(PROFILE) first, then make publish PROFILE=$(PROFILE)" >&2; exit 1; }
	$(LOCKED) $(PY) -m lib.pipeline.publish $(PROFILE) --publish

smoke: setup
	$(MAKE) --no-print-directory reproduce PROFILE=smoke

dry-run: setup
	$(MAKE) --no-print-directory -n $(STAGE_figures) PROFILE=$(PROFILE)

# only commands on stdout (one per line, phase by phase: pretrain, zero-shot, finetune units, evaluation
# units, figures; PHASE=<one of them> for one phase's lines); setup's output goes to stderr
commands:
	@$(MAKE) --no-print-directory setup >&2
	@$(PY) -m lib.pipeline.launch $(PROFILE) --commands $(if $(PHASE),--phase $(PHASE)) --python "$(PY)"

# ------------------------------------------------------------------ tests and benchmarks
# Notebook tests run on a copy of build/smoke (CLIPMIS_BUILD=$(BUILD)/nbval): the notebooks take every
# value from params/ as the pipeline does, find every run complete, and never touch build/smoke.
NBVAL_BUILD := $(abspath $(BUILD))/nbval
test: setup
	$(PY) -m ruff check
	$(MAKE) --no-print-directory smoke
	$(PY) -m pytest -q tests
	$(MAKE) --no-print-directory test-notebooks

# the fast tier on one pytest-xdist worker per core (bench/bench_tests.py times it)
test-unit: setup
	$(PY) -m pytest -q -m "not slow" -n auto --dist loadfile tests

test-notebooks: setup
	rm -rf $(NBVAL_BUILD) && mkdir -p $(NBVAL_BUILD) && cp -a $(abspath $(BUILD))/smoke $(NBVAL_BUILD)/smoke
	CLIPMIS_BUILD=$(NBVAL_BUILD) $(PY) -m pytest -q --nbval-lax --nbval-current-env -p no:cacheprovider $(NB)

bench: setup
	$(PY) bench/run_all.py

verify: setup
	$(PY) -m lib.pipeline.verify $(PROFILE)

# LICENSE, CITATION.cff, CHANGELOG.md, .zenodo.json and pyproject's metadata agree (tools/release_check.py)
release-check:
	@$(or $(wildcard $(PY)),$(PYTHON)) tools/release_check.py

clean-profile:
	rm -rf -- "$(abspath $(B))"
