# Two commands do everything (see README.md):
#   make book   build the book, executing every notebook on the offline data (default scale)
#   make test   unit tests + every notebook under nbval (fast mode) + a strict book build (fast mode)
#               + that book in headless Chromium + every chapter in the gpu profile on fabricated
#               files + one Colab notebook in a fresh environment
# Both create .venv and install the pinned environment on first use.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip
STAMP  := $(VENV)/.installed
# tiny copies of the paper's datasets in their on-disk formats (make gpu-dry-run)
FABRICATED := _build/fabricated
NOTEBOOKS := $(wildcard book/[0-9]*.md)  # chapters are numbered; index/bibliography are pages

.PHONY: all install book test test-lane-book test-lane-notebooks unit nbval book-strict browser colab colab-branch colab-test gpu-dry-run \
	gpu-dry-run-cifar gpu-dry-run-tiny \
	bench bench-train gpu-check results clean

all: book

install: $(STAMP)

# Reinstall whenever the declared environment changes.
$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -c constraints.txt -e ".[book,test,cluster]"
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $@

# Everything the rendered book depends on: `make book` rebuilds when any of it is newer than the last
# successful build (the stamp), so an edit to companion/ is never left unexecuted.
BOOK_INPUTS := $(wildcard book/*.md book/_tools/*.py _static/*) \
	$(shell find companion -name '*.py' -o -name '*.json') _config.yml _toc.yml references.bib
BOOK_STAMP := _build/default/.built

# The book at its default scale. Execution is forced (_config.yml): every chapter Sphinx reads is
# executed afresh. Sphinx re-reads the chapters whose source changed; any other change (companion/,
# configuration, bibliography, environment) may alter every chapter, so then all are read (--all).
# A failed build drops Sphinx's saved state, so the next one re-reads everything instead of
# trusting it. The table at the end comes from myst-nb's execution records (book/_tools/exec_times.py).
book: $(BOOK_STAMP)
	@echo "Book built: open file://$(CURDIR)/_build/default/_build/html/index.html"

$(BOOK_STAMP): $(STAMP) $(BOOK_INPUTS)
	@all=; for f in $?; do case $$f in book/*.md) ;; *) all=--all ;; esac; done; \
	if [ -n "$$all" ]; then what="all $(words $(NOTEBOOKS)) chapters (README.md gives expected times)"; \
	else what="the chapters changed since the last build"; fi; \
	echo "Building the book at the default scale: executing $$what."; \
	echo "Each chapter prints 'Executing notebook' when it starts and 'Executed notebook in N seconds' when done."; \
	start=$$(date +%s); \
	if $(BIN)/jupyter-book build . $$all --warningiserror --keep-going --path-output _build/default; then \
	  echo; echo "Execution times (total build $$(( $$(date +%s) - start )) s):"; \
	  $(BIN)/python book/_tools/exec_times.py _build/default --since $$start; \
	else \
	  rm -f _build/default/_build/.doctrees/environment.pickle; exit 1; \
	fi
	@touch $@

# Two lanes, one per core, each torch process on one thread (two threads each, on two busy
# cores, ran up to 60x slower here): [strict book build, browser, unit tests, CIFAR+10 dry run,
# Colab notebook] beside [nbval, TinyImageNet dry run], the longest single part. Each lane's
# output is printed whole when the lane ends. The fabricated files are written first, once,
# for both lanes.
test: install $(FABRICATED)/.fabricated
	@echo "make test: two lanes in parallel, about 16 minutes on 2 cores; each prints when it ends."
	OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 $(MAKE) --no-print-directory -j2 --output-sync=target \
	  test-lane-book test-lane-notebooks

test-lane-book: install
	$(MAKE) --no-print-directory book-strict browser unit gpu-dry-run-cifar colab-test

test-lane-notebooks: install
	$(MAKE) --no-print-directory nbval gpu-dry-run-tiny

# The browser and Colab tests need the built book or a fresh environment: they run as their own
# targets below, after the book is built.
unit: install
	$(BIN)/python -m pytest tests -m "not browser and not colab"

# The .md notebooks are collected by conftest.py (converted with jupytext); the notebooks' own
# assert cells do the checking, so outputs are not compared (--nbval-lax).
nbval: install
	COMPANION_FAST=1 $(BIN)/python -m pytest --nbval-lax --nbval-current-env -p no:cacheprovider book

# Always built from scratch (--all): this is a test. The browser test reads its HTML.
book-strict: install
	start=$$(date +%s); \
	COMPANION_FAST=1 $(BIN)/jupyter-book build . --all --warningiserror --keep-going --path-output _build/fast \
	&& $(BIN)/python book/_tools/exec_times.py _build/fast --since $$start

# Every page of the fast build in headless Chromium (Debian's package; .ci/run installs it): formulas
# typeset offline, figures loaded, no error output, theorem boxes, no broken internal link.
# REQUIRE_BROWSER makes a missing build or browser a failure here instead of a skip.
browser: install
	REQUIRE_BROWSER=1 $(BIN)/python -m pytest -p no:cacheprovider -m browser tests/test_browser.py

# Colab notebooks: outputless .ipynb of the chapters in _build/colab/book/ (git-ignored), MyST turned
# into plain Markdown, and an install cell that pins companion to this commit of repository.url.
# colab-branch records them as the next commit of the local branch `colab` (the Colab button's
# branch, see _config.yml); `git push origin colab` publishes them.
colab: install
	$(BIN)/python book/_tools/colab_notebooks.py

colab-branch: install
	$(BIN)/python book/_tools/colab_notebooks.py --commit-branch colab

# One generated notebook run in a fresh venv that has only torch, torchvision and ipykernel (like
# Colab), its install cell pointed at this working tree instead of the repository URL.
colab-test: install
	$(BIN)/python -m pytest -p no:cacheprovider -m colab tests/test_colab.py

# Every chapter in the gpu profile (the paper's datasets, at fast scale) on CPU, on tiny files
# fabricated in each dataset's on-disk format, claim cells skipped: catches class counts, image
# sizes, channels, CIFAR+N's unknowns and TinyImageNet's 200 classes and 64 px before a GPU does.
# Twice: CIFAR+10 (CIFAR-10 knowns, CIFAR-100 unknowns, K = 4) and TinyImageNet (K = 20 of 200,
# 64 px). A Jacobian of classifier32 costs ~10 ms per image and output direction on this CPU, so
# the run is shrunk to its smallest: 16 test knowns and 16 unknowns (COMPANION_TEST_LIMIT), one
# seed, and the chapters' own study sizes set low (DRY_RUN_PARAMS). About 2 + 5 minutes.
DRY_RUN_PARAMS := --param 'SEEDS=[0]' --param IMAGES=8 --param PERTURBATIONS=4 \
	--param 'KS=[1, 2]' --param ESTIMATOR_SEEDS=2 --param LOG_POINTS=2 --param TSNE_POINTS=4
DRY_RUN := COMPANION_PROFILE=gpu COMPANION_FAST=1 COMPANION_VERIFY=0 \
	COMPANION_DATA_DIR=$(FABRICATED) COMPANION_TEST_LIMIT=16 MPLBACKEND=Agg \
	$(BIN)/python tests/run_chapters.py $(NOTEBOOKS) --skip-tag claim $(DRY_RUN_PARAMS)

gpu-dry-run: gpu-dry-run-cifar gpu-dry-run-tiny

$(FABRICATED)/.fabricated: tests/fabricate.py $(STAMP)
	$(BIN)/python tests/fabricate.py $(FABRICATED)

gpu-dry-run-cifar: $(FABRICATED)/.fabricated
	@echo "gpu profile on fabricated CIFAR-10 + CIFAR-100 files, DATASET='cifar+10':"
	$(DRY_RUN) --param DATASET="'cifar+10'"

gpu-dry-run-tiny: $(FABRICATED)/.fabricated
	@echo "gpu profile on fabricated TinyImageNet files, DATASET='tiny_imagenet':"
	$(DRY_RUN) --param DATASET="'tiny_imagenet'"

# Every cached results file the book reads (chapter 8: Protocol A and B on digits) and the README's
# table: runs (or resumes, by spec hash) each sweep into results/ and rewrites the table from the
# Protocol A file, with the command and commit (Protocol A: about 10 minutes on 2 CPU cores from
# scratch; Protocol B adds 12 trainings). Files made by older code: move them aside first.
results: install
	$(BIN)/python book/_tools/results_table.py --run

# Speed of the Jacobian-norm methods (a benchmark, not a test): prints one table of timings and ratios.
bench: install
	$(BIN)/python benchmarks/jacobian.py

# Training throughput of fit against a DataLoader loop (side by side in one run).
bench-train: install
	$(BIN)/python benchmarks/training.py

# On a GPU machine (no internet needed, no venv: the machine's python3 with PyTorch): CUDA tests,
# bf16 and compile, both benchmarks, a chapter in the gpu profile; one table. Under 8 minutes.
GPU_PYTHON ?= python3
gpu-check:
	PYTHONPATH=$(CURDIR) $(GPU_PYTHON) benchmarks/gpu_check.py

clean:
	rm -rf _build book/*.ipynb
