"""Every peft method trains only what it should: counts by formula, frozen weights equal bit for bit after steps."""

from __future__ import annotations

import pytest
import torch

from lacos_lightning.errors import ConfigError
from lacos_lightning.losses.contrastive import cosent
from lacos_lightning.models.config import EncoderConfig, LoraSettings, PeftSettings
from lacos_lightning.models.encoder import Encoder
from tests.conftest import MINILM, TINY_BERT, TINY_BLOOM

PAIRS = [
    ("a man plays a guitar", "someone plays music", 1.0),
    ("the cat sleeps", "a stock market crash", 0.0),
    ("how long does flu last", "duration of influenza", 1.0),
    ("where to buy massage oil", "best bank in doha", 0.0),
]
D, LAYERS, FFN = 64, 2, 128


def train_steps(encoder: Encoder, steps: int = 3) -> None:
    """Real optimizer steps: CoSENT on a few labelled pairs, AdamW over the trainable parameters."""
    encoder.train()
    params = [p for p in encoder.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-2)
    a, b, y = zip(*PAIRS)
    for _ in range(steps):
        emb_a = encoder(encoder.tokenize(list(a)))
        emb_b = encoder(encoder.tokenize(list(b)))
        loss = cosent(emb_a, emb_b, torch.tensor(y), scale=20.0)
        opt.zero_grad()
        loss.backward()
        opt.step()


def snapshot(encoder: Encoder) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in encoder.named_parameters()}


def expected_trainable(model: dict, method: str, m: int = 8, r: int = 4) -> int:
    """Parameter counts from each method's definition on the tiny shapes."""
    is_bert = model["model_type"] == "bert"
    if method == "lora":  # bert: query, value (D x D); bloom: query_key_value (D x 3D)
        return LAYERS * (2 * r * (D + D) if is_bert else r * (D + 3 * D))
    if method == "ia3":  # a scaling vector per target: bert key, value (out D), output.dense x2 (ff: in FFN / in D)
        return LAYERS * (D + D + FFN + D) if is_bert else LAYERS * (3 * D + 4 * D)
    if method == "houlsby":
        return LAYERS * 2 * (2 * D * m + m + D)
    if method == "pfeiffer":
        return LAYERS * (2 * D * m + m + D)
    return 0


@pytest.mark.parametrize("model", [TINY_BERT, TINY_BLOOM], ids=["bert", "bloom"])
@pytest.mark.parametrize("method", ["lora", "ia3", "houlsby", "pfeiffer", "full", "none"])
def test_trains_only_what_it_should(model: dict, method: str) -> None:
    torch.manual_seed(0)
    cfg = EncoderConfig(name=MINILM, random_init=model, peft={"method": method, "r": 4, "adapter_size": 8})
    enc = Encoder(cfg)
    trainable = {n for n, p in enc.named_parameters() if p.requires_grad}
    counts = enc.parameter_counts()
    if method == "full":
        assert counts["trainable_params"] == counts["total_params"]
    else:
        assert counts["trainable_params"] == expected_trainable(model, method)
    if method == "none":
        assert not trainable
        return
    before = snapshot(enc)
    train_steps(enc)
    after = snapshot(enc)
    for name in before:
        if name in trainable:
            continue
        assert torch.equal(before[name], after[name]), f"{method}: frozen {name} changed"
    assert any(not torch.equal(before[n], after[n]) for n in trainable), f"{method}: nothing trained"


@pytest.mark.parametrize("bits", [8, 4])
@pytest.mark.parametrize("method", ["lora", "ia3", "houlsby", "pfeiffer"])
def test_methods_train_on_quantized_bases(method: str, bits: int) -> None:
    enc = Encoder(
        EncoderConfig(name=MINILM, random_init=TINY_BERT, bits=bits, peft={"method": method, "r": 4, "adapter_size": 8})
    )
    trainable = {n for n, p in enc.named_parameters() if p.requires_grad}
    assert enc.parameter_counts()["trainable_params"] == expected_trainable(TINY_BERT, method)
    before = snapshot(enc)
    train_steps(enc, steps=2)
    after = snapshot(enc)
    frozen = [n for n in before if n not in trainable]
    assert all(torch.equal(before[n], after[n]) for n in frozen)
    assert any(not torch.equal(before[n], after[n]) for n in trainable)


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"method": "adapterfusion"}, "peft.method"),
        ({"method": "houlsby", "adapter_size": 0}, "peft.adapter_size"),
        ({"method": "pfeiffer", "adapter_size": -3}, "peft.adapter_size"),
        ({"method": "houlsby", "adapter_activation": "tanh"}, "peft.adapter_activation"),
        ({"method": "lora", "feedforward_modules": ["output.dense"]}, "peft.feedforward_modules"),
    ],
)
def test_bad_peft_settings(values: dict, field: str) -> None:
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        PeftSettings(**values)


def test_lora_settings_name_is_kept() -> None:
    assert LoraSettings is PeftSettings and LoraSettings(method="ia3").method == "ia3"


def test_full_needs_32_or_16_bits_for_every_adapter_method_but_not_others() -> None:
    with pytest.raises(ConfigError, match="peft.method=full"):
        EncoderConfig(bits=8, peft={"method": "full"})
    for method in ("lora", "ia3", "houlsby", "pfeiffer", "none"):
        assert EncoderConfig(bits=4, peft={"method": method}).peft.method == method
