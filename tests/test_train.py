import dataclasses
import random

import numpy as np
import pytest
import torch
from torch.utils.data import TensorDataset

from companion.losses import build_head
from companion.models import SmallCNN
from companion.train import (CheckpointError, EvalCallback, JacobianGapCallback, TrainConfig,
                             augment_batch, fit, load_checkpoint, predict, save_checkpoint)

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
    def run(seed):
        torch.manual_seed(0)  # same initialisation each time
        model = SmallCNN(num_classes=2)
        fit(model, _toy_images(), TrainConfig(iterations=15, batch_size=16, seed=seed),
            device=CPU, progress=False)
        return _weights(model)

    assert torch.equal(run(1), run(1))
    assert not torch.equal(run(1), run(2))


def test_predict_shapes():
    model = SmallCNN(num_classes=2, embed_dim=8)
    z, logits, labels = predict(model, _toy_images(n=10), batch_size=4, device=CPU)
    assert z.shape == (10, 8) and logits.shape == (10, 2) and labels.tolist() == [0, 1] * 5


def test_bad_configs_are_rejected():
    with pytest.raises(ValueError, match="iterations must be >= 1, got 0"):
        TrainConfig(iterations=0)
    with pytest.raises(ValueError, match="lr_min <= lr"):
        TrainConfig(lr=0.01, lr_min=0.1)
    with pytest.raises(ValueError, match="batch_size 200 exceeds the training set size 96"):
        fit(SmallCNN(2), _toy_images(), TrainConfig(iterations=1, batch_size=200), device=CPU,
            progress=False)


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
    out = augment_batch(digits, g)
    assert out.shape == digits.shape and out.min() >= 0 and out.max() <= digits.max()
    assert not torch.equal(out, digits)
    # a shift by at most one pixel: the interior 6x6 of some shifted copy matches the image
    for img, aug in zip(digits, out):
        assert any(torch.equal(aug[:, 1:7, 1:7], img[:, 1 + dy:7 + dy, 1 + dx:7 + dx])
                   for dy in (-1, 0, 1) for dx in (-1, 0, 1))
    cifar = torch.rand(32, 3, 32, 32)
    out = augment_batch(cifar, g)
    assert out.shape == cifar.shape and out.min() >= 0 and out.max() <= 1
    # zero padding shows up as zero rows/columns at the border of shifted images
    assert (out == 0).any() and not torch.equal(out, cifar)
    points = torch.randn(10, 2)
    assert augment_batch(points, g) is points
    with pytest.raises(ValueError, match="unknown augment 'flip'; valid: auto, none"):
        TrainConfig(augment="flip")


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
    config = TrainConfig(iterations=20, batch_size=16, seed=3, ssl_weight=0.1,
                         checkpoint_every=7, log_every=4,
                         checkpoint_path=str(tmp_path / "run.pt"))

    def new_model():
        torch.manual_seed(0)
        return SmallCNN(num_classes=2)

    reference = new_model()
    ref_losses = fit(reference, _toy_images(), TrainConfig(
        iterations=20, batch_size=16, seed=3, ssl_weight=0.1), device=CPU, progress=False)

    model = new_model()
    with pytest.raises(_Stop):
        fit(model, _toy_images(), config, device=CPU, progress=False, callbacks=[_stop_at(16)])
    assert load_checkpoint(tmp_path / "run.pt")["step"] == 14
    # perturb global RNGs: resuming must restore them, not rely on them
    torch.manual_seed(123), np.random.seed(123), random.seed(123)
    model = new_model()
    losses = fit(model, _toy_images(), dataclasses.replace(config, resume=True), device=CPU,
                 progress=False)
    assert losses == ref_losses
    ref_state, state = _state(reference), _state(model)
    assert ref_state.keys() == state.keys()
    assert all(torch.equal(ref_state[k], state[k]) for k in state)
    assert load_checkpoint(tmp_path / "run.pt")["step"] == 20
    assert [p.name for p in tmp_path.iterdir()] == ["run.pt"]  # no temp files left


def test_checkpoint_loads_with_weights_only(tmp_path):
    path = tmp_path / "ckpt.pt"
    fit(SmallCNN(2), _toy_images(), TrainConfig(iterations=3, batch_size=16,
                                                 checkpoint_path=str(path)),
        device=CPU, progress=False)
    state = torch.load(path, weights_only=True)
    assert state["step"] == 3 and state["config"]["iterations"] == 3
    assert set(state["rng"]) == {"order", "torch", "cuda", "numpy", "python"}


def test_resume_rejects_a_different_config(tmp_path):
    path = str(tmp_path / "ckpt.pt")
    fit(SmallCNN(2), _toy_images(), TrainConfig(iterations=3, batch_size=16,
                                                 checkpoint_path=path), device=CPU, progress=False)
    with pytest.raises(ValueError, match="different config: lr=0.05 there vs 0.1 now"):
        fit(SmallCNN(2), _toy_images(), TrainConfig(iterations=3, batch_size=16, lr=0.1,
                                                     checkpoint_path=path, resume=True),
            device=CPU, progress=False)


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
    fit(model, data, TrainConfig(iterations=6, batch_size=16, log_every=3), device=CPU,
        progress=False, history=history,
        callbacks=[spy, JacobianGapCallback(x[:16], unknown.tensors[0][:16]),
                   EvalCallback(data, unknown)])
    assert modes == [False, False]
    assert [row["step"] for row in history] == [3, 6]
    row = history[-1]
    assert row["jac_gap"] == pytest.approx(row["jac_unknown"] - row["jac_known"])
    assert row["jac_known"] > 0 and row["dbi"] > 0
    assert 0 <= row["accuracy"] <= 1 and 0 <= row["auroc"] <= 1


def test_paper_presets():
    vgg = TrainConfig.paper_vgg32()
    assert (vgg.iterations, vgg.batch_size, vgg.lr, vgg.lr_min, vgg.momentum) == \
        (20_000, 128, 0.1, 1e-5, 0.9)
    resnet = TrainConfig.paper_resnet18(train_size=30_000, seed=2)
    assert resnet.iterations == 200 * (30_000 // 128) and (resnet.lr, resnet.lr_min) == (0.06, 0)
    assert resnet.seed == 2
