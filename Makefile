# sfh_ml: set up, test and render the book.  `make help` lists the targets.
#
# Chapters are the notebooks book/[0-9]*.ipynb, then the model card's page (book/model_card.ipynb,
# which only reads the shipped files). They run in that order (chapter N may read what chapter N-1
# wrote) with papermill, which injects QUICK and DATA_DIR into their `parameters` cell:
#   make test      QUICK=True,  DATA_DIR=../_build/test-data, executed copies in _build/test-chapters/
#   make book      QUICK=False, DATA_DIR=../_build/data,      executed copies in _build/src/book/
# (DATA_DIR is relative to book/, where papermill runs them, so that no path of the build machine
# shows in the book.) TensorFlow's start-up lines are then removed from the executed copies
# (sfh_ml/_book.py). A chapter's run is skipped when its executed copy is newer than the notebook,
# the library code and the venv; `make clean` (or `make -B ...`) runs everything again.
#   make book FULL=1  also trains chapter 2's workshop-size comparison networks (v1, v2 without
#                     photometry, the learning curve; COMPARISONS=True), which chapter 3 then shows
#                     beside the release's. Changing FULL runs the chapters again.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
.DELETE_ON_ERROR:
MAKEFLAGS += --no-builtin-rules

PYTHON ?= $(if $(shell command -v python3.11 2>/dev/null),python3.11,python3)
VENV ?= .venv
PY = $(VENV)/bin/python
STAMP = $(VENV)/.installed

# Quieter TensorFlow start-up (C++ INFO and WARNING lines); errors still show. What TensorFlow writes
# before it reads this (absl's InitializeLog notice, oneDNN) is removed from the chapters afterwards.
export TF_CPP_MIN_LOG_LEVEL ?= 2

BUILD := _build
# Staging copy of the book sources; the executed chapters are written into it.
SRC := $(BUILD)/src
HTML := $(BUILD)/book/_build/html
TEST_OUT := $(BUILD)/test-chapters
# Staging copy of the book with the quick-mode chapters, and its HTML (make test-book).
TEST_SRC := $(BUILD)/test-src
TEST_HTML := $(BUILD)/test-book/_build/html
DATA_DIR := $(BUILD)/data
TEST_DATA_DIR := $(BUILD)/test-data
# A path as the chapters see it from book/ (absolute paths are kept).
from_book = $(if $(filter /%,$(1)),$(1),../$(1))

