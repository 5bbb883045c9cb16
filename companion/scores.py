"""Unknown-detection scores.

Convention (as in ARPL and OpenOOD): **a higher score means "more likely known"**. Each function
maps a batch of model outputs to one score per sample, shape ``(N,)``, in float32. Inputs may be
torch tensors, NumPy arrays or lists (as for ``companion.metrics``); the result is a tensor on
the input's device (the CPU for NumPy).

============ ========================== ===============================================
name         inputs                     score
============ ========================== ===============================================
msp          logits ``(N, K)``          maximum softmax probability
max_logit    logits ``(N, K)``          maximum logit
cosine       z ``(N, d)``, prototypes   ``max_k cos(z, w_k)``
distance     z ``(N, d)``, prototypes   ``-min_k ||z - w_k||`` (center-loss centers)
movr         z, prototypes, scale T     minus the sample-wise m-OvR loss (Eq. 5)
jacobian     norms ``(N,)``             minus the Jacobian norm ``||df/dx||_F`` of ``f``
feature_norm z ``(N, d)``               the feature norm ``||g(x)||`` (raw embedding)
============ ========================== ===============================================

Here ``z = g(x) = model.embed(x)`` is the raw embedding and ``f = g / ||g||`` its unit-normalised
version. Prototypes are ``head.prototypes`` (``(K, d)``) of a ``companion.losses`` head.

The ``jacobian`` score takes the Jacobian norms of the unit-normalised embedding ``f``,
``||df/dx||_F`` (``companion.jacobian.norm_gap(model, ...)`` or
``jacobian_norm(unit_embedding(model), x)``), as the paper and the book do, not those of the raw
``g``. Since ``J_f = (I - f f^T) J_g / ||g||``, the Jacobian norm of ``f`` shrinks as ``||g||``
grows; the ``feature_norm`` score ``||g||`` itself (higher = more likely known: the observation
behind the Objectosphere loss of Dhamija et al. 2018 and the max-logit baseline of Vaze et al.
2022, that knowns get larger features) is the control that separates the two effects.
``compute_score(name, ...)`` picks the inputs a score needs by name.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from .losses import DEFAULT_SCALE, sample_ovr_loss

ArrayLike = Any  # torch.Tensor, np.ndarray or a list


def _tensor(x: ArrayLike, name: str, ndim: int) -> torch.Tensor:
    """``x`` as a float32 tensor of ``ndim`` dimensions; ``ValueError`` naming it otherwise."""
    if not isinstance(x, torch.Tensor):
        x = torch.as_tensor(np.asarray(x, dtype=np.float32))
    if x.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimension(s), got shape {tuple(x.shape)}")
    return x.float()


def msp(logits: ArrayLike) -> torch.Tensor:
    """Maximum softmax probability, in (0, 1]: ``max_k softmax(logits)_k``; logits ``(N, K)``."""
    return torch.softmax(_tensor(logits, "logits", 2), dim=1).amax(dim=1)


def max_logit(logits: ArrayLike) -> torch.Tensor:
    """Maximum logit (Vaze et al. 2022's MLS): ``max_k logits_k``; logits ``(N, K)``."""
    return _tensor(logits, "logits", 2).amax(dim=1)


def _cosines(z: ArrayLike, prototypes: ArrayLike) -> torch.Tensor:
    """``cos(z_i, w_k)``, ``(N, d), (K, d) -> (N, K)``."""
    z, prototypes = _tensor(z, "z", 2), _tensor(prototypes, "prototypes", 2)
    return F.normalize(z, dim=1) @ F.normalize(prototypes, dim=1).T


def cosine_to_prototype(z: ArrayLike, prototypes: ArrayLike) -> torch.Tensor:
    """Cosine to the nearest prototype, in [-1, 1]: ``max_k cos(z, w_k)``.

    ``z (N, d)``, ``prototypes (K, d)`` (need not be unit-norm) ``-> (N,)``.
    """
    return _cosines(z, prototypes).amax(dim=1)


def prototype_distance(z: ArrayLike, prototypes: ArrayLike) -> torch.Tensor:
    """Minus the Euclidean distance to the nearest prototype, ``<= 0``: ``-min_k ||z - w_k||``.

    For Euclidean prototypes such as center-loss centers. ``z (N, d)``, ``prototypes (K, d)``
    ``-> (N,)``.
    """
    return -torch.cdist(_tensor(z, "z", 2), _tensor(prototypes, "prototypes", 2)).amin(dim=1)


def movr_score(z: ArrayLike, prototypes: ArrayLike,
               scale: float = DEFAULT_SCALE) -> torch.Tensor:
    """Minus the sample-wise m-OvR loss without margin at the predicted class (Eq. 5), ``<= 0``.

    With ``s_k = cos(z, w_k)`` and ``c = argmax_k s_k``:
    ``-( -log sigmoid(T s_c) - sum_{k != c} log(1 - sigmoid(T s_k)) )``. High when the sample is
    close to one prototype and far from all others. ``z (N, d)``, ``prototypes (K, d)`` ``-> (N,)``;
    ``scale`` is the ``T`` the head was trained with.
    """
    cos = _cosines(z, prototypes)
    return -sample_ovr_loss(scale * cos, cos.argmax(dim=1))


def jacobian_score(norms: ArrayLike) -> torch.Tensor:
    """Minus the Jacobian norm: known samples have small ``||df/dx||_F``. ``(N,) -> (N,)``."""
    return -_tensor(norms, "norms", 1)


def feature_norm(z: ArrayLike) -> torch.Tensor:
    """The Euclidean norm of the raw embedding, ``||g(x)||_2 >= 0``: known samples tend to get
    larger features. ``z = model.embed(x)`` ``(N, d) -> (N,)``."""
    return torch.linalg.vector_norm(_tensor(z, "z", 2), dim=1)


class Score(NamedTuple):
    """A score function and the names of the inputs it takes, in order."""

    fn: Callable[..., torch.Tensor]
    inputs: tuple[str, ...]


SCORES: dict[str, Score] = {
    "msp": Score(msp, ("logits",)),
    "max_logit": Score(max_logit, ("logits",)),
    "cosine": Score(cosine_to_prototype, ("z", "prototypes")),
    "distance": Score(prototype_distance, ("z", "prototypes")),
    "movr": Score(movr_score, ("z", "prototypes", "scale")),
    "jacobian": Score(jacobian_score, ("norms",)),
    "feature_norm": Score(feature_norm, ("z",)),
}


def score_inputs(name: str) -> tuple[str, ...]:
    """The inputs score ``name`` takes, e.g. ``("z", "prototypes", "scale")`` for ``"movr"``."""
    if name not in SCORES:
        raise ValueError(f"unknown score {name!r}; valid names: {', '.join(SCORES)}")
    return SCORES[name].inputs


def compute_score(name: str, *, logits: ArrayLike | None = None, z: ArrayLike | None = None,
                  prototypes: ArrayLike | None = None, norms: ArrayLike | None = None,
                  scale: float = DEFAULT_SCALE) -> torch.Tensor:
    """Score ``name`` (higher = more likely known) from whichever inputs it needs, ``(N,)``.

    Pass what you have: inputs the score does not use are ignored, missing ones raise
    ``ValueError``. ``scale`` (the head's ``T``) is used by ``"movr"`` only.
    """
    given = {"logits": logits, "z": z, "prototypes": prototypes, "norms": norms, "scale": scale}
    needed = score_inputs(name)
    missing = [k for k in needed if given[k] is None]
    if missing:
        raise ValueError(f"score {name!r} needs {', '.join(needed)}; missing: {', '.join(missing)}")
    return SCORES[name].fn(*(given[k] for k in needed))
