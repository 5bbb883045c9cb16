"""Per-sample Jacobian norms of a representation, ``||df/dx||_F``.

``fn`` maps a batch ``(N, *input_shape)`` to representations ``(N, d_z)`` -- typically
``model.embed``. Its Jacobian at one sample ``x_i`` is the ``d_z x prod(input_shape)`` matrix
``J_i``; ``jacobian_norm`` returns ``||J_i||_F`` for every sample, three ways:

``"exact"``
    ``d_z`` vector-Jacobian products (VJPs) after one forward pass. The samples of a batch do not
    interact, so the gradient of ``z[:, k].sum()`` with respect to the batch holds row ``k`` of
    every sample's Jacobian at once. A Python loop over ``k`` (``retain_graph``) measured as fast
    as or faster than ``autograd.grad(..., is_grads_batched=True)`` on CPU (0.4-0.6x against
    0.6-0.8x the time of ``d_z`` separate forward+VJP passes, digits CNN and classifier32, 1-2
    threads), and it needs no ``d_z``-fold memory for batched cotangents and gradients.
``"vmap"``
    ``torch.func.vmap(jacrev(...))`` over single samples, in chunks: materialises every ``J_i``.
    A cross-check of ``"exact"`` through a different code path; on CPU it is slower (about 1.5x
    on the digits CNN, 4-5x on classifier32, whose batched conv backward is slow under vmap).
``"hutchinson"``
    A random-projection estimate: for ``v`` with independent Rademacher (+-1) entries,
    ``E ||v^T J||^2 = ||J||_F^2``. Averages ``num_projections = k`` VJPs and returns the square
    root. Among estimators with i.i.d. entries Rademacher has the least variance (Hutchinson
    1990): with ``A = J J^T``, ``Var = 2 (||A||_F^2 - sum_i A_ii^2) / k``, against
    ``2 ||A||_F^2 / k`` for Gaussian ``v``. The relative error of the squared norm is therefore at
    most ``sqrt(2 / k)`` (reached only when ``J`` has rank one and no diagonal mass) and that of
    the norm about half of it, ``<= 1 / sqrt(2 k)``: 18% at ``k = 16`` in the worst case,
    typically much less because ``J`` spreads over many directions.

Conventions: results are float32, detached, on ``x``'s device, one per sample ``(N,)``; autocast
and TF32 are switched off inside (``true_float32``), and gradients are switched on (callers may be
under ``torch.no_grad``).

Safety: per-sample Jacobians of a batch exist only if each output depends on its own input
alone. BatchNorm in training mode normalises with batch statistics (coupling the samples) and
Dropout in training mode is random, so when ``fn`` is an ``nn.Module`` or a bound method of one
(``model.embed``) with such a layer in training mode, ``ValueError`` asks for ``model.eval()``
(likewise for BatchNorm built without running statistics, which uses batch statistics always).
Plain functions and lambdas cannot be inspected: put their models in eval mode yourself.

Speed: for BatchNorm CNNs, ``companion.models.fold_batchnorm(model)`` computes the same function
with the BatchNorms folded into the convs; on CPU that made exact 1.3-2x faster on the digits CNN
and about 10% faster on classifier32. The estimator pays off when ``k`` is well below ``d_z``.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.dropout import _DropoutNd
from tqdm.auto import tqdm

from . import metrics

Fn = Callable[[torch.Tensor], torch.Tensor]

METHODS = ("exact", "vmap", "hutchinson")
DEFAULT_BATCH_SIZE = 256
# Rows (samples x output coordinates) that one vmapped jacrev call handles: bounds its memory to
# about what one exact chunk of DEFAULT_BATCH_SIZE samples x 4 VJPs would hold.
_VMAP_ROWS = 1024
_AUTO_PROGRESS_CHUNKS = 10


def _owner(fn: Fn) -> nn.Module | None:
    """The module behind ``fn``: itself, or the instance of a bound method like ``model.embed``."""
    if isinstance(fn, nn.Module):
        return fn
    owner = getattr(fn, "__self__", None)
    return owner if isinstance(owner, nn.Module) else None


def check_eval_mode(fn: Fn) -> None:
    """Raise ``ValueError`` if ``fn``'s module (``fn`` itself or ``fn.__self__``) has layers
    that couple or randomise samples: BatchNorm or Dropout in training mode, or BatchNorm
    without running statistics. Anything else passes, unchecked."""
    owner = _owner(fn)
    if owner is None:
        return
    offenders = [name or type(owner).__name__ for name, m in owner.named_modules()
                 if m.training and isinstance(m, (_BatchNorm, _DropoutNd))]
    if offenders:
        shown = ", ".join(offenders[:3]) + (", ..." if len(offenders) > 3 else "")
        raise ValueError(
            f"{type(owner).__name__} has BatchNorm/Dropout layers in training mode ({shown}): "
            "BatchNorm would couple the samples of a batch and Dropout makes outputs random, so "
            "per-sample Jacobians are undefined. Call model.eval() first.")
    batch_stats = [name for name, m in owner.named_modules()
                   if isinstance(m, _BatchNorm) and m.running_mean is None]
    if batch_stats:
        raise ValueError(f"{type(owner).__name__} has BatchNorm layers without running statistics "
                         f"({', '.join(batch_stats[:3])}): they normalise with batch statistics "
                         "even in eval mode, so samples are coupled and per-sample Jacobians are "
                         "undefined")


def _check_batch(x: torch.Tensor) -> None:
    if not isinstance(x, torch.Tensor) or x.ndim < 2:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"x must be a batch of shape (N, *input_shape), got shape {shape}; "
                         "for one sample pass x.unsqueeze(0)")


def _check_output(z: torch.Tensor, n: int) -> None:
    if not isinstance(z, torch.Tensor) or z.ndim != 2:
        shape = tuple(z.shape) if isinstance(z, torch.Tensor) else type(z).__name__
        raise ValueError(f"fn must return a 2-D batch of representations (N, d_z), got {shape}; "
                         "for a model returning (z, logits) pass model.embed")
    if z.shape[0] != n:
        raise ValueError(f"fn returned {z.shape[0]} rows for a batch of {n} inputs; "
                         "it must map (N, *input_shape) to (N, d_z)")


def _forward(fn: Fn, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x as a leaf that requires grad, fn(x))``, with the output checked."""
    x = x.detach().requires_grad_(True)
    z = fn(x)
    _check_output(z, x.shape[0])
    if not z.requires_grad:
        raise ValueError("fn's output does not depend differentiably on x "
                         "(does fn detach its input or run under torch.no_grad?)")
    return x, z


