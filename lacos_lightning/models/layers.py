"""The transformer-layer stack of a backbone: find it, keep a subset of it, thin it, count its parameters.

A student initialised from a subset of a teacher's layers (``encoder.keep_layers``, LEALLA's and
DistilBERT's layer-selection initialisation) keeps the embeddings and the chosen layers, in the given
order, and its config's layer count is updated so a saved copy loads with the same shape.

A thinner student (``encoder.ffn_size``) keeps, in every layer, the feed-forward neurons that matter
most: neuron j's importance is the norm of its input row times the norm of its output column (the
largest its contribution to the layer's output can be, per unit of activation), a magnitude criterion of
structured pruning. The config's ``intermediate_size`` is updated so a saved copy loads.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from lacos_lightning.errors import ConfigError

# Where the layer list lives: BERT-like encoders (encoder.layer), BLOOM/GPT-2 (h), DistilBERT
# (transformer.layer), Llama-like and OPT decoders (layers, decoder.layers).
LAYER_PATHS = ("encoder.layer", "h", "transformer.layer", "layers", "decoder.layers", "transformer.h")


def _get(obj: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            return None
    return obj


def layer_stack(model: nn.Module) -> tuple[nn.Module, str, nn.ModuleList]:
    """``(owner, attribute, layers)`` of the transformer-layer list of a (possibly peft-wrapped) model."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    for path in LAYER_PATHS:
        layers = _get(base, path)
        if isinstance(layers, nn.ModuleList) and len(layers) > 0:
            owner_path, _, attr = path.rpartition(".")
            owner = _get(base, owner_path) if owner_path else base
            return owner, attr, layers
    raise ConfigError(f"cannot find the transformer layers of {type(base).__name__} (looked for {LAYER_PATHS})")


def select_layers(model: nn.Module, keep: list[int]) -> nn.Module:
    """Keep only layers ``keep`` (in that order) of ``model``, in place; returns the model."""
    owner, attr, layers = layer_stack(model)
    bad = [i for i in keep if not 0 <= i < len(layers)]
    if bad:
        raise ConfigError(f"encoder.keep_layers={keep}: the backbone has {len(layers)} layers (0..{len(layers) - 1})")
    kept = nn.ModuleList([layers[i] for i in keep])
    for new_index, layer in enumerate(kept):  # attention caches index layers by position
        for module in layer.modules():
            if hasattr(module, "layer_idx"):
                module.layer_idx = new_index
    setattr(owner, attr, kept)
    config = model.config
    config.num_hidden_layers = len(keep)  # BLOOM maps this onto n_layer
    if getattr(config, "layer_types", None):
        config.layer_types = [config.layer_types[i] for i in keep]
    return model


# Feed-forward (input Linear, output Linear) of a layer, by architecture family, and the config field
# that holds their width.
FFN_PATHS = (("intermediate.dense", "output.dense"),)  # BERT, RoBERTa, XLM-R, MiniLM, ELECTRA ...


def prune_ffn(model: nn.Module, size: int) -> nn.Module:
    """Keep the ``size`` most important feed-forward neurons of every layer of ``model``, in place."""
    import torch

    _, _, layers = layer_stack(model)
    config = model.config
    width = getattr(config, "intermediate_size", None)
    for layer in layers:
        pair = next(((a, b) for a, b in FFN_PATHS if isinstance(_get(layer, a), nn.Linear)), None)
        if pair is None or width is None:
            raise ConfigError(
                f"encoder.ffn_size: cannot thin the feed-forward layers of {config.model_type} "
                "(supported: BERT-like encoders with intermediate.dense and output.dense)"
            )
        up, down = _get(layer, pair[0]), _get(layer, pair[1])
        if not 1 <= size <= up.out_features:
            raise ConfigError(f"encoder.ffn_size={size} must be between 1 and the backbone's {up.out_features}")
        with torch.no_grad():
            importance = up.weight.float().norm(dim=1) * down.weight.float().norm(dim=0)
            keep = importance.topk(size).indices.sort().values
            new_up = nn.Linear(up.in_features, size, bias=up.bias is not None, dtype=up.weight.dtype)
            new_up.weight.copy_(up.weight[keep])
            if up.bias is not None:
                new_up.bias.copy_(up.bias[keep])
            new_down = nn.Linear(size, down.out_features, bias=down.bias is not None, dtype=down.weight.dtype)
            new_down.weight.copy_(down.weight[:, keep])
            if down.bias is not None:
                new_down.bias.copy_(down.bias)
        for path, module in ((pair[0], new_up), (pair[1], new_down)):
            owner_path, _, attr = path.rpartition(".")
            setattr(_get(layer, owner_path), attr, module.to(up.weight.device))
    config.intermediate_size = size
    return model


def size_counts(model: nn.Module) -> dict[str, int]:
    """Parameters of the input-embedding matrix, of the layer stack, and of everything but the embedding
    matrix (4-bit weights count as their unpacked number)."""

    def count(module: nn.Module) -> int:
        total = 0
        for param in module.parameters():
            n = param.numel()
            if getattr(param, "quant_state", None) is not None or param.__class__.__name__ == "Params4bit":
                n *= 2
            total += n
        return total

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    embedding = count(base.get_input_embeddings())
    _, _, layers = layer_stack(base)
    total = count(base)
    return {
        "embedding_params": embedding,
        "non_embedding_params": total - embedding,
        "layer_params": count(layers),
        "num_layers": len(layers),
    }