CHAPTERS := $(sort $(wildcard book/[0-9]*.ipynb)) book/model_card.ipynb
NOTEBOOKS := $(wildcard book/*.ipynb)
FULL_RUNS := $(CHAPTERS:book/%=$(SRC)/book/%)
QUICK_RUNS := $(CHAPTERS:book/%=$(TEST_OUT)/%)
BOOK_FILES := _config.yml _toc.yml $(wildcard book/*.md book/*.png book/*.bib)
STAGED := $(addprefix $(SRC)/,$(BOOK_FILES))
TEST_STAGED := $(addprefix $(TEST_SRC)/,$(BOOK_FILES))
TEST_COPIES := $(CHAPTERS:book/%=$(TEST_SRC)/book/%)
# what the chapters' outputs depend on: the code, the figures' style file and the shipped network's files
LIB := $(shell find sfh_ml \( -name '*.py' -o -name '*.mplstyle' -o -path 'sfh_ml/pretrained/*' \) \
    -not -path '*/__pycache__/*' -type f)
# ruff checks and formats the code and the chapters alike.
LINT_PATHS := $(wildcard sfh_ml tests benchmarks) $(NOTEBOOKS)

.PHONY: help venv data test unit-test test-chapters test-book chapters book lab lint benchmark bench clean distclean

help: ## List the targets
	@echo "Usage: make TARGET   (variables: PYTHON=$(PYTHON) VENV=$(VENV))"
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-14s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

# ---------------------------------------------------------------------------- environment
venv: $(STAMP) ## Create the venv: pinned requirements.txt, then sfh_ml in editable mode

$(STAMP): requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -r requirements.txt
	$(PY) -m pip install --no-deps -e .
	touch $@

data: venv ## Fetch the model data and the MaNGA test spectra (~390 MB, once), build the SSP libraries in $SFH_ML_CACHE
	$(PY) -m sfh_ml.cli data

# ---------------------------------------------------------------------------- chapters
FULL ?= 0
# Chapter 2's COMPARISONS under FULL=1; a stamp per value of FULL makes a change of it run the chapters again.
full_params = $(if $(and $(filter 1,$(FULL)),$(findstring 02_training,$(1))),-p COMPARISONS True)
FULL_STAMP := $(SRC)/.full-$(FULL)

$(FULL_STAMP):
	@mkdir -p $(@D)
	@rm -f $(SRC)/.full-*
	@touch $@

# $(call papermill,NOTEBOOK,OUTPUT,QUICK,DATA_DIR): execute one chapter. The output is written
# under a temporary name and renamed on success, so a failed chapter is never taken as up to date;
# its partly executed copy (with the traceback) and the log stay next to it.
define papermill
@mkdir -p $(dir $(2)) "$(4)"
@rm -f $(2)
@echo ">>> $(1)  QUICK=$(3)  DATA_DIR=$(4)"
$(PY) -m papermill --cwd book --kernel python3 --log-output --no-progress-bar \
    -p QUICK $(3) -p DATA_DIR "$(call from_book,$(4))" $(if $(filter False,$(3)),$(call full_params,$(1))) \
    $(1) $(basename $(2)).running.ipynb 2>&1 \
    | tee $(basename $(2)).log \
  || { echo "!!! $(1) failed: see $(basename $(2)).running.ipynb and $(basename $(2)).log" >&2; exit 1; }
$(PY) sfh_ml/_book.py $(basename $(2)).running.ipynb
@mv $(basename $(2)).running.ipynb $(2)
endef

# $(call render,SOURCE_DIR,OUTPUT_DIR): the HTML book from a staging copy whose chapters are executed.
# Fails on Sphinx errors, on a page that shows a path of this machine or TensorFlow noise, and on a
# broken local link, a missing image or an asset loaded from another host (sfh_ml/_site_check.py).
define render
$(VENV)/bin/jupyter-book build --all $(1) --path-output $(2) 2>&1 | tee $(2).log
@if sed 's/\x1b\[[0-9;]*m//g' $(2).log | grep -qE '(^|: )(ERROR|CRITICAL|SEVERE):'; then \
    echo "!!! jupyter-book reported errors, see $(2).log" >&2; exit 1; fi
@if grep -rlF --include='*.html' -e '$(CURDIR)' $(if $(filter-out /,$(HOME)),-e '$(HOME)/') -e 'absl::InitializeLog' \
    -e 'tf.function retracing' $(2)/_build/html; then \
    echo "!!! the pages above show a path of this machine or TensorFlow noise" >&2; exit 1; fi
$(PY) sfh_ml/_site_check.py $(2)/_build/html
endef

# Chain the runs so that chapter N starts after chapter N-1 has finished, also under make -j.
chain = $(if $(word 2,$(1)),$(eval $(word 2,$(1)): $(word 1,$(1)))$(call chain,$(wordlist 2,$(words $(1)),$(1))))
$(call chain,$(QUICK_RUNS))
$(call chain,$(FULL_RUNS))

$(QUICK_RUNS): $(TEST_OUT)/%.ipynb: book/%.ipynb $(LIB) $(STAMP) | data
	$(call papermill,$<,$@,True,$(TEST_DATA_DIR))

$(FULL_RUNS): $(SRC)/book/%.ipynb: book/%.ipynb $(LIB) $(STAMP) $(FULL_STAMP) | data
	$(call papermill,$<,$@,False,$(DATA_DIR))

$(STAGED): $(SRC)/%: %
	@mkdir -p $(@D)
	cp $< $@

$(TEST_STAGED): $(TEST_SRC)/%: %
	@mkdir -p $(@D)
	cp $< $@

$(TEST_COPIES): $(TEST_SRC)/book/%: $(TEST_OUT)/%
	@mkdir -p $(@D)
	cp $< $@

# ---------------------------------------------------------------------------- test
test: unit-test test-chapters test-book ## Unit tests, every chapter in quick mode (QUICK=True), their HTML

unit-test: venv data ## Unit tests only
	$(PY) -m pytest -q tests

test-chapters: $(QUICK_RUNS) ## Every chapter in quick mode, into _build/test-chapters

test-book: venv $(TEST_STAGED) $(TEST_COPIES) ## The HTML book of the quick-mode chapters, into _build/test-book
	$(call render,$(TEST_SRC),$(BUILD)/test-book)
	@echo "HTML book (quick mode): $(CURDIR)/$(TEST_HTML)/index.html"

# ---------------------------------------------------------------------------- book
chapters: $(FULL_RUNS) $(STAGED) ## Execute every chapter in full (QUICK=False) into _build/src

book: venv data chapters ## Everything: venv, model data, full chapters, then the HTML book
	$(call render,$(SRC),$(BUILD)/book)
	@echo "HTML book: $(CURDIR)/$(HTML)/index.html"

lab: venv ## Work on the chapters interactively in JupyterLab
	$(VENV)/bin/jupyter lab book/

# ---------------------------------------------------------------------------- checks
lint: venv ## ruff check, ruff format --check (code and chapters); chapters without outputs
	$(VENV)/bin/ruff check $(LINT_PATHS)
	$(VENV)/bin/ruff format --check $(LINT_PATHS)
	$(if $(NOTEBOOKS),$(VENV)/bin/nbstripout --verify --keep-id $(NOTEBOOKS),@echo "no notebooks to verify")

benchmark: venv data ## Print synthesis and inference speeds (benchmarks/synthesis.py, inference.py)
	$(PY) benchmarks/synthesis.py
	$(PY) benchmarks/inference.py

# make bench: every benchmark, each writing a JSON record (--json) and its printed lines (*.log) into
# $(BENCH_DIR), then one Markdown report with the machine (benchmarks/report.py). The book's wall time
# is not rerun: the report reads papermill's per-chapter durations from the last `make book` and
# `make test` (_build/src/book, _build/test-chapters). BENCH_QUICK=1: small sizes (a few minutes),
# numbers not to quote. The pPXF comparison's sets and fits are cached in $(BENCH_DIR)/compare_ppxf.
BENCH_QUICK ?= 0
BENCH_DIR := $(BUILD)/bench
BENCH_WORKERS ?= $(shell nproc 2>/dev/null || echo 2)
ifeq ($(BENCH_QUICK),1)
BENCH_SYNTHESIS := --n 1000
BENCH_INFERENCE := --n-infer 1024 --train-steps 2
BENCH_APPLY := --spaxels 2500 --bins none grid:4
BENCH_COMPARE := --n 4 --snr 20 50 --speed-n 256
else
BENCH_SYNTHESIS := --n 20000
BENCH_INFERENCE := --n-infer 8192 --train-steps 8
BENCH_APPLY := --spaxels 40000 --bins none grid:4
BENCH_COMPARE := --n 100 --snr 10 20 50 100 --speed-n 4096
endif
# $(call bench_run,NAME,ARGS): one benchmark, its record and its log.
define bench_run
@echo ">>> benchmarks/$(1).py $(2)"
$(PY) benchmarks/$(1).py $(2) --json $(BENCH_DIR)/$(1).json 2>&1 | tee $(BENCH_DIR)/$(1).log
endef

bench: venv data ## Every benchmark into one report, _build/bench/REPORT.md (BENCH_QUICK=1: small sizes)
	@mkdir -p $(BENCH_DIR)
	@rm -f $(BENCH_DIR)/*.json
	$(call bench_run,synthesis,$(BENCH_SYNTHESIS) --workers $(BENCH_WORKERS))
	$(call bench_run,inference,$(BENCH_INFERENCE))
	$(call bench_run,apply,$(BENCH_APPLY))
	$(call bench_run,compare_ppxf,$(BENCH_COMPARE) --workers $(BENCH_WORKERS) --out $(BENCH_DIR)/compare_ppxf)
	$(PY) benchmarks/report.py --dir $(BENCH_DIR) --book $(SRC)/book --test-chapters $(TEST_OUT) \
	    --out $(BENCH_DIR)/REPORT.md $(if $(filter 1,$(BENCH_QUICK)),--quick)
	@echo "report: $(CURDIR)/$(BENCH_DIR)/REPORT.md"

# ---------------------------------------------------------------------------- cleaning
clean: ## Remove _build and caches (keeps the venv and the model-data cache)
	rm -rf $(BUILD) .pytest_cache .ruff_cache *.egg-info
	find . \( -path ./.git -o -path ./$(VENV) \) -prune -o \
	    \( -name __pycache__ -o -name .ipynb_checkpoints \) -type d -print0 | xargs -0 -r rm -rf

distclean: clean ## clean, and remove the venv too
	rm -rf $(VENV)
