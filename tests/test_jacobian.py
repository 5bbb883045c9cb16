import pytest
import torch
from torch import nn

from companion.data import TensorSet
from companion.jacobian import (METHODS, NormGap, jacobian_norm, jacobian_norm_along_path,
                                norm_gap, path_length, unit_embedding)
from companion.models import MLP, Classifier32, SmallCNN, WideResNet, fold_batchnorm

EXACT_METHODS = ("exact", "vmap")


def brute_force_norms(fn, x):
    """One sample at a time through torch.autograd.functional.jacobian: the reference."""
    out = []
    for xi in x:
        jac = torch.autograd.functional.jacobian(lambda v: fn(v.unsqueeze(0)).squeeze(0), xi)
        out.append(jac.norm())
    return torch.stack(out)


def gen(seed):
    return torch.Generator().manual_seed(seed)


def tanh_mlp(d_in=3, hidden=7, d_z=5, seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(d_in, hidden), nn.Tanh(), nn.Linear(hidden, d_z, bias=False))


@pytest.mark.parametrize("model, shape", [
    (MLP(4), (2,)),
    (SmallCNN(6, in_channels=1), (1, 8, 8)),
    (Classifier32(6), (3, 32, 32)),
    (WideResNet(6, depth=10, width=1), (3, 8, 8)),
], ids=["mlp", "small_cnn", "classifier32", "wrn10_1"])
@pytest.mark.parametrize("method", EXACT_METHODS)
def test_exact_methods_match_brute_force(model, shape, method):
    # float64, so that the comparison is not at the mercy of float32 summation order in deep
    # nets (classifier32 differed by 4e-5 relative in float32); the result comes back as float32
    torch.manual_seed(0)
    model.eval().double()
    x = torch.randn(3, *shape, dtype=torch.float64)
    expected = brute_force_norms(model.embed, x).float()
    got = jacobian_norm(model.embed, x, method)
    assert got.dtype == torch.float32 and got.shape == (3,) and not got.requires_grad
    torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("method", EXACT_METHODS)
def test_two_layer_tanh_mlp_closed_form(method):
    net = tanh_mlp()
    w1, b1, w2 = net[0].weight, net[0].bias, net[2].weight
    x = torch.randn(6, 3)
    with torch.no_grad():  # J(x) = W2 diag(tanh'(W1 x + b1)) W1, tanh' = 1 - tanh^2
        slope = 1 - torch.tanh(x @ w1.T + b1) ** 2
        expected = torch.stack([(w2 * s) @ w1 for s in slope]).flatten(1).norm(dim=1)
    torch.testing.assert_close(jacobian_norm(net, x, method), expected, rtol=1e-5, atol=0)


@pytest.mark.parametrize("method", EXACT_METHODS)
def test_linear_map_norm_is_frobenius_norm_of_weight(method):
    torch.manual_seed(0)
    w = torch.randn(4, 2 * 3 * 3)
    x = torch.randn(5, 2, 3, 3)
    got = jacobian_norm(lambda v: v.flatten(1) @ w.T, x, method)
    torch.testing.assert_close(got, w.norm().expand(5), rtol=1e-6, atol=0)


def hutchinson_draws(num_projections, copies=4000, seed=0):
    """``copies`` independent estimates at one input (samples get independent projections)."""
    net = tanh_mlp()
    x = torch.randn(1, 3, generator=gen(1)).expand(copies, 3)
    est = jacobian_norm(net, x, "hutchinson", num_projections=num_projections,
                        generator=gen(seed), batch_size=copies)
    jac = torch.autograd.functional.jacobian(net, x[0])
    return est, jac


def test_hutchinson_is_unbiased_for_the_squared_norm_with_the_stated_variance():
    k = 4
    est, jac = hutchinson_draws(k)
    sq = est.double() ** 2
    a = (jac @ jac.T).double()
    exact_sq = a.trace()
    assert abs(sq.mean() - exact_sq) < 4 * sq.std() / len(sq) ** 0.5
    predicted_var = 2 * (a.square().sum() - a.diagonal().square().sum()) / k
    assert sq.var() / predicted_var == pytest.approx(1.0, abs=0.15)


def test_hutchinson_spread_shrinks_like_one_over_sqrt_k():
    few, jac = hutchinson_draws(4)
    many, _ = hutchinson_draws(64)
    assert many.std() / few.std() == pytest.approx(0.25, abs=0.05)
    assert many.mean() == pytest.approx(jac.norm().item(), rel=0.01)


def test_hutchinson_is_seeded():
    net, x = tanh_mlp(), torch.randn(8, 3)
    a = jacobian_norm(net, x, "hutchinson", num_projections=3, generator=gen(7))
    b = jacobian_norm(net, x, "hutchinson", num_projections=3, generator=gen(7))
    c = jacobian_norm(net, x, "hutchinson", num_projections=3, generator=gen(8))
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert not torch.allclose(a, c)


