"""Training and inference loops.

``fit`` trains a model with softmax cross-entropy (SCE) on a linear head, SGD with momentum and a
cosine learning-rate schedule *by iteration* (the paper's schedules are stated in iterations).
``predict`` runs a model over a dataset in eval mode and returns embeddings, logits and labels.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from . import runtime


@dataclass(frozen=True)
class TrainConfig:
    """Hyperparameters of one training run.

    The learning rate follows a cosine from ``lr`` (iteration 0) to ``lr_min`` (last iteration).
    """

    iterations: int = 2000
    batch_size: int = 128
    lr: float = 0.05
    lr_min: float = 1e-5
    momentum: float = 0.9
    weight_decay: float = 5e-4
    seed: int = 0

    def __post_init__(self):
        for name in ("iterations", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0 <= self.lr_min <= self.lr:
            raise ValueError(f"need 0 <= lr_min <= lr, got lr={self.lr}, lr_min={self.lr_min}")


def _batches(dataset: Dataset, batch_size: int, generator: torch.Generator):
    """Endless stream of shuffled mini-batches; a new permutation each pass."""
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=True, drop_last=True,
                        generator=generator)
    if len(loader) == 0:
        raise ValueError(f"batch_size {batch_size} exceeds the training set size {len(dataset)}")
    while True:
        yield from loader


def fit(model: nn.Module, train_set: Dataset, config: TrainConfig = TrainConfig(), *,
        device: torch.device | None = None, progress: bool = True) -> list[float]:
    """Train ``model`` (``model(x) -> (z, logits)``) on ``train_set`` with SCE.

    Returns the training loss of every iteration. The run is seeded by ``config.seed``: the same
    config, model initialisation and data give the same weights on CPU.
    """
    device = device or runtime.device()
    generator = runtime.seed_everything(config.seed)
    model.to(device).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum,
                                weight_decay=config.weight_decay)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(
        optimizer, T_max=config.iterations, eta_min=config.lr_min)
    batches = _batches(train_set, config.batch_size, generator)
    losses = []
    for _ in tqdm(range(config.iterations), desc="fit", disable=not progress, leave=False):
        x, y = next(batches)
        x, y = x.to(device), y.to(device)
        _, logits = model(x)
        loss = nn.functional.cross_entropy(logits, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        losses.append(loss.item())
    model.eval()
    return losses


@torch.no_grad()
def predict(model: nn.Module, dataset: Dataset, batch_size: int = 512,
            device: torch.device | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Embeddings ``(N, embed_dim)``, logits ``(N, K)`` and labels ``(N,)`` of a dataset, on CPU.

    The model is put in eval mode (BatchNorm statistics frozen, Dropout off).
    """
    device = device or runtime.device()
    model.to(device).eval()
    zs, logits, labels = [], [], []
    for x, y in DataLoader(dataset, batch_size=batch_size):
        z, out = model(x.to(device))
        zs.append(z.cpu())
        logits.append(out.cpu())
        labels.append(torch.as_tensor(y))
    return torch.cat(zs), torch.cat(logits), torch.cat(labels)
