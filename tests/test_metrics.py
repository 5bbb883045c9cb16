"""Tests for companion.metrics: known answers, independent oracles, and every validation error.

Sign convention under test: a higher score means "more likely known".
"""

import numpy as np
import pytest
import torch
from sklearn.metrics import davies_bouldin_score, f1_score, roc_auc_score

from companion import metrics
from companion.metrics import (
    accuracy,
    auroc,
    bootstrap_ci,
    davies_bouldin,
    open_set_f1,
    oscr,
    oscr_arpl,
    rejection_threshold,
)

trapezoid = getattr(np, "trapezoid", None) or np.trapz  # NumPy < 2 only has trapz


def random_scores(rng, n_known, n_unknown, kind):
    """Knowns shifted up by one standard deviation; `kind` controls how many ties there are."""
    known = rng.normal(1.0, 1.0, n_known)
    unknown = rng.normal(0.0, 1.0, n_unknown)
    if kind == "decimal":
        known, unknown = known.round(1), unknown.round(1)
    elif kind == "ternary":
        known = np.clip(np.round(known), 0, 2)
        unknown = np.clip(np.round(unknown), 0, 2)
    return known, unknown


KINDS = ["continuous", "decimal", "ternary"]


# --------------------------------------------------------------------------------------------------
# AUROC


def test_auroc_hand_case():
    # Pairs (known, unknown): 0.9 beats both, 0.8 beats both, 0.1 loses to 0.5 and ties 0.1.
    assert auroc([0.9, 0.8, 0.1], [0.5, 0.1]) == pytest.approx((2 + 2 + 0.5) / 6, abs=1e-15)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("seed", range(3))
def test_auroc_matches_sklearn(kind, seed):
    rng = np.random.default_rng(seed)
    known, unknown = random_scores(rng, 300, 200, kind)
    labels = np.r_[np.ones(len(known)), np.zeros(len(unknown))]
    expected = roc_auc_score(labels, np.r_[known, unknown])
    assert auroc(known, unknown) == pytest.approx(expected, abs=1e-9)
    shuffled = auroc(rng.permutation(known), rng.permutation(unknown))
    assert shuffled == pytest.approx(expected, abs=1e-9)


def test_auroc_sign_convention():
    assert auroc([2.0, 3.0], [0.0, 1.0]) == 1.0  # knowns scoring higher is perfect
    assert auroc([0.0, 1.0], [2.0, 3.0]) == 0.0
    rng = np.random.default_rng(0)
    known, unknown = random_scores(rng, 50, 40, "decimal")
    assert auroc(-known, -unknown) == pytest.approx(1 - auroc(known, unknown), abs=1e-12)


def test_auroc_depends_only_on_ranks():
    rng = np.random.default_rng(1)
    known, unknown = random_scores(rng, 60, 40, "decimal")
    assert auroc(np.exp(known), np.exp(unknown)) == auroc(known, unknown)
    assert auroc([1.0] * 4, [1.0] * 3) == 0.5  # all tied: chance


def test_metrics_accept_torch_and_return_python_floats():
    known, unknown = [0.9, 0.8, 0.1], [0.5, 0.1]
    for dtype in (torch.float32, torch.float64, torch.bfloat16):
        value = auroc(torch.tensor(known, dtype=dtype), torch.tensor(unknown, dtype=dtype))
        assert type(value) is float and value == 0.75
    correct = torch.tensor([True, False, True])
    expected = oscr(known, unknown, [1, 0, 1])
    assert type(expected) is float
    assert oscr(torch.tensor(known), torch.tensor(unknown), correct) == expected


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_metrics_accept_cuda_tensors():
    known = torch.tensor([0.9, 0.8, 0.1], device="cuda")
    unknown = torch.tensor([0.5, 0.1], device="cuda")
    assert auroc(known, unknown) == 0.75
    assert oscr(known, unknown, torch.ones(3, dtype=torch.bool, device="cuda")) == 0.75


# --------------------------------------------------------------------------------------------------
# OSCR


def oscr_pairwise(known, unknown, correct):
    """O(N^2) oracle: every (correct known, unknown) pair scores 1 if ordered right, 1/2 if tied."""
    k = np.asarray(known)[np.asarray(correct, dtype=bool)][:, None]
    u = np.asarray(unknown)[None, :]
    return ((k > u).sum() + 0.5 * (k == u).sum()) / (len(known) * len(unknown))


