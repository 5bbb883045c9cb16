"""Open-set experiments: one run -> one result row; sweeps over splits and seeds -> tables.

A run is named by its **loss label**: a head name of ``companion.losses`` (``sce``, ``center``,
``ovr``, ``movr``) followed by the training techniques switched on, each as ``+name``:

======= ===========================================================================
``aug`` data augmentation (``TrainConfig.augment="auto"``: crop/flip or pixel shifts)
``wd``  weight decay ``TECHNIQUE_WEIGHT_DECAY`` (without it: no weight decay at all)
``ssl`` rotation self-supervision with weight ``losses.DEFAULT_SSL_WEIGHT``
======= ===========================================================================

e.g. ``"movr+aug+wd+ssl"``. Techniques are written in that canonical order in result rows.
Scores follow the package convention: higher = more likely known.
"""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path
from typing import Iterable

import pandas as pd
import torch
from torch import nn

from . import data, metrics, runtime
from .jacobian import jacobian_norm
from .losses import DEFAULT_SCALE, DEFAULT_SSL_WEIGHT, HEADS, build_head
from .models import build_model
from .scores import compute_score
from .train import TrainConfig, fit, predict, unit_embedding

TECHNIQUES = ("aug", "wd", "ssl")
TECHNIQUE_WEIGHT_DECAY = 1e-3
SCORE_NAMES = ("msp", "max_logit", "cosine", "movr", "jacobian")
KEY_COLUMNS = ("dataset", "split", "seed", "loss")
DEFAULT_MODEL = {"toy2d": "mlp", "digits": "small_cnn"}  # every other dataset: classifier32


@dataclasses.dataclass(frozen=True)
class LossSpec:
    """A parsed loss label: the head, and the training settings its techniques imply."""

    head: str
    augment: str = "none"
    weight_decay: float = 0.0
    ssl_weight: float = 0.0

    @property
    def label(self) -> str:
        """Canonical label, e.g. ``"movr+aug+wd"``; ``+wd`` for any weight decay > 0."""
        on = {"aug": self.augment != "none", "wd": self.weight_decay > 0,
              "ssl": self.ssl_weight > 0}
        return "+".join([self.head, *(t for t in TECHNIQUES if on[t])])


def parse_loss(label: str, weight_decay: float = TECHNIQUE_WEIGHT_DECAY) -> LossSpec:
    """Parse ``"head+technique+..."`` (see the module docstring); ``weight_decay`` is the value
    ``+wd`` turns on. Unknown heads or techniques raise ``ValueError`` listing the valid ones."""
    head, *techniques = label.strip().split("+")
    if head not in HEADS:
        raise ValueError(f"unknown loss {head!r} in {label!r}; valid losses: "
                         f"{', '.join(sorted(HEADS))}, optionally followed by "
                         f"{', '.join('+' + t for t in TECHNIQUES)}")
    bad = [t for t in techniques if t not in TECHNIQUES]
    if bad:
        raise ValueError(f"unknown technique {bad[0]!r} in {label!r}; valid techniques: "
                         f"{', '.join(TECHNIQUES)}")
    return LossSpec(head, augment="auto" if "aug" in techniques else "none",
                    weight_decay=weight_decay if "wd" in techniques else 0.0,
                    ssl_weight=DEFAULT_SSL_WEIGHT if "ssl" in techniques else 0.0)


def default_config(dataset: str, seed: int = 0) -> TrainConfig:
    """The training schedule ``run_osr`` uses for ``dataset`` (shorter in fast mode).

    toy2d and digits: the book's CPU scale (batch 64, lr 0.05); other datasets: the paper's
    classifier32 schedule (``TrainConfig.paper_vgg32``). Weight decay and augmentation are left
    off here; the loss label turns them on.
    """
    fast = runtime.fast_mode()
    if dataset in ("toy2d", "digits"):
        iterations = {"toy2d": (1000, 300), "digits": (500, 150)}[dataset][fast]
        return TrainConfig(iterations=iterations, batch_size=64, lr=0.05, weight_decay=0.0,
                           augment="none", seed=seed)
    return TrainConfig.paper_vgg32(iterations=100 if fast else 20_000, weight_decay=0.0,
                                   augment="none", seed=seed)


def build_osr_model(dataset: str, input_shape: tuple[int, ...], num_classes: int, head: str,
                    model: str | None = None) -> nn.Module:
    """The backbone for ``dataset`` (``DEFAULT_MODEL``, else classifier32) with head ``head``."""
    name = model or DEFAULT_MODEL.get(dataset, "classifier32")
    kwargs = {"in_features": input_shape[0]} if name == "mlp" else {"in_channels": input_shape[0]}
    net = build_model(name, num_classes, **kwargs)
    net.head = build_head(head, net.embed_dim, num_classes)
    return net


