"""Bitext retrieval (Tatoeba protocol): nearest neighbour by cosine, accuracy in both directions (x100)."""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import DataLoader
from torchmetrics import Metric

from lacos_lightning.eval.base import Evaluator, text_loader


def retrieval_accuracy(src: torch.Tensor, tgt: torch.Tensor) -> tuple[float, float]:
    """Share of rows i whose nearest neighbour (cosine) on the other side is row i: (src->tgt, tgt->src)."""
    src = torch.nn.functional.normalize(src.float(), dim=-1)
    tgt = torch.nn.functional.normalize(tgt.float(), dim=-1)
    sim = src @ tgt.T
    gold = torch.arange(sim.size(0), device=sim.device)
    return (sim.argmax(1) == gold).float().mean().item(), (sim.argmax(0) == gold).float().mean().item()


class _PairedEmbeddings(Metric):
    """Collects aligned embeddings (and their row ids) across batches and processes."""

    full_state_update = False

    def __init__(self) -> None:
        super().__init__()
        self.add_state("src", default=[], dist_reduce_fx="cat")
        self.add_state("tgt", default=[], dist_reduce_fx="cat")
        self.add_state("ids", default=[], dist_reduce_fx="cat")

    def update(self, src: torch.Tensor, tgt: torch.Tensor, ids: torch.Tensor) -> None:
        self.src.append(src)
        self.tgt.append(tgt)
        self.ids.append(ids)

    def compute(self) -> tuple[float, float]:
        cat = lambda x: torch.cat(x) if isinstance(x, list) else x  # noqa: E731
        ids = cat(self.ids)
        order = ids.argsort()
        return retrieval_accuracy(cat(self.src)[order], cat(self.tgt)[order])


class BitextEvaluator(Evaluator):
    """Tatoeba-style retrieval between ``source`` sentences and their ``target`` translations.

    Reports ``bitext/{name}/src2tgt``, ``tgt2src`` and their mean ``accuracy``.
    """

    def __init__(self, name: str, source: list[str], target: list[str], batch_size: int = 64) -> None:
        super().__init__(batch_size)
        self.name = name
        self.rows = [{"source": s, "target": t, "id": i} for i, (s, t) in enumerate(zip(source, target))]
        self.metric = _PairedEmbeddings()

    def dataloader(self) -> DataLoader:
        return text_loader(self.rows, self.batch_size)

    def update(self, encoder: Any, batch: dict[str, Any]) -> None:
        n = len(batch["source"])
        features = {k: v.to(encoder.device) for k, v in encoder.tokenize(batch["source"] + batch["target"]).items()}
        emb = encoder(features)
        self.metric.update(emb[:n], emb[n:], torch.tensor(batch["id"], device=emb.device))

    def compute(self) -> dict[str, float]:
        fwd, bwd = self.metric.compute()
        key = f"bitext/{self.name}"
        return {f"{key}/src2tgt": fwd * 100, f"{key}/tgt2src": bwd * 100, f"{key}/accuracy": (fwd + bwd) * 50}