def oscr_trapezoid(known, unknown, correct):
    """Oracle: CCR against FPR at every distinct threshold (score >= t accepted), integrated."""
    known, unknown = np.asarray(known), np.asarray(unknown)
    correct = np.asarray(correct, dtype=bool)
    thresholds = np.unique(np.r_[known, unknown])[::-1]
    ccr = [0.0] + [np.sum(correct & (known >= t)) / len(known) for t in thresholds]
    fpr = [0.0] + [np.sum(unknown >= t) / len(unknown) for t in thresholds]
    return trapezoid(ccr, fpr)


def test_oscr_hand_case_with_tie():
    # Knowns 0.9 (correct), 0.6 (wrong), 0.4 (correct), 0.2 (correct); unknowns 0.7, 0.4, 0.1.
    # Sweeping t down, (FPR, CCR) visits (0, 0) -> (0, 1/4) at 0.9 -> (1/3, 1/4) at 0.7
    # -> (1/3, 1/4) at 0.6 (a wrong known) -> (2/3, 2/4) at 0.4, where the tie between a correct
    # known and an unknown moves both rates at once (a diagonal) -> (2/3, 3/4) at 0.2 -> (1, 3/4).
    # Area: 1/3 * 1/4 + 1/3 * (1/4 + 2/4) / 2 + 1/3 * 3/4 = 2/24 + 3/24 + 6/24 = 11/24.
    known, unknown, correct = [0.9, 0.6, 0.4, 0.2], [0.7, 0.4, 0.1], [1, 0, 1, 1]
    assert oscr(known, unknown, correct) == pytest.approx(11 / 24, abs=1e-15)
    assert oscr_pairwise(known, unknown, correct) == pytest.approx(11 / 24, abs=1e-15)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("sizes", [(1, 1), (7, 3), (120, 80)])
def test_oscr_matches_oracles(kind, sizes):
    rng = np.random.default_rng(sizes[0])
    known, unknown = random_scores(rng, *sizes, kind)
    correct = rng.random(sizes[0]) < 0.7
    value = oscr(known, unknown, correct)
    assert value == pytest.approx(oscr_pairwise(known, unknown, correct), abs=1e-9)
    assert value == pytest.approx(oscr_trapezoid(known, unknown, correct), abs=1e-9)


def test_oscr_is_invariant_to_input_order():
    rng = np.random.default_rng(2)
    known, unknown = random_scores(rng, 80, 60, "ternary")
    correct = rng.random(80) < 0.6
    expected = oscr(known, unknown, correct)
    for _ in range(5):
        perm = rng.permutation(80)
        shuffled = oscr(known[perm], rng.permutation(unknown), correct[perm])
        assert shuffled == pytest.approx(expected, abs=1e-12)


def test_oscr_limits():
    known, unknown = np.array([5.0, 4.0, 3.0, 2.0]), np.array([1.0, 0.0, -1.0])
    correct = np.array([True, False, True, True])
    assert oscr(known, unknown, correct) == 0.75  # perfect separation: OSCR = accuracy
    assert oscr(known, unknown, np.zeros(4, dtype=bool)) == 0.0  # nothing classified correctly
    rng = np.random.default_rng(3)
    k, u = random_scores(rng, 40, 30, "decimal")
    assert oscr(k, u, np.ones(40, dtype=bool)) == pytest.approx(auroc(k, u), abs=1e-15)


# --------------------------------------------------------------------------------------------------
# OSCR as swept by the ARPL code


def test_oscr_arpl_hand_case():
    # Ascending, ties keeping input order (knowns first): 0.1u 0.2c 0.4c 0.4u 0.6w 0.7u 0.9c.
    # Each unknown earns (correct above it + correct above its upper neighbour) / 2 pairs:
    # 0.1u: (3 + 2) / 2, 0.4u: (1 + 1) / 2, 0.7u: (1 + 0) / 2 -> 4 pairs of 12 = 1/3 (exact: 11/24).
    value = oscr_arpl([0.9, 0.6, 0.4, 0.2], [0.7, 0.4, 0.1], [1, 0, 1, 1])
    assert value == pytest.approx(1 / 3, abs=1e-15)


