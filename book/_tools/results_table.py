"""The README's results table, made from a results file: ``make results``.

    python book/_tools/results_table.py [--run] [--check]

``--run`` runs (or resumes) the sweep below into ``results/digits_protocol_a.csv``; without it
the file is only read. The table (mean +- std over splits x seeds) is then written into README.md
between the ``results`` markers, with the command and the commit that produced the file.
``--check`` changes nothing and fails if the file's runs are not exactly the sweep's specs (the
code changed what the sweep means: run ``make results``) or the README's table is not the one the
file gives. ``tests/test_results_table.py`` runs the check in CI.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pandas as pd

from companion.experiments import ResultsFile, grid, summarise, sweep

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "results" / "digits_protocol_a.csv"
README = ROOT / "README.md"
START, END = "<!-- results:start -->", "<!-- results:end -->"
LABELS = ["sce", "ovr", "movr", "movr+aug+wd+ssl"]
COMMAND = ("python -m companion sweep --dataset digits --losses " + ",".join(LABELS)
           + " --splits 0-4 --seeds 0-2 --out results/digits_protocol_a.csv")
COLUMNS = {"accuracy": "accuracy", "auroc_max_logit": "AUROC, max logit",
           "auroc_jacobian": "AUROC, Jacobian norm", "auroc_movr": "AUROC, m-OvR score",
           "jac_gap": "Jacobian-norm gap", "dbi": "DBI"}


def specs() -> list:
    """The runs of the README's table: 4 losses x 5 splits x 3 seeds on digits."""
    return grid(LABELS, datasets="digits", splits=range(5), seeds=range(3))


def table(rows: pd.DataFrame) -> str:
    """Markdown table, one line per label, mean +- std over splits x seeds."""
    summary = summarise(rows, COLUMNS)
    lines = ["| loss | " + " | ".join(COLUMNS.values()) + " | runs |",
             "| --- |" + " --- |" * (len(COLUMNS) + 1)]
    for (_, _, label), r in summary.iterrows():
        digits = lambda m: 2 if m == "jac_gap" else 3  # noqa: E731
        cells = [f"{r[(m, 'mean')]:.{digits(m)}f} ± {r[(m, 'std')]:.{digits(m)}f}"
                 for m in COLUMNS]
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {int(r[('runs', 'count')])} |")
    return "\n".join(lines)


def block(rows: pd.DataFrame, commit: str) -> str:
    return (f"{START}\n**Measured on `digits`** (SmallCNN, 500 SGD steps; mean ± std over 5 splits "
            f"x 3 seeds; made by `make results`, which runs\n`{COMMAND}`,\nat commit {commit}):\n\n"
            f"{table(rows)}\n{END}")


def _rows() -> pd.DataFrame:
    wanted = [s.hash for s in specs()]
    stored = ResultsFile(RESULTS).rows
    missing = [h for h in wanted if h not in stored]
    extra = [h for h in stored if h not in wanted]
    if missing or extra:
        raise SystemExit(f"{RESULTS} does not hold exactly the sweep's runs ({len(missing)} "
                         f"missing, {len(extra)} not in the sweep): run 'make results'")
    return pd.DataFrame([stored[h] for h in wanted])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="book/_tools/results_table.py")
    parser.add_argument("--run", action="store_true", help="run or resume the sweep first")
    parser.add_argument("--check", action="store_true", help="change nothing; fail if stale")
    args = parser.parse_args(argv)
    if args.run:
        sweep(specs(), out_csv=RESULTS)
        # keep exactly this sweep's runs in the file, in sweep order
        ResultsFile.write(RESULTS, _rows().to_dict("records"))
    rows = _rows()
    readme = README.read_text(encoding="utf-8")
    if START not in readme or END not in readme:
        raise SystemExit(f"README.md needs the markers {START} and {END}")
    head, rest = readme.split(START, 1)
    old, tail = rest.split(END, 1)
    old_commit = old.split("at commit ", 1)[-1].split(")", 1)[0] if "at commit " in old else ""
    if args.check:
        if block(rows, old_commit) != START + old + END:
            raise SystemExit("README.md's results table is not the one results/ gives: run "
                             "'make results'")
        print(f"README.md's table matches {RESULTS.relative_to(ROOT)} ({len(rows)} runs)")
        return
    commit = old_commit if not args.run else subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
        text=True).stdout.strip()
    README.write_text(head + block(rows, commit) + tail, encoding="utf-8")
    print(table(rows))


if __name__ == "__main__":
    sys.exit(main())
