"""Execute book chapters (MyST-markdown notebooks) as plain Python, one namespace per chapter.

    python tests/run_chapters.py book/02_jacobian_norm.md [...] [--skip-tag claim] \
        [--param DATASET='"tiny_imagenet"']

Used where a Jupyter kernel is not at hand or not wanted: the CI dry run of every chapter in the
``gpu`` profile on fabricated data (which skips the cells tagged ``claim``: their thresholds
speak of real training, not of four steps on fabricated images), and ``make gpu-check`` on a GPU
machine that has PyTorch but no Jupyter. It needs nothing beyond the package's own dependencies:
the MyST code cells are parsed here, IPython's line magics (``%pip``) become ``pass``,
``myst_nb.glue`` and ``display`` are stubbed when absent, and figures go to matplotlib's Agg
backend. ``--param NAME=EXPR`` runs ``NAME = EXPR`` right after the cell tagged ``parameters``
(papermill's convention), so a chapter can be run on another dataset without editing it. A
failing cell stops its chapter with the chapter name and cell number in the error.
"""

from __future__ import annotations

import argparse
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
        code = compile(source, f"{path.name}, cell {number}", "exec")
        exec(code, namespace)  # noqa: S102 (running our own chapters is the point)
        ran += 1
        if "parameters" in tags:
            for name, expr in (params or {}).items():
                namespace[name] = eval(expr, namespace)  # noqa: S307 (our own command line)
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
                        help="set a parameter after the parameters cell (repeatable)")
    args = parser.parse_args(argv)
    params = dict(p.split("=", 1) for p in args.param)
    os.environ.setdefault("MPLBACKEND", "Agg")
    _stub_notebook_modules()
    for path in args.chapters:
        ran, skipped, seconds = run_chapter(path, set(args.skip_tag), params)
        print(f"{path.name}: {ran} cells ran, {skipped} skipped, {seconds:.1f} s", flush=True)


if __name__ == "__main__":
    main()
