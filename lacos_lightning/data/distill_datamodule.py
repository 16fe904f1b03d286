"""Batches for distillation: student inputs of both sides plus the cached teacher targets of the sources."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from lacos_lightning.data.loader import ResumableLoader


class DistillCollator:
    """Tokenizes the sources and (for parallel records) the translations; attaches the teacher targets.

    A batch holds ``teacher`` (the teacher embeddings of every record's source, before normalisation),
    ``source_rows`` (the records whose source the student embeds: all, or with ``embed_paired_sources=False``
    only those without a translation) and ``source`` (their features), ``paired`` (indices of the records
    with a translation) and ``translation`` (their features) when there are any, and ``related_rows``,
    ``related`` (features) and ``teacher_related`` (targets) for records with a related sentence.

    Args:
        tokenize: the student's tokenize function.
        targets: (n, d) teacher embeddings.
        index: source text -> row of ``targets``.
        embed_paired_sources: tokenize the sources of parallel records too.
    """

    def __init__(
        self,
        tokenize: Callable[[Sequence[str]], dict[str, torch.Tensor]],
        targets: torch.Tensor,
        index: dict[str, int],
        embed_paired_sources: bool = True,
    ) -> None:
        self.tokenize, self.targets, self.index = tokenize, targets, index
        self.embed_paired_sources = embed_paired_sources

    def __call__(self, records: list[dict[str, str]]) -> dict[str, Any]:
        sources = [r["source"] for r in records]
        paired = [i for i, r in enumerate(records) if "translation" in r]
        rows = [i for i, r in enumerate(records) if self.embed_paired_sources or "translation" not in r]
        batch: dict[str, Any] = {
            "teacher": self.targets[torch.tensor([self.index[s] for s in sources])],
            "source_rows": torch.tensor(rows, dtype=torch.long),
            "paired": torch.tensor(paired, dtype=torch.long),
            "size": len(records),
        }
        if rows:
            batch["source"] = self.tokenize([sources[i] for i in rows])
        related = [i for i, r in enumerate(records) if "related" in r]
        batch["related_rows"] = torch.tensor(related, dtype=torch.long)
        if related:
            texts = [records[i]["related"] for i in related]
            batch["related"] = self.tokenize(texts)
            batch["teacher_related"] = self.targets[torch.tensor([self.index[t] for t in texts])]
        if paired:
            batch["translation"] = self.tokenize([records[i]["translation"] for i in paired])
        return batch


class DistillDataModule(pl.LightningDataModule):
    """Training batches of distillation records; evaluation loaders come from the evaluators.

    Args:
        records: training records (``source`` and optional ``translation``).
        batch_size, seed, num_workers: loader settings.
        collate: a :class:`DistillCollator`.
        val_evaluators, test_evaluators: evaluators of the validation and test loops.
    """

    def __init__(
        self,
        records: list[dict[str, str]],
        batch_size: int,
        seed: int,
        collate: DistillCollator,
        num_workers: int = 0,
        val_evaluators: Sequence[Any] = (),
        test_evaluators: Sequence[Any] = (),
    ) -> None:
        super().__init__()
        self.records, self.batch_size, self.seed, self.num_workers = records, batch_size, seed, num_workers
        self.collate = collate
        self.val_evaluators, self.test_evaluators = list(val_evaluators), list(test_evaluators)

    def train_dataloader(self) -> DataLoader:
        return ResumableLoader(
            self.records,
            batch_size=self.batch_size,
            seed=self.seed,
            collate_fn=self.collate,
            num_workers=self.num_workers,
        )

    def val_dataloader(self) -> list[DataLoader]:
        return [ev.dataloader() for ev in self.val_evaluators]

    def test_dataloader(self) -> list[DataLoader]:
        return [ev.dataloader() for ev in self.test_evaluators]
