import dataclasses
import random

import numpy as np
import pytest
import torch
from torch.utils.data import TensorDataset

from companion.losses import build_head
from companion.models import SmallCNN
from companion.data import TensorSet
from companion.train import (CheckpointError, EvalCallback, JacobianGapCallback, TrainConfig,
                             TrainingDiverged, augment_batch, check_output_path, fit,
                             load_checkpoint, predict, save_checkpoint)

CPU = torch.device("cpu")


def _toy_images(seed=0, n=96):
    """Two classes of 8x8 images: bright top half vs bright bottom half, plus noise."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 2
    x = 0.1 * torch.randn(n, 1, 8, 8, generator=g)
    x[y == 0, :, :4] += 1.0
    x[y == 1, :, 4:] += 1.0
    return TensorDataset(x, y)


def _weights(model):
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def test_fit_learns_a_separable_problem():
    data = _toy_images()
    torch.manual_seed(0)
    model = SmallCNN(num_classes=2)
    losses = fit(model, data, TrainConfig(iterations=60, batch_size=32), device=CPU, progress=False)
    assert len(losses) == 60 and sum(losses[-10:]) < 0.5 * sum(losses[:10])
    _, logits, labels = predict(model, data, device=CPU)
    assert (logits.argmax(1) == labels).float().mean() == 1.0
    assert not model.training


def test_fit_is_bit_for_bit_repeatable_on_cpu_and_seed_matters():
    """The promise of the module docstring: same seed and thread count, same weights."""
    def run(seed, augment="crop"):
        torch.manual_seed(0)  # same initialisation each time
        model = SmallCNN(num_classes=2)
        fit(model, _toy_images(), TrainConfig(iterations=15, batch_size=16, augment=augment),
            seed=seed, device=CPU, progress=False)
        return _weights(model)

    assert torch.equal(run(1), run(1))
    assert not torch.equal(run(1), run(2))
    assert not torch.equal(run(1), run(1, augment="none"))


def test_tensor_set_and_collated_dataset_train_identically():
    """The device-resident path (a TensorSet, here uint8 images) and the collating path (any
    Dataset yielding the same floats) see the same batches and augmentation draws."""
    images = torch.randint(0, 256, (64, 3, 32, 32), dtype=torch.uint8,
                           generator=torch.Generator().manual_seed(0))
    labels = torch.arange(64) % 2
    resident = TensorSet(images, labels)
    collated = TensorDataset(images.float() / 255, labels)

    def run(dataset):
        torch.manual_seed(0)
        model = SmallCNN(num_classes=2, in_channels=3)
        losses = fit(model, dataset, TrainConfig(iterations=6, batch_size=16,
                                                 augment="crop_flip"),
                     seed=4, device=CPU, progress=False)
        return losses, _weights(model)

    (l1, w1), (l2, w2) = run(resident), run(collated)
    assert l1 == l2 and torch.equal(w1, w2)


def test_predict_shapes():
    model = SmallCNN(num_classes=2, embed_dim=8)
    z, logits, labels = predict(model, _toy_images(n=10), batch_size=4, device=CPU)
    assert z.shape == (10, 8) and logits.shape == (10, 2) and labels.tolist() == [0, 1] * 5


@pytest.mark.parametrize("fields, message", [
    ({"iterations": 0}, "iterations must be a positive integer, got 0"),
    ({"iterations": 2.5}, "iterations must be a positive integer, got 2.5"),
    ({"iterations": True}, "iterations must be a positive integer, got True"),
    ({"iterations": None}, "exactly one of iterations and epochs"),
    ({"epochs": 3}, "exactly one of iterations and epochs"),
    ({"lr": 1e-2, "lr_min": 0.1}, r"lr_min must be a finite number in \[0, lr=0.01\]"),
    ({"lr": 0.0}, "lr must be a finite number > 0, got 0.0"),
    ({"lr": float("inf")}, "lr must be a finite number > 0, got inf"),
    ({"momentum": 1.5}, r"momentum must be in \[0, 1\), got 1.5"),
    ({"momentum": 1.0}, r"momentum must be in \[0, 1\), got 1.0"),
    ({"weight_decay": float("nan")}, "weight_decay must be a finite number >= 0, got nan"),
    ({"weight_decay": -1e-4}, "weight_decay must be a finite number >= 0"),
    ({"ssl_weight": -0.1}, "ssl_weight must be a finite number >= 0"),
    ({"augment": "flip"}, "unknown augment 'flip'; valid: none, crop, crop_flip"),
    ({"amp": "yes"}, "amp must be None"),
])
def test_bad_configs_are_rejected_naming_the_value(fields, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**fields)


def test_epochs_give_whole_passes_of_full_batches():
    assert TrainConfig(iterations=None, epochs=3, batch_size=32).steps(100) == 9
    assert TrainConfig(iterations=7).steps(100) == 7
    losses = fit(SmallCNN(2), _toy_images(), TrainConfig(iterations=None, epochs=2,
                                                        batch_size=32), device=CPU,
                 progress=False)
    assert len(losses) == 2 * (96 // 32)


def test_bad_fit_arguments_are_rejected_before_training():
    with pytest.raises(ValueError, match="batch_size 200 exceeds the training set size 96"):
        fit(SmallCNN(2), _toy_images(), TrainConfig(iterations=1, batch_size=200), device=CPU,
            progress=False)
    with pytest.raises(ValueError, match="augment='crop' needs images"):
        fit(SmallCNN(2), TensorDataset(torch.rand(32, 2), torch.zeros(32, dtype=torch.int64)),
            TrainConfig(iterations=1, batch_size=8, augment="crop"), device=CPU, progress=False)
    with pytest.raises(ValueError, match="seed must be a non-negative integer"):
        fit(SmallCNN(2), _toy_images(), TrainConfig(iterations=1), seed=-1, progress=False)


@pytest.mark.parametrize("fields", [{"lr": 1e6}, {"lr": 50.0, "momentum": 0.99}])
def test_divergence_stops_training_naming_the_step_and_keeps_the_good_checkpoint(tmp_path, fields):
    """A NaN loss must stop training at once: no further steps, no checkpoint written after the
    last finite loss, and an error saying where and why."""
    path = tmp_path / "run.pt"
    torch.manual_seed(0)
    good = fit(SmallCNN(2), _toy_images(), TrainConfig(iterations=4, batch_size=16),
               device=CPU, progress=False, checkpoint=path, checkpoint_every=2)
    saved = load_checkpoint(path)
    torch.manual_seed(0)
    with pytest.raises(TrainingDiverged, match=r"at step \d+ of 60 .*lr=") as err:
        fit(SmallCNN(2), _toy_images(), TrainConfig(iterations=60, batch_size=16, **fields),
            device=CPU, progress=False, checkpoint=tmp_path / "bad.pt", checkpoint_every=1)
    assert "smaller lr" in str(err.value) and len(good) == 4
    step = int(str(err.value).split("at step ")[1].split()[0])
    if (tmp_path / "bad.pt").exists():  # the last checkpoint is from before the divergence
        bad_state = load_checkpoint(tmp_path / "bad.pt")
        assert bad_state["step"] == step - 1
        assert all(torch.isfinite(v).all() for v in bad_state["model"].values()
                   if v.is_floating_point())
    assert all(torch.equal(saved["model"][k], v) for k, v in load_checkpoint(path)["model"].items())


def test_output_paths_are_checked_before_training(tmp_path):
    a_file = tmp_path / "file"
    a_file.write_text("x")
    with pytest.raises(ValueError, match="is a file, not a folder"):
        check_output_path(a_file / "x.pt")
    with pytest.raises(ValueError, match="is a folder; give a file name"):
        check_output_path(tmp_path)
    calls = []
    with pytest.raises(ValueError, match="is a folder"):
        fit(SmallCNN(2), _toy_images(), TrainConfig(iterations=5, batch_size=16), device=CPU,
            progress=False, checkpoint=tmp_path, callbacks=[lambda s, m: calls.append(s) or {}],
            log_every=1)
    assert calls == []  # refused before the first step
    assert check_output_path(tmp_path / "new" / "deeper" / "x.pt").parent.is_dir()


def test_stale_temp_files_of_a_killed_write_are_removed(tmp_path):
    path = tmp_path / "run.pt"
    stale = tmp_path / ".run.pt.abc123.tmp"
    stale.write_bytes(b"half a checkpoint")
    other = tmp_path / ".other.pt.abc.tmp"
    other.write_bytes(b"someone else's")
    save_checkpoint({"w": torch.ones(2)}, path)
    assert not stale.exists() and other.exists() and load_checkpoint(path)["w"].sum() == 2


# --- head losses, augmentation, callbacks, checkpoints ---------------------------------------



def test_fit_trains_with_the_heads_loss():
    torch.manual_seed(0)
    model = SmallCNN(num_classes=2)
    model.head = build_head("movr", model.embed_dim, 2)
    data = _toy_images()
    x, y = data.tensors
    before = model.head.loss(model.eval().embed(x), y).loss.item()
    losses = fit(model, data, TrainConfig(iterations=40, batch_size=32, lr=0.02), device=CPU,
                 progress=False)
    after = model.head.loss(model.embed(x), y).loss.item()
    # the logged values are m-OvR losses (summed over K binary terms), not cross-entropies
    assert abs(losses[0] - before) < 0.5 * before and after < 0.5 * before


def test_augmentation_shapes_and_ranges():
    g = torch.Generator().manual_seed(0)
    digits = torch.rand(64, 1, 8, 8)
    out = augment_batch(digits, "crop", g)
    assert out.shape == digits.shape and out.min() >= 0 and out.max() <= digits.max()
    assert not torch.equal(out, digits)
    # a shift by at most one pixel: the interior 6x6 of some shifted copy matches the image
    for img, aug in zip(digits, out):
        assert any(torch.equal(aug[:, 1:7, 1:7], img[:, 1 + dy:7 + dy, 1 + dx:7 + dx])
                   for dy in (-1, 0, 1) for dx in (-1, 0, 1))
    cifar = torch.rand(32, 3, 32, 32)
    out = augment_batch(cifar, "crop_flip", g)
    assert out.shape == cifar.shape and out.min() >= 0 and out.max() <= 1
    # zero padding shows up as zero rows/columns at the border of shifted images
    assert (out == 0).any() and not torch.equal(out, cifar)
    # crop without flip: every image is its own shifted copy (4-pixel padding at 32x32)
    out = augment_batch(cifar, "crop", g)
    for img, aug in zip(cifar, out):
        assert any(torch.equal(aug[:, 4:28, 4:28], img[:, 4 + dy:28 + dy, 4 + dx:28 + dx])
                   for dy in range(-4, 5) for dx in range(-4, 5))
    assert augment_batch(cifar, "none", g) is cifar
    with pytest.raises(ValueError, match="needs images"):
        augment_batch(torch.randn(10, 2), "crop", g)


class _Stop(Exception):
    pass


def _stop_at(step_to_stop):
    def callback(step, model):
        if step == step_to_stop:
            raise _Stop
        return {}
    return callback


def _state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_resume_ends_with_exactly_the_uninterrupted_weights(tmp_path):
    """Interrupt at step 16 (last checkpoint: 14), resume, compare with one 20-step run.

    Augmentation and rotation SSL are on, so every random state (data order, crops) and the
    SSL classifier must survive the checkpoint; SmallCNN's BatchNorm buffers are compared too.
    """
    config = TrainConfig(iterations=20, batch_size=16, ssl_weight=0.1, augment="crop")
    saving = dict(checkpoint=tmp_path / "run.pt", checkpoint_every=7, log_every=4)

    def new_model():
        torch.manual_seed(0)
        return SmallCNN(num_classes=2)

    reference = new_model()
    ref_losses = fit(reference, _toy_images(), config, seed=3, device=CPU, progress=False)

    model = new_model()
    with pytest.raises(_Stop):
        fit(model, _toy_images(), config, seed=3, device=CPU, progress=False,
            callbacks=[_stop_at(16)], **saving)
    assert load_checkpoint(tmp_path / "run.pt")["step"] == 14
    # perturb global RNGs: resuming must restore them, not rely on them
    torch.manual_seed(123), np.random.seed(123), random.seed(123)
    model = new_model()
    losses = fit(model, _toy_images(), config, seed=3, device=CPU, progress=False, resume=True,
                 **saving)
    assert losses == ref_losses
    ref_state, state = _state(reference), _state(model)
    assert ref_state.keys() == state.keys()
    assert all(torch.equal(ref_state[k], state[k]) for k in state)
    assert load_checkpoint(tmp_path / "run.pt")["step"] == 20
    assert [p.name for p in tmp_path.iterdir()] == ["run.pt"]  # no temp files left


def test_checkpoint_loads_with_weights_only(tmp_path):
    path = tmp_path / "ckpt.pt"
    fit(SmallCNN(2), _toy_images(), TrainConfig(iterations=3, batch_size=16), device=CPU,
        progress=False, checkpoint=path, checkpoint_extra={"note": "kept"})
    state = torch.load(path, weights_only=True)
    assert state["step"] == 3 and state["config"]["iterations"] == 3 and state["note"] == "kept"
    assert set(state["rng"]) == {"plan", "torch", "cuda", "numpy", "python"}


def test_resume_rejects_a_different_config(tmp_path):
    path = tmp_path / "ckpt.pt"
    fit(SmallCNN(2), _toy_images(), TrainConfig(iterations=3, batch_size=16), device=CPU,
        progress=False, checkpoint=path)
    with pytest.raises(ValueError, match="different run: lr=0.05 there vs 0.1 now"):
        fit(SmallCNN(2), _toy_images(), TrainConfig(iterations=3, batch_size=16, lr=0.1),
            device=CPU, progress=False, checkpoint=path, resume=True)
    with pytest.raises(ValueError, match="different run: seed=0 there vs 1 now"):
        fit(SmallCNN(2), _toy_images(), TrainConfig(iterations=3, batch_size=16), seed=1,
            device=CPU, progress=False, checkpoint=path, resume=True)


def test_corrupt_or_truncated_checkpoints_name_the_file(tmp_path):
    good = tmp_path / "good.pt"
    save_checkpoint({"w": torch.arange(1000.0)}, good)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[:300])
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(np.random.default_rng(0).bytes(2000))
    for path in (truncated, garbage):
        with pytest.raises(CheckpointError, match=f"cannot read checkpoint {path}"):
            load_checkpoint(path)
    with pytest.raises(FileNotFoundError, match="no checkpoint at"):
        load_checkpoint(tmp_path / "missing.pt")
    assert torch.equal(load_checkpoint(good)["w"], torch.arange(1000.0))


def test_callbacks_log_in_eval_mode_into_history():
    data = _toy_images()
    x, _ = data.tensors
    unknown = TensorDataset(torch.rand(20, 1, 8, 8), -torch.ones(20, dtype=torch.int64))
    modes = []

    def spy(step, model):
        modes.append(model.training)
        return {"spy": float(step)}

    history = []
    model = SmallCNN(2)
    fit(model, data, TrainConfig(iterations=6, batch_size=16), device=CPU, log_every=3,
        progress=False, history=history,
        callbacks=[spy, JacobianGapCallback(x[:16], unknown.tensors[0][:16]),
                   EvalCallback(data, unknown)])
    assert modes == [False, False, False]
    assert [row["step"] for row in history] == [0, 3, 6]
    row = history[-1]
    assert row["jac_gap"] == pytest.approx(row["jac_unknown"] - row["jac_known"])
    assert row["jac_known"] > 0 and row["dbi"] > 0
    assert 0 <= row["accuracy"] <= 1 and 0 <= row["auroc"] <= 1