@pytest.mark.parametrize("sizes", [(1, 1), (5, 50), (200, 100)])
def test_oscr_arpl_is_close_to_oscr_without_ties(sizes):
    rng = np.random.default_rng(4)
    known, unknown = random_scores(rng, *sizes, "continuous")
    correct = rng.random(sizes[0]) < 0.8
    gap = oscr(known, unknown, correct) - oscr_arpl(known, unknown, correct)
    assert 0 <= gap <= 1 / (2 * max(sizes)) + 1e-12  # hence within 1/N
    assert gap <= 1 / sum(sizes)


def test_oscr_arpl_differs_under_ties_by_a_bounded_amount():
    # All scores tied: the exact curve is one diagonal (area accuracy / 2), the sweep puts every
    # known below every unknown (area 0).
    assert oscr([1.0] * 4, [1.0] * 2, [1, 1, 0, 1]) == 0.375
    assert oscr_arpl([1.0] * 4, [1.0] * 2, [1, 1, 0, 1]) == 0.0

    rng = np.random.default_rng(5)
    known, unknown = random_scores(rng, 150, 100, "ternary")
    correct = rng.random(150) < 0.8
    gap = oscr(known, unknown, correct) - oscr_arpl(known, unknown, correct)
    tied_pairs = (known[correct][:, None] == unknown[None, :]).sum()
    half_pairs_bound = (tied_pairs + min(correct.sum(), len(unknown))) / (2 * 150 * 100)
    assert 1 / 250 < gap <= half_pairs_bound


def test_oscr_arpl_depends_on_input_order_under_ties():
    # A wrong and a correct known tied at 0.5 above one unknown: the exact OSCR is 1/2 either way;
    # the sweep loses half a pair when the correct known is the unknown's upper neighbour.
    assert oscr([0.5, 0.5], [0.3], [0, 1]) == oscr([0.5, 0.5], [0.3], [1, 0]) == 0.5
    assert oscr_arpl([0.5, 0.5], [0.3], [0, 1]) == 0.5
    assert oscr_arpl([0.5, 0.5], [0.3], [1, 0]) == 0.25


# --------------------------------------------------------------------------------------------------
# Protocol B: threshold and open-set macro-F1


def test_rejection_threshold_known_answers():
    scores = np.arange(1.0, 11.0)  # 1..10
    assert rejection_threshold(scores) == 2.0  # rejects exactly {1}: 10%
    assert rejection_threshold(scores, 0.25) == 3.0  # floor(2.5) = 2 rejected
    assert rejection_threshold(scores, 0.0) == 1.0  # rejects nothing
    # 0.29 * 100 is 28.999999999999996 in floating point; 29 must still be rejected.
    assert np.mean(np.arange(100.0) < rejection_threshold(np.arange(100.0), 0.29)) == 0.29
    # Ties: rejecting the lowest 1 of 10 would mean rejecting all three tied 1.0s, so none is.
    assert rejection_threshold([1, 1, 1, 2, 3, 4, 5, 6, 7, 8], 0.1) == 1.0


@pytest.mark.parametrize("kind", KINDS)
def test_rejection_threshold_rejects_as_many_as_allowed(kind):
    rng = np.random.default_rng(6)
    scores, _ = random_scores(rng, 333, 1, kind)
    for fraction in (0.05, 0.1, 0.5):
        t = rejection_threshold(scores, fraction)
        allowed = np.floor(fraction * len(scores))
        assert np.sum(scores < t) <= allowed < np.sum(scores <= t)  # any higher t rejects too many


def test_open_set_f1_hand_case():
    # K = 2, threshold 0.5 (a score equal to it is accepted). Final predictions:
    #   knowns   true 0 0 1 1 -> pred 0 0 1 2 (0.3 rejected)
    #   unknowns true 2 2     -> pred 0 2     (0.6 accepted as class 0)
    # F1 = 2tp / (2tp + fp + fn): class 0: tp 2 fp 1 fn 0 -> 4/5; class 1: tp 1 fp 0 fn 1 -> 2/3;
    # unknown (2): tp 1 fp 1 fn 1 -> 1/2.
    known_scores, known_pred, known_labels = [0.9, 0.8, 0.5, 0.3], [0, 0, 1, 0], [0, 0, 1, 1]
    unknown_scores, unknown_pred = [0.6, 0.2], [0, 1]
    value = open_set_f1(
        known_scores, known_pred, known_labels, unknown_scores, unknown_pred,
        threshold=0.5, num_classes=2,
    )
    assert value == pytest.approx((4 / 5 + 2 / 3 + 1 / 2) / 3, abs=1e-15)


