"""The speed benchmarks in benchmarks/ are scripts, not tests: here only their command lines and
table layouts are checked (no timing)."""

import importlib.util
import sys
from pathlib import Path

import pytest
from torch import nn

BENCHMARKS = Path(__file__).parents[1] / "benchmarks"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


jacobian_bench = _load("jacobian")


def test_jacobian_benchmark_arguments(capsys):
    with pytest.raises(SystemExit) as exit_:
        jacobian_bench.main(["--help"])
    assert exit_.value.code == 0
    help_text = capsys.readouterr().out
    for option in ("--device", "--n", "--repeats", "--skip-accuracy"):
        assert option in help_text
    with pytest.raises(SystemExit):
        jacobian_bench.main(["--n", "0"])
    assert "must be a positive integer" in capsys.readouterr().err


def test_jacobian_benchmark_table_layout():
    Case, Row = jacobian_bench.Case, jacobian_bench.Row
    cases = [Case("(a) one", nn.Identity(), (1,), 4, 2), Case("(b) two", nn.Identity(), (1,), 4, 2)]
    rows = {"naive loop": Row(8.0, 0.5, 0.0), "exact": Row(1.0, 4.0, 0.0)}
    table = jacobian_bench.format_table(cases, [(rows, 2.0, 64), (rows, 4.0, 128)]).splitlines()
    assert "(a) one" in table[0] and "(b) two" in table[0]
    exact = next(line for line in table if line.startswith("exact"))
    assert exact.count("8.0x") == 2 and "0.50" in exact and "0.25" in exact
    assert "d_z = 128: floor 4.000 s" in table[-1]
