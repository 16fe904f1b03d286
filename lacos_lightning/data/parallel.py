"""Distillation data: plain sentences (teacher targets only) and parallel pairs (source, translation).

A record is ``{"source": text}`` or ``{"source": text, "translation": text}``. The teacher embeds the
source; the student embeds both sides toward that embedding. Readers:

- ``lines``: line-aligned text files ``{path}.{lang}`` (Multi30k ``parallel/multi30k/train.{en,de,fr}``,
  the Tatoeba layout ``tatoeba/tatoeba.deu-eng.{eng,deu}``); one language gives plain sentences;
- ``stsb``: the STS-B translations, ``stsb/stsb-{lang}-{split}.csv`` row for row in every language
  (both sentence columns); with ``translation`` set, pairs (lang sentence, translation sentence);
- ``table``: a local CSV/TSV/JSONL/Parquet file, ``text_columns`` (plain) or ``pair_columns`` (parallel);
- ``hub``: a Hugging Face dataset by name, with the same column settings.

Relative paths are read under the data folder. Empty lines and mismatched line counts are errors.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lacos_lightning.data.readers import load_hub, read_lines, read_table, select_columns
from lacos_lightning.errors import DataError, require

KINDS = ("lines", "stsb", "table", "hub")


@dataclass
class ParallelSourceConfig:
    """One source of distillation text (see the module docstring for the kinds).

    Attributes:
        kind: ``lines``, ``stsb``, ``table`` or ``hub``.
        path: ``lines``: the common prefix of the files; ``table``: the file.
        langs: ``lines``: ``[src]`` (sentences) or ``[src, tgt]`` (pairs), the files' suffixes.
        lang: ``stsb``: language of the source side.
        translation: ``stsb``: language of the translation side (``None``: plain sentences).
        split: ``stsb``/``hub`` split.
        name: ``hub`` dataset name; subset: its configuration.
        text_columns: ``table``/``hub``: columns whose texts are plain sentences.
        pair_columns: ``table``/``hub``: ``[source column, translation column]``.
        format: ``table`` file format (``None`` guesses from the extension); header: whether it has one.
        related: keep the two sentences of each row together (``stsb`` without ``translation``: sentence1
            and sentence2; ``table``/``hub`` with two ``text_columns``): a record ``{source, related}``
            whose sentences the student embeds in the same batch, each toward its own teacher embedding,
            so in-batch similarities include related sentences, not only random ones.
        max_samples: keep at most this many records of this source (a seeded subset).
    """

    kind: str = "lines"
    path: str | None = None
    langs: list[str] = field(default_factory=list)
    lang: str = "en"
    translation: str | None = None
    split: str = "train"
    name: str | None = None
    subset: str | None = None
    text_columns: list[Any] = field(default_factory=list)
    pair_columns: list[Any] = field(default_factory=list)
    format: str | None = None
    header: bool = True
    max_samples: int | None = None
    related: bool = False

    def __post_init__(self) -> None:
        require(self.kind in KINDS, f"data.sources: kind={self.kind!r} is unknown; choose one of {KINDS}")
        self.langs, self.text_columns = list(self.langs or []), list(self.text_columns or [])
        self.pair_columns = list(self.pair_columns or [])
        if self.kind == "lines":
            require(bool(self.path), "data.sources: kind=lines needs path (the files' prefix, e.g. multi30k/train)")
            require(
                len(self.langs) in (1, 2), f"data.sources: kind=lines needs langs [src] or [src, tgt], got {self.langs}"
            )
        if self.kind in ("table", "hub"):
            require(
                bool(self.path if self.kind == "table" else self.name),
                f"data.sources: kind={self.kind} needs a {'path' if self.kind == 'table' else 'name'}",
            )
            require(
                bool(self.text_columns) != bool(self.pair_columns),
                f"data.sources: kind={self.kind} needs either text_columns (sentences) or pair_columns (pairs)",
            )
            require(
                not self.pair_columns or len(self.pair_columns) == 2,
                "data.sources: pair_columns is [source, translation]",
            )
        require(
            self.max_samples is None or self.max_samples >= 1,
            f"data.sources: max_samples={self.max_samples} must be >= 1",
        )
        if self.related:
            ok = (self.kind == "stsb" and not self.translation) or (
                self.kind in ("table", "hub") and len(self.text_columns) == 2
            )
            require(ok, "data.sources: related=true needs kind=stsb without translation, or two text_columns")

    def describe(self) -> str:
        if self.kind == "lines":
            return f"{self.path}.{{{','.join(self.langs)}}}"
        if self.kind == "stsb":
            return f"stsb {self.lang}{'-' + self.translation if self.translation else ''} {self.split}"
        return f"{self.kind} {self.path or self.name}"


def _resolve(path: str, root: Path | None) -> Path:
    candidate = Path(path).expanduser()
    if candidate.is_absolute() or root is None or candidate.exists():
        return candidate
    return root / candidate


def _check_texts(texts: list[str], where: str) -> None:
    for i, text in enumerate(texts, start=1):
        if not isinstance(text, str) or not text.strip():
            raise DataError(f"{where}: line {i} is empty")


def _pairs(src: list[str], tgt: list[str] | None, where: str) -> list[dict[str, str]]:
    _check_texts(src, where)
    if tgt is None:
        return [{"source": s} for s in src]
    if len(src) != len(tgt):
        raise DataError(
            f"{where}: {len(src)} source lines but {len(tgt)} translation lines; the files must be line-aligned"
        )
    _check_texts(tgt, where)
    return [{"source": s, "translation": t} for s, t in zip(src, tgt)]


def _related(first: list[str], second: list[str], where: str) -> list[dict[str, str]]:
    _check_texts(first, where)
    _check_texts(second, where)
    return [{"source": a, "related": b} for a, b in zip(first, second) if a != b]


def read_source(cfg: ParallelSourceConfig, root: Path | None) -> tuple[list[dict[str, str]], list[Path]]:
    """Records of one source (duplicates removed, order kept) and the local files read."""
    files: list[Path] = []
    if cfg.kind == "lines":
        files = [_resolve(f"{cfg.path}.{lang}", root) for lang in cfg.langs]
        texts = [read_lines(f) for f in files]
        if len(texts) == 2 and len(texts[0]) != len(texts[1]):
            raise DataError(
                f"{files[0]} has {len(texts[0])} lines but {files[1]} has {len(texts[1])}; the files must be line-aligned"
            )
        records = _pairs(texts[0], texts[1] if len(texts) == 2 else None, str(files[-1]))
    elif cfg.kind == "stsb":
        from lacos_lightning.data.recipes import stsb

        langs = [cfg.lang] + ([cfg.translation] if cfg.translation else [])
        tables = [stsb(lang, cfg.split, root) for lang in langs]
        if root is not None:
            files = [root / "stsb" / f"stsb-{lang}-{cfg.split}.csv" for lang in langs]
        if len(tables) == 2 and len(tables[0]) != len(tables[1]):
            raise DataError(f"stsb {cfg.split}: {len(tables[0])} {langs[0]} rows but {len(tables[1])} {langs[1]} rows")
        if cfg.related:
            records = _related([r["anchor"] for r in tables[0]], [r["positive"] for r in tables[0]], cfg.describe())
        else:
            columns = [[r["anchor"] for r in t] + [r["positive"] for r in t] for t in tables]
            records = _pairs(columns[0], columns[1] if len(columns) == 2 else None, cfg.describe())
    else:
        if cfg.kind == "table":
            files = [_resolve(cfg.path, root)]
            frame, where = read_table(files[0], cfg.format, cfg.header), str(files[0])
        else:
            frame, where = load_hub(cfg.name, cfg.split, cfg.subset), cfg.name
        if cfg.pair_columns:
            rows = select_columns(frame, {"source": cfg.pair_columns[0], "translation": cfg.pair_columns[1]}, where)
            records = _pairs([r["source"] for r in rows], [r["translation"] for r in rows], where)
        else:
            rows = select_columns(frame, {str(i): c for i, c in enumerate(cfg.text_columns)}, where)
            if cfg.related:
                records = _related([r["0"] for r in rows], [r["1"] for r in rows], where)
            else:
                records = _pairs([r[str(i)] for i in range(len(cfg.text_columns)) for r in rows], None, where)
    unique = list({tuple(r.items()): r for r in records}.values())
    if cfg.max_samples is not None and len(unique) > cfg.max_samples:
        order = list(range(len(unique)))
        random.Random(len(unique)).shuffle(order)
        unique = [unique[i] for i in sorted(order[: cfg.max_samples])]
    return unique, files


@dataclass
class DistillDataConfig:
    """Distillation data (the ``data`` block of ``task=distill``).

    Attributes:
        sources: the text sources (:class:`ParallelSourceConfig`), mixed in one shuffled stream.
        max_train_samples: keep at most this many training records (a seeded subset): the data volume.
        heldout_samples: records held out (never trained on) to measure the distance to the teacher.
        batch_size: records per batch (a pair gives two student texts).
        num_workers: DataLoader worker processes.
        seed: seed of the held-out split, the subset and the shuffling.
    """

    sources: list[ParallelSourceConfig] = field(default_factory=list)
    max_train_samples: int | None = None
    heldout_samples: int = 500
    batch_size: int = 64
    num_workers: int = 0
    seed: int = 42

    def __post_init__(self) -> None:
        from lacos_lightning.models.config import _from_mapping

        require(
            bool(self.sources), "data.sources is empty; task=distill needs at least one text source (data=distill_en)"
        )
        self.sources = [
            s if isinstance(s, ParallelSourceConfig) else _from_mapping(ParallelSourceConfig, s, "data.sources")
            for s in self.sources
        ]
        require(
            self.max_train_samples is None or self.max_train_samples >= 1,
            f"data.max_train_samples={self.max_train_samples!r} must be >= 1",
        )
        require(self.heldout_samples >= 0, f"data.heldout_samples={self.heldout_samples!r} must be >= 0")
        require(self.batch_size >= 2, f"data.batch_size={self.batch_size!r} must be >= 2 (in-batch similarities)")
        require(self.num_workers >= 0, f"data.num_workers={self.num_workers!r} must be >= 0")


def split_heldout(records: list[dict[str, str]], cfg: DistillDataConfig) -> tuple[list[dict[str, str]], list[str]]:
    """Seeded split into training records and held-out source sentences.

    Every record whose source (or related) sentence is held out leaves the training set, so a sentence
    shared by two sources (English STS-B in two language pairs) cannot leak; then ``max_train_samples``
    applies.
    """
    sources = sorted({r["source"] for r in records})
    rng = random.Random(cfg.seed)
    rng.shuffle(sources)
    heldout = sources[: cfg.heldout_samples]
    held = set(heldout)
    train = [r for r in records if r["source"] not in held and r.get("related") not in held]
    if cfg.max_train_samples is not None and len(train) > cfg.max_train_samples:
        order = list(range(len(train)))
        random.Random(cfg.seed + 1).shuffle(order)
        train = [train[i] for i in sorted(order[: cfg.max_train_samples])]
    return train, heldout
