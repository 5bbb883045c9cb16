"""Every chapter ends with a summary and exercises for coursework (issue 14, item 7).

The solutions are code cells tagged ``hide-cell`` (collapsed in the book, and in Colab by
book/_tools/colab_notebooks.py). A solution that ends in ``assert`` is checked wherever the
chapter runs: by nbval and the strict book build in fast mode, and by tests/run_chapters.py.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import run_chapters  # tests/ is on sys.path (tests/conftest.py)

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = sorted((ROOT / "book").glob("[0-9]*.md"))


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.stem)
def test_chapter_ends_with_a_summary_and_exercises(chapter):
    text = chapter.read_text(encoding="utf-8")
    headings = re.findall(r"^## (.+)$", text, re.M)
    assert headings[-2:] == ["Summary", "Exercises"], headings[-2:]
    summary = text[text.index("\n## Summary\n"):text.index("\n## Exercises\n")]
    assert "{glue:text}`" in summary, "the summary quotes no measured number (glue)"
    exercises = re.findall(r"^\*\*Exercise \d+\.\d+ ", text, re.M)
    assert 2 <= len(exercises) <= 3, exercises


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.stem)
def test_solutions_are_collapsed_and_one_is_checked(chapter):
    text = chapter.read_text(encoding="utf-8")
    exercises_part = text[text.index("\n## Exercises\n"):]
    solutions = [source for tags, source in run_chapters.code_cells(chapter)
                 if "hide-cell" in tags and source in exercises_part]
    dropdowns = exercises_part.count(":class: dropdown")
    exercises = len(re.findall(r"^\*\*Exercise ", exercises_part, re.M))
    assert len(solutions) + dropdowns == exercises, (len(solutions), dropdowns, exercises)
    assert any(re.search(r"^assert ", s, re.M) for s in solutions), "no solution asserts anything"