def _vjp_sq_norm(z: torch.Tensor, x: torch.Tensor, v: torch.Tensor, retain: bool) -> torch.Tensor:
    """``||v_i^T J_i||^2`` per sample, for cotangents ``v`` of shape ``(N, d_z)``."""
    (g,) = torch.autograd.grad(z, x, v, retain_graph=retain, allow_unused=True)
    if g is None:  # z does not depend on x at all: the Jacobian is zero
        return z.new_zeros(x.shape[0])
    return g.flatten(1).square().sum(1)


def _exact(fn: Fn, x: torch.Tensor, **_) -> torch.Tensor:
    x, z = _forward(fn, x)
    d = z.shape[1]
    sq = z.new_zeros(x.shape[0])
    for k in range(d):
        row_k = torch.zeros_like(z)
        row_k[:, k] = 1.0
        sq += _vjp_sq_norm(z, x, row_k, retain=k < d - 1)
    return sq.sqrt()


def _vmap(fn: Fn, x: torch.Tensor, **_) -> torch.Tensor:
    x = x.detach()
    with torch.no_grad():
        z = fn(x)
    _check_output(z, x.shape[0])
    d = z.shape[1]

    def one(xi: torch.Tensor) -> torch.Tensor:
        return fn(xi.unsqueeze(0)).squeeze(0)

    jac = torch.func.vmap(torch.func.jacrev(one), chunk_size=max(1, _VMAP_ROWS // d))(x)
    return jac.flatten(1).square().sum(1).sqrt()


def _rademacher(shape: tuple[int, ...], generator: torch.Generator | None) -> torch.Tensor:
    """+-1 entries, drawn on the generator's device (CPU by default) so a seed means the same
    draws everywhere; sample-major ``(N, k, d_z)`` so that chunking over N does not change them."""
    device = generator.device if generator is not None else torch.device("cpu")
    bits = torch.randint(0, 2, shape, generator=generator, device=device, dtype=torch.int8)
    return bits * 2 - 1


def _hutchinson(fn: Fn, x: torch.Tensor, *, num_projections: int,
                generator: torch.Generator | None, **_) -> torch.Tensor:
    x, z = _forward(fn, x)
    signs = _rademacher((z.shape[0], num_projections, z.shape[1]), generator).to(z)
    sq = z.new_zeros(x.shape[0])
    for j in range(num_projections):
        sq += _vjp_sq_norm(z, x, signs[:, j], retain=j < num_projections - 1)
    return (sq / num_projections).sqrt()


_IMPLEMENTATIONS = {"exact": _exact, "vmap": _vmap, "hutchinson": _hutchinson}


def jacobian_norm(
    fn: Fn,
    x: torch.Tensor,
    method: str = "exact",
    *,
    num_projections: int = 16,
    generator: torch.Generator | None = None,
    batch_size: int | None = None,
    progress: bool | None = None,
) -> torch.Tensor:
    """Frobenius norm of the input Jacobian of ``fn`` at each sample: ``x (N, *in) -> (N,)``.

    ``fn`` maps ``(N, *in)`` to ``(N, d_z)`` with samples independent (models in ``eval()``).
    ``method`` is ``"exact"``, ``"vmap"`` or ``"hutchinson"`` (estimate with ``num_projections``
    Rademacher projections drawn from ``generator``; same seed, same result). Samples are
    processed ``batch_size`` at a time (default 256); ``progress`` shows a tqdm bar over the
    chunks (``None``: only when there are more than 10). Returns float32 on ``x``'s device.
    """
    if method not in _IMPLEMENTATIONS:
        raise ValueError(f"unknown method {method!r}; valid methods: {', '.join(METHODS)}")
    if isinstance(num_projections, bool) or not isinstance(num_projections, int) \
            or num_projections < 1:
        raise ValueError(f"num_projections must be an int >= 1, got {num_projections!r}")
    batch_size = DEFAULT_BATCH_SIZE if batch_size is None else batch_size
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int or None, got {batch_size!r}")
    _check_batch(x)
    check_eval_mode(fn)
    if not x.is_floating_point():
        x = x.float()
    if x.shape[0] == 0:
        return torch.zeros(0, device=x.device)

    chunks = x.split(batch_size)
    show = len(chunks) > _AUTO_PROGRESS_CHUNKS if progress is None else progress
    impl = _IMPLEMENTATIONS[method]
    norms = []
    with torch.inference_mode(False), torch.enable_grad(), \
            torch.autocast(x.device.type, enabled=False), true_float32():
        if x.is_inference():  # autograd cannot record inference tensors; a plain copy it can
            chunks = x.clone().split(batch_size)
        for chunk in tqdm(chunks, desc=f"jacobian_norm ({method})", disable=not show,
                          leave=False):
            norms.append(impl(fn, chunk, num_projections=num_projections,
                              generator=generator).detach())
    return torch.cat(norms).float()


@contextlib.contextmanager
def true_float32() -> Iterator[None]:
    """Matrix products and convolutions in true float32 inside the block.

    On CUDA, PyTorch lets cuDNN convolutions round their inputs to TF32 (a 10-bit mantissa) by
    default, far coarser than float32's 23 bits: Jacobian norms would then agree with a
    brute-force float32 computation only to about 1e-3. The previous settings are restored after.
    """
    matmul = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        with torch.backends.cudnn.flags(enabled=torch.backends.cudnn.enabled,
                                        benchmark=torch.backends.cudnn.benchmark,
                                        deterministic=torch.backends.cudnn.deterministic,
                                        allow_tf32=False):
            yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = matmul


def _straight_path(x0: torch.Tensor, x1: torch.Tensor,
                   steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``t`` (steps,) evenly spaced in [0, 1] and the inputs ``(1 - t) x0 + t x1``."""
    if x0.shape != x1.shape:
        raise ValueError(f"x0 and x1 must have the same shape (one input each, no batch "
                         f"dimension), got {tuple(x0.shape)} and {tuple(x1.shape)}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 2:
        raise ValueError(f"steps must be an int >= 2, got {steps!r}")
    x0 = x0.detach()
    if not x0.is_floating_point():  # keep a float64 model's dtype; make integer images float
        x0 = x0.float()
    x1 = x1.detach().to(x0)
    t = torch.linspace(0.0, 1.0, steps, device=x0.device, dtype=x0.dtype)
    return t, x0 + t.view(-1, *[1] * x0.ndim) * (x1 - x0)


def jacobian_norm_along_path(fn: Fn, x0: torch.Tensor, x1: torch.Tensor, steps: int = 65,
                             method: str = "exact", **kwargs) -> tuple[torch.Tensor, torch.Tensor]:
    """Jacobian norms on the straight path from ``x0`` to ``x1`` (two single inputs of shape
    ``input_shape``, no batch dimension), as in the paper's interpolation figure (Fig. 4).

    Returns ``(t, norms)``, both ``(steps,)``: ``t`` evenly spaced in [0, 1] (``t = 0`` is
    ``x0``) and the norm at ``(1 - t) x0 + t x1``. ``kwargs`` go to ``jacobian_norm``.
    """
    t, path = _straight_path(x0, x1, steps)
    return t, jacobian_norm(fn, path, method, **kwargs)


@torch.no_grad()
def path_length(fn: Fn, x0: torch.Tensor, x1: torch.Tensor, steps: int = 257,
                batch_size: int = DEFAULT_BATCH_SIZE) -> float:
    """Length of the projected path ``f(gamma)``, ``gamma`` the straight path from ``x0`` to ``x1``.

    The polygon through ``f`` at ``steps`` evenly spaced points: ``sum_i ||f(gamma(t_i+1)) -
    f(gamma(t_i))||_2``, in units of the representation. Inscribed polygons never exceed the curve's
    length, so the value grows towards it as ``steps`` increases (Proposition 1's quantity).
    """
    check_eval_mode(fn)
    _, path = _straight_path(x0, x1, steps)
    z = []
    with true_float32():
        for chunk in path.split(batch_size):
            z.append(fn(chunk))
            _check_output(z[-1], chunk.shape[0])
    z = torch.cat(z).double()
    return float(torch.linalg.vector_norm(z[1:] - z[:-1], dim=1).sum())


# --------------------------------------------------------------------------------------------------
# the representation the book scores, and the known/unknown gap


class UnitEmbedding(nn.Module):
    """``x -> z / ||z||``: the unit-normalised embedding of ``model`` (``model.embed``).

    The direction of ``z`` is what every head's decision depends on (cosine heads by design;
    SCE's softmax mostly so), and the book scores the Jacobian norm of this map for every loss.
    A module, not a lambda, so that ``jacobian_norm``'s eval-mode guard sees the model inside.
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, *input_shape) -> (N, embed_dim)``, rows of unit length."""
        return F.normalize(self.model.embed(x), dim=1)


def unit_embedding(model: nn.Module) -> UnitEmbedding:
    """The unit-normalised embedding ``x -> z / ||z||`` of ``model``, as a module."""
    return UnitEmbedding(model)


@dataclass(frozen=True)
class NormGap:
    """Per-sample Jacobian norms of known and unknown inputs, ``(N_known,)`` and ``(N_unknown,)``
    on the CPU, with the summaries the book reports."""

    known: torch.Tensor
    unknown: torch.Tensor

    @property
    def known_mean(self) -> float:
        return self.known.mean().item()

    @property
    def unknown_mean(self) -> float:
        return self.unknown.mean().item()

    @property
    def gap(self) -> float:
        """``mean(unknown) - mean(known)``: positive when unknowns are more sensitive (Eq. 1)."""
        return self.unknown_mean - self.known_mean

    @property
    def auroc(self) -> float:
        """AUROC of the score ``-norm`` (higher = more likely known) for known vs unknown."""
        return metrics.auroc(-self.known, -self.unknown)


def _as_fn(model_or_fn: nn.Module | Fn, unit: bool) -> Fn:
    if isinstance(model_or_fn, nn.Module) and hasattr(model_or_fn, "embed"):
        return unit_embedding(model_or_fn) if unit else model_or_fn.embed
    if not unit:
        raise ValueError("unit=False needs a model with .embed; a function is used as it is")
    return model_or_fn


def _norms_of(fn: Fn, inputs, method: str, device: torch.device | None,
              batch_size: int, **kwargs) -> torch.Tensor:
    """Norms of a batch tensor, or of a dataset streamed ``batch_size`` samples at a time."""
    if isinstance(inputs, torch.Tensor):
        x = inputs if device is None else inputs.to(device)
        return jacobian_norm(fn, x, method, batch_size=batch_size, **kwargs).cpu()
    if not hasattr(inputs, "batches"):
        raise ValueError(f"inputs must be a tensor (N, *input_shape) or a companion.data.TensorSet, "
                         f"got {type(inputs).__name__}")
    return torch.cat([jacobian_norm(fn, x, method, batch_size=batch_size, **kwargs).cpu()
                      for x, _ in inputs.batches(batch_size, device)])


def norm_gap(model: nn.Module | Fn, known, unknown, method: str = "exact", *,
             unit: bool = True, num_projections: int = 16, seed: int = 0,
             batch_size: int = DEFAULT_BATCH_SIZE, device: torch.device | str | None = None,
             progress: bool | None = False) -> NormGap:
    """Jacobian norms of known and unknown inputs and their gap, in one call.

    ``model``: a model with ``embed`` (scored through its unit-normalised embedding, as the book
    does; ``unit=False`` scores ``model.embed`` itself) or any function ``(N, *in) -> (N, d_z)``.
    ``known`` / ``unknown``: batches ``(N, *input_shape)`` or ``TensorSet``s, streamed in chunks
    of ``batch_size`` (never stacked whole). ``device``: where to compute (default: where the
    model's parameters are). The Hutchinson draws come from a CPU generator seeded with ``seed``
    and continue from known to unknown, so the result does not depend on the device.
    """
    fn = _as_fn(model, unit)
    if device is None and isinstance(model, nn.Module):
        device = next(model.parameters()).device
    device = torch.device(device) if device is not None else None
    generator = torch.Generator().manual_seed(seed)
    kwargs = dict(num_projections=num_projections, generator=generator, progress=progress)
    known_norms, unknown_norms = (_norms_of(fn, inputs, method, device, batch_size, **kwargs)
                                  for inputs in (known, unknown))
    if len(known_norms) == 0 or len(unknown_norms) == 0:
        raise ValueError(f"need known and unknown inputs, got {len(known_norms)} known and "
                         f"{len(unknown_norms)} unknown")
    return NormGap(known_norms, unknown_norms)
