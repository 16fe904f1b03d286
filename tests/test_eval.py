"""retrieval_accuracy on hand-made vectors; STS and bitext evaluators against independent numpy/scipy."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr

from lacos_lightning.errors import ConfigError
from lacos_lightning.eval import BitextEvaluator, STSEvaluator, build_evaluators
from lacos_lightning.eval.bitext import retrieval_accuracy
from lacos_lightning.models.config import EncoderConfig
from lacos_lightning.models.encoder import Encoder
from tests.conftest import TINY_BERT


@pytest.fixture(scope="module")
def encoder() -> Encoder:
    return Encoder(EncoderConfig(name="sentence-transformers/all-MiniLM-L6-v2", random_init=TINY_BERT, seed=1))


def _unit(deg: float, norm: float = 1.0) -> list[float]:
    return [norm * math.cos(math.radians(deg)), norm * math.sin(math.radians(deg))]


# ---------------------------------------------------------------- retrieval_accuracy


def test_retrieval_accuracy_hand_made_asymmetric() -> None:
    # src at 0, 10, 90 degrees; tgt at 4, 40, 85 degrees, with very different norms (cosine ignores them)
    src = torch.tensor([_unit(0), _unit(10, 3.0), _unit(90, 0.5)])
    tgt = torch.tensor([_unit(4, 0.1), _unit(40, 10.0), _unit(85, 1.0)])
    # src -> tgt: s0 -> t0 (4 deg) ok; s1 -> t0 (6 deg, vs 30 to t1) wrong; s2 -> t2 (5 deg) ok  => 2/3
    # tgt -> src: t0 -> s0 (4 vs 6) ok; t1 -> s1 (30 vs 50) ok; t2 -> s2 (5) ok                    => 3/3
    fwd, bwd = retrieval_accuracy(src, tgt)
    assert fwd == pytest.approx(2 / 3)
    assert bwd == pytest.approx(1.0)
    # swapping the sides swaps the directions
    assert retrieval_accuracy(tgt, src) == pytest.approx((1.0, 2 / 3))


def test_retrieval_accuracy_four_rows_3d() -> None:
    src = torch.tensor([[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0], [1.0, 1.0, 0]])
    # t0 = s0 exactly; t1 closer to s3 than to s1; t2 = s2; t3 between s0 and s3 but nearer s0
    tgt = torch.tensor([[1.0, 0, 0], [0.8, 1.0, 0], [0, 0, 2.0], [1.0, 0.2, 0]])
    # src->tgt: s0 -> t0 ok; s1 -> t1 (only one with y) ok; s2 -> t2 ok; s3 -> t1 (cos .99) not t3 => 3/4
    # tgt->src: t0 -> s0 ok; t1 -> s3 wrong; t2 -> s2 ok; t3 -> s0 wrong                          => 2/4
    fwd, bwd = retrieval_accuracy(src, tgt)
    assert (fwd, bwd) == pytest.approx((0.75, 0.5))


def _numpy_retrieval(src: np.ndarray, tgt: np.ndarray) -> tuple[float, float]:
    s = src / np.linalg.norm(src, axis=1, keepdims=True)
    t = tgt / np.linalg.norm(tgt, axis=1, keepdims=True)
    hits_fwd = hits_bwd = 0
    for i in range(len(s)):
        hits_fwd += int(np.argmax(t @ s[i]) == i)
        hits_bwd += int(np.argmax(s @ t[i]) == i)
    return hits_fwd / len(s), hits_bwd / len(s)


def test_retrieval_accuracy_random_against_numpy() -> None:
    rng = np.random.default_rng(2)
    src = rng.normal(size=(30, 8))
    tgt = src + rng.normal(scale=1.2, size=(30, 8))
    expected = _numpy_retrieval(src, tgt)
    assert 0 < expected[0] < 1 and expected[0] != expected[1]
    assert retrieval_accuracy(torch.tensor(src), torch.tensor(tgt)) == pytest.approx(expected)


# ---------------------------------------------------------------- STS evaluator

STS_RECORDS = [
    {"anchor": "A man is playing a guitar.", "positive": "A man plays the guitar.", "score": 4.8},
    {"anchor": "A woman is slicing an onion.", "positive": "Someone cuts an onion.", "score": 4.0},
    {"anchor": "A dog runs in the park.", "positive": "The stock market fell today.", "score": 0.0},
    {"anchor": "Kids play football.", "positive": "Children are playing soccer outside.", "score": 4.0},
    {"anchor": "The cat sleeps.", "positive": "A cat is sleeping on the sofa near the window.", "score": 3.2},
    {"anchor": "He drinks coffee.", "positive": "She is reading a long novel.", "score": 0.6},
    {"anchor": "Two people are dancing.", "positive": "Two people dance together.", "score": 4.6},
    {"anchor": "Rain falls on the city.", "positive": "It is raining in town.", "score": 3.9},
    {"anchor": "A plane takes off.", "positive": "A bird is eating seeds.", "score": 0.2},
    {"anchor": "hi", "positive": "hello there, how are you doing this fine morning?", "score": 1.5},
    {"anchor": "The boy climbs a tree.", "positive": "A child is climbing.", "score": 3.0},
    {"anchor": "A car is parked.", "positive": "A car is parked.", "score": 5.0},
]


def _independent_sts(encoder: Encoder, records: list[dict]) -> float:
    a = encoder.encode([r["anchor"] for r in records]).numpy().astype(np.float64)
    b = encoder.encode([r["positive"] for r in records]).numpy().astype(np.float64)
    cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    return spearmanr(cos, [r["score"] for r in records]).statistic * 100


@pytest.mark.parametrize("batch_size", [3, 64])
def test_sts_evaluator_matches_scipy(encoder: Encoder, batch_size: int) -> None:
    expected = _independent_sts(encoder, STS_RECORDS)
    assert abs(expected) > 1  # the random encoder gives a non-trivial ranking
    encoder.train()
    got = STSEvaluator("toy", STS_RECORDS, batch_size=batch_size).run(encoder, progress=False)
    assert set(got) == {"sts/toy/spearman"}
    assert got["sts/toy/spearman"] == pytest.approx(expected, abs=1e-3)
    assert encoder.training  # run() restores the mode


def test_sts_evaluator_is_reusable(encoder: Encoder) -> None:
    evaluator = STSEvaluator("toy", STS_RECORDS, batch_size=5)
    first = evaluator.run(encoder, progress=False)
    second = evaluator.run(encoder, progress=False)
    assert first == pytest.approx(second, abs=1e-6)


def test_sts_evaluator_perfect_and_inverse_scores(encoder: Encoder) -> None:
    """Gold scores equal to (or reversing) the encoder's own cosine ranking give +100 / -100."""
    a = encoder.encode([r["anchor"] for r in STS_RECORDS]).numpy()
    b = encoder.encode([r["positive"] for r in STS_RECORDS]).numpy()
    cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    ranks = np.argsort(np.argsort(cos)).astype(float)
    same = [dict(r, score=float(k)) for r, k in zip(STS_RECORDS, ranks, strict=True)]
    reverse = [dict(r, score=float(-k)) for r, k in zip(STS_RECORDS, ranks, strict=True)]
    assert STSEvaluator("p", same, 4).run(encoder, progress=False)["sts/p/spearman"] == pytest.approx(100, abs=1e-3)
    assert STSEvaluator("p", reverse, 4).run(encoder, progress=False)["sts/p/spearman"] == pytest.approx(-100, abs=1e-3)


