"""Losses as pure functions of embeddings, plus config wrappers, cross-device gathering and GradCache."""

from __future__ import annotations

from lacos_lightning.losses.contrastive import (
    LOSSES,
    LossConfig,
    cosent,
    cosent_from_similarities,
    info_nce,
    multiple_negatives_ranking,
)
from lacos_lightning.losses.distill import (
    DistillLossConfig,
    bitext_am_softmax,
    feature_mse,
    logit_kl,
    similarity_logits,
)
from lacos_lightning.losses.distributed import cross_device_cosent, cross_device_mnrl, gather_with_grad
from lacos_lightning.losses.gradcache import grad_cache_step

__all__ = [
    "LOSSES",
    "DistillLossConfig",
    "LossConfig",
    "bitext_am_softmax",
    "cosent",
    "cosent_from_similarities",
    "cross_device_cosent",
    "cross_device_mnrl",
    "feature_mse",
    "gather_with_grad",
    "grad_cache_step",
    "info_nce",
    "logit_kl",
    "multiple_negatives_ranking",
    "similarity_logits",
]
