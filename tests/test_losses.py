"""Contrastive losses against hand-written math (python loops, math.exp/log) and sentence-transformers."""

from __future__ import annotations

import math

import pytest
import torch

from lacos_lightning.errors import ConfigError
from lacos_lightning.losses import LossConfig, cosent, info_nce, multiple_negatives_ranking

# ---------------------------------------------------------------- independent reference math


def _cos(u: list[float], v: list[float]) -> float:
    dot = sum(a * b for a, b in zip(u, v, strict=True))
    return dot / (math.sqrt(sum(a * a for a in u)) * math.sqrt(sum(b * b for b in v)))


def ref_info_nce(anchor: torch.Tensor, candidates: torch.Tensor, labels: list[int], scale: float) -> float:
    """mean_i -log( exp(s*cos(a_i, c_{l_i})) / sum_j exp(s*cos(a_i, c_j)) )."""
    a_rows, c_rows = anchor.tolist(), candidates.tolist()
    total = 0.0
    for i, a in enumerate(a_rows):
        logits = [scale * _cos(a, c) for c in c_rows]
        denom = sum(math.exp(x) for x in logits)
        total += -math.log(math.exp(logits[labels[i]]) / denom)
    return total / len(a_rows)


def ref_mnrl(anchor, positive, negative=None, scale=20.0, symmetric=False) -> float:
    candidates = positive if negative is None else torch.cat([positive, negative])
    labels = list(range(anchor.size(0)))
    forward = ref_info_nce(anchor, candidates, labels, scale)
    if not symmetric:
        return forward
    # positive i must pick anchor i among the anchors only
    backward = ref_info_nce(positive, anchor, labels, scale)
    return (forward + backward) / 2


def ref_cosent(emb1: torch.Tensor, emb2: torch.Tensor, scores: list[float], scale: float) -> float:
    """log(1 + sum_{(i,j): s_i > s_j} exp(scale * (cos_j - cos_i)))."""
    cos = [_cos(u, v) for u, v in zip(emb1.tolist(), emb2.tolist(), strict=True)]
    total = 1.0
    for i in range(len(cos)):
        for j in range(len(cos)):
            if scores[i] > scores[j]:
                total += math.exp(scale * (cos[j] - cos[i]))
    return math.log(total)


