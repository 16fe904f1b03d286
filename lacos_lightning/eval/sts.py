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
        self.metric = SpearmanCorrCoef()

    def dataloader(self) -> DataLoader:
        return text_loader(self.rows, self.batch_size)

    def update(self, encoder: Any, batch: dict[str, Any]) -> None:
        n = len(batch["anchor"])
        features = {k: v.to(encoder.device) for k, v in encoder.tokenize(batch["anchor"] + batch["positive"]).items()}
        emb = encoder(features)
        cos = F.cosine_similarity(emb[:n], emb[n:], dim=-1)
        self.metric.update(cos.float(), torch.tensor(batch["score"], dtype=torch.float32, device=cos.device))

    def compute(self) -> dict[str, float]:
        return {f"sts/{self.name}/spearman": float(self.metric.compute()) * 100}
