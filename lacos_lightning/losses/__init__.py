"""Losses as pure functions of embeddings, plus a config wrapper."""

from __future__ import annotations

from lacos_lightning.losses.contrastive import (
    LOSSES,
    LossConfig,
    cosent,
    info_nce,
    multiple_negatives_ranking,
)

__all__ = ["LOSSES", "LossConfig", "cosent", "info_nce", "multiple_negatives_ranking"]
