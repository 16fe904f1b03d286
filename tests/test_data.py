"""Readers, SourceConfig, subsampling, the resumable loader and the recipes on real data."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd
import pytest
import torch

from lacos_lightning.data.config import DataConfig, SourceConfig
from lacos_lightning.data.datamodule import subsample
from lacos_lightning.data.loader import EpochSampler, ResumableLoader
from lacos_lightning.data.readers import check_records, load_hub, read_lines, read_table, select_columns
from lacos_lightning.data.recipes import data_dir, load_source, nli, stsb, tatoeba
from lacos_lightning.errors import ConfigError, DataError, HubUnavailableError

DATA = Path(os.environ.get("LACOS_DATA_DIR", Path(__file__).resolve().parents[1].parent / "shared" / "data"))

ROWS = [
    ("A man plays a guitar.", "Someone plays music.", "4.2"),
    ("The cat sleeps, quietly.", 'She said "no".', "0"),
    ("Zwei Hunde rennen.", "Two dogs run.", "5"),
]


@pytest.fixture(scope="module")
def shared_data() -> Path:
    if not DATA.is_dir():
        pytest.skip(f"real data not found at {DATA}")
    return DATA


def _write(path: Path, fmt: str, header: bool, rows=ROWS, names=("s1", "s2", "score")) -> Path:
    """Write ``rows`` in ``fmt`` by hand (no pandas writer for the text formats)."""
    if fmt == "csv":

        def quote(x: str) -> str:
            return '"' + x.replace('"', '""') + '"' if any(c in x for c in ',"') else x

        lines = ([",".join(names)] if header else []) + [",".join(quote(v) for v in row) for row in rows]
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    elif fmt == "tsv":
        lines = (["\t".join(names)] if header else []) + ["\t".join(row) for row in rows]
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    elif fmt == "jsonl":
        path.write_text(
            "".join(json.dumps(dict(zip(names, row, strict=True))) + "\n" for row in rows), encoding="utf-8"
        )
    elif fmt == "parquet":
        pd.DataFrame([dict(zip(names, row, strict=True)) for row in rows]).to_parquet(path)
    return path


# ---------------------------------------------------------------- read_table


@pytest.mark.parametrize("fmt", ["csv", "tsv", "jsonl", "parquet"])
def test_read_table_with_header(tmp_path: Path, fmt: str) -> None:
    path = _write(tmp_path / f"pairs.{fmt}", fmt, header=True)
    frame = read_table(path)
    assert list(frame.columns) == ["s1", "s2", "score"]
    assert frame["s1"].tolist() == [r[0] for r in ROWS]
    assert frame["s2"].tolist() == [r[1] for r in ROWS]
    assert [str(x) for x in frame["score"]] == [r[2] for r in ROWS]


@pytest.mark.parametrize("fmt", ["csv", "tsv"])
def test_read_table_without_header(tmp_path: Path, fmt: str) -> None:
    path = _write(tmp_path / f"pairs.{fmt}", fmt, header=False)
    frame = read_table(path, header=False)
    assert list(frame.columns) == [0, 1, 2]
    assert len(frame) == len(ROWS)  # the first row is data, not a header
    assert frame[0].tolist() == [r[0] for r in ROWS]
    assert frame[1].tolist() == [r[1] for r in ROWS]


def test_read_table_explicit_format(tmp_path: Path) -> None:
    path = _write(tmp_path / "pairs.data", "tsv", header=True)
    with pytest.raises(DataError, match="format"):
        read_table(path)
    assert read_table(path, "tsv")["s2"].tolist() == [r[1] for r in ROWS]


def test_read_table_keeps_na_like_strings(tmp_path: Path) -> None:
    path = _write(tmp_path / "na.csv", "csv", header=True, rows=[("NA", "null", "1"), ("None", "nan", "2")])
    frame = read_table(path)
    assert frame["s1"].tolist() == ["NA", "None"] and frame["s2"].tolist() == ["null", "nan"]


def test_read_table_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.csv"
    with pytest.raises(DataError, match="nope.csv"):
        read_table(missing)


def test_read_lines(tmp_path: Path) -> None:
    path = tmp_path / "lines.txt"
    path.write_text("one\ntwo two\n\nfour\n", encoding="utf-8")
    assert read_lines(path) == ["one", "two two", "", "four"]
    (tmp_path / "empty.txt").write_text("")
    assert read_lines(tmp_path / "empty.txt") == []
    with pytest.raises(DataError):
        read_lines(tmp_path / "missing.txt")


# ---------------------------------------------------------------- columns and checks


def test_select_columns_by_name_and_index(tmp_path: Path) -> None:
    named = read_table(_write(tmp_path / "h.csv", "csv", header=True))
    by_name = select_columns(named, {"anchor": "s1", "positive": "s2", "score": "score"}, "h.csv")
    unnamed = read_table(_write(tmp_path / "n.csv", "csv", header=False), header=False)
    by_index = select_columns(unnamed, {"anchor": 0, "positive": 1, "score": 2}, "n.csv")
    by_string_index = select_columns(unnamed, {"anchor": "0", "positive": "1", "score": "2"}, "n.csv")
    expected = [{"anchor": a, "positive": p, "score": s} for a, p, s in ROWS]
    assert by_name == by_index == by_string_index == expected
    # mapping picks the columns, not their order in the file
    swapped = select_columns(named, {"anchor": "s2", "positive": "s1"}, "h.csv")
    assert swapped[0] == {"anchor": ROWS[0][1], "positive": ROWS[0][0]}


def test_select_columns_missing_column_is_named(tmp_path: Path) -> None:
    frame = read_table(_write(tmp_path / "h.csv", "csv", header=True))
    with pytest.raises(DataError, match="sentence_b"):
        select_columns(frame, {"anchor": "s1", "positive": "sentence_b"}, "h.csv")
    unnamed = read_table(_write(tmp_path / "n.csv", "csv", header=False), header=False)
    with pytest.raises(DataError, match="7"):
        select_columns(unnamed, {"anchor": 0, "positive": 7}, "n.csv")


def _file_source(path: Path, **kwargs) -> SourceConfig:
    columns = kwargs.pop("columns", {"anchor": "s1", "positive": "s2", "score": "score"})
    return SourceConfig(recipe="file", path=str(path), columns=columns, **kwargs)


@pytest.mark.parametrize("fmt", ["csv", "tsv", "jsonl", "parquet"])
def test_load_source_file(tmp_path: Path, fmt: str) -> None:
    path = _write(tmp_path / f"pairs.{fmt}", fmt, header=True)
    records = load_source(_file_source(path, score_range=[0, 5]), root=None)
    assert records == [{"anchor": a, "positive": p, "score": float(s)} for a, p, s in ROWS]
    assert all(isinstance(r["score"], float) for r in records)


def test_load_source_file_without_header(tmp_path: Path) -> None:
    path = _write(tmp_path / "pairs.tsv", "tsv", header=False)
    records = load_source(_file_source(path, header=False, columns={"anchor": 1, "positive": 0}), root=None)
    assert records == [{"anchor": p, "positive": a} for a, p, _ in ROWS]


def test_load_source_triplets(tmp_path: Path) -> None:
    rows = [("q1", "p1", "n1"), ("q2", "p2", "n2")]
    path = _write(tmp_path / "t.jsonl", "jsonl", header=True, rows=rows, names=("q", "pos", "neg"))
    cfg = _file_source(path, columns={"anchor": "q", "positive": "pos", "negative": "neg"})
    assert load_source(cfg, None) == [{"anchor": q, "positive": p, "negative": n} for q, p, n in rows]


def test_load_source_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not found"):
        load_source(_file_source(tmp_path / "absent.csv"), None)


def test_load_source_missing_column(tmp_path: Path) -> None:
    path = _write(tmp_path / "pairs.csv", "csv", header=True)
    with pytest.raises(DataError, match="'hypothesis'"):
        load_source(_file_source(path, columns={"anchor": "s1", "positive": "hypothesis"}), None)


@pytest.mark.parametrize("empty", ["", "   "])
def test_empty_sentence_names_row(tmp_path: Path, empty: str) -> None:
    rows = [ROWS[0], (ROWS[1][0], empty, "1"), ROWS[2]]
    path = _write(tmp_path / "pairs.tsv", "tsv", header=True, rows=rows)
    with pytest.raises(DataError, match=r"row 2 has an empty positive"):
        load_source(_file_source(path), None)


def test_null_sentence_in_jsonl(tmp_path: Path) -> None:
    path = tmp_path / "n.jsonl"
    path.write_text('{"s1": "a", "s2": "b"}\n{"s1": null, "s2": "d"}\n', encoding="utf-8")
    with pytest.raises(DataError, match="row 2 has an empty anchor"):
        load_source(_file_source(path, columns={"anchor": "s1", "positive": "s2"}), None)


def test_score_out_of_range(tmp_path: Path) -> None:
    rows = [ROWS[0], ROWS[1], ("x", "y", "7.5")]
    path = _write(tmp_path / "pairs.csv", "csv", header=True, rows=rows)
    with pytest.raises(DataError, match=r"row 3 has score 7.5 outside"):
        load_source(_file_source(path, score_range=[0, 5]), None)
    # without a range the same file loads
    assert load_source(_file_source(path), None)[2]["score"] == 7.5


@pytest.mark.parametrize("bad", ["high", "", "4,5"])
def test_non_numeric_score(tmp_path: Path, bad: str) -> None:
    rows = [(ROWS[0][0], ROWS[0][1], bad), ROWS[1]]
    path = _write(tmp_path / "pairs.tsv", "tsv", header=True, rows=rows)
    with pytest.raises(DataError, match="row 1 has a score that is not a number"):
        load_source(_file_source(path), None)


def test_nan_score(tmp_path: Path) -> None:
    path = _write(tmp_path / "pairs.tsv", "tsv", header=True, rows=[ROWS[0], ("a", "b", "nan")])
    with pytest.raises(DataError, match="row 2 has no score"):
        load_source(_file_source(path), None)


def test_no_examples(tmp_path: Path) -> None:
    path = tmp_path / "empty.csv"
    path.write_text("s1,s2,score\n", encoding="utf-8")
    with pytest.raises(DataError, match="no examples"):
        load_source(_file_source(path), None)
    with pytest.raises(DataError, match="no examples"):
        check_records([], "x")


# ---------------------------------------------------------------- SourceConfig / DataConfig


def test_source_config_validation(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="path"):
        SourceConfig(recipe="file", columns={"anchor": "a", "positive": "b"})
    with pytest.raises(ConfigError, match="query"):
        SourceConfig(recipe="file", path="x.csv", columns={"query": "a", "positive": "b"})
    with pytest.raises(ConfigError, match="recipe"):
        SourceConfig(recipe="squad")
    with pytest.raises(ConfigError, match="anchor and positive"):
        SourceConfig(recipe="file", path="x.csv", columns={"anchor": "a"})
    with pytest.raises(ConfigError, match="name"):
        SourceConfig(recipe="hub", columns={"anchor": "a", "positive": "b"})
    with pytest.raises(ConfigError, match="score_range"):
        SourceConfig(score_range=[5, 0])
    assert SourceConfig().recipe == "nli"


def test_data_config_validation() -> None:
    with pytest.raises(ConfigError, match="max_train_samples"):
        DataConfig(max_train_samples=0)
    with pytest.raises(ConfigError, match="train_fraction"):
        DataConfig(train_fraction=1.5)
    with pytest.raises(ConfigError, match="train_fraction"):
        DataConfig(train_fraction=0.0)
    with pytest.raises(ConfigError, match="batch_size"):
        DataConfig(batch_size=1)
    with pytest.raises(ConfigError, match="colums"):
        DataConfig(train={"recipe": "stsb", "colums": {}})
    assert DataConfig(train={"recipe": "stsb", "lang": "de"}).train.lang == "de"


# ---------------------------------------------------------------- subsample


RECORDS = [{"anchor": f"a{i}", "positive": f"p{i}"} for i in range(100)]


def test_subsample_deterministic_and_bounded() -> None:
    first = subsample(RECORDS, DataConfig(max_train_samples=10, seed=1))
    again = subsample(RECORDS, DataConfig(max_train_samples=10, seed=1))
    other = subsample(RECORDS, DataConfig(max_train_samples=10, seed=2))
    assert first == again
    assert len(first) == len(other) == 10
    assert first != other
    # a subset of distinct records, in their original order
    idx = [RECORDS.index(r) for r in first]
    assert idx == sorted(set(idx))


def test_subsample_fraction_then_max() -> None:
    assert len(subsample(RECORDS, DataConfig(train_fraction=0.25))) == 25
    assert len(subsample(RECORDS, DataConfig(train_fraction=0.5, max_train_samples=10))) == 10
    assert len(subsample(RECORDS, DataConfig(train_fraction=0.05, max_train_samples=10))) == 5
    assert len(subsample(RECORDS, DataConfig(train_fraction=0.001))) == 1
    assert subsample(RECORDS, DataConfig()) == RECORDS
    assert subsample(RECORDS, DataConfig(max_train_samples=1000)) == RECORDS


# ---------------------------------------------------------------- EpochSampler / ResumableLoader


def test_epoch_sampler_seeded_permutation() -> None:
    a, b = EpochSampler(20, seed=7, batch_size=4), EpochSampler(20, seed=7, batch_size=4)
    assert list(a) == list(b)
    assert sorted(a) == list(range(20))
    epoch0 = list(a)
    a.set_epoch(1)
    b.set_epoch(1)
    assert list(a) == list(b)
    assert list(a) != epoch0
    assert sorted(a) == list(range(20))
    other_seed = EpochSampler(20, seed=8, batch_size=4)
    assert list(other_seed) != epoch0


def test_epoch_sampler_drops_last_partial_batch() -> None:
    sampler = EpochSampler(10, seed=0, batch_size=3)
    indices = list(sampler)
    assert len(indices) == len(sampler) == 9
    assert len(set(indices)) == 9 and set(indices) <= set(range(10))


def _collate(rows: list[dict]) -> dict:
    return {"ids": [r["i"] for r in rows]}


def _loader(size: int = 23, batch: int = 4, seed: int = 3) -> ResumableLoader:
    return ResumableLoader([{"i": i} for i in range(size)], batch_size=batch, seed=seed, collate_fn=_collate)


def test_loader_epochs() -> None:
    loader = _loader()
    assert len(loader) == 23 // 4
    loader.epoch_sampler.set_epoch(0)
    e0 = [b["ids"] for b in loader]
    e0_again = [b["ids"] for b in loader]
    loader.epoch_sampler.set_epoch(1)
    e1 = [b["ids"] for b in loader]
    assert e0 == e0_again
    assert e0 != e1
    for epoch in (e0, e1):
        assert len(epoch) == 5 and all(len(b) == 4 for b in epoch)
        flat = [i for b in epoch for i in b]
        assert len(set(flat)) == 20
    # a fresh loader with the same seed gives the same epochs
    fresh = _loader()
    fresh.epoch_sampler.set_epoch(1)
    assert [b["ids"] for b in fresh] == e1


@pytest.mark.parametrize("consumed", [0, 1, 3, 5])
@pytest.mark.parametrize("epoch", [0, 2])
def test_loader_resumes_mid_epoch(epoch: int, consumed: int) -> None:
    reference = _loader()
    reference.epoch_sampler.set_epoch(epoch)
    full = list(reference)
    assert [b["position"] for b in full] == list(range(len(full)))

    resumed = _loader()
    resumed.load_state_dict({"epoch": epoch, "consumed": consumed})
    resumed.epoch_sampler.set_epoch(epoch)  # what Lightning does at the start of the epoch
    rest = list(resumed)
    assert [b["ids"] for b in rest] == [b["ids"] for b in full[consumed:]]
    assert [b["position"] for b in rest] == list(range(consumed, len(full)))
    # the skip applies once: the next pass over the same epoch is whole again
    assert [b["ids"] for b in resumed] == [b["ids"] for b in full]


def test_loader_state_dict_round_trip() -> None:
    loader = _loader()
    loader.epoch_sampler.set_epoch(4)
    batches = iter(loader)
    for _ in range(3):
        batch = next(batches)
        loader.mark_consumed(batch["position"])
    state = loader.state_dict()
    assert state == {"epoch": 4, "consumed": 3}
    remaining = [b["ids"] for b in batches]

    restored = _loader()
    restored.load_state_dict(state)
    restored.epoch_sampler.set_epoch(4)
    assert [b["ids"] for b in restored] == remaining


def test_loader_state_of_other_epoch_does_not_skip() -> None:
    reference = _loader()
    reference.epoch_sampler.set_epoch(1)
    full = [b["ids"] for b in reference]
    loader = _loader()
    loader.load_state_dict({"epoch": 0, "consumed": 2})
    loader.epoch_sampler.set_epoch(1)
    assert [b["ids"] for b in loader] == full


def test_loader_batches_hold_tensors_via_default_collate() -> None:
    loader = ResumableLoader([{"x": torch.tensor(float(i))} for i in range(8)], batch_size=4, seed=0)
    batches = list(loader)
    assert len(batches) == 2
    assert sorted(torch.cat([b["x"] for b in batches]).tolist()) == [float(i) for i in range(8)]


# ---------------------------------------------------------------- data folder and hub


def test_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LACOS_DATA_DIR", raising=False)
    assert data_dir(None) is None
    assert data_dir(str(tmp_path)) == tmp_path
    monkeypatch.setenv("LACOS_DATA_DIR", str(tmp_path))
    assert data_dir(None) == tmp_path
    with pytest.raises(DataError, match="data folder not found"):
        data_dir(str(tmp_path / "missing"))


def _force_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """HF_HUB_OFFLINE=1 in the environment and in the already-imported libraries' constants."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import datasets.config
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True, raising=False)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True, raising=False)


