"""Companion package of the book *Understanding Open-Set Recognition by Jacobian Norm*.

A run is described by one value, a ``RunSpec`` (dataset, split, seed, backbone, loss head and its
arguments, training schedule and techniques), and three verbs act on it::

    import companion
    from companion import experiments, RunSpec

    spec = RunSpec.parse("movr+aug", dataset="digits", split=0, seed=0)
    run = experiments.train(spec)             # build the model (seeded) and fit it
    row = experiments.evaluate(run)           # accuracy, AUROC / OSCR per score, norm gap, DBI
    # Protocol B: every class known, OOD unknowns, macro-F1 from a validation split
    spec_b = RunSpec.parse("movr", dataset="digits", ood="photo_crop", val_fraction=0.1)
    gap = companion.norm_gap(run.model, run.osr.test_known, run.osr.test_unknown)

One module per concern: ``runtime`` (device, seeding, profiles, data folder: the only module that
reads the environment), ``presets`` (the protocol of each dataset), ``data`` (splits and
``load_osr``), ``models`` (backbones with ``embed``), ``losses`` (heads: SCE, center, OvR, m-OvR),
``train`` (``TrainConfig``, ``fit``, ``predict``), ``jacobian`` (per-sample Jacobian norms),
``scores``, ``metrics``, ``spec`` and ``experiments`` (runs, sweeps, tables), ``cli``.

Convention used everywhere: **a higher score means "more likely known"**.
"""

from . import (data, experiments, jacobian, losses, metrics, models, presets, runtime, scores,
               spec, train)
from .data import DATASETS, OOD_SETS, OSRData, TensorSet, load_ood, load_osr
from .experiments import Run, sweep
from .jacobian import jacobian_norm, norm_gap, unit_embedding
from .losses import build_head
from .metrics import accuracy, auroc, davies_bouldin, open_set_f1, oscr
from .models import build_model
from .presets import preset
from .runtime import device, profile, seed_everything
from .scores import compute_score
from .spec import RunSpec
from .train import TrainConfig, fit, predict

__version__ = "0.2.0"

__all__ = [
    # modules
    "data", "experiments", "jacobian", "losses", "metrics", "models", "presets", "runtime",
    "scores", "spec", "train",
    # runs
    "RunSpec", "Run", "TrainConfig", "fit", "predict", "sweep", "preset",
    # data
    "DATASETS", "OOD_SETS", "OSRData", "TensorSet", "load_osr", "load_ood",
    # models and losses
    "build_model", "build_head",
    # the Jacobian norm
    "jacobian_norm", "norm_gap", "unit_embedding",
    # scores and metrics (higher score = more likely known)
    "compute_score", "auroc", "oscr", "open_set_f1", "accuracy", "davies_bouldin",
    # runtime
    "device", "profile", "seed_everything",
]
