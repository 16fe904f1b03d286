"""Optimizer and learning-rate schedule settings shared by every task."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
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
    """

    name: str = "adamw8bit"
    lr: float = 2e-4
    weight_decay: float = 0.01
    schedule: str = "linear"
    warmup_ratio: float = 0.1

    def __post_init__(self) -> None:
        require(self.name in OPTIMIZERS, f"optim.name={self.name!r} is unknown; choose one of {OPTIMIZERS}")
        require(self.schedule in SCHEDULES, f"optim.schedule={self.schedule!r} is unknown; choose one of {SCHEDULES}")
        require(self.lr > 0, f"optim.lr={self.lr!r} must be > 0")
        require(self.weight_decay >= 0, f"optim.weight_decay={self.weight_decay!r} must be >= 0")
        require(0 <= self.warmup_ratio < 1, f"optim.warmup_ratio={self.warmup_ratio!r} must be in [0, 1)")

    def build(self, params: Iterable[torch.nn.Parameter], total_steps: int) -> dict[str, Any]:
        """Return Lightning's ``configure_optimizers`` dict (optimizer + per-step scheduler)."""
        params = [p for p in params if p.requires_grad]
        require(bool(params), "nothing to train: every parameter is frozen (peft.method=none without a projection?)")
        if self.name == "adamw8bit":
            import bitsandbytes as bnb

            optimizer = bnb.optim.AdamW8bit(params, lr=self.lr, weight_decay=self.weight_decay)
        else:
            optimizer = torch.optim.AdamW(params, lr=self.lr, weight_decay=self.weight_decay)
        name = {"constant": "constant_with_warmup"}.get(self.schedule, self.schedule)
        warmup = int(self.warmup_ratio * total_steps)
        scheduler = get_scheduler(name, optimizer, num_warmup_steps=warmup, num_training_steps=max(total_steps, 1))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
