"""Distillation data: line-aligned readers, STS-B translations, tables, held-out split, bad input."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from lacos_lightning.data.parallel import DistillDataConfig, ParallelSourceConfig, read_source, split_heldout
from lacos_lightning.errors import ConfigError, DataError
from tests.conftest import DATA, needs_data


def _write(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def test_lines_pairs_and_sentences(tmp_path: Path) -> None:
    _write(tmp_path / "c.en", ["A dog runs.", "A cat sleeps.", "A dog runs."])
    _write(tmp_path / "c.de", ["Ein Hund rennt.", "Eine Katze schläft.", "Ein Hund rennt."])
    pairs, files = read_source(ParallelSourceConfig(kind="lines", path=str(tmp_path / "c"), langs=["en", "de"]), None)
    assert pairs == [
        {"source": "A dog runs.", "translation": "Ein Hund rennt."},
        {"source": "A cat sleeps.", "translation": "Eine Katze schläft."},
    ]  # the repeated pair is kept once
    assert files == [tmp_path / "c.en", tmp_path / "c.de"]
    plain, _ = read_source(ParallelSourceConfig(kind="lines", path=str(tmp_path / "c"), langs=["de"]), None)
    assert plain == [{"source": "Ein Hund rennt."}, {"source": "Eine Katze schläft."}]


def test_tatoeba_layout_relative_to_data_folder(tmp_path: Path) -> None:
    (tmp_path / "tatoeba").mkdir()
    _write(tmp_path / "tatoeba" / "tatoeba.xyz-eng.xyz", ["uno", "dos"])
    _write(tmp_path / "tatoeba" / "tatoeba.xyz-eng.eng", ["one", "two"])
    cfg = ParallelSourceConfig(kind="lines", path="tatoeba/tatoeba.xyz-eng", langs=["eng", "xyz"])
    records, _ = read_source(cfg, tmp_path)
    assert records == [{"source": "one", "translation": "uno"}, {"source": "two", "translation": "dos"}]


def test_mismatched_line_counts(tmp_path: Path) -> None:
    _write(tmp_path / "c.en", ["one", "two", "three"])
    _write(tmp_path / "c.de", ["eins", "zwei"])
    with pytest.raises(DataError, match=r"c\.en has 3 lines but .*c\.de has 2"):
        read_source(ParallelSourceConfig(kind="lines", path=str(tmp_path / "c"), langs=["en", "de"]), None)


@pytest.mark.parametrize("side", ["en", "de"])
def test_empty_line(tmp_path: Path, side: str) -> None:
    _write(tmp_path / "c.en", ["one", "" if side == "en" else "two", "three"])
    _write(tmp_path / "c.de", ["eins", "" if side == "de" else "zwei", "drei"])
    with pytest.raises(DataError, match="line 2 is empty"):
        read_source(ParallelSourceConfig(kind="lines", path=str(tmp_path / "c"), langs=["en", "de"]), None)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not found"):
        read_source(ParallelSourceConfig(kind="lines", path=str(tmp_path / "nope"), langs=["en"]), None)


def test_table_text_and_pair_columns(tmp_path: Path) -> None:
    path = tmp_path / "t.tsv"
    path.write_text("id\ta\tb\n1\tfirst\tsecond\n2\tthird\tfirst\n")
    plain, _ = read_source(ParallelSourceConfig(kind="table", path=str(path), text_columns=["a", "b"]), None)
    assert [r["source"] for r in plain] == ["first", "third", "second"]
    pairs, _ = read_source(ParallelSourceConfig(kind="table", path=str(path), pair_columns=["a", "b"]), None)
    assert pairs[1] == {"source": "third", "translation": "first"}
    with pytest.raises(DataError, match="column 'c'"):
        read_source(ParallelSourceConfig(kind="table", path=str(path), text_columns=["c"]), None)


def test_related_rows_stay_together(tmp_path: Path) -> None:
    path = tmp_path / "t.tsv"
    path.write_text("a\tb\nfirst\tsecond\nsame\tsame\nthird\tfirst\n")
    cfg = ParallelSourceConfig(kind="table", path=str(path), text_columns=["a", "b"], related=True)
    records, _ = read_source(cfg, None)
    assert records == [{"source": "first", "related": "second"}, {"source": "third", "related": "first"}]
    train, heldout = split_heldout(records, DistillDataConfig(sources=[cfg], heldout_samples=1, seed=3))
    assert all(heldout[0] not in (r["source"], r["related"]) for r in train)
    with pytest.raises(ConfigError, match="related=true"):
        ParallelSourceConfig(kind="stsb", translation="de", related=True)


def test_per_source_max_samples(tmp_path: Path) -> None:
    _write(tmp_path / "c.en", [f"sentence {i}" for i in range(50)])
    cfg = ParallelSourceConfig(kind="lines", path=str(tmp_path / "c"), langs=["en"], max_samples=7)
    first, _ = read_source(cfg, None)
    again, _ = read_source(cfg, None)
    assert len(first) == 7 and first == again


@needs_data
def test_stsb_translations_row_for_row() -> None:
    records, files = read_source(ParallelSourceConfig(kind="stsb", lang="en", translation="de", split="train"), DATA)
    with open(DATA / "stsb" / "stsb-en-train.csv", newline="", encoding="utf-8") as f:
        en = list(csv.reader(f))
    with open(DATA / "stsb" / "stsb-de-train.csv", newline="", encoding="utf-8") as f:
        de = list(csv.reader(f))
    assert records[0] == {"source": en[0][0], "translation": de[0][0]}
    expected = {(a[0], b[0]) for a, b in zip(en, de)} | {(a[1], b[1]) for a, b in zip(en, de)}
    assert {(r["source"], r["translation"]) for r in records} == expected
    assert [f.name for f in files] == ["stsb-en-train.csv", "stsb-de-train.csv"]


def test_heldout_split_never_trains_on_heldout_sources() -> None:
    records = [{"source": f"s{i % 40}", "translation": f"t{i}"} for i in range(120)] + [{"source": "s3"}]
    cfg = DistillDataConfig(sources=[{"kind": "stsb"}], heldout_samples=10, max_train_samples=50, seed=1)
    train, heldout = split_heldout(records, cfg)
    assert len(heldout) == 10 and len(set(heldout)) == 10
    assert not {r["source"] for r in train} & set(heldout)
    assert len(train) == 50
    assert split_heldout(records, cfg) == (train, heldout)  # seeded


@pytest.mark.parametrize(
    ("values", "needle"),
    [
        ({"kind": "books"}, "kind='books'"),
        ({"kind": "lines", "path": "x", "langs": ["en", "de", "fr"]}, "langs"),
        ({"kind": "lines", "langs": ["en"]}, "needs path"),
        ({"kind": "table", "path": "t.csv"}, "text_columns"),
        ({"kind": "hub", "name": "x", "text_columns": ["a"], "pair_columns": ["a", "b"]}, "either"),
    ],
)
def test_source_config_rejects(values: dict, needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        ParallelSourceConfig(**values)


def test_data_config_rejects_unknown_source_key() -> None:
    with pytest.raises(ConfigError, match="colour"):
        DistillDataConfig(sources=[{"kind": "stsb", "colour": "red"}])
    with pytest.raises(ConfigError, match="data.sources is empty"):
        DistillDataConfig(sources=[])
