"""Domain-adaptation data (``shared/data/domain``): labelled question/sentence pairs from three domains.

Every reader returns records ``{anchor, positive, score}`` where ``score`` is the gold label as a
number (1 similar / 0 not; Qatar: 2 PerfectMatch, 1 Relevant, 0 Irrelevant), so CoSENT trains on them
and the pair evaluators read ``score > 0`` as the paraphrase label.

Splits (fixed, so every run and every method sees the same pairs):

- ``twitter`` (Twitter URL corpus, social media): ``test`` is the corpus's test set (9,324 pairs).
  ``train`` and ``val`` split the corpus's train set (42,200 pairs) by the first sentence: a pair goes
  to ``val`` when the MD5 of its first sentence is 0 mod 20 (about 5%), so pairs that share a tweet
  topic never straddle the two.
- ``mqp`` (Medical Question Pairs, medicine): grouped by the doctor who wrote them (``dr_id``), each
  group on one side: ``test`` = doctors 10 and 11 (546 pairs), ``val`` = doctor 9 (280), ``train`` =
  doctors 1-8 (2,222); ``all`` = the 3,048 pairs.
- ``qatar`` (SemEval-2016 task 3B, Qatar Living forum): the original ``TRAIN``/``VAL``/``TEST``
  files (1,958 / 495 / 684 pairs), the original question body against the related question body.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from lacos_lightning.data.readers import check_records, read_lines, read_table, select_columns
from lacos_lightning.errors import DataError

DOMAINS = ("twitter", "mqp", "qatar")
SPLITS = {
    "twitter": ("train", "val", "test"),
    "mqp": ("train", "val", "test", "all"),
    "qatar": ("train", "val", "test"),
}
MQP_DOCTORS = {"test": {10, 11}, "val": {9}, "train": {1, 2, 3, 4, 5, 6, 7, 8}}
QATAR_LABELS = {"PerfectMatch": 2.0, "Relevant": 1.0, "Irrelevant": 0.0}
QATAR_FILES = {"train": "TRAIN-BASE.csv", "val": "VAL-BASE.csv", "test": "TEST-BASE.csv"}
TWITTER_VAL_MOD = 20


def check_split(name: str, split: str) -> None:
    """Raise a :class:`DataError` for an unknown domain or split (before anything is read)."""
    if name not in DOMAINS:
        raise DataError(f"domain {name!r} is unknown; choose one of {DOMAINS}")
    if split not in SPLITS[name]:
        raise DataError(f"domain {name} has no split {split!r}; choose one of {SPLITS[name]}")


def domain_pairs(name: str, split: str, root: Path | None) -> list[dict[str, Any]]:
    """Labelled pairs of domain ``name`` (twitter, mqp, qatar) and ``split`` from the local data folder."""
    check_split(name, split)
    if root is None:
        raise DataError(
            f"domain data ({name}) is read from a local folder: set LACOS_DATA_DIR (or paths.data_dir=...) "
            "to a folder with domain/twitter-url, domain/mqp and domain/qatar-cqa"
        )
    folder = Path(root) / "domain"
    records = {"twitter": _twitter, "mqp": _mqp, "qatar": _qatar}[name](folder, split)
    check_records(records, f"domain {name} ({split})")
    return records


def _label(value: str, allowed: dict[str, float], where: str, row: int) -> float:
    text = str(value).strip()
    if not text:
        raise DataError(f"{where}: row {row} has no label")
    if text not in allowed:
        raise DataError(f"{where}: row {row} has label {text!r}; expected one of {sorted(allowed)}")
    return allowed[text]


def _twitter(folder: Path, split: str) -> list[dict[str, Any]]:
    base = folder / "twitter-url" / ("test" if split == "test" else "train")
    first, second, labels = (read_lines(base / f) for f in ("a.toks", "b.toks", "sim.txt"))
    if not len(first) == len(second) == len(labels):
        raise DataError(
            f"{base}: a.toks, b.toks and sim.txt differ in length ({len(first)}, {len(second)}, {len(labels)})"
        )
    where = str(base / "sim.txt")
    records = []
    for row, (a, b, y) in enumerate(zip(first, second, labels), start=1):
        score = _label(y, {"0": 0.0, "1": 1.0}, where, row)
        if split != "test":
            in_val = int(hashlib.md5(a.encode("utf-8")).hexdigest(), 16) % TWITTER_VAL_MOD == 0
            if in_val != (split == "val"):
                continue
        records.append({"anchor": a, "positive": b, "score": score})
    return records


def _mqp(folder: Path, split: str) -> list[dict[str, Any]]:
    path = folder / "mqp" / "mqp.csv"
    frame = read_table(path, "csv", header=False)
    if frame.shape[1] < 4:
        raise DataError(f"{path}: expected 4 columns (dr_id, question1, question2, label), found {frame.shape[1]}")
    rows = select_columns(frame, {"dr_id": 0, "anchor": 1, "positive": 2, "label": 3}, str(path))
    records = []
    for row, rec in enumerate(rows, start=1):
        score = _label(rec["label"], {"0": 0.0, "1": 1.0}, str(path), row)
        try:
            doctor = int(str(rec["dr_id"]).strip())
        except ValueError:
            raise DataError(f"{path}: row {row} has dr_id {rec['dr_id']!r}, not a number") from None
        if split == "all" or doctor in MQP_DOCTORS[split]:
            records.append({"anchor": rec["anchor"], "positive": rec["positive"], "score": score})
    return records


def _qatar(folder: Path, split: str) -> list[dict[str, Any]]:
    path = folder / "qatar-cqa" / QATAR_FILES[split]
    frame = read_table(path, "csv", header=True)
    rows = select_columns(frame, {"anchor": "question", "positive": "rel_question", "label": "labels"}, str(path))
    return [
        {
            "anchor": rec["anchor"],
            "positive": rec["positive"],
            "score": _label(rec["label"], QATAR_LABELS, str(path), row),
        }
        for row, rec in enumerate(rows, start=1)
    ]
