# Two commands do everything (see README.md):
#   make book   build the book, executing every notebook on the offline data (default scale)
#   make test   unit tests + every notebook under nbval (fast mode) + a strict book build (fast mode)
# Both create .venv and install the pinned environment on first use.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip
STAMP  := $(VENV)/.installed
NOTEBOOKS := $(wildcard book/[0-9]*.md)  # chapters are numbered; index/bibliography are pages

.PHONY: all install book test unit nbval book-strict colab bench clean

all: book

install: $(STAMP)

# Reinstall whenever the declared environment changes.
$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -c constraints.txt -e ".[book,test]"
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $@

# The book at its default scale; every notebook is executed (execution is forced and strict).
book: install
	$(BIN)/jupyter-book build . --warningiserror --keep-going --path-output _build/default
	@echo
	@echo "Book built: open file://$(CURDIR)/_build/default/_build/html/index.html"

test: unit nbval book-strict

unit: install
	$(BIN)/python -m pytest tests

# The .md notebooks are collected by conftest.py (converted with jupytext); the notebooks' own
# assert cells do the checking, so outputs are not compared (--nbval-lax).
nbval: install
	COMPANION_FAST=1 $(BIN)/python -m pytest --nbval-lax --nbval-current-env -p no:cacheprovider book

book-strict: install
	COMPANION_FAST=1 $(BIN)/jupyter-book build . --warningiserror --keep-going --path-output _build/fast

# Outputless .ipynb copies of the chapters, for Colab and for people who prefer Jupyter's own format.
# They are generated, never committed (see .gitignore).
colab: install
	$(BIN)/jupytext --to ipynb $(NOTEBOOKS)

# Speed of the Jacobian-norm methods (a benchmark, not a test): prints one table of timings and ratios.
bench: install
	$(BIN)/python -m companion jacobian-benchmark

clean:
	rm -rf _build book/*.ipynb
