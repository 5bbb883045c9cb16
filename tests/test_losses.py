import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from companion import losses
from companion.losses import (HEADS, CenterHead, IntraClassHead, LossOutput, MOvRHead, OvRHead,
                              RotationSSL, SoftmaxHead, WithCompaction, add_angle, build_head,
                              sample_ovr_loss)
from companion.models import MLP

T = 32.0
SQRT3 = math.sqrt(3.0)


def softplus(a: float) -> float:
    """-log sigmoid(-a) = -log(1 - sigmoid(a)), written so that large a does not overflow."""
    return max(a, 0.0) + math.log1p(math.exp(-abs(a)))


def unit(angle: float) -> list[float]:
    return [math.cos(angle), math.sin(angle)]


@pytest.fixture(autouse=True)
def one_thread():
    """These tensors are tiny: a second intra-op thread only adds synchronisation (the descent
    loops below ran 10x slower with two threads on a busy 2-core machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def set_weight(head: nn.Module, weight, **others) -> None:
    with torch.no_grad():
        for name, value in {"weight": weight, **others}.items():
            getattr(head, name).copy_(torch.as_tensor(value))


def pairwise_angles(w: torch.Tensor) -> torch.Tensor:
    """Angles between the rows of ``w``, one per unordered pair."""
    w = F.normalize(w, dim=1)
    i, j = torch.triu_indices(len(w), len(w), 1)
    return torch.arccos((w[i] * w[j]).sum(1).clamp(-1, 1))


# ---------------------------------------------------------------- heads on hand-computed cases


def test_softmax_head_known_answer():
    head = SoftmaxHead(2, 2)
    set_weight(head, [[1.0, 0.0], [0.0, 1.0]], bias=[0.0, 0.0])
    z, y = torch.tensor([[math.log(3.0), 0.0]]), torch.tensor([0])
    out = head.loss(z, y)
    # logits (ln 3, 0) -> softmax (3/4, 1/4); CE = -ln(3/4)
    assert isinstance(out, LossOutput)
    torch.testing.assert_close(out.logits, torch.tensor([[math.log(3.0), 0.0]]))
    torch.testing.assert_close(out.loss, torch.tensor(math.log(4 / 3)))
    torch.testing.assert_close(head(z), out.logits)
    assert head.prototypes is head.weight


def test_center_head_known_answer_and_centers_get_gradients():
    head = CenterHead(2, 2, center_weight=0.1)
    set_weight(head, torch.zeros(2, 2), bias=[0.0, 0.0], centers=[[1.0, 0.0], [0.0, 1.0]])
    z, y = torch.tensor([[1.0, 2.0], [0.0, 1.0]]), torch.tensor([0, 1])
    out = head.loss(z, y)
    # zero logits: CE = ln 2 for both samples. ||z - c_y||^2 = 4 and 0, so the center loss is
    # 0.5 * mean(4, 0) = 1 and the total ln 2 + 0.1 * 1.
    torch.testing.assert_close(out.loss, torch.tensor(math.log(2.0) + 0.1))
    out.loss.backward()
    # d/dc_0 = 0.1 * 0.5 * 2 (c_0 - z_0) / N = 0.05 * (0, -2); c_1 sits on its sample: 0
    torch.testing.assert_close(head.centers.grad, torch.tensor([[0.0, -0.1], [0.0, 0.0]]))
    assert head.prototypes is head.centers


def test_ovr_head_known_answer_and_stable_for_huge_logits():
    head = OvRHead(2, 2, scale=T, scale_warmup=0)
    set_weight(head, [[2.0, 0.0], [0.0, 0.5]])  # prototypes are normalised: e_0 and e_1
    z = torch.tensor([[5.0, 0.0]])  # cos = 1 with w_0, 0 with w_1
    torch.testing.assert_close(head(z), torch.tensor([[32.0, 0.0]]))
    torch.testing.assert_close(head.prototypes, torch.eye(2))
    # y = 0: -log sigmoid(32) - log(1 - sigmoid(0)) = softplus(-32) + ln 2
    out = head.loss(z, torch.tensor([0]))
    torch.testing.assert_close(out.loss, torch.tensor(softplus(-32.0) + math.log(2.0)))
    torch.testing.assert_close(out.logits, head(z))  # no margin: training logits = inference
    # y = 1: -log(1 - sigmoid(32)) - log sigmoid(0) = softplus(32) + ln 2 = 32 + ln 2 + tiny
    torch.testing.assert_close(head.loss(z, torch.tensor([1])).loss,
                               torch.tensor(softplus(32.0) + math.log(2.0)))
    # sum over classes, mean over samples
    both = head.loss(z.repeat(2, 1), torch.tensor([0, 1])).loss
    expected = (softplus(-32.0) + softplus(32.0)) / 2 + math.log(2.0)
    torch.testing.assert_close(both, torch.tensor(expected))
    # logits of +-1e4: the naive log(1 - sigmoid) would be log(0) = -inf
    huge = OvRHead(2, 2, scale=1e4, scale_warmup=0)
    set_weight(huge, [[1.0, 0.0], [-1.0, 0.0]])
    assert huge.loss(z, torch.tensor([1])).loss.item() == pytest.approx(2e4, rel=1e-6)


@pytest.mark.parametrize("margin_on, off_target_logit", [
    # z is 60 degrees from w_0 (the label) and 30 degrees from w_1; m = 30 degrees.
    ("target", 16 * SQRT3),  # non-target untouched: 32 cos 30deg
    ("all", 16.0),           # non-target angle + m = 60deg: 32 * 1/2
    ("signed", 32.0),        # non-target angle - m = 0deg: 32 * 1
])
def test_movr_head_known_answer_per_margin_reading(margin_on, off_target_logit):
    head = MOvRHead(2, 2, scale=T, margin=math.pi / 6, margin_on=margin_on, scale_warmup=0)
    set_weight(head, [[2.0, 0.0], [0.0, 0.5]])
    z, y = torch.tensor([unit(math.pi / 3)]) * 3, torch.tensor([0])
    out = head.loss(z, y)
    # target: angle 60deg + 30deg = 90deg -> cos 0 -> logit 0 -> -log sigmoid(0) = ln 2
    torch.testing.assert_close(out.logits, torch.tensor([[0.0, off_target_logit]]))
    torch.testing.assert_close(out.loss, torch.tensor(math.log(2.0) + softplus(off_target_logit)))
    # inference logits carry no margin: 32 cos 60deg, 32 cos 30deg
    torch.testing.assert_close(head(z), torch.tensor([[16.0, 16 * SQRT3]]))


def test_movr_default_margin_on_a_generic_angle():
    assert MOvRHead(2, 3).scale_warmup == 100  # our addition, see the warm-up tests below
    head = MOvRHead(2, 3, scale_warmup=0)
    assert (head.scale, head.margin, head.margin_on) == (32.0, 0.5, "target")
    set_weight(head, [[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    z = torch.tensor([unit(1.0)], dtype=torch.float32)  # angles 1, pi/2 - 1, pi - 1
    logits = head.loss(z, torch.tensor([0])).logits
    expected = [32 * math.cos(1.5), 32 * math.sin(1.0), -32 * math.cos(1.0)]
    torch.testing.assert_close(logits, torch.tensor([expected]), rtol=1e-5, atol=1e-5)


def test_add_angle_is_continuous_and_decreasing_past_the_ends():
    theta = torch.linspace(0, math.pi, 20001, dtype=torch.float64)
    for delta in (0.5, -0.5, 1.2):
        shifted = add_angle(torch.cos(theta), delta)
        steps = shifted.diff()
        assert (steps < 0).all(), delta  # strictly decreasing: further away, lower logit
        assert steps.abs().max() < 1e-3  # no jump (ArcFace's shift jumps by 0.12 at m = 0.5)
    # inside [0, pi]: the exact angular shift
    torch.testing.assert_close(add_angle(torch.tensor(0.5), 0.5),
                               torch.tensor(math.cos(math.pi / 3 + 0.5)))
    # past pi: cos(theta) + cos(m) - 1; at theta = pi - 0.25, m = 0.5: -cos .25 + cos .5 - 1
    past = add_angle(torch.tensor(math.cos(math.pi - 0.25), dtype=torch.float64), 0.5)
    assert past.item() == pytest.approx(-math.cos(0.25) + math.cos(0.5) - 1, abs=1e-12)
    # the raw formula turns back there, which is what the extension is for
    raw = torch.cos(theta + 0.5)
    assert (raw.diff()[theta[1:] > math.pi - 0.5 + 1e-3] > 0).all()


def test_add_angle_finite_at_and_past_exact_alignment():
    # normalised vectors can give a cosine rounded past 1; arccos of it is nan
    cos = torch.tensor([1.0, -1.0, 1.0000001, -1.0000001], requires_grad=True)
    shifted = add_angle(cos, 0.5)
    shifted.sum().backward()
    assert torch.isfinite(shifted).all() and torch.isfinite(cos.grad).all()


class _LossOf(nn.Module):
    """Wraps ``head.loss`` so that ``functional_call`` can swap the head's weight for an input."""

    def __init__(self, head: nn.Module):
        super().__init__()
        self.head = head

    def forward(self, z, y):
        return self.head.loss(z, y).loss


