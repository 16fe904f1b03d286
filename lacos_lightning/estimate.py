"""``lacos-estimate``: predicted peak training memory of a configuration, term by term.

The estimate adds up, in bytes:

- **weights**: parameter counts from the architecture formulas (BLOOM, BERT) times the bytes per weight
  of the bit width: 32 -> 4, 16 -> 2 (bf16), 8 -> 1 + one fp32 scale per output row (LLM.int8), 4 -> 0.5 +
  one fp32 absmax per block of 64 (nf4). Only ``nn.Linear`` weights are quantized; at 8/4 bits peft's
  ``prepare_model_for_kbit_training`` casts every other parameter (embeddings, LayerNorms, biases) to fp32.
- **adapter / gradients / optimizer**: trainable parameters (LoRA ``r * (in + out)`` per adapted linear, fp32;
  or every weight for ``peft.method=full``), one gradient each, and the optimizer states: AdamW two states in
  the parameter's dtype (8 bytes per fp32 parameter), bitsandbytes 8-bit AdamW 2 bytes per parameter plus
  blockwise absmax (tensors under 4096 elements keep 32-bit states, 8 bytes).
- **activations**: what autograd keeps for the backward pass, counted per layer from the attention and MLP
  of the architecture (batch of texts x sequence length x hidden size x layers, the attention matrices x
  heads), the LoRA inputs and dropout masks, and, at 8 bits, the inputs bitsandbytes' int8 matmul keeps.
  Gradient checkpointing keeps only each layer's input plus one layer's activations during recomputation.
- **backend**: what the device adds.

  * ``cuda`` (the paper's setting; NOT calibrated here, no GPU was available): weights in their quantized
    size, a transient workspace for the largest layer, and the CUDA context (0.5 GiB by default).
  * ``cpu`` (this project's default device; calibrated with ``bench/bench_estimate.py`` on this machine:
    torch CPU kernels, glibc malloc, bitsandbytes 0.50 CPU kernels). Resident memory (RSS) is counted:

    - a checkpoint whose dtype equals the load dtype stays memory-mapped: at 32 bits the weights are file
      pages, and embedding rows of token ids the tokenizer never produces are never read;
    - at 8/4 bits the unconverted fp32 embedding keeps that mapping alive, so the fp32 pages read to
      quantize the linear weights stay resident, and the freed fp16 copies bitsandbytes quantizes from stay
      with the allocator: 8-bit therefore takes MORE memory than bf16 on a CPU (as shared/REFERENCE.md
      measured), and int8 training dequantizes each weight to fp32 in forward and backward;
    - freed temporaries stay with the allocator: RSS grows by :data:`CPU_SAVED_FACTOR` x the saved
      activations plus :data:`CPU_LAYER_TEMPORARIES` (tokens x hidden) tensors, plus
      :data:`CPU_RUNTIME_GIB` for the first step (code pages, thread pools);
    - loading at 16 bits reads the whole checkpoint while making the bf16 copy: that can be the peak.

    lacos-estimate experiment=lacos_nli backbone=bloom-7b1 --backend cuda
    lacos-estimate backbone=bloom-560m-random encoder.bits=4 --seq-len 64
    lacos-estimate --paper-table
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from lacos_lightning.errors import ConfigError, exit_on_user_error, require

GIB = 1024**3
CONF_DIR = Path(__file__).resolve().parent.parent / "conf"
BACKENDS = ("cpu", "cuda")
OPTIMIZERS = ("adamw", "adamw8bit")
DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
DEFAULT_LORA_TARGETS = {"bloom": ["query_key_value"], "bert": ["query", "value"]}
PAPER_MODELS = ("bloom-560m", "bloom-1b1", "bloom-1b7", "bloom-3b", "bloom-7b1")
PAPER_MEMORY_GIB = 32.0
# CPU constants, fitted on the four 32-bit rows of bench/results/estimate.json (this machine: torch 2.13 CPU
# kernels, glibc malloc, 1 thread); the other configurations there are held out.
CPU_SAVED_FACTOR = 1.35  # resident growth per byte of saved activations (allocator fragmentation)
CPU_LAYER_TEMPORARIES = 80  # plus this many (tokens x hidden) activations: one or two layers' temporaries
CPU_RUNTIME_GIB = 0.05  # first training step: kernel code pages, thread pools, autograd
CPU_LOAD_RUNTIME_GIB = 0.02  # tokenizer and model objects while loading
CUDA_CONTEXT_GIB = 0.5
BNB_MIN_8BIT_SIZE = 4096  # bitsandbytes optimizers keep 32-bit states below this many elements
NF4_BLOCK = 64
OPTIM_8BIT_BLOCK = 256


# -- architecture ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Shape:
    """The sizes that decide parameter count and activation memory.

    Attributes:
        model_type: ``bloom`` or ``bert``.
        hidden_size: width ``h``.
        num_layers: transformer blocks ``L``.
        num_heads: attention heads ``a``.
        vocab_size: rows of the token embedding ``V``.
        intermediate_size: MLP width (BLOOM: ``4h``).
        max_position_embeddings: BERT position embeddings.
        type_vocab_size: BERT token-type embeddings.
        pooler: BERT ``AutoModel`` adds a pooler (``h x h`` dense).
    """

    model_type: str
    hidden_size: int
    num_layers: int
    num_heads: int
    vocab_size: int
    intermediate_size: int = 0
    max_position_embeddings: int = 0
    type_vocab_size: int = 0
    pooler: bool = False

    def __post_init__(self) -> None:
        require(self.model_type in ("bloom", "bert"), f"no parameter formula for model type {self.model_type!r}")
        if not self.intermediate_size:
            object.__setattr__(self, "intermediate_size", 4 * self.hidden_size)


@dataclass(frozen=True)
class Linear:
    """One kind of ``nn.Linear`` in a block (``count`` copies in the model)."""

    name: str
    in_features: int
    out_features: int
    count: int
    bias: bool = True


def shape_from_dict(values: dict[str, Any], default_vocab: int | None = None) -> Shape:
    """A :class:`Shape` from transformers config values (BLOOM or BERT names) or ``encoder.random_init``."""
    from transformers import AutoConfig

    values = dict(values)
    model_type = values.pop("model_type", None)
    require(model_type is not None, "a backbone shape needs a model_type (bloom or bert)")
    if "vocab_size" not in values and default_vocab is not None:
        values["vocab_size"] = default_vocab
    try:
        config = AutoConfig.for_model(model_type, **values)
    except (ValueError, TypeError) as err:
        raise ConfigError(f"not a valid {model_type} config {values}: {err}") from err
    return shape_from_config(config)


def shape_from_config(config: Any) -> Shape:
    """A :class:`Shape` from a transformers ``PretrainedConfig``."""
    mt = config.model_type
    if mt == "bloom":
        return Shape("bloom", config.hidden_size, config.n_layer, config.n_head, config.vocab_size)
    if mt == "bert":
        return Shape(
            "bert",
            config.hidden_size,
            config.num_hidden_layers,
            config.num_attention_heads,
            config.vocab_size,
            config.intermediate_size,
            config.max_position_embeddings,
            config.type_vocab_size,
            pooler=True,
        )
    raise ConfigError(f"no parameter formula for model type {mt!r} (bloom and bert are modelled)")


def linears(shape: Shape) -> list[Linear]:
    """Every ``nn.Linear`` of the backbone, by kind; names as peft matches them."""
    h, i, n = shape.hidden_size, shape.intermediate_size, shape.num_layers
    if shape.model_type == "bloom":
        return [
            Linear("self_attention.query_key_value", h, 3 * h, n),
            Linear("self_attention.dense", h, h, n),
            Linear("mlp.dense_h_to_4h", h, i, n),
            Linear("mlp.dense_4h_to_h", i, h, n),
        ]
    out = [
        Linear("attention.self.query", h, h, n),
        Linear("attention.self.key", h, h, n),
        Linear("attention.self.value", h, h, n),
        Linear("attention.output.dense", h, h, n),
        Linear("intermediate.dense", h, i, n),
        Linear("output.dense", i, h, n),
    ]
    if shape.pooler:
        out.append(Linear("pooler.dense", h, h, 1))
    return out


def parameter_counts(shape: Shape) -> dict[str, int]:
    """Parameters by part: embeddings, linear weights, linear biases, norms and the total.

    BLOOM: ``V h + 4h + L (12 h^2 + 13 h)``; BERT: ``(V + P + T) h + 2h + L (4h^2 + 2hI + 9h + I) + h^2 + h``.
    """
    h, n = shape.hidden_size, shape.num_layers
    lin = linears(shape)
    weights = sum(x.in_features * x.out_features * x.count for x in lin)
    biases = sum(x.out_features * x.count for x in lin if x.bias)
    if shape.model_type == "bloom":
        embeddings = shape.vocab_size * h
        norms = 2 * h + n * 4 * h + 2 * h  # embedding LN, two LNs per block, final LN
    else:
        embeddings = (shape.vocab_size + shape.max_position_embeddings + shape.type_vocab_size) * h
        norms = 2 * h + n * 4 * h
    return {
        "embeddings": embeddings,
        "linear_weights": weights,
        "linear_biases": biases,
        "norms": norms,
        "total": embeddings + weights + biases + norms,
    }


def _matches(name: str, target: str) -> bool:
    return name == target or name.endswith("." + target)


# -- setup -------------------------------------------------------------------------------------------
@dataclass
class Setup:
    """What a training run does with the backbone.

    Attributes:
        bits: 32, 16, 8 or 4.
        peft_method: ``lora``, ``none`` or ``full``.
        lora_r: LoRA rank.
        lora_targets: adapted module names; ``None`` = peft's default for the architecture.
        lora_dropout: LoRA input dropout (a mask and a copy of the input are kept when > 0).
        projection_dim: trainable projection head size, if any.
        optimizer: ``adamw`` or ``adamw8bit``.
        batch_texts: texts per step (pairs x 2 or triplets x 3 for the Siamese towers).
        seq_len: padded tokens per text.
        gradient_checkpointing: keep only layer inputs, recompute the rest in the backward pass.
        dtype: ``encoder.dtype``, the load dtype of the non-quantized parts (CPU: a checkpoint already in
            this dtype is memory-mapped instead of copied).
        checkpoint_bytes_per_param: dtype size of the checkpoint on disk (CPU terms; our random
            backbones are saved in fp32).
        vocab_in_use: token ids the tokenizer can produce; embedding rows above it are never read, which
            matters on the CPU where a checkpoint in the load dtype stays memory-mapped. ``None`` = every row.
    """

    bits: int = 8
    peft_method: str = "lora"
    lora_r: int = 8
    lora_targets: list[str] | None = None
    lora_dropout: float = 0.05
    projection_dim: int | None = None
    optimizer: str = "adamw8bit"
    batch_texts: int = 16
    seq_len: int = 64
    gradient_checkpointing: bool = False
    dtype: str = "float32"
    checkpoint_bytes_per_param: int = 4
    vocab_in_use: int | None = None

    def __post_init__(self) -> None:
        require(self.bits in (32, 16, 8, 4), f"bits={self.bits} is not one of 32, 16, 8, 4")
        require(self.peft_method in ("lora", "none", "full"), f"peft method {self.peft_method!r} is unknown")
        require(self.optimizer in OPTIMIZERS, f"optimizer {self.optimizer!r} is not one of {OPTIMIZERS}")
        require(self.batch_texts >= 1 and self.seq_len >= 1, "batch_texts and seq_len must be >= 1")
        require(self.lora_r >= 1, f"lora_r={self.lora_r} must be >= 1")
        require(self.dtype in DTYPE_BYTES, f"dtype {self.dtype!r} is not one of {tuple(DTYPE_BYTES)}")
        require(
            self.peft_method != "full" or self.bits in (32, 16),
            "full fine-tuning needs bits 32 or 16 (see peft.method)",
        )


@dataclass
class Estimate:
    """Bytes per term; ``peak = max(load_peak, train_peak)``."""

    backend: str
    params: dict[str, int]
    trainable_params: int
    weights: float
    adapter: float
    gradients: float
    optimizer: float
    activations: float
    workspace: float
    backend_terms: dict[str, float] = field(default_factory=dict)
    load_peak: float = 0.0
    train_peak: float = 0.0

    @property
    def peak(self) -> float:
        return max(self.load_peak, self.train_peak)

    def as_gib(self) -> dict[str, Any]:
        """Every term in GiB (rounded), for tables and JSON."""
        out: dict[str, Any] = {
            "backend": self.backend,
            "total_params": self.params["total"],
            "trainable_params": self.trainable_params,
        }
        for key in ("weights", "adapter", "gradients", "optimizer", "activations", "workspace"):
            out[f"{key}_gib"] = round(getattr(self, key) / GIB, 4)
        out.update({f"{k}_gib": round(v / GIB, 4) for k, v in self.backend_terms.items()})
        out.update(
            load_peak_gib=round(self.load_peak / GIB, 4),
            train_peak_gib=round(self.train_peak / GIB, 4),
            peak_gib=round(self.peak / GIB, 4),
        )
        return out


# -- the terms ---------------------------------------------------------------------------------------
def linear_weight_bytes(lin: Linear, bits: int) -> float:
    """Bytes of one linear's weight matrix at ``bits``, quantization constants included (one copy)."""
    n = lin.in_features * lin.out_features
    if bits == 32:
        return 4.0 * n
    if bits == 16:
        return 2.0 * n
    if bits == 8:
        return n + 4.0 * lin.out_features  # int8 + fp32 row scale (SCB)
    return n / 2 + 4.0 * math.ceil(n / NF4_BLOCK)  # packed nf4 + fp32 absmax per block


