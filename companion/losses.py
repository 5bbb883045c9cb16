"""Losses as classification heads, and rotation self-supervision.

A loss here is a **head**: an ``nn.Module`` that replaces ``model.head`` (``z -> logits``), so the
logits a model returns are always the ones its loss defines. Every head has

- ``head(z) -> logits`` of shape ``(N, K)``: the inference logits (no margin);
- ``head.loss(z, y) -> LossOutput(loss, logits)``: the training loss, averaged over the batch, and
  the training-time logits (with the margin, for m-OvR);
- ``head.prototypes -> (K, d)``: the class prototypes the scores in ``companion.scores`` use.

``build_head(name, embed_dim, num_classes, **kwargs)`` builds one by name:

========== ================== ============================================================
name       class              loss
========== ================== ============================================================
``sce``    ``SoftmaxHead``    softmax cross-entropy on a linear layer with bias
``center`` ``CenterHead``     SCE + ``center_weight`` x center loss (Wen et al. 2016)
``ovr``    ``OvRHead``        one-vs-rest binary cross-entropy on scaled cosine similarities
``movr``   ``MOvRHead``       the same with an additive angular margin at training (m-OvR)
``intra``  ``IntraClassHead`` the intra-class term alone, ``1 - cos(z, w_y)`` (an ablation)
========== ================== ============================================================

``WithCompaction(head, weight)`` adds ``weight`` x that intra-class term to any head.

Typical use: ``model.head = build_head("movr", model.embed_dim, model.num_classes)``, then
``z, _ = model(x); out = model.head.loss(z, y)``. ``RotationSSL`` adds the rotation-prediction
task to any of them; the training loop weights it by ``DEFAULT_SSL_WEIGHT``.
"""

from __future__ import annotations

import math
from typing import Callable, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

DEFAULT_SCALE = 32.0  # T in the paper
DEFAULT_MARGIN = 0.5  # m in the paper, radians
DEFAULT_SCALE_WARMUP = 100  # our addition: steps over which OvR/m-OvR ramp T up (0: off)
DEFAULT_CENTER_WEIGHT = 0.1  # our choice: the paper states no center-loss weight
DEFAULT_SSL_WEIGHT = 0.1  # lambda_self in the paper
MARGIN_MODES = ("target", "all", "signed")


class LossOutput(NamedTuple):
    """What ``head.loss(z, y)`` returns: the scalar batch loss and training logits ``(N, K)``."""

    loss: torch.Tensor
    logits: torch.Tensor


def sample_ovr_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """One-vs-rest loss of each sample, ``(N, K), (N,) -> (N,)``.

    ``-sum_k [1{y=k} log sigmoid(a_k) + 1{y!=k} log(1 - sigmoid(a_k))]`` for logits ``a``: summed
    over the classes, not averaged. ``log(1 - sigmoid(a)) = logsigmoid(-a)`` keeps it finite for
    any logit (the naive form gives ``log 0`` once ``sigmoid`` rounds to 1).
    """
    target = F.one_hot(y, logits.shape[1]).to(logits.dtype)
    return -(target * F.logsigmoid(logits) + (1 - target) * F.logsigmoid(-logits)).sum(dim=1)


def add_angle(cos: torch.Tensor, delta: torch.Tensor | float) -> torch.Tensor:
    """``cos(arccos(cos) + delta)``, kept decreasing in the angle where ``theta + delta`` leaves
    ``[0, pi]``; ``delta`` broadcasts against ``cos``. Computed in at least float32.

    Outside ``[0, pi]`` the shifted cosine turns back: past ``pi`` a target's logit would *grow* as
    its sample moves further away. There we use ``cos(theta) + sign(delta) (cos(delta) - 1)``
    instead, a cosine shifted by a constant that joins the angular curve continuously at
    ``theta = pi - delta`` (or ``-delta`` when negative) and keeps decreasing. ArcFace meets the
    same point with ``cos(theta) - m sin(m)``, which jumps at the junction; this one does not.

    ``cos`` is clamped to ``[-1 + eps, 1 - eps]`` first: rounding can put a cosine past ``+-1``,
    where ``arccos`` is nan, and at ``+-1`` its slope is infinite.
    """
    # in half precision the clamp below would cut at 2.5 degrees from alignment
    cos = cos.to(torch.promote_types(cos.dtype, torch.float32))
    eps = torch.finfo(cos.dtype).eps
    cos = cos.clamp(-1 + eps, 1 - eps)
    delta = torch.as_tensor(delta, dtype=cos.dtype, device=cos.device)
    shifted = torch.arccos(cos) + delta
    inside = (shifted >= 0) & (shifted <= math.pi)
    return torch.where(inside, torch.cos(shifted), cos + torch.sign(delta) * (torch.cos(delta) - 1))


