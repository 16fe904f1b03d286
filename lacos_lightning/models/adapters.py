"""Bottleneck adapters (Houlsby et al. 2019; Pfeiffer et al. 2020), several named ones on one frozen base.

An adapter is ``h + W_up f(W_down h + b_down) + b_up`` with a bottleneck of width ``m``, applied to the
output of a transformer sub-layer's output projection, before the residual connection and LayerNorm.
Houlsby places two per layer (after the attention output projection and after the feed-forward output),
Pfeiffer one (after the feed-forward output). ``W_up`` and ``b_up`` start at zero, so a new adapter is
the identity and the base model's outputs are unchanged until it trains.

Why our own: AdapterHub ``adapters`` pins an older transformers than ours, and peft has no bottleneck
adapters. The adapters are attached with forward hooks on the output Linear modules, so the base
model's modules and state dict stay untouched (8/4-bit bnb layers included) and many named adapters
can sit on one base, one active at a time or none (the base itself), like peft's adapters.
"""

from __future__ import annotations

import re
from typing import Any

import torch
from torch import nn

from lacos_lightning.errors import ConfigError

# Output projections relative to one transformer layer: (after attention, after the feed-forward block).
LAYER_OUTPUTS: dict[str, tuple[str, str]] = {
    "bert": ("attention.output.dense", "output.dense"),
    "roberta": ("attention.output.dense", "output.dense"),
    "xlm-roberta": ("attention.output.dense", "output.dense"),
    "mpnet": ("attention.output.dense", "output.dense"),
    "electra": ("attention.output.dense", "output.dense"),
    "bloom": ("self_attention.dense", "mlp.dense_4h_to_h"),
    "distilbert": ("attention.out_lin", "ffn.lin2"),
}
PLACEMENTS = ("houlsby", "pfeiffer")
ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "swish": nn.SiLU}


def default_adapter_targets(model_type: str, method: str) -> list[str]:
    """Output Linear names (relative to a layer) that a ``houlsby`` or ``pfeiffer`` adapter follows."""
    if model_type not in LAYER_OUTPUTS:
        raise ConfigError(
            f"no default bottleneck-adapter placement for model type {model_type!r}; set peft.target_modules "
            "to the output Linear names inside one layer (e.g. [attention.output.dense, output.dense])"
        )
    attention, ffn = LAYER_OUTPUTS[model_type]
    return [attention, ffn] if method == "houlsby" else [ffn]


def find_targets(named: dict[str, nn.Module], targets: list[str]) -> dict[str, nn.Module]:
    """Modules of ``named`` (``dict(model.named_modules())``) whose path is ``<...>.<layer index>.<target>``: a target names a module inside one layer.

    Anchoring at the layer index keeps ``output.dense`` (BERT's feed-forward output) from also
    matching ``attention.output.dense``.
    """
    found: dict[str, nn.Module] = {}
    for target in targets:
        pattern = re.compile(r"(^|\.)\d+\." + re.escape(target) + "$")
        hits = {name: mod for name, mod in named.items() if pattern.search(name)}
        if not hits:
            raise ConfigError(f"peft.target_modules: no module matches {target!r} inside a numbered layer")
        bad = [name for name, mod in hits.items() if not hasattr(mod, "out_features")]
        if bad:
            raise ConfigError(f"peft.target_modules: {bad[0]} is not a Linear layer; adapters follow output Linears")
        found.update(hits)
    return dict(sorted(found.items()))


class Bottleneck(nn.Module):
    """``h + W_up f(W_down h + b_down) + b_up``: one adapter, the identity at init.

    Args:
        dim: width of the sub-layer output ``h``.
        size: bottleneck width ``m``.
        activation: ``relu``, ``gelu`` or ``swish``.
        init_std: std of ``W_down`` at init (truncated at 2 std); ``W_up``, both biases start at zero.
    """

    def __init__(self, dim: int, size: int, activation: str = "relu", init_std: float = 1e-2) -> None:
        super().__init__()
        self.down = nn.Linear(dim, size)
        self.act = ACTIVATIONS[activation]()
        self.up = nn.Linear(size, dim)
        if init_std > 0:
            nn.init.trunc_normal_(self.down.weight, std=init_std, a=-2 * init_std, b=2 * init_std)
        else:  # weights about to be loaded
            nn.init.zeros_(self.down.weight)
        nn.init.zeros_(self.down.bias)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        x = hidden.to(self.down.weight.dtype)
        return (x + self.up(self.act(self.down(x)))).to(hidden.dtype)


