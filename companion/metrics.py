"""Open-set recognition metrics: AUROC, OSCR, open-set macro-F1, accuracy, Davies-Bouldin index.

**Sign convention: a higher score means "more likely known"** (the ARPL / OpenOOD convention), so
knowns are the positives of every ROC-type metric here. A distance or a Jacobian norm, where large
means unknown, has to be negated first.

- AUROC separates known from unknown test samples (Protocol A of Neal et al. 2018, "Open Set
  Learning with Counterfactual Images").
- OSCR, the open-set classification rate of Dhamija et al. 2018 ("Reducing Network Agnostophobia"),
  also asks the known samples to be classified correctly. ``oscr`` is the exact, tie-aware area;
  ``oscr_arpl`` re-implements the sweep behind the numbers published with the ARPL code base
  (Chen et al. 2020), for comparison only.
- Open-set macro-F1 over the K known classes plus "unknown", with a rejection threshold taken from
  validation knowns: Protocol B, which complements Neal et al.'s benchmark with CIFAR-10 against
  ImageNet / LSUN outliers (the setting of Yoshihashi et al. 2019, "Classification-Reconstruction
  Learning for Open-Set Recognition").
- Closed-set accuracy, the Davies-Bouldin index (cluster quality of the embedding) and the mean
  intra- and inter-class distances it is built from.

Inputs may be lists, NumPy arrays or torch tensors on any device; everything is computed on the CPU
in float64 and returned as Python floats. Bad input (NaN or infinite scores, empty or non-1-D
arrays, mismatched lengths) raises ``ValueError`` naming the offending value.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np
import torch

ArrayLike = Any  # list, np.ndarray or torch.Tensor


# --------------------------------------------------------------------------------------------------
# input checking


def _to_numpy(x: ArrayLike) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu()
        if x.is_floating_point():
            x = x.double()  # bfloat16 has no NumPy counterpart
        return x.numpy()
    return np.asarray(x)


def _as_1d(x: ArrayLike, name: str) -> np.ndarray:
    x = _to_numpy(x)
    if x.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {x.shape}")
    if x.size == 0:
        raise ValueError(f"{name} is empty")
    return x


def _as_scores(x: ArrayLike, name: str) -> np.ndarray:
    x = _as_1d(x, name).astype(np.float64)
    n_nan = int(np.isnan(x).sum())
    if n_nan:
        raise ValueError(f"{name} has {n_nan} NaN values")
    n_inf = int(np.isinf(x).sum())
    if n_inf:
        raise ValueError(f"{name} has {n_inf} infinite values")
    return x


def _as_mask(x: ArrayLike, name: str) -> np.ndarray:
    x = _as_1d(x, name)
    if x.dtype == bool:
        return x
    if x.dtype.kind not in "iuf":
        raise ValueError(f"{name} must hold booleans or 0/1, got dtype {x.dtype}")
    bad = np.setdiff1d(x, [0, 1])  # NaN equals neither, so it is caught too
    if bad.size:
        raise ValueError(f"{name} must hold booleans or 0/1, got values {bad[:5].tolist()}")
    return x.astype(bool)


def _as_classes(x: ArrayLike, name: str, num_classes: int) -> np.ndarray:
    x = _as_1d(x, name)
    if x.dtype.kind not in "iu":
        raise ValueError(f"{name} must hold integer class indices, got dtype {x.dtype}")
    bad = x[(x < 0) | (x >= num_classes)]
    if bad.size:
        raise ValueError(
            f"{name} must lie in 0..{num_classes - 1} (num_classes={num_classes}), "
            f"got {bad[:5].tolist()}"
        )
    return x.astype(np.int64)


def _check_same_length(a: np.ndarray, b: np.ndarray, name_a: str, name_b: str) -> None:
    if len(a) != len(b):
        raise ValueError(f"{name_a} and {name_b} have different lengths ({len(a)} vs {len(b)})")


# --------------------------------------------------------------------------------------------------
# ranking metrics


def _pairs_ranked_above(pos: np.ndarray, neg: np.ndarray) -> float:
    """Mann-Whitney U: #{(i, j): pos_i > neg_j} + 1/2 #{(i, j): pos_i == neg_j}, in O(N log N).

    Binary search of each negative in the sorted positives counts the pairs exactly (integer
    counts, no floating-point rank sums), so ties cost nothing extra.
    """
    pos = np.sort(pos)
    at_most = np.searchsorted(pos, neg, side="right")  # positives <= neg_j
    below = np.searchsorted(pos, neg, side="left")  # positives <  neg_j
    above = len(pos) * len(neg) - int(at_most.sum())
    tied = int((at_most - below).sum())
    return above + 0.5 * tied


def auroc(known_scores: ArrayLike, unknown_scores: ArrayLike) -> float:
    """Area under the ROC curve for telling knowns (positives) from unknowns.

    Higher score = more likely known. ``known_scores`` (N_k,) and ``unknown_scores`` (N_u,) are 1-D.
    Exact and tie-aware: the probability that a random known outscores a random unknown, a tie
    counting 1/2 (the Mann-Whitney U statistic over N_k N_u); 0.5 is chance, 1.0 perfect.
    """
    known = _as_scores(known_scores, "known_scores")
    unknown = _as_scores(unknown_scores, "unknown_scores")
    return float(_pairs_ranked_above(known, unknown) / (len(known) * len(unknown)))


def _oscr_inputs(
    known_scores: ArrayLike, unknown_scores: ArrayLike, known_correct: ArrayLike
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    known = _as_scores(known_scores, "known_scores")
    unknown = _as_scores(unknown_scores, "unknown_scores")
    correct = _as_mask(known_correct, "known_correct")
    _check_same_length(known, correct, "known_scores", "known_correct")
    return known, unknown, correct


def oscr(known_scores: ArrayLike, unknown_scores: ArrayLike, known_correct: ArrayLike) -> float:
    """Open-Set Classification Rate (Dhamija et al. 2018), exact and tie-aware.

    Higher score = more likely known. ``known_scores`` (N_k,), ``unknown_scores`` (N_u,) and
    ``known_correct`` (N_k,), booleans or 0/1: whether each known was classified correctly.

    A threshold t accepts the samples with score >= t. As t sweeps down, the curve of
    CCR(t) = #{correct knowns accepted} / N_k against FPR(t) = #{unknowns accepted} / N_u runs from
    (0, 0) to (1, accuracy); OSCR is the area under it, tied scores joined by a straight segment.
    That area equals accuracy x AUROC(correct knowns vs unknowns), which is how it is computed
    here, so it does not depend on the order of the inputs. 0.0 when no known is correct.
    """
    known, unknown, correct = _oscr_inputs(known_scores, unknown_scores, known_correct)
    # Wrongly classified knowns never raise CCR, so only correct-vs-unknown pairs count.
    pairs = _pairs_ranked_above(known[correct], unknown) if correct.any() else 0.0
    return float(pairs / (len(known) * len(unknown)))


def oscr_arpl(
    known_scores: ArrayLike, unknown_scores: ArrayLike, known_correct: ArrayLike
) -> float:
    """OSCR as swept by the evaluation code of the ARPL code base (Chen et al. 2020).

    Higher score = more likely known; same inputs as :func:`oscr`. Prefer :func:`oscr`: this one
    exists to show how close published OSCR numbers are to the exact area.

    The sweep pools all N scores, sorts them in ascending order and makes one operating point per
    sorted position k (except the top one): FPR counts the unknowns at positions >= k, but CCR
    counts the correct knowns at positions > k, so the sample at k is taken as accepted for one
    rate and rejected for the other. The points, closed by (0, 0), are joined by the trapezoid
    rule (the original also adds a (1, 1) anchor, which spans zero width since the first point
    already has FPR = 1). Two consequences:

    - Even without ties, an unknown whose upper neighbour in the sorted order is a correct known
      loses half a pair, so the result is at most 1 / (2 max(N_k, N_u)) <= 1/N below :func:`oscr`.
    - It is not tie-aware: tied samples are swept one at a time, so a tied (correct known, unknown)
      pair counts 1 or 0, depending on which of the two the sort put first, instead of 1/2. The
      original used NumPy's default sort, whose order among ties is an implementation detail;
      this version sorts stably, so tied knowns always sit below tied unknowns (each such pair
      counts 0: never above :func:`oscr`) and the input order of tied knowns decides where the
      half pairs of the first point are lost. Either way, permuting tied inputs can change it.
    """
    known, unknown, correct = _oscr_inputs(known_scores, unknown_scores, known_correct)
    scores = np.concatenate([known, unknown])
    is_unknown = np.arange(len(scores)) >= len(known)
    is_correct = np.concatenate([correct, np.zeros(len(unknown), dtype=bool)])
    order = np.argsort(scores, kind="stable")
    is_correct, is_unknown = is_correct[order], is_unknown[order]

    correct_above = is_correct.sum() - np.cumsum(is_correct)  # positions > k
    unknown_from = is_unknown.sum() - np.cumsum(is_unknown) + is_unknown  # positions >= k
    ccr = np.append(correct_above[:-1] / len(known), 0.0)
    fpr = np.append(unknown_from[:-1] / len(unknown), 0.0)
    # Both rates fall along k, so the points are already in the original's descending order.
    return float(np.sum((fpr[:-1] - fpr[1:]) * (ccr[:-1] + ccr[1:]) / 2))


# --------------------------------------------------------------------------------------------------
# Protocol B: open-set macro-F1


def rejection_threshold(val_known_scores: ArrayLike, reject_fraction: float = 0.1) -> float:
    """Threshold that rejects (score < t) at most ``reject_fraction`` of the validation knowns.

    Higher score = more likely known. With the n validation scores sorted ascending,
    s_(1) <= ... <= s_(n), and m = floor(reject_fraction * n) (up to float rounding), the threshold
    is t = s_(m+1): exactly m knowns fall below it when s_(m) < s_(m+1), fewer under ties, and no
    threshold rejects more without exceeding the fraction. ``reject_fraction`` is in [0, 1).
    """
    scores = np.sort(_as_scores(val_known_scores, "val_known_scores"))
    if not 0.0 <= reject_fraction < 1.0:
        raise ValueError(f"reject_fraction must be in [0, 1), got {reject_fraction!r}")
    # The epsilon keeps e.g. 0.29 * 100 = 28.999999999999996 from flooring to 28.
    m = math.floor(reject_fraction * len(scores) + 1e-9)
    return float(scores[m])


def open_set_f1(
    known_scores: ArrayLike,
    known_pred: ArrayLike,
    known_labels: ArrayLike,
    unknown_scores: ArrayLike,
    unknown_pred: ArrayLike,
    *,
    threshold: float,
    num_classes: int,
) -> float:
    """Macro-F1 over K + 1 classes: the K known classes and "unknown" (label K).

    Higher score = more likely known. A sample is predicted as its closed-set prediction
    (``known_pred`` (N_k,) / ``unknown_pred`` (N_u,), in 0..K-1) when its score >= ``threshold``,
    else as unknown. Knowns carry ``known_labels`` (N_k,); every unknown's true label is K.
    Accepted unknowns count as false positives of the class they were predicted as, which is why
    their closed-set predictions are needed. A class never true nor predicted has F1 = 0
    (as in ``sklearn.metrics.f1_score(..., labels=range(K + 1), zero_division=0)``).
    """
    is_int = isinstance(num_classes, (int, np.integer)) and not isinstance(num_classes, bool)
    if not is_int or num_classes < 1:
        raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
    threshold = float(threshold)
    if math.isnan(threshold):
        raise ValueError("threshold is NaN")
    k_scores = _as_scores(known_scores, "known_scores")
    u_scores = _as_scores(unknown_scores, "unknown_scores")
    k_pred = _as_classes(known_pred, "known_pred", num_classes)
    k_true = _as_classes(known_labels, "known_labels", num_classes)
    u_pred = _as_classes(unknown_pred, "unknown_pred", num_classes)
    _check_same_length(k_scores, k_pred, "known_scores", "known_pred")
    _check_same_length(k_scores, k_true, "known_scores", "known_labels")
    _check_same_length(u_scores, u_pred, "unknown_scores", "unknown_pred")

    unknown = num_classes
    y_true = np.concatenate([k_true, np.full(len(u_scores), unknown)])
    accepted = np.concatenate([k_scores, u_scores]) >= threshold
    y_pred = np.where(accepted, np.concatenate([k_pred, u_pred]), unknown)
    n = num_classes + 1
    tp = np.bincount(y_true[y_true == y_pred], minlength=n)
    fp = np.bincount(y_pred, minlength=n) - tp
    fn = np.bincount(y_true, minlength=n) - tp
    denom = 2 * tp + fp + fn
    f1 = np.divide(2 * tp, denom, out=np.zeros(n), where=denom > 0)
    return float(f1.mean())


# --------------------------------------------------------------------------------------------------
# closed-set accuracy and cluster quality


def accuracy(pred: ArrayLike, labels: ArrayLike) -> float:
    """Closed-set accuracy: the fraction of ``pred`` (N,) equal to ``labels`` (N,)."""
    pred = _as_1d(pred, "pred")
    labels = _as_1d(labels, "labels")
    _check_same_length(pred, labels, "pred", "labels")
    return float(np.mean(pred == labels))


def _clusters(features: ArrayLike, labels: ArrayLike, what: str
              ) -> tuple[np.ndarray, np.ndarray]:
    """Per-cluster mean distance to the centroid ``S_i`` (k,) and the centroids (k, d)."""
    x = _to_numpy(features).astype(np.float64)
    if x.ndim != 2:
        raise ValueError(f"features must be 2-D (N, d), got shape {x.shape}")
    n_nonfinite = int((~np.isfinite(x)).sum())
    if n_nonfinite:
        raise ValueError(f"features has {n_nonfinite} NaN or infinite values")
    labels = _as_1d(labels, "labels")
    _check_same_length(x, labels, "features", "labels")
    classes, cluster = np.unique(labels, return_inverse=True)
    k = len(classes)
    if k < 2:
        raise ValueError(f"{what} needs at least 2 clusters, got {k}: {classes.tolist()}")
    counts = np.bincount(cluster, minlength=k)
    centroids = np.zeros((k, x.shape[1]))
    np.add.at(centroids, cluster, x)
    centroids /= counts[:, None]
    to_centroid = np.linalg.norm(x - centroids[cluster], axis=1)
    return np.bincount(cluster, weights=to_centroid, minlength=k) / counts, centroids


def _centroid_distances(centroids: np.ndarray) -> np.ndarray:
    return np.linalg.norm(centroids[:, None] - centroids[None], axis=-1)


def davies_bouldin(features: ArrayLike, labels: ArrayLike) -> float:
    """Davies-Bouldin index of ``features`` (N, d) grouped by ``labels`` (N,); lower is better.

    With S_i the mean Euclidean distance of cluster i's points to its centroid c_i, the index is
    the mean over clusters i of max_{j != i} (S_i + S_j) / ||c_i - c_j||: small when clusters are
    compact relative to how far apart they sit. Needs at least 2 clusters. Two clusters with the
    same centroid give ``inf`` (scikit-learn instead drops such pairs, which can report a
    collapsed embedding as perfect).
    """
    spread, centroids = _clusters(features, labels, "davies_bouldin")
    separation = _centroid_distances(centroids)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = (spread[:, None] + spread[None]) / separation
    ratio[separation == 0] = np.inf  # coinciding centroids: the clusters cannot be told apart
    np.fill_diagonal(ratio, -np.inf)
    return float(ratio.max(axis=1).mean())


def intra_class_distance(features: ArrayLike, labels: ArrayLike) -> float:
    """Mean over classes of the mean Euclidean distance of a class's points to its centroid
    (the ``S_i`` of ``davies_bouldin``), in the units of ``features`` (N, d); lower = more
    compact. Pass unit-normalised embeddings to measure on the sphere the cosine heads use."""
    return float(_clusters(features, labels, "intra_class_distance")[0].mean())


def inter_class_distance(features: ArrayLike, labels: ArrayLike) -> float:
    """Mean Euclidean distance between the centroids of two different classes, over all pairs,
    in the units of ``features`` (N, d); higher = more separated."""
    centroids = _clusters(features, labels, "inter_class_distance")[1]
    k = len(centroids)
    return float(_centroid_distances(centroids).sum() / (k * (k - 1)))


# --------------------------------------------------------------------------------------------------
# uncertainty


def bootstrap_ci(
    metric: Callable[..., float],
    known_scores: ArrayLike,
    unknown_scores: ArrayLike,
    *extra_known: ArrayLike,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap interval of ``metric(known_scores, unknown_scores, *extra_known)``.

    Higher score = more likely known (as for the metric itself). Knowns, with the arrays aligned
    to them in ``extra_known`` (e.g. ``known_correct`` for :func:`oscr`), and unknowns are
    resampled separately with replacement, so every resample keeps N_k and N_u (stratified).
    Returns the (1 - confidence) / 2 and (1 + confidence) / 2 quantiles of the resampled values;
    the same ``seed`` gives the same interval.
    """
    if not isinstance(n_resamples, int) or isinstance(n_resamples, bool) or n_resamples < 1:
        raise ValueError(f"n_resamples must be a positive int, got {n_resamples!r}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    known = _as_scores(known_scores, "known_scores")
    unknown = _as_scores(unknown_scores, "unknown_scores")
    extras = [_as_1d(e, f"extra_known[{i}]") for i, e in enumerate(extra_known)]
    for i, e in enumerate(extras):
        _check_same_length(known, e, "known_scores", f"extra_known[{i}]")

    rng = np.random.default_rng(seed)
    known_idx = rng.integers(0, len(known), size=(n_resamples, len(known)))
    unknown_idx = rng.integers(0, len(unknown), size=(n_resamples, len(unknown)))
    values = [
        metric(known[ki], unknown[ui], *(e[ki] for e in extras))
        for ki, ui in zip(known_idx, unknown_idx)
    ]
    alpha = (1.0 - confidence) / 2
    low, high = np.quantile(values, [alpha, 1.0 - alpha])
    return float(low), float(high)
