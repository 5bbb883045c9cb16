"""The plain-Python chapter runner (tests/run_chapters.py): parameters set where they are defined."""

from __future__ import annotations

import run_chapters  # tests/ is on sys.path (tests/conftest.py)

CELL = '''from x import y
DATASET = "cifar10" if FAST else "digits"  # a comment
SEEDS = [0,
         1]
K_DATASET = "cifar10" if DATASET.startswith("cifar+") else DATASET'''


def test_set_parameters_replaces_the_assignment_so_derived_values_follow():
    out = run_chapters.set_parameters(CELL, {"DATASET": "'tiny_imagenet'", "SEEDS": "[0]"})
    assert out.split("\n") == ["from x import y", "DATASET = 'tiny_imagenet'", "SEEDS = [0]",
                               'K_DATASET = "cifar10" if DATASET.startswith("cifar+") else DATASET']
    namespace = {}
    exec(out.replace("from x import y", ""), namespace)
    assert namespace["K_DATASET"] == "tiny_imagenet"  # injected after the cell, it was "cifar10"


def test_set_parameters_appends_names_the_cell_does_not_assign():
    out = run_chapters.set_parameters(CELL, {"IMAGES": "8"})
    assert out == CELL + "\nIMAGES = 8"


def test_run_chapter_uses_the_parameters(tmp_path):
    chapter = tmp_path / "c.md"
    chapter.write_text("```{code-cell} ipython3\n:tags: [parameters]\nN = 2\nM = N * 10\n```\n\n"
                       "```{code-cell} ipython3\n:tags: [claim]\nassert False\n```\n\n"
                       "```{code-cell} ipython3\nassert M == 70, M\n```\n")
    assert run_chapters.run_chapter(chapter, {"claim"}, {"N": "7"})[:2] == (2, 1)
