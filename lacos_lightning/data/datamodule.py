"""The LightningDataModule for pairs, triplets and scored pairs."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import Any

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from lacos_lightning.data.config import DataConfig
from lacos_lightning.data.loader import ResumableLoader

TEXT_ROLES = ("anchor", "positive", "negative")


def subsample(records: list[dict[str, Any]], cfg: DataConfig) -> list[dict[str, Any]]:
    """Apply ``train_fraction`` then ``max_train_samples`` with a seeded shuffle (deterministic)."""
    keep = len(records)
    if cfg.train_fraction is not None:
        keep = max(1, round(keep * cfg.train_fraction))
    if cfg.max_train_samples is not None:
        keep = min(keep, cfg.max_train_samples)
    if keep == len(records):
        return records
    order = list(range(len(records)))
    random.Random(cfg.seed).shuffle(order)
    return [records[i] for i in sorted(order[:keep])]


class Collator:
    """Tokenizes every text of a batch in one padded tensor so the Siamese towers run as one forward."""

    def __init__(self, tokenize: Callable[[Sequence[str]], dict[str, torch.Tensor]]) -> None:
        self.tokenize = tokenize

    def __call__(self, records: list[dict[str, Any]]) -> dict[str, Any]:
        roles = [r for r in TEXT_ROLES if r in records[0]]
        texts = [rec[role] for role in roles for rec in records]
        batch: dict[str, Any] = {"features": self.tokenize(texts), "roles": roles, "size": len(records)}
        if "score" in records[0]:
            batch["scores"] = torch.tensor([rec["score"] for rec in records], dtype=torch.float32)
        return batch


class PairDataModule(pl.LightningDataModule):
    """Training batches from validated records; evaluation loaders come from the evaluators.

    Args:
        records: validated training records (see :mod:`lacos_lightning.data.recipes`).
        cfg: data settings (batch size, volume, seed, workers).
        tokenize: the encoder's tokenize function.
        val_evaluators: evaluators run in the validation loop.
        test_evaluators: evaluators run in the test loop.
    """

    def __init__(
        self,
        records: list[dict[str, Any]],
        cfg: DataConfig,
        tokenize: Callable[[Sequence[str]], dict[str, torch.Tensor]],
        val_evaluators: Sequence[Any] = (),
        test_evaluators: Sequence[Any] = (),
    ) -> None:
        super().__init__()
        self.records, self.cfg = records, cfg
        self.collate = Collator(tokenize)
        self.val_evaluators, self.test_evaluators = list(val_evaluators), list(test_evaluators)

    def train_dataloader(self) -> DataLoader:
        return ResumableLoader(
            self.records,
            batch_size=self.cfg.batch_size,
            seed=self.cfg.seed,
            collate_fn=self.collate,
            num_workers=self.cfg.num_workers,
        )

    def val_dataloader(self) -> list[DataLoader]:
        return [ev.dataloader() for ev in self.val_evaluators]

    def test_dataloader(self) -> list[DataLoader]:
        return [ev.dataloader() for ev in self.test_evaluators]
