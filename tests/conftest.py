"""Shared fixtures: the real train.yaml composed with Hydra, pointed at tmp_path, CPU, tiny limits."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig, open_dict

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"
MINILM = "sentence-transformers/all-MiniLM-L6-v2"
# Random-weight backbones for fast tests (EncoderConfig.random_init); MiniLM's tokenizer supplies the vocabulary.
TINY_BERT = {
    "model_type": "bert",
    "hidden_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "intermediate_size": 128,
}
TINY_BLOOM = {"model_type": "bloom", "hidden_size": 64, "n_layer": 2, "n_head": 4}
DATA = Path(os.environ.get("LACOS_DATA_DIR", ROOT.parent / "shared" / "data")).resolve()


def data_available() -> bool:
    return (DATA / "stsb").is_dir() and (DATA / "nli").is_dir()


needs_data = pytest.mark.skipif(not data_available(), reason=f"real data not found at {DATA}")


def compose_train(overrides: list[str], out: Path) -> DictConfig:
    """Compose conf/train.yaml like ``lacos-train`` would, with outputs under ``out``."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="train", overrides=overrides)
    with open_dict(cfg):
        cfg.paths.output_dir = str(out)
        cfg.paths.data_dir = str(DATA) if data_available() else None
        cfg.trainer.accelerator = "cpu"
        cfg.trainer.enable_progress_bar = False
    return cfg


@pytest.fixture
def tiny_cfg(tmp_path: Path):
    """Factory: the tiny-BLOOM smoke experiment plus overrides, writing to tmp_path/run."""

    def make(*overrides: str, out: Path | None = None) -> DictConfig:
        return compose_train(["experiment=tiny_smoke", *overrides], out or tmp_path / "run")

    return make
