"""The cached results files chapter 8 and the README read are made by `make results`
(book/_tools/results_table.py); this keeps them in step with the code: each file holds exactly
the runs its sweep defines (their spec hashes), with exactly the columns a run returns now, and
the README shows the table the Protocol A file gives."""

import dataclasses
import importlib.util
import sys
from pathlib import Path

import pandas as pd
import pytest

TOOL = Path(__file__).parents[1] / "book" / "_tools" / "results_table.py"


@pytest.fixture(scope="module")
def tool():
    spec = importlib.util.spec_from_file_location("results_table", TOOL)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_results_files_and_readme_match_the_code(tool):
    tool.main(["--check"])  # raises SystemExit with the reason when stale


@pytest.mark.parametrize("column", ["auroc_jacobian", "dbi"])
def test_a_file_without_a_column_a_run_returns_is_stale(tool, tmp_path, column):
    protocol = tool.PROTOCOLS[0]
    rows = pd.read_csv(protocol.path).drop(columns=[column])
    rows.to_csv(tmp_path / "old.csv", index=False)
    old = dataclasses.replace(protocol, path=tmp_path / "old.csv")
    tool.stored_rows(old)  # the runs are all there ...
    with pytest.raises(SystemExit, match=f"new: \\['{column}'\\]"):
        tool.check_columns(old)  # ... but not what a run measures now


def test_a_file_with_a_run_missing_or_extra_is_stale(tool, tmp_path):
    protocol = tool.PROTOCOLS[0]
    rows = pd.read_csv(protocol.path)
    rows.iloc[1:].to_csv(tmp_path / "short.csv", index=False)
    with pytest.raises(SystemExit, match="1 missing, 0 not in the sweep"):
        tool.stored_rows(dataclasses.replace(protocol, path=tmp_path / "short.csv"))
    extra = rows.iloc[:1].assign(spec="0123456789ab")
    pd.concat([rows, extra]).to_csv(tmp_path / "long.csv", index=False)
    with pytest.raises(SystemExit, match="0 missing, 1 not in the sweep"):
        tool.stored_rows(dataclasses.replace(protocol, path=tmp_path / "long.csv"))
