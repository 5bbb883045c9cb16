"""The cached results files the book reads, and the README's table made from them: ``make results``.

    python book/_tools/results_table.py [--run] [--check]

Each protocol below is a sweep and the file in ``results/`` that holds its rows. ``--run`` runs
(or resumes, by spec hash) every sweep into its file; without it the files are only read. The
table of Protocol A (mean +- std over splits x seeds) is then written into README.md between the
``results`` markers, with the command and the commit that produced the file. ``--check`` changes
nothing and fails if a file is stale: its runs are not exactly the sweep's specs (the code changed
what the sweep means), its columns are not exactly those ``experiments.run`` returns now (the code
changed what a run measures: checked on a two-step run of each protocol's first spec, on 8 test
samples), or the README's table is not the one the file gives. ``tests/test_results_table.py``
runs the check in CI; ``make results`` is the fix for every failure it reports.

Chapter 8 reads the files through ``stored_rows``. A file computed with older code must not be
resumed (its rows would keep the old columns): move it aside before ``--run``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pandas as pd

from companion import RunSpec, runtime
from companion.experiments import ResultsFile, grid, run, summarise, sweep

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
START, END = "<!-- results:start -->", "<!-- results:end -->"
LABELS = ["sce", "ovr", "movr", "movr+aug+wd+ssl"]
COLUMNS = {"accuracy": "accuracy", "auroc_max_logit": "AUROC, max logit",
           "auroc_jacobian": "AUROC, Jacobian norm", "auroc_movr": "AUROC, m-OvR score",
           "jac_gap": "Jacobian-norm gap", "dbi": "DBI"}


@dataclass(frozen=True)
class Protocol:
    """One cached sweep: its runs (``specs()``), its file and the command that makes it."""

    name: str
    path: Path
    specs: Callable[[], list[RunSpec]]
    command: str


def protocol_a_specs() -> list[RunSpec]:
    """Protocol A on digits: 4 losses x 5 splits x 3 seeds (6 known digits, 4 unknown)."""
    return grid(LABELS, datasets="digits", splits=range(5), seeds=range(3))


PROTOCOL_A = Protocol(
    "A", ROOT / "results" / "digits_protocol_a.csv", protocol_a_specs,
    "python -m companion sweep --dataset digits --losses " + ",".join(LABELS)
    + " --splits 0-4 --seeds 0-2 --out results/digits_protocol_a.csv")


OOD_SETS = ["photo_crop", "photo_resize"]
VAL_FRACTION = 0.1


def protocol_b_specs() -> list[RunSpec]:
    """Protocol B on digits: 4 losses x 3 seeds, all ten digits known, each model evaluated on
    both offline OOD sets, 10% of the training digits held out to set rejection thresholds."""
    return grid(LABELS, datasets="digits", seeds=range(3), oods=OOD_SETS,
                val_fraction=VAL_FRACTION)


PROTOCOL_B = Protocol(
    "B", ROOT / "results" / "digits_protocol_b.csv", protocol_b_specs,
    "python -m companion sweep --dataset digits --losses " + ",".join(LABELS)
    + f" --seeds 0-2 --ood {','.join(OOD_SETS)} --val-fraction {VAL_FRACTION}"
    " --out results/digits_protocol_b.csv")
PROTOCOLS = [PROTOCOL_A, PROTOCOL_B]
RESULTS = PROTOCOL_A.path  # the README's table


def stored_rows(protocol: Protocol) -> pd.DataFrame:
    """The protocol's rows from its file, in sweep order; ``SystemExit`` naming the fix when
    the file does not hold exactly the sweep's runs."""
    wanted = [s.hash for s in protocol.specs()]
    if not protocol.path.exists():
        raise SystemExit(f"{protocol.path} does not exist: run 'make results'")
    stored = ResultsFile(protocol.path).rows
    missing = [h for h in wanted if h not in stored]
    extra = [h for h in stored if h not in wanted]
    if missing or extra:
        raise SystemExit(f"{protocol.path} does not hold exactly the sweep's runs "
                         f"({len(missing)} missing, {len(extra)} not in the sweep): run "
                         "'make results'")
    return pd.DataFrame([stored[h] for h in wanted])


def current_columns(protocol: Protocol) -> list[str]:
    """The columns ``experiments.run`` returns now for the protocol's runs, in order: measured
    on its first spec shortened to two steps, with 8 test samples of each kind."""
    first = protocol.specs()[0]
    tiny = first.replace(iterations=2)
    old = os.environ.get(runtime.TEST_LIMIT_ENV)
    os.environ[runtime.TEST_LIMIT_ENV] = "8"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the test-limit warning: intended here
            return list(run(tiny, device="cpu"))
    finally:
        if old is None:
            del os.environ[runtime.TEST_LIMIT_ENV]
        else:
            os.environ[runtime.TEST_LIMIT_ENV] = old


def check_columns(protocol: Protocol) -> None:
    """``SystemExit`` when the file's columns are not exactly those a run returns now."""
    header = pd.read_csv(protocol.path, nrows=0).columns.tolist()
    now = current_columns(protocol)
    if header != now:
        gone = [c for c in header if c not in now]
        new = [c for c in now if c not in header]
        raise SystemExit(f"{protocol.path}'s columns are not those a run returns now "
                         f"(not returned any more: {gone or 'none'}; new: {new or 'none'}; "
                         "else their order): move the file aside and run 'make results'")


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
            f"x 3 seeds; made by `make results`, which runs\n`{PROTOCOL_A.command}`,\nat commit "
            f"{commit}):\n\n{table(rows)}\n{END}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="book/_tools/results_table.py")
    parser.add_argument("--run", action="store_true", help="run or resume the sweeps first")
    parser.add_argument("--check", action="store_true", help="change nothing; fail if stale")
    args = parser.parse_args(argv)
    for protocol in PROTOCOLS:
        if args.run:
            print(f"Protocol {protocol.name}: {protocol.command}", flush=True)
            sweep(protocol.specs(), out_csv=protocol.path)
            # keep exactly this sweep's runs in the file, in sweep order
            ResultsFile.write(protocol.path, stored_rows(protocol).to_dict("records"))
        stored_rows(protocol)
        if args.check:
            check_columns(protocol)
    rows = stored_rows(PROTOCOL_A)
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
        for protocol in PROTOCOLS:
            print(f"{protocol.path.relative_to(ROOT)}: the sweep's {len(protocol.specs())} runs, "
                  "with the columns a run returns now")
        print("README.md's table matches the Protocol A file")
        return
    commit = old_commit if not args.run else subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
        text=True).stdout.strip()
    README.write_text(head + block(rows, commit) + tail, encoding="utf-8")
    print(table(rows))


if __name__ == "__main__":
    sys.exit(main())
