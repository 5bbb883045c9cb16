"""Execute book chapters (MyST-markdown notebooks) as plain Python, one namespace per chapter.

    python tests/run_chapters.py book/02_jacobian_norm.md [...] [--skip-tag claim] \
        [--param DATASET='"tiny_imagenet"']

Used where a Jupyter kernel is not at hand or not wanted: the CI dry run of every chapter in the
``gpu`` profile on fabricated data (which skips the cells tagged ``claim``: their thresholds
speak of real training, not of four steps on fabricated images), and ``make gpu-check`` on a GPU
machine that has PyTorch but no Jupyter. It needs nothing beyond the package's own dependencies:
the MyST code cells are parsed here, IPython's line magics (``%pip``) become ``pass``,
``myst_nb.glue`` and ``display`` are stubbed when absent, and figures go to matplotlib's Agg
backend. ``--param NAME=EXPR`` replaces the assignment to ``NAME`` in the cell tagged
``parameters`` by ``NAME = EXPR`` (or appends it to that cell when the cell assigns no ``NAME``),
so a chapter runs on another dataset without editing it, and values the cell derives from
``NAME`` further down (``K_DATASET`` from ``DATASET``) follow it; papermill's injection after the
cell would leave them derived from the default. A failing cell stops its chapter with the chapter
name and cell number in the error.
"""

from __future__ import annotations

import argparse
import ast
import os
import re
import sys
import time
import types
from pathlib import Path

_FENCE = re.compile(r"^```\{code-cell\}")


def code_cells(path: Path) -> list[tuple[list[str], str]]:
    """``(tags, source)`` of every code cell of a MyST notebook, in order."""
    lines = path.read_text(encoding="utf-8").splitlines()
    cells, i = [], 0
    while i < len(lines):
        if not _FENCE.match(lines[i]):
            i += 1
            continue
        i += 1
        tags: list[str] = []
        while i < len(lines) and lines[i].startswith(":"):  # ":tags: [a, b]" option lines
            key, _, value = lines[i][1:].partition(":")
            if key.strip() == "tags":
                tags = [t.strip().strip("'\"") for t in value.strip().strip("[]").split(",")
                        if t.strip()]
            i += 1
        body = []
        while i < len(lines) and lines[i].rstrip() != "```":
            body.append(lines[i])
            i += 1
        i += 1
        source = "\n".join(re.sub(r"^(\s*)[%!].*$", r"\1pass", line) for line in body)
        cells.append((tags, source))
    return cells


def set_parameters(source: str, params: dict[str, str]) -> str:
    """``source`` (a parameters cell) with each top-level ``NAME = ...`` statement of ``params``
    replaced by ``NAME = EXPR``; names it does not assign are appended at its end."""
    lines = source.split("\n")
    spans = {}
    for node in ast.parse(source).body:
        if isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                if isinstance(target, ast.Name) and target.id in params:
                    spans[target.id] = (node.lineno - 1, node.end_lineno)
    for name, (start, end) in sorted(spans.items(), key=lambda item: -item[1][0]):
        lines[start:end] = [f"{name} = {params[name]}"]
    lines += [f"{name} = {expr}" for name, expr in params.items() if name not in spans]
    return "\n".join(lines)


def _stub_notebook_modules() -> None:
    """``myst_nb.glue`` and IPython's ``display`` where Jupyter is not installed."""
    try:
        import myst_nb  # noqa: F401
    except ImportError:
        stub = types.ModuleType("myst_nb")
        stub.glue = lambda name, value, display=True: None
        sys.modules["myst_nb"] = stub


def run_chapter(path: Path, skip_tags: set[str],
                params: dict[str, str] | None = None) -> tuple[int, int, float]:
    """Run one chapter, ``params`` (name -> Python expression) set after its parameters cell;
    returns ``(cells run, cells skipped, seconds)``."""
    import builtins

    import matplotlib
    matplotlib.use("Agg")
    try:
        from IPython.display import display
    except ImportError:
        display = print
    namespace = {"__name__": "__main__", "display": display}
    builtins_display = getattr(builtins, "display", None)
    ran = skipped = 0
    start = time.perf_counter()
    for number, (tags, source) in enumerate(code_cells(path), start=1):
        if skip_tags & set(tags):
            skipped += 1
            continue
        if "parameters" in tags and params:
            source = set_parameters(source, params)
        code = compile(source, f"{path.name}, cell {number}", "exec")
        exec(code, namespace)  # noqa: S102 (running our own chapters is the point)
        ran += 1
        import matplotlib.pyplot as plt
        plt.close("all")
    if builtins_display is not None:
        builtins.display = builtins_display
    return ran, skipped, time.perf_counter() - start


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="tests/run_chapters.py", description=__doc__.split(
        "\n\n")[0])
    parser.add_argument("chapters", nargs="+", type=Path)
    parser.add_argument("--skip-tag", action="append", default=[],
                        help="skip code cells with this tag (repeatable), e.g. claim")
    parser.add_argument("--param", action="append", default=[], metavar="NAME=EXPR",
                        help="set a parameter in the parameters cell (repeatable)")
    args = parser.parse_args(argv)
    params = dict(p.split("=", 1) for p in args.param)
    os.environ.setdefault("MPLBACKEND", "Agg")
    _stub_notebook_modules()
    for path in args.chapters:
        ran, skipped, seconds = run_chapter(path, set(args.skip_tag), params)
        print(f"{path.name}: {ran} cells ran, {skipped} skipped, {seconds:.1f} s", flush=True)


if __name__ == "__main__":
    main()
