"""lacos-report on hand-written and real multiruns; every sweep file (Hydra, W&B, Optuna, launchers) composes
and expands to the expected number of runs."""

from __future__ import annotations

import csv
import importlib.util
import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from lacos_lightning import report as R
from lacos_lightning.pipeline import Pipeline
from tests.conftest import CONF, DATA, ROOT, needs_data

PNG = b"\x89PNG\r\n\x1a\n"
METRIC = "sts/stsb-en-test/spearman"


def write_run(root: Path, name: str, status: str, **sections) -> Path:
    folder = root / name
    folder.mkdir(parents=True)
    data = {"schema": 1, "run_id": name, "status": status, "error": None, "axes": {}, "params": {}, "memory": {},
            "speed": {}, "scores": {}, "wall_time_s": 1.0}  # fmt: skip
    data.update(sections)
    (folder / "metrics.json").write_text(json.dumps(data))
    return folder


def completed(root: Path, name: str, backbone: str, r: int, trainable: int, mem: float, volume: int, score: float):
    return write_run(
        root,
        name,
        "completed",
        axes={
            "backbone": backbone,
            "backbone_shape": None,
            "bits": 8,
            "peft_method": "lora",
            "lora_r": r,
            "data_volume": volume,
            "batch_size": 16,
            "optimizer": "adamw8bit",
        },  # fmt: skip
        params={"trainable_params": trainable, "total_params": 1_000_000, "trainable_pct": trainable / 1e4},
        memory={"peak_rss_gb": mem},
        speed={"train_pairs_per_s": 50.0},
        scores={"sts/stsb-en-dev/spearman": score + 1, METRIC: score},
    )


@pytest.fixture
def sweep_dir(tmp_path: Path) -> Path:
    root = tmp_path / "multirun"
    completed(root, "0", "bloom-a", 4, 1000, 1.0, 500, 50.0)
    completed(root, "1", "bloom-a", 8, 2000, 1.5, 1000, 60.0)
    completed(root, "2", "bloom-b", 8, 4000, 1.2, 500, 55.0)  # beaten on params by run 1, not on memory
    completed(root, "10", "bloom-b", 16, 8000, 3.0, 1000, 58.0)  # beaten on both
    failed = write_run(root, "3", "failed", error="RuntimeError: out of memory")
    (failed / ".hydra").mkdir()
    (failed / ".hydra" / "overrides.yaml").write_text("- encoder.bits=4\n- encoder.peft.r=64\n")
    (failed / ".hydra" / "config.yaml").write_text(yaml.safe_dump({"encoder": {"bits": 4, "peft": {"r": 64}}}))
    write_run(root, "4", "interrupted", error="KeyboardInterrupt")
    return root


# -- Pareto front ----------------------------------------------------------------------------------
def test_pareto_front_by_hand() -> None:
    points = [(10, 50), (20, 60), (15, 40), (30, 60), (5, 30), (None, 90), (20, 60)]
    # (15, 40) loses to (10, 50); (30, 60) to (20, 60); equal points do not dominate each other
    assert R.pareto_front(points) == [0, 1, 4, 6]
    assert R.pareto_front([]) == []
    assert R.pareto_front([(1.0, float("nan")), (2.0, 1.0)]) == [1]