@pytest.mark.parametrize("method", METHODS)
def test_chunking_does_not_change_the_result(method):
    torch.manual_seed(0)
    model = SmallCNN(3, in_channels=1, embed_dim=8).eval()
    x = torch.randn(10, 1, 8, 8)
    whole = jacobian_norm(model.embed, x, method, num_projections=4, generator=gen(0))
    chunked = jacobian_norm(model.embed, x, method, num_projections=4, generator=gen(0),
                            batch_size=3)
    torch.testing.assert_close(chunked, whole, rtol=1e-6, atol=0)


def test_works_under_no_grad_inference_mode_and_autocast():
    net, x = tanh_mlp(), torch.randn(4, 3)
    expected = jacobian_norm(net, x)
    with torch.no_grad():
        torch.testing.assert_close(jacobian_norm(net, x), expected)
    with torch.inference_mode():
        x_inf = x.clone()
        torch.testing.assert_close(jacobian_norm(net, x_inf), expected)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        torch.testing.assert_close(jacobian_norm(net, x), expected)


def test_float64_model_gives_float32_and_empty_batch_gives_empty():
    net = tanh_mlp().double()
    x = torch.randn(4, 3, dtype=torch.float64)
    assert jacobian_norm(net, x).dtype == torch.float32
    assert jacobian_norm(net, x[:0]).shape == (0,)


def test_progress_bar_only_when_asked_or_many_chunks(capsys):
    net, x = tanh_mlp(), torch.randn(12, 3)
    jacobian_norm(net, x, batch_size=2)  # 6 chunks: auto means no bar
    assert "jacobian_norm" not in capsys.readouterr().err
    jacobian_norm(net, x, batch_size=2, progress=True)
    assert "jacobian_norm" in capsys.readouterr().err


def test_bad_inputs_raise_clear_errors():
    net = tanh_mlp()
    with pytest.raises(ValueError, match=r"shape \(N, \*input_shape\), got shape \(3,\)"):
        jacobian_norm(net, torch.randn(3))
    with pytest.raises(ValueError, match=r"2-D .*\(N, d_z\), got \(4, 5, 1\)"):
        jacobian_norm(lambda v: net(v).unsqueeze(2), torch.randn(4, 3))
    with pytest.raises(ValueError, match=r"2-D .*got tuple.*model.embed"):
        jacobian_norm(MLP(3).eval(), torch.randn(4, 2))
    with pytest.raises(ValueError, match="returned 1 rows for a batch of 4"):
        jacobian_norm(lambda v: net(v).mean(0, keepdim=True), torch.randn(4, 3))
    with pytest.raises(ValueError, match="does not depend differentiably"):
        jacobian_norm(lambda v: net(v).detach(), torch.randn(4, 3))
    with pytest.raises(ValueError, match="unknown method 'jvp'; valid methods: exact, vmap, "
                                         "hutchinson"):
        jacobian_norm(net, torch.randn(4, 3), "jvp")
    for bad in (0, -1, 2.0):
        with pytest.raises(ValueError, match="num_projections must be an int >= 1"):
            jacobian_norm(net, torch.randn(4, 3), "hutchinson", num_projections=bad)
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        jacobian_norm(net, torch.randn(4, 3), batch_size=0)


@pytest.mark.parametrize("make", [
    lambda: Classifier32(3),  # BatchNorm and Dropout2d
    lambda: SmallCNN(3, in_channels=3),  # BatchNorm
    lambda: nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 4), nn.Dropout(0.1)),
])
def test_training_mode_batchnorm_or_dropout_is_refused(make):
    model = make().train()
    fn = model.embed if hasattr(model, "embed") else model
    x = torch.randn(2, 3, 32, 32)
    with pytest.raises(ValueError, match="training mode.*model.eval()"):
        jacobian_norm(fn, x)
    with pytest.raises(ValueError, match="training mode"):
        path_length(fn, x[0], x[1])
    model.eval()
    assert jacobian_norm(fn, x).shape == (2,)


def test_batchnorm_without_running_statistics_is_refused_even_in_eval_mode():
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4, track_running_stats=False)).eval()
    with pytest.raises(ValueError, match="without running statistics"):
        jacobian_norm(model, torch.randn(5, 3))


def test_folded_batchnorm_gives_the_same_norms():
    torch.manual_seed(0)
    model = Classifier32(3).eval()
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(jacobian_norm(fold_batchnorm(model).embed, x),
                               jacobian_norm(model.embed, x), rtol=1e-4, atol=0)


def test_norms_along_a_path():
    net = tanh_mlp()
    x0, x1 = torch.randn(3), torch.randn(3)
    t, norms = jacobian_norm_along_path(net, x0, x1, steps=5)
    torch.testing.assert_close(t, torch.tensor([0.0, 0.25, 0.5, 0.75, 1.0]))
    ends = jacobian_norm(net, torch.stack([x0, (x0 + x1) / 2, x1]))
    torch.testing.assert_close(norms[[0, 2, 4]], ends)
    with pytest.raises(ValueError, match=r"same shape.*\(3,\) and \(2,\)"):
        jacobian_norm_along_path(net, x0, x1[:2])
    with pytest.raises(ValueError, match="steps must be an int >= 2"):
        jacobian_norm_along_path(net, x0, x1, steps=1)