@pytest.mark.parametrize("num_classes", [2, 6])
def test_open_set_f1_matches_sklearn(num_classes):
    rng = np.random.default_rng(num_classes)
    known_scores, unknown_scores = random_scores(rng, 200, 150, "decimal")
    labels = rng.integers(0, num_classes, 200)
    # 70% right, else a random class; class num_classes - 1 may end up unused (F1 = 0 there).
    pred = np.where(rng.random(200) < 0.7, labels, rng.integers(0, num_classes, 200))
    unknown_pred = rng.integers(0, num_classes, 150)
    t = rejection_threshold(known_scores, 0.1)
    y_true = np.r_[labels, np.full(150, num_classes)]
    accepted = np.r_[known_scores, unknown_scores] >= t
    y_pred = np.where(accepted, np.r_[pred, unknown_pred], num_classes)
    expected = f1_score(
        y_true, y_pred, average="macro", labels=range(num_classes + 1), zero_division=0
    )
    value = open_set_f1(
        known_scores, pred, labels, unknown_scores, unknown_pred,
        threshold=t, num_classes=num_classes,
    )
    assert value == pytest.approx(expected, abs=1e-12)


def test_open_set_f1_absent_class_scores_zero():
    # K = 3 but class 2 is never true nor predicted: its F1 of 0 is averaged in.
    value = open_set_f1([1.0, 1.0], [0, 1], [0, 1], [0.0], [0], threshold=0.5, num_classes=3)
    assert value == pytest.approx(3 / 4, abs=1e-15)  # classes 0, 1, unknown perfect; class 2 zero


def test_open_set_f1_validation():
    ok = dict(threshold=0.5, num_classes=2)
    with pytest.raises(ValueError, match=r"known_pred must lie in 0\.\.1 .*got \[2\]"):
        open_set_f1([1.0], [2], [0], [0.0], [0], **ok)
    with pytest.raises(ValueError, match="known_labels must hold integer class indices, got dtype"):
        open_set_f1([1.0], [0], [0.0], [0.0], [0], **ok)
    with pytest.raises(ValueError, match=r"unknown_scores and unknown_pred .* lengths \(1 vs 2\)"):
        open_set_f1([1.0], [0], [0], [0.0], [0, 1], **ok)
    with pytest.raises(ValueError, match="num_classes must be a positive int, got 0"):
        open_set_f1([1.0], [0], [0], [0.0], [0], threshold=0.5, num_classes=0)
    with pytest.raises(ValueError, match="threshold is NaN"):
        open_set_f1([1.0], [0], [0], [0.0], [0], threshold=float("nan"), num_classes=2)


# --------------------------------------------------------------------------------------------------
# accuracy and Davies-Bouldin


def test_accuracy():
    assert accuracy([0, 1, 2, 2], [0, 1, 1, 2]) == 0.75
    assert accuracy(torch.tensor([3, 3]), np.array([3, 4])) == 0.5
    with pytest.raises(ValueError, match=r"pred and labels have different lengths \(2 vs 3\)"):
        accuracy([0, 1], [0, 1, 2])


def test_davies_bouldin_hand_case():
    # Clusters {0, 2} and {10, 12} on a line: spreads 1 and 1, centroids 10 apart -> (1 + 1) / 10.
    features = np.array([[0.0], [2.0], [10.0], [12.0]])
    assert davies_bouldin(features, [0, 0, 1, 1]) == pytest.approx(0.2, abs=1e-15)


@pytest.mark.parametrize("num_clusters", [2, 5])
def test_davies_bouldin_matches_sklearn(num_clusters):
    rng = np.random.default_rng(num_clusters)
    labels = rng.integers(0, num_clusters, 400)
    features = rng.normal(size=(num_clusters, 8))[labels] * 3 + rng.normal(size=(400, 8))
    expected = davies_bouldin_score(features, labels)
    assert davies_bouldin(features, labels) == pytest.approx(expected, rel=1e-9)
    from_torch = davies_bouldin(torch.tensor(features), torch.tensor(labels))
    assert from_torch == pytest.approx(expected, rel=1e-9)