def _rand(rows: int, dim: int = 5, seed: int = 0) -> torch.Tensor:
    return torch.randn(rows, dim, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


# ---------------------------------------------------------------- hand-made tiny cases


def test_info_nce_two_rows_by_hand() -> None:
    # anchors along the axes; candidate 0 is the x axis, candidate 1 the y axis: cosines are 1 and 0
    anchor = torch.tensor([[2.0, 0.0], [0.0, 3.0]])
    candidates = torch.tensor([[1.0, 0.0], [0.0, 5.0]])
    labels = torch.tensor([0, 1])
    scale = 2.0
    # each row: logits [2, 0] with the target on the 2 -> -log(e^2 / (e^2 + e^0))
    expected = -math.log(math.exp(2) / (math.exp(2) + 1.0))
    assert info_nce(anchor, candidates, labels, scale).item() == pytest.approx(expected, rel=1e-6)
    # swapped targets: the target logit is 0 -> -log(1 / (e^2 + 1))
    wrong = -math.log(1.0 / (math.exp(2) + 1.0))
    assert info_nce(anchor, candidates, torch.tensor([1, 0]), scale).item() == pytest.approx(wrong, rel=1e-6)


def test_info_nce_more_candidates_than_anchors() -> None:
    anchor, candidates = _rand(3, seed=1), _rand(5, seed=2)
    labels = [4, 0, 2]
    got = info_nce(anchor, candidates, torch.tensor(labels), 7.5).item()
    assert got == pytest.approx(ref_info_nce(anchor, candidates, labels, 7.5), rel=1e-9)


def test_info_nce_is_scale_of_cosine_not_dot_product() -> None:
    anchor, candidates = _rand(3, seed=3), _rand(3, seed=4)
    labels = torch.tensor([0, 1, 2])
    base = info_nce(anchor, candidates, labels, 5.0)
    rescaled = info_nce(anchor * 10, candidates * torch.tensor([[0.1], [3.0], [7.0]], dtype=torch.float64), labels, 5.0)
    torch.testing.assert_close(base, rescaled)


@pytest.mark.parametrize("scale", [1.0, 20.0])
@pytest.mark.parametrize("rows", [2, 4])
def test_mnrl_pairs(scale: float, rows: int) -> None:
    a, p = _rand(rows, seed=10), _rand(rows, seed=11)
    got = multiple_negatives_ranking(a, p, scale=scale).item()
    assert got == pytest.approx(ref_mnrl(a, p, scale=scale), rel=1e-9)


@pytest.mark.parametrize("rows", [2, 3])
def test_mnrl_hard_negatives(rows: int) -> None:
    a, p, n = _rand(rows, seed=20), _rand(rows, seed=21), _rand(rows, seed=22)
    got = multiple_negatives_ranking(a, p, n, scale=20.0).item()
    assert got == pytest.approx(ref_mnrl(a, p, n, scale=20.0), rel=1e-9)
    # hard negatives are extra candidates: they change the loss
    assert got != pytest.approx(ref_mnrl(a, p, scale=20.0), rel=1e-6)


@pytest.mark.parametrize("with_negatives", [False, True])
def test_mnrl_symmetric(with_negatives: bool) -> None:
    a, p, n = _rand(3, seed=30), _rand(3, seed=31), _rand(3, seed=32)
    neg = n if with_negatives else None
    got = multiple_negatives_ranking(a, p, neg, scale=10.0, symmetric=True).item()
    assert got == pytest.approx(ref_mnrl(a, p, neg, scale=10.0, symmetric=True), rel=1e-9)
    assert got != pytest.approx(ref_mnrl(a, p, neg, scale=10.0, symmetric=False), rel=1e-6)


def test_mnrl_two_rows_fully_by_hand() -> None:
    # a_0 = x, a_1 = y; p_0 = x, p_1 = (x+y)/sqrt2 -> cos(a0,p0)=1, cos(a0,p1)=1/sqrt2,
    # cos(a1,p0)=0, cos(a1,p1)=1/sqrt2
    a = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    p = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    s = 3.0
    r = 1 / math.sqrt(2)
    row0 = -math.log(math.exp(s) / (math.exp(s) + math.exp(s * r)))
    row1 = -math.log(math.exp(s * r) / (math.exp(0.0) + math.exp(s * r)))
    expected = (row0 + row1) / 2
    assert multiple_negatives_ranking(a, p, scale=s).item() == pytest.approx(expected, rel=1e-6)


def test_cosent_two_rows_by_hand() -> None:
    # pair 0: identical vectors (cos 1); pair 1: orthogonal (cos 0)
    e1 = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    e2 = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    scale = 2.0
    # gold says pair 0 > pair 1 and the cosines agree: log(1 + exp(2 * (0 - 1)))
    agree = math.log(1 + math.exp(-2.0))
    assert cosent(e1, e2, torch.tensor([4.0, 1.0]), scale).item() == pytest.approx(agree, rel=1e-6)
    # gold says pair 1 > pair 0, cosines disagree: log(1 + exp(2 * (1 - 0)))
    disagree = math.log(1 + math.exp(2.0))
    assert cosent(e1, e2, torch.tensor([1.0, 4.0]), scale).item() == pytest.approx(disagree, rel=1e-6)
    # equal gold scores: no ordered pair -> log(1) = 0
    assert cosent(e1, e2, torch.tensor([3.0, 3.0]), scale).item() == pytest.approx(0.0, abs=1e-7)


@pytest.mark.parametrize("scores", [[0.1, 0.5, 0.5, 0.9], [5.0, 0.0, 2.5, 1.0], [1.0, 2.0, 3.0]])
@pytest.mark.parametrize("scale", [1.0, 20.0])
def test_cosent_against_loops(scores: list[float], scale: float) -> None:
    n = len(scores)
    e1, e2 = _rand(n, seed=40), _rand(n, seed=41)
    got = cosent(e1, e2, torch.tensor(scores, dtype=torch.float64), scale).item()
    assert got == pytest.approx(ref_cosent(e1, e2, scores, scale), rel=1e-9)


def test_cosent_only_ranking_of_scores_matters() -> None:
    e1, e2 = _rand(4, seed=50), _rand(4, seed=51)
    a = cosent(e1, e2, torch.tensor([0.0, 1.0, 2.0, 3.0], dtype=torch.float64))
    b = cosent(e1, e2, torch.tensor([-7.0, 0.2, 0.3, 100.0], dtype=torch.float64))
    torch.testing.assert_close(a, b)


# ---------------------------------------------------------------- sentence-transformers' math


def _st_mnrl(anchor, positive, negative=None, scale=20.0, symmetric=False) -> torch.Tensor:
    """sentence-transformers' MultipleNegatives(Symmetric)RankingLoss math with its util.cos_sim."""
    from sentence_transformers.util import cos_sim

    candidates = positive if negative is None else torch.cat([positive, negative])
    scores = cos_sim(anchor, candidates) * scale
    labels = torch.arange(len(scores))
    forward = torch.nn.functional.cross_entropy(scores, labels)
    if not symmetric:
        return forward
    backward = torch.nn.functional.cross_entropy(scores[:, : len(anchor)].T, labels)
    return (forward + backward) / 2


def _st_cosent(emb1, emb2, labels, scale=20.0) -> torch.Tensor:
    """sentence-transformers' CoSENTLoss math (pairwise_cos_sim, pairwise differences, logsumexp)."""
    from sentence_transformers.util import pairwise_cos_sim

    scores = pairwise_cos_sim(emb1, emb2) * scale
    scores = scores[:, None] - scores[None, :]
    labels = labels[:, None] < labels[None, :]
    scores = scores - (1 - labels.float()) * 1e12
    scores = torch.cat((torch.zeros(1), scores.view(-1)), dim=0)
    return torch.logsumexp(scores, dim=0)


def test_mnrl_matches_sentence_transformers_math() -> None:
    a, p, n = (x.float() for x in (_rand(4, seed=60), _rand(4, seed=61), _rand(4, seed=62)))
    for neg in (None, n):
        for sym in (False, True):
            torch.testing.assert_close(
                multiple_negatives_ranking(a, p, neg, 20.0, sym), _st_mnrl(a, p, neg, 20.0, sym), rtol=1e-5, atol=1e-5
            )


def test_cosent_matches_sentence_transformers_math() -> None:
    e1, e2 = _rand(4, seed=70).float(), _rand(4, seed=71).float()
    labels = torch.tensor([0.2, 0.8, 0.8, 0.1])
    torch.testing.assert_close(cosent(e1, e2, labels, 20.0), _st_cosent(e1, e2, labels, 20.0), rtol=1e-5, atol=1e-5)


def test_matches_sentence_transformers_loss_classes() -> None:
    """Where the installed sentence-transformers exposes compute_loss_from_embeddings, compare directly."""
    try:  # sentence-transformers >= 6 moved the losses; the old path still works but warns
        import sentence_transformers.sentence_transformer.losses as st_losses
    except ImportError:
        st_losses = pytest.importorskip("sentence_transformers.losses")
    mnrl_cls, cosent_cls = st_losses.MultipleNegativesRankingLoss, st_losses.CoSENTLoss
    if not hasattr(mnrl_cls, "compute_loss_from_embeddings") or not hasattr(cosent_cls, "compute_loss_from_embeddings"):
        pytest.skip("sentence-transformers has no compute_loss_from_embeddings")
    a, p, n = (x.float() for x in (_rand(4, seed=80), _rand(4, seed=81), _rand(4, seed=82)))
    try:
        mnrl, cos_loss = mnrl_cls(model=None), cosent_cls(model=None)
    except Exception as err:  # pragma: no cover - depends on the installed version
        pytest.skip(f"cannot build sentence-transformers losses without a model: {err}")
    torch.testing.assert_close(multiple_negatives_ranking(a, p), mnrl.compute_loss_from_embeddings([a, p], None))
    torch.testing.assert_close(multiple_negatives_ranking(a, p, n), mnrl.compute_loss_from_embeddings([a, p, n], None))
    scores = torch.tensor([0.1, 0.5, 0.5, 0.9])
    torch.testing.assert_close(cosent(a, p, scores), cos_loss.compute_loss_from_embeddings([a, p], scores))


# ---------------------------------------------------------------- gradients


def test_gradients_flow_mnrl() -> None:
    a, p, n = (x.clone().requires_grad_(True) for x in (_rand(3, seed=90), _rand(3, seed=91), _rand(3, seed=92)))
    multiple_negatives_ranking(a, p, n, symmetric=True).backward()
    for t in (a, p, n):
        assert t.grad is not None
        assert torch.isfinite(t.grad).all()
        assert t.grad.abs().sum() > 0


def test_gradients_flow_cosent_and_match_finite_differences() -> None:
    e1, e2 = _rand(3, dim=3, seed=100).requires_grad_(True), _rand(3, dim=3, seed=101).requires_grad_(True)
    scores = torch.tensor([1.0, 3.0, 2.0], dtype=torch.float64)
    cosent(e1, e2, scores, 5.0).backward()
    assert e1.grad.abs().sum() > 0 and e2.grad.abs().sum() > 0
    # central finite difference of the independent reference for one coordinate
    eps = 1e-6
    base = e1.detach().clone()
    plus, minus = base.clone(), base.clone()
    plus[1, 2] += eps
    minus[1, 2] -= eps
    fd = (
        ref_cosent(plus, e2.detach(), scores.tolist(), 5.0) - ref_cosent(minus, e2.detach(), scores.tolist(), 5.0)
    ) / (2 * eps)
    assert e1.grad[1, 2].item() == pytest.approx(fd, rel=1e-4, abs=1e-7)


def test_loss_config_dispatch() -> None:
    a, p, n = _rand(3, seed=110), _rand(3, seed=111), _rand(3, seed=112)
    mnrl = LossConfig(name="mnrl", scale=10.0, symmetric=True)
    assert not mnrl.needs_scores
    got = mnrl({"anchor": a, "positive": p, "negative": n}).item()
    assert got == pytest.approx(ref_mnrl(a, p, n, scale=10.0, symmetric=True), rel=1e-9)
    cos = LossConfig(name="cosent", scale=15.0)
    assert cos.needs_scores
    scores = [0.0, 2.0, 1.0]
    got = cos({"anchor": a, "positive": p}, torch.tensor(scores, dtype=torch.float64)).item()
    assert got == pytest.approx(ref_cosent(a, p, scores, 15.0), rel=1e-9)


# ---------------------------------------------------------------- config validation


@pytest.mark.parametrize("name", ["triplet", "MNRL", ""])
def test_loss_config_unknown_name(name: str) -> None:
    with pytest.raises(ConfigError, match="loss.name"):
        LossConfig(name=name)


@pytest.mark.parametrize("scale", [0.0, -1.0])
def test_loss_config_bad_scale(scale: float) -> None:
    with pytest.raises(ConfigError, match="loss.scale"):
        LossConfig(scale=scale)


def test_loss_config_defaults_valid() -> None:
    cfg = LossConfig()
    assert (cfg.name, cfg.scale, cfg.symmetric) == ("mnrl", 20.0, False)
