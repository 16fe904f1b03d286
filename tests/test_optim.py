"""Optimizer settings: per-name learning-rate groups."""

from __future__ import annotations

import pytest
import torch

from lacos_lightning.errors import ConfigError
from lacos_lightning.tasks.optim import OptimConfig


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    model = torch.nn.Module()
    model.word_embeddings = torch.nn.Embedding(10, 4)
    model.layer = torch.nn.Linear(4, 4)
    model.frozen = torch.nn.Linear(4, 4)
    model.frozen.requires_grad_(False)
    return model


@pytest.mark.parametrize("name", ["adamw", "adamw8bit"])
def test_lr_groups_move_each_group_by_its_own_learning_rate(name: str) -> None:
    """Adam's first step moves every weight with a non-zero gradient by lr (m / sqrt(v) = sign(g))."""
    model = _model()
    cfg = OptimConfig(
        name=name, lr=1e-4, weight_decay=0.0, schedule="constant", warmup_ratio=0.0, lr_groups={"word_embeddings": 1e-2}
    )
    optimizer = cfg.build(model.named_parameters(), total_steps=10)["optimizer"]
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    out = model.layer(model.word_embeddings(torch.arange(10)))
    (out.sum() + model.frozen(out).sum()).backward()
    optimizer.step()
    for n, p in model.named_parameters():
        step = (p.detach() - before[n]).abs()
        if n.startswith("frozen"):
            assert torch.equal(step, torch.zeros_like(step)), n
        else:
            expected = 1e-2 if n.startswith("word_embeddings") else 1e-4
            torch.testing.assert_close(step, torch.full_like(step, expected), rtol=1e-3, atol=1e-7, msg=n)


def test_lr_groups_follow_one_schedule() -> None:
    model = _model()
    cfg = OptimConfig(name="adamw", lr=1e-4, schedule="linear", warmup_ratio=0.5, lr_groups={"embeddings": 3e-3})
    built = cfg.build(model.named_parameters(), total_steps=4)
    optimizer, scheduler = built["optimizer"], built["lr_scheduler"]["scheduler"]
    assert [g["name"] for g in optimizer.param_groups] == ["embeddings", "default"]
    assert len(optimizer.param_groups[0]["params"]) == 1 and len(optimizer.param_groups[1]["params"]) == 2
    for _ in range(3):
        optimizer.step()
        scheduler.step()
        emb, rest = (g["lr"] for g in optimizer.param_groups)
        assert emb == pytest.approx(rest * 30)


def test_lr_groups_key_that_matches_nothing_is_a_config_error() -> None:
    cfg = OptimConfig(name="adamw", lr_groups={"word_embedings": 1e-3})
    with pytest.raises(ConfigError, match="word_embedings.*matches no trainable parameter"):
        cfg.build(_model().named_parameters(), total_steps=1)
    with pytest.raises(ConfigError, match="lr_groups.x=-1"):
        OptimConfig(lr_groups={"x": -1})
