"""Loggers from config: CSV always, W&B (offline by default) when ``logger=wandb``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.loggers import CSVLogger, Logger


def sweep_group() -> str | None:
    """In a Hydra multirun, the sweep folder (so every run of a sweep lands in one W&B group)."""
    try:
        from hydra.core.hydra_config import HydraConfig

        hydra = HydraConfig.get()
    except ValueError:  # not inside a Hydra app
        return None
    return str(hydra.sweep.dir) if hydra.mode is not None and hydra.mode.name == "MULTIRUN" else None


def build_loggers(cfg: DictConfig, out: Path) -> list[Logger]:
    spec = cfg.get("logger") or {}
    loggers: list[Logger] = [CSVLogger(save_dir=str(out), name="csv", version="")]
    wandb = spec.get("wandb")
    if wandb:
        from pytorch_lightning.loggers import WandbLogger

        os.environ.setdefault("WANDB_MODE", str(wandb.get("mode", "offline")))
        os.environ.setdefault("WANDB_SILENT", "true")
        config: Any = OmegaConf.to_container(cfg, resolve=True)
        loggers.append(
            WandbLogger(
                project=wandb.get("project", "lacos-lightning"),
                entity=wandb.get("entity"),
                group=wandb.get("group") or sweep_group(),
                tags=list(wandb.get("tags") or []),
                name=wandb.get("name") or out.name,
                save_dir=str(out),
                config=config,
                log_model=False,
            )
        )
    return loggers
