"""Pair classification: how well cosine similarity separates paraphrase / similar pairs from the rest.

Scores (x100): average precision of the cosine similarity for the binary label (``score > 0``), the
best accuracy over all thresholds, and, for graded labels (more than two values, e.g. Qatar's
PerfectMatch / Relevant / Irrelevant), the Spearman correlation of cosine with the grade.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torchmetrics import Metric
from torchmetrics.functional.classification import binary_average_precision
from torchmetrics.functional.regression import spearman_corrcoef
from torchmetrics.utilities import dim_zero_cat

from lacos_lightning.eval.sts import STSEvaluator


def best_accuracy(scores: torch.Tensor, labels: torch.Tensor) -> tuple[float, float]:
    """Highest accuracy of ``score >= t`` over every threshold ``t``, and that threshold.

    Sorting once gives every cut: with the top ``k`` scores predicted positive, accuracy is
    ``(positives among the top k + negatives below) / n``; only cuts between distinct scores count.
    """
    order = torch.argsort(scores, descending=True)
    s, y = scores[order].double(), labels[order].double()
    n, total_pos = len(y), y.sum()
    tp = torch.cat([y.new_zeros(1), torch.cumsum(y, 0)])  # tp[k]: positives among the top k
    k = torch.arange(n + 1, dtype=torch.float64)
    correct = tp + (n - total_pos) - (k - tp)
    valid = torch.ones(n + 1, dtype=torch.bool)
    valid[1:n] = s[1:] != s[:-1]  # a cut inside a run of equal scores is no threshold
    correct = torch.where(valid, correct, torch.full_like(correct, -1))
    best = int(torch.argmax(correct))
    if best == 0:
        threshold = float(s[0]) + 1e-6
    elif best == n:
        threshold = float(s[-1])
    else:
        threshold = float((s[best - 1] + s[best]) / 2)
    return float(correct[best] / n), threshold


class PairScores(Metric):
    """Collects cosine similarities and gold grades (concatenated across ranks)."""

    full_state_update = False

    def __init__(self) -> None:
        super().__init__()
        self.add_state("scores", default=[], dist_reduce_fx="cat")
        self.add_state("grades", default=[], dist_reduce_fx="cat")

    def update(self, scores: torch.Tensor, grades: torch.Tensor) -> None:
        self.scores.append(scores.detach().float())
        self.grades.append(grades.detach().float())

    def compute(self) -> dict[str, float]:
        scores, grades = dim_zero_cat(self.scores).cpu(), dim_zero_cat(self.grades).cpu()
        labels = (grades > 0).long()
        out = {"ap": float(binary_average_precision(scores, labels)) * 100}
        accuracy, threshold = best_accuracy(scores, labels)
        out["accuracy"] = accuracy * 100
        out["threshold"] = threshold
        if len(torch.unique(grades)) > 2:
            out["spearman"] = float(spearman_corrcoef(scores, grades)) * 100
        return out


class PairClassificationEvaluator(STSEvaluator):
    """AP, best accuracy (and Spearman for graded labels) of cos(anchor, positive).

    Args:
        name: set name used in metric keys (``domain/{name}/ap`` ...).
        records: dicts with ``anchor``, ``positive`` and ``score`` (the gold label or grade).
        batch_size: pairs per batch (pairs are sorted by length to cut padding).
    """

    def make_metric(self) -> PairScores:
        return PairScores()

    def update(self, encoder: Any, batch: dict[str, Any]) -> None:
        anchor, positive, gold = self.embed_pairs(encoder, batch)
        self.metric.update(F.cosine_similarity(anchor.float(), positive.float(), dim=-1), gold)

    def compute(self) -> dict[str, float]:
        return {f"domain/{self.name}/{key}": value for key, value in self.metric.compute().items()}