class SoftmaxHead(nn.Linear):
    """Softmax cross-entropy (SCE) on a linear layer with bias.

    A plain ``nn.Linear`` (so a model's ``head.weight``/``head.bias`` keep their names); the
    prototypes are the rows of its weight.
    """

    def __init__(self, embed_dim: int, num_classes: int):
        super().__init__(embed_dim, num_classes)

    @property
    def prototypes(self) -> torch.Tensor:
        """The weight rows ``w_k``, ``(K, d)``."""
        return self.weight

    def loss(self, z: torch.Tensor, y: torch.Tensor) -> LossOutput:
        """Mean cross-entropy of ``softmax(W z + b)``; ``z (N, d)``, ``y (N,)``."""
        logits = self(z)
        return LossOutput(F.cross_entropy(logits, y), logits)


class CenterHead(SoftmaxHead):
    """SCE plus ``center_weight`` x the center loss of Wen et al. (2016).

    Center loss: ``0.5 * mean_i ||z_i - c_{y_i}||^2`` -- averaged over the batch (Wen et al. sum
    over it) so the weight does not depend on the batch size. The centers ``c_k`` are an
    ``nn.Parameter`` trained by the same optimizer and learning rate as the network; Wen et al.
    instead move each center towards its class mean with a separate rate ``alpha``. With the
    shared optimizer a center's step is ``lr * center_weight`` times its mean offset, so they move
    slowly unless ``center_weight`` is large.
    """

    def __init__(self, embed_dim: int, num_classes: int,
                 center_weight: float = DEFAULT_CENTER_WEIGHT):
        super().__init__(embed_dim, num_classes)
        if center_weight < 0:
            raise ValueError(f"center_weight must be >= 0, got {center_weight}")
        self.center_weight = center_weight
        self.centers = nn.Parameter(torch.randn(num_classes, embed_dim))

    @property
    def prototypes(self) -> torch.Tensor:
        """The class centers ``c_k``, ``(K, d)``."""
        return self.centers

    def loss(self, z: torch.Tensor, y: torch.Tensor) -> LossOutput:
        """``SCE + center_weight * 0.5 * mean_i ||z_i - c_{y_i}||^2``; logits are SCE's."""
        sce, logits = super().loss(z, y)
        center = 0.5 * (z - self.centers[y]).pow(2).sum(dim=1).mean()
        return LossOutput(sce + self.center_weight * center, logits)