def other_param_bytes(bits: int) -> int:
    """Bytes per non-quantized parameter: 8/4-bit models get them cast to fp32 by peft."""
    return {32: 4, 16: 2}.get(bits, 4)


def adapter_tensors(shape: Shape, setup: Setup) -> list[int]:
    """Element counts of every trainable tensor (LoRA A and B per adapted linear, or every weight)."""
    h = shape.hidden_size
    head = [h * setup.projection_dim, setup.projection_dim] if setup.projection_dim else []
    if setup.peft_method == "none":
        return head
    if setup.peft_method == "full":
        counts = parameter_counts(shape)
        tensors = [x.in_features * x.out_features for x in linears(shape) for _ in range(x.count)]
        rest = counts["total"] - counts["linear_weights"]
        return tensors + [rest] + head
    targets = setup.lora_targets or DEFAULT_LORA_TARGETS[shape.model_type]
    adapted = [x for x in linears(shape) if any(_matches(x.name, t) for t in targets)]
    require(bool(adapted), f"LoRA targets {targets} match no linear of a {shape.model_type} model")
    r = setup.lora_r
    return [n for x in adapted for _ in range(x.count) for n in (r * x.in_features, x.out_features * r)] + head


def optimizer_bytes(tensors: Sequence[int], name: str, param_bytes: int) -> float:
    """AdamW: two states in the parameter dtype; 8-bit AdamW: 2 bytes + absmax (32-bit under 4096 elements)."""
    if name == "adamw":
        return float(sum(2 * param_bytes * n for n in tensors))
    total = 0.0
    for n in tensors:
        if n < BNB_MIN_8BIT_SIZE:
            total += 8.0 * n
        else:
            total += 2.0 * n + 2 * 4.0 * math.ceil(n / OPTIM_8BIT_BLOCK)
    return total


