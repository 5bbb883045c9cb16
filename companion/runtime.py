"""Runtime helpers: which device, how to seed, which profile, where the data lives.

This is the only module that reads the environment; everything else takes its device from its
inputs and its settings from its arguments.

Profiles (``profile()``) say which data and scale a chapter runs at:

- ``"fast"``: ``COMPANION_FAST=1`` (tests, CI): the offline data, tiny runs, seconds each;
- ``"cpu"`` (default): the offline data (``toy2d``, ``digits``) at the book's scale;
- ``"gpu"``: CUDA is present, or ``COMPANION_PROFILE=gpu``: the paper's datasets and schedules.

``COMPANION_PROFILE`` (``fast`` / ``cpu`` / ``gpu``) overrides the choice. ``fast_mode()`` is the
scale on its own: CI runs every chapter in the gpu profile *and* fast mode
(``COMPANION_PROFILE=gpu COMPANION_FAST=1``), on fabricated copies of the paper's datasets.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import torch

FAST_ENV = "COMPANION_FAST"
PROFILE_ENV = "COMPANION_PROFILE"
DATA_ENV = "COMPANION_DATA_DIR"
VERIFY_ENV = "COMPANION_VERIFY"
TEST_LIMIT_ENV = "COMPANION_TEST_LIMIT"
PROFILES = ("fast", "cpu", "gpu")


def device() -> torch.device:
    """The device new tensors and models should live on: CUDA if available, else CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and PyTorch (CPU and all CUDA devices) with ``seed``.

    Returns a fresh ``torch.Generator`` seeded with ``seed`` for code that prefers an explicit
    generator over the global one. Bit-for-bit repeatability on CPU follows; on CUDA some kernels
    stay non-deterministic unless ``torch.use_deterministic_algorithms(True)`` is also set.
    """
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # also seeds every CUDA device
    return torch.Generator().manual_seed(seed)


def fast_mode() -> bool:
    """True when ``COMPANION_FAST`` is set to a true value (1, true, yes, on).

    Fast mode is what tests and CI use: tiny runs that take seconds, with asserts that still mean
    something. Any other value, or the variable unset, means the default (book) scale.
    """
    return _flag(FAST_ENV, False)


def profile() -> str:
    """``"fast"``, ``"cpu"`` or ``"gpu"`` (see the module docstring): ``COMPANION_PROFILE`` if
    set, else ``"fast"`` under ``COMPANION_FAST=1``, else ``"gpu"`` when CUDA is available, else
    ``"cpu"``."""
    value = os.environ.get(PROFILE_ENV, "").strip().lower()
    if value:
        if value not in PROFILES:
            raise ValueError(f"{PROFILE_ENV} must be one of {', '.join(PROFILES)}, got {value!r}")
        return value
    if fast_mode():
        return "fast"
    return "gpu" if torch.cuda.is_available() else "cpu"


def _flag(name: str, default: bool) -> bool:
    value = os.environ.get(name, "").strip().lower()
    if value == "":
        return default
    if value in ("0", "false", "no", "off"):
        return False
    if value in ("1", "true", "yes", "on"):
        return True
    raise ValueError(f"{name} must be 0/1 (or true/false), got {value!r}")


def verify_data() -> bool:
    """Whether ``load_osr`` checks the md5 of SVHN and CIFAR files by default: yes, unless
    ``COMPANION_VERIFY=0`` (set by CI for the tiny datasets it fabricates in these formats)."""
    return _flag(VERIFY_ENV, True)


def test_limit() -> int | None:
    """At most how many test knowns, and as many test unknowns, ``load_osr`` keeps by default:
    ``COMPANION_TEST_LIMIT`` (a positive int), else ``None`` (all of them).

    For CI's dry run of the gpu profile on CPU, where a Jacobian over TinyImageNet's 180
    unknown classes at 64 px would take most of an hour; numbers measured on a limited test set
    are not the benchmark's.
    """
    value = os.environ.get(TEST_LIMIT_ENV, "").strip()
    if value == "":
        return None
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"{TEST_LIMIT_ENV} must be a positive integer, got {value!r}; "
                         "unset it to keep whole test sets")
    return int(value)


def data_dir() -> Path:
    """Root folder for datasets: ``$COMPANION_DATA_DIR`` if set, else ``~/.cache/companion/data``.

    The folder is not created here; loaders create it only when they are asked to download.
    """
    env = os.environ.get(DATA_ENV)
    if env:
        return Path(env).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "companion" / "data"
