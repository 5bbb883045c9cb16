"""Training and inference loops.

``fit`` trains a model with the loss of its head (``model.head.loss(z, y)``, see
``companion.losses``; plain cross-entropy for an ``nn.Linear`` head), SGD with momentum and a
cosine learning-rate schedule *by iteration* (the paper's schedules are stated in iterations),
optional augmentation, rotation self-supervision and mixed precision, callbacks that log during
training, and atomic checkpoints it can resume from bit-for-bit. ``predict`` runs a model over a
dataset in eval mode and returns embeddings, logits and labels.

Checkpoints hold tensors and primitives only and are read with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import dataclasses
import os
import random
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, default_collate
from tqdm.auto import tqdm

from . import metrics, runtime
from .jacobian import jacobian_norm
from .losses import RotationSSL

AUGMENTATIONS = ("auto", "none")

Callback = Callable[[int, nn.Module], dict]
"""``callback(step, model) -> {name: value}``: called in eval mode every ``log_every`` steps."""


@dataclass(frozen=True)
class TrainConfig:
    """Hyperparameters of one training run.

    The learning rate follows a cosine from ``lr`` (iteration 0) to ``lr_min`` (last iteration).
    ``augment="auto"`` picks by input shape (see ``augment_batch``); ``"none"`` turns it off.
    ``ssl_weight > 0`` adds that weight x the rotation self-supervision loss. ``amp=None`` means
    mixed precision on CUDA (bf16 where supported, else fp16 with a gradient scaler), off on CPU.
    With ``checkpoint_path`` set, the training state is saved there atomically every
    ``checkpoint_every`` steps (0: only at the end); ``resume=True`` continues from it if it exists.
    ``log_every > 0`` runs the callbacks every that many steps.
    """

    iterations: int = 2000
    batch_size: int = 128
    lr: float = 0.05
    lr_min: float = 1e-5
    momentum: float = 0.9
    weight_decay: float = 5e-4
    seed: int = 0
    augment: str = "auto"
    ssl_weight: float = 0.0
    amp: bool | None = None
    checkpoint_path: str | None = None
    checkpoint_every: int = 0
    resume: bool = False
    log_every: int = 0

    def __post_init__(self):
        for name in ("iterations", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("weight_decay", "ssl_weight", "checkpoint_every", "log_every"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not 0 <= self.lr_min <= self.lr:
            raise ValueError(f"need 0 <= lr_min <= lr, got lr={self.lr}, lr_min={self.lr_min}")
        if self.augment not in AUGMENTATIONS:
            raise ValueError(f"unknown augment {self.augment!r}; valid: {', '.join(AUGMENTATIONS)}")
        if self.checkpoint_path is not None:  # a plain str, so the config saves as primitives
            object.__setattr__(self, "checkpoint_path", os.fspath(self.checkpoint_path))

    @classmethod
    def paper_vgg32(cls, **overrides) -> TrainConfig:
        """The paper's classifier32 schedule: 20k iterations of batch 128, lr 0.1 -> 1e-5 cosine."""
        return cls(**{"iterations": 20_000, "batch_size": 128, "lr": 0.1, "lr_min": 1e-5,
                      "momentum": 0.9, **overrides})

    @classmethod
    def paper_resnet18(cls, train_size: int, **overrides) -> TrainConfig:
        """The paper's ResNet-18 schedule: 200 epochs of batch 128 over ``train_size`` samples
        (full batches only, as ``fit`` draws them), lr 0.06 -> 0 cosine."""
        iterations = 200 * max(1, train_size // 128)
        return cls(**{"iterations": iterations, "batch_size": 128, "lr": 0.06, "lr_min": 0.0,
                      "momentum": 0.9, **overrides})


# --------------------------------------------------------------------------------------------------
# data order and augmentation


class _BatchOrder:
    """Shuffled index batches, a fresh permutation each pass over the data (the last partial
    batch of a pass is dropped). Its whole state is ``(perm, pos)``, so it checkpoints exactly."""

    def __init__(self, n: int, batch_size: int, generator: torch.Generator):
        if batch_size > n:
            raise ValueError(f"batch_size {batch_size} exceeds the training set size {n}")
        self.n, self.batch_size, self.generator = n, batch_size, generator
        self.perm, self.pos = torch.empty(0, dtype=torch.int64), 0

    def next(self) -> torch.Tensor:
        if self.pos + self.batch_size > len(self.perm):
            self.perm, self.pos = torch.randperm(self.n, generator=self.generator), 0
        self.pos += self.batch_size
        return self.perm[self.pos - self.batch_size:self.pos]

    def state_dict(self) -> dict:
        return {"perm": self.perm.clone(), "pos": self.pos}

    def load_state_dict(self, state: dict) -> None:
        self.perm, self.pos = state["perm"], int(state["pos"])


def _random_crop(x: torch.Tensor, pad: int, generator: torch.Generator) -> torch.Tensor:
    """Zero-pad a batch ``(N, C, H, W)`` by ``pad`` and crop each image back to ``H x W`` at a
    random offset: a random shift by up to ``pad`` pixels each way."""
    n, c, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad))
    dy, dx = (torch.randint(0, 2 * pad + 1, (2, n), generator=generator)).to(x.device)
    rows = (dy[:, None] + torch.arange(h, device=x.device))[:, None, :, None]
    cols = (dx[:, None] + torch.arange(w, device=x.device))[:, None, None, :]
    return padded[torch.arange(n, device=x.device)[:, None, None, None],
                  torch.arange(c, device=x.device)[None, :, None, None], rows, cols]