def activation_bytes(shape: Shape, setup: Setup) -> tuple[float, float]:
    """``(saved, workspace)``: bytes autograd keeps for backward, and the largest transient of one layer."""
    b, s = setup.batch_texts, setup.seq_len
    t = b * s
    h, i, a, n = shape.hidden_size, shape.intermediate_size, shape.num_heads, shape.num_layers
    act = 2 if setup.bits == 16 else 4  # bf16 at 16 bits; fp32 otherwise (LayerNorms are fp32 at 8/4 bits)
    scores = b * a * s * s
    targets = setup.lora_targets or DEFAULT_LORA_TARGETS[shape.model_type]
    lin = linears(shape)
    # LoRA: the dropout output (fp32, the adapter's dtype) and its mask per adapted linear, rank-r output
    lora = 0.0
    if setup.peft_method == "lora":
        for x in lin:
            if x.count == shape.num_layers and any(_matches(x.name, tg) for tg in targets):
                lora += t * x.in_features * (4 + (1 if setup.lora_dropout > 0 else 0)) + t * setup.lora_r * 4
    int8_inputs = t * sum(x.in_features for x in lin if x.count == n) * act if setup.bits == 8 else 0.0
    if shape.model_type == "bloom":
        # LN inputs (2), q/k/v copies (3), GELU input (4h); fp32 softmax (+ a bf16 copy at 16 bits)
        layer = t * act * (2 * h + 3 * h + i) + scores * (4 + (act if act != 4 else 0))
        outside = 2 * t * h * act  # embedding LayerNorm input, final LayerNorm input
    else:
        # q/k/v (3), LN inputs (2), GELU input, two hidden dropout masks; probs + dropout mask + dropout output
        layer = t * act * (5 * h + i) + 2 * t * h + scores * (2 * act + 1)
        outside = t * h * (act + 1)
    if setup.peft_method == "full" and setup.bits in (32, 16):
        layer += t * act * (3 * h + i)  # inputs of the trainable linears the frozen case need not keep
    per_layer = layer + lora + int8_inputs
    saved = n * t * h * act + per_layer + outside if setup.gradient_checkpointing else n * per_layer + outside
    workspace = max(2.0 * scores * 4, 2.0 * t * i * act) + t * 3 * h * act
    return saved, workspace


