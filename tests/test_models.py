import math

import pytest
import torch
from torch import nn

from companion.models import (MLP, MODELS, Classifier32, ResNet18, ShiftedSoftplus, SmallCNN,
                              WideResNet, build_model, fold_batchnorm)

# (registry name, constructor kwargs, one input's shape, embed_dim)
CASES = [
    ("mlp", {}, (2,), 16),
    ("small_cnn", {"in_channels": 1}, (1, 8, 8), 64),
    ("small_cnn", {"in_channels": 3, "embed_dim": 16}, (3, 32, 32), 16),
    ("classifier32", {}, (3, 32, 32), 128),
    ("resnet18", {}, (3, 32, 32), 512),
    ("wrn16_4", {}, (3, 32, 32), 256),
]


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# Parameter counts from the layer formulas: a k x k conv has k*k*c_in*c_out weights (+ c_out
# biases), BatchNorm 2c, a linear layer i*o (+ o).
def conv(c_in, c_out, k=3, bias=False):
    return k * k * c_in * c_out + (c_out if bias else 0)


def bn(c):
    return 2 * c


def linear(i, o, bias=True):
    return i * o + (o if bias else 0)


@pytest.mark.parametrize("name, kwargs, shape, embed_dim", CASES)
def test_shapes_and_embed_matches_forward(name, kwargs, shape, embed_dim):
    torch.manual_seed(0)
    model = build_model(name, num_classes=6, **kwargs).eval()
    x = torch.randn(3, *shape)
    z, logits = model(x)
    assert z.shape == (3, embed_dim) and logits.shape == (3, 6)
    assert (model.num_classes, model.embed_dim) == (6, embed_dim)
    torch.testing.assert_close(model.embed(x), z, rtol=0, atol=0)
    torch.testing.assert_close(model.head(z), logits, rtol=0, atol=0)


@pytest.mark.parametrize("name, kwargs, shape, embed_dim", CASES)
def test_samples_are_independent_in_eval_mode(name, kwargs, shape, embed_dim):
    # The per-sample Jacobian (companion.jacobian) relies on this.
    torch.manual_seed(0)
    model = build_model(name, num_classes=4, **kwargs).eval()
    x = torch.randn(3, *shape)
    alone = torch.cat([model.embed(x[i:i + 1]) for i in range(3)])
    torch.testing.assert_close(model.embed(x), alone, rtol=1e-5, atol=1e-6)


def test_mlp_parameter_count():
    expected = linear(2, 64) + linear(64, 64) + linear(64, 16) + linear(16, 10)
    assert n_params(MLP(10)) == expected


def test_small_cnn_parameter_count():
    expected = (conv(1, 32, bias=True) + bn(32) + conv(32, 64, bias=True) + bn(64)
                + conv(64, 128, bias=True) + bn(128) + linear(128, 64) + linear(64, 6))
    assert n_params(SmallCNN(6)) == expected


def test_classifier32_parameter_count_and_layout():
    convs = [conv(3, 64), conv(64, 64), conv(64, 128)] + [conv(128, 128)] * 6
    bns = [bn(64), bn(64)] + [bn(128)] * 7
    expected = sum(convs) + sum(bns) + linear(128, 10, bias=False)
    assert expected == 1_000_384  # ARPL's code also builds a tenth BatchNorm it never uses (+256)
    model = Classifier32(10)
    assert n_params(model) == expected
    strides = [m.stride[0] for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert strides == [1, 1, 2] * 3
    assert sum(isinstance(m, nn.Dropout2d) for m in model.modules()) == 3
    assert {m.negative_slope for m in model.modules() if isinstance(m, nn.LeakyReLU)} == {0.2}


def test_resnet18_parameter_count():
    total, c_in = conv(3, 64) + bn(64), 64
    for c_out in (64, 128, 256, 512):
        first = conv(c_in, c_out) + bn(c_out) + conv(c_out, c_out) + bn(c_out)
        if c_in != c_out:
            first += conv(c_in, c_out, k=1) + bn(c_out)
        total += first + 2 * (conv(c_out, c_out) + bn(c_out))
        c_in = c_out
    total += linear(512, 10)
    assert total == 11_173_962  # the usual figure for CIFAR ResNet-18 with 10 classes
    assert n_params(ResNet18(10)) == total


def test_wrn16_4_parameter_count():
    total, c_in = conv(3, 16), 16
    for c_out in (64, 128, 256):
        for block in range(2):
            total += bn(c_in) + conv(c_in, c_out) + bn(c_out) + conv(c_out, c_out)
            if block == 0:
                total += conv(c_in, c_out, k=1)
            c_in = c_out
    total += bn(256) + linear(256, 10)
    assert total == 2_748_890  # the usual "2.7M" of WRN-16-4 on CIFAR-10
    assert n_params(WideResNet(10)) == total


def test_build_model_by_name_and_error_lists_valid_names():
    assert isinstance(build_model("small_cnn", num_classes=3), SmallCNN)
    assert isinstance(build_model("wrn16_4", num_classes=3), WideResNet)
    assert set(MODELS) == {"mlp", "small_cnn", "classifier32", "resnet18", "wrn16_4"}
    with pytest.raises(ValueError, match="unknown model 'vgg'.*classifier32.*mlp.*resnet18"):
        build_model("vgg", num_classes=3)


def test_constructor_errors():
    with pytest.raises(ValueError, match="unknown activation 'gelu'.*relu.*softplus.*tanh"):
        MLP(3, activation="gelu")
    with pytest.raises(ValueError, match="6n \\+ 4.*got 15"):
        WideResNet(3, depth=15)


@pytest.mark.parametrize("name, shape, folded_left", [
    ("small_cnn", (1, 8, 8), 0), ("classifier32", (3, 32, 32), 0), ("resnet18", (3, 32, 32), 0),
    ("wrn16_4", (3, 32, 32), 7),  # the 6 pre-activation BatchNorms and the final one stay
])
def test_fold_batchnorm_keeps_the_function(name, shape, folded_left):
    torch.manual_seed(0)
    model = build_model(name, num_classes=3)
    model.train()
    model(torch.randn(8, *shape))  # move the running statistics away from their initial values
    model.eval()
    folded = fold_batchnorm(model)
    x = torch.randn(4, *shape)
    torch.testing.assert_close(folded.embed(x), model.embed(x), rtol=1e-4, atol=1e-5)
    assert sum(isinstance(m, nn.BatchNorm2d) for m in folded.modules()) == folded_left
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())  # the original is intact


def test_fold_batchnorm_refuses_training_mode():
    with pytest.raises(ValueError, match="eval mode.*model.eval()"):
        fold_batchnorm(SmallCNN(3).train())


def test_shifted_softplus_passes_through_zero_with_slope_one_half():
    act = ShiftedSoftplus()
    x = torch.tensor([0.0, 1.0, -30.0], requires_grad=True)
    y = act(x)
    expected = torch.tensor([0.0, math.log1p(math.e) - math.log(2.0), -math.log(2.0)])
    torch.testing.assert_close(y.detach(), expected)
    y[0].backward()
    assert x.grad[0].item() == pytest.approx(0.5)
    assert isinstance(MLP(3).features[1], ShiftedSoftplus)  # the default