# ---------------------------------------------------------------- bitext evaluator

SOURCE = [
    "Ich liebe dich.",
    "Wo ist der Bahnhof?",
    "Das Wetter ist heute schön.",
    "Guten Morgen",
    "Der Hund bellt laut.",
    "Ich trinke gern Tee mit Milch.",
    "Wir gehen morgen ins Kino.",
    "Das Buch liegt auf dem Tisch.",
    "Hallo",
    "Sie singt ein Lied.",
]
TARGET = [
    "I love you.",
    "Where is the train station?",
    "Das Wetter ist heute schön.",  # identical to its source: always found
    "Good morning",
    "Der Hund bellt laut.",  # identical
    "I like to drink tea with milk.",
    "We are going to the cinema tomorrow.",
    "Das Buch liegt auf dem Tisch!",  # near-identical
    "Hello",
    "She sings a song.",
]


def test_bitext_evaluator_matches_numpy(encoder: Encoder) -> None:
    src = encoder.encode(SOURCE).numpy().astype(np.float64)
    tgt = encoder.encode(TARGET).numpy().astype(np.float64)
    fwd, bwd = _numpy_retrieval(src, tgt)
    assert 0 < fwd < 1 or 0 < bwd < 1  # not a trivial case
    got = BitextEvaluator("toy", SOURCE, TARGET, batch_size=3).run(encoder, progress=False)
    assert got["bitext/toy/src2tgt"] == pytest.approx(fwd * 100, abs=1e-4)
    assert got["bitext/toy/tgt2src"] == pytest.approx(bwd * 100, abs=1e-4)
    assert got["bitext/toy/accuracy"] == pytest.approx((fwd + bwd) * 50, abs=1e-4)


def test_bitext_evaluator_identical_sides(encoder: Encoder) -> None:
    got = BitextEvaluator("same", SOURCE, SOURCE, batch_size=4).run(encoder, progress=False)
    assert got == pytest.approx(
        {"bitext/same/src2tgt": 100.0, "bitext/same/tgt2src": 100.0, "bitext/same/accuracy": 100.0}
    )


def test_bitext_evaluator_shuffled_targets(encoder: Encoder) -> None:
    """Targets that are the sources rotated by one: every nearest neighbour is off by one row."""
    rotated = SOURCE[1:] + SOURCE[:1]
    got = BitextEvaluator("rot", SOURCE, rotated, batch_size=4).run(encoder, progress=False)
    assert got["bitext/rot/src2tgt"] == pytest.approx(0.0) and got["bitext/rot/tgt2src"] == pytest.approx(0.0)


# ---------------------------------------------------------------- build_evaluators


def test_build_evaluators_sts_file(tmp_path: Path, encoder: Encoder) -> None:
    path = tmp_path / "pairs.tsv"
    path.write_text("".join(f"{r['anchor']}\t{r['positive']}\t{r['score']}\n" for r in STS_RECORDS), encoding="utf-8")
    (evaluator,) = build_evaluators([{"kind": "sts_file", "path": str(path), "name": "mine"}], root=None, batch_size=4)
    got = evaluator.run(encoder, progress=False)
    assert got["sts/mine/spearman"] == pytest.approx(_independent_sts(encoder, STS_RECORDS), abs=1e-3)


@pytest.mark.parametrize("spec", ["sts:en", "bleu:en:test", "tatoeba", {"kind": "sts_file"}, {"path": "x.csv"}])
def test_build_evaluators_bad_spec(spec) -> None:
    with pytest.raises(ConfigError):
        build_evaluators([spec], root=None)
