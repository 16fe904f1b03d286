"""Adapter store: round trip, switching on one loaded base, base-mismatch refusal, export, the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lacos_lightning.errors import ConfigError
from lacos_lightning.models.config import EncoderConfig
from lacos_lightning.models.encoder import Encoder
from lacos_lightning.store import activate, attach, list_entries, loaded, read_entry, save_to_store
from tests.conftest import MINILM, ROOT, TINY_BERT
from tests.test_peft_methods import train_steps

TEXTS = ["how long does the flu last", "Hi", "where can I buy massage oil in doha?", "two words"]


def trained(method: str, seed: int, steps: int = 3, base_seed: int = 0) -> Encoder:
    """A tiny-BERT encoder whose adapter trained a few real steps (different seeds: different adapters)."""
    torch.manual_seed(seed)
    cfg = EncoderConfig(
        name=MINILM, random_init=TINY_BERT, seed=base_seed, peft={"method": method, "r": 4, "adapter_size": 8}
    )
    enc = Encoder(cfg)
    train_steps(enc, steps)
    return enc.eval()


def base(seed: int = 0, bits: int = 32) -> Encoder:
    cfg = EncoderConfig(name=MINILM, random_init=TINY_BERT, seed=seed, bits=bits, peft={"method": "none"})
    return Encoder(cfg).eval()


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two domains x (LoRA, Houlsby) adapters saved into one store."""
    root = tmp_path_factory.mktemp("store")
    out = {}
    for method in ("lora", "houlsby", "ia3"):
        for domain, seed in (("mqp", 1), ("qatar", 2)):
            enc = trained(method, seed)
            entry = save_to_store(enc, root, domain=domain, scores={"domain/x-test/ap": 50.0 + seed})
            out[f"{domain}-{method}"] = entry
            torch.save(enc.encode(TEXTS), entry / "expected.pt")
    return out


def test_metadata_is_complete(store: dict[str, Path]) -> None:
    meta = read_entry(store["mqp-houlsby"])
    assert meta["method"] == "houlsby" and meta["domain"] == "mqp"
    assert meta["base"]["name"] == MINILM and len(meta["base"]["fingerprint"]) == 16
    assert meta["trainable_params"] == 2 * 2 * (2 * 64 * 8 + 8 + 64)
    assert meta["scores"] == {"domain/x-test/ap": 51.0}
    assert 0 < meta["trainable_pct"] < 5
    ids = [e["id"] for e in list_entries(store["mqp-lora"].parent)]
    assert len(ids) == 6 and len(set(ids)) == 6


@pytest.mark.parametrize("method", ["lora", "houlsby", "ia3"])
def test_round_trip_and_switching_without_reloading_the_base(store: dict[str, Path], method: str) -> None:
    enc = base()
    plain = enc.encode(TEXTS)
    backbone_params = {n: p.detach().clone() for n, p in enc.base_model.named_parameters()}
    a = attach(enc, store[f"mqp-{method}"], name="mqp")
    emb_a = enc.encode(TEXTS)
    assert torch.allclose(emb_a, torch.load(store[f"mqp-{method}"] / "expected.pt"), atol=1e-6)  # round trip
    b = attach(enc, store[f"qatar-{method}"], name="qatar")
    emb_b = enc.encode(TEXTS)
    assert torch.allclose(emb_b, torch.load(store[f"qatar-{method}"] / "expected.pt"), atol=1e-6)
    assert not torch.allclose(emb_a, emb_b, atol=1e-4)  # switching domains changes the embeddings
    activate(enc, None)
    assert torch.equal(enc.encode(TEXTS), plain)  # back to the base exactly
    activate(enc, a)
    assert torch.equal(enc.encode(TEXTS), emb_a)  # and back to an adapter exactly
    activate(enc, b)
    assert torch.equal(enc.encode(TEXTS), emb_b)
    assert sorted(loaded(enc)) == ["mqp", "qatar"]
    for n, p in enc.base_model.named_parameters():  # the base weights never changed
        if n in backbone_params:
            assert torch.equal(p, backbone_params[n])