@pytest.mark.parametrize("margin_on", losses.MARGIN_MODES)
def test_movr_gradient_matches_finite_differences(margin_on):
    gen = torch.Generator().manual_seed(0)
    z = torch.randn(5, 4, generator=gen, dtype=torch.float64)
    w = torch.randn(3, 4, generator=gen, dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 0, 1])
    head = MOvRHead(4, 3, margin_on=margin_on, scale_warmup=0).double()
    # stay off the kinks (the junction of add_angle and the clamp), where no derivative exists
    theta = torch.arccos(F.normalize(z, dim=1) @ F.normalize(w, dim=1).T)
    assert (theta > 0.1).all() and (theta < math.pi - 0.1).all()
    assert ((theta - (math.pi - 0.5)).abs() > 0.05).all() and ((theta - 0.5).abs() > 0.05).all()
    loss = _LossOf(head)

    def fn(z_, w_):
        return torch.func.functional_call(loss, {"head.weight": w_}, (z_, y))

    assert torch.autograd.gradcheck(fn, (z.requires_grad_(), w.requires_grad_()))


def test_movr_scale_warmup_ramps_then_is_exactly_the_papers_loss():
    """With scale_warmup = 4, training step t uses T * min(1, t/4); from step 4 on the loss and
    logits are bit-identical to the paper's (scale_warmup = 0). Eval mode and no_grad calls
    (scores, analyses) do not advance the counter."""
    gen = torch.Generator().manual_seed(0)
    z, y = torch.randn(6, 5, generator=gen), torch.tensor([0, 1, 2, 0, 1, 2])
    warm, paper = MOvRHead(5, 3, scale_warmup=4), MOvRHead(5, 3, scale_warmup=0)
    paper.load_state_dict(warm.state_dict())
    reference = paper.loss(z, y)
    for t in range(1, 7):
        out = warm.loss(z, y)
        assert warm.steps.item() == t
        torch.testing.assert_close(out.logits, min(1.0, t / 4) * reference.logits)
        if t >= 4:
            assert torch.equal(out.loss, reference.loss) and torch.equal(out.logits,
                                                                         reference.logits)
    torch.testing.assert_close(warm(z), paper(z))  # inference logits never carry the warm-up
    with torch.no_grad():
        warm.loss(z, y)
    warm.eval()
    warm.loss(z, y)
    assert warm.steps.item() == 6


