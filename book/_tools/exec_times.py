"""Print how long each chapter took to execute in a Jupyter Book build (``make book`` runs this).

MyST-NB records, per notebook it executed, when and for how long (``exec_data``: the data behind
its ``nb-exec-table`` directive) in the Sphinx environment that the build pickles. This script reads
that record, so it reports the same numbers as the build itself, whatever the log looked like.

    python book/_tools/exec_times.py _build/default [--since POSIX_TIME]

``--since`` marks the chapters executed by this build; the others kept their earlier outputs.
"""

from __future__ import annotations

import argparse
import pickle
import sys
import time
from pathlib import Path


def exec_times(build_dir: Path) -> dict[str, dict]:
    """``{docname: exec_data}`` for every executed notebook of the build in ``build_dir``."""
    env_file = build_dir / "_build" / ".doctrees" / "environment.pickle"
    if not env_file.exists():
        raise FileNotFoundError(f"no Sphinx environment at {env_file}: build the book first")
    with env_file.open("rb") as f:
        env = pickle.load(f)
    metadata = getattr(env, "nb_metadata", {}) or {}
    return {doc: data["exec_data"] for doc, data in sorted(metadata.items())
            if data.get("exec_data")}


def report(build_dir: Path, since: float | None = None) -> str:
    rows = exec_times(build_dir)
    if not rows:
        return "No chapter was executed."
    width = max(len(doc) for doc in rows)
    lines = [f"{'chapter':<{width}}  {'run time':>9}  status"]
    total = 0.0
    for doc, data in rows.items():
        runtime = data.get("runtime") or 0.0
        total += runtime
        if not data.get("succeeded", False):
            status = f"FAILED ({data.get('error') or 'error'})"
        elif since is not None and data.get("mtime", 0) < since:
            status = "not re-executed (unchanged), " + time.strftime(
                "from %Y-%m-%d %H:%M", time.localtime(data["mtime"]))
        else:
            status = "executed"
        lines.append(f"{doc:<{width}}  {runtime:>7.1f} s  {status}")
    lines.append(f"{'total':<{width}}  {total:>7.1f} s")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("build_dir", type=Path, help="the --path-output of jupyter-book build")
    parser.add_argument("--since", type=float, help="POSIX time the build started")
    args = parser.parse_args(argv)
    try:
        print(report(args.build_dir, args.since))
    except FileNotFoundError as error:
        print(error, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
