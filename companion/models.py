"""Backbones with one interface.

Every model maps a batch of inputs ``x`` of shape ``(N, *input_shape)`` to

- ``model.embed(x)``: the representation ``z = f(x)``, shape ``(N, embed_dim)`` -- the function
  whose input Jacobian ``df/dx`` the book studies;
- ``model(x)``: the pair ``(z, logits)``, logits of shape ``(N, num_classes)`` from a linear head
  on ``z``.

and exposes ``num_classes`` and ``embed_dim``. ``build_model(name, ...)`` builds one by name:

================ ================ ========= ================================================
name             one input        embed_dim what
================ ================ ========= ================================================
``mlp``          ``(2,)``         16        2 -> 64 -> 64 -> embed_dim, softplus (toy2d)
``small_cnn``    ``(C, H, W)``    64        three 3x3 conv-BN-ReLU layers (digits)
``classifier32`` ``(3, 32, 32)``  128       VGG-style net of Neal et al. 2018 (ARPL, Vaze)
``resnet18``     ``(3, 32, 32)``  512       ResNet-18, 3x3 stride-1 stem, no max-pool
``wrn16_4``      ``(3, 32, 32)``  256       Wide ResNet 16-4 (Zagoruyko & Komodakis 2016)
================ ================ ========= ================================================

All but the MLP contain BatchNorm (and classifier32 Dropout): call ``model.eval()`` before
computing Jacobians or scores, or every sample's output depends on the rest of its batch.
``fold_batchnorm(model)`` then gives the same function with each BatchNorm that follows a conv
folded into it: fewer layers to differentiate through, so Jacobian norms cost less.
"""

from __future__ import annotations

import copy
import math

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval


class _Backbone(nn.Module):
    """Shared plumbing: ``embed`` is the subclass's ``features``, ``forward`` adds the head."""

    num_classes: int
    embed_dim: int
    features: nn.Module
    head: nn.Linear

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Representation ``z = f(x)``: ``(N, *input_shape) -> (N, embed_dim)``."""
        return self.features(x)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(z, logits)`` with shapes ``(N, embed_dim)`` and ``(N, num_classes)``."""
        z = self.embed(x)
        return z, self.head(z)


class ShiftedSoftplus(nn.Softplus):
    """``softplus(x) - log 2``: softplus moved down to pass through 0 (as in SchNet)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x) - math.log(2.0)


class MLP(_Backbone):
    """A small MLP for 2-D inputs (``toy2d``): ``in_features -> hidden -> hidden -> embed_dim``.

    Shifted softplus by default: smooth, so Jacobian-norm heat maps over the plane are continuous
    (a ReLU net's Jacobian is piecewise constant and jumps at the borders of its linear regions),
    and non-saturating like ReLU, so norms far from the data are not flattened to zero the way
    ``tanh`` would flatten them. The shift matters: plain softplus outputs about ``log 2`` for
    small inputs, so an untrained MLP maps the whole plane to nearly one direction, and cosine
    heads at ``T = 32`` (OvR, m-OvR) then stall on a plateau -- m-OvR failed to train on 4 of 6
    toy2d seeds with plain softplus and on none with the shifted one (1000 steps, lr 0.05).
    ``activation`` may be ``"shifted_softplus"``, ``"softplus"``, ``"relu"`` or ``"tanh"``.
    """

    ACTIVATIONS = {"shifted_softplus": ShiftedSoftplus, "softplus": nn.Softplus,
                   "relu": nn.ReLU, "tanh": nn.Tanh}

    def __init__(self, num_classes: int, in_features: int = 2, hidden: int = 64,
                 embed_dim: int = 16, activation: str = "shifted_softplus"):
        super().__init__()
        if activation not in self.ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; valid: "
                             f"{', '.join(sorted(self.ACTIVATIONS))}")
        act = self.ACTIVATIONS[activation]
        self.num_classes, self.embed_dim = num_classes, embed_dim
        self.features = nn.Sequential(
            nn.Linear(in_features, hidden), act(),
            nn.Linear(hidden, hidden), act(),
            nn.Linear(hidden, embed_dim),
        )
        self.head = nn.Linear(embed_dim, num_classes)


class SmallCNN(_Backbone):
    """A small ReLU CNN for little images: 8x8 ``digits`` (1 channel) or any 32x32 input.

    Three 3x3 convolutions (32, 64, 128 channels), each followed by BatchNorm and ReLU, one 2x2
    max-pool, global average pooling (so any spatial size works) and a linear layer to the
    embedding. BatchNorm is there because without it SGD sits on a plateau at chance level for
    a few hundred steps on ``digits`` (measured), which short CPU runs cannot afford; like every
    BatchNorm model, it must be in ``eval()`` mode for Jacobians and scores.
    """

    def __init__(self, num_classes: int, in_channels: int = 1, embed_dim: int = 64):
        super().__init__()
        self.num_classes, self.embed_dim = num_classes, embed_dim
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
            nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(64, 128, 3, padding=1), nn.BatchNorm2d(128), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )
        self.to_embedding = nn.Linear(128, embed_dim)
        self.head = nn.Linear(embed_dim, num_classes)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Representation ``z = f(x)``: ``(N, C, H, W) -> (N, embed_dim)``."""
        return self.to_embedding(self.features(x))


def _conv_bn_lrelu(c_in: int, c_out: int, stride: int) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), nn.BatchNorm2d(c_out),
            nn.LeakyReLU(0.2)]