class OvRHead(nn.Module):
    """One-vs-rest on cosine similarities: ``s_k = cos(z, w_k)``, ``p_k = sigmoid(T s_k)``.

    Loss: ``sample_ovr_loss(T s, y)`` (summed over the ``K`` binary problems) averaged over the
    batch. Inference logits: ``T s_k``. Prototypes: the unit vectors ``w_k / ||w_k||``.
    Initialised with rows of norm about 1, so weight updates turn them at a useful rate.

    **Scale warm-up** (``scale_warmup``, our addition, for OvR and m-OvR alike; ``0`` is the
    paper's recipe exactly). For its first ``scale_warmup`` training steps the loss uses ``T * t / scale_warmup`` at step ``t``
    instead of ``T``; from then on it is the paper's loss. The reason is the size of the first
    steps: the gradient of a cosine with respect to ``z`` is ``T / ||z||`` times a unit-scale
    term, so an SGD step turns an embedding by an angle proportional to ``lr * T / ||z||^2``.
    An untrained backbone whose embedding is short (the digits SmallCNN's starts at ``||z||``
    of about 0.4, and points the same way for every input) takes steps far longer than the
    embedding itself: within 50 steps ``||z||`` grows a few hundred-fold and the prototypes'
    norms about tenfold, while the non-target terms push every prototype away from the one
    direction all samples share, so they crowd together (Proposition 2's collapse, as a
    transient). The grown norms then slow every later turn by the square of that growth, and
    whether a run separates its crowded prototypes within its schedule is luck: with ``T = 32``
    from step 0, 9 of 30 m-OvR digits runs (5 splits x 6 seeds, 500 steps) ended with a
    training loss above ``ln 2`` (10 of 30 with ``+aug+wd+ssl``, 12 of 30 without the margin,
    i.e. plain OvR); with the 100-step warm-up none did (book, chapter 6). After the warm-up the loss is exactly the paper's; ``scale_warmup=0`` (label
    ``movr:scale_warmup=0``) trains with the paper's recipe from the first step. The step
    counter is the buffer ``steps`` (saved with the model, like BatchNorm's
    ``num_batches_tracked``); it advances once per call of ``loss`` in training mode with
    gradients on, which is once per step of ``fit``.
    """

    def __init__(self, embed_dim: int, num_classes: int, scale: float = DEFAULT_SCALE,
                 scale_warmup: float = DEFAULT_SCALE_WARMUP):
        super().__init__()
        if scale <= 0:
            raise ValueError(f"scale must be > 0, got {scale}")
        if not (isinstance(scale_warmup, (int, float)) and not isinstance(scale_warmup, bool)
                and math.isfinite(scale_warmup) and scale_warmup >= 0
                and scale_warmup == int(scale_warmup)):
            raise ValueError(f"scale_warmup must be a whole number of steps >= 0, "
                             f"got {scale_warmup!r}")
        self.scale, self.scale_warmup = scale, int(scale_warmup)
        self.weight = nn.Parameter(torch.randn(num_classes, embed_dim) / math.sqrt(embed_dim))
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))

    @property
    def prototypes(self) -> torch.Tensor:
        """Unit-normalised prototypes ``w_k``, ``(K, d)``."""
        return F.normalize(self.weight, dim=1)

    def cosine(self, z: torch.Tensor) -> torch.Tensor:
        """Cosine similarities ``s = cos(z, w_k)``, ``(N, d) -> (N, K)``."""
        return F.normalize(z, dim=1) @ self.prototypes.T

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Inference logits ``T s``, ``(N, K)``."""
        return self.scale * self.cosine(z)

    def training_logits(self, cos: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Logits the loss sees, from cosines ``(N, K)`` and labels ``(N,)``: here ``T s``."""
        return self.scale * cos

    def warmup_factor(self) -> torch.Tensor:
        """``min(1, steps / scale_warmup)`` as a 0-d tensor on the head's device (1 when off)."""
        if self.scale_warmup == 0:
            return torch.ones((), device=self.steps.device)
        return (self.steps.float() / self.scale_warmup).clamp(max=1.0)

    def loss(self, z: torch.Tensor, y: torch.Tensor) -> LossOutput:
        """Mean over the batch of ``sample_ovr_loss`` of the training logits, times the warm-up
        factor while ``steps < scale_warmup``. In training mode with gradients on, counts the
        step first (so the first step uses ``T / scale_warmup``, not 0)."""
        if self.training and torch.is_grad_enabled():
            self.steps += 1
        logits = self.training_logits(self.cosine(z), y)
        if self.scale_warmup:
            logits = logits * self.warmup_factor().to(logits.dtype)
        return LossOutput(sample_ovr_loss(logits, y).mean(), logits)

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys,
                              unexpected_keys, error_msgs):
        # weights saved before the warm-up existed have no step counter: they are trained
        # models, so load them as past the warm-up rather than refuse them
        key = prefix + "steps"
        if key not in state_dict:
            state_dict = {**state_dict, key: torch.tensor(self.scale_warmup, dtype=torch.long)}
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys,
                                      unexpected_keys, error_msgs)



