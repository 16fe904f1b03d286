"""metrics.json: one schema for every run of every task, and the callback that measures speed and memory."""

from __future__ import annotations

import json
import os
import resource
import time
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities import rank_zero_only

SCHEMA_VERSION = 1


def peak_rss_gb() -> float:
    """Peak resident memory of this process so far, or since :func:`reset_peak_rss` (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def reset_peak_rss() -> bool:
    """Reset the process's peak-RSS mark to its current RSS (Linux >= 4.0); False where not possible.

    Hydra's basic launcher runs every job of a multirun in one process and joblib reuses its workers, so
    without a reset a run's ``ru_maxrss`` would include the peaks of the runs before it.
    """
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


class SpeedMonitor(pl.Callback):
    """Counts training examples (of all ranks) and the wall time spent in training batches (not evaluation)."""

    def __init__(self) -> None:
        self.examples = 0
        self.steps = 0
        self.seconds = 0.0
        self._start = 0.0

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        self._start = time.perf_counter()

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        self.seconds += time.perf_counter() - self._start
        # Every rank trains on its own batch of the same size in lockstep: the run's throughput is the
        # local count times the number of ranks.
        size = int(batch.get("size", 0)) if isinstance(batch, dict) else 0
        self.examples += size * max(1, trainer.world_size)
        self.steps += 1

    def summary(self) -> dict[str, Any]:
        rate = self.examples / self.seconds if self.seconds else None
        return {
            "train_examples_seen": self.examples,
            "train_batches": self.steps,
            "train_seconds": round(self.seconds, 3),
            "train_pairs_per_s": rate and round(rate, 2),
        }


class RunRecord:
    """Builds and writes ``metrics.json`` for a run; written at start, on every update and at the end,
    so an interrupted or failed run still leaves its status."""

    def __init__(self, folder: str | Path, task: str, axes: dict[str, Any]) -> None:
        self.path = Path(folder) / "metrics.json"
        self.started = time.time()
        self.peak_scope = "run" if reset_peak_rss() else "process"
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        self.data: dict[str, Any] = {
            "schema": SCHEMA_VERSION,
            "run_id": Path(folder).name,
            "run_dir": str(Path(folder).resolve()),
            "task": task,
            "status": "running",
            "error": None,
            "axes": axes,
            "params": {},
            "memory": {},
            "speed": {},
            "scores": {},
            "exports": {},
            "wall_time_s": None,
        }
        self.write()

    def update(self, **sections: Any) -> None:
        for key, value in sections.items():
            if isinstance(self.data.get(key), dict) and isinstance(value, dict):
                self.data[key].update(value)
            else:
                self.data[key] = value
        self.write()

    def finish(self, status: str, error: str | None = None) -> None:
        memory: dict[str, Any] = {"peak_rss_gb": round(peak_rss_gb(), 3), "peak_rss_scope": self.peak_scope}
        if torch.cuda.is_available():
            memory["peak_gpu_gb"] = round(torch.cuda.max_memory_allocated() / 1024**3, 3)
        self.update(status=status, error=error, memory=memory, wall_time_s=round(time.time() - self.started, 2))

    @rank_zero_only
    def write(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps(self.data, indent=2, default=str))
        tmp.replace(self.path)