def test_bottleneck_and_lora_share_one_base(store: dict[str, Path]) -> None:
    enc = base()
    attach(enc, store["mqp-lora"], name="lora")
    attach(enc, store["qatar-houlsby"], name="houlsby")
    assert torch.allclose(enc.encode(TEXTS), torch.load(store["qatar-houlsby"] / "expected.pt"), atol=1e-6)
    activate(enc, "lora")
    assert torch.allclose(enc.encode(TEXTS), torch.load(store["mqp-lora"] / "expected.pt"), atol=1e-6)


def test_adapter_of_another_base_is_refused(store: dict[str, Path]) -> None:
    other = base(seed=1)  # same architecture and name, different weights
    with pytest.raises(ConfigError, match="was trained on base .* this encoder's base"):
        attach(other, store["mqp-houlsby"])
    assert not loaded(other)


def test_adapters_load_onto_a_quantized_base(store: dict[str, Path]) -> None:
    enc = base(bits=8)
    attach(enc, store["mqp-lora"])
    attach(enc, store["mqp-houlsby"])
    expected = torch.load(store["mqp-houlsby"] / "expected.pt")
    assert torch.nn.functional.cosine_similarity(enc.encode(TEXTS), expected).min() > 0.99


def test_lora_and_ia3_switch_on_one_base(store: dict[str, Path]) -> None:
    """peft holds one tuner type per model: switching type unloads and re-injects, the base stays loaded."""
    enc = base()
    plain = enc.encode(TEXTS)
    weights = {n: p.detach().clone() for n, p in enc.backbone.named_parameters()}
    with pytest.raises(ConfigError, match="no adapter named"):
        activate(enc, "nope")
    attach(enc, store["mqp-lora"], name="lora")
    attach(enc, store["qatar-ia3"], name="ia3")
    attach(enc, store["mqp-houlsby"], name="houlsby")
    expected = {
        k: torch.load(store[e] / "expected.pt")
        for k, e in [("lora", "mqp-lora"), ("ia3", "qatar-ia3"), ("houlsby", "mqp-houlsby")]
    }
    for name in ("houlsby", "ia3", "lora", None, "ia3", "houlsby", "lora"):
        activate(enc, name)
        got = enc.encode(TEXTS)
        if name is None:
            assert torch.equal(got, plain)
        else:
            assert torch.allclose(got, expected[name], atol=1e-6), name
    activate(enc, None)
    for n, p in enc.base_model.named_parameters():
        if n in weights:
            assert torch.equal(p, weights[n])


def test_type_switch_refuses_to_drop_an_unsaved_adapter(store: dict[str, Path]) -> None:
    enc = trained("lora", seed=3)  # its own adapter exists only in memory
    attach(enc, store["mqp-ia3"], name="ia3", activate_it=False)
    with pytest.raises(ConfigError, match="exist only in memory"):
        activate(enc, "ia3")


@pytest.mark.parametrize("method", ["lora", "houlsby"])
def test_export_to_sentence_transformers(store: dict[str, Path], method: str, tmp_path: Path) -> None:
    """LoRA is merged into the weights; a bottleneck adapter travels as our module named in modules.json."""
    from sentence_transformers import SentenceTransformer

    from lacos_lightning.adapter_cli import export_entry

    folder = export_entry(store[f"mqp-{method}"], tmp_path / "st")
    modules = json.loads((folder / "modules.json").read_text())
    assert ("AdaptedTransformer" in modules[0]["type"]) == (method == "houlsby")
    model = SentenceTransformer(str(folder), device="cpu", trust_remote_code=True)
    got = torch.tensor(model.encode(TEXTS))
    assert torch.allclose(got, torch.load(store[f"mqp-{method}"] / "expected.pt"), atol=1e-5)


def test_cli_lists_the_store(store: dict[str, Path]) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    root = store["mqp-lora"].parent
    cmd = [sys.executable, "-m", "lacos_lightning.adapter_cli", "list", "--store", str(root)]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    rows = [line for line in proc.stdout.splitlines() if line.startswith("| mqp-") or line.startswith("| qatar-")]
    assert len(rows) == 6 and any("houlsby" in r and "4,384" in r for r in rows)
    bad = subprocess.run(
        [*cmd[:-1], str(root / "nope")], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert bad.returncode == 2 and bad.stderr.strip().startswith("error: adapter store")
