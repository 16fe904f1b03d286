"""Data: readers for local files and hub datasets, built-in recipes, the resumable train loader."""

from __future__ import annotations

from lacos_lightning.data.config import DataConfig, SourceConfig
from lacos_lightning.data.datamodule import PairDataModule
from lacos_lightning.data.recipes import load_source

__all__ = ["DataConfig", "PairDataModule", "SourceConfig", "load_source"]
