"""Distillation losses against values computed by hand on small tensors."""

from __future__ import annotations

import math

import pytest
import torch

from lacos_lightning.errors import ConfigError
from lacos_lightning.losses.distill import (
    DistillLossConfig,
    bitext_am_softmax,
    feature_mse,
    logit_kl,
    similarity_logits,
)
from lacos_lightning.tasks.distill import distill_losses


def test_feature_mse_by_hand() -> None:
    student = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    teacher = torch.tensor([[0.0, 0.0], [0.0, 3.0]])
    # squared differences 1, 0, 0, 4 over 4 elements
    assert feature_mse(student, teacher).item() == pytest.approx(1.25)


def test_similarity_logits_drop_diagonal_by_hand() -> None:
    a = torch.tensor([[1.0, 0.0], [0.0, 1.0], [2.0, 2.0]])
    logits = similarity_logits(a, a, temperature=0.5, drop_diagonal=True)
    r = math.sqrt(2)  # cos 45 degrees / 0.5
    expected = torch.tensor([[0.0, r], [0.0, r], [r, r]])
    torch.testing.assert_close(logits, expected)
    full = similarity_logits(a, a[:2], temperature=1.0, drop_diagonal=False)
    torch.testing.assert_close(full, torch.tensor([[1.0, 0.0], [0.0, 1.0], [1 / r, 1 / r]]))


def test_logit_kl_by_hand() -> None:
    student = torch.tensor([[0.0, 0.0], [1.0, 2.0]])
    teacher = torch.tensor([[math.log(3.0), 0.0], [1.0, 2.0]])
    # row 1: teacher (3/4, 1/4) vs student (1/2, 1/2); row 2: equal distributions (KL 0)
    row1 = 0.75 * math.log(0.75 / 0.5) + 0.25 * math.log(0.25 / 0.5)
    assert logit_kl(student, teacher).item() == pytest.approx(row1 / 2, abs=1e-6)
    assert logit_kl(teacher, teacher).item() == pytest.approx(0.0, abs=1e-7)


def test_logit_kl_gradient_only_reaches_student() -> None:
    student = torch.randn(3, 4, requires_grad=True)
    teacher = torch.randn(3, 4, requires_grad=True)
    logit_kl(student, teacher).backward()
    assert student.grad is not None and teacher.grad is None


def test_bitext_am_softmax_identity_by_hand() -> None:
    eye = torch.eye(2)
    scale, margin = 2.0, 0.5
    # each row: logits (scale * (1 - margin), 0) -> log(1 + exp(-scale * (1 - margin))), both directions
    expected = math.log(1 + math.exp(-scale * (1 - margin)))
    assert bitext_am_softmax(eye, eye, scale, margin).item() == pytest.approx(expected, abs=1e-6)


def test_bitext_am_softmax_asymmetric_by_hand() -> None:
    source = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    target = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    c = 1 / math.sqrt(2)
    # cos matrix [[1, 0], [c, c]], scale 1, margin 0
    forward = (math.log(1 + math.exp(-1)) + math.log(2)) / 2
    backward = (math.log(1 + math.exp(c - 1)) + math.log(1 + math.exp(-c))) / 2
    got = bitext_am_softmax(source, target, scale=1.0, margin=0.0).item()
    assert got == pytest.approx((forward + backward) / 2, abs=1e-6)


def test_margin_makes_the_loss_larger() -> None:
    torch.manual_seed(0)
    a, b = torch.randn(4, 8), torch.randn(4, 8)
    assert bitext_am_softmax(a, b, 20.0, 0.3) > bitext_am_softmax(a, b, 20.0, 0.0)


def test_distill_losses_translations_target_their_source() -> None:
    source = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    translation = torch.tensor([[1.0, 0.0]])
    teacher = torch.tensor([[1.0, 0.0], [0.0, 5.0]])
    cfg = DistillLossConfig(mse=2.0, kl=0.0, bitext=0.0)
    terms = distill_losses(source, translation, torch.tensor([1]), teacher, cfg)
    # normalised rows [1,0], [0,1], [1,0] against [1,0], [0,1], [0,1]: squared error 2 over 6 elements
    assert terms["mse"].item() == pytest.approx(1 / 3)
    assert terms["loss"].item() == pytest.approx(2 / 3)
    raw = distill_losses(source, translation, torch.tensor([1]), teacher, DistillLossConfig(mse_normalized=False, kl=0))
    # raw rows [2,0], [0,1], [1,0] against [1,0], [0,5], [0,5]: (1 + 16 + 1 + 25) / 6
    assert raw["mse"].item() == pytest.approx(43 / 6)


def test_distill_losses_weighted_sum_and_projection() -> None:
    torch.manual_seed(0)
    source, translation, teacher = torch.randn(4, 3), torch.randn(2, 3), torch.randn(4, 5)
    paired = torch.tensor([0, 2])
    projection = torch.nn.Linear(3, 5)
    cfg = DistillLossConfig(mse=0.5, kl=2.0, bitext=3.0, temperature=0.1, scale=10.0, margin=0.2)
    terms = distill_losses(source, translation, paired, teacher, cfg, projection)
    assert set(terms) == {"mse", "kl", "bitext", "loss"}
    total = 0.5 * terms["mse"] + 2.0 * terms["kl"] + 3.0 * terms["bitext"]
    assert terms["loss"].item() == pytest.approx(total.item())
    n = torch.nn.functional.normalize
    student = projection(torch.cat([n(source, dim=-1), n(translation, dim=-1)]))
    target = torch.cat([n(teacher, dim=-1), n(teacher, dim=-1)[paired]])
    assert terms["mse"].item() == pytest.approx(((student - target) ** 2).mean().item())
    assert terms["bitext"].item() == pytest.approx(bitext_am_softmax(source[paired], translation, 10.0, 0.2).item())


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"mse": -1.0}, "loss.mse"),
        ({"mse": 0, "kl": 0, "bitext": 0}, "all 0"),
        ({"temperature": 0}, "loss.temperature"),
        ({"margin": 1.5}, "loss.margin"),
        ({"name": "mnrl"}, "loss.name"),
    ],
)
def test_config_rejects(kwargs: dict, field: str) -> None:
    with pytest.raises(ConfigError, match=field):
        DistillLossConfig(**kwargs)