def test_movr_warmup_step_counter_is_saved_and_old_weights_load_past_the_warmup():
    head = MOvRHead(4, 3, scale_warmup=10)
    for _ in range(3):
        head.loss(torch.randn(2, 4), torch.tensor([0, 1]))
    copy = MOvRHead(4, 3, scale_warmup=10)
    copy.load_state_dict(head.state_dict())  # resumed training continues the ramp
    assert copy.steps.item() == 3
    # weights saved before the warm-up existed have no counter: loaded as trained (past it)
    old = {"weight": head.weight.detach().clone()}
    fresh = MOvRHead(4, 3, scale_warmup=10)
    fresh.load_state_dict(old)
    assert fresh.steps.item() == 10 and fresh.warmup_factor().item() == 1.0


def test_movr_warmup_keeps_the_first_steps_short_on_digits():
    """Why the warm-up exists (see MOvRHead): with T = 32 from step 0, the first 50 SGD steps on
    the untrained digits SmallCNN inflate its embedding's median norm several hundred-fold
    (measured: 336x on split 0, seed 1), which cuts every later angular step by the square of
    that; the 100-step warm-up keeps it several times smaller (15x). Chapter 6 shows the stalls
    this causes and the designed experiment behind the fix."""
    from companion import RunSpec, TensorSet, experiments

    growth = {}
    for label in ("movr:scale_warmup=0", "movr"):
        spec = RunSpec.parse(label, dataset="digits", split=0, seed=1, iterations=50)
        osr = experiments.load_data(spec)
        x = TensorSet.to_float(osr.train.inputs[:256])
        untrained = experiments.build(spec, osr).eval()
        trained = experiments.train(spec, osr=osr, device="cpu").model  # returned in eval mode
        with torch.no_grad():
            before, after = (m.embed(x).norm(dim=1).median() for m in (untrained, trained))
        growth[label] = (after / before).item()
    assert growth["movr:scale_warmup=0"] > 100, growth
    assert growth["movr:scale_warmup=0"] > 5 * growth["movr"], growth


