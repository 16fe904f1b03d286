"""Contrastive losses on embeddings.

All functions take embeddings (not models), so every task shares them and tests can check them
against hand-computed values. Similarities are cosine similarities; ``scale = 1 / temperature``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from lacos_lightning.errors import require

LOSSES = ("mnrl", "cosent")


def cosine_matrix(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Cosine similarity of every row of ``a`` with every row of ``b``: (len(a), len(b))."""
    return F.normalize(a, dim=-1) @ F.normalize(b, dim=-1).T


def info_nce(anchor: torch.Tensor, candidates: torch.Tensor, labels: torch.Tensor, scale: float) -> torch.Tensor:
    """InfoNCE: cross-entropy of ``scale * cos(anchor_i, candidates)`` with target ``labels[i]``.

    Args:
        anchor: (n, d) queries.
        candidates: (m, d) keys; each anchor's positive is ``candidates[labels[i]]``, every other row is
            a negative.
        labels: (n,) indices into ``candidates``.
        scale: inverse temperature.
    """
    return F.cross_entropy(scale * cosine_matrix(anchor, candidates), labels)


def multiple_negatives_ranking(
    anchor: torch.Tensor,
    positive: torch.Tensor,
    negative: torch.Tensor | None = None,
    scale: float = 20.0,
    symmetric: bool = False,
) -> torch.Tensor:
    """In-batch negatives ranking loss (MNRL; van den Oord et al. 2018, Henderson et al. 2017).

    Anchor i must pick positive i among all positives of the batch and all hard negatives
    (candidates = ``[positive; negative]``). ``symmetric`` averages with the reverse direction, where
    positive i must pick anchor i among the anchors.
    """
    candidates = positive if negative is None else torch.cat([positive, negative])
    labels = torch.arange(anchor.size(0), device=anchor.device)
    loss = info_nce(anchor, candidates, labels, scale)
    if symmetric:
        loss = (loss + info_nce(positive, anchor, labels, scale)) / 2
    return loss


def cosent(emb1: torch.Tensor, emb2: torch.Tensor, scores: torch.Tensor, scale: float = 20.0) -> torch.Tensor:
    """CoSENT (Su 2022): ``log(1 + sum_{s_i > s_j} exp(scale * (cos_j - cos_i)))``.

    Every ordered pair (i, j) of the batch whose gold score says i is more similar than j is pushed
    to have ``cos_i > cos_j``; only the ranking of ``scores`` matters.
    """
    return cosent_from_similarities(F.cosine_similarity(emb1, emb2, dim=-1), scores, scale)


def cosent_from_similarities(cos: torch.Tensor, scores: torch.Tensor, scale: float = 20.0) -> torch.Tensor:
    """CoSENT given the cosine similarity of each pair, ``cos``: (n,), and the gold ``scores``: (n,)."""
    cos = cos * scale
    diff = cos[None, :] - cos[:, None]  # diff[i, j] = cos_j - cos_i
    mask = scores[:, None] > scores[None, :]
    diff = diff - (~mask).to(diff.dtype) * 1e12
    zero = torch.zeros(1, dtype=diff.dtype, device=diff.device)
    return torch.logsumexp(torch.cat([zero, diff.flatten()]), dim=0)


@dataclass
class LossConfig:
    """Which loss and its settings.

    Attributes:
        name: ``mnrl`` (pairs/triplets, in-batch negatives) or ``cosent`` (scored pairs).
        scale: inverse temperature of the similarities.
        symmetric: for ``mnrl``, also rank anchors given positives.
        gather: under data parallelism, use the positives and hard negatives of every rank as
            candidates (``mnrl``) or rank all pairs of the global batch (``cosent``), as one process
            with the whole batch would; a no-op on one process (see :mod:`lacos_lightning.losses.distributed`).
        grad_cache_chunk: ``None`` embeds the batch in one pass; an integer ``k >= 1`` trains with
            GradCache (:mod:`lacos_lightning.losses.gradcache`): at most ``k`` texts go through the encoder at
            a time, so activation memory no longer grows with the batch, and the gradients are those of
            the whole batch.
    """

    name: str = "mnrl"
    scale: float = 20.0
    symmetric: bool = False
    gather: bool = True
    grad_cache_chunk: int | None = None

    def __post_init__(self) -> None:
        require(self.name in LOSSES, f"loss.name={self.name!r} is unknown; choose one of {LOSSES}")
        require(self.scale > 0, f"loss.scale={self.scale!r} must be > 0")
        require(isinstance(self.gather, bool), f"loss.gather={self.gather!r} must be true or false")
        chunk = self.grad_cache_chunk
        require(
            chunk is None or (isinstance(chunk, int) and not isinstance(chunk, bool) and chunk >= 1),
            f"loss.grad_cache_chunk={chunk!r} must be an integer >= 1 (texts per chunk) or null (no GradCache)",
        )

    @property
    def needs_scores(self) -> bool:
        return self.name == "cosent"

    def __call__(self, embeddings: dict[str, torch.Tensor], scores: torch.Tensor | None = None) -> torch.Tensor:
        """Loss of a batch given its embeddings by role (``anchor``, ``positive``, ``negative``)."""
        if self.gather:
            from lacos_lightning.losses import distributed

            if distributed.world()[1] > 1:
                if self.name == "cosent":
                    return distributed.cross_device_cosent(
                        embeddings["anchor"], embeddings["positive"], scores, self.scale
                    )
                return distributed.cross_device_mnrl(
                    embeddings["anchor"], embeddings["positive"], embeddings.get("negative"), self.scale, self.symmetric
                )
        if self.name == "cosent":
            return cosent(embeddings["anchor"], embeddings["positive"], scores, self.scale)
        return multiple_negatives_ranking(
            embeddings["anchor"], embeddings["positive"], embeddings.get("negative"), self.scale, self.symmetric
        )