def test_davies_bouldin_degenerate_cases():
    with pytest.raises(ValueError, match=r"at least 2 clusters, got 1: \[7\]"):
        davies_bouldin(np.ones((3, 2)), [7, 7, 7])
    with pytest.raises(ValueError, match=r"features must be 2-D \(N, d\), got shape \(4,\)"):
        davies_bouldin(np.ones(4), [0, 0, 1, 1])
    with pytest.raises(ValueError, match=r"features and labels have different lengths \(4 vs 3\)"):
        davies_bouldin(np.ones((4, 2)), [0, 0, 1])
    with pytest.raises(ValueError, match="features has 1 NaN or infinite values"):
        davies_bouldin(np.array([[0.0], [np.nan]]), [0, 1])
    # Same centroid (0): indistinguishable clusters get an infinite index.
    assert davies_bouldin(np.array([[-1.0], [1.0], [-2.0], [2.0]]), [0, 0, 1, 1]) == np.inf


# --------------------------------------------------------------------------------------------------
# bootstrap


def test_bootstrap_is_seeded():
    rng = np.random.default_rng(7)
    known, unknown = random_scores(rng, 100, 80, "continuous")
    first = bootstrap_ci(auroc, known, unknown, n_resamples=200, seed=3)
    assert bootstrap_ci(auroc, known, unknown, n_resamples=200, seed=3) == first
    assert bootstrap_ci(auroc, known, unknown, n_resamples=200, seed=4) != first
    assert all(type(v) is float for v in first)


def test_bootstrap_interval_contains_estimate_and_shrinks_like_inverse_sqrt_n():
    rng = np.random.default_rng(8)
    known, unknown = random_scores(rng, 200, 200, "continuous")
    correct = rng.random(200) < 0.8
    low, high = bootstrap_ci(oscr, known, unknown, correct, n_resamples=300)
    assert low < oscr(known, unknown, correct) < high
    big_known, big_unknown = random_scores(rng, 800, 800, "continuous")
    big_low, big_high = bootstrap_ci(auroc, big_known, big_unknown, n_resamples=300)
    small_low, small_high = bootstrap_ci(auroc, known, unknown, n_resamples=300)
    assert 1.4 < (small_high - small_low) / (big_high - big_low) < 2.8  # about sqrt(4) = 2


def test_bootstrap_keeps_extras_aligned_with_knowns():
    known, unknown = np.arange(50.0), np.arange(40.0) - 5

    def checked_auroc(k, u, doubled):
        assert np.array_equal(doubled, 2 * k)
        return auroc(k, u)

    bootstrap_ci(checked_auroc, known, unknown, 2 * known, n_resamples=50)


def test_bootstrap_resamples_each_group_with_replacement_keeping_sizes():
    known, unknown = np.arange(50.0), -1.0 - np.arange(40.0)  # disjoint: knowns >= 0 > unknowns
    seen = []

    def record(k, u):
        seen.append((k, u))
        return float(u.mean())

    low, high = bootstrap_ci(record, known, unknown, n_resamples=100)
    assert low < high  # the unknowns were resampled, not passed through
    for k, u in seen:
        assert len(k) == 50 and len(u) == 40 and k.min() >= 0 > u.max()
    assert any(len(np.unique(u)) < 40 for _, u in seen)  # with replacement


def test_bootstrap_validation():
    with pytest.raises(ValueError, match=r"extra_known\[0\] have different lengths \(3 vs 2\)"):
        bootstrap_ci(oscr, [1.0, 2.0, 3.0], [0.0], [1, 0])
    with pytest.raises(ValueError, match="confidence must be in \\(0, 1\\), got 1.5"):
        bootstrap_ci(auroc, [1.0], [0.0], confidence=1.5)
    with pytest.raises(ValueError, match="n_resamples must be a positive int, got 0"):
        bootstrap_ci(auroc, [1.0], [0.0], n_resamples=0)


# --------------------------------------------------------------------------------------------------
# validation shared by the score metrics


def auroc_ignoring_correct(known, unknown, correct):
    return auroc(known, unknown)


@pytest.mark.parametrize("metric", [auroc_ignoring_correct, oscr, oscr_arpl])
@pytest.mark.parametrize(
    "known, unknown, correct, message",
    [
        ([0.1, np.nan, np.nan, 0.3], [0.2], [1, 1, 1, 1], "known_scores has 2 NaN values"),
        ([0.1], [0.2, np.inf, -np.inf], [1], "unknown_scores has 2 infinite values"),
        ([], [0.2], [], "known_scores is empty"),
        ([0.1], [], [1], "unknown_scores is empty"),
        ([[0.1, 0.2]], [0.2], [1], r"known_scores must be 1-D, got shape \(1, 2\)"),
        ([0.1], np.float64(0.2), [1], r"unknown_scores must be 1-D, got shape \(\)"),
    ],
)
def test_score_validation(metric, known, unknown, correct, message):
    with pytest.raises(ValueError, match=message):
        metric(known, unknown, correct)


