"""Training throughput: ``companion.train.fit`` against the loop a user would write.

``python benchmarks/training.py`` (``make bench-train``) trains the same model on the same
synthetic CIFAR-shaped data (uint8, 32x32, 10 classes) two ways, side by side in one run:

- ``fit``: the data held once on the device as uint8; batches gathered, converted, cropped and
  flipped there by tensor operations; channels_last and bf16 autocast on CUDA; optionally
  ``torch.compile`` (CUDA only).
- ``DataLoader``: the usual recipe, a torchvision-style dataset of HWC uint8 images through
  ``RandomCrop(32, padding=4)``, ``RandomHorizontalFlip()`` and ``ToTensor()`` in
  ``num_workers = CPU count`` worker processes with ``pin_memory`` on CUDA, copied to the device
  each step; the same model, optimizer, schedule and autocast.

Each measurement is images per second over ``steps`` timed steps after ``warmup`` steps (for
``fit``: the difference of two runs of different length, so set-up cost cancels). Ratios are
what to compare across machines; the absolute rates belong to the machine that printed them.
"""

from __future__ import annotations

import argparse
import math
import os
import time

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms as T

from companion.data import TensorSet
from companion.models import build_model
from companion.train import TrainConfig, fit

TARGET_RATIO = 3.0  # fit vs the DataLoader loop, on a GPU
TARGET_RATE = 50_000  # images/s of fit for classifier32 on an H100-class GPU