def test_hub_offline_error_mentions_data_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    _force_offline(monkeypatch)
    with pytest.raises(HubUnavailableError, match="LACOS_DATA_DIR") as info:
        load_hub("sentence-transformers/stsb", "test")
    assert "sentence-transformers/stsb" in str(info.value)


def test_recipe_without_data_dir_goes_to_hub(monkeypatch: pytest.MonkeyPatch) -> None:
    _force_offline(monkeypatch)
    with pytest.raises(HubUnavailableError, match="LACOS_DATA_DIR"):
        stsb("en", "test", None)


# ---------------------------------------------------------------- recipes on real data


def test_stsb_en_test(shared_data: Path) -> None:
    records = stsb("en", "test", shared_data)
    assert len(records) == 1379
    assert all(0.0 <= r["score"] <= 5.0 for r in records)
    assert all(isinstance(r["score"], float) for r in records)
    assert records[0] == {
        "anchor": "A girl is styling her hair.",
        "positive": "A girl is brushing her hair.",
        "score": 2.5,
    }
    # independent read of the same file
    frame = pd.read_csv(shared_data / "stsb" / "stsb-en-test.csv", header=None, keep_default_na=False)
    assert [r["anchor"] for r in records] == frame[0].tolist()
    assert [r["score"] for r in records] == pytest.approx(frame[2].astype(float).tolist())
    assert len({r["score"] for r in records}) > 10