def estimate_memory(shape: Shape, setup: Setup, backend: str = "cuda") -> Estimate:
    """Predicted peak training memory of ``shape`` trained as ``setup`` on ``backend``."""
    require(backend in BACKENDS, f"backend {backend!r} is not one of {BACKENDS}")
    counts = parameter_counts(shape)
    lin = linears(shape)
    other = counts["embeddings"] + counts["norms"] + counts["linear_biases"]
    base = sum(linear_weight_bytes(x, setup.bits) * x.count for x in lin) + other * other_param_bytes(setup.bits)
    tensors = adapter_tensors(shape, setup)
    trainable = sum(tensors)
    full = setup.peft_method == "full"
    param_bytes = other_param_bytes(setup.bits) if full else 4  # LoRA adapters and heads are fp32
    adapter = 0.0 if full else 4.0 * trainable  # full fine-tuning trains the weights already counted
    gradients = float(param_bytes * trainable)
    optim = optimizer_bytes(tensors, setup.optimizer, param_bytes)
    saved, workspace = activation_bytes(shape, setup)
    largest = max(x.in_features * x.out_features for x in lin)
    terms: dict[str, float] = {}
    if backend == "cuda":
        if setup.bits in (8, 4):
            workspace += 2.0 * largest  # fp16 dequantized / int8-quantized copy of the largest weight
        terms["cuda_context"] = CUDA_CONTEXT_GIB * GIB
        train = base + adapter + gradients + optim + saved + workspace + terms["cuda_context"]
        load = base + adapter + 4.0 * largest + terms["cuda_context"]
        return Estimate(
            backend, counts, trainable, base, adapter, gradients, optim, saved, workspace, terms, load, train
        )
    # cpu: resident pages, allocator growth, runtime (see the module docstring)
    ckpt = setup.checkpoint_bytes_per_param
    t_h = setup.batch_texts * setup.seq_len * shape.hidden_size * (2 if setup.bits == 16 else 4)
    emb_bytes = counts["embeddings"] * other_param_bytes(setup.bits)
    load_bytes = 4 if setup.bits == 32 else DTYPE_BYTES[setup.dtype]
    mapped = setup.bits != 16 and ckpt == load_bytes  # loaded without conversion: memory-mapped file pages
    if mapped:
        rows = min(shape.vocab_size, setup.vocab_in_use or shape.vocab_size)
        terms["embedding_rows_never_read"] = -emb_bytes * (1 - rows / shape.vocab_size)
    if setup.bits in (8, 4):
        if mapped:
            terms["checkpoint_pages_kept"] = float(ckpt * counts["linear_weights"])
        terms["quantization_leftover"] = 2.0 * counts["linear_weights"]  # freed fp16 copies the allocator keeps
        terms["dequantize_transient"] = (2.0 if setup.bits == 8 else 1.0) * 4 * largest
    terms["allocator_growth"] = (CPU_SAVED_FACTOR - 1) * saved + CPU_LAYER_TEMPORARIES * t_h
    terms["runtime"] = CPU_RUNTIME_GIB * GIB
    train = base + adapter + gradients + optim + saved + sum(terms.values())
    if setup.bits == 16:
        load = ckpt * counts["total"] + base  # the whole checkpoint is read while the bf16 copy is made
    elif setup.bits == 32:
        load = 0.0 if mapped else base + ckpt * counts["total"]
    else:
        # a mapped embedding is not read while loading; the linear weights are read, quantized and kept mapped
        load = base - (emb_bytes if mapped else 0.0) + terms.get("checkpoint_pages_kept", 0.0)
        load += terms["quantization_leftover"]
    load += CPU_LOAD_RUNTIME_GIB * GIB
    return Estimate(backend, counts, trainable, base, adapter, gradients, optim, saved, workspace, terms, load, train)


