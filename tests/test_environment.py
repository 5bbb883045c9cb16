"""environment.yml (conda / Binder) must describe the environment that pyproject.toml declares."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

tomllib = pytest.importorskip("tomllib")  # Python >= 3.11

ROOT = Path(__file__).resolve().parents[1]


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[; ]", requirement, maxsplit=1)[0].lower()


def _requirements() -> tuple[dict[str, str], dict[str, str], dict[str, str]]:
    """(pyproject deps + extras, constraints pins, environment.yml pip entries), by package name."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        declared += extra
    pins = [line.split("#")[0].strip() for line in (ROOT / "constraints.txt").read_text().splitlines()]
    conda = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in conda["dependencies"] if isinstance(d, dict))
    as_dict = lambda reqs: {_name(r): r.replace(" ", "") for r in reqs if r and not r.startswith("-")}
    return as_dict(declared), as_dict(pins), as_dict(pip_section)


def test_environment_lists_exactly_the_declared_packages():
    declared, _, conda = _requirements()
    assert set(conda) == set(declared), (
        f"only in environment.yml: {sorted(set(conda) - set(declared))}; "
        f"only in pyproject.toml: {sorted(set(declared) - set(conda))}")


def test_environment_uses_the_pin_or_the_declared_bound():
    declared, pins, conda = _requirements()
    for name, spec in conda.items():
        expected = pins.get(name, declared[name])
        assert spec == expected, f"{name}: environment.yml says {spec!r}, expected {expected!r}"


def test_every_pin_constrains_a_declared_package():
    declared, pins, _ = _requirements()
    assert set(pins) <= set(declared), f"pins for undeclared packages: {set(pins) - set(declared)}"


def test_python_bound_and_package_install_agree():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    conda = yaml.safe_load((ROOT / "environment.yml").read_text())["dependencies"]
    assert f"python{project['requires-python']}" in conda
    pip_section = next(d["pip"] for d in conda if isinstance(d, dict))
    assert "-e ." in pip_section, "environment.yml must install the companion package itself"
