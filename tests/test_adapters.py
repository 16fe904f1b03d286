"""Bottleneck adapters against the papers' definition: the formula by hand, identity at init, placement, counts."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lacos_lightning.errors import ConfigError
from lacos_lightning.models.adapters import Bottleneck, BottleneckAdapters, default_adapter_targets, find_targets
from lacos_lightning.models.config import EncoderConfig
from lacos_lightning.models.encoder import Encoder
from tests.conftest import MINILM, TINY_BERT, TINY_BLOOM

TEXTS = ["A man is playing a guitar.", "Hi", "Sentence embeddings map text to vectors.", "two words"]


def tiny(model: dict, method: str, **peft) -> Encoder:
    return Encoder(EncoderConfig(name=MINILM, random_init=model, peft={"method": method, **peft})).eval()


def test_bottleneck_formula_by_hand() -> None:
    """h + W_up relu(W_down h + b_down) + b_up on a 3-d input with a 2-wide bottleneck, numbers by hand."""
    layer = Bottleneck(3, 2, "relu")
    with torch.no_grad():
        layer.down.weight.copy_(torch.tensor([[1.0, 0.0, -1.0], [0.5, 0.5, 0.5]]))
        layer.down.bias.copy_(torch.tensor([0.0, -1.0]))
        layer.up.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 2.0], [-1.0, 1.0]]))
        layer.up.bias.copy_(torch.tensor([0.1, 0.2, 0.3]))
    h = torch.tensor([[1.0, 2.0, 3.0], [3.0, 0.0, 1.0]])
    # row 1: down = [1-3, 0.5*6-1] = [-2, 2] -> relu [0, 2] -> up = [0, 4, 2] + b = [0.1, 4.2, 2.3]
    # row 2: down = [3-1, 0.5*4-1] = [2, 1] -> relu [2, 1] -> up = [2, 2, -1] + b = [2.1, 2.2, -0.7]
    expected = h + torch.tensor([[0.1, 4.2, 2.3], [2.1, 2.2, -0.7]])
    assert torch.allclose(layer(h), expected)


def test_bottleneck_starts_as_identity() -> None:
    layer = Bottleneck(16, 4, "gelu", init_std=1e-2)
    h = torch.randn(5, 16)
    assert torch.equal(layer(h), h)
    assert layer.down.weight.abs().max() <= 2e-2 and layer.down.weight.abs().max() > 0  # truncated at 2 std


@pytest.mark.parametrize("method", ["houlsby", "pfeiffer"])
def test_new_adapter_leaves_the_base_unchanged(method: str) -> None:
    base, adapted = tiny(TINY_BERT, "none"), tiny(TINY_BERT, method, adapter_size=8)
    assert torch.equal(base.encode(TEXTS), adapted.encode(TEXTS))


@pytest.mark.parametrize(
    ("model", "method", "suffixes"),
    [
        (TINY_BERT, "houlsby", {"attention.output.dense", "output.dense"}),
        (TINY_BERT, "pfeiffer", {"output.dense"}),
        (TINY_BLOOM, "houlsby", {"self_attention.dense", "mlp.dense_4h_to_h"}),
        (TINY_BLOOM, "pfeiffer", {"mlp.dense_4h_to_h"}),
    ],
)
def test_placement_and_parameter_count(model: dict, method: str, suffixes: set[str]) -> None:
    """Houlsby: 2 adapters per layer, Pfeiffer: 1, each after an output projection; 2dm + m + d parameters each."""
    m = 8
    enc = tiny(model, method, adapter_size=m)
    hooked = set(enc.bottleneck._hooked)
    layers = 2
    assert len(hooked) == layers * len(suffixes)
    for layer in range(layers):
        for suffix in suffixes:
            assert any(p.endswith(f"{layer}.{suffix}") for p in hooked), (layer, suffix, hooked)
    if model is TINY_BERT and method == "pfeiffer":
        assert not any("attention" in p for p in hooked)  # output.dense is anchored at the layer index
    d = 64
    per_adapter = 2 * d * m + m + d
    trainable = {n: p.numel() for n, p in enc.named_parameters() if p.requires_grad}
    assert sum(trainable.values()) == layers * len(suffixes) * per_adapter
    assert all(n.startswith("bottleneck.adapters.default.") for n in trainable)


def test_houlsby_sits_before_residual_and_layernorm() -> None:
    """BERT's attention output: LayerNorm(adapter(dense(x)) + input), recomputed by hand from the weights."""
    enc = tiny(TINY_BERT, "houlsby", adapter_size=4)
    adapter = enc.bottleneck.adapters["default"]["encoder-layer-0-attention-output-dense"]
    with torch.no_grad():
        for p in adapter.parameters():
            p.normal_(0, 0.5)
    block = enc.base_model.encoder.layer[0].attention.output
    x, residual = torch.randn(2, 5, 64), torch.randn(2, 5, 64)
    dense = x @ block.dense.weight.T + block.dense.bias
    adapted = dense + (
        torch.relu(dense @ adapter.down.weight.T + adapter.down.bias) @ adapter.up.weight.T + adapter.up.bias
    )
    expected = nn.functional.layer_norm(
        adapted + residual, (64,), block.LayerNorm.weight, block.LayerNorm.bias, block.LayerNorm.eps
    )
    assert torch.allclose(block(x, residual), expected, atol=1e-5)
    enc.bottleneck.set_active(None)
    plain = nn.functional.layer_norm(
        dense + residual, (64,), block.LayerNorm.weight, block.LayerNorm.bias, block.LayerNorm.eps
    )
    assert torch.allclose(block(x, residual), plain, atol=1e-5)


def test_targets_must_exist_and_be_linear() -> None:
    enc = tiny(TINY_BERT, "none")
    named = dict(enc.base_model.named_modules())
    with pytest.raises(ConfigError, match="no module matches"):
        find_targets(named, ["attention.nope"])
    with pytest.raises(ConfigError, match="not a Linear"):
        find_targets(named, ["attention.output"])
    with pytest.raises(ConfigError, match="no default bottleneck"):
        default_adapter_targets("t5", "houlsby")
    adapters = BottleneckAdapters(enc.base_model)
    adapters.add("a", "pfeiffer", ["output.dense"], 4, "relu", 1e-2)
    with pytest.raises(ConfigError, match="already loaded"):
        adapters.add("a", "pfeiffer", ["output.dense"], 4, "relu", 1e-2)
    with pytest.raises(ConfigError, match="no bottleneck adapter named"):
        adapters.set_active("b")


def test_encoder_with_adapters_pickles_and_copies() -> None:
    """ddp_spawn pickles the module; a copy must carry working, independent hooks."""
    import copy
    import pickle

    enc = tiny(TINY_BERT, "houlsby", adapter_size=4)
    with torch.no_grad():
        for p in enc.bottleneck.parameters():
            p.normal_(0, 0.1)
    expected = enc.encode(TEXTS)
    clone = pickle.loads(pickle.dumps(enc))
    assert torch.allclose(clone.encode(TEXTS), expected, atol=1e-6)
    twin = copy.deepcopy(enc)
    twin.bottleneck.set_active(None)
    assert torch.equal(enc.encode(TEXTS), expected) and not torch.allclose(twin.encode(TEXTS), expected)
