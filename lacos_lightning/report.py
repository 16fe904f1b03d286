"""``lacos-report``: the trade-off report of a sweep (every ``metrics.json`` below a folder).

Writes, into ``--out`` (default ``FOLDER/report``):

- ``report.md``: a table of the completed runs (axes, trainable and total parameters, bit width, peak
  memory, throughput, wall time, scores, Pareto flags), then the failed / invalid / interrupted runs
  apart with their error;
- ``runs.csv`` (completed runs) and ``failed.csv`` (the others);
- ``score_vs_trainable_params.png``, ``score_vs_peak_memory.png``, ``score_vs_data_volume.png``: the
  chosen score against each cost, one line per backbone, the Pareto front (higher score with fewer
  trainable parameters / less memory) circled and joined.

    lacos-report multirun/2026-01-01/12-00-00
    lacos-report multirun/2026-01-01/12-00-00 --out report --metric sts/stsb-en-test/spearman
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lacos_lightning.errors import LacosError, exit_on_user_error, require

COMPLETED = "completed"
# Column name -> where it comes from in metrics.json (section, key).
BASE_COLUMNS: list[tuple[str, str, str]] = [
    ("backbone", "axes", "backbone"),
    ("shape", "axes", "backbone_shape"),
    ("bits", "axes", "bits"),
    ("peft", "axes", "peft_method"),
    ("lora_r", "axes", "lora_r"),
    ("adapter_size", "axes", "adapter_size"),
    ("domain", "axes", "domain"),
    ("data_volume", "axes", "data_volume"),
    ("batch_size", "axes", "batch_size"),
    ("optimizer", "axes", "optimizer"),
    ("seed", "axes", "seed"),
    ("lr", "axes", "lr"),
    ("trainable_params", "params", "trainable_params"),
    ("total_params", "params", "total_params"),
    ("trainable_pct", "params", "trainable_pct"),
    ("peak_rss_gb", "memory", "peak_rss_gb"),
    ("peak_gpu_gb", "memory", "peak_gpu_gb"),
    ("train_pairs_per_s", "speed", "train_pairs_per_s"),
    ("train_s", "speed", "train_seconds"),
    ("train_examples", "speed", "train_examples_seen"),
    ("wall_time_s", "", "wall_time_s"),
]
SHAPE_ABBREV = {
    "hidden_size": "h",
    "n_layer": "l",
    "num_hidden_layers": "l",
    "n_head": "a",
    "num_attention_heads": "a",
    "vocab_size": "v",
    "intermediate_size": "i",
}


# -- reading ---------------------------------------------------------------------------------------
def shape_label(shape: Any) -> str | None:
    """``{model_type: bloom, hidden_size: 64, n_layer: 2, n_head: 4}`` -> ``bloom h64 l2 a4``."""
    if not isinstance(shape, dict):
        return None if shape is None else str(shape)
    parts = [str(shape.get("model_type", ""))]
    parts += [f"{SHAPE_ABBREV.get(k, k + '=')}{v}" for k, v in shape.items() if k != "model_type"]
    return " ".join(p for p in parts if p)


def _load_yaml(path: Path) -> Any:
    if not path.is_file():
        return None
    try:
        from omegaconf import OmegaConf

        return OmegaConf.to_container(OmegaConf.load(path), resolve=False)
    except Exception:  # an unreadable Hydra file only loses the overrides column
        return None


def _axes_from_config(config: Any) -> dict[str, Any]:
    """Best-effort axes from ``.hydra/config.yaml`` for runs that stopped before recording them."""
    if not isinstance(config, dict):
        return {}
    enc = config.get("encoder") or {}
    peft = enc.get("peft") or {}
    data = config.get("data") or {}
    random_init = enc.get("random_init")
    backbone = f"random-{random_init.get('model_type')}" if isinstance(random_init, dict) else enc.get("name")
    return {
        "backbone": backbone,
        "backbone_shape": random_init,
        "bits": enc.get("bits"),
        "peft_method": peft.get("method"),
        "lora_r": peft.get("r") if peft.get("method", "lora") == "lora" else None,
        "data_volume": data.get("max_train_samples"),
        "batch_size": data.get("batch_size"),
        "optimizer": (config.get("optim") or {}).get("name"),
        "lr": (config.get("optim") or {}).get("lr"),
    }


def read_run(path: Path, root: Path) -> dict[str, Any]:
    """One ``metrics.json`` as a flat row; the run's Hydra overrides are added when present."""
    run_dir = path.parent
    row: dict[str, Any] = {"run": str(run_dir.relative_to(root)) if run_dir != root else "."}
    try:
        data = json.loads(path.read_text())
        require(isinstance(data, dict), "not a JSON object")
    except (OSError, ValueError, LacosError) as err:
        return {**row, "status": "unreadable", "error": f"{path.name}: {err}", "scores": {}}
    overrides = _load_yaml(run_dir / ".hydra" / "overrides.yaml")
    row["overrides"] = " ".join(map(str, overrides)) if isinstance(overrides, list) else None
    axes = dict(data.get("axes") or {})
    if not axes:
        axes = _axes_from_config(_load_yaml(run_dir / ".hydra" / "config.yaml"))
    row["status"] = data.get("status") or "unknown"
    row["error"] = data.get("error")
    for column, section, key in BASE_COLUMNS:
        source = data if not section else (axes if section == "axes" else data.get(section) or {})
        row[column] = source.get(key)
    row["shape"] = shape_label(row["shape"])
    row["scores"] = {k: v for k, v in (data.get("scores") or {}).items() if isinstance(v, (int, float))}
    return row