@torch.no_grad()
def evaluate_osr(model: nn.Module, osr: data.OSRData, *, device: torch.device | None = None,
                 jacobian_method: str | None = None, seed: int = 0) -> dict:
    """Metrics of a trained model on ``osr``'s test sets.

    ``accuracy`` (closed-set, known test set); ``auroc_<score>`` and ``oscr_<score>`` for every
    score of ``SCORE_NAMES`` (higher score = more likely known); ``jac_known`` / ``jac_unknown``,
    the mean Jacobian norm of the unit-normalised embedding, and ``jac_gap`` = unknown - known;
    ``dbi`` of the known test embeddings (lower = more compact). ``jacobian_method``: exact by
    default on toy2d / digits, Hutchinson with 16 projections (seeded by ``seed``) otherwise.
    """
    device = torch.device(device) if device is not None else runtime.device()
    z_k, logits_k, labels = predict(model, osr.test_known, device=device)
    z_u, logits_u, _ = predict(model, osr.test_unknown, device=device)
    method = jacobian_method or ("exact" if osr.name in DEFAULT_MODEL else "hutchinson")
    fn = unit_embedding(model)
    generator = torch.Generator().manual_seed(seed)  # CPU: the same projections on any device
    norms = [jacobian_norm(fn, data.as_tensors(s)[0].to(device), method, generator=generator,
                           progress=False).cpu()
             for s in (osr.test_known, osr.test_unknown)]
    head = model.head
    inputs = [dict(logits=lg, z=z, norms=n) for lg, z, n in
              ((logits_k, z_k, norms[0]), (logits_u, z_u, norms[1]))]
    prototypes = head.prototypes.detach().float().cpu() if hasattr(head, "prototypes") \
        else head.weight.detach().float().cpu()
    scale = getattr(head, "scale", DEFAULT_SCALE)
    correct = logits_k.argmax(1) == labels
    row = {"accuracy": metrics.accuracy(logits_k.argmax(1), labels)}
    for name in SCORE_NAMES:
        known, unknown = (compute_score(name, prototypes=prototypes, scale=scale, **kw)
                          for kw in inputs)
        row[f"auroc_{name}"] = metrics.auroc(known, unknown)
        row[f"oscr_{name}"] = metrics.oscr(known, unknown, correct)
    row["jac_known"], row["jac_unknown"] = norms[0].mean().item(), norms[1].mean().item()
    row["jac_gap"] = row["jac_unknown"] - row["jac_known"]
    row["dbi"] = metrics.davies_bouldin(z_k, labels)
    return row


def train_osr(dataset: str, split: int, loss: str, seed: int, *, model: str | None = None,
              config: TrainConfig | None = None, ssl_weight: float | None = None,
              augment: str | None = None, weight_decay: float | None = None,
              device: torch.device | None = None, data_root: str | os.PathLike | None = None,
              download: bool = False, progress: bool = False
              ) -> tuple[nn.Module, data.OSRData, dict]:
    """Train one open-set model; returns ``(model, osr_data, info)``.

    ``info`` holds the run's identity and settings (the first columns of a ``run_osr`` row) and
    ``train_time_s``. Settings not given come from the loss label (``parse_loss``), then from
    ``default_config(dataset, seed)``; an explicit ``config`` has its seed replaced by ``seed``.
    """
    spec = parse_loss(loss)
    spec = dataclasses.replace(spec, **{k: v for k, v in dict(
        augment=augment, weight_decay=weight_decay, ssl_weight=ssl_weight).items()
        if v is not None})
    config = dataclasses.replace(config or default_config(dataset, seed), seed=seed,
                                 augment=spec.augment, weight_decay=spec.weight_decay,
                                 ssl_weight=spec.ssl_weight)
    osr = data.load_osr(dataset, split, root=data_root, download=download, seed=seed)
    runtime.seed_everything(seed)  # the model's initialisation
    net = build_osr_model(dataset, osr.input_shape, osr.num_classes, spec.head, model)
    start = time.perf_counter()
    fit(net, osr.train, config, device=device, progress=progress)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    info = {"dataset": dataset, "split": split, "seed": seed, "loss": spec.label,
            "model": model or DEFAULT_MODEL.get(dataset, "classifier32"),
            "iterations": config.iterations, "augment": spec.augment,
            "weight_decay": spec.weight_decay, "ssl_weight": spec.ssl_weight,
            "train_time_s": time.perf_counter() - start}
    return net, osr, info


