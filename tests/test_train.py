import pytest
import torch
from torch.utils.data import TensorDataset

from companion.models import SmallCNN
from companion.train import TrainConfig, fit, predict

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