def test_stsb_through_load_source(shared_data: Path) -> None:
    records = load_source(SourceConfig(recipe="stsb", split="dev", lang="de"), shared_data)
    assert len(records) == 1500 and set(records[0]) == {"anchor", "positive", "score"}


def _read_snli(path: Path) -> list[tuple[str, str, str]]:
    lines = path.read_text(encoding="utf-8").split("\n")
    assert lines[0].split("\t")[:3] == ["premise", "hypothesis", "label"]
    return [tuple(line.split("\t")[:3]) for line in lines[1:] if line]


def test_nli_train_triplets(shared_data: Path) -> None:
    records = load_source(SourceConfig(recipe="nli", split="train"), shared_data)
    assert len(records) > 1000
    assert all(set(r) == {"anchor", "positive", "negative"} for r in records)
    assert all(r[k].strip() for r in records for k in ("anchor", "positive", "negative"))
    rows = _read_snli(shared_data / "nli" / "snli-validation.tsv") + _read_snli(shared_data / "nli" / "snli-test.tsv")
    entail = {(p, h) for p, h, label in rows if label.strip() == "0"}
    contra = {(p, h) for p, h, label in rows if label.strip() == "2"}
    assert all((r["anchor"], r["positive"]) in entail for r in records)
    assert all((r["anchor"], r["negative"]) in contra for r in records)
    # every entailment pair whose premise has a contradiction is used
    with_contra = {p for p, _ in contra}
    expected = {(p, h) for p, h in entail if p in with_contra and h.strip()}
    assert {(r["anchor"], r["positive"]) for r in records} == expected