@pytest.mark.parametrize("bad", [-1, 2.5, float("nan"), True, "100"])
def test_scale_warmup_validated(bad):
    with pytest.raises(ValueError, match="scale_warmup must be a whole number of steps >= 0"):
        MOvRHead(4, 3, scale_warmup=bad)


def test_margin_and_scale_validated():
    with pytest.raises(ValueError, match="unknown margin_on 'both'.*target, all, signed"):
        MOvRHead(4, 3, margin_on="both")
    with pytest.raises(ValueError, match="margin must be in"):
        MOvRHead(4, 3, margin=2.0)
    with pytest.raises(ValueError, match="scale must be > 0"):
        OvRHead(4, 3, scale=0.0)


def test_build_head_by_name_and_error_lists_valid_names():
    assert set(HEADS) == {"sce", "center", "ovr", "movr", "intra"}
    head = build_head("movr", 8, 5, margin=0.3)
    assert isinstance(head, MOvRHead) and head.margin == 0.3
    with pytest.raises(ValueError,
                       match="unknown loss 'arcface'; valid names: center, intra, movr, ovr, sce"):
        build_head("arcface", 8, 5)


@pytest.mark.parametrize("name", sorted(HEADS))
def test_every_head_replaces_a_model_head(name):
    torch.manual_seed(0)
    model = MLP(num_classes=3)
    model.head = build_head(name, model.embed_dim, model.num_classes)
    x, y = torch.randn(6, 2), torch.tensor([0, 1, 2, 0, 1, 2])
    z, logits = model(x)
    assert logits.shape == (6, 3) and model.head.prototypes.shape == (3, model.embed_dim)
    out = model.head.loss(z, y)
    assert out.loss.ndim == 0 and out.logits.shape == (6, 3) and torch.isfinite(out.loss)
    out.loss.backward()
    assert model.features[0].weight.grad.abs().sum() > 0  # the loss reaches the backbone


# ---------------------------------------------------------------- the paper's propositions


def _minimise(head: nn.Module, z: torch.Tensor, y: torch.Tensor, steps: int,
              lr: float = 0.05) -> tuple[float, torch.Tensor]:
    """Full-batch Adam on the head's weight and the free embeddings ``z``: (final loss, z)."""
    z = z.clone().requires_grad_()
    opt = torch.optim.Adam([head.weight, z], lr=lr)
    for _ in range(steps):
        opt.zero_grad()
        loss = head.loss(z, y).loss
        loss.backward()
        opt.step()
    return loss.item(), z.detach()


