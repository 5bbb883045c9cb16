import math

import pytest
import torch

from companion import scores
from companion.losses import OvRHead, sample_ovr_loss


def softplus(a: float) -> float:
    return max(a, 0.0) + math.log1p(math.exp(-abs(a)))


def test_msp_and_max_logit_known_answers():
    logits = torch.tensor([[0.0, math.log(3.0)], [2.0, -1.0]])
    torch.testing.assert_close(scores.msp(logits), torch.tensor([0.75, 1 / (1 + math.exp(-3.0))]))
    torch.testing.assert_close(scores.max_logit(logits), torch.tensor([math.log(3.0), 2.0]))


def test_scores_are_higher_for_more_confident_samples():
    confident, unsure = torch.tensor([[5.0, 0.0, 0.0]]), torch.tensor([[0.1, 0.0, 0.0]])
    for score in (scores.msp, scores.max_logit):
        assert score(confident) > score(unsure)


def test_cosine_to_prototype_known_answers():
    prototypes = torch.tensor([[2.0, 0.0], [0.0, 3.0]])  # directions e_0, e_1; norms do not matter
    z = torch.tensor([[5.0, 0.0], [1.0, 1.0], [-1.0, 0.0]])
    # on e_0: 1; halfway: cos 45deg; opposite e_0: cos(-e_0, e_0) = -1, cos(-e_0, e_1) = 0 -> 0
    torch.testing.assert_close(scores.cosine_to_prototype(z, prototypes),
                               torch.tensor([1.0, math.sqrt(0.5), 0.0]))


def test_prototype_distance_known_answers():
    centers = torch.tensor([[0.0, 0.0], [3.0, 4.0]])
    z = torch.tensor([[0.0, 0.0], [3.0, 0.0], [6.0, 8.0]])
    # nearest centers at distance 0, 3 (to the origin; 4 to (3, 4)) and 5
    torch.testing.assert_close(scores.prototype_distance(z, centers),
                               torch.tensor([0.0, -3.0, -5.0]))


