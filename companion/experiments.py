"""Open-set experiments: three verbs on a run spec, and sweeps over many specs.

The verbs, used alike by the chapters, the command line and the sweep::

    spec = RunSpec.parse("movr+aug", dataset="digits", split=0, seed=0)
    run = train(spec)              # load the data, build (seeded), fit -> Run
    row = evaluate(run)            # accuracy, AUROC / OSCR of every score, norms, gap, DBI
    save_run(run, "m.pt"); run = load_run("m.pt")   # the spec travels with the weights

``build(spec, osr)`` is the first step of ``train`` on its own (an untrained model, for
controls). Protocol B: a spec with ``ood`` (an OOD set, every class known) and
``val_fraction`` (a validation hold-out, which adds open-set macro-F1 to the row); specs that
differ only in ``ood`` share a ``training_key``, and a sweep trains their model once
(``run_shared``).

A sweep is a list of specs: ``sweep(specs, out_csv=...)`` runs each once (duplicates once),
appends each finished row to the CSV atomically, and on a rerun reads back the rows whose spec
hash is there instead of recomputing them. ``shard=(i, n)`` runs a deterministic share,
``merge`` joins shard files, and ``submit`` runs the shards as jobs through ``submitit``.

Scores follow the package convention: higher = more likely known.
"""

from __future__ import annotations

import csv
import io
import os
import re
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

from . import data, metrics, runtime
from .jacobian import jacobian_norm, norm_gap, unit_embedding
from .losses import DEFAULT_SCALE, build_head
from .models import build_model
from .scores import compute_score
from .spec import RunSpec
from .train import (CheckpointError, TrainConfig, check_output_path, fit, load_checkpoint,
                    predict, save_checkpoint)

SCORE_NAMES = ("msp", "max_logit", "cosine", "movr", "jacobian", "feature_norm")
REJECT_FRACTION = 0.1
"""Share of validation knowns a Protocol-B threshold rejects: 10%, as in the paper (and
Yoshihashi et al. 2019); ``metrics.rejection_threshold``'s default."""
OFFLINE_DATASETS = ("toy2d", "digits")  # exact Jacobian norms there; Hutchinson elsewhere


# --------------------------------------------------------------------------------------------------
# the three verbs


@dataclass
class Run:
    """A trained model with its spec, data, per-step losses, callback history and fit time."""

    spec: RunSpec
    model: nn.Module
    osr: data.OSRData
    losses: list[float] = field(default_factory=list)
    history: list[dict] = field(default_factory=list)
    train_time_s: float = float("nan")


def load_data(spec: RunSpec, *, root: str | os.PathLike | None = None,
              download: bool = False) -> data.OSRData:
    """The open-set problem of ``spec``: its dataset, split (or known classes) and seed; for
    Protocol B its OOD set (``spec.ood``); a validation hold-out of ``spec.val_fraction``."""
    kwargs = {"image_size": spec.image_size} if spec.image_size is not None else {}
    return data.load_osr(spec.dataset, max(spec.split, 0), root=root, download=download,
                         seed=spec.seed, known=spec.known, ood=spec.ood,
                         val_fraction=spec.val_fraction, **kwargs)


def build(spec: RunSpec, osr: data.OSRData) -> nn.Module:
    """The backbone and head of ``spec`` for ``osr``'s inputs and classes, initialised from
    ``spec.seed`` (the same spec always gives the same initial weights)."""
    runtime.seed_everything(spec.seed)
    in_arg = "in_features" if spec.model == "mlp" else "in_channels"
    net = build_model(spec.model, osr.num_classes, **{in_arg: osr.input_shape[0]})
    net.head = build_head(spec.head, net.embed_dim, osr.num_classes, **dict(spec.head_kwargs))
    return net


