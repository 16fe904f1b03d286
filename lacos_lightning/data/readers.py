"""Readers for local tables (CSV/TSV/JSONL/Parquet, with or without header) and hub datasets."""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from lacos_lightning.errors import DataError, HubUnavailableError

FORMATS = {".csv": "csv", ".tsv": "tsv", ".txt": "tsv", ".jsonl": "jsonl", ".json": "jsonl", ".parquet": "parquet"}
DATA_DIR_HINT = (
    "set LACOS_DATA_DIR (or paths.data_dir=...) to a local folder laid out like shared/data, "
    "or set the source's path to a local file (HF_HUB_OFFLINE=1 makes hub look-ups fail at once)"
)


def read_table(path: str | Path, fmt: str | None = None, header: bool = True) -> pd.DataFrame:
    """Read a local table; without a header the columns are named 0, 1, 2, ..."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"data file not found: {path}")
    fmt = fmt or FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise DataError(f"cannot tell the format of {path}; set format to one of csv, tsv, jsonl, parquet")
    head = 0 if header else None
    try:
        if fmt == "csv":
            frame = pd.read_csv(path, header=head, keep_default_na=False, dtype=str)
        elif fmt == "tsv":
            frame = pd.read_csv(path, sep="\t", header=head, quoting=csv.QUOTE_NONE, keep_default_na=False, dtype=str)
        elif fmt == "jsonl":
            frame = pd.read_json(path, lines=True, dtype=False)
        elif fmt == "parquet":
            frame = pd.read_parquet(path)
        else:
            raise DataError(f"unknown format {fmt!r} for {path}; choose csv, tsv, jsonl or parquet")
    except (ValueError, pd.errors.ParserError, OSError) as err:
        raise DataError(f"cannot read {path} as {fmt}: {str(err).splitlines()[0]}") from err
    if not header:
        frame.columns = list(range(frame.shape[1]))
    return frame


def read_lines(path: str | Path) -> list[str]:
    """Read a line-aligned text file (one sentence a line)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"data file not found: {path}")
    return path.read_text(encoding="utf-8").split("\n")[:-1] if path.stat().st_size else []


def load_hub(name: str, split: str, subset: str | None = None) -> pd.DataFrame:
    """Load a Hugging Face dataset split as a DataFrame, with an actionable error when offline."""
    from datasets import load_dataset

    try:
        dataset = load_dataset(name, subset, split=split)
    except Exception as err:  # datasets raises many types for an unreachable hub
        offline = os.environ.get("HF_HUB_OFFLINE") == "1" or "offline" in str(err).lower() or isinstance(err, OSError)
        if offline or "connect" in str(err).lower():
            raise HubUnavailableError(f"cannot load dataset {name!r} ({split}) from the hub: {DATA_DIR_HINT}") from err
        raise DataError(f"cannot load dataset {name!r} split {split!r}: {str(err).splitlines()[0]}") from err
    return dataset.to_pandas()


def select_columns(frame: pd.DataFrame, columns: Mapping[str, Any], where: str) -> list[dict[str, Any]]:
    """Rename ``columns`` (role -> column name or index) and return records; missing columns are an error."""
    records = {}
    for role, column in columns.items():
        key = column
        if key not in frame.columns and isinstance(column, str) and column.isdigit():
            key = int(column)
        if key not in frame.columns:
            raise DataError(f"{where}: column {column!r} (for {role}) not found; columns are {list(frame.columns)}")
        records[role] = frame[key].tolist()
    return [dict(zip(records, values)) for values in zip(*records.values())]


def check_records(records: list[dict[str, Any]], where: str, score_range: tuple[float, float] | None = None) -> None:
    """Reject empty sets, empty or non-text sentences and missing or out-of-range scores."""
    if not records:
        raise DataError(f"{where}: no examples")
    for row, record in enumerate(records, start=1):
        for role, value in record.items():
            if role == "score":
                try:
                    score = float(value)
                except (TypeError, ValueError):
                    raise DataError(f"{where}: row {row} has a score that is not a number: {value!r}") from None
                if math.isnan(score):
                    raise DataError(f"{where}: row {row} has no score")
                if score_range and not score_range[0] <= score <= score_range[1]:
                    raise DataError(f"{where}: row {row} has score {score} outside {list(score_range)}")
                record["score"] = score
            elif not isinstance(value, str) or not value.strip():
                raise DataError(f"{where}: row {row} has an empty {role} sentence")
