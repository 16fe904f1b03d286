"""The console scripts: bad input ends in one line on stderr and exit code 2, before any model loads."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import DATA, ROOT, needs_data

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline", "LACOS_DATA_DIR": str(DATA)}


def run_train(*args: str, tmp_path: Path) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "lacos_lightning.train", f"hydra.run.dir={tmp_path / 'run'}", *args]
    return subprocess.run(cmd, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300)


def _write(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


def _bad_inputs(tmp: Path) -> dict[str, tuple[list[str], str]]:
    missing_col = _write(tmp / "cols.csv", "question,answer\nhi,there\n")
    empty = _write(tmp / "empty.csv", "sentence1,sentence2\nhello,world\n,world\n")
    scored = _write(tmp / "scores.csv", "sentence1,sentence2,score\na,b,7\n")
    return {
        "bits": (["encoder.bits=3"], "encoder.bits=3"),
        "pooling": (["encoder.pooling=max"], "encoder.pooling='max'"),
        "rank": (["encoder.peft.r=0"], "peft.r=0"),
        "missing_file": (["data=file", "data.train.path=/nope/pairs.csv"], "/nope/pairs.csv"),
        "missing_column": (["data=file", f"data.train.path={missing_col}"], "sentence1"),
        "empty_sentence": (["data=file", f"data.train.path={empty}"], "row 2"),
        "score_range": (
            [
                "data=file",
                f"data.train.path={scored}",
                "+data.train.columns.score=score",
                "data.train.score_range=[0,5]",
            ],
            "outside",
        ),
        "unknown_key": (["+encoder.colour=red"], "colour"),
        "full_at_8_bits": (["peft=full", "encoder.bits=8"], "peft.method=full"),
    }


@needs_data
@pytest.mark.parametrize(
    "case",
    [
        "bits",
        "pooling",
        "rank",
        "missing_file",
        "missing_column",
        "empty_sentence",
        "score_range",
        "unknown_key",
        "full_at_8_bits",
    ],
)
def test_bad_input_exits_2_with_one_line(case: str, tmp_path: Path) -> None:
    args, needle = _bad_inputs(tmp_path)[case]
    proc = run_train(*args, tmp_path=tmp_path)
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and needle in lines[0], proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert "Loading weights" not in proc.stderr + proc.stdout  # failed before any model was loaded


def test_evaluate_rejects_bad_bits() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "lacos_lightning.evaluate", "--bits", "5"],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2 and proc.stderr.strip().startswith("error: encoder.bits=5")


@needs_data
def test_cli_run_completes(tmp_path: Path) -> None:
    proc = run_train("experiment=tiny_smoke", "trainer.enable_progress_bar=false", tmp_path=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "run" / "metrics.json").is_file()
    assert (tmp_path / "run" / ".hydra" / "config.yaml").is_file()


@needs_data
def test_lr_group_that_matches_nothing_stops_before_training(tmp_path: Path) -> None:
    """Parameter names exist only once the model is built: the check runs then, before the first step."""
    proc = run_train("experiment=tiny_smoke", "optim.lr_groups={word_embedings:1e-3}", tmp_path=tmp_path)
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "'word_embedings' matches no trainable parameter" in lines[0], proc.stderr[-2000:]
    assert not (tmp_path / "run" / "checkpoints").exists()
