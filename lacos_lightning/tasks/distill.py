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
    source: torch.Tensor,
    translation: torch.Tensor | None,
    paired: torch.Tensor,
    teacher: torch.Tensor,
    cfg: DistillLossConfig,
    projection: nn.Module | None = None,
) -> dict[str, torch.Tensor]:
    """The weighted loss terms of one batch.

    Args:
        source: (n, d_s) student embeddings of the sources, before normalisation.
        translation: (m, d_s) student embeddings of the translations of records ``paired`` (or ``None``).
        paired: (m,) indices of the records that have a translation.
        teacher: (n, d_t) teacher embeddings of the sources, before normalisation.
        cfg: loss weights and settings.
        projection: maps d_s to d_t for the feature loss when they differ.

    Returns:
        ``mse``, ``kl``, ``bitext`` (those with a weight > 0, unweighted) and ``loss`` (the weighted sum).
    """
    src_n, t_n = F.normalize(source, dim=-1), F.normalize(teacher, dim=-1)
    tr_n = F.normalize(translation, dim=-1) if translation is not None else None
    out: dict[str, torch.Tensor] = {}
    if cfg.mse > 0:
        student = torch.cat([src_n, tr_n]) if tr_n is not None else src_n
        if not cfg.mse_normalized:
            student = torch.cat([source, translation]) if translation is not None else source
        target = t_n if cfg.mse_normalized else teacher
        target = torch.cat([target, target[paired]]) if translation is not None else target
        if projection is not None:
            student = projection(student.to(projection.weight.dtype))
        out["mse"] = feature_mse(student, target)
    if cfg.kl > 0:
        kl = logit_kl(
            similarity_logits(src_n, src_n, cfg.temperature, True), similarity_logits(t_n, t_n, cfg.temperature, True)
        )
        if tr_n is not None:  # translation i against every source: the teacher says its own source ranks first
            kl_tr = logit_kl(
                similarity_logits(tr_n, src_n, cfg.temperature, False),
                similarity_logits(t_n[paired], t_n, cfg.temperature, False),
            )
            kl = (kl * source.size(0) + kl_tr * tr_n.size(0)) / (source.size(0) + tr_n.size(0))
        out["kl"] = kl
    if cfg.bitext > 0 and tr_n is not None and tr_n.size(0) >= 2:
        out["bitext"] = bitext_am_softmax(src_n[paired], tr_n, cfg.scale, cfg.margin)
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
        self.feature_projection = nn.Linear(encoder.output_dim, teacher_dim) if needs_projection else None
        for ev in self.val_evaluators + self.test_evaluators:
            if isinstance(ev, TeacherDistanceEvaluator):
                ev.projection = self.feature_projection
        self.save_hyperparameters(
            {"loss": asdict(loss), "optim": asdict(optim), "encoder": encoder.describe(), "teacher_dim": teacher_dim}
        )

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        source = self.encoder(batch["source"], normalize=False)
        translation = self.encoder(batch["translation"], normalize=False) if "translation" in batch else None
        terms = distill_losses(
            source, translation, batch["paired"], batch["teacher"].float(), self.loss, self.feature_projection
        )
        size = batch["size"]
        for name, value in terms.items():
            key = "train/loss" if name == "loss" else f"train/{name}"
            self.log(key, value, prog_bar=name == "loss", batch_size=size, sync_dist=True)
        return terms["loss"]
