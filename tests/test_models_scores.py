import math

import pytest
import torch

from companion import scores
from companion.models import SmallCNN, build_model


@pytest.mark.parametrize("shape", [(1, 8, 8), (3, 32, 32)])
def test_small_cnn_shapes_and_embed_matches_forward(shape):
    torch.manual_seed(0)
    model = SmallCNN(num_classes=6, in_channels=shape[0], embed_dim=16).eval()
    x = torch.randn(5, *shape)
    z, logits = model(x)
    assert z.shape == (5, 16) and logits.shape == (5, 6)
    assert (model.num_classes, model.embed_dim) == (6, 16)
    torch.testing.assert_close(model.embed(x), z, rtol=0, atol=0)
    torch.testing.assert_close(model.head(z), logits, rtol=0, atol=0)


def test_small_cnn_parameter_count():
    # conv 1->32, 32->64, 64->128 (3x3, with bias), linear 128->64, head 64->6
    expected = (9 * 1 * 32 + 32) + (9 * 32 * 64 + 64) + (9 * 64 * 128 + 128) + (128 * 64 + 64) + (64 * 6 + 6)
    assert sum(p.numel() for p in SmallCNN(6).parameters()) == expected


def test_build_model_by_name_and_error_lists_valid_names():
    assert isinstance(build_model("small_cnn", num_classes=3), SmallCNN)
    with pytest.raises(ValueError, match="unknown model 'vgg'.*small_cnn"):
        build_model("vgg", num_classes=3)


def test_msp_and_max_logit_known_answers():
    logits = torch.tensor([[0.0, math.log(3.0)], [2.0, -1.0]])
    torch.testing.assert_close(scores.msp(logits), torch.tensor([0.75, 1 / (1 + math.exp(-3.0))]))
    torch.testing.assert_close(scores.max_logit(logits), torch.tensor([math.log(3.0), 2.0]))


def test_scores_are_higher_for_more_confident_samples():
    confident, unsure = torch.tensor([[5.0, 0.0, 0.0]]), torch.tensor([[0.1, 0.0, 0.0]])
    for score in (scores.msp, scores.max_logit):
        assert score(confident) > score(unsure)