# -- the report on hand-written runs ---------------------------------------------------------------
def test_report_tables_failed_apart_and_plots(sweep_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "rep"
    result = R.write_report(sweep_dir, out)
    assert result["metric"] == METRIC and result["completed"] == 4 and result["not_completed"] == 2
    runs = list(csv.DictReader((out / "runs.csv").open()))
    assert [r["run"] for r in runs] == ["0", "1", "2", "10"]  # natural order
    assert runs[1]["lora_r"] == "8" and runs[1]["trainable_params"] == "2000" and runs[1]["bits"] == "8"
    assert runs[1][METRIC] == "60.0" and runs[1]["peak_rss_gb"] == "1.5"
    assert {r["run"]: r["pareto_params"] for r in runs} == {"0": "True", "1": "True", "2": "False", "10": "False"}
    assert {r["run"]: r["pareto_memory"] for r in runs} == {"0": "True", "1": "True", "2": "True", "10": "False"}
    failed = list(csv.DictReader((out / "failed.csv").open()))
    assert [(r["run"], r["status"]) for r in failed] == [("3", "failed"), ("4", "interrupted")]
    assert failed[0]["error"] == "RuntimeError: out of memory"
    assert failed[0]["overrides"] == "encoder.bits=4 encoder.peft.r=64" and failed[0]["bits"] == "4"
    md = (out / "report.md").read_text()
    done_part, failed_part = md.split("## Failed, invalid or interrupted runs")
    assert "out of memory" in failed_part and "out of memory" not in done_part
    assert "| 10 | bloom-b |" in done_part
    for name in ("score_vs_trainable_params", "score_vs_peak_memory", "score_vs_data_volume"):
        png = out / f"{name}.png"
        assert png.stat().st_size > 5000 and png.read_bytes()[:8] == PNG
        assert f"({name}.png)" in md


def test_report_metric_choice(sweep_dir: Path, tmp_path: Path) -> None:
    result = R.write_report(sweep_dir, tmp_path / "dev", metric="sts/stsb-en-dev/spearman")
    assert result["metric"] == "sts/stsb-en-dev/spearman"
    with pytest.raises(R.LacosError, match="available: sts/stsb-en-dev/spearman"):
        R.write_report(sweep_dir, tmp_path / "x", metric="sts/nope")


def test_report_default_out_and_only_failed_runs(tmp_path: Path) -> None:
    root = tmp_path / "mr"
    write_run(root, "0", "invalid", error="peft.r=0 must be an integer >= 1")
    result = R.write_report(root)
    assert result["completed"] == 0 and result["metric"] is None
    assert (root / "report" / "report.md").read_text().count("peft.r=0") == 1
    assert len(list(csv.DictReader((root / "report" / "failed.csv").open()))) == 1


@pytest.mark.parametrize("make", ["missing", "empty"])
def test_cli_exits_2_without_metrics(make: str, tmp_path: Path, capsys) -> None:
    folder = tmp_path / "mr"
    if make == "empty":
        (folder / "0").mkdir(parents=True)
    with pytest.raises(SystemExit) as exc:
        R.main([str(folder)])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and str(folder) in err[0]


# -- sweeps: Hydra grids, W&B grids, Optuna, launchers ---------------------------------------------
EXPECTED_RUNS = {
    "bits": 4,
    "rank": 4,
    "data_volume": 4,
    "backbone_cpu": 3,
    "lacos_cpu": 12,
    "backbone_gpu": 5,
    "bits_gpu": 4,
    "rank_gpu": 5,
    "data_volume_gpu": 5,
    "lacos_gpu": 20,
    "domain_adapters": 18,
}
SWEEPS = sorted(p.stem for p in (ROOT / "sweeps").glob("*.yaml"))


def experiment_for(sweep: str) -> str:
    if sweep == "domain_adapters":
        return "domain_adapters"
    return "lacos_nli" if sweep.endswith("_gpu") else "tiny_smoke"


def compose_cfg(overrides: list[str], hydra_cfg: bool = False):
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name="train", overrides=overrides, return_hydra_config=hydra_cfg)