def test_nli_pairs_without_negatives(shared_data: Path) -> None:
    records = nli("test", shared_data, hard_negatives=False)
    assert all(set(r) == {"anchor", "positive"} for r in records)
    rows = _read_snli(shared_data / "nli" / "snli-test.tsv")
    assert len(records) == sum(1 for _, h, label in rows if label.strip() == "0" and h.strip())


def test_tatoeba_deu(shared_data: Path) -> None:
    src, eng = tatoeba("deu", shared_data)
    assert len(src) == len(eng) == 1000
    base = shared_data / "tatoeba" / "tatoeba.deu-eng"
    assert src == Path(f"{base}.deu").read_text(encoding="utf-8").splitlines()
    assert eng == Path(f"{base}.eng").read_text(encoding="utf-8").splitlines()
    assert all(s.strip() and e.strip() for s, e in zip(src, eng, strict=True))


def test_tatoeba_misaligned(tmp_path: Path) -> None:
    folder = tmp_path / "tatoeba"
    folder.mkdir()
    (folder / "tatoeba.xx-eng.xx").write_text("a\nb\n", encoding="utf-8")
    (folder / "tatoeba.xx-eng.eng").write_text("a\n", encoding="utf-8")
    with pytest.raises(DataError, match="2 xx lines but 1 English"):
        tatoeba("xx", tmp_path)
