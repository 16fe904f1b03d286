"""Built-in recipes: each maps a source (hub name or a file under the data folder) to uniform records.

A record is a dict with ``anchor`` and ``positive`` texts and optionally ``negative`` (a hard
negative) or ``score`` (a graded similarity). Local files follow the layout of ``shared/data``:
``stsb/stsb-{lang}-{split}.csv``, ``nli/snli-{split}.tsv``, ``tatoeba/tatoeba.{lang}-eng.{lang|eng}``.
"""

from __future__ import annotations

import os
from collections import defaultdict
from pathlib import Path
from typing import Any

from lacos_lightning.data.config import SourceConfig
from lacos_lightning.data.readers import check_records, load_hub, read_lines, read_table, select_columns
from lacos_lightning.errors import DataError

STSB_HUB = {"en": ("sentence-transformers/stsb", None)}
STSB_MULTI_HUB = "PhilipMay/stsb_multi_mt"
NLI_HUB = ("sentence-transformers/all-nli", "triplet")
TATOEBA_HUB = "mteb/tatoeba-bitext-mining"


def data_dir(configured: str | None = None) -> Path | None:
    """The local data folder: ``paths.data_dir`` if set, else ``$LACOS_DATA_DIR``, else none (hub)."""
    value = configured or os.environ.get("LACOS_DATA_DIR")
    if not value:
        return None
    folder = Path(value).expanduser()
    if not folder.is_dir():
        raise DataError(f"data folder not found: {folder} (from paths.data_dir or LACOS_DATA_DIR)")
    return folder


def stsb(lang: str, split: str, root: Path | None) -> list[dict[str, Any]]:
    """STS-B scored pairs (scores 0..5) in ``lang``; ``split`` is train, dev or test."""
    if root is not None:
        path = root / "stsb" / f"stsb-{lang}-{split}.csv"
        frame = read_table(path, "csv", header=False)
        records = select_columns(frame, {"anchor": 0, "positive": 1, "score": 2}, str(path))
        where = str(path)
    else:
        hub_split = {"dev": "validation"}.get(split, split)
        if lang in STSB_HUB:
            name, subset = STSB_HUB[lang]
            frame = load_hub(name, hub_split, subset)
            frame["score"] = frame["score"] * 5.0
            cols = {"anchor": "sentence1", "positive": "sentence2", "score": "score"}
        else:
            name, subset = STSB_MULTI_HUB, lang
            frame = load_hub(name, hub_split, subset)
            cols = {"anchor": "sentence1", "positive": "sentence2", "score": "similarity_score"}
        records = select_columns(frame, cols, f"{name}:{split}")
        where = f"{name} ({lang}, {split})"
    check_records(records, where, (0.0, 5.0))
    return records


def nli(split: str, root: Path | None, hard_negatives: bool = True) -> list[dict[str, Any]]:
    """SNLI entailment pairs (premise, hypothesis); with ``hard_negatives`` a contradiction of the same
    premise is added and premises without one are dropped."""
    if root is None:
        name, subset = NLI_HUB
        frame = load_hub(name, split, subset)
        cols = {"anchor": "anchor", "positive": "positive"} | ({"negative": "negative"} if hard_negatives else {})
        records = select_columns(frame, cols, name)
        check_records(records, name)
        return records
    records = []
    for part in split.split("+"):
        path = root / "nli" / f"snli-{part}.tsv"
        frame = read_table(path, "tsv", header=True)
        rows = select_columns(frame, {"premise": "premise", "hypothesis": "hypothesis", "label": "label"}, str(path))
        entail: dict[str, list[str]] = defaultdict(list)
        contra: dict[str, list[str]] = defaultdict(list)
        for row in rows:
            target = {"0": entail, "2": contra}.get(str(row["label"]).strip())
            if target is not None and row["hypothesis"].strip():
                target[row["premise"]].append(row["hypothesis"])
        for premise, positives in entail.items():
            for i, positive in enumerate(positives):
                record = {"anchor": premise, "positive": positive}
                if hard_negatives:
                    if not contra[premise]:
                        continue
                    record["negative"] = contra[premise][i % len(contra[premise])]
                records.append(record)
    check_records(records, f"nli ({split})")
    return records


def tatoeba(lang: str, root: Path | None) -> tuple[list[str], list[str]]:
    """Tatoeba test bitext: (sentences in ``lang``, their English translations), line-aligned."""
    if root is not None:
        base = root / "tatoeba" / f"tatoeba.{lang}-eng"
        src, eng = read_lines(f"{base}.{lang}"), read_lines(f"{base}.eng")
        where = str(base)
    else:
        frame = load_hub(TATOEBA_HUB, "test", f"{lang}-eng")
        src, eng = frame["sentence1"].tolist(), frame["sentence2"].tolist()
        where = f"{TATOEBA_HUB} ({lang})"
    if len(src) != len(eng):
        raise DataError(f"{where}: {len(src)} {lang} lines but {len(eng)} English lines")
    check_records([{"source": s, "target": t} for s, t in zip(src, eng)], where)
    return src, eng


def load_source(cfg: SourceConfig, root: Path | None) -> list[dict[str, Any]]:
    """Records for a training source."""
    if cfg.recipe == "nli":
        split = {"train": "validation+test"}.get(cfg.split, cfg.split) if root is not None else cfg.split
        return nli(split, root, cfg.hard_negatives)
    if cfg.recipe == "stsb":
        return stsb(cfg.lang, cfg.split, root)
    if cfg.recipe == "domain":
        from lacos_lightning.data.domain import domain_pairs

        return domain_pairs(str(cfg.name), cfg.split, root)
    if cfg.recipe == "file":
        frame = read_table(cfg.path, cfg.format, cfg.header)
        where = str(cfg.path)
    else:
        frame = load_hub(cfg.name, cfg.split, cfg.subset)
        where = cfg.name
    records = select_columns(frame, cfg.columns, where)
    check_records(records, where, tuple(cfg.score_range) if cfg.score_range else None)
    return records
