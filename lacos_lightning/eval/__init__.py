"""Evaluators: STS (Spearman of cosine), bitext retrieval (Tatoeba) and pair classification (domains), usable in Lightning loops or alone."""

from __future__ import annotations

from lacos_lightning.eval.base import Evaluator, build_evaluators
from lacos_lightning.eval.bitext import BitextEvaluator
from lacos_lightning.eval.pairs import PairClassificationEvaluator
from lacos_lightning.eval.sts import STSEvaluator

__all__ = ["BitextEvaluator", "Evaluator", "PairClassificationEvaluator", "STSEvaluator", "build_evaluators"]