class _AdapterHook:
    """Forward hook of one output Linear: its output through the active adapter's module for that layer.

    A class rather than a closure so that a model with adapters can be pickled (``ddp_spawn``) and copied.
    """

    def __init__(self, owner: BottleneckAdapters, key: str) -> None:
        self.owner, self.key = owner, key

    def __call__(self, module: nn.Module, inputs: Any, output: torch.Tensor) -> torch.Tensor:
        if self.owner.active is None:
            return output
        adapter = self.owner.adapters[self.owner.active]
        return adapter[self.key](output) if self.key in adapter else output


def _key(path: str) -> str:
    return path.replace(".", "-")  # ModuleDict keys cannot hold dots


class BottleneckAdapters(nn.Module):
    """Named bottleneck adapters hooked onto a base model; at most one is active.

    ``add`` creates an adapter, ``set_active(name)`` switches, ``set_active(None)`` gives the base
    model back exactly (the hooks return the output unchanged). The base model is not a submodule of
    this one: its weights stay where they are.

    Args:
        model: the (frozen) base transformers model.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.adapters = nn.ModuleDict()
        self.specs: dict[str, dict[str, Any]] = {}
        self.active: str | None = None
        self._named = dict(model.named_modules())
        self._hooked: dict[str, Any] = {}

    def add(self, name: str, method: str, targets: list[str], size: int, activation: str, init_std: float) -> None:
        """Create adapter ``name`` (``houlsby``/``pfeiffer`` placement given by ``targets``) and activate it."""
        if method not in PLACEMENTS:
            raise ConfigError(f"bottleneck adapter method {method!r} is unknown; choose one of {PLACEMENTS}")
        if name in self.adapters:
            raise ConfigError(f"an adapter named {name!r} is already loaded; choose another name")
        modules = find_targets(self._named, targets)
        group = nn.ModuleDict(
            {_key(p): Bottleneck(m.out_features, size, activation, init_std) for p, m in modules.items()}
        )
        self.adapters[name] = group
        self.specs[name] = {"method": method, "targets": list(targets), "size": size, "activation": activation}
        for path, module in modules.items():
            if path not in self._hooked:  # on the plain Linear under any peft wrapper, which survives unloading
                inner = module.get_base_layer() if hasattr(module, "get_base_layer") else module
                self._hooked[path] = inner.register_forward_hook(self._hook(_key(path)))
        self.set_active(name)

    def _hook(self, key: str) -> _AdapterHook:
        return _AdapterHook(self, key)

    def set_active(self, name: str | None) -> None:
        """Route the hooked layers through adapter ``name``, or through none (the base model)."""
        if name is not None and name not in self.adapters:
            raise ConfigError(f"no bottleneck adapter named {name!r}; loaded: {sorted(self.adapters)}")
        self.active = name

    def delete(self, name: str) -> None:
        """Drop adapter ``name`` (the hooks stay; layers without an adapter pass through)."""
        del self.adapters[name]
        self.specs.pop(name)
        if self.active == name:
            self.active = None

    def adapter_state(self, name: str) -> dict[str, torch.Tensor]:
        """The weights of adapter ``name`` (keys ``<layer path with -> / <down|up>.<weight|bias>``)."""
        return {k: v.detach().clone() for k, v in self.adapters[name].state_dict().items()}

    def load_adapter_state(self, name: str, state: dict[str, torch.Tensor]) -> None:
        """Load weights saved by :meth:`adapter_state` into adapter ``name`` (strict: same placement)."""
        self.adapters[name].load_state_dict(state, strict=True)

    def count(self, name: str) -> int:
        return sum(p.numel() for p in self.adapters[name].parameters())
