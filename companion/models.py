"""Backbones with one interface.

Every model maps a batch of inputs ``x`` of shape ``(N, *input_shape)`` to

- ``model.embed(x)``: the representation ``z = f(x)``, shape ``(N, embed_dim)`` -- the function
  whose input Jacobian ``df/dx`` the book studies;
- ``model(x)``: the pair ``(z, logits)``, logits of shape ``(N, num_classes)`` from a linear head
  on ``z``.

and exposes ``num_classes`` and ``embed_dim``. ``build_model(name, ...)`` builds one by name.
"""

from __future__ import annotations

import torch
from torch import nn


class SmallCNN(nn.Module):
    """A small ReLU CNN for little images: 8x8 ``digits`` (1 channel) or any 32x32 input.

    Three 3x3 convolutions (32, 64, 128 channels) with one 2x2 max-pool, global average pooling
    (so any spatial size works) and a linear layer to the embedding. No BatchNorm or Dropout, so
    the model behaves the same in train and eval mode and each sample's Jacobian is its own.
    """

    def __init__(self, num_classes: int, in_channels: int = 1, embed_dim: int = 64):
        super().__init__()
        self.num_classes = num_classes
        self.embed_dim = embed_dim
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 32, 3, padding=1), nn.ReLU(),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(64, 128, 3, padding=1), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )
        self.to_embedding = nn.Linear(128, embed_dim)
        self.head = nn.Linear(embed_dim, num_classes)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Representation ``z = f(x)``: ``(N, C, H, W) -> (N, embed_dim)``."""
        return self.to_embedding(self.features(x))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(z, logits)`` with shapes ``(N, embed_dim)`` and ``(N, num_classes)``."""
        z = self.embed(x)
        return z, self.head(z)


MODELS = {"small_cnn": SmallCNN}


def build_model(name: str, num_classes: int, **kwargs) -> nn.Module:
    """Build a backbone by name (see ``MODELS``); ``kwargs`` go to its constructor."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; valid names: {', '.join(sorted(MODELS))}")
    return MODELS[name](num_classes=num_classes, **kwargs)