def augment_batch(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """The ``augment="auto"`` transform of a batch, chosen by its shape.

    Images of side >= 32 ``(N, C, 32, 32)``: random crop with 4-pixel zero padding and a random
    horizontal flip (the CIFAR recipe). Smaller images (8x8 digits): a random shift by up to 1
    pixel each way, no flip (a flipped digit is another glyph). Vectors ``(N, d)``: unchanged.
    Random draws come from ``generator`` (CPU), so a seeded run is repeatable on any device.
    """
    if x.ndim != 4:
        return x
    if min(x.shape[-2:]) < 32:
        return _random_crop(x, 1, generator)
    x = _random_crop(x, 4, generator)
    flip = (torch.rand(len(x), generator=generator) < 0.5).to(x.device)
    return torch.where(flip[:, None, None, None], x.flip(-1), x)


# --------------------------------------------------------------------------------------------------
# checkpoints


class CheckpointError(ValueError):
    """A checkpoint file that cannot be read: truncated, corrupt, or not one of ours."""


def save_checkpoint(state: dict, path: str | os.PathLike) -> None:
    """Write ``state`` (tensors and primitives) to ``path`` atomically.

    It goes to a temporary file in the same folder first and is renamed over ``path`` only when
    complete, so an interruption never leaves a half-written checkpoint behind.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """Read a checkpoint written by ``save_checkpoint`` with ``weights_only=True``.

    Raises ``FileNotFoundError`` for a missing file and ``CheckpointError`` naming the file for a
    truncated, corrupt or foreign one.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # torch raises RuntimeError, UnpicklingError, EOFError, ... here
        raise CheckpointError(f"cannot read checkpoint {path}: the file is truncated, corrupt or "
                              f"not a companion checkpoint ({type(e).__name__}: {e}); delete it "
                              f"to start afresh") from e
    if not isinstance(state, dict):
        raise CheckpointError(f"checkpoint {path} holds a {type(state).__name__}, not a dict")
    return state


def _rng_state(order_generator: torch.Generator) -> dict:
    """Every random state a training step reads, as tensors and primitives."""
    _, mt, pos, has_gauss, gauss = np.random.get_state()
    version, py_state, py_gauss = random.getstate()
    return {
        "order": order_generator.get_state(),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {"mt": torch.from_numpy(mt.astype(np.int64)), "pos": pos,
                  "has_gauss": has_gauss, "gauss": gauss},
        "python": {"version": version, "state": torch.tensor(py_state, dtype=torch.int64),
                   "gauss": py_gauss},
    }


def _set_rng_state(state: dict, order_generator: torch.Generator) -> None:
    order_generator.set_state(state["order"])
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    np_state = state["numpy"]
    np.random.set_state(("MT19937", np_state["mt"].numpy().astype(np.uint32), np_state["pos"],
                         np_state["has_gauss"], np_state["gauss"]))
    py = state["python"]
    random.setstate((py["version"], tuple(py["state"].tolist()), py["gauss"]))


_RESUME_IGNORES = {"checkpoint_path", "checkpoint_every", "resume", "log_every"}


def _check_same_run(saved: dict, config: TrainConfig, path: Path) -> None:
    """A checkpoint may only be resumed by the run that wrote it (same hyperparameters)."""
    now = dataclasses.asdict(config)
    diff = [k for k in now if k not in _RESUME_IGNORES and saved.get(k) != now[k]]
    if diff:
        raise ValueError(f"checkpoint {path} was written with a different config: "
                         + ", ".join(f"{k}={saved.get(k)!r} there vs {now[k]!r} now"
                                     for k in diff))


# --------------------------------------------------------------------------------------------------
# the loop


def _amp_dtype(device: torch.device, amp: bool | None) -> torch.dtype | None:
    """Autocast dtype, or None for full float32: AMP runs only on CUDA."""
    if device.type != "cuda" or amp is False:
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def _loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The head's training loss, or cross-entropy on the logits for a plain linear head."""
    head_loss = getattr(model.head, "loss", None)
    if head_loss is None:
        return F.cross_entropy(model(x)[1], y)
    return head_loss(model.embed(x), y).loss


def fit(model: nn.Module, train_set: Dataset, config: TrainConfig = TrainConfig(), *,
        device: torch.device | None = None, progress: bool = True,
        callbacks: Sequence[Callback] = (), history: list[dict] | None = None) -> list[float]:
    """Train ``model`` (``model(x) -> (z, logits)``, with ``model.head``) on ``train_set``.

    Returns the training loss of every iteration (the head's loss plus ``ssl_weight`` x the
    rotation loss). The run is seeded by ``config.seed``: the same config, model initialisation
    and data give the same weights on CPU, and a run resumed from a checkpoint ends with exactly
    the weights of an uninterrupted one.

    Every ``config.log_every`` steps each callback is called as ``callback(step, model)`` with the
    model in eval mode (train mode is restored after); their dicts, merged with ``{"step": step}``,
    are appended to ``history`` when a list is given. A callback may raise to stop training.

    With ``config.ssl_weight > 0`` a ``RotationSSL`` classifier is created here and trained with
    the model. It is a training aid only, so it is not attached to the model: it lives in the
    training checkpoint (key ``"ssl"``) and is dropped when ``fit`` returns.

    The checkpoint (``config.checkpoint_path``) holds model, optimizer, scheduler, grad scaler,
    SSL classifier, step, losses, the data order and every RNG state; ``config.resume=True``
    continues from it when the file exists (else starts afresh) and refuses one written with
    other hyperparameters. Batches are assembled in the main process (the datasets here are
    in-memory), which keeps the data order an exact, checkpointable state.
    """
    device = torch.device(device) if device is not None else runtime.device()
    order_generator = runtime.seed_everything(config.seed)
    model.to(device).train()
    ssl = RotationSSL(model.embed_dim).to(device) if config.ssl_weight > 0 else None
    params = list(model.parameters()) + (list(ssl.parameters()) if ssl else [])
    optimizer = torch.optim.SGD(params, lr=config.lr, momentum=config.momentum,
                                weight_decay=config.weight_decay)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(
        optimizer, T_max=config.iterations, eta_min=config.lr_min)
    amp_dtype = _amp_dtype(device, config.amp)
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)
    order = _BatchOrder(len(train_set), config.batch_size, order_generator)
    pin = device.type == "cuda"
    losses: list[float] = []

    path = Path(config.checkpoint_path) if config.checkpoint_path else None
    if config.resume and path is not None and path.exists():
        state = load_checkpoint(path)  # on CPU, where RNG states live; weights move on load
        _check_same_run(state["config"], config, path)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        if ssl is not None:
            ssl.load_state_dict(state["ssl"])
        order.load_state_dict(state["order"])
        _set_rng_state(state["rng"], order_generator)
        losses = state["losses"].tolist()

    def checkpoint(step: int) -> None:
        save_checkpoint({
            "step": step, "config": dataclasses.asdict(config), "model": model.state_dict(),
            "optimizer": optimizer.state_dict(), "scheduler": schedule.state_dict(),
            "scaler": scaler.state_dict(), "ssl": ssl.state_dict() if ssl else None,
            "order": order.state_dict(), "rng": _rng_state(order_generator),
            "losses": torch.tensor(losses, dtype=torch.float64),
        }, path)

    bar = tqdm(range(len(losses) + 1, config.iterations + 1), desc="fit", disable=not progress,
               leave=False, initial=len(losses), total=config.iterations)
    for step in bar:
        x, y = default_collate([train_set[i] for i in order.next().tolist()])
        if pin:  # page-locked memory lets the copy overlap with the previous step's compute
            x, y = x.pin_memory(), y.pin_memory()
        x, y = x.to(device, non_blocking=pin), y.to(device, non_blocking=pin)
        if config.augment == "auto":
            x = augment_batch(x, order_generator)
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            loss = _loss(model, x, y)
            if ssl is not None:
                loss = loss + config.ssl_weight * ssl.loss(model.embed, x)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        schedule.step()
        losses.append(loss.item())

        every = config.checkpoint_every
        if path is not None and (step == config.iterations or (every and step % every == 0)):
            checkpoint(step)
        if config.log_every and callbacks and step % config.log_every == 0:
            model.eval()
            row = {"step": step}
            for callback in callbacks:
                row.update(callback(step, model))
            model.train()
            if history is not None:
                history.append(row)
            bar.set_postfix({k: f"{v:.3g}" for k, v in row.items() if isinstance(v, float)})
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
        zs.append(z.float().cpu())
        logits.append(out.float().cpu())
        labels.append(torch.as_tensor(y))
    return torch.cat(zs), torch.cat(logits), torch.cat(labels)