# -- backbones and configs ---------------------------------------------------------------------------
def _backbone_yamls() -> dict[str, dict[str, Any]]:
    from omegaconf import OmegaConf

    out = {}
    for path in sorted((CONF_DIR / "backbone").glob("*.yaml")):
        out[path.stem] = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
    return out


def _tokenizer_vocab(name: str) -> int | None:
    try:
        from transformers import AutoTokenizer

        from lacos_lightning.models.backbone import resolve_name

        return len(AutoTokenizer.from_pretrained(resolve_name(name)))
    except Exception:  # no tokenizer offline: the config's vocab_size is used instead
        return None


def shape_for_backbone(name: str, random_init: dict[str, Any] | None = None) -> Shape:
    """Shape of a backbone: ``random_init`` values, a conf/backbone name, a local folder or a hub id.

    Hub ids that cannot be read offline fall back to the shape in ``conf/backbone/<x>-random.yaml`` of
    the config whose ``name`` is that id (e.g. ``bigscience/bloom-560m`` -> ``bloom-560m-random.yaml``).
    """
    yamls = _backbone_yamls()
    if random_init is None and name in yamls:
        entry = yamls[name]
        name, random_init = entry.get("name", name), entry.get("random_init")
    if random_init:
        vocab = None if "vocab_size" in random_init else _tokenizer_vocab(name)
        return shape_from_dict(random_init, default_vocab=vocab)
    from transformers import AutoConfig

    from lacos_lightning.models.backbone import resolve_name

    try:
        return shape_from_config(AutoConfig.from_pretrained(resolve_name(name)))
    except (OSError, ValueError):
        pass
    for stem, entry in yamls.items():
        if entry.get("name") == name and f"{stem}-random" in yamls:
            return shape_from_dict(yamls[f"{stem}-random"]["random_init"])
    raise ConfigError(
        f"cannot read the config of {name!r} offline and no conf/backbone/*-random.yaml gives its shape; "
        "pass a local folder or encoder.random_init"
    )