def synthetic_cifar(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` random uint8 images ``(n, 32, 32, 3)`` (HWC, as CIFAR stores them) and labels."""
    rng = np.random.default_rng(seed)
    return (rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8),
            rng.integers(0, 10, n).astype(np.int64))


class HWCImages(Dataset):
    """What ``torchvision.datasets.CIFAR10`` does per item: a PIL image through ``transform``."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, transform):
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        return self.transform(Image.fromarray(self.images[i])), int(self.labels[i])


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _config(steps: int, batch: int) -> TrainConfig:
    return TrainConfig(iterations=steps, batch_size=batch, lr=0.05, augment="crop_flip")


def fit_rate(model_name: str, images: np.ndarray, labels: np.ndarray, device: torch.device,
             steps: int, warmup: int, batch: int, compile: bool = False) -> float:
    """Images/s of ``fit`` in steady state: (steps x batch) / (time(warmup + steps) -
    time(warmup)), each from a fresh model, so data transfer and set-up cancel."""
    data = TensorSet(torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(),
                     torch.from_numpy(labels))

    def timed(n: int) -> float:
        torch.manual_seed(0)
        model = build_model(model_name, 10)
        _sync(device)
        start = time.perf_counter()
        fit(model, data, _config(n, batch), device=device, progress=False, compile=compile)
        _sync(device)
        return time.perf_counter() - start

    if not compile:
        timed(warmup)  # first use: cuDNN autotuning (compiling pays it inside both timed runs)
    return steps * batch / (timed(warmup + steps) - timed(warmup))


def dataloader_rate(model_name: str, images: np.ndarray, labels: np.ndarray,
                    device: torch.device, steps: int, warmup: int, batch: int,
                    workers: int) -> float:
    """Images/s of the usual DataLoader loop over ``steps`` steps after ``warmup`` steps."""
    transform = T.Compose([T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(), T.ToTensor()])
    loader = DataLoader(HWCImages(images, labels, transform), batch_size=batch, shuffle=True,
                        num_workers=workers, pin_memory=device.type == "cuda", drop_last=True,
                        persistent_workers=workers > 0)
    torch.manual_seed(0)
    model = build_model(model_name, 10).to(device).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=warmup + steps)
    amp = torch.bfloat16 if device.type == "cuda" else None

    def batches():
        while True:
            yield from loader

    it = batches()
    start = None
    for step in range(warmup + steps):
        if step == warmup:
            _sync(device)
            start = time.perf_counter()
        x, y = next(it)
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
            loss = F.cross_entropy(model(x)[1], y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
    _sync(device)
    return steps * batch / (time.perf_counter() - start)


def run(device: torch.device, models: list[str], steps: int | None = None,
        compile: bool = False) -> list[dict]:
    """One row per model: images/s of both loops and their ratio; with ``compile`` (CUDA only),
    of compiled ``fit`` too, for classifier32, measured last (compiling takes a while). Each
    result is printed as soon as it is measured."""
    cuda = device.type == "cuda"
    workers = os.cpu_count() or 1
    batch, warmup = 128, (20 if cuda else 2)
    rows = []

    def data(n_steps):
        return synthetic_cifar(max(10_000, (warmup + n_steps + 1) * batch) if cuda
                               else 4 * batch)

    for name in models:
        n_steps = steps or (200 if cuda else (3 if name == "resnet18" else 6))
        images, labels = data(n_steps)
        row = {"model": name, "batch": batch, "steps": n_steps,
               "fit": fit_rate(name, images, labels, device, n_steps, warmup, batch),
               "dataloader": dataloader_rate(name, images, labels, device, n_steps, warmup,
                                             batch, workers)}
        row["ratio"] = row["fit"] / row["dataloader"]
        print(f"  {name}: fit {row['fit']:.0f}, DataLoader {row['dataloader']:.0f} images/s",
              flush=True)
        rows.append(row)
    for row in rows:
        if compile and cuda and row["model"] == "classifier32":
            images, labels = data(row["steps"])
            row["fit, compiled"] = fit_rate("classifier32", images, labels, device, row["steps"],
                                            warmup, batch, compile=True)
            print(f"  classifier32: fit, compiled {row['fit, compiled']:.0f} images/s",
                  flush=True)
    return rows


def format_rows(rows: list[dict], device: torch.device) -> str:
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else \
        f"CPU, {torch.get_num_threads()} threads"
    lines = [f"training throughput, images/s ({where}, torch {torch.__version__}, "
             f"{os.cpu_count()} cores; DataLoader workers = {os.cpu_count()})",
             f"{'model':<14}{'fit':>12}{'DataLoader':>12}{'ratio':>8}{'fit, compiled':>15}"]
    for r in rows:
        compiled = f"{r['fit, compiled']:>15.0f}" if "fit, compiled" in r else f"{'-':>15}"
        lines.append(f"{r['model']:<14}{r['fit']:>12.0f}{r['dataloader']:>12.0f}"
                     f"{r['ratio']:>7.1f}x{compiled}")
    return "\n".join(lines)


def verdicts(rows: list[dict], device: torch.device) -> list[str]:
    """The targets of the GPU issue, met or missed (on a GPU only)."""
    if device.type != "cuda":
        return ["targets (>= 3x the DataLoader loop, >= 50k images/s) apply on a GPU only"]
    out = []
    for r in rows:
        best = max(r["fit"], r.get("fit, compiled", 0.0))
        out.append(f"{r['model']}: fit/DataLoader {r['ratio']:.1f}x (target >= {TARGET_RATIO:.0f}x)"
                   f" -> {'met' if r['ratio'] >= TARGET_RATIO else 'MISSED'}")
        if r["model"] == "classifier32":
            minutes = 20_000 * 128 / best / 60
            out.append(f"classifier32: {best:.0f} images/s (target >= {TARGET_RATE}) -> "
                       f"{'met' if best >= TARGET_RATE else 'MISSED'}; the paper's 20k "
                       f"iterations of 128 take about {minutes:.1f} min")
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="benchmarks/training.py", description=__doc__.split(
        "\n\n")[0])
    parser.add_argument("--device", choices=["cpu", "cuda"], default=None)
    parser.add_argument("--models", default="classifier32,resnet18",
                        help="comma-separated backbones (default: classifier32,resnet18)")
    parser.add_argument("--steps", type=int, default=None,
                        help="timed steps (default: 200 on CUDA, 6 on the CPU, 3 for ResNet-18)")
    parser.add_argument("--compile", action="store_true", help="also time fit(compile=True)")
    args = parser.parse_args(argv)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    rows = run(device, args.models.split(","), args.steps, args.compile)
    print(format_rows(rows, device))
    for line in verdicts(rows, device):
        print(line)
    if device.type == "cpu" and not math.isnan(os.getloadavg()[0]) and \
            os.getloadavg()[0] > torch.get_num_threads() + 1:
        print(f"WARNING: load average {os.getloadavg()[0]:.1f}: other processes shared the CPU")


if __name__ == "__main__":
    main()