def train(spec: RunSpec, *, osr: data.OSRData | None = None,
          device: torch.device | str | None = None, progress: bool = False,
          callbacks: Sequence = (), log_every: int = 0,
          checkpoint: str | os.PathLike | None = None, checkpoint_every: int = 0,
          resume: bool = False, compile: bool = False, root: str | os.PathLike | None = None,
          download: bool = False) -> Run:
    """Load the data (unless ``osr`` is given), build the model and train it as ``spec`` says.

    ``callbacks`` / ``log_every`` fill ``Run.history``; ``checkpoint`` names the training-state
    file (``fit``'s, with the spec stored in it) for ``checkpoint_every`` and ``resume``.
    """
    osr = osr if osr is not None else load_data(spec, root=root, download=download)
    model = build(spec, osr)
    history: list[dict] = []
    start = time.perf_counter()
    losses = fit(model, osr.train, spec.config, seed=spec.seed, device=device, progress=progress,
                 callbacks=callbacks, log_every=log_every, history=history,
                 checkpoint=checkpoint, checkpoint_every=checkpoint_every, resume=resume,
                 checkpoint_extra={"spec": spec.as_dict()}, compile=compile)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return Run(spec, model, osr, losses, history, time.perf_counter() - start)


def _prototypes(head: nn.Module) -> torch.Tensor:
    weights = head.prototypes if hasattr(head, "prototypes") else head.weight
    return weights.detach().float().cpu()


def _val_jacobian_norms(model: nn.Module, val: data.TensorSet, method: str, seed: int,
                        device: torch.device) -> torch.Tensor:
    """Jacobian norms of the unit-normalised embedding on the validation knowns, ``(N_val,)``."""
    fn, generator = unit_embedding(model), torch.Generator().manual_seed(seed)
    return torch.cat([jacobian_norm(fn, x, method, generator=generator).cpu()
                      for x, _ in val.batches(512, device)])


@torch.no_grad()
def evaluate(trained: Run, *, device: torch.device | str | None = None,
             jacobian_method: str | None = None) -> dict:
    """Metrics of a trained run on its test sets, one flat dict.

    ``accuracy`` (closed-set, known test set); ``auroc_<score>`` and ``oscr_<score>`` for every
    score of ``SCORE_NAMES`` (higher score = more likely known); ``jac_known`` / ``jac_unknown``,
    the mean Jacobian norm of the unit-normalised embedding, and ``jac_gap`` = unknown - known;
    ``feat_known`` / ``feat_unknown``, the mean feature norm ``||g(x)||`` of the raw embedding;
    ``dbi`` of the known test embeddings (lower = more compact). Test sets are streamed in
    batches. ``jacobian_method``: exact by default on toy2d / digits, Hutchinson with 16
    projections (seeded by the spec's seed) on the paper's datasets.

    With a validation split (``trained.osr.val``, from ``spec.val_fraction > 0``) the row also
    has ``macro_f1_<score>`` for every score: each score's rejection threshold is set on the
    validation knowns so that ``REJECT_FRACTION`` = 10% of them are rejected (the paper's
    Protocol B; ``metrics.rejection_threshold``), then the test knowns and unknowns are
    classified into K + 1 classes (below the threshold: "unknown"; else the closed-set
    prediction) and scored by the open-set macro-F1 (``metrics.open_set_f1``). Rows without a
    validation split have no ``macro_f1_`` columns.
    """
    model, osr = trained.model, trained.osr
    device = torch.device(device) if device is not None else runtime.device()
    z_k, logits_k, labels = predict(model, osr.test_known, device=device)
    z_u, logits_u, _ = predict(model, osr.test_unknown, device=device)
    method = jacobian_method or ("exact" if osr.name in OFFLINE_DATASETS else "hutchinson")
    norms = norm_gap(model, osr.test_known, osr.test_unknown, method, seed=trained.spec.seed,
                     device=device)
    prototypes, scale = _prototypes(model.head), getattr(model.head, "scale", DEFAULT_SCALE)
    score = lambda name, lg, z, n: compute_score(  # noqa: E731
        name, logits=lg, z=z, norms=n, prototypes=prototypes, scale=scale)
    pred_k = logits_k.argmax(1)
    correct = pred_k == labels
    row = {"accuracy": metrics.accuracy(pred_k, labels)}
    for name in SCORE_NAMES:
        known, unknown = score(name, logits_k, z_k, norms.known), score(name, logits_u, z_u,
                                                                        norms.unknown)
        row[f"auroc_{name}"] = metrics.auroc(known, unknown)
        row[f"oscr_{name}"] = metrics.oscr(known, unknown, correct)
    row["jac_known"], row["jac_unknown"] = norms.known_mean, norms.unknown_mean
    row["jac_gap"] = norms.gap
    row["feat_known"] = z_k.norm(dim=1).mean().item()
    row["feat_unknown"] = z_u.norm(dim=1).mean().item()
    row["dbi"] = metrics.davies_bouldin(z_k, labels)
    if osr.val is not None:
        z_v, logits_v, _ = predict(model, osr.val, device=device)
        norms_v = _val_jacobian_norms(model, osr.val, method, trained.spec.seed + 1, device)
        for name in SCORE_NAMES:
            threshold = metrics.rejection_threshold(score(name, logits_v, z_v, norms_v),
                                                    REJECT_FRACTION)
            row[f"macro_f1_{name}"] = metrics.open_set_f1(
                score(name, logits_k, z_k, norms.known), pred_k, labels,
                score(name, logits_u, z_u, norms.unknown), logits_u.argmax(1),
                threshold=threshold, num_classes=osr.num_classes)
    return row