def texts_per_example(data: Any) -> int:
    """2 for pairs, 3 for triplets (NLI with hard negatives, or a file with a negative column)."""
    train = (data or {}).get("train") or {}
    if train.get("recipe") == "nli" and train.get("hard_negatives", True):
        return 3
    return 3 if "negative" in (train.get("columns") or {}) else 2


def from_config(overrides: Sequence[str], seq_len: int | None = None) -> tuple[Shape, Setup, dict[str, Any]]:
    """Compose ``conf/train.yaml`` with ``overrides`` (as ``lacos-train`` would) and derive shape and setup."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException
    from omegaconf import OmegaConf

    from lacos_lightning.models.backbone import resolve_name, sentence_transformers_defaults
    from lacos_lightning.models.config import EncoderConfig

    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            cfg = compose(config_name="train", overrides=list(overrides))
    except HydraException as err:
        raise ConfigError(f"overrides rejected: {str(err).splitlines()[0]}") from err
    finally:
        GlobalHydra.instance().clear()
    enc_values = OmegaConf.to_container(cfg.encoder, resolve=True)
    enc = EncoderConfig.from_dict(enc_values)
    data = OmegaConf.to_container(cfg.data, resolve=False)
    shape = shape_for_backbone(enc.name, enc.random_init)
    if seq_len is None:  # as the Encoder decides it: config, sentence-transformers folder, else 128
        seq_len = enc.max_seq_length or sentence_transformers_defaults(resolve_name(enc.name)).get("max_seq_length")
        seq_len = seq_len or 128
    setup = Setup(
        bits=enc.bits,
        peft_method=enc.peft.method,
        lora_r=enc.peft.r,
        lora_targets=enc.peft.target_modules,
        lora_dropout=enc.peft.dropout,
        projection_dim=enc.projection_dim,
        optimizer=str(cfg.optim.name),
        batch_texts=int(data["batch_size"]) * texts_per_example(data),
        seq_len=int(seq_len),
        gradient_checkpointing=enc.gradient_checkpointing,
        dtype=enc.dtype,
        vocab_in_use=_tokenizer_vocab(enc.name) if enc.random_init else None,
    )
    info = {"backbone": enc.name, "random_init": enc.random_init, "batch_size": int(data["batch_size"])}
    return shape, setup, info


# -- tables ------------------------------------------------------------------------------------------
def _g(x: float) -> str:
    return f"{x / GIB:.2f}"


def breakdown_table(est: Estimate) -> str:
    """Markdown table of the terms of one estimate."""
    rows = [
        ("weights (quantized size)", est.weights),
        ("adapter / trainable weights", est.adapter),
        ("gradients", est.gradients),
        ("optimizer states", est.optimizer),
        ("activations kept for backward", est.activations),
    ]
    if est.backend == "cuda":
        rows.append(("workspace (largest layer transient)", est.workspace))
    rows += [(f"backend: {k.replace('_', ' ')}", v) for k, v in est.backend_terms.items() if k != "load_transient"]
    lines = ["| term | GiB |", "|---|---|"] + [f"| {name} | {_g(v)} |" for name, v in rows]
    lines += [
        f"| **training peak** | **{_g(est.train_peak)}** |",
        f"| loading peak | {_g(est.load_peak)} |",
        f"| **peak** | **{_g(est.peak)}** |",
    ]
    return "\n".join(lines)


def max_batch_texts(shape: Shape, setup: Setup, budget: float, backend: str = "cuda", limit: int = 1 << 20) -> int:
    """Most texts per step whose estimated peak fits ``budget`` bytes (0 if not even one; at most ``limit``)."""

    def fits(b: int) -> bool:
        return estimate_memory(shape, replace(setup, batch_texts=b), backend).peak <= budget

    if not fits(1):
        return 0
    low, high = 1, limit
    while low < high:  # the peak grows with the batch: bisect on the largest batch that fits
        mid = (low + high + 1) // 2
        low, high = (mid, high) if fits(mid) else (low, mid - 1)
    return low


def paper_table(batch_texts: int = 96, seq_len: int = 64, lora_r: int = 8) -> str:
    """BLOOM 560m..7b1 at 32/16/8/4 bits, LoRA + 8-bit AdamW, against the paper's 32 GB claim."""
    budget = PAPER_MEMORY_GIB * GIB
    lines = [
        f"Estimated peak training memory (GiB): LoRA r={lora_r} on query_key_value, 8-bit AdamW, {batch_texts} texts "
        f"x {seq_len} tokens per step (lacos_nli: 32 triplets). cuda = the paper's setting (analytic, not calibrated "
        f"on a GPU; CUDA context {CUDA_CONTEXT_GIB} GiB included); cpu = this machine's calibrated model, fp32 "
        f"checkpoint. GC = gradient checkpointing. The paper ran BLOOM-7.1B end-to-end on one 32 GB GPU; "
        f"'max texts' = the largest batch (texts of {seq_len} tokens) whose cuda estimate fits {PAPER_MEMORY_GIB:.0f} GiB.",
        "",
        "| backbone | params | bits | weights | activations | cuda peak | cuda peak, GC | fits 32 GiB | max texts | "
        "max texts, GC | cpu peak | cpu peak, GC |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name in PAPER_MODELS:
        shape = shape_for_backbone(f"bigscience/{name}")
        for bits in (32, 16, 8, 4):
            setup = Setup(bits=bits, lora_r=lora_r, batch_texts=batch_texts, seq_len=seq_len)
            gc = replace(setup, gradient_checkpointing=True)
            cuda, cuda_gc = estimate_memory(shape, setup, "cuda"), estimate_memory(shape, gc, "cuda")
            cpu, cpu_gc = estimate_memory(shape, setup, "cpu"), estimate_memory(shape, gc, "cpu")
            fits = "yes" if cuda.peak <= budget else ("with GC" if cuda_gc.peak <= budget else "no")
            lines.append(
                f"| {name} | {cuda.params['total'] / 1e9:.2f}B | {bits} | {_g(cuda.weights)} | {_g(cuda.activations)} | "
                f"{_g(cuda.peak)} | {_g(cuda_gc.peak)} | {fits} | {max_batch_texts(shape, setup, budget)} | "
                f"{max_batch_texts(shape, gc, budget)} | {_g(cpu.peak)} | {_g(cpu_gc.peak)} |"
            )
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="lacos-estimate", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("overrides", nargs="*", help="Hydra overrides of conf/train.yaml, as for lacos-train")
    parser.add_argument("--backend", choices=BACKENDS, default="cpu", help="device model (default cpu)")
    parser.add_argument("--seq-len", type=int, default=None, help="padded tokens per text (default: max_seq_length)")
    parser.add_argument("--batch-texts", type=int, default=None, help="texts per step (default: from the config)")
    parser.add_argument("--paper-table", action="store_true", help="BLOOM 560m..7b1 x 32/16/8/4 bits vs 32 GB")
    parser.add_argument("--json", action="store_true", help="print the terms as JSON")
    args = parser.parse_args(argv)
    bad = [o for o in args.overrides if "=" not in o or o.startswith("-")]
    if bad:
        parser.error(f"not a key=value override: {' '.join(bad)}")
    return args


@exit_on_user_error
def main(argv: Sequence[str] | None = None) -> None:
    """Console entry point."""
    args = parse_args(argv)
    if args.paper_table:
        print(paper_table(batch_texts=args.batch_texts or 96, seq_len=args.seq_len or 64))
        return
    shape, setup, info = from_config(args.overrides, seq_len=args.seq_len)
    if args.batch_texts:
        setup.batch_texts = args.batch_texts
    est = estimate_memory(shape, setup, args.backend)
    if args.json:
        print(json.dumps({"shape": asdict(shape), "setup": asdict(setup), "info": info, **est.as_gib()}, indent=2))
        return
    backbone = info["backbone"] if not info["random_init"] else f"random {shape.model_type}"
    print(
        f"{backbone}: {shape.model_type} h={shape.hidden_size} layers={shape.num_layers} heads={shape.num_heads} "
        f"vocab={shape.vocab_size}, {est.params['total']:,} parameters ({est.trainable_params:,} trainable)"
    )
    print(
        f"bits {setup.bits}, {setup.peft_method} r={setup.lora_r}, {setup.optimizer}, {setup.batch_texts} texts x "
        f"{setup.seq_len} tokens, gradient checkpointing {'on' if setup.gradient_checkpointing else 'off'}, "
        f"backend {args.backend}"
    )
    print()
    print(breakdown_table(est))


if __name__ == "__main__":
    main(sys.argv[1:])
