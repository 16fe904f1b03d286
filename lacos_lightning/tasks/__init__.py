"""LightningModules: one file per task."""

from __future__ import annotations

from lacos_lightning.tasks.contrastive import ContrastiveTask
from lacos_lightning.tasks.optim import OptimConfig

__all__ = ["ContrastiveTask", "OptimConfig"]