def test_prop2_plain_ovr_minimum_collapses_the_non_target_prototypes():
    """Proposition 2. For samples of one class y, the plain OvR loss is a sum of terms each
    involving one prototype: softplus(-T cos(f, w_y)) + sum_{k != y} softplus(T cos(f, w_k)).
    Each term is minimised on its own, so the minimum is reached exactly when the samples share
    one direction f, w_y = f and every w_k (k != y) = -f: all non-target prototypes coincide.
    Nothing in the loss keeps them apart. The minimum value is K softplus(-T).

    Measured: (a) at T = 32 the claimed minimiser has loss K softplus(-T) and 100000 random
    configurations all lie above it; (b) gradient descent on prototypes and embeddings (K = 4,
    d = 3, three samples of class 0) reaches that minimum and the three non-target prototypes end
    within 0.05 rad of each other and of -f. (b) uses T = 4: at T = 32 the terms and their
    gradients fall like e^{T cos(f, w_k)}, and the same descent stalls with the non-target
    prototypes still up to 2.1 rad apart -- wherever they were when their terms became negligible.
    """
    K, d = 4, 3
    gen = torch.Generator().manual_seed(0)
    # (a) the minimiser at T = 32
    f = F.normalize(torch.randn(1, d, generator=gen, dtype=torch.float64), dim=1)
    head = OvRHead(d, K, scale=T, scale_warmup=0).double()
    set_weight(head, torch.cat([f, -f.repeat(K - 1, 1)]))
    y = torch.tensor([0])
    at_minimum = head.loss(f, y).loss.item()
    assert at_minimum == pytest.approx(K * softplus(-T), rel=1e-9)
    # random (f, W), one configuration per row: the cosines of f_i with the K rows of W_i
    f_r = torch.randn(100000, 1, d, generator=gen, dtype=torch.float64)
    w_r = torch.randn(100000, K, d, generator=gen, dtype=torch.float64)
    cos = (F.normalize(f_r, dim=2) * F.normalize(w_r, dim=2)).sum(2)
    assert (sample_ovr_loss(T * cos, torch.zeros(100000, dtype=torch.long)) > at_minimum).all()

    # (b) descent at T = 4
    scale = 4.0
    head = OvRHead(d, K, scale=scale, scale_warmup=0).double()
    set_weight(head, torch.randn(K, d, generator=gen, dtype=torch.float64))
    final, z = _minimise(head, torch.randn(3, d, generator=gen, dtype=torch.float64),
                         torch.zeros(3, dtype=torch.long), steps=500)
    assert final == pytest.approx(K * softplus(-scale), rel=1e-3)
    f_bar = F.normalize(F.normalize(z, dim=1).mean(0), dim=0)
    w = head.prototypes.detach()
    assert pairwise_angles(w[1:]).max() < 0.05  # the non-target prototypes collapse ...
    assert torch.arccos((w[1:] @ -f_bar).clamp(-1, 1)).max() < 0.05  # ... onto -f
    assert torch.arccos((w[0] @ f_bar).clamp(-1, 1)) < 0.05  # and w_y lands on f


@pytest.mark.parametrize("margin_on, gap", [("target", 0.5), ("signed", 1.0), ("all", 0.0)])
def test_prop3_margin_sets_the_prototype_separation_needed_to_classify(margin_on, gap):
    """Proposition 3, exact. A sample is classified with the margin at training time when its
    target logit is positive and every other logit negative (each of its terms below ln 2).
    For two prototypes alpha apart, in 2-D, that is possible for some sample iff alpha > gap:
    the target reading asks theta_y < pi/2 - m and theta_k > pi/2, so gap = m; the signed one
    theta_k - m > pi/2 as well, so gap = 2m; Eq. (3) read literally ("all") gives gap = 0, like
    plain OvR. Measured on a 0.005-rad grid of alpha and a 0.0005-rad grid of sample angles:
    one head holds w_0 and one prototype per alpha (each logit involves one prototype only).
    """
    m, step = 0.5, 0.005
    alphas = torch.arange(1, 401, dtype=torch.float64) * step  # 0.005 ... 2.0
    head = MOvRHead(2, 1 + len(alphas), margin=m, margin_on=margin_on, scale_warmup=0).double()
    set_weight(head, torch.cat([torch.tensor([[1.0, 0.0]], dtype=torch.float64),
                                torch.stack([alphas.cos(), alphas.sin()], dim=1)]))
    phi = torch.arange(-math.pi, math.pi, 5e-4, dtype=torch.float64)
    z = torch.stack([phi.cos(), phi.sin()], dim=1)  # samples of class 0 all round the circle
    logits = head.loss(z, torch.zeros(len(phi), dtype=torch.long)).logits
    feasible = ((logits[:, :1] > 0) & (logits[:, 1:] < 0)).any(dim=0)
    smallest = alphas[feasible].min().item()
    assert feasible[alphas > smallest].all()  # and every wider pair works too
    assert gap < smallest <= gap + 2 * step


