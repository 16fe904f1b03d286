"""Distillation losses on embeddings (LEALLA, Mao & Nakagawa 2023; Reimers & Gurevych 2020).

Pure functions of student and teacher embeddings, so tests can check them on hand-made tensors:

- :func:`feature_mse`: mean squared error between (projected) student and teacher embeddings;
- :func:`logit_kl`: KL divergence from the teacher's to the student's in-batch similarity distributions,
  each row a softmax over ``cos / temperature``; works whatever the two output dimensions are;
- :func:`similarity_mse`: mean squared error between the student's and the teacher's in-batch cosine
  similarity matrices (relational distillation): the graded similarities STS measures, over the whole
  range rather than the nearest neighbours a low-temperature softmax weighs most;
- :func:`bitext_am_softmax`: additive-margin softmax over in-batch translation pairs, both directions
  (LaBSE's bidirectional loss), which trains retrieval directly.

:class:`DistillLossConfig` holds one weight per loss; a zero weight switches a loss off.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from lacos_lightning.errors import require
from lacos_lightning.losses.contrastive import cosine_matrix


def feature_mse(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Mean over rows and dimensions of ``(student - teacher) ** 2``; both (n, d)."""
    return F.mse_loss(student.float(), teacher.float())


def similarity_logits(a: torch.Tensor, b: torch.Tensor, temperature: float, drop_diagonal: bool) -> torch.Tensor:
    """``cos(a_i, b_j) / temperature``; with ``drop_diagonal`` (a square matrix of a batch against itself)
    the self-similarities are removed, leaving (n, n - 1)."""
    logits = cosine_matrix(a.float(), b.float()) / temperature
    if drop_diagonal:
        n = logits.size(0)
        keep = ~torch.eye(n, dtype=torch.bool, device=logits.device)
        logits = logits[keep].view(n, n - 1)
    return logits


def logit_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
    """Mean over rows of ``KL(softmax(teacher_row) || softmax(student_row))``.

    Args:
        student_logits: (n, m) similarity logits of the student (see :func:`similarity_logits`).
        teacher_logits: (n, m) the teacher's logits over the same pairs; no gradient flows into them.
    """
    log_p_teacher = F.log_softmax(teacher_logits.detach().float(), dim=-1)
    log_p_student = F.log_softmax(student_logits.float(), dim=-1)
    return F.kl_div(log_p_student, log_p_teacher, reduction="batchmean", log_target=True)


def similarity_mse(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Mean over the off-diagonal pairs (i != j) of ``(cos(s_i, s_j) - cos(t_i, t_j))^2``."""
    n = student.size(0)
    off = ~torch.eye(n, dtype=torch.bool, device=student.device)
    diff = cosine_matrix(student.float(), student.float()) - cosine_matrix(teacher.float(), teacher.float())
    return diff[off].pow(2).mean()


def bitext_am_softmax(source: torch.Tensor, target: torch.Tensor, scale: float, margin: float) -> torch.Tensor:
    """Bidirectional additive-margin softmax (Yang et al. 2019; LaBSE).

    Row i of ``source`` must pick row i of ``target`` among all rows of the batch with logits
    ``scale * (cos(s_i, t_j) - margin * [i == j])``, and the reverse; the loss is the mean of the two
    cross-entropies.
    """
    sim = cosine_matrix(source.float(), target.float())
    sim = sim - margin * torch.eye(sim.size(0), device=sim.device, dtype=sim.dtype)
    labels = torch.arange(sim.size(0), device=sim.device)
    return (F.cross_entropy(scale * sim, labels) + F.cross_entropy(scale * sim.T, labels)) / 2


@dataclass
class DistillLossConfig:
    """Weights and settings of the distillation losses (the ``loss`` block of ``task=distill``).

    Attributes:
        name: always ``distill`` (tells the block apart from the contrastive ``loss`` settings).
        mse: weight of :func:`feature_mse` (student through a learned projection when its output
            dimension differs from the teacher's).
        mse_normalized: compare L2-normalised embeddings (the teacher's outputs as users see them);
            ``false`` compares them before normalisation, where differences are larger.
        kl: weight of :func:`logit_kl` over in-batch cosine similarities.
        temperature: temperature of the similarity softmax for ``kl``.
        sim: weight of :func:`similarity_mse` (in-batch cosine similarities, student against teacher).
        bitext: weight of :func:`bitext_am_softmax` on the batch's (source, translation) pairs.
        scale: inverse temperature of the bitext softmax.
        margin: additive margin of the bitext softmax.
        embed_sources: the student embeds the source side of parallel pairs too (bitext ranks translations
            against the student's sources); ``false`` embeds only translations and plain sentences, half
            the student work on parallel data, and ranks translations against the teacher's sources.
    """

    name: str = "distill"
    mse: float = 1.0
    mse_normalized: bool = True
    kl: float = 1.0
    temperature: float = 0.05
    sim: float = 0.0
    bitext: float = 0.0
    scale: float = 20.0
    margin: float = 0.3
    embed_sources: bool = True

    def __post_init__(self) -> None:
        require(self.name == "distill", f"loss.name={self.name!r}: task=distill takes loss=distill")
        for key in ("mse", "kl", "sim", "bitext"):
            value = getattr(self, key)
            require(isinstance(value, (int, float)) and value >= 0, f"loss.{key}={value!r} must be a weight >= 0")
        require(
            self.mse + self.kl + self.sim + self.bitext > 0,
            "loss.mse, loss.kl, loss.sim and loss.bitext are all 0: nothing to train",
        )
        require(self.temperature > 0, f"loss.temperature={self.temperature!r} must be > 0")
        require(self.scale > 0, f"loss.scale={self.scale!r} must be > 0")
        require(0 <= self.margin < 1, f"loss.margin={self.margin!r} must be in [0, 1)")
