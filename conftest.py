"""Let nbval test the book's MyST-markdown notebooks directly.

nbval only collects ``.ipynb`` files. The chapters are kept as jupytext MyST markdown (reviewable
diffs, no outputs in git), so this hook reads each ``book/*.md`` notebook with jupytext and hands
it to nbval's own collector. Run: ``pytest --nbval-lax book`` (the Makefile's ``nbval`` target).
"""

from __future__ import annotations

import types
from pathlib import Path
from unittest import mock

import pytest


def _is_myst_notebook(path: Path) -> bool:
    """A jupytext MyST notebook declares a kernel in its front matter."""
    if path.suffix != ".md":
        return False
    head = path.read_text(encoding="utf-8")[:2000]
    return head.startswith("---") and "kernelspec:" in head


def pytest_collect_file(file_path: Path, parent: pytest.Collector):
    option = parent.config.option
    if not (getattr(option, "nbval", False) or getattr(option, "nbval_lax", False)):
        return None
    if not _is_myst_notebook(file_path):
        return None
    return MySTNotebook.from_parent(parent, path=file_path)


try:
    import jupytext
    import nbval.plugin
except ImportError:  # the unit tests do not need nbval or jupytext
    pass
else:

    class MySTNotebook(nbval.plugin.IPyNbFile):
        """nbval's notebook collector, reading the notebook with jupytext instead of nbformat."""

        def collect(self):
            # nbval calls nbformat.read(path) inside collect(); give it the jupytext reader.
            reader = types.SimpleNamespace(read=lambda path, as_version: jupytext.read(path))
            with mock.patch.object(nbval.plugin, "nbformat", reader):
                return list(super().collect())
