"""Optimizer and learning-rate schedule settings shared by every task."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers import get_scheduler

from lacos_lightning.errors import require

OPTIMIZERS = ("adamw", "adamw8bit")
SCHEDULES = ("linear", "cosine", "constant")


@dataclass
class OptimConfig:
    """Attributes:
    name: ``adamw`` (torch) or ``adamw8bit`` (bitsandbytes 8-bit AdamW).
    lr: peak learning rate.
    weight_decay: decoupled weight decay.
    schedule: ``linear`` or ``cosine`` decay after warmup, or ``constant`` after warmup.
    warmup_ratio: share of the optimizer steps spent warming up linearly from 0.
    lr_groups: peak learning rates for the parameters whose name contains a key (the first matching key
        wins, in order), e.g. ``{word_embeddings: 1e-3}``; every other parameter uses ``lr``. Each key must
        match a trainable parameter. The schedule scales every group alike.
    """

    name: str = "adamw8bit"
    lr: float = 2e-4
    weight_decay: float = 0.01
    schedule: str = "linear"
    warmup_ratio: float = 0.1
    lr_groups: dict[str, float] | None = field(default_factory=dict)

    def __post_init__(self) -> None:
        require(self.name in OPTIMIZERS, f"optim.name={self.name!r} is unknown; choose one of {OPTIMIZERS}")
        require(self.schedule in SCHEDULES, f"optim.schedule={self.schedule!r} is unknown; choose one of {SCHEDULES}")
        require(self.lr > 0, f"optim.lr={self.lr!r} must be > 0")
        require(self.weight_decay >= 0, f"optim.weight_decay={self.weight_decay!r} must be >= 0")
        require(0 <= self.warmup_ratio < 1, f"optim.warmup_ratio={self.warmup_ratio!r} must be in [0, 1)")
        self.lr_groups = dict(self.lr_groups or {})
        for key, lr in self.lr_groups.items():
            require(isinstance(lr, (int, float)) and lr > 0, f"optim.lr_groups.{key}={lr!r} must be a number > 0")

    def param_groups(self, named_params: Iterable[tuple[str, torch.nn.Parameter]]) -> list[dict[str, Any]]:
        """The trainable parameters in optimizer groups: one per ``lr_groups`` key that matches, then the rest."""
        keys = list(self.lr_groups)
        buckets: dict[str | None, list[torch.nn.Parameter]] = {key: [] for key in [*keys, None]}
        for name, param in named_params:
            if param.requires_grad:
                buckets[next((key for key in keys if key in name), None)].append(param)
        require(
            any(buckets.values()),
            "nothing to train: every parameter is frozen (peft.method=none without a projection?)",
        )
        for key in keys:
            require(bool(buckets[key]), f"optim.lr_groups: {key!r} matches no trainable parameter name")
        groups = [{"params": buckets[key], "lr": self.lr_groups[key], "name": key} for key in keys]
        if buckets[None]:
            groups.append({"params": buckets[None], "lr": self.lr, "name": "default"})
        return groups

    def build(self, named_params: Iterable[tuple[str, torch.nn.Parameter]], total_steps: int) -> dict[str, Any]:
        """Return Lightning's ``configure_optimizers`` dict (optimizer + per-step scheduler).

        ``named_params``: ``module.named_parameters()``; frozen ones are left out.
        """
        params = self.param_groups(named_params)
        if self.name == "adamw8bit":
            import bitsandbytes as bnb

            optimizer = bnb.optim.AdamW8bit(params, lr=self.lr, weight_decay=self.weight_decay)
        else:
            optimizer = torch.optim.AdamW(params, lr=self.lr, weight_decay=self.weight_decay)
        name = {"constant": "constant_with_warmup"}.get(self.schedule, self.schedule)
        warmup = int(self.warmup_ratio * total_steps)
        scheduler = get_scheduler(name, optimizer, num_warmup_steps=warmup, num_training_steps=max(total_steps, 1))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