def test_movr_score_known_answers():
    prototypes = torch.eye(2)
    z = torch.tensor([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
    # on a prototype: s = (1, 0) -> softplus(-32) + softplus(0) (the orthogonal one costs ln 2);
    # likewise on the other prototype (predicted class 1);
    # halfway: s = (1/sqrt2, 1/sqrt2), predicted class 0 -> softplus(-16 sqrt2) + softplus(16 sqrt2)
    a = 16 * math.sqrt(2.0)
    expected = [softplus(-32.0) + math.log(2.0)] * 2 + [softplus(-a) + softplus(a)]
    torch.testing.assert_close(scores.movr_score(z, prototypes), -torch.tensor(expected))
    # scale is T: with T = 1 the sample on e_0 scores -(softplus(-1) + ln 2)
    torch.testing.assert_close(scores.movr_score(z[:1], prototypes, scale=1.0),
                               -torch.tensor([softplus(-1.0) + math.log(2.0)]))


def test_movr_score_is_minus_the_ovr_loss_at_the_predicted_class():
    torch.manual_seed(0)
    head = OvRHead(8, 5)
    z = torch.randn(20, 8)
    logits = head(z)
    expected = -sample_ovr_loss(logits, logits.argmax(dim=1))
    torch.testing.assert_close(scores.movr_score(z, head.prototypes, scale=head.scale), expected)


def test_sign_convention_sample_on_a_prototype_beats_one_between_two():
    """Higher = more likely known. Prototypes 120 degrees apart; one sample on w_0, one halfway
    between w_0 and w_1 (60 degrees from each, 180 from w_2)."""
    angles = torch.tensor([0.0, 2 * math.pi / 3, 4 * math.pi / 3])
    prototypes = torch.stack([angles.cos(), angles.sin()], dim=1)
    z = torch.tensor([[1.0, 0.0], [0.5, math.sqrt(0.75)]])
    cosine = scores.cosine_to_prototype(z, prototypes)
    torch.testing.assert_close(cosine, torch.tensor([1.0, 0.5]))
    # on w_0: s = (1, -1/2, -1/2): softplus(-32) + 2 softplus(-16)
    # between: s = (1/2, 1/2, -1), predicted w_0: softplus(-16) + softplus(16) + softplus(-32)
    movr = scores.movr_score(z, prototypes)
    expected = [softplus(-32.0) + 2 * softplus(-16.0),
                softplus(-16.0) + softplus(16.0) + softplus(-32.0)]
    torch.testing.assert_close(movr, -torch.tensor(expected))
    assert cosine[0] > cosine[1] and movr[0] > movr[1]


def test_jacobian_score_sign():
    norms = torch.tensor([0.5, 2.0])
    s = scores.jacobian_score(norms)
    torch.testing.assert_close(s, torch.tensor([-0.5, -2.0]))
    assert s[0] > s[1]  # a small Jacobian norm looks known


def test_feature_norm_is_the_raw_embedding_norm_and_higher_means_known():
    # z = g(x) of a fixed linear embedding g(x) = W x: norms by hand, ||(3, 4)|| = 5 etc.
    w = torch.tensor([[1.0, 0.0], [0.0, 2.0], [2.0, 2.0]])
    x = torch.tensor([[3.0, 2.0], [0.0, 0.5], [1.0, -1.0]])
    z = x @ w.T  # (3, 3): [3, 4, 10], [0, 1, 1], [1, -2, 0]
    expected = torch.tensor([125.0, 2.0, 5.0]).sqrt()
    torch.testing.assert_close(scores.feature_norm(z), expected)
    torch.testing.assert_close(scores.compute_score("feature_norm", z=z), expected)
    # the sign: the larger feature (first sample) gets the higher score = looks more known
    assert scores.feature_norm(z).argmax() == 0
    assert scores.score_inputs("feature_norm") == ("z",)
    # not scale-free, unlike the cosine: doubling g doubles the score
    torch.testing.assert_close(scores.feature_norm(2 * z), 2 * expected)


def test_registry_and_compute_score_route_inputs():
    assert list(scores.SCORES) == ["msp", "max_logit", "cosine", "distance", "movr", "jacobian",
                                   "feature_norm"]
    assert scores.score_inputs("movr") == ("z", "prototypes", "scale")
    assert scores.score_inputs("jacobian") == ("norms",)
    logits, z, prototypes = torch.tensor([[2.0, 0.0]]), torch.tensor([[1.0, 0.0]]), torch.eye(2)
    everything = dict(logits=logits, z=z, prototypes=prototypes, norms=torch.tensor([3.0]))
    torch.testing.assert_close(scores.compute_score("msp", **everything), scores.msp(logits))
    torch.testing.assert_close(scores.compute_score("movr", scale=4.0, **everything),
                               scores.movr_score(z, prototypes, scale=4.0))
    torch.testing.assert_close(scores.compute_score("jacobian", **everything), torch.tensor([-3.0]))


def test_unknown_score_and_missing_inputs_raise():
    with pytest.raises(ValueError, match="unknown score 'energy'; valid names: msp, max_logit, "
                                         "cosine, distance, movr, jacobian, "
                                         "feature_norm"):
        scores.compute_score("energy", logits=torch.zeros(1, 2))
    with pytest.raises(ValueError, match="unknown score 'energy'"):
        scores.score_inputs("energy")
    with pytest.raises(ValueError, match="score 'cosine' needs z, prototypes; missing: prototypes"):
        scores.compute_score("cosine", z=torch.zeros(1, 2), logits=torch.zeros(1, 2))


def test_scores_accept_numpy_and_lists_like_metrics_do():
    import numpy as np

    from companion import scores

    logits = np.array([[2.0, 0.0], [0.0, 0.5]])
    torch.testing.assert_close(scores.max_logit(logits), torch.tensor([2.0, 0.5]))
    torch.testing.assert_close(scores.msp(logits.tolist()), scores.msp(torch.tensor(logits)))
    z, protos = np.eye(2), np.eye(2)
    torch.testing.assert_close(scores.cosine_to_prototype(z, protos), torch.ones(2))
    torch.testing.assert_close(scores.jacobian_score([1.0, 3.0]), torch.tensor([-1.0, -3.0]))
    with pytest.raises(ValueError, match=r"logits must have 2 dimension\(s\), got shape \(3,\)"):
        scores.max_logit(np.zeros(3))