def run(spec: RunSpec, *, device: torch.device | str | None = None,
        root: str | os.PathLike | None = None, download: bool = False,
        jacobian_method: str | None = None) -> dict:
    """Train and evaluate one spec: one result row (the spec's columns, the metrics of
    ``evaluate``, then ``train_time_s``, the seconds ``fit`` took)."""
    trained = train(spec, device=device, root=root, download=download)
    return {**spec.row(), **evaluate(trained, device=device, jacobian_method=jacobian_method),
            "train_time_s": trained.train_time_s}


def run_shared(specs: Sequence[RunSpec], *, device: torch.device | str | None = None,
               root: str | os.PathLike | None = None, download: bool = False,
               jacobian_method: str | None = None) -> list[dict]:
    """Train once and evaluate every spec of ``specs``, which must share one
    ``training_key`` (Protocol-B specs that differ only in their OOD set): one row per spec,
    as ``run`` gives it, each with the shared model's ``train_time_s``."""
    specs = list(specs)
    if not specs or len({s.training_key for s in specs}) != 1:
        raise ValueError("run_shared takes specs that differ only in their OOD set (one "
                         f"training_key), got {len(specs)} specs with "
                         f"{len({s.training_key for s in specs})} training keys")
    trained = train(specs[0], device=device, root=root, download=download)
    rows = []
    for spec in specs:
        this = trained if spec == trained.spec else Run(
            spec, trained.model, load_data(spec, root=root, download=download), trained.losses,
            trained.history, trained.train_time_s)
        rows.append({**spec.row(), **evaluate(this, device=device,
                                              jacobian_method=jacobian_method),
                     "train_time_s": trained.train_time_s})
    return rows


def save_run(trained: Run, path: str | os.PathLike) -> None:
    """Save a run's weights with its spec, atomically; ``load_run`` rebuilds it."""
    save_checkpoint({"spec": trained.spec.as_dict(),
                     "model": {k: v.detach().cpu() for k, v in trained.model.state_dict().items()},
                     "losses": torch.tensor(trained.losses, dtype=torch.float64),
                     "train_time_s": float(trained.train_time_s)}, path)


def load_run(path: str | os.PathLike, *, root: str | os.PathLike | None = None,
             download: bool = False) -> Run:
    """A run saved by ``save_run``, or the training state ``fit`` checkpoints (then the model
    as it was at the saved step), rebuilt exactly: same spec, same data, same weights."""
    state = load_checkpoint(path)
    if "spec" not in state or "model" not in state:
        what = ("a plain state_dict" if state and all(isinstance(v, torch.Tensor)
                                                      for v in state.values())
                else f"a checkpoint with keys {', '.join(sorted(map(str, state))[:6])}")
        raise CheckpointError(f"{path} is {what}, without a run spec: it was not written by "
                              "'python -m companion train' / experiments.save_run. Load its "
                              "weights with model.load_state_dict after experiments.build(spec)")
    spec = RunSpec.from_dict(state["spec"])
    osr = load_data(spec, root=root, download=download)
    model = build(spec, osr)
    model.load_state_dict(state["model"])
    losses = state["losses"].tolist() if "losses" in state else []
    return Run(spec, model.eval(), osr, losses, [], float(state.get("train_time_s", "nan")))


