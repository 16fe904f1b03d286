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
    similarity_mse,
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


def test_similarity_mse_by_hand() -> None:
    student = torch.tensor([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]])  # cosines: (1,2) 0, (1,3) and (2,3) 1/sqrt2
    teacher = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 5.0]])  # cosines: (1,2) 1, (1,3) and (2,3) 0
    r = 1 / math.sqrt(2)
    expected = (1.0 + r**2 + r**2) / 3  # the same three pairs, each counted twice, over 6 off-diagonal cells
    assert similarity_mse(student, teacher).item() == pytest.approx(expected, abs=1e-6)
    assert similarity_mse(teacher * 3, teacher).item() == pytest.approx(0.0, abs=1e-7)


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


def test_distill_losses_feature_term_by_hand() -> None:
    # rows: two sources and the translation of source 2; targets: the teacher's embedding of each row's source
    student = torch.tensor([[2.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    target = torch.tensor([[1.0, 0.0], [0.0, 5.0], [0.0, 5.0]])
    terms = distill_losses(student, target, DistillLossConfig(mse=2.0, kl=0.0))
    # normalised rows [1,0], [0,1], [1,0] against [1,0], [0,1], [0,1]: squared error 2 over 6 elements
    assert terms["mse"].item() == pytest.approx(1 / 3)
    assert terms["loss"].item() == pytest.approx(2 / 3)
    raw = distill_losses(student, target, DistillLossConfig(mse_normalized=False, kl=0))
    # raw: (1 + 0) + (0 + 16) + (1 + 25) over 6 elements
    assert raw["mse"].item() == pytest.approx(43 / 6)


def test_distill_losses_kl_term_by_hand() -> None:
    # three rows; the teacher says rows 0 and 2 are the same sentence, the student that they are orthogonal
    student = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    target = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    cfg = DistillLossConfig(mse=0.0, kl=1.0, temperature=1.0)
    e = math.e

    def kl(p: list[float], q: list[float]) -> float:
        return sum(a * math.log(a / b) for a, b in zip(p, q))

    # off-diagonal softmax rows: teacher cos rows (0, 1), (0, 0), (1, 0); student (0, 0), (0, 1), (0, 1)
    teacher_rows = [[1 / (1 + e), e / (1 + e)], [0.5, 0.5], [e / (1 + e), 1 / (1 + e)]]
    student_rows = [[0.5, 0.5], [1 / (1 + e), e / (1 + e)], [1 / (1 + e), e / (1 + e)]]
    expected = sum(kl(p, q) for p, q in zip(teacher_rows, student_rows)) / 3
    assert distill_losses(student, target, cfg)["kl"].item() == pytest.approx(expected, abs=1e-6)


def test_distill_losses_weighted_sum_projection_and_bitext() -> None:
    torch.manual_seed(0)
    student, target = torch.randn(6, 3), torch.randn(6, 5)
    translated, counterpart = torch.tensor([4, 5]), torch.randn(2, 3)
    projection = torch.nn.Linear(3, 5)
    cfg = DistillLossConfig(mse=0.5, kl=2.0, sim=4.0, bitext=3.0, temperature=0.1, scale=10.0, margin=0.2)
    terms = distill_losses(student, target, cfg, projection, translated, counterpart)
    assert set(terms) == {"mse", "kl", "sim", "bitext", "loss"}
    total = 0.5 * terms["mse"] + 2.0 * terms["kl"] + 4.0 * terms["sim"] + 3.0 * terms["bitext"]
    assert terms["loss"].item() == pytest.approx(total.item())
    n = torch.nn.functional.normalize
    assert terms["mse"].item() == pytest.approx(
        ((projection(n(student, dim=-1)) - n(target, dim=-1)) ** 2).mean().item()
    )
    cos_s, cos_t = n(student, dim=-1) @ n(student, dim=-1).T, n(target, dim=-1) @ n(target, dim=-1).T
    assert terms["sim"].item() == pytest.approx(((cos_s - cos_t) ** 2).sum().item() / 30, abs=1e-6)  # diagonal 0
    assert terms["bitext"].item() == pytest.approx(bitext_am_softmax(counterpart, student[4:], 10.0, 0.2).item())
    no_pairs = distill_losses(student, target, cfg, projection)
    assert "bitext" not in no_pairs


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"mse": -1.0}, "loss.mse"),
        ({"sim": -0.5}, "loss.sim"),
        ({"mse": 0, "kl": 0, "bitext": 0}, "all 0"),
        ({"temperature": 0}, "loss.temperature"),
        ({"margin": 1.5}, "loss.margin"),
        ({"name": "mnrl"}, "loss.name"),
    ],
)
def test_config_rejects(kwargs: dict, field: str) -> None:
    with pytest.raises(ConfigError, match=field):
        DistillLossConfig(**kwargs)
