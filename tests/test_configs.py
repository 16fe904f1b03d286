"""Every preset in experiments/ and every sweep in sweeps/ composes and validates."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from lacos_lightning.pipeline import Pipeline
from tests.conftest import CONF, ROOT, compose_train

EXPERIMENTS = sorted(p.stem for p in (ROOT / "experiments").glob("*.yaml"))
SWEEPS = sorted(p.stem for p in (ROOT / "sweeps").glob("*.yaml"))
BACKBONES = sorted(p.stem for p in (CONF / "backbone").glob("*.yaml"))


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_experiment_composes_and_validates(name: str, tmp_path: Path) -> None:
    cfg = compose_train([f"experiment={name}"], tmp_path)
    assert cfg.experiment_name == name
    Pipeline(cfg).settings()  # builds every settings dataclass: raises on a bad value


@pytest.mark.parametrize("name", SWEEPS)
def test_sweep_composes_with_its_grid(name: str, tmp_path: Path) -> None:
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="train", overrides=[f"sweep={name}"], return_hydra_config=True)
    params = cfg.hydra.sweeper.params
    assert params, f"sweep {name} sets no hydra.sweeper.params"
    assert cfg.hydra.mode.name == "MULTIRUN"


@pytest.mark.parametrize("name", BACKBONES)
def test_backbone_configs_validate(name: str, tmp_path: Path) -> None:
    cfg = compose_train([f"backbone={name}"], tmp_path)
    Pipeline(cfg).settings()


def test_experiment_and_sweep_lists_are_not_empty() -> None:
    assert EXPERIMENTS and SWEEPS