def test_prop3_movr_optimum_keeps_prototypes_2m_apart_where_ovr_does_not():
    """Proposition 3 at an optimum. K = 4 classes in d = 4, three free embeddings per class,
    prototypes started collapsed (pairwise angles about 0.1 rad); full-batch Adam, 600 steps,
    seeds 0-3. Both losses drive the prototypes apart only until their loss is small; the
    margin moves where that happens (previous test). Measured: m-OvR (m = 0.5, target reading)
    ends with every pair 1.17-1.36 rad > 2m = 1 apart, plain OvR at comparable loss (1e-3 to
    3e-3) with its closest pair 0.68-0.85 rad < 2m -- so the bound is the margin's doing.
    """
    K, d, m = 4, 4, 0.5
    y = torch.arange(K).repeat_interleave(3)
    for seed in range(4):
        closest = {}
        for name, head in [("ovr", OvRHead(d, K, scale_warmup=0)),
                           ("movr", MOvRHead(d, K, margin=m, scale_warmup=0))]:
            head.double()
            gen = torch.Generator().manual_seed(seed)
            centre = torch.randn(1, d, generator=gen, dtype=torch.float64)
            set_weight(head, centre + 0.1 * torch.randn(K, d, generator=gen, dtype=torch.float64))
            assert pairwise_angles(head.weight.detach()).max() < 0.3
            z = torch.randn(3 * K, d, generator=gen, dtype=torch.float64)
            final, _ = _minimise(head, z, y, steps=600)
            assert final < 0.01, (seed, name)
            closest[name] = pairwise_angles(head.weight.detach()).min().item()
        assert closest["movr"] >= 2 * m, (seed, closest)
        assert closest["ovr"] < 2 * m, (seed, closest)


def test_prop4_movr_inter_class_gradient_exceeds_sce_when_target_similarity_positive():
    """Proposition 4. The inter-class gradient is the derivative of the loss with respect to a
    non-target similarity s_k (k != y): how hard the loss pushes the sample away from w_k. Its
    pull on f is that number times ds_k/df = (w_k - s_k f)/||f|| (Eq. 4), the same factor for
    both losses, so comparing the derivatives compares the gradients class by class.
    SCE on the same scaled cosines: dL/ds_k = T e^{T s_k} / sum_j e^{T s_j};
    m-OvR (target margin leaves non-targets alone): dL/ds_k = T sigmoid(T s_k).
    Their ratio is sum_j e^{T s_j} / (1 + e^{T s_k}) > 1 whenever e^{T s_y} > 1, i.e. s_y > 0.
    Measured with autograd on 20000 random (f, W) with K = 6, d = 8, T = 32, float64: every
    non-target derivative of m-OvR exceeds SCE's when s_y > 0, the ratio matches the formula,
    and some cases with s_y < 0 go the other way (the condition is needed).
    """
    N, K, d = 20000, 6, 8
    gen = torch.Generator().manual_seed(0)
    head = MOvRHead(d, K, scale_warmup=0).double()
    set_weight(head, torch.randn(K, d, generator=gen, dtype=torch.float64))
    z = torch.randn(N, d, generator=gen, dtype=torch.float64)
    y = torch.randint(K, (N,), generator=gen)
    s = head.cosine(z).detach().requires_grad_()
    (g_movr,) = torch.autograd.grad(sample_ovr_loss(head.training_logits(s, y), y).sum(), s)
    (g_sce,) = torch.autograd.grad(F.cross_entropy(T * s, y, reduction="sum"), s)
    non_target = ~F.one_hot(y, K).bool()
    s_y = s.detach().gather(1, y[:, None]).squeeze(1)
    positive = s_y > 0
    assert 0.3 < positive.float().mean() < 0.7
    assert (g_movr > g_sce)[positive][non_target[positive]].all()
    ratio = torch.exp(T * s).sum(1, keepdim=True) / (1 + torch.exp(T * s))
    torch.testing.assert_close((g_movr / g_sce)[non_target], ratio.detach()[non_target])
    assert (g_movr <= g_sce)[~positive][non_target[~positive]].any()


# ---------------------------------------------------------------- rotation self-supervision


def test_rotation_ssl_rotates_four_ways_with_labels():
    x = torch.arange(8.0).view(2, 1, 2, 2)  # image 0: [[0, 1], [2, 3]]; image 1: +4
    rotated, labels = RotationSSL.rotate(x)
    assert rotated.shape == (8, 1, 2, 2)
    assert labels.tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    # counter-clockwise as drawn (row 0 on top): the top-right pixel moves to the top-left
    expected = [[[0, 1], [2, 3]], [[1, 3], [0, 2]], [[3, 2], [1, 0]], [[2, 0], [3, 1]]]
    torch.testing.assert_close(rotated[0::2, 0], torch.tensor(expected, dtype=torch.float32))
    torch.testing.assert_close(rotated[1::2, 0], torch.tensor(expected, dtype=torch.float32) + 4)


