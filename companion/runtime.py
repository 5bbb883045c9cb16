"""Runtime helpers: which device, how to seed, how big a run, where the data lives.

These are the only pieces of global configuration in the package; everything else takes its
device from its inputs.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import torch

FAST_ENV = "COMPANION_FAST"
DATA_ENV = "COMPANION_DATA_DIR"


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
    value = os.environ.get(FAST_ENV, "").strip().lower()
    if value in ("", "0", "false", "no", "off"):
        return False
    if value in ("1", "true", "yes", "on"):
        return True
    raise ValueError(f"{FAST_ENV} must be 0/1 (or true/false), got {value!r}")


def data_dir() -> Path:
    """Root folder for datasets: ``$COMPANION_DATA_DIR`` if set, else ``~/.cache/companion/data``.

    The folder is not created here; loaders create it only when they are asked to download.
    """
    env = os.environ.get(DATA_ENV)
    if env:
        return Path(env).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "companion" / "data"
