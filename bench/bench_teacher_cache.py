"""What the teacher embedding cache saves: the first run computes the teacher's embeddings, later runs read them.

The teacher is all-MiniLM-L6-v2 (fp32, or ``--bits 8``), the texts are the English sentences of the
``data=distill_en`` sources (STS-B-en train, SNLI, Multi30k-en, SICK; ``--limit`` keeps the first N
after deduplication, in a fixed order). For each of ``--repeats`` rounds:

- ``cold``: ``TeacherCache.embeddings`` with an empty cache folder: the teacher embeds every text and the
  file is written (what the first epoch of the first run pays, and what every epoch would pay without a cache);
- ``warm``: the same call again: the file is found, its teacher fingerprint checked, the tensor loaded.

The median of each is reported with ``saved_s`` (cold - warm, saved by every later epoch and run) and
``speedup`` (cold / warm); the warm embeddings must equal the cold ones exactly.

    python bench/bench_teacher_cache.py --threads 1            # 20,000 sentences, 2 rounds
    python bench/bench_teacher_cache.py --quick --threads 1    # 1,000 sentences, 1 round
"""

from __future__ import annotations

import argparse
import statistics
import tempfile

import common


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--limit", type=int, default=20000, help="sentences (default 20000)")
    parser.add_argument("--repeats", type=int, default=2, help="cold/warm rounds; the median is reported")
    parser.add_argument("--bits", type=int, default=32, help="teacher bit width (32, 16, 8, 4)")
    parser.add_argument("--batch-size", type=int, default=128, help="teacher batch size (default 128)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's, one per core)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 1000 sentences, 1 round")
    parser.add_argument("--name", default=None, help="results file name under bench/results/")
    args = parser.parse_args()
    if args.quick:
        args.limit, args.repeats = min(args.limit, 1000), 1
    if args.name is None:
        args.name = (
            "teacher_cache"
            + (f"-bits{args.bits}" if args.bits != 32 else "")
            + (f"-threads{args.threads}" if args.threads else "")
            + ("-quick" if args.quick else "")
        )
    return args


def sentences(root, limit: int) -> list[str]:
    """The English distillation sentences of conf/data/distill_en.yaml, deduplicated, first ``limit``."""
    from omegaconf import OmegaConf

    from lacos_lightning.data.parallel import DistillDataConfig, read_source

    spec = OmegaConf.to_container(OmegaConf.load(common.REPO_ROOT / "conf" / "data" / "distill_en.yaml"))
    spec["seed"] = 0
    cfg = DistillDataConfig(**spec)
    texts: dict[str, None] = {}
    for source in cfg.sources:
        for record in read_source(source, root)[0]:
            texts.setdefault(record["source"], None)
    return list(texts)[:limit]


def main() -> None:
    args = parse_args()
    root = common.data_dir()
    common.minilm_path()
    common.quiet_libraries()
    common.set_threads(args.threads)

    import torch

    from lacos_lightning.models import Encoder, EncoderConfig
    from lacos_lightning.tasks.teacher_cache import TeacherCache

    texts = sentences(root, args.limit)
    teacher = Encoder(EncoderConfig(name=common.MINILM, bits=args.bits, peft={"method": "none"})).eval()
    cold, warm = [], []
    for _ in range(args.repeats):
        with tempfile.TemporaryDirectory() as folder:
            cache = TeacherCache(folder)
            with common.Timer() as t:
                first = cache.embeddings(teacher, texts, args.batch_size)
            assert cache.last["hit"] is False
            cold.append(t.seconds)
            with common.Timer() as t:
                again = cache.embeddings(teacher, texts, args.batch_size)
            assert cache.last["hit"] is True
            warm.append(t.seconds)
            assert torch.equal(first, again), "the cached embeddings differ from the computed ones"
    cold_s, warm_s = statistics.median(cold), statistics.median(warm)
    rows = [
        {
            "run": "cold (teacher computes, file written)",
            "sentences": len(texts),
            "seconds": round(cold_s, 3),
            "sentences_per_s": round(len(texts) / cold_s, 1),
        },
        {
            "run": "warm (file read)",
            "sentences": len(texts),
            "seconds": round(warm_s, 3),
            "sentences_per_s": round(len(texts) / warm_s, 1),
        },
    ]
    summary = {
        "saved_s": round(cold_s - warm_s, 3),
        "speedup": round(cold_s / warm_s, 1),
        "teacher_bits": args.bits,
        "cold_rounds_s": [round(x, 3) for x in cold],
        "warm_rounds_s": [round(x, 3) for x in warm],
    }
    common.write_results(
        args.name,
        rows,
        ["run", "sentences", "seconds", "sentences_per_s"],
        args=args,
        summary=summary,
        notes=["cached embeddings equal the computed ones exactly (torch.equal)"],
        title="Teacher embedding cache: first run vs cached run",
    )


if __name__ == "__main__":
    main()
