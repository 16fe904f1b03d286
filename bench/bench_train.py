"""Training throughput (pairs/s): lacos_lightning (Lightning + ContrastiveTask) vs sentence-transformers' trainer.

Both sides, in one process: all-MiniLM-L6-v2 with a peft LoRA adapter (r=8, alpha=16, dropout 0.05, on
query and value), in-batch-negatives loss (MultipleNegativesRankingLoss, scale 20), batch 32,
max_seq_length 64, AdamW (lr 2e-4, weight decay 0.01, linear schedule, 10% warmup), gradient clipping
1.0, on the same SNLI entailment pairs (the first steps*batch pairs of snli validation+test) in the SAME
order (our seeded epoch permutation; sentence-transformers gets the pairs pre-ordered and a sequential
batch sampler), so every step of both sides sees the same 32 pairs.

Only training steps are timed, model loading and trainer set-up excluded: a callback on each side
stamps step begin/end; the first ``--warmup`` steps are dropped on both sides. ``pairs/s`` is the wall
time from the end of the last warmup step to the end of the last step (data loading, tokenization,
optimizer and trainer overhead included); ``step pairs/s`` counts only the time inside the steps.
With ``--repeats`` > 1 the sides alternate (ours, st, st, ours, ...) and the median is reported.

    python bench/bench_train.py                 # fp32, 30 steps, 2 rounds
    python bench/bench_train.py --bf16          # bf16 autocast on both sides
    python bench/bench_train.py --bits 8        # our backbone in LLM.int8 (sentence-transformers stays fp32)
    python bench/bench_train.py --quick         # 6 steps, 1 round
"""

from __future__ import annotations

import argparse
import gc
import statistics
import tempfile
from typing import Any

import common

LORA = {"r": 8, "alpha": 16.0, "dropout": 0.05, "target_modules": ["query", "value"]}
LR, WEIGHT_DECAY, WARMUP_RATIO, SCALE, CLIP = 2e-4, 0.01, 0.1, 20.0, 1.0
SEED = 42


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=30, help="optimizer steps per side (default 30)")
    parser.add_argument("--warmup", type=int, default=3, help="first steps not timed, on both sides (default 3)")
    parser.add_argument("--batch-size", type=int, default=32, help="pairs per step (default 32)")
    parser.add_argument("--max-seq-length", type=int, default=64, help="truncation length (default 64)")
    parser.add_argument("--repeats", type=int, default=2, help="alternating rounds per side; median reported")
    parser.add_argument(
        "--bf16", action="store_true", help="bf16 autocast on both sides (Lightning bf16-mixed, HF bf16)"
    )
    parser.add_argument(
        "--bits",
        type=int,
        default=32,
        choices=(32, 16, 8, 4),
        help="bit width of OUR backbone (sentence-transformers stays fp32); default 32",
    )
    parser.add_argument(
        "--optim",
        default="adamw",
        choices=("adamw", "adamw8bit"),
        help="optimizer on both sides: torch AdamW or bitsandbytes AdamW8bit (default adamw)",
    )
    parser.add_argument("--only", choices=("ours", "st"), default=None, help="run only one side (no ratio)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's, one per core)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 6 steps, 2 warmup, 1 round")
    parser.add_argument("--name", default=None, help="results file name under bench/results/ (default bench_train)")
    args = parser.parse_args()
    if args.quick:
        args.steps, args.warmup, args.repeats = 6, 2, 1
    if args.steps <= args.warmup:
        parser.error(f"--steps ({args.steps}) must exceed --warmup ({args.warmup})")
    if args.name is None:
        suffix = ("-bf16" if args.bf16 else "") + (f"-bits{args.bits}" if args.bits != 32 else "")
        suffix += "-adamw8bit" if args.optim == "adamw8bit" else ""
        suffix += f"-threads{args.threads}" if args.threads else ""
        args.name = "bench_train" + suffix + ("-quick" if args.quick else "")
    return args


