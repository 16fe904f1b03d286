"""Distance of a student to its teacher on held-out sentences, meaningful whatever the output dimensions.

- ``sim_mad``: mean absolute difference between the student's and the teacher's pairwise cosine-similarity
  matrices (off the diagonal): how far the student's geometry is from the teacher's, in any dimension;
- ``mse``: the distillation MSE (through the task's learned projection when the dimensions differ);
- ``cosine``: mean cosine between student and teacher embeddings of the same sentence (equal dimensions).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader
from torchmetrics import Metric

from lacos_lightning.eval.base import Evaluator, text_loader


def similarity_mad(student: torch.Tensor, teacher: torch.Tensor) -> float:
    """Mean |cos_s(i, j) - cos_t(i, j)| over pairs i != j of the rows of ``student`` and ``teacher``."""
    s, t = F.normalize(student.float(), dim=-1), F.normalize(teacher.float(), dim=-1)
    diff = (s @ s.T - t @ t.T).abs()
    n = diff.size(0)
    off = ~torch.eye(n, dtype=torch.bool, device=diff.device)
    return diff[off].mean().item() if n > 1 else 0.0


class _Rows(Metric):
    """Collects embeddings with their row ids across batches and processes."""

    full_state_update = False

    def __init__(self) -> None:
        super().__init__()
        self.add_state("emb", default=[], dist_reduce_fx="cat")
        self.add_state("ids", default=[], dist_reduce_fx="cat")

    def update(self, emb: torch.Tensor, ids: torch.Tensor) -> None:
        self.emb.append(emb)
        self.ids.append(ids)

    def compute(self) -> torch.Tensor:
        cat = lambda x: torch.cat(x) if isinstance(x, list) else x  # noqa: E731
        return cat(self.emb)[cat(self.ids).argsort()]


class TeacherDistanceEvaluator(Evaluator):
    """Scores ``distill/{name}/sim_mad``, ``mse`` and (equal dimensions) ``cosine``.

    Args:
        name: set name in the metric keys (``heldout``).
        texts: held-out sentences.
        teacher: (len(texts), d_teacher) teacher embeddings before normalisation; may be set later
            (attribute ``teacher``) once the teacher has run.
        mse_normalized: compare normalised embeddings in ``mse`` (as the loss does).
        batch_size: sentences per batch.

    ``projection`` (attribute) is the task's learned student-to-teacher projection, used for ``mse``.
    """

    def __init__(
        self,
        name: str,
        texts: list[str],
        teacher: torch.Tensor | None = None,
        mse_normalized: bool = True,
        batch_size: int = 64,
    ) -> None:
        super().__init__(batch_size)
        self.name = name
        self.rows = [{"text": t, "id": i} for i, t in enumerate(texts)]
        self.teacher = teacher
        self.mse_normalized = mse_normalized
        self.projection: torch.nn.Module | None = None
        self.metric = _Rows()

    def dataloader(self) -> DataLoader:
        return text_loader(self.rows, self.batch_size)

    def update(self, encoder: Any, batch: dict[str, Any]) -> None:
        features = {k: v.to(encoder.device) for k, v in encoder.tokenize(batch["text"]).items()}
        emb = encoder(features, normalize=False)
        self.metric.update(emb.float(), torch.tensor(batch["id"], device=emb.device))

    def compute(self) -> dict[str, float]:
        student = self.metric.compute()
        teacher = self.teacher.to(student.device).float()
        key = f"distill/{self.name}"
        out = {f"{key}/sim_mad": similarity_mad(student, teacher)}
        if student.size(1) == teacher.size(1):
            out[f"{key}/cosine"] = F.cosine_similarity(student, teacher, dim=-1).mean().item()
        s, t = (
            (F.normalize(student, dim=-1), F.normalize(teacher, dim=-1)) if self.mse_normalized else (student, teacher)
        )
        if self.projection is not None:
            weight = self.projection.weight
            s = self.projection(s.to(weight.device, weight.dtype)).float().to(t.device)
        if s.size(1) == t.size(1):
            out[f"{key}/mse"] = F.mse_loss(s, t).item()
        return out
