"""``lacos-train``: the Hydra entry point that trains, evaluates and exports one run.

Everything the user can get wrong (config values, data files, columns, empty text, scores) is
checked before any model is loaded; such problems end the run with a one-line error and exit code 2.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import warnings
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf

from lacos_lightning.errors import LacosError, require

log = logging.getLogger("lacos_lightning")
CONF_DIR = str(Path(__file__).resolve().parent.parent / "conf")


def _quiet() -> None:
    """Silence library chatter that says nothing actionable."""
    warnings.filterwarnings("ignore", message=".*MatMul8bitLt.*")
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*`isinstance\\(treespec, LeafSpec\\)`.*")
    warnings.filterwarnings("ignore", message=".*The number of training batches.*")
    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def resolve_resume(cfg: DictConfig) -> DictConfig:
    """``resume=RUN_DIR`` continues that run: its saved config, its folder, its last checkpoint."""
    if not cfg.get("resume"):
        return cfg
    run_dir = Path(cfg.resume).expanduser().resolve()
    saved = run_dir / ".hydra" / "config.yaml"
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    require(saved.is_file(), f"resume={cfg.resume}: no .hydra/config.yaml in that folder (is it a run folder?)")
    require(ckpt.is_file(), f"resume={cfg.resume}: no checkpoints/last.ckpt to continue from")
    old = OmegaConf.load(saved)
    OmegaConf.set_struct(old, False)
    old.paths.output_dir = str(run_dir)
    old.ckpt_path = str(ckpt)
    old.resume = None
    return old


def completed_record(cfg: DictConfig) -> dict[str, Any] | None:
    """The metrics.json of a run folder whose run already completed, else None."""
    path = Path(cfg.paths.output_dir) / "metrics.json"
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
    except ValueError:
        return None
    return record if record.get("status") == "completed" else None


def run(cfg: DictConfig) -> dict[str, Any]:
    """Train, test and export one run described by ``cfg``; return the metrics.json content."""
    from lacos_lightning.pipeline import Pipeline

    return Pipeline(cfg).run()


@hydra.main(config_path=CONF_DIR, config_name="train", version_base="1.3")
def _hydra_main(cfg: DictConfig) -> float | None:
    _quiet()
    from hydra.core.hydra_config import HydraConfig

    multirun = HydraConfig.get().mode.name == "MULTIRUN"
    done = completed_record(cfg) if multirun and cfg.get("skip_completed", True) else None
    if done is not None:  # re-running a multirun into the same sweep folder continues it
        log.info("skipping %s: already completed", cfg.paths.output_dir)
        return next(iter(done.get("scores", {}).values()), None)
    try:
        cfg = resolve_resume(cfg)
        record = run(cfg)
    except LacosError as err:
        print(f"error: {err}", file=sys.stderr)
        if multirun:
            return None
        sys.exit(2)
    except Exception:
        if multirun:  # recorded as failed in metrics.json; the other runs go on
            log.exception("run failed")
            return None
        raise
    scores = record.get("scores", {})
    return next(iter(scores.values()), None)


def main() -> None:
    """Console entry point."""
    _hydra_main()


if __name__ == "__main__":
    main()
