"""The protocol as data: per dataset, the backbone, image size, schedule and techniques.

One ``Preset`` per dataset of ``companion.data.DATASETS``. A run spec without an explicit model,
image size or schedule takes them from here, and a label's ``+aug``, ``+wd`` and ``+ssl`` switch
on the preset's augmentation, weight decay and self-supervision weight. This is the only place
defaults of a run live.

========================= ============ ====== ===================================================
dataset                   model        image  schedule (``config``)
========================= ============ ====== ===================================================
``toy2d``                 mlp          --     book's CPU scale: 1000 steps of 64, lr 0.05
``digits``                small_cnn    (8)    book's CPU scale: 500 steps of 64, lr 0.05
``mnist`` ``svhn``        classifier32 32     paper: 20k steps of 128, SGD 0.9, cosine 0.1->1e-5
``cifar10`` ``cifar+N``   classifier32 32     the same
``tiny_imagenet``         classifier32 64     the same
========================= ============ ====== ===================================================

Backbone schedules (``schedule(model)``), from the paper: classifier32 (VGG32) and WRN-16-4 train
for 20k iterations of batch 128 with lr 0.1 -> 1e-5 (cosine); ResNet-18 for 200 epochs of batch
128 with lr 0.06 -> 0, momentum 0.9. Techniques (the paper's defaults): weight decay 1e-3,
``lambda_self`` = 0.1, augmentation = random crop (plus a horizontal flip on natural images;
digits are never mirrored).

``fast`` is each preset's tiny schedule for tests and CI dry runs: it checks that code runs on a
dataset, not what a model learns. The library never picks it by itself: callers (notebook
parameter cells, tests) ask for it, e.g. ``preset("digits").schedule(fast=True)``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from .data import DATASETS
from .train import TrainConfig

PAPER_WEIGHT_DECAY = 1e-3  # the paper's default for +wd
PAPER_SSL_WEIGHT = 0.1  # lambda_self

_VGG_SCHEDULE = TrainConfig(iterations=20_000, batch_size=128, lr=0.1, lr_min=1e-5, momentum=0.9)
_BACKBONE_SCHEDULES = {
    "classifier32": _VGG_SCHEDULE,
    "wrn16_4": _VGG_SCHEDULE,
    "resnet18": TrainConfig(iterations=None, epochs=200, batch_size=128, lr=0.06, lr_min=0.0,
                            momentum=0.9),
}
# A few steps of small batches: enough to run every line of a chapter on fabricated files.
_FAST_IMAGE_SCHEDULE = TrainConfig(iterations=4, batch_size=16, lr=0.05)


@dataclass(frozen=True)
class Preset:
    """The protocol of one dataset: default backbone and input size, the schedule at full scale
    and in fast mode (no technique in either), and what ``+aug``, ``+wd`` and ``+ssl`` mean."""

    dataset: str
    model: str
    image_size: int | None  # side the loader resizes images to; None: fixed (toy2d, digits)
    config: TrainConfig
    fast: TrainConfig
    augment: str = "crop_flip"  # what +aug turns on
    weight_decay: float = PAPER_WEIGHT_DECAY  # what +wd turns on
    ssl_weight: float = PAPER_SSL_WEIGHT  # what +ssl turns on
    source: str = "paper"

    def schedule(self, model: str | None = None, *, fast: bool = False) -> TrainConfig:
        """The schedule for ``model`` (default: this preset's) at full scale or in fast mode.

        On the paper's datasets another paper backbone takes its own schedule (``schedule``);
        the book's small models keep the preset's.
        """
        if fast:
            return self.fast
        if model is None or model == self.model or model not in _BACKBONE_SCHEDULES:
            return self.config
        return _BACKBONE_SCHEDULES[model]


def schedule(model: str) -> TrainConfig:
    """The paper's schedule for a backbone: ``classifier32``, ``wrn16_4`` or ``resnet18``."""
    if model not in _BACKBONE_SCHEDULES:
        raise ValueError(f"no paper schedule for model {model!r}; valid: "
                         f"{', '.join(_BACKBONE_SCHEDULES)}")
    return _BACKBONE_SCHEDULES[model]


def _paper(dataset: str, image_size: int, augment: str) -> Preset:
    return Preset(dataset, "classifier32", image_size, _VGG_SCHEDULE, _FAST_IMAGE_SCHEDULE,
                  augment=augment)


PRESETS: dict[str, Preset] = {
    "toy2d": Preset("toy2d", "mlp", None,
                    TrainConfig(iterations=1000, batch_size=64, lr=0.05),
                    TrainConfig(iterations=300, batch_size=64, lr=0.05),
                    augment="none", source="book (CPU)"),
    "digits": Preset("digits", "small_cnn", None,
                     TrainConfig(iterations=500, batch_size=64, lr=0.05),
                     TrainConfig(iterations=150, batch_size=64, lr=0.05),
                     augment="crop", source="book (CPU)"),
    "mnist": _paper("mnist", 32, "crop"),
    "svhn": _paper("svhn", 32, "crop"),
    "cifar10": _paper("cifar10", 32, "crop_flip"),
    "cifar+10": _paper("cifar+10", 32, "crop_flip"),
    "cifar+50": _paper("cifar+50", 32, "crop_flip"),
    "tiny_imagenet": _paper("tiny_imagenet", 64, "crop_flip"),
}
assert set(PRESETS) == set(DATASETS), "every dataset needs a preset"


def preset(dataset: str) -> Preset:
    """The preset of ``dataset``; ``ValueError`` lists the valid names."""
    if dataset not in PRESETS:
        raise ValueError(f"unknown dataset {dataset!r}; valid names: {', '.join(PRESETS)}")
    return PRESETS[dataset]


def scaled(config: TrainConfig, **changes) -> TrainConfig:
    """``config`` with some fields changed (validated again), e.g. ``scaled(c, iterations=100)``;
    setting ``iterations`` clears ``epochs`` and the other way round."""
    if "iterations" in changes and "epochs" not in changes:
        changes["epochs"] = None
    if "epochs" in changes and "iterations" not in changes:
        changes["iterations"] = None
    return dataclasses.replace(config, **changes)