class MOvRHead(OvRHead):
    """Marginal one-vs-rest (m-OvR): OvR whose training logits carry an angular margin ``m``.

    The paper's Eq. (3) writes ``s_k = cos(arccos(w_k . f) + m)`` without saying which classes
    get the margin. ``margin_on`` chooses (``theta_k`` is the angle between ``z`` and ``w_k``):

    ``"target"`` (default)
        ``cos(theta_y + m)`` for the label, plain ``cos(theta_k)`` for the others: ArcFace's
        additive angular margin. A sample reaches ``p_y > 1/2`` only within ``pi/2 - m`` of its
        prototype, while another class rejects it (``p_k < 1/2``) only from ``pi/2`` on, so a
        batch classified with the margin needs prototypes more than ``m`` apart. Chosen because
        it leaves the non-target terms -- and with them Proposition 4's gradients -- exactly
        those of OvR, lets samples sit on their own prototypes at near-zero loss for any ``K``,
        and at the losses training reaches keeps prototypes more than ``2m`` apart
        (Proposition 3, measured in ``tests/test_losses.py``).
    ``"all"``
        ``cos(theta_k + m)`` for every class, Eq. (3) read literally. For non-targets the margin
        works backwards (``p_k < 1/2`` already at ``theta_k > pi/2 - m``): no extra separation.
    ``"signed"``
        ``cos(theta_y + m)`` for the label and ``cos(theta_k - m)`` for the others: a margin
        on both sides of the boundary, so classifying a batch needs prototypes more than ``2m``
        apart. It also asks every non-target of a sample for ``cos < -sin m`` at once; since
        the pairwise cosines of ``K`` unit vectors average at least ``-1/(K-1)``, samples sitting
        on their own prototypes can all satisfy it only if ``sin m < 1/(K-1)`` -- with
        ``m = 0.5``, only for ``K <= 3``.

    Angles are shifted with ``add_angle`` (clamped, kept monotone past ``[0, pi]``). Inference
    logits ``head(z)`` are ``T cos(theta_k)`` with no margin, like OvR's.

    The scale warm-up (``scale_warmup``) is OvR's, see ``OvRHead``.
    """

    def __init__(self, embed_dim: int, num_classes: int, scale: float = DEFAULT_SCALE,
                 margin: float = DEFAULT_MARGIN, margin_on: str = "target",
                 scale_warmup: float = DEFAULT_SCALE_WARMUP):
        super().__init__(embed_dim, num_classes, scale, scale_warmup)
        if margin_on not in MARGIN_MODES:
            raise ValueError(f"unknown margin_on {margin_on!r}; valid: {', '.join(MARGIN_MODES)}")
        if not 0 <= margin < math.pi / 2:
            # at m >= pi/2 the target logit cos(theta + m) is never positive: p_y <= 1/2 always
            raise ValueError(f"margin must be in [0, pi/2) radians, got {margin}")
        self.margin, self.margin_on = margin, margin_on

    def training_logits(self, cos: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """``T * cos(theta_k + delta_k)`` with ``delta`` set by ``margin_on``; ``(N, K)``."""
        is_target = F.one_hot(y, cos.shape[1]).bool()
        off_target = {"target": 0.0, "all": self.margin, "signed": -self.margin}[self.margin_on]
        delta = torch.where(is_target, self.margin, off_target).to(cos.dtype)
        # where delta is 0, pass cos through untouched rather than clamped and round-tripped
        return self.scale * torch.where(delta == 0, cos, add_angle(cos, delta))


def intra_class_term(z: torch.Tensor, prototypes: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``mean_i (1 - cos(z_i, w_{y_i}))`` for ``z (N, d)``, ``prototypes (K, d)`` (any length)
    and labels ``y (N,)``: half the mean squared distance between the unit vectors."""
    cos = (F.normalize(z, dim=1) * F.normalize(prototypes[y], dim=1)).sum(dim=1)
    return (1 - cos).mean()


class IntraClassHead(OvRHead):
    """The intra-class term alone: pull each unit-normalised embedding to its class prototype.

    Loss: ``mean_i (1 - cos(z_i, w_{y_i}))``, which is half the mean squared distance between
    ``z_i / ||z_i||`` and the unit prototype ``w_{y_i}`` -- the intra-class distance of the paper.
    Nothing pushes classes apart, so it is not an open-set loss: the book trains it to separate
    what compaction does (chapter 3) from what separation adds (chapter 4). Logits, prototypes
    and inference as ``OvRHead``.
    """

    def loss(self, z: torch.Tensor, y: torch.Tensor) -> LossOutput:
        """``intra_class_term(z, prototypes, y)`` and the logits ``T s``."""
        return LossOutput(intra_class_term(z, self.prototypes, y), self(z))


class WithCompaction(nn.Module):
    """Any head plus ``weight`` x the intra-class term ``mean_i (1 - cos(z_i, w_{y_i}))``.

    ``w_k`` are the wrapped head's own prototypes (for SCE, its weight rows), so the extra term
    pulls samples and prototypes together while the head's loss keeps classes apart. Inference
    logits and prototypes are the wrapped head's. The book adds it to an already trained model to
    change compaction alone (chapter 3).
    """

    def __init__(self, head: nn.Module, weight: float = 1.0):
        super().__init__()
        if weight < 0:
            raise ValueError(f"weight must be >= 0, got {weight}")
        self.base, self.weight = head, weight

    @property
    def prototypes(self) -> torch.Tensor:
        return self.base.prototypes

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.base(z)

    def loss(self, z: torch.Tensor, y: torch.Tensor) -> LossOutput:
        """The wrapped head's loss plus ``weight * intra_class_term(z, prototypes, y)``."""
        out = self.base.loss(z, y)
        return LossOutput(out.loss + self.weight * intra_class_term(z, self.prototypes, y),
                          out.logits)


HEADS: dict[str, type[nn.Module]] = {
    "sce": SoftmaxHead,
    "center": CenterHead,
    "ovr": OvRHead,
    "movr": MOvRHead,
    "intra": IntraClassHead,
}


def build_head(name: str, embed_dim: int, num_classes: int, **kwargs) -> nn.Module:
    """Build a loss head by name (see ``HEADS``); ``kwargs`` go to its constructor."""
    if name not in HEADS:
        raise ValueError(f"unknown loss {name!r}; valid names: {', '.join(sorted(HEADS))}")
    return HEADS[name](embed_dim, num_classes, **kwargs)


class RotationSSL(nn.Module):
    """Rotation self-supervision (Gidaris et al. 2018): predict which of 0/90/180/270 degrees an
    image was rotated by, with a 4-way linear classifier on the embedding.

    The training loop adds ``DEFAULT_SSL_WEIGHT * ssl.loss(model.embed, x)`` to the head's loss.
    """

    def __init__(self, embed_dim: int):
        super().__init__()
        self.classifier = nn.Linear(embed_dim, 4)

    @staticmethod
    def rotate(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """All four rotations of a batch of square images ``(N, C, H, H)``.

        Returns ``(4N, C, H, H)`` images -- the whole batch turned counter-clockwise by 0, then 90,
        180 and 270 degrees (``torch.rot90`` over the last two dims, rows drawn top to bottom) --
        and their labels ``(4N,)``: ``k`` for a turn of ``90 k`` degrees.
        """
        if x.ndim != 4:
            raise ValueError(f"rotation self-supervision needs images (N, C, H, W), got shape "
                             f"{tuple(x.shape)}")
        if x.shape[-1] != x.shape[-2]:
            raise ValueError(f"rotation self-supervision needs square images, got "
                             f"{x.shape[-2]}x{x.shape[-1]}")
        rotated = torch.cat([torch.rot90(x, k, dims=(-2, -1)) for k in range(4)])
        labels = torch.arange(4, device=x.device).repeat_interleave(len(x))
        return rotated, labels

    def loss(self, embed_fn: Callable[[torch.Tensor], torch.Tensor],
             x: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy of predicting the rotation of every image of ``x`` turned 4 ways."""
        rotated, labels = self.rotate(x)
        return F.cross_entropy(self.classifier(embed_fn(rotated)), labels)
