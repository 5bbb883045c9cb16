"""The README's results table is made from results/digits_protocol_a.csv by `make results`;
this keeps the three in step: the file holds exactly the runs the code's sweep defines (their
spec hashes), and the README shows the table that file gives."""

import importlib.util
import sys
from pathlib import Path

TOOL = Path(__file__).parents[1] / "book" / "_tools" / "results_table.py"


def test_readme_table_matches_the_results_file_and_the_code():
    spec = importlib.util.spec_from_file_location("results_table", TOOL)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    module.main(["--check"])  # raises SystemExit with the reason when stale