def run_osr(dataset: str, split: int, loss: str, seed: int, *, model: str | None = None,
            config: TrainConfig | None = None, ssl_weight: float | None = None,
            augment: str | None = None, weight_decay: float | None = None,
            device: torch.device | None = None, data_root: str | os.PathLike | None = None,
            download: bool = False, jacobian_method: str | None = None) -> dict:
    """Train and evaluate one run; one result row (a flat dict of str / int / float).

    Keys: ``dataset, split, seed, loss`` (the canonical label), ``model, iterations, augment,
    weight_decay, ssl_weight, train_time_s`` (seconds of ``fit``), then ``evaluate_osr``'s
    metrics. Arguments as in ``train_osr`` and ``evaluate_osr``.
    """
    net, osr, row = train_osr(dataset, split, loss, seed, model=model, config=config,
                              ssl_weight=ssl_weight, augment=augment, weight_decay=weight_decay,
                              device=device, data_root=data_root, download=download)
    row.update(evaluate_osr(net, osr, device=device, jacobian_method=jacobian_method, seed=seed))
    return row


def _as_list(values) -> list:
    return [values] if isinstance(values, (str, int)) else list(values)


def sweep(datasets: str | Iterable[str], splits: int | Iterable[int], seeds: int | Iterable[int],
          losses: str | Iterable[str], *, out_csv: str | os.PathLike | None = None,
          resume: bool = True, technique_weight_decay: float = TECHNIQUE_WEIGHT_DECAY,
          **run_kwargs) -> pd.DataFrame:
    """``run_osr`` over every dataset x seed x split x loss; one row per run.

    With ``out_csv`` each finished row is appended to that CSV at once, so an interrupted sweep
    loses at most the run in progress; with ``resume=True`` runs already in the CSV (same
    dataset, split, seed and canonical loss label) are read back, not recomputed, while
    ``resume=False`` starts the file afresh. ``+wd`` in a loss label means weight decay
    ``technique_weight_decay``; ``run_kwargs`` go to ``run_osr``. Returns the rows of the
    requested runs (read back or new), in sweep order (losses innermost, so a partial sweep
    still compares every loss on the same splits).
    """
    path = Path(out_csv) if out_csv is not None else None
    specs = [parse_loss(loss, technique_weight_decay) for loss in _as_list(losses)]
    done: dict[tuple, dict] = {}
    if path is not None and path.exists():
        if resume:
            for row in pd.read_csv(path).to_dict("records"):
                done[tuple(row[k] for k in KEY_COLUMNS)] = row
        else:
            path.unlink()
    rows = []
    for dataset in _as_list(datasets):
        for seed in _as_list(seeds):
            for split in _as_list(splits):
                for spec in specs:
                    key = (dataset, split, seed, spec.label)
                    if key in done:
                        rows.append(done[key])
                        continue
                    row = run_osr(dataset, split, spec.label, seed,
                                  weight_decay=spec.weight_decay, **run_kwargs)
                    rows.append(row)
                    if path is not None:
                        path.parent.mkdir(parents=True, exist_ok=True)
                        pd.DataFrame([row]).to_csv(path, mode="a", index=False,
                                                   header=not path.exists())
    return pd.DataFrame(rows)


SUMMARY_METRICS = ("accuracy", *(f"auroc_{s}" for s in SCORE_NAMES), "oscr_max_logit",
                   "oscr_movr", "jac_gap", "dbi", "train_time_s")


def summarise(df: pd.DataFrame, columns: Iterable[str] = SUMMARY_METRICS) -> pd.DataFrame:
    """Mean and standard deviation over splits x seeds per (dataset, loss).

    Returns one row per (dataset, loss) with columns ``(metric, "mean")`` / ``(metric, "std")``
    and ``("runs", "count")``. The std is the sample std (ddof 1); NaN for a single run.
    """
    cols = [m for m in columns if m in df.columns]
    grouped = df.groupby(["dataset", "loss"], sort=False)
    table = grouped[cols].agg(["mean", "std"])
    table[("runs", "count")] = grouped.size()
    return table


def format_summary(table: pd.DataFrame, digits: int = 3) -> pd.DataFrame:
    """``summarise``'s table as strings ``"mean ± std"``, for printing."""
    metric_names = [m for m in table.columns.get_level_values(0).unique() if m != "runs"]
    out = pd.DataFrame({m: [f"{mu:.{digits}f} ± {sd:.{digits}f}" for mu, sd in
                            zip(table[(m, "mean")], table[(m, "std")].fillna(0.0))]
                        for m in metric_names}, index=table.index)
    out["runs"] = table[("runs", "count")]
    return out
