"""The domain preset end to end on a tiny backbone: eval-only frozen base, a trained adapter in the store."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from lacos_lightning.pipeline import Pipeline
from lacos_lightning.store import list_entries
from tests.conftest import compose_train, needs_data

pytestmark = needs_data
TINY = [
    "experiment=domain_adapters",
    "backbone=tiny-bert",
    "data=mqp",
    "data.max_train_samples=48",
    "trainer.limit_val_batches=1",
    "trainer.limit_test_batches=1",
    "trainer.precision=32",
]


def test_frozen_base_is_evaluated_without_training(tmp_path: Path) -> None:
    cfg = compose_train([*TINY, "peft=none", f"store.dir={tmp_path / 'store'}"], tmp_path / "run")
    record = Pipeline(cfg).run()
    assert record["status"] == "completed" and cfg.train is False
    assert {"domain/mqp-val/ap", "domain/mqp-test/ap", "domain/mqp-test/accuracy"} <= set(record["scores"])
    assert record["params"]["trainable_params"] == 0 and record["exports"] == {}
    assert not (tmp_path / "run" / "checkpoints").exists() and not (tmp_path / "store").exists()


def test_trained_adapter_lands_in_the_store_with_its_metadata(tmp_path: Path) -> None:
    from lacos_lightning.export import load_encoder

    cfg = compose_train(
        [*TINY, "peft=pfeiffer", "encoder.peft.adapter_size=8", f"store.dir={tmp_path / 'store'}"], tmp_path / "run"
    )
    record = Pipeline(cfg).run()
    assert record["status"] == "completed", record["error"]
    assert record["axes"]["domain"] == "mqp" and record["axes"]["adapter_size"] == 8
    (entry,) = list_entries(tmp_path / "store")
    assert entry["path"] == record["exports"]["adapter_store"]
    assert entry["method"] == "pfeiffer" and entry["domain"] == "mqp"
    assert entry["trainable_params"] == record["params"]["trainable_params"] == 2 * (2 * 64 * 8 + 8 + 64)
    assert entry["scores"]["domain/mqp-test/ap"] == record["scores"]["domain/mqp-test/ap"]
    saved = json.loads((tmp_path / "run" / "adapter" / "bottleneck.json").read_text())
    assert saved["method"] == "pfeiffer" and saved["size"] == 8
    reloaded = load_encoder(tmp_path / "run" / "adapter")  # the run's adapter folder round-trips too
    ups = [v for k, v in reloaded.bottleneck.adapter_state("default").items() if k.endswith("up.weight")]
    assert any(torch.count_nonzero(u) > 0 for u in ups)  # trained away from the zero init