def test_rotation_ssl_loss_known_value_and_gradients():
    ssl = RotationSSL(embed_dim=9)
    set_weight(ssl.classifier, torch.zeros(4, 9), bias=torch.zeros(4))
    x = torch.randn(5, 1, 3, 3)
    loss = ssl.loss(lambda batch: batch.flatten(1), x)
    torch.testing.assert_close(loss, torch.tensor(math.log(4.0)))  # uniform over 4 rotations
    loss.backward()
    assert ssl.classifier.weight.grad.abs().sum() > 0
    assert losses.DEFAULT_SSL_WEIGHT == 0.1


def test_rotation_ssl_rejects_non_images():
    ssl = RotationSSL(embed_dim=2)
    with pytest.raises(ValueError, match=r"needs images \(N, C, H, W\), got shape \(4, 2\)"):
        ssl.loss(lambda b: b, torch.randn(4, 2))
    with pytest.raises(ValueError, match="square images, got 4x3"):
        RotationSSL.rotate(torch.randn(2, 1, 4, 3))


def test_intra_class_head_is_half_the_squared_distance_to_the_prototype():
    head = IntraClassHead(2, 2)
    with torch.no_grad():
        head.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 3.0]]))  # unit prototypes e1, e2
    z = torch.tensor([[2.0, 0.0], [1.0, 1.0], [0.0, -5.0]])
    y = torch.tensor([0, 0, 1])
    # 1 - cos: 0 (on its prototype), 1 - 1/sqrt(2) (45 degrees off), 2 (opposite)
    expected = (0 + (1 - 2 ** -0.5) + 2) / 3
    out = head.loss(z, y)
    assert out.loss.item() == pytest.approx(expected, rel=1e-6)
    unit = torch.nn.functional.normalize(z, dim=1)
    half_sq = 0.5 * (unit - head.prototypes[y]).pow(2).sum(1).mean()
    assert out.loss.item() == pytest.approx(half_sq.item(), rel=1e-6)
    assert torch.allclose(out.logits, head(z))


def test_with_compaction_adds_the_weighted_intra_class_term_to_any_head():
    torch.manual_seed(0)
    base = OvRHead(2, 2, scale_warmup=0)
    with torch.no_grad():
        base.weight.copy_(torch.tensor([[2.0, 0.0], [0.0, 1.0]]))  # unit prototypes e1, e2
    z = torch.tensor([[1.0, 1.0], [0.0, -3.0]])
    y = torch.tensor([0, 1])
    # 1 - cos to the own prototype: 1 - 1/sqrt(2) (45 degrees), 2 (opposite)
    intra = ((1 - 2 ** -0.5) + 2) / 2
    for weight in [0.0, 0.5, 4.0]:
        head = WithCompaction(base, weight)
        out = head.loss(z, y)
        expected = base.loss(z, y).loss.item() + weight * intra
        assert out.loss.item() == pytest.approx(expected, rel=1e-6)
        assert torch.equal(out.logits, base.loss(z, y).logits) and torch.equal(head(z), base(z))
        assert torch.equal(head.prototypes, base.prototypes)
    sce = SoftmaxHead(2, 2)  # SCE's prototypes are its (unnormalised) weight rows
    out = WithCompaction(sce, 1.0).loss(z, y)
    cos = F.cosine_similarity(z, sce.weight[y], dim=1)
    expected = sce.loss(z, y).loss.item() + (1 - cos).mean().item()
    assert out.loss.item() == pytest.approx(expected, rel=1e-6)
    with pytest.raises(ValueError, match="weight must be >= 0"):
        WithCompaction(base, -1.0)


def test_ovr_shares_the_scale_warmup_of_movr():
    """OvR stalls the same way as m-OvR from T = 32 at step 0 (chapter 6), so it has the same
    warm-up; scale_warmup=0 is the plain loss."""
    head = OvRHead(2, 2)
    assert head.scale_warmup == 100 and int(head.steps) == 0
    z, y = torch.tensor([[1.0, 0.0]]), torch.tensor([0])
    warm = head.loss(z, y).logits  # step 1 of 100: T / 100
    plain = OvRHead(2, 2, scale_warmup=0)
    plain.load_state_dict(head.state_dict())
    torch.testing.assert_close(warm, plain.loss(z, y).logits / 100)