# --------------------------------------------------------------------------------------------------
# results files


class ResultsFile:
    """A CSV of result rows, one per spec hash, written atomically.

    Reading skips (with a warning naming the file and line) rows that an interrupted write tore,
    and refuses (``ValueError``) a file that is not a results file. Each ``append`` rewrites the
    whole file through a temporary file and a rename, so the file on disk is always complete.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.rows: dict[str, dict] = {}
        if self.path.exists():
            self.rows = {row["spec"]: row for row in self._read()}

    def _read(self) -> list[dict]:
        text = self.path.read_text(encoding="utf-8", errors="replace")
        lines = list(csv.reader(io.StringIO(text)))
        if not lines or "spec" not in lines[0] or "label" not in lines[0]:
            raise ValueError(f"{self.path} is not a companion results file (its header has no "
                             "'spec' and 'label' columns); choose another --out or move it away")
        header, good = lines[0], []
        spec_col = header.index("spec")
        # A row torn by an interrupted write is short, or ends the file without its newline.
        # Rows may differ in which metrics they have (macro_f1_ only with a validation split,
        # scores added later), so an empty metric cell alone does not mark a row incomplete.
        torn_last = not text.endswith("\n")
        for number, cells in enumerate(lines[1:], start=2):
            if (len(cells) != len(header) or not re.fullmatch(r"[0-9a-f]{12}", cells[spec_col])
                    or (torn_last and number == len(lines))):
                warnings.warn(f"{self.path}, line {number}: an incomplete row (an interrupted "
                              "write?) is skipped and will be recomputed", stacklevel=3)
                continue
            good.append(cells)
        if not good:
            return []
        buffer = io.StringIO()
        csv.writer(buffer).writerows([header] + good)
        buffer.seek(0)
        return _read_csv(buffer).to_dict("records")

    def append(self, row: dict) -> None:
        """Add one row and rewrite the file atomically."""
        self.rows[row["spec"]] = row
        self.write(self.path, list(self.rows.values()))

    @staticmethod
    def write(path: str | os.PathLike, rows: list[dict]) -> None:
        """Write rows to ``path`` through a temporary file and a rename."""
        path = check_output_path(path)
        tmp = path.with_name(f".{path.name}.tmp")
        pd.DataFrame(rows).to_csv(tmp, index=False)
        os.replace(tmp, path)


# pandas >= 3 reads floats back exactly by default (and deprecates the option); older ones need it
_EXACT_FLOATS = {} if int(pd.__version__.split(".")[0]) >= 3 else {"float_precision": "round_trip"}


def _read_csv(buffer) -> pd.DataFrame:
    # A spec hash is 12 hex digits: left to guess, pandas reads "81399439e483" as a float (inf)
    # and "000000000012" as an int, and a resume would miss the row.
    return pd.read_csv(buffer, keep_default_na=False, na_values=[""], dtype={"spec": str},
                       **_EXACT_FLOATS)


def _read_back(df: pd.DataFrame) -> pd.DataFrame:
    """Result rows as they read back from a CSV, so fresh and resumed tables compare equal."""
    return _read_csv(io.StringIO(df.to_csv(index=False)))


# --------------------------------------------------------------------------------------------------
# sweeps


def unique(specs: Iterable[RunSpec]) -> list[RunSpec]:
    """``specs`` without repeats (by hash), in first-seen order."""
    seen: dict[str, RunSpec] = {}
    for spec in specs:
        if not isinstance(spec, RunSpec):
            raise ValueError(f"a sweep takes RunSpecs, got {type(spec).__name__}")
        seen.setdefault(spec.hash, spec)
    return list(seen.values())


def grid(labels: str | Iterable[str], *, datasets: str | Iterable[str] = "digits",
         splits: int | Iterable[int] = 0, seeds: int | Iterable[int] = 0,
         oods: str | Iterable[str] | None = None, fast: bool = False,
         **fields) -> list[RunSpec]:
    """Specs for every dataset x seed x split x label x OOD set (OOD sets innermost, then
    labels, so a partial sweep still compares every label on the same splits), duplicates
    removed. ``oods``: Protocol B's OOD set names (``None``: Protocol A). ``fields`` go to
    ``RunSpec.parse`` (e.g. ``iterations=300``, ``model="resnet18"``, ``val_fraction=0.1``)."""
    as_list = lambda v: [v] if isinstance(v, (str, int)) or v is None else list(v)  # noqa: E731
    return unique(RunSpec.parse(label, dataset=dataset, split=split, seed=seed, fast=fast,
                                ood=ood, **fields)
                  for dataset in as_list(datasets) for seed in as_list(seeds)
                  for split in as_list(splits) for label in as_list(labels)
                  for ood in as_list(oods))


def training_groups(specs: Iterable[RunSpec]) -> list[list[RunSpec]]:
    """``specs`` (duplicates dropped) grouped by ``training_key``: the specs that one trained
    model serves (Protocol-B specs differing only in their OOD set), groups in first-seen
    order. Protocol-A specs are groups of one."""
    groups: dict[str, list[RunSpec]] = {}
    for spec in unique(specs):
        groups.setdefault(spec.training_key, []).append(spec)
    return list(groups.values())


def parse_shard(text: str) -> tuple[int, int]:
    """``"2/8"`` -> ``(2, 8)``: shard 2 of 8 (``0 <= i < n``)."""
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", str(text))
    if not match or not 0 <= int(match[1]) < int(match[2]):
        raise ValueError(f"a shard is i/n with 0 <= i < n, e.g. 0/4, got {text!r}")
    return int(match[1]), int(match[2])


def sweep(specs: Iterable[RunSpec], *, out_csv: str | os.PathLike | None = None,
          resume: bool = True, shard: tuple[int, int] | str | None = None,
          device: torch.device | str | None = None, root: str | os.PathLike | None = None,
          download: bool = False, progress: bool = True) -> pd.DataFrame:
    """Train and evaluate every spec once; one row per spec (duplicates dropped).

    Specs that differ only in their OOD set (Protocol B, same ``training_key``) share one
    trained model: it is trained once and evaluated on each OOD set (``run_shared``); every
    other spec is one ``run``. Rows come in the order given, grouped by training key.

    With ``out_csv`` every finished row is written at once (atomically), and with ``resume``
    rows already there (same spec hash) are read back instead of recomputed (a model is
    trained only if one of its rows is missing); ``resume=False`` starts the file afresh.
    ``shard=(i, n)`` (or ``"i/n"``) runs only the training groups ``i, i+n, ...`` of
    ``training_groups(specs)`` (for Protocol A: specs ``i, i+n, ...``), so n processes with the
    same arguments split the work and one model's rows land in one shard; ``merge`` joins
    their files.
    """
    groups = training_groups(specs)
    if shard is not None:
        i, n = parse_shard(shard) if isinstance(shard, str) else shard
        groups = groups[i::n]
    store = None
    if out_csv is not None:
        check_output_path(out_csv)
        if not resume:
            Path(out_csv).unlink(missing_ok=True)
        store = ResultsFile(out_csv)
    rows = []
    for group in tqdm(groups, desc="runs", disable=not progress):
        todo = [s for s in group if store is None or s.hash not in store.rows]
        if len(todo) == 1:
            fresh = [run(todo[0], device=device, root=root, download=download)]
        else:
            fresh = run_shared(todo, device=device, root=root, download=download) if todo else []
        for row in fresh:
            if store is not None:
                store.append(row)
        computed = {row["spec"]: row for row in fresh}
        rows += [computed[s.hash] if s.hash in computed else store.rows[s.hash] for s in group]
    return _read_back(pd.DataFrame(rows)) if rows else pd.DataFrame()


def merge(paths: Sequence[str | os.PathLike], out_csv: str | os.PathLike | None = None
          ) -> pd.DataFrame:
    """Join results files (e.g. the shards of one sweep): one row per spec hash, the first seen
    kept. Written atomically to ``out_csv`` when given."""
    rows: dict[str, dict] = {}
    for path in paths:
        if not Path(path).exists():
            raise FileNotFoundError(f"no results file at {path}")
        for key, row in ResultsFile(path).rows.items():
            rows.setdefault(key, row)
    if out_csv is not None:
        ResultsFile.write(out_csv, list(rows.values()))
    return _read_back(pd.DataFrame(list(rows.values())))


def _shard_job(specs: list[RunSpec], shard: tuple[int, int], out_csv: str, device) -> str:
    sweep(specs, out_csv=out_csv, shard=shard, device=device, progress=False)
    return out_csv


def submit(specs: Iterable[RunSpec], *, shards: int, folder: str | os.PathLike,
           cluster: str = "slurm", device: str | None = None, **executor_params) -> pd.DataFrame:
    """Run a sweep as ``shards`` jobs through ``submitit`` and merge their results.

    ``cluster``: ``"slurm"`` (a SLURM job array; ``executor_params`` such as
    ``slurm_partition="gpu", gpus_per_node=1, timeout_min=120`` go to
    ``submitit.AutoExecutor.update_parameters``), ``"local"`` (subprocesses on this machine) or
    ``"debug"`` (in this process). Shard ``i`` writes ``folder/shard-i-of-n.csv``; rerunning
    resumes every shard; the merged table goes to ``folder/results.csv``.
    """
    try:
        import submitit
    except ImportError:
        raise ImportError("submit needs submitit: pip install 'companion[cluster]' "
                          "(or pip install submitit)") from None
    if not isinstance(shards, int) or shards < 1:
        raise ValueError(f"shards must be a positive integer, got {shards!r}")
    jobs, folder = unique(specs), Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    executor = submitit.AutoExecutor(folder=folder / "logs", cluster=cluster)
    executor.update_parameters(**executor_params)
    outs = [str(folder / f"shard-{i}-of-{shards}.csv") for i in range(shards)]
    with executor.batch():
        futures = [executor.submit(_shard_job, jobs, (i, shards), out, device)
                   for i, out in enumerate(outs)]
    for future in futures:
        future.result()  # raises the job's exception, with its log, if one failed
    return merge(outs, folder / "results.csv")


# --------------------------------------------------------------------------------------------------
# tables

SUMMARY_METRICS = ("accuracy", *(f"auroc_{s}" for s in SCORE_NAMES), "oscr_max_logit",
                   "oscr_movr", *(f"macro_f1_{s}" for s in SCORE_NAMES), "jac_gap", "dbi",
                   "train_time_s")
"""``summarise``'s default columns (those a table has): the ``macro_f1_`` ones appear only for
runs with a validation split."""
_CONFIG_COLUMNS = tuple(f for f in TrainConfig.__dataclass_fields__)


def summarise(df: pd.DataFrame, columns: Iterable[str] = SUMMARY_METRICS) -> pd.DataFrame:
    """Mean and standard deviation over splits x seeds of each variant of a sweep.

    A variant is a (dataset, model, label), and for Protocol B its OOD set (``ood``, whenever
    a row has one); where runs of one variant differ in a training setting (iterations, lr,
    val_fraction, ...), that column joins the grouping. One row per variant with columns
    ``(metric, "mean")`` / ``(metric, "std")`` and ``("runs", "count")``; the std is the sample
    std (ddof 1), NaN for a single run. A metric missing from some rows (``macro_f1_`` without a
    validation split) is averaged over the rows that have it.
    """
    keys = ["dataset", "model", "label"]
    if "ood" in df.columns and df["ood"].replace("", float("nan")).notna().any():
        keys.append("ood")
    varying = [c for c in _CONFIG_COLUMNS + ("image_size", "val_fraction") if c in df.columns
               and (df.groupby(keys, sort=False, dropna=False)[c].nunique(dropna=False)
                    > 1).any()]
    keys += varying
    cols = [m for m in columns if m in df.columns]
    grouped = df.groupby(keys, sort=False, dropna=False)
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
