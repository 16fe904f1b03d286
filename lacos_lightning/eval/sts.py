"""STS evaluation: Spearman correlation (x100) between cosine similarity and gold scores."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader
from torchmetrics.regression import SpearmanCorrCoef

from lacos_lightning.eval.base import Evaluator, text_loader


class STSEvaluator(Evaluator):
    """Spearman of cos(sentence1, sentence2) against gold scores, the STS-B protocol.

    Args:
        name: set name used in metric keys (``sts/{name}/spearman``).
        records: dicts with ``anchor``, ``positive`` and ``score``.
        batch_size: pairs per batch (pairs are sorted by length to cut padding).
    """

    def __init__(self, name: str, records: list[dict[str, Any]], batch_size: int = 64) -> None:
        super().__init__(batch_size)
        self.name = name
        self.rows = sorted(records, key=lambda r: -max(len(r["anchor"]), len(r["positive"])))
        self.metric = self.make_metric()

    def make_metric(self) -> Any:
        return SpearmanCorrCoef()

    def dataloader(self) -> DataLoader:
        return text_loader(self.rows, self.batch_size)

    @staticmethod
    def embed_pairs(encoder: Any, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Anchors and positives embedded in one forward, and the gold scores, on the encoder's device."""
        n = len(batch["anchor"])
        features = {k: v.to(encoder.device) for k, v in encoder.tokenize(batch["anchor"] + batch["positive"]).items()}
        emb = encoder(features)
        return emb[:n], emb[n:], torch.tensor(batch["score"], dtype=torch.float32, device=emb.device)

    def update(self, encoder: Any, batch: dict[str, Any]) -> None:
        anchor, positive, gold = self.embed_pairs(encoder, batch)
        self.metric.update(F.cosine_similarity(anchor, positive, dim=-1).float(), gold)

    def compute(self) -> dict[str, float]:
        return {f"sts/{self.name}/spearman": float(self.metric.compute()) * 100}
