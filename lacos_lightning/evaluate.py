"""``lacos-evaluate``: score a model (hub id, local folder, or a run's saved adapter) on STS and Tatoeba.

Examples:
    lacos-evaluate --model sentence-transformers/all-MiniLM-L6-v2 --eval sts:en:test sts:de:test tatoeba:deu
    lacos-evaluate --adapter outputs/2026-11-23/12-00-00/adapter --eval sts:en:test
    lacos-evaluate --entry adapter_store/mqp-houlsby-20261124-091500 --eval domain:mqp:test
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from lacos_lightning.errors import exit_on_user_error


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="lacos-evaluate", description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--model", default="sentence-transformers/all-MiniLM-L6-v2", help="hub id or local folder")
    source.add_argument("--adapter", help="a run's adapter folder (RUN_DIR/adapter)")
    source.add_argument("--entry", help="an adapter-store entry (loaded onto the base it was trained on)")
    parser.add_argument("--eval", nargs="+", default=["sts:en:test"], help="sts:LANG:SPLIT or tatoeba:LANG ...")
    parser.add_argument("--bits", type=int, default=None, help="load the backbone at 32/16/8/4 bits")
    parser.add_argument("--pooling", default="mean", help="pooling for --model (mean, cls, last_token, weighted_mean)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--data-dir", default=None, help="local data folder (default: $LACOS_DATA_DIR, else the hub)")
    parser.add_argument("--output", help="write the scores to this JSON file")
    parser.add_argument("--no-progress", action="store_true")
    return parser.parse_args(argv)


@exit_on_user_error
def main(argv: list[str] | None = None) -> dict[str, float]:
    args = parse_args(argv)
    from lacos_lightning.data.recipes import data_dir
    from lacos_lightning.eval import build_evaluators
    from lacos_lightning.export import load_encoder
    from lacos_lightning.models import Encoder, EncoderConfig, LoraSettings

    if not args.adapter and not args.entry:  # validated before any data or model is read
        cfg = EncoderConfig(
            name=args.model, bits=args.bits or 32, pooling=args.pooling, peft=LoraSettings(method="none")
        )
    evaluators = build_evaluators(args.eval, data_dir(args.data_dir), args.batch_size)
    if args.entry:
        from lacos_lightning.store import encoder_for_entry, read_entry

        read_entry(args.entry)  # a one-line error before any model loads
        encoder = encoder_for_entry(args.entry, bits=args.bits or 32)
    else:
        encoder = load_encoder(args.adapter, bits=args.bits) if args.adapter else Encoder(cfg).eval()
    scores: dict[str, float] = {}
    for ev in evaluators:
        scores.update(ev.run(encoder, progress=not args.no_progress))
    for key, value in scores.items():
        print(f"{key}\t{value:.2f}")
    if args.output:
        Path(args.output).write_text(json.dumps(scores, indent=2))
    return scores


if __name__ == "__main__":
    main(sys.argv[1:])