def hydra_jobs(sweep: str, cli: list[str]) -> list[list[str]]:
    """The job override lists Hydra's basic sweeper makes from the sweep file plus ``cli``."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    cfg = compose_cfg([*cli, f"sweep={sweep}"], hydra_cfg=True)
    params = [f"{k}={v}" for k, v in cfg.hydra.sweeper.params.items()]
    overrides = OverridesParser.create().parse_overrides([*params, *cli, f"sweep={sweep}"])
    (batch,) = BasicSweeper.split_arguments(overrides, None)
    return batch


def test_every_sweep_has_an_expected_size() -> None:
    assert set(SWEEPS) == set(EXPECTED_RUNS)


@pytest.mark.parametrize("sweep", SWEEPS)
def test_sweep_expands_to_expected_runs_and_every_run_validates(sweep: str, tmp_path: Path) -> None:
    cfg = compose_cfg([f"experiment={experiment_for(sweep)}", f"sweep={sweep}"], hydra_cfg=True)
    assert cfg.hydra.mode.name == "MULTIRUN"
    by_commas = 1
    for value in cfg.hydra.sweeper.params.values():
        by_commas *= len(str(value).split(","))
    jobs = hydra_jobs(sweep, [f"experiment={experiment_for(sweep)}"])
    assert by_commas == len(jobs) == EXPECTED_RUNS[sweep]
    seen: set[str] = set()
    for job in jobs:  # every swept value composes and passes the settings checks (no model is loaded)
        if set(job) <= seen:
            continue
        seen |= set(job)
        run_cfg = compose_cfg(job)
        run_cfg.paths.output_dir = str(tmp_path / "run")
        Pipeline(run_cfg).settings()


def test_command_line_overrides_a_pinned_sweep_value() -> None:
    jobs = hydra_jobs("bits_gpu", ["experiment=lacos_nli", "backbone=bloom-560m"])
    assert len(jobs) == 4 and all("backbone=bloom-560m" in job for job in jobs)


@pytest.mark.parametrize("sweep", sorted(EXPECTED_RUNS))
def test_wandb_sweep_has_the_same_grid(sweep: str) -> None:
    from wandb.sdk.launch.sweeps.utils import create_sweep_command_args

    spec = yaml.safe_load((ROOT / "sweeps" / "wandb" / f"{sweep}.yaml").read_text())
    assert spec["program"] == "lacos-train" and spec["method"] == "grid"
    assert spec["command"] == ["${env}", "${program}", "${args_no_hyphens}"]
    params = spec["parameters"]
    grids = {k: v["values"] if "values" in v else [v["value"]] for k, v in params.items()}
    hydra_params = compose_cfg([f"sweep={sweep}"], hydra_cfg=True).hydra.sweeper.params
    assert set(grids) == set(hydra_params) | {"experiment", "logger"}
    for key, value in hydra_params.items():
        assert [str(v) for v in grids[key]] == [v.strip() for v in str(value).split(",")], key
    assert grids["experiment"] == [experiment_for(sweep)] and grids["logger"] == ["wandb"]
    combos = list(itertools.product(*grids.values()))
    assert len(combos) == EXPECTED_RUNS[sweep]
    for combo in combos[:: max(1, len(combos) // 4)]:  # the agent's command line composes
        args = create_sweep_command_args({"args": {k: {"value": v} for k, v in zip(grids, combo)}})
        cfg = compose_cfg(args["args_no_hyphens"])
        assert cfg.logger.wandb.mode == "offline"


def _has_plugin(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


@pytest.mark.parametrize(
    "launcher, module, target",
    [
        ("basic", "hydra", "BasicLauncher"),
        ("joblib", "hydra_plugins.hydra_joblib_launcher", "JoblibLauncher"),
        ("slurm", "hydra_plugins.hydra_submitit_launcher", "SlurmLauncher"),
        ("submitit_local", "hydra_plugins.hydra_submitit_launcher", "LocalLauncher"),
    ],
)
def test_launchers_compose(launcher: str, module: str, target: str) -> None:
    if not _has_plugin(module):
        pytest.skip(f"{module} is not installed")
    cfg = compose_cfg(["experiment=tiny_smoke", "sweep=rank", f"hydra/launcher={launcher}"], hydra_cfg=True)
    assert cfg.hydra.launcher._target_.endswith(target)
    if launcher == "joblib":
        assert cfg.hydra.launcher.n_jobs == 2
    if launcher == "slurm":
        assert cfg.hydra.launcher.gpus_per_node == 1


def test_optuna_sweep_composes() -> None:
    if not _has_plugin("hydra_plugins.hydra_optuna_sweeper"):
        pytest.skip("hydra-optuna-sweeper is not installed (pip install -e '.[optuna]')")
    cfg = compose_cfg(["experiment=tiny_smoke", "sweep=optuna/lora"], hydra_cfg=True)
    assert cfg.hydra.sweeper._target_.endswith("OptunaSweeper")
    assert set(cfg.hydra.sweeper.params) == {"encoder.bits", "encoder.peft.r", "data.max_train_samples", "optim.lr"}


# -- real multiruns --------------------------------------------------------------------------------
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline", "LACOS_DATA_DIR": str(DATA),
       "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}  # fmt: skip


def multirun(ranks: str, sweep_dir: Path) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "lacos_lightning.train", "-m", "experiment=tiny_smoke", f"encoder.peft.r={ranks}",
           f"hydra.sweep.dir={sweep_dir}", "trainer.enable_progress_bar=false", "export.sentence_transformers=false"]  # fmt: skip
    return subprocess.run(cmd, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=600)


def run_report(sweep_dir: Path, out: Path) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "lacos_lightning.report", str(sweep_dir), "--out", str(out)]
    return subprocess.run(cmd, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
@needs_data
def test_real_two_run_multirun_then_report(tmp_path: Path) -> None:
    sweep_dir = tmp_path / "mr"
    proc = multirun("2,4", sweep_dir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = {p.parent.name: json.loads(p.read_text()) for p in sweep_dir.rglob("metrics.json")}
    assert set(records) == {"0", "1"}
    assert [records[k]["status"] for k in ("0", "1")] == ["completed", "completed"]
    assert [records[k]["axes"]["lora_r"] for k in ("0", "1")] == [2, 4]
    assert records["1"]["params"]["trainable_params"] == 2 * records["0"]["params"]["trainable_params"] == 2048
    assert all(r["memory"]["peak_rss_scope"] == "run" for r in records.values())  # not the process's
    rep = run_report(sweep_dir, tmp_path / "rep")
    assert rep.returncode == 0, rep.stderr[-2000:]
    runs = list(csv.DictReader((tmp_path / "rep" / "runs.csv").open()))
    assert [r["lora_r"] for r in runs] == ["2", "4"] and all(r[METRIC] for r in runs)
    assert list(csv.DictReader((tmp_path / "rep" / "failed.csv").open())) == []
    assert all((tmp_path / "rep" / f"{n}.png").stat().st_size > 5000 for n in ("score_vs_trainable_params",
               "score_vs_peak_memory", "score_vs_data_volume"))  # fmt: skip


@pytest.mark.slow
@needs_data
def test_multirun_with_an_invalid_run_goes_on(tmp_path: Path) -> None:
    sweep_dir = tmp_path / "mr"
    proc = multirun("0,2", sweep_dir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = {p.parent.name: json.loads(p.read_text()) for p in sweep_dir.rglob("metrics.json")}
    assert records["0"]["status"] == "invalid" and "peft.r=0" in records["0"]["error"]
    assert records["1"]["status"] == "completed" and records["1"]["scores"]
    rep = run_report(sweep_dir, tmp_path / "rep")
    assert rep.returncode == 0, rep.stderr[-2000:]
    failed = list(csv.DictReader((tmp_path / "rep" / "failed.csv").open()))
    assert [(r["run"], r["status"], r["lora_r"]) for r in failed] == [("0", "invalid", "0")]
    assert "peft.r=0 must be an integer >= 1" in failed[0]["error"]
    assert [r["run"] for r in csv.DictReader((tmp_path / "rep" / "runs.csv").open())] == ["1"]


@pytest.mark.slow
@needs_data
def test_rerunning_a_multirun_skips_completed_runs(tmp_path: Path) -> None:
    sweep_dir = tmp_path / "mr"
    assert multirun("0,2", sweep_dir).returncode == 0
    done = sweep_dir / "1" / "metrics.json"
    first = done.read_text()
    stamp = done.stat().st_mtime_ns
    again = multirun("0,2", sweep_dir)  # continue the "interrupted" sweep in its folder
    assert again.returncode == 0, again.stderr[-3000:]
    assert done.stat().st_mtime_ns == stamp and done.read_text() == first  # the completed run was not redone
    assert json.loads((sweep_dir / "0" / "metrics.json").read_text())["status"] == "invalid"  # retried


def test_wandb_group_is_the_sweep_folder_in_a_multirun() -> None:
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf

    from lacos_lightning.loggers import sweep_group

    saved = HydraConfig.instance().cfg
    try:
        for mode, expected in (("MULTIRUN", "multirun/a/b"), ("RUN", None)):
            cfg = compose_cfg(
                ["experiment=tiny_smoke", "hydra.sweep.dir=multirun/a/b", f"hydra.mode={mode}"], hydra_cfg=True
            )
            HydraConfig.instance().set_config(OmegaConf.create(cfg))
            assert sweep_group() == expected
    finally:
        HydraConfig.instance().cfg = saved