def test_path_helpers_keep_a_float64_models_precision():
    net = tanh_mlp().double()
    x0, x1 = torch.randn(3, dtype=torch.float64), torch.randn(3, dtype=torch.float64)
    t, norms = jacobian_norm_along_path(net, x0, x1, steps=3)
    assert t.dtype == torch.float64 and norms.shape == (3,)
    assert path_length(net, x0, x1, steps=3) > 0


def test_unit_embedding_keeps_the_eval_mode_guard():
    """The old lambda hid the model from the guard: BatchNorm in training mode went through,
    norms depended on the batch and the running statistics changed."""
    model = SmallCNN(3, in_channels=1).train()
    before = model.features[1].running_mean.clone()
    with pytest.raises(ValueError, match="training mode"):
        jacobian_norm(unit_embedding(model), torch.randn(4, 1, 8, 8))
    assert torch.equal(model.features[1].running_mean, before)
    model.eval()
    x = torch.randn(4, 1, 8, 8)
    z = unit_embedding(model)(x)
    torch.testing.assert_close(z.norm(dim=1), torch.ones(4))
    # per-sample: a sample's norm does not depend on the rest of its batch
    torch.testing.assert_close(jacobian_norm(unit_embedding(model), x)[:1],
                               jacobian_norm(unit_embedding(model), x[:1]))


def test_norm_gap_known_answer_and_streaming():
    """A linear map's Jacobian is its weight everywhere: every norm is ||W||_F; a scaled copy of
    the map on the unknowns is built by hand to give a known gap."""
    torch.manual_seed(0)
    w = torch.randn(4, 3)
    fn = lambda v: v @ w.T  # noqa: E731
    known, unknown = torch.randn(10, 3), torch.randn(7, 3)
    result = norm_gap(fn, known, unknown)
    assert isinstance(result, NormGap) and result.known.shape == (10,)
    torch.testing.assert_close(result.known, torch.full((10,), w.norm().item()))
    assert result.gap == pytest.approx(0.0, abs=1e-5)
    hand = NormGap(torch.tensor([1.0, 2.0]), torch.tensor([3.0, 5.0]))
    assert hand.gap == pytest.approx(2.5) and hand.auroc == 1.0  # small norm = known
    # a TensorSet is streamed in chunks, with the same result as the stacked tensors
    model = SmallCNN(3, in_channels=1).eval()
    xs_k, xs_u = torch.rand(9, 1, 8, 8), torch.rand(5, 1, 8, 8)
    sets = TensorSet(xs_k, torch.zeros(9, dtype=torch.int64)), \
        TensorSet(xs_u, -torch.ones(5, dtype=torch.int64))
    for method in ("exact", "hutchinson"):
        whole = norm_gap(model, xs_k, xs_u, method, seed=3)
        streamed = norm_gap(model, *sets, method, seed=3, batch_size=4)
        torch.testing.assert_close(streamed.known, whole.known)
        torch.testing.assert_close(streamed.unknown, whole.unknown)
    # unit=False scores the raw embedding
    raw = norm_gap(model, xs_k, xs_u, unit=False)
    torch.testing.assert_close(raw.known, jacobian_norm(model.embed, xs_k))
    with pytest.raises(ValueError, match="need known and unknown inputs"):
        norm_gap(model, xs_k, xs_u[:0])


def test_path_length_known_answers():
    torch.manual_seed(0)
    w = torch.randn(4, 3)
    x0, x1 = torch.randn(3), torch.randn(3)
    # A linear map sends the segment to a segment: length ||W (x1 - x0)|| at any resolution.
    for steps in (2, 9):
        assert path_length(lambda v: v @ w.T, x0, x1, steps) == pytest.approx(
            (w @ (x1 - x0)).norm().item(), rel=1e-6)
    # A curved image: refining nested polygons can only lengthen them, starting from the chord.
    net = tanh_mlp()
    lengths = [path_length(net, x0, x1, steps) for steps in (2, 3, 5, 9, 17)]
    chord = (net(x1[None]) - net(x0[None])).norm().item()
    assert lengths[0] == pytest.approx(chord, rel=1e-6)
    assert all(a <= b + 1e-9 for a, b in zip(lengths, lengths[1:]))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("method", METHODS)
def test_cuda_matches_cpu(method):
    torch.manual_seed(0)
    model = SmallCNN(3, in_channels=1, embed_dim=8).eval()
    x = torch.randn(6, 1, 8, 8)
    cpu = jacobian_norm(model.embed, x, method, generator=gen(0))
    cuda = jacobian_norm(model.cuda().embed, x.cuda(), method, generator=gen(0))
    assert cuda.device.type == "cuda"
    torch.testing.assert_close(cuda.cpu(), cpu, rtol=1e-4, atol=1e-6)


def test_true_float32_switches_tf32_off_inside_and_restores_it():
    from companion.jacobian import true_float32

    before = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = True
    try:
        with true_float32():
            assert not torch.backends.cuda.matmul.allow_tf32
            assert not torch.backends.cudnn.allow_tf32
        assert torch.backends.cuda.matmul.allow_tf32
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before