class Classifier32(_Backbone):
    """The 9-layer VGG-style network of Neal et al. 2018, as used by ARPL and Vaze et al. 2022.

    Three stages of three 3x3 conv -> BatchNorm -> LeakyReLU(0.2) layers (64, 64, 128 | 128 x 3 |
    128 x 3 channels); the last conv of each stage has stride 2 (32 -> 16 -> 8 -> 4 pixels).
    Dropout2d(0.2) precedes each stage, global average pooling gives the 128-d embedding, and the
    head is linear without bias. Initialisation as in those code bases: conv weights N(0, 0.05^2),
    BatchNorm scales N(1, 0.02^2) and shifts 0.
    """

    def __init__(self, num_classes: int, in_channels: int = 3, dropout: float = 0.2):
        super().__init__()
        self.num_classes, self.embed_dim = num_classes, 128
        layers: list[nn.Module] = []
        widths = [(in_channels, 64), (64, 64), (64, 128)] + [(128, 128)] * 6
        for i, (c_in, c_out) in enumerate(widths):
            if i % 3 == 0:
                layers.append(nn.Dropout2d(dropout))
            layers += _conv_bn_lrelu(c_in, c_out, stride=2 if i % 3 == 2 else 1)
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(128, num_classes, bias=False)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, 0.0, 0.05)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.normal_(m.weight, 1.0, 0.02)
                nn.init.zeros_(m.bias)


class _BasicBlock(nn.Module):
    """ResNet basic block: two 3x3 conv-BN layers plus an identity or 1x1 conv-BN shortcut."""

    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(),
            nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False), nn.BatchNorm2d(c_out),
        )
        self.shortcut = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False),
                                          nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.body(x) + self.shortcut(x))


class ResNet18(_Backbone):
    """ResNet-18 (He et al. 2016) for 32x32 inputs: the ImageNet 7x7 stride-2 stem and max-pool
    are replaced by one 3x3 stride-1 conv, as usual on CIFAR. Four stages of two basic blocks
    (64, 128, 256, 512 channels, strides 1, 2, 2, 2); the embedding is the pooled 512-d feature."""

    def __init__(self, num_classes: int, in_channels: int = 3):
        super().__init__()
        self.num_classes, self.embed_dim = num_classes, 512
        layers: list[nn.Module] = [nn.Conv2d(in_channels, 64, 3, 1, 1, bias=False),
                                   nn.BatchNorm2d(64), nn.ReLU()]
        c_in = 64
        for c_out, stride in [(64, 1), (128, 2), (256, 2), (512, 2)]:
            layers += [_BasicBlock(c_in, c_out, stride), _BasicBlock(c_out, c_out, 1)]
            c_in = c_out
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(512, num_classes)


