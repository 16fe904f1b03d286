"""Encoding throughput: lacos_lightning ``Encoder.encode`` vs ``SentenceTransformer.encode``.

Same model (all-MiniLM-L6-v2, fp32, mean pooling, normalized), same sentences (STS-B en test, both
columns: 2758), same batch size, same process. The two sides alternate for ``--repeats`` rounds and the
median is reported. The embeddings of the two sides are compared (max abs difference) and both are
scored on STS-B (Spearman x100; the published figure for this model is 82.03).

    python bench/bench_encode.py            # full: 2758 sentences, 3 rounds
    python bench/bench_encode.py --quick    # 512 sentences, 1 round
"""

from __future__ import annotations

import argparse
import time

import common


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-size", type=int, default=64, help="sentences per batch on both sides (default 64)")
    parser.add_argument("--repeats", type=int, default=3, help="alternating rounds per side; the median is reported")
    parser.add_argument("--limit", type=int, default=None, help="use only the first N sentences")
    parser.add_argument("--lang", default="en", help="STS-B language of the test sentences (default en)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's, one per core)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 512 sentences, 1 round")
    parser.add_argument("--name", default=None, help="results file name under bench/results/ (default bench_encode)")
    args = parser.parse_args()
    if args.quick:
        args.repeats = 1
        args.limit = args.limit or 512
    if args.name is None:
        args.name = (
            "bench_encode" + (f"-threads{args.threads}" if args.threads else "") + ("-quick" if args.quick else "")
        )
    return args


def spearman_x100(emb, pairs) -> float:
    """STS-B protocol: Spearman of cos(sentence1, sentence2) against the gold scores, x100."""
    import torch
    from scipy.stats import spearmanr

    n = len(pairs)
    cos = torch.nn.functional.cosine_similarity(emb[:n], emb[n : 2 * n], dim=-1)
    return float(spearmanr(cos.numpy(), [float(p["score"]) for p in pairs]).statistic) * 100


def main() -> None:
    args = parse_args()
    root = common.data_dir()
    path = common.minilm_path()
    common.quiet_libraries()
    common.set_threads(args.threads)

    import torch
    from sentence_transformers import SentenceTransformer

    from lacos_lightning.models import Encoder, EncoderConfig

    pairs = common.stsb_pairs(root, args.lang, "test")
    sentences = [p["anchor"] for p in pairs] + [p["positive"] for p in pairs]
    if args.limit:
        sentences = sentences[: args.limit]
    print(f"{len(sentences)} STS-B {args.lang} test sentences, batch {args.batch_size}, {args.repeats} round(s)")

    ours = Encoder(EncoderConfig(name=common.MINILM, bits=32, peft={"method": "none"}, pooling="mean", normalize=True))
    theirs = SentenceTransformer(path, device="cpu")
    if ours.max_seq_length != theirs.max_seq_length:
        print(
            f"note: max_seq_length differs: ours {ours.max_seq_length}, sentence-transformers {theirs.max_seq_length}"
        )

    sides = {
        "lacos_lightning Encoder.encode": lambda: ours.encode(sentences, batch_size=args.batch_size),
        "SentenceTransformer.encode": lambda: theirs.encode(
            sentences,
            batch_size=args.batch_size,
            normalize_embeddings=True,
            convert_to_tensor=True,
            show_progress_bar=False,
        ),
    }
    # One short untimed call per side so lazy initialisation (kernels, thread pools) is not timed.
    head = sentences[: args.batch_size]
    ours.encode(head, batch_size=args.batch_size)
    theirs.encode(head, batch_size=args.batch_size, show_progress_bar=False)

    seconds: dict[str, list[float]] = {name: [] for name in sides}
    embeddings: dict[str, torch.Tensor] = {}
    for round_ in range(args.repeats):
        order = list(sides) if round_ % 2 == 0 else list(reversed(sides))
        for name in order:
            start = time.perf_counter()
            emb = sides[name]()
            seconds[name].append(time.perf_counter() - start)
            embeddings[name] = emb.detach().float().cpu()
            print(f"round {round_ + 1} {name}: {len(sentences) / seconds[name][-1]:.1f} sentences/s")

    ours_emb, st_emb = embeddings.values()
    max_diff = float((ours_emb - st_emb).abs().max())
    min_cos = float(torch.nn.functional.cosine_similarity(ours_emb, st_emb, dim=-1).min())
    full_set = len(sentences) == 2 * len(pairs)
    rows = []
    for name, secs in seconds.items():
        med = common.median(secs)
        rows.append(
            {
                "implementation": name,
                "sentences": len(sentences),
                "batch_size": args.batch_size,
                "median_s": round(med, 3),
                "sentences_per_s": round(len(sentences) / med, 1),
                "all_rounds_per_s": ", ".join(f"{len(sentences) / s:.1f}" for s in secs),
                "stsb_spearman_x100": round(spearman_x100(embeddings[name], pairs), 2) if full_set else None,
            }
        )
    ratio = rows[0]["sentences_per_s"] / rows[1]["sentences_per_s"]
    summary = {
        "ratio_ours_over_st": round(ratio, 3),
        "max_abs_diff": max_diff,
        "min_cosine_between_sides": round(min_cos, 6),
        "peak_rss_gb": round(common.peak_rss_gb(), 3),
    }
    common.write_results(
        args.name,
        rows,
        [
            "implementation",
            "sentences",
            "batch_size",
            "median_s",
            "sentences_per_s",
            "all_rounds_per_s",
            "stsb_spearman_x100",
        ],
        args=args,
        summary=summary,
        title="Encoding throughput: Encoder.encode vs SentenceTransformer.encode (all-MiniLM-L6-v2, fp32, CPU)",
        notes=[
            f"Ratio (ours / sentence-transformers, median of {args.repeats} alternating round(s)): {ratio:.3f}.",
            f"Max abs difference of the normalized embeddings: {max_diff:.2e} (min cosine {min_cos:.6f}).",
            "STS-B Spearman only for the full en test set (reference 82.03).",
        ],
    )
    if max_diff > 1e-4:
        print(f"WARNING: embeddings disagree (max abs diff {max_diff:.2e} > 1e-4)")


if __name__ == "__main__":
    main()
