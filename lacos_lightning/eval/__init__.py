"""Evaluators: STS (Spearman of cosine) and bitext retrieval (Tatoeba), usable in Lightning loops or alone."""

from __future__ import annotations

from lacos_lightning.eval.base import Evaluator, build_evaluators
from lacos_lightning.eval.bitext import BitextEvaluator
from lacos_lightning.eval.sts import STSEvaluator

__all__ = ["BitextEvaluator", "Evaluator", "STSEvaluator", "build_evaluators"]