def collect(folder: str | Path) -> list[dict[str, Any]]:
    """Every ``metrics.json`` below ``folder``, as rows sorted by run folder."""
    root = Path(folder).expanduser()
    require(root.is_dir(), f"{folder}: no such folder")
    paths = sorted(root.rglob("metrics.json"), key=lambda p: _natural_key(str(p.parent.relative_to(root))))
    require(bool(paths), f"{folder}: no metrics.json below this folder (is it a multirun folder?)")
    return [read_run(p, root.resolve() if p.is_absolute() else root) for p in paths]


def _natural_key(text: str) -> list[Any]:
    import re

    return [(0, int(t), "") if t.isdigit() else (1, 0, t) for t in re.split(r"(\d+)", text) if t]


def default_metric(rows: Sequence[dict[str, Any]]) -> str | None:
    """The first test score (``.../test...``) found in the completed runs, else the first score."""
    keys = sorted({k for r in rows if r["status"] == COMPLETED for k in r["scores"]})
    tests = [k for k in keys if "test" in k]
    return (tests or keys or [None])[0]


# -- Pareto front ----------------------------------------------------------------------------------
def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the points (cost, score) that no other point beats: cost <= and score >=, one strictly.

    Lower cost and higher score are better; points with a missing value are never on the front.
    """
    valid = [
        (i, c, s) for i, (c, s) in enumerate(points) if c is not None and s is not None and not _nan(c) and not _nan(s)
    ]
    front = []
    for i, c, s in valid:
        dominated = any((c2 <= c and s2 >= s) and (c2 < c or s2 > s) for j, c2, s2 in valid if j != i)
        if not dominated:
            front.append(i)
    return front


def _nan(x: float) -> bool:
    return isinstance(x, float) and math.isnan(x)


# -- tables ----------------------------------------------------------------------------------------
def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else ""
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1e5 else f"{value:.3e}"
    if isinstance(value, int) and abs(value) >= 100_000:
        return f"{value:,}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def _markdown(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_fmt(r.get(c)) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def _write_csv(path: Path, rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> None:
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(columns), extrasaction="ignore")
        writer.writeheader()
        for r in rows:
            writer.writerow({c: "" if r.get(c) is None else r.get(c) for c in columns})


def _used(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> list[str]:
    """Columns with a value in at least one row (peak_gpu_gb disappears on CPU-only sweeps)."""
    return [c for c in columns if any(r.get(c) is not None for r in rows)]


def memory_key(rows: Sequence[dict[str, Any]]) -> str:
    """GPU peak when every completed run has one, else process peak RSS."""
    done = [r for r in rows if r["status"] == COMPLETED]
    return "peak_gpu_gb" if done and all(r.get("peak_gpu_gb") is not None for r in done) else "peak_rss_gb"


def build_tables(rows: list[dict[str, Any]], metric: str | None) -> tuple[list[dict], list[dict], list[str]]:
    """Split rows into completed / not completed, flatten scores, flag the Pareto fronts."""
    done = [r for r in rows if r["status"] == COMPLETED]
    other = [r for r in rows if r["status"] != COMPLETED]
    score_keys = sorted({k for r in done for k in r["scores"]})
    for r in rows:
        for k in score_keys:
            r[k] = r["scores"].get(k)
    if metric:
        mem = memory_key(rows)
        for flag, cost in (("pareto_params", "trainable_params"), ("pareto_memory", mem)):
            front = set(pareto_front([(r.get(cost), r["scores"].get(metric)) for r in done]))
            for i, r in enumerate(done):
                r[flag] = i in front
    return done, other, score_keys


# -- plots -----------------------------------------------------------------------------------------
def _backbone_label(r: dict[str, Any]) -> str:
    return f"{r.get('backbone')} ({r['shape']})" if r.get("shape") else str(r.get("backbone"))


def plot(
    rows: Sequence[dict[str, Any]], x_key: str, metric: str, path: Path, *, xlabel: str, log_x: bool, front: bool
) -> Path:
    """Score against ``x_key``: one line per backbone (its best score at each x; every run as a dot when
    other axes vary), the Pareto front circled and joined (if ``front``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pts = [r for r in rows if r.get(x_key) is not None and r["scores"].get(metric) is not None]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in pts:
        groups.setdefault(_backbone_label(r), []).append(r)
    for label, members in sorted(groups.items()):
        best: dict[float, float] = {}  # the line: best score at each x (other axes may vary between runs)
        for r in members:
            best[r[x_key]] = max(best.get(r[x_key], -math.inf), r["scores"][metric])
        xs = sorted(best)
        (line,) = ax.plot(xs, [best[x] for x in xs], marker="o", label=label)
        if len(members) > len(xs):  # every run as a faint dot
            ax.scatter([r[x_key] for r in members], [r["scores"][metric] for r in members], color=line.get_color(),
                       alpha=0.35, s=18)  # fmt: skip
    if front and pts:
        idx = pareto_front([(r[x_key], r["scores"][metric]) for r in pts])
        best = sorted((pts[i] for i in idx), key=lambda r: r[x_key])
        ax.plot(
            [r[x_key] for r in best],
            [r["scores"][metric] for r in best],
            linestyle="--",
            color="black",
            marker="o",
            markersize=12,
            markerfacecolor="none",
            label="Pareto front",
        )
    if log_x and pts and all(r[x_key] > 0 for r in pts):
        ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(metric)
    ax.grid(True, alpha=0.3)
    if pts:
        ax.legend(fontsize=8)
    else:
        ax.text(0.5, 0.5, f"no completed run has {x_key} and {metric}", ha="center", transform=ax.transAxes)
    ax.set_title(f"{metric} vs {xlabel}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# -- the report ------------------------------------------------------------------------------------
def _domain_section(done: list[dict[str, Any]]) -> list[str]:
    """The domain-adaptation table, when the runs are domain runs (``data.train.recipe=domain``)."""
    from lacos_lightning.domain_table import domain_markdown

    table = domain_markdown(done)
    return ["## Domain adaptation (test set)", "", table, ""] if table else []


def write_report(folder: str | Path, out: str | Path | None = None, metric: str | None = None) -> dict[str, Any]:
    """Build the whole report; return the paths written and the row counts."""
    rows = collect(folder)
    metric = metric or default_metric(rows)
    available = sorted({k for r in rows for k in r["scores"]})
    if metric is not None and available:
        require(metric in available, f"--metric {metric!r} is in no run; available: {', '.join(available)}")
    done, other, score_keys = build_tables(rows, metric if available else None)
    out_dir = Path(out) if out else Path(folder) / "report"
    out_dir.mkdir(parents=True, exist_ok=True)
    vary = [c for c, _, _ in BASE_COLUMNS]
    flags = ["pareto_params", "pareto_memory"] if available else []
    columns = _used(done, ["run", *vary, *score_keys, *flags]) or ["run"]
    other_columns = _used(other, ["run", "status", "error", "overrides", "backbone", "shape", "bits", "lora_r"])
    _write_csv(out_dir / "runs.csv", done, _used(done, ["run", *vary, *score_keys, *flags, "overrides"]) or ["run"])
    _write_csv(out_dir / "failed.csv", other, other_columns or ["run", "status", "error"])
    plots: list[Path] = []
    if metric:
        mem = memory_key(rows)
        plots = [
            plot(done, "trainable_params", metric, out_dir / "score_vs_trainable_params.png",
                 xlabel="trainable parameters", log_x=True, front=True),
            plot(done, mem, metric, out_dir / "score_vs_peak_memory.png",
                 xlabel=f"{mem} (GB)", log_x=False, front=True),
            plot(done, "data_volume", metric, out_dir / "score_vs_data_volume.png",
                 xlabel="training examples (data volume)", log_x=True, front=False),
        ]  # fmt: skip
    parts = [
        f"# Sweep report: {folder}",
        "",
        f"{len(rows)} runs: {len(done)} completed, {len(other)} failed, invalid or interrupted.",
        f"Metric for the plots and Pareto flags: `{metric}` (higher is better)." if metric else "No scores recorded.",
        "",
        "## Completed runs",
        "",
        _markdown(done, columns) if done else "(none)",
        "",
        *_domain_section(done),
        "## Failed, invalid or interrupted runs",
        "",
        _markdown(other, other_columns) if other else "(none)",
        "",
    ]
    if plots:
        parts += ["## Plots", ""] + [f"![{p.stem}]({p.name})" for p in plots] + [""]
    parts += [
        "Peak memory is the run's own peak RSS (or GPU peak) as recorded in metrics.json; the Pareto flags mark runs "
        "that no other completed run beats with a higher-or-equal score at fewer-or-equal trainable parameters "
        "(pareto_params) or less-or-equal peak memory (pareto_memory).",
        "",
    ]
    (out_dir / "report.md").write_text("\n".join(parts))
    return {
        "out": str(out_dir),
        "metric": metric,
        "completed": len(done),
        "not_completed": len(other),
        "files": [str(out_dir / n) for n in ("report.md", "runs.csv", "failed.csv")] + [str(p) for p in plots],
    }


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="lacos-report", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("folder", help="a multirun folder (every metrics.json below it is read)")
    parser.add_argument("--out", default=None, help="output folder (default FOLDER/report)")
    parser.add_argument(
        "--metric", default=None, help="score key for plots and Pareto flags (default: first test score)"
    )
    return parser.parse_args(argv)


@exit_on_user_error
def main(argv: Sequence[str] | None = None) -> None:
    """Console entry point."""
    args = parse_args(argv)
    result = write_report(args.folder, args.out, args.metric)
    print((Path(result["out"]) / "report.md").read_text())
    print(f"wrote {', '.join(result['files'])}", file=sys.stderr)


if __name__ == "__main__":
    main()
