"""A training DataLoader that resumes mid-epoch exactly where a checkpoint left off.

Lightning saves and restores the ``state_dict`` of loaders that have one. The order of each epoch is a
permutation seeded by ``(seed, epoch)``, so skipping the batches a checkpoint already consumed gives
the batches the uninterrupted run would have seen. Under ``torch.distributed`` each rank takes every
``world_size``-th batch-sized slice of the same permutation.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset, Sampler


class EpochSampler(Sampler[int]):
    """Seeded per-epoch permutation, sharded by rank, with an offset to skip consumed batches."""

    def __init__(self, size: int, seed: int, batch_size: int, drop_last: bool = True) -> None:
        self.size, self.seed, self.batch_size, self.drop_last = size, seed, batch_size, drop_last
        self.epoch = 0
        self.skip_batches = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _rank(self) -> tuple[int, int]:
        if dist.is_available() and dist.is_initialized():
            return dist.get_rank(), dist.get_world_size()
        return 0, 1

    def _indices(self) -> list[int]:
        gen = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        order = torch.randperm(self.size, generator=gen).tolist()
        rank, world = self._rank()
        step = self.batch_size * world
        usable = (len(order) // step) * step if self.drop_last else len(order)
        out: list[int] = []
        for start in range(0, usable, step):
            out.extend(order[start + rank * self.batch_size : start + (rank + 1) * self.batch_size])
        return out

    def __len__(self) -> int:
        return len(self._indices())

    def __iter__(self) -> Iterator[int]:
        return iter(self._indices()[self.skip_batches * self.batch_size :])


class ResumableLoader(DataLoader):
    """DataLoader whose position in the epoch is saved in checkpoints and restored on resume."""

    def __init__(self, dataset: Dataset, batch_size: int, seed: int, **kwargs: Any) -> None:
        self.epoch_sampler = EpochSampler(len(dataset), seed, batch_size)
        # An own generator keeps DataLoader from drawing its base seed from the global RNG, which would
        # shift dropout masks after a resume.
        kwargs.setdefault("generator", torch.Generator().manual_seed(seed))
        super().__init__(dataset, batch_size=batch_size, sampler=self.epoch_sampler, drop_last=True, **kwargs)
        self.consumed = 0
        self._pending: dict[str, int] | None = None

    def __len__(self) -> int:
        return len(self.epoch_sampler) // self.batch_size

    def __iter__(self) -> Iterator[Any]:
        sampler = self.epoch_sampler
        skip = 0
        if self._pending is not None and self._pending["epoch"] == sampler.epoch:
            skip = self._pending["consumed"]
        self._pending = None
        sampler.skip_batches = skip
        for position, batch in enumerate(super().__iter__(), start=skip):
            batch["position"] = position
            yield batch
        sampler.skip_batches = 0

    def mark_consumed(self, position: int) -> None:
        """Called by the task when batch ``position`` (0-based) of this epoch starts training."""
        self.consumed = position + 1

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch_sampler.epoch, "consumed": self.consumed}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self._pending = dict(state)