class _WideBlock(nn.Module):
    """Pre-activation wide block: BN-ReLU-conv3x3-BN-ReLU-(dropout)-conv3x3, plus a shortcut
    (identity, or a 1x1 conv on the pre-activated input when the shape changes)."""

    def __init__(self, c_in: int, c_out: int, stride: int, dropout: float):
        super().__init__()
        self.pre = nn.Sequential(nn.BatchNorm2d(c_in), nn.ReLU())
        self.body = nn.Sequential(
            nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False),
            nn.BatchNorm2d(c_out), nn.ReLU(), nn.Dropout(dropout),
            nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False),
        )
        self.project = None
        if stride != 1 or c_in != c_out:
            self.project = nn.Conv2d(c_in, c_out, 1, stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.pre(x)
        return self.body(a) + (x if self.project is None else self.project(a))


class WideResNet(_Backbone):
    """Wide ResNet WRN-depth-width (Zagoruyko & Komodakis 2016), WRN-16-4 by default.

    A 3x3 conv to 16 channels, three stages of ``(depth - 4) / 6`` pre-activation blocks with
    ``16, 32, 64`` times ``width`` channels (strides 1, 2, 2), then BN-ReLU and global average
    pooling: the embedding has ``64 * width`` dimensions (256 for WRN-16-4). ``dropout`` is the
    rate inside each block (0 by default).
    """

    def __init__(self, num_classes: int, depth: int = 16, width: int = 4, in_channels: int = 3,
                 dropout: float = 0.0):
        super().__init__()
        if depth < 10 or (depth - 4) % 6:
            raise ValueError(f"WRN depth must be 6n + 4 with n >= 1, got {depth}")
        blocks_per_stage = (depth - 4) // 6
        self.num_classes, self.embed_dim = num_classes, 64 * width
        layers: list[nn.Module] = [nn.Conv2d(in_channels, 16, 3, 1, 1, bias=False)]
        c_in = 16
        for c_out, stride in [(16 * width, 1), (32 * width, 2), (64 * width, 2)]:
            for b in range(blocks_per_stage):
                layers.append(_WideBlock(c_in, c_out, stride if b == 0 else 1, dropout))
                c_in = c_out
        self.features = nn.Sequential(*layers, nn.BatchNorm2d(c_in), nn.ReLU(),
                                      nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(c_in, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)


MODELS: dict[str, type[nn.Module]] = {
    "mlp": MLP,
    "small_cnn": SmallCNN,
    "classifier32": Classifier32,
    "resnet18": ResNet18,
    "wrn16_4": WideResNet,
}


def build_model(name: str, num_classes: int, **kwargs) -> nn.Module:
    """Build a backbone by name (see ``MODELS``); ``kwargs`` go to its constructor."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; valid names: {', '.join(sorted(MODELS))}")
    return MODELS[name](num_classes=num_classes, **kwargs)


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """A copy of an eval-mode ``model`` computing the same function with fewer layers.

    In eval mode BatchNorm is a fixed per-channel affine map, so where a ``BatchNorm2d`` directly
    follows a ``Conv2d`` inside an ``nn.Sequential`` it is folded into the conv's weights and bias
    (and replaced by ``nn.Identity``). Outputs agree up to float rounding, and there are fewer
    layers to differentiate through: exact Jacobian norms ran 1.3-2x faster on CPU for the digits
    CNN (about 10% for classifier32). BatchNorms with no conv right before them (WRN's
    pre-activations) stay. The copy is for inference only: do not train it.
    """
    if any(m.training for m in model.modules()):
        raise ValueError("fold_batchnorm needs a model in eval mode (BatchNorm uses its running "
                         "statistics only then); call model.eval() first")
    folded = copy.deepcopy(model)
    for seq in [m for m in folded.modules() if isinstance(m, nn.Sequential)]:
        for i in range(len(seq) - 1):
            conv, bn = seq[i], seq[i + 1]
            if (isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d)
                    and bn.track_running_stats):
                seq[i], seq[i + 1] = fuse_conv_bn_eval(conv, bn), nn.Identity()
    return folded
