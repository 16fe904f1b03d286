"""Teacher-student distillation (LEALLA): a student encoder learns a frozen teacher's embeddings.

The teacher never appears here: its embeddings of every training source come precomputed (and cached
on disk, :mod:`lacos_lightning.tasks.teacher_cache`) with each batch, so it cannot receive gradients and
costs nothing after the first run. The student is the run's ``Encoder``; its output may be smaller
than the teacher's, in which case the feature loss goes through a learned projection that belongs to
this task (trained and checkpointed, not exported).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from lacos_lightning.errors import require
from lacos_lightning.eval.base import Evaluator
from lacos_lightning.eval.teacher import TeacherDistanceEvaluator
from lacos_lightning.losses.distill import (
    DistillLossConfig,
    bitext_am_softmax,
    feature_mse,
    logit_kl,
    similarity_logits,
    similarity_mse,
)
from lacos_lightning.models import Encoder
from lacos_lightning.tasks.contrastive import EmbeddingTask
from lacos_lightning.tasks.optim import OptimConfig


@dataclass
class DistillSettings:
    """Run settings of ``task=distill`` beyond the teacher, loss and data blocks (the ``distill`` block).

    Attributes:
        cache: keep the teacher's embeddings on disk and reuse them in later runs.
        cache_dir: where (``None``: ``$LACOS_CACHE_DIR/teacher_embeddings`` or ``~/.cache/lacos_lightning/...``).
        teacher_batch_size: sentences per teacher forward when filling the cache.
        speed_texts: sentences encoded by student and teacher to compare their speed (0: skip).
        init_projection: ``random`` (PyTorch's default init) or ``pca``: the student's output projection
            starts as the top principal directions of its own pooled embeddings (on ``pca_texts`` training
            sentences), the best linear map to the smaller dimension in the least-squares sense, so the
            student starts with its cosine geometry nearly intact.
        pca_texts: sentences for ``init_projection=pca``.
        freeze_embeddings: keep the student's input-embedding matrix fixed (a third to most of a small
            student's parameters; its dense gradient and optimizer state cost time on CPUs).
    """

    cache: bool = True
    cache_dir: str | None = None
    teacher_batch_size: int = 128
    speed_texts: int = 1000
    init_projection: str = "random"
    pca_texts: int = 2000
    freeze_embeddings: bool = False

    def __post_init__(self) -> None:
        require(
            self.init_projection in ("random", "pca"),
            f"distill.init_projection={self.init_projection!r} is unknown; choose random or pca",
        )
        require(self.pca_texts >= 2, f"distill.pca_texts={self.pca_texts} must be >= 2")
        require(self.teacher_batch_size >= 1, f"distill.teacher_batch_size={self.teacher_batch_size} must be >= 1")
        require(self.speed_texts >= 0, f"distill.speed_texts={self.speed_texts} must be >= 0")


@torch.inference_mode()
def pooled_embeddings(encoder: Encoder, texts: list[str], batch_size: int = 64) -> torch.Tensor:
    """The encoder's pooled embeddings of ``texts`` before its projection and normalisation, eval mode."""
    projection, was_training = encoder.projection, encoder.training
    encoder.projection = None
    encoder.eval()
    try:
        out = []
        for i in range(0, len(texts), batch_size):
            features = {k: v.to(encoder.device) for k, v in encoder.tokenize(texts[i : i + batch_size]).items()}
            out.append(encoder(features, normalize=False).float().cpu())
    finally:
        encoder.projection = projection
        encoder.train(was_training)
    return torch.cat(out)


@torch.inference_mode()
def pca_projection(encoder: Encoder, texts: list[str], batch_size: int = 64) -> None:
    """Set ``encoder.projection`` (in place) to the top principal directions of the encoder's pooled
    embeddings of ``texts``, uncentred (the best rank-k approximation of the vectors themselves, which
    keeps their cosines as far as k dimensions allow); the bias is zero."""
    projection = encoder.projection
    pooled = pooled_embeddings(encoder, texts, batch_size)
    k = projection.out_features
    require(pooled.size(0) >= k, f"distill.pca_texts: {pooled.size(0)} sentences, fewer than the {k} directions")
    _, _, vh = torch.linalg.svd(pooled.double(), full_matrices=False)
    projection.weight.copy_(vh[:k].to(device=projection.weight.device, dtype=projection.weight.dtype))
    projection.bias.zero_()


def distill_losses(
    student: torch.Tensor,
    target: torch.Tensor,
    cfg: DistillLossConfig,
    projection: nn.Module | None = None,
    translated: torch.Tensor | None = None,
    counterpart: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """The loss terms of one batch.

    Every student row (a source sentence, or a translation) has a teacher target (the teacher's embedding
    of the source). The feature loss compares each row with its target (through ``projection`` when the
    dimensions differ); the KL loss compares the rows' pairwise similarity distributions with those of their
    targets, so a translation must be as similar to every other sentence as its source is for the teacher
    (and near-identical to its own source); the bitext loss ranks each translation's ``counterpart`` (the
    student's or the teacher's embedding of its source) first among all counterparts of the batch.

    Args:
        student: (r, d_s) student embeddings before normalisation.
        target: (r, d_t) teacher embeddings of the rows' sources, before normalisation.
        cfg: loss weights and settings.
        projection: maps d_s to d_t for the feature loss when they differ.
        translated: (m,) rows of ``student`` that are translations.
        counterpart: (m, d) embeddings of those translations' sources.

    Returns:
        ``mse``, ``kl``, ``sim``, ``bitext`` (those with a weight > 0 that apply, unweighted) and ``loss`` (the
        weighted sum).
    """
    student_n, target_n = F.normalize(student, dim=-1), F.normalize(target, dim=-1)
    out: dict[str, torch.Tensor] = {}
    if cfg.mse > 0:
        x, y = (student_n, target_n) if cfg.mse_normalized else (student, target)
        if projection is not None:
            x = projection(x.to(projection.weight.dtype))
        out["mse"] = feature_mse(x, y)
    if cfg.kl > 0 and student.size(0) >= 3:
        out["kl"] = logit_kl(
            similarity_logits(student_n, student_n, cfg.temperature, True),
            similarity_logits(target_n, target_n, cfg.temperature, True),
        )
    if cfg.sim > 0 and student.size(0) >= 2:
        out["sim"] = similarity_mse(student_n, target_n)
    if cfg.bitext > 0 and translated is not None and translated.numel() >= 2:
        out["bitext"] = bitext_am_softmax(counterpart, student[translated], cfg.scale, cfg.margin)
    out["loss"] = sum(getattr(cfg, name) * value for name, value in list(out.items()))
    return out


class DistillationTask(EmbeddingTask):
    """Trains the student ``encoder`` toward cached teacher embeddings with :func:`distill_losses`.

    Args:
        encoder: the student.
        loss: loss weights and settings (:class:`DistillLossConfig`).
        optim: optimizer and schedule.
        teacher_dim: the teacher's output dimension (a projection is learned when it differs).
        val_evaluators, test_evaluators: evaluators of the validation and test loops; a
            :class:`TeacherDistanceEvaluator` among them measures through this task's projection.
    """

    def __init__(
        self,
        encoder: Encoder,
        loss: DistillLossConfig,
        optim: OptimConfig,
        teacher_dim: int,
        val_evaluators: list[Evaluator] | None = None,
        test_evaluators: list[Evaluator] | None = None,
    ) -> None:
        super().__init__(encoder, optim, val_evaluators, test_evaluators)
        self.loss = loss
        needs_projection = loss.mse > 0 and encoder.output_dim != teacher_dim
        require(
            loss.embed_sources or loss.bitext == 0 or encoder.output_dim == teacher_dim,
            f"loss.embed_sources=false ranks translations against the teacher's {teacher_dim}-d embeddings; "
            f"the student's are {encoder.output_dim}-d (set loss.embed_sources=true or loss.bitext=0)",
        )
        self.feature_projection = nn.Linear(encoder.output_dim, teacher_dim) if needs_projection else None
        for ev in self.val_evaluators + self.test_evaluators:
            if isinstance(ev, TeacherDistanceEvaluator):
                ev.projection = self.feature_projection
        self.save_hyperparameters(
            {"loss": asdict(loss), "optim": asdict(optim), "encoder": encoder.describe(), "teacher_dim": teacher_dim}
        )

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        teacher, rows, paired = batch["teacher"].float(), batch["source_rows"], batch["paired"]
        parts, targets = [], []
        if rows.numel():
            parts.append(self.encoder(batch["source"], normalize=False))
            targets.append(teacher[rows])
        if "related" in batch:  # the related sentences of plain records go after the sources
            parts.append(self.encoder(batch["related"], normalize=False))
            targets.append(batch["teacher_related"].float())
        translated = counterpart = None
        if paired.numel():
            parts.append(self.encoder(batch["translation"], normalize=False))
            targets.append(teacher[paired])
            start = sum(part.size(0) for part in parts[:-1])
            translated = torch.arange(start, start + paired.numel(), device=teacher.device)
            # with every source embedded, rows == range(batch), so a record's source is at its own index
            counterpart = parts[0][paired] if self.loss.embed_sources else teacher[paired]
        terms = distill_losses(
            torch.cat(parts), torch.cat(targets), self.loss, self.feature_projection, translated, counterpart
        )
        size = batch["size"]
        for name, value in terms.items():
            key = "train/loss" if name == "loss" else f"train/{name}"
            self.log(key, value, prog_bar=name == "loss", batch_size=size, sync_dist=True)
        return terms["loss"]
