"""Measured peak training memory against ``lacos-estimate``, on random-weight BLOOM shapes, CPU.

Each configuration runs in a FRESH subprocess (peak RSS is per process): the lacos_lightning Encoder
(LoRA r=8 on query_key_value, last-token pooling, the project's default ``encoder.dtype=float32``, so
bits 16 means bf16 and the 8/4-bit compute runs in fp32) embeds ``--batch`` texts of exactly
``--seq-len`` tokens, in-batch-negatives loss (first half anchors, second half positives), backward,
bitsandbytes 8-bit AdamW step; ``--steps`` (2) steps.

Measured per configuration (GiB = 2**30 bytes; RSS = resident memory incl. touched file-backed pages):

- ``baseline``: RSS after importing torch/transformers/peft/bitsandbytes/lacos_lightning, before the model;
- ``load_peak``: the high-water mark while building the Encoder (tokenizer, weights, quantization, LoRA);
- ``train_peak``: the high-water mark during the training steps (it is reset through
  ``/proc/self/clear_refs`` after loading, so the two phases are told apart);
- ``peak``: ``max(load_peak, train_peak)``, i.e. the process's ``ru_maxrss`` had it not been reset;
- tensor bytes of the weights (quantization constants included), of the optimizer states, and the bytes
  of the tensors autograd saved for backward (first step; bitsandbytes' 8-bit CPU path keeps its input in
  ``ctx`` where the hook does not see it).

The estimate is ``lacos_lightning.estimate.estimate_memory`` with ``backend="cpu"``; the table reports its
relative error against ``peak - baseline`` (target: within 15%).

    python bench/bench_estimate.py            # the default grid (about 5-10 minutes on 1 thread)
    python bench/bench_estimate.py --quick    # two small configurations
    python bench/bench_estimate.py --reuse    # recompute estimates for the measurements in results/estimate.json
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time
from pathlib import Path
from typing import Any

import common

GIB = 1024**3
# (label, random_init); vocab_size absent = the tokenizer's (MiniLM, 30522)
SHAPES: dict[str, dict[str, Any]] = {
    "h256-l4-v30k": {"model_type": "bloom", "hidden_size": 256, "n_layer": 4, "n_head": 4},
    "h512-l6-v251k": {"model_type": "bloom", "hidden_size": 512, "n_layer": 6, "n_head": 8, "vocab_size": 250880},
    "h1024-l4-v30k": {"model_type": "bloom", "hidden_size": 1024, "n_layer": 4, "n_head": 16},
    "h1024-l6-v251k": {"model_type": "bloom", "hidden_size": 1024, "n_layer": 6, "n_head": 16, "vocab_size": 250880},
}
GRID = [(shape, bits, False) for shape in SHAPES for bits in (32, 16, 8, 4)] + [
    ("h1024-l4-v30k", 32, True),
    ("h1024-l4-v30k", 8, True),
]
QUICK = [("h256-l4-v30k", 32, False), ("h256-l4-v30k", 4, False)]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=16, help="texts per step (default 16)")
    parser.add_argument("--seq-len", type=int, default=64, help="tokens per text (default 64)")
    parser.add_argument("--steps", type=int, default=2, help="training steps per configuration (default 2)")
    parser.add_argument("--lora-r", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1, help="torch threads per worker (default 1)")
    parser.add_argument("--timeout", type=int, default=600, help="seconds per subprocess")
    parser.add_argument("--quick", action="store_true", help="two small configurations only")
    parser.add_argument(
        "--reuse", action="store_true", help="no new measurements: re-estimate results/estimate.json (-quick.json)"
    )
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    return parser.parse_args()


# -- worker (own process) --------------------------------------------------------------------------
def tensor_bytes(module: Any) -> int:
    """Bytes of every parameter and buffer, bitsandbytes quantization constants included, deduplicated."""
    seen: set[int] = set()
    total = 0

    def add(t: Any) -> None:
        nonlocal total
        if t is None or not hasattr(t, "untyped_storage"):
            return
        ptr = t.untyped_storage().data_ptr()
        if ptr not in seen:
            seen.add(ptr)
            total += t.untyped_storage().nbytes()

    for p in list(module.parameters()) + list(module.buffers()):
        add(p)
        add(getattr(p, "SCB", None))
        qs = getattr(p, "quant_state", None)
        if qs is not None:
            add(getattr(qs, "absmax", None))
            add(getattr(qs, "code", None))
            if getattr(qs, "state2", None) is not None:
                add(qs.state2.absmax)
                add(qs.state2.code)
    for m in module.modules():
        state = getattr(m, "state", None)
        if state is not None and hasattr(state, "SCB"):
            add(state.SCB)
            add(getattr(state, "CB", None))
    return total


def worker(job: dict[str, Any]) -> dict[str, Any]:
    common.quiet_libraries()
    import torch

    torch.set_num_threads(job["threads"])
    import bitsandbytes  # imported before the baseline so that only the model counts
    import peft  # noqa: F401

    from lacos_lightning.models import Encoder, EncoderConfig
    from lacos_lightning.models.backbone import load_backbone

    cfg = EncoderConfig(
        name=common.MINILM,
        random_init=job["shape"],
        bits=job["bits"],
        dtype="float32",
        pooling="last_token",
        max_seq_length=job["seq_len"],
        gradient_checkpointing=job["gc"],
        peft={"method": "lora", "r": job["lora_r"], "alpha": 2.0 * job["lora_r"], "dropout": 0.05},
    )
    if job.get("prepare"):
        load_backbone(cfg)  # writes the random backbone to the cache once, outside any measurement
        return {}
    gc.collect()
    baseline = common.proc_status_gb("VmRSS")
    resettable = common.reset_peak_rss()
    start = time.perf_counter()
    encoder = Encoder(cfg)
    load_s = time.perf_counter() - start
    load_peak = common.proc_status_gb("VmHWM")
    after_load = common.proc_status_gb("VmRSS")
    file_rss_after_load = common.proc_status_gb("RssFile")
    weight_bytes = tensor_bytes(encoder)
    features = encoder.tokenize(job["texts"])
    shape = tuple(features["input_ids"].shape)
    # what OptimConfig(name="adamw8bit").build makes, and the in-batch-negatives loss (scale 20)
    trainable = [p for p in encoder.parameters() if p.requires_grad]
    optimizer = bitsandbytes.optim.AdamW8bit(trainable, lr=2e-4, weight_decay=0.01)
    labels = torch.arange(len(job["texts"]) // 2)
    half = len(job["texts"]) // 2
    encoder.train()
    param_ptrs = {p.untyped_storage().data_ptr() for p in encoder.parameters()}
    saved: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        ptr = t.untyped_storage().data_ptr()
        if ptr not in param_ptrs:
            saved[ptr] = t.untyped_storage().nbytes()
        return t

    gc.collect()
    common.reset_peak_rss()
    times = []
    for step in range(job["steps"]):
        tic = time.perf_counter()
        if step == 0:
            with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
                emb = encoder(features)
        else:
            emb = encoder(features)
        loss = torch.nn.functional.cross_entropy(20.0 * emb[:half] @ emb[half:].T, labels)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - tic)
    train_peak = common.proc_status_gb("VmHWM")
    state_bytes = sum(
        v.untyped_storage().nbytes() for s in optimizer.state.values() for v in s.values() if torch.is_tensor(v)
    )
    counts = encoder.parameter_counts()
    return {
        "input_shape": "x".join(map(str, shape)),
        "total_params": counts["total_params"],
        "trainable_params": counts["trainable_params"],
        "weights_gib": weight_bytes / GIB,
        "optimizer_gib": state_bytes / GIB,
        "saved_activations_gib": sum(saved.values()) / GIB,
        "baseline_gib": baseline,
        "load_peak_gib": load_peak,
        "after_load_gib": after_load,
        "train_peak_gib": train_peak,
        "after_steps_gib": common.proc_status_gb("VmRSS"),
        "file_rss_after_load_gib": file_rss_after_load,
        "file_rss_after_steps_gib": common.proc_status_gb("RssFile"),
        "hwm_reset": resettable,
        "load_s": round(load_s, 2),
        "s_per_step": round(sum(times) / len(times), 3),
        "threads": torch.get_num_threads(),
    }


# -- parent ----------------------------------------------------------------------------------------
def run_job(job: dict[str, Any], timeout: int) -> dict[str, Any]:
    threads = str(job["threads"])
    row = common.run_worker(__file__, job, timeout, env={"OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads})
    row.pop("process_s", None)
    return row


def compare(row: dict[str, Any], batch: int, seq_len: int, lora_r: int) -> dict[str, Any]:
    """Add the estimate (CPU backend) and its relative error to a measured row."""
    from lacos_lightning.estimate import Setup, estimate_memory, shape_from_dict

    shape = shape_from_dict(row["shape"], default_vocab=30522)
    setup = Setup(
        bits=row["bits"],
        lora_r=lora_r,
        optimizer="adamw8bit",
        batch_texts=batch,
        seq_len=seq_len,
        gradient_checkpointing=row["gc"],
        lora_dropout=0.05,
        checkpoint_bytes_per_param=4,  # random backbones are saved in fp32
        vocab_in_use=30522,  # the MiniLM tokenizer supplies the token ids
    )
    est = estimate_memory(shape, setup, backend="cpu")
    out = dict(row)
    out["est_weights_gib"] = est.weights / GIB
    out["est_activations_gib"] = est.activations / GIB
    out["est_train_gib"] = est.train_peak / GIB
    out["est_load_gib"] = est.load_peak / GIB
    out["est_peak_gib"] = est.peak / GIB
    if "error" not in row and "train_peak_gib" in row:
        measured = max(row["load_peak_gib"], row["train_peak_gib"]) - row["baseline_gib"]
        out["measured_gib"] = measured
        out["measured_train_gib"] = row["train_peak_gib"] - row["baseline_gib"]
        out["measured_load_gib"] = row["load_peak_gib"] - row["baseline_gib"]
        out["rel_error"] = (est.peak / GIB - measured) / measured
        out["weights_rel_error"] = (est.weights / GIB - row["weights_gib"]) / row["weights_gib"]
    return out


COLUMNS = [
    "label",
    "bits",
    "gc",
    "total_params",
    "weights_gib",
    "est_weights_gib",
    "saved_activations_gib",
    "est_activations_gib",
    "measured_load_gib",
    "est_load_gib",
    "measured_train_gib",
    "est_train_gib",
    "measured_gib",
    "est_peak_gib",
    "rel_error",
    "s_per_step",
    "error",
]


def results_path(args: argparse.Namespace) -> Path:
    """``results/estimate.json``, or ``estimate-quick.json`` for ``--quick`` (never overwrites the full run)."""
    return common.RESULTS_DIR / ("estimate-quick.json" if args.quick else "estimate.json")


def report(rows: list[dict[str, Any]], args: argparse.Namespace, measured_env: dict[str, Any] | None) -> None:
    rows = [compare(r, args.batch, args.seq_len, args.lora_r) for r in rows]
    errors = [abs(r["rel_error"]) for r in rows if "rel_error" in r]
    summary = {
        "configurations": len(rows),
        "mean_abs_rel_error": sum(errors) / len(errors) if errors else None,
        "max_abs_rel_error": max(errors) if errors else None,
        "within_15pct": f"{sum(e <= 0.15 for e in errors)}/{len(errors)}",
    }
    notes = [
        "measured_*: RSS minus the baseline after imports, GiB; load = building the Encoder, train = the steps (peak mark reset in between), measured = the larger.",
        "weights_gib / optimizer_gib / saved_activations_gib are tensor bytes (no allocator or page overhead); "
        "saved activations miss what bitsandbytes' 8-bit CPU matmul keeps in ctx.A.",
        "Estimate: lacos_lightning.estimate, backend cpu (terms in its module docstring and docs/sweeps.md). "
        "Parameter bytes are exact (no fitting). The three CPU allocator/runtime constants were fitted on the four "
        "32-bit rows only; the 8/4-bit quantization term (a freed fp16 copy of the linear weights kept by the "
        "allocator) was added after seeing the 8/4-bit residuals. est_activations counts bitsandbytes' saved int8 "
        "inputs and, with gradient checkpointing, one recomputed layer, which the saved-tensor hook does not see.",
    ]
    if measured_env:
        notes.append(f"Measurements taken {measured_env.get('time')} (load average {measured_env.get('load_avg_1m')}).")
    common.write_results(
        results_path(args).stem,
        rows,
        COLUMNS,
        args={k: v for k, v in vars(args).items() if k != "worker"},
        summary=summary,
        notes=notes,
        title=f"Peak training memory, measured vs estimated: Encoder + LoRA r={args.lora_r} + 8-bit AdamW, "
        f"batch {args.batch} x {args.seq_len} tokens, {args.steps} steps, CPU",
    )
    if measured_env:  # keep when the measurements were taken, not only when they were re-estimated
        payload = json.loads(results_path(args).read_text())
        payload["measured_environment"] = measured_env
        results_path(args).write_text(json.dumps(payload, indent=2, default=str) + "\n")


def main() -> None:
    args = parse_args()
    if args.worker:
        common.print_result(worker(common.load_job(args.worker)))
        return
    if args.reuse:
        payload = json.loads(results_path(args).read_text())
        keep = ("label", "shape", "bits", "gc")
        measured_keys = [
            "input_shape", "total_params", "trainable_params", "weights_gib", "optimizer_gib",
            "saved_activations_gib", "baseline_gib", "load_peak_gib", "after_load_gib", "train_peak_gib",
            "after_steps_gib", "file_rss_after_load_gib", "file_rss_after_steps_gib", "hwm_reset", "load_s", "s_per_step", "threads", "error",
        ]  # fmt: skip
        rows = [{k: r[k] for k in (*keep, *measured_keys) if k in r} for r in payload["rows"]]
        for key in ("batch", "seq_len", "steps", "lora_r"):
            setattr(args, key, payload["args"].get(key, getattr(args, key)))
        report(rows, args, payload.get("measured_environment") or payload.get("environment"))
        return
    texts = common.long_texts(common.data_dir(), args.batch)
    grid = QUICK if args.quick else GRID
    base = {
        "texts": texts,
        "seq_len": args.seq_len,
        "steps": args.steps,
        "lora_r": args.lora_r,
        "threads": args.threads,
    }
    for label in dict.fromkeys(shape for shape, _, _ in grid):
        prep = run_job({**base, "shape": SHAPES[label], "bits": 32, "gc": False, "prepare": True}, args.timeout)
        if "error" in prep:
            sys.exit(f"error: could not create the random backbone {label}: {prep['error']}")
    rows = []
    for label, bits, gcp in grid:
        result = run_job({**base, "shape": SHAPES[label], "bits": bits, "gc": gcp}, args.timeout)
        rows.append({"label": label, "shape": SHAPES[label], "bits": bits, "gc": gcp, **result})
        print(f"{label} bits={bits} gc={gcp}: {result}", flush=True)
    env = common.environment()
    path = results_path(args)
    path.parent.mkdir(parents=True, exist_ok=True)  # raw measurements first: --reuse can re-estimate them
    path.write_text(
        json.dumps(
            {
                "benchmark": "estimate",
                "args": {k: v for k, v in vars(args).items() if k != "worker"},
                "measured_environment": env,
                "rows": rows,
            },
            indent=2,
            default=str,
        )
        + "\n"
    )
    try:
        report(rows, args, env)
    except ImportError as err:
        print(f"measurements saved to {path}; estimator not importable ({err}): run --reuse later")


if __name__ == "__main__":
    main()