# --------------------------------------------------------------------------------------------------
# callbacks


def _model_device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def unit_embedding(model: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    """``x -> z / ||z||``: the unit-normalised embedding whose Jacobian norm the book scores.

    The direction of ``z`` is what every head's decision depends on (cosine heads by design;
    SCE's softmax mostly so). On digits the Jacobian norm of the raw SCE embedding barely tells
    knowns from unknowns (AUROC about 0.5, its scale dominates) while that of the unit-normalised
    one does (about 0.9), so it is used for every loss.
    """
    return lambda x: F.normalize(model.embed(x), dim=1)


class JacobianGapCallback:
    """Logs the mean Jacobian norm of the unit-normalised embedding on fixed known and unknown
    inputs, and the gap ``jac_gap = jac_unknown - jac_known`` (positive when unknowns are more
    sensitive, as the paper predicts).

    Uses the Hutchinson estimator with ``num_projections`` projections drawn from a generator
    re-seeded with ``seed`` at every call, so successive values differ only because the model did.
    The cost is paid every ``log_every`` steps: on 2 CPU cores, 128 + 128 digits with 4
    projections took about 5 training steps' time (digits CNN, batch 64), i.e. 10% of training at
    ``log_every=50`` and 5% at 100.
    """

    def __init__(self, x_known: torch.Tensor, x_unknown: torch.Tensor, num_projections: int = 4,
                 seed: int = 0):
        if len(x_known) == 0 or len(x_unknown) == 0:
            raise ValueError(f"need known and unknown inputs, got {len(x_known)} known and "
                             f"{len(x_unknown)} unknown")
        self.x_known, self.x_unknown = x_known, x_unknown
        self.num_projections, self.seed = num_projections, seed

    def __call__(self, step: int, model: nn.Module) -> dict:
        device = _model_device(model)
        fn = unit_embedding(model)
        generator = torch.Generator().manual_seed(self.seed)  # CPU: same draws on any device
        known, unknown = (
            jacobian_norm(fn, x.to(device), "hutchinson", num_projections=self.num_projections,
                          generator=generator, progress=False).mean().item()
            for x in (self.x_known, self.x_unknown))
        return {"jac_known": known, "jac_unknown": unknown, "jac_gap": unknown - known}


class EvalCallback:
    """Logs ``dbi`` (Davies-Bouldin index of the known test embeddings; lower = more compact),
    ``accuracy`` (closed-set, on the known test set) and ``auroc`` of the max-logit score (higher
    score = more likely known) for known vs unknown test samples."""

    def __init__(self, test_known: Dataset, test_unknown: Dataset):
        self.test_known, self.test_unknown = test_known, test_unknown

    def __call__(self, step: int, model: nn.Module) -> dict:
        device = _model_device(model)
        z, logits, labels = predict(model, self.test_known, device=device)
        _, logits_unknown, _ = predict(model, self.test_unknown, device=device)
        return {"dbi": metrics.davies_bouldin(z, labels),
                "accuracy": metrics.accuracy(logits.argmax(1), labels),
                "auroc": metrics.auroc(logits.amax(1), logits_unknown.amax(1))}