@pytest.mark.parametrize("metric", [oscr, oscr_arpl])
@pytest.mark.parametrize(
    "correct, message",
    [
        ([1, 0, 1, 1, 0], r"known_scores and known_correct have different lengths \(4 vs 5\)"),
        ([1, 0, 2, 3], r"known_correct must hold booleans or 0/1, got values \[2, 3\]"),
        ([1.0, 0.5, 0.0, 1.0], r"known_correct must hold booleans or 0/1, got values \[0\.5\]"),
        ([1.0, np.nan, 0.0, 1.0], r"known_correct must hold booleans or 0/1, got values \[nan\]"),
        (["yes", "no", "no", "no"], "known_correct must hold booleans or 0/1, got dtype"),
    ],
)
def test_known_correct_validation(metric, correct, message):
    with pytest.raises(ValueError, match=message):
        metric([0.9, 0.8, 0.7, 0.6], [0.5], correct)


def test_known_correct_accepts_bool_int_and_float():
    known, unknown = [0.9, 0.8, 0.1], [0.5, 0.1]
    assert oscr(known, unknown, [True, False, True]) == oscr(known, unknown, [1, 0, 1])
    assert oscr(known, unknown, np.array([1.0, 0.0, 1.0])) == oscr(known, unknown, [1, 0, 1])


def test_intra_and_inter_class_distances_on_a_hand_computed_case():
    # class 0: (0,0), (2,0) -> centroid (1,0), distances 1, 1; class 1: (0,4), (0,6), (0,8)
    # -> centroid (0,6), distances 2, 0, 2 (mean 4/3); class 2: (10,0) alone, distance 0
    x = np.array([[0, 0], [2, 0], [0, 4], [0, 6], [0, 8], [10, 0]], dtype=float)
    y = np.array([0, 0, 1, 1, 1, 2])
    assert metrics.intra_class_distance(x, y) == pytest.approx((1 + 4 / 3 + 0) / 3)
    # centroid distances: |(1,0)-(0,6)| = sqrt(37), |(1,0)-(10,0)| = 9, |(0,6)-(10,0)| = sqrt(136)
    assert metrics.inter_class_distance(x, y) == pytest.approx(
        (np.sqrt(37) + 9 + np.sqrt(136)) / 3)
    with pytest.raises(ValueError, match="inter_class_distance needs at least 2 clusters"):
        metrics.inter_class_distance(x[:2], y[:2])


def test_open_set_f1_from_an_explicit_confusion_matrix():
    # K = 3 knowns + unknown (label 3). Rows: true class, columns: final prediction.
    confusion = np.array([[5, 1, 0, 2],
                          [0, 4, 1, 1],
                          [1, 0, 3, 0],
                          [2, 1, 0, 6]])
    # per class: precision = C[c, c] / column sum, recall = C[c, c] / row sum, F1 = 2PR / (P + R)
    p = np.diag(confusion) / confusion.sum(0)
    r = np.diag(confusion) / confusion.sum(1)
    expected = np.mean(2 * p * r / (p + r))
    # samples for each cell: knowns rejected (column 3) score 0, accepted ones 1; threshold 0.5
    k_scores, k_pred, k_true, u_scores, u_pred = [], [], [], [], []
    for true in range(4):
        for pred in range(4):
            n = confusion[true, pred]
            scores, preds = ([0.0] * n, [0] * n) if pred == 3 else ([1.0] * n, [pred] * n)
            if true == 3:
                u_scores += scores
                u_pred += preds
            else:
                k_scores += scores
                k_pred += preds
                k_true += [true] * n
    value = open_set_f1(k_scores, k_pred, k_true, u_scores, u_pred, threshold=0.5, num_classes=3)
    assert value == pytest.approx(expected, abs=1e-12)
    # 2 tp / (row sum + column sum): 10/16, 8/12, 6/8, 12/18
    assert value == pytest.approx((10 / 16 + 8 / 12 + 6 / 8 + 12 / 18) / 4, abs=1e-12)