# -- our side --------------------------------------------------------------------------------------
def run_ours(args: argparse.Namespace, records: list[dict[str, str]]) -> dict[str, Any]:
    import pytorch_lightning as pl

    from lacos_lightning.data import DataConfig, PairDataModule
    from lacos_lightning.losses import LossConfig
    from lacos_lightning.models import Encoder, EncoderConfig
    from lacos_lightning.tasks import ContrastiveTask, OptimConfig

    clock = common.StepClock()
    losses: list[float] = []

    class Clock(pl.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
            clock.begin()

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
            clock.end()
            loss = outputs["loss"] if isinstance(outputs, dict) else outputs
            losses.append(float(loss))

    pl.seed_everything(SEED, verbose=False)
    with common.Timer() as load:
        encoder = Encoder(
            EncoderConfig(
                name=common.MINILM,
                bits=args.bits,
                dtype="float32",
                pooling="mean",
                max_seq_length=args.max_seq_length,
                peft=dict(LORA, method="lora"),
            )
        )
    task = ContrastiveTask(
        encoder,
        LossConfig(name="mnrl", scale=SCALE),
        OptimConfig(name=args.optim, lr=LR, weight_decay=WEIGHT_DECAY, schedule="linear", warmup_ratio=WARMUP_RATIO),
    )
    datamodule = PairDataModule(records, DataConfig(batch_size=args.batch_size, seed=SEED), encoder.tokenize)
    with tempfile.TemporaryDirectory() as tmp:
        trainer = pl.Trainer(
            accelerator="cpu",
            devices=1,
            max_steps=args.steps,
            max_epochs=1,
            precision="bf16-mixed" if args.bf16 else "32-true",
            gradient_clip_val=CLIP,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            limit_val_batches=0,
            num_sanity_val_steps=0,
            callbacks=[Clock()],
            default_root_dir=tmp,
        )
        trainer.fit(task, datamodule=datamodule)
    out = clock.summary(args.warmup, args.batch_size)
    out.update(
        load_s=round(load.seconds, 2),
        mean_loss=round(statistics.fmean(losses), 4),
        trainable_params=encoder.parameter_counts()["trainable_params"],
    )
    del trainer, task, encoder, datamodule
    gc.collect()
    return out


# -- sentence-transformers side --------------------------------------------------------------------
def run_st(args: argparse.Namespace, ordered: list[dict[str, str]]) -> dict[str, Any]:
    from datasets import Dataset
    from peft import LoraConfig, TaskType
    from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer
    from sentence_transformers.base.sampler import DefaultBatchSampler
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss
    from sentence_transformers.sentence_transformer.training_args import SentenceTransformerTrainingArguments
    from torch.utils.data import SequentialSampler
    from transformers import TrainerCallback, set_seed

    clock = common.StepClock()

    class Clock(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            clock.begin()

        def on_step_end(self, args, state, control, **kwargs):
            clock.end()

    def sequential(dataset, batch_size, drop_last, valid_label_columns=None, generator=None, seed=0):
        """The pairs arrive already in our epoch order: batch them in that order."""
        return DefaultBatchSampler(
            SequentialSampler(dataset),
            batch_size=batch_size,
            drop_last=drop_last,
            valid_label_columns=valid_label_columns,
            generator=generator,
            seed=seed,
        )

    set_seed(SEED)
    with common.Timer() as load:
        model = SentenceTransformer(common.minilm_path(), device="cpu")
        model.max_seq_length = args.max_seq_length
        model.add_adapter(
            LoraConfig(
                task_type=TaskType.FEATURE_EXTRACTION,
                r=LORA["r"],
                lora_alpha=LORA["alpha"],
                lora_dropout=LORA["dropout"],
                target_modules=LORA["target_modules"],
            )
        )
    loss = MultipleNegativesRankingLoss(model, scale=SCALE)
    dataset = Dataset.from_list(ordered)
    with tempfile.TemporaryDirectory() as tmp:
        targs = SentenceTransformerTrainingArguments(
            output_dir=tmp,
            per_device_train_batch_size=args.batch_size,
            max_steps=args.steps,
            learning_rate=LR,
            weight_decay=WEIGHT_DECAY,
            lr_scheduler_type="linear",
            warmup_steps=int(WARMUP_RATIO * args.steps),
            max_grad_norm=CLIP,
            optim="adamw_bnb_8bit" if args.optim == "adamw8bit" else "adamw_torch",
            bf16=args.bf16,
            use_cpu=True,
            seed=SEED,
            data_seed=SEED,
            report_to="none",
            save_strategy="no",
            logging_strategy="no",
            disable_tqdm=True,
            dataloader_drop_last=True,
            dataloader_num_workers=0,
            batch_sampler=sequential,
        )
        trainer = SentenceTransformerTrainer(
            model=model, args=targs, train_dataset=dataset, loss=loss, callbacks=[Clock()]
        )
        result = trainer.train()
    out = clock.summary(args.warmup, args.batch_size)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    out.update(
        load_s=round(load.seconds, 2), mean_loss=round(float(result.training_loss), 4), trainable_params=trainable
    )
    del trainer, model, loss
    gc.collect()
    return out


# -- padding diagnostic ----------------------------------------------------------------------------
def token_counts(args: argparse.Namespace, ordered: list[dict[str, str]]) -> dict[str, float]:
    """Tokens per step as each side pads them: ours pads anchors and positives to one length (one
    forward of 2*batch texts); sentence-transformers pads each column on its own (two forwards)."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(common.minilm_path())
    bs, steps = args.batch_size, args.steps
    ours = st = real = 0
    for s in range(steps):
        batch = ordered[s * bs : (s + 1) * bs]
        la = [
            len(x)
            for x in tok([r["anchor"] for r in batch], truncation=True, max_length=args.max_seq_length)["input_ids"]
        ]
        lp = [
            len(x)
            for x in tok([r["positive"] for r in batch], truncation=True, max_length=args.max_seq_length)["input_ids"]
        ]
        ours += 2 * bs * max(la + lp)
        st += bs * max(la) + bs * max(lp)
        real += sum(la) + sum(lp)
    return {"ours": ours / steps, "st": st / steps, "real": real / steps}


def main() -> None:
    args = parse_args()
    root = common.data_dir()
    common.minilm_path()
    common.quiet_libraries()
    common.set_threads(args.threads)

    from lacos_lightning.data.loader import EpochSampler

    n = args.steps * args.batch_size
    records = common.nli_pairs(root, n)
    # Our loader's epoch-0 order; sentence-transformers gets the pairs in this order (sequential sampler).
    order = list(EpochSampler(len(records), SEED, args.batch_size))
    ordered = [records[i] for i in order]
    tokens = token_counts(args, ordered)
    precision = "bf16 autocast" if args.bf16 else "fp32"
    print(
        f"{n} SNLI entailment pairs, {args.steps} steps x {args.batch_size}, max_seq_length {args.max_seq_length}, "
        f"{precision}, our bits {args.bits}, optimizer {args.optim}, {args.repeats} round(s), warmup {args.warmup}"
    )

    sides = {"ours": lambda: run_ours(args, records), "st": lambda: run_st(args, ordered)}
    if args.only:
        sides = {args.only: sides[args.only]}
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in sides}
    for round_ in range(args.repeats):
        names = list(sides) if round_ % 2 == 0 else list(reversed(sides))
        for name in names:
            res = sides[name]()
            runs[name].append(res)
            print(
                f"round {round_ + 1} {name}: {res['pairs_per_s']} pairs/s (steps only {res['step_pairs_per_s']}), "
                f"median step {res['median_step_s']} s, mean loss {res['mean_loss']}"
            )

    labels = {
        "ours": f"lacos_lightning ContrastiveTask (bits {args.bits})",
        "st": "sentence-transformers SentenceTransformerTrainer (fp32 weights)",
    }
    rows = []
    for name, results in runs.items():
        rows.append(
            {
                "implementation": labels[name],
                "precision": precision,
                "optimizer": args.optim,
                "steps_timed": results[0]["steps_timed"],
                "pairs_per_s": round(common.median(r["pairs_per_s"] for r in results), 2),
                "step_pairs_per_s": round(common.median(r["step_pairs_per_s"] for r in results), 2),
                "median_step_s": round(common.median(r["median_step_s"] for r in results), 3),
                "pairs_per_s_at_median_step": round(
                    args.batch_size / common.median(r["median_step_s"] for r in results), 2
                ),
                "rounds_pairs_per_s": ", ".join(str(r["pairs_per_s"]) for r in results),
                "tokens_per_step": round(tokens[name]),
                "mean_loss": results[-1]["mean_loss"],
                "trainable_params": results[0]["trainable_params"],
                "load_s": results[0]["load_s"],
                "threads": results[0]["threads"],
            }
        )
    summary: dict[str, Any] = {
        "real_tokens_per_step": round(tokens["real"]),
        "padding_share_ours": round(1 - tokens["real"] / tokens["ours"], 3),
        "padding_share_st": round(1 - tokens["real"] / tokens["st"], 3),
        "peak_rss_gb": round(common.peak_rss_gb(), 3),
    }
    notes = [
        "pairs/s: wall time over the timed steps incl. data loading and trainer overhead; step pairs/s: inside the steps only.",
        "tokens_per_step: tokens the forward passes process incl. padding (ours: anchors+positives padded together).",
    ]
    if len(rows) == 2:
        ratio = rows[0]["pairs_per_s"] / rows[1]["pairs_per_s"]
        step_ratio = rows[0]["step_pairs_per_s"] / rows[1]["step_pairs_per_s"]
        median_ratio = rows[1]["median_step_s"] / rows[0]["median_step_s"]
        summary = {
            "ratio_ours_over_st": round(ratio, 3),
            "step_ratio_ours_over_st": round(step_ratio, 3),
            "median_step_ratio_ours_over_st": round(median_ratio, 3),
            **summary,
        }
        notes.insert(
            0,
            f"Ratio ours / sentence-transformers: {ratio:.3f} (pairs/s), {step_ratio:.3f} (inside steps), "
            f"{median_ratio:.3f} (from the median step time, the least sensitive to other processes).",
        )
    common.write_results(
        args.name,
        rows,
        [
            "implementation",
            "precision",
            "optimizer",
            "steps_timed",
            "pairs_per_s",
            "step_pairs_per_s",
            "median_step_s",
            "rounds_pairs_per_s",
            "tokens_per_step",
            "mean_loss",
            "trainable_params",
            "load_s",
            "threads",
        ],
        args=args,
        summary=summary,
        notes=notes,
        title=f"Training throughput: lacos_lightning vs sentence-transformers (MiniLM + LoRA r=8, batch "
        f"{args.batch_size}, max_seq_length {args.max_seq_length}, {precision})",
    )


if __name__ == "__main__":
    main()
