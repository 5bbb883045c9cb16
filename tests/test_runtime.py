import random
from pathlib import Path

import numpy as np
import pytest
import torch

from companion import runtime


def test_device_follows_cuda_availability():
    assert runtime.device().type == ("cuda" if torch.cuda.is_available() else "cpu")


def test_seed_everything_repeats_python_numpy_and_torch():
    def draw():
        generator = runtime.seed_everything(123)
        return (random.random(), np.random.rand(), torch.rand(3).tolist(),
                torch.rand(2, generator=generator).tolist())

    first, second = draw(), draw()
    assert first == second
    runtime.seed_everything(124)
    assert torch.rand(3).tolist() != first[2]


@pytest.mark.parametrize("bad", [-1, 1.5, "3", True])
def test_seed_everything_rejects_bad_seeds(bad):
    with pytest.raises(ValueError, match="seed must be a non-negative int"):
        runtime.seed_everything(bad)


@pytest.mark.parametrize("value, expected", [("1", True), ("true", True), ("YES", True),
                                             ("0", False), ("", False), ("off", False)])
def test_fast_mode_reads_the_environment(monkeypatch, value, expected):
    monkeypatch.setenv("COMPANION_FAST", value)
    assert runtime.fast_mode() is expected


def test_fast_mode_unset_is_false_and_garbage_is_an_error(monkeypatch):
    monkeypatch.delenv("COMPANION_FAST", raising=False)
    assert runtime.fast_mode() is False
    monkeypatch.setenv("COMPANION_FAST", "maybe")
    with pytest.raises(ValueError, match="'maybe'"):
        runtime.fast_mode()


def test_data_dir_env_and_default(monkeypatch, tmp_path):
    monkeypatch.setenv("COMPANION_DATA_DIR", str(tmp_path / "d"))
    assert runtime.data_dir() == tmp_path / "d"
    monkeypatch.delenv("COMPANION_DATA_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert runtime.data_dir() == tmp_path / "cache" / "companion" / "data"
    assert not runtime.data_dir().exists()  # nothing is created until a download asks for it


@pytest.mark.parametrize("env, cuda, expected", [
    ({}, False, "cpu"),
    ({}, True, "gpu"),
    ({"COMPANION_FAST": "1"}, True, "fast"),
    ({"COMPANION_PROFILE": "gpu"}, False, "gpu"),
    ({"COMPANION_PROFILE": "gpu", "COMPANION_FAST": "1"}, False, "gpu"),  # CI's GPU dry run
    ({"COMPANION_PROFILE": "CPU"}, True, "cpu"),
])
def test_profile_precedence(monkeypatch, env, cuda, expected):
    for name in ("COMPANION_FAST", "COMPANION_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    assert runtime.profile() == expected


def test_bad_profile_is_named(monkeypatch):
    monkeypatch.setenv("COMPANION_PROFILE", "tpu")
    with pytest.raises(ValueError, match="COMPANION_PROFILE must be one of fast, cpu, gpu, got 'tpu'"):
        runtime.profile()


def test_verify_data_defaults_to_true(monkeypatch):
    monkeypatch.delenv("COMPANION_VERIFY", raising=False)
    assert runtime.verify_data() is True
    monkeypatch.setenv("COMPANION_VERIFY", "0")
    assert runtime.verify_data() is False
    monkeypatch.setenv("COMPANION_VERIFY", "perhaps")
    with pytest.raises(ValueError, match="COMPANION_VERIFY must be 0/1"):
        runtime.verify_data()


def test_test_limit_reads_a_positive_int(monkeypatch):
    monkeypatch.delenv("COMPANION_TEST_LIMIT", raising=False)
    assert runtime.test_limit() is None
    monkeypatch.setenv("COMPANION_TEST_LIMIT", "24")
    assert runtime.test_limit() == 24
    for bad in ("0", "-3", "ten", "2.5"):
        monkeypatch.setenv("COMPANION_TEST_LIMIT", bad)
        with pytest.raises(ValueError, match=f"COMPANION_TEST_LIMIT must be a positive integer, got '{bad}'"):
            runtime.test_limit()
