"""The Encoder: backbone (quantized or not) + parameter-efficient method + pooling + projection + normalize."""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from peft import IA3Config, LoraConfig, get_peft_model, prepare_model_for_kbit_training
from peft.utils import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING
from torch import nn
from tqdm.auto import tqdm

from lacos_lightning.errors import ConfigError
from lacos_lightning.models.adapters import BottleneckAdapters, default_adapter_targets
from lacos_lightning.models.backbone import load_backbone
from lacos_lightning.models.config import EncoderConfig
from lacos_lightning.models.pooling import pool

log = logging.getLogger(__name__)


def default_target_modules(model_type: str) -> list[str]:
    """peft's default LoRA targets for an architecture."""
    targets = TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING.get(model_type)
    if not targets:
        raise ConfigError(f"no default LoRA target modules for model type {model_type!r}; set peft.target_modules")
    return list(targets)


@functools.cache
def warn_quantized_without_cuda(bits: int) -> None:
    """Say once per process that 8/4 bits save nothing on a CPU (measured in README "Benchmarks")."""
    log.warning(
        "encoder.bits=%d without CUDA: on a CPU bitsandbytes' quantized layers were slower and used more memory "
        "than 32 bits (README, Benchmarks); the savings are CUDA figures. Use encoder.bits=32 or 16 here "
        "unless you are testing the quantized path.",
        bits,
    )


class Encoder(nn.Module):
    """Turns text into a vector; the one object every task trains, evaluates and exports.

    Args:
        cfg: validated :class:`EncoderConfig`.
    """

    def __init__(self, cfg: EncoderConfig) -> None:
        super().__init__()
        self.cfg = cfg
        model, self.tokenizer, self.info = load_backbone(cfg)
        if cfg.keep_layers is not None:
            from lacos_lightning.models.layers import select_layers

            model = select_layers(model, cfg.keep_layers)
        if cfg.ffn_size is not None:
            from lacos_lightning.models.layers import prune_ffn

            model = prune_ffn(model, cfg.ffn_size)
        self.model_type = model.config.model_type
        self.hidden_size = model.config.hidden_size
        self.max_seq_length = cfg.max_seq_length or self.info.get("max_seq_length") or 128
        self.bottleneck: BottleneckAdapters | None = None  # houlsby/pfeiffer adapters, set by _apply_peft
        self.active_adapter: str | None = None  # the adapter in use (lacos_lightning.store switches it)
        self.backbone = self._apply_peft(model)
        self.projection = nn.Linear(self.hidden_size, cfg.projection_dim) if cfg.projection_dim else None
        accepted = inspect.signature(model.forward).parameters
        self._input_keys = [k for k in ("input_ids", "attention_mask", "token_type_ids") if k in accepted]
        self.train()  # from_pretrained returns eval mode; training uses the backbone's dropout

    def _apply_peft(self, model: nn.Module) -> nn.Module:
        """Freeze the backbone and add the configured method: peft LoRA/IA3, bottleneck adapters, or none.

        ``full`` leaves every weight trainable. Adapters are named ``default``; more can be loaded
        next to it later (:mod:`lacos_lightning.store`).
        """
        settings = self.cfg.peft
        if self.cfg.bits in (8, 4):
            if not torch.cuda.is_available():
                warn_quantized_without_cuda(self.cfg.bits)
            model = prepare_model_for_kbit_training(
                model,
                use_gradient_checkpointing=self.cfg.gradient_checkpointing,
                gradient_checkpointing_kwargs={"use_reentrant": False},
            )
        elif self.cfg.gradient_checkpointing:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        for param in model.parameters():
            param.requires_grad_(settings.method == "full")
        if settings.method in ("lora", "ia3", "houlsby", "pfeiffer"):
            self.active_adapter = "default"
        if settings.method in ("lora", "ia3"):
            return self._peft_model(model)
        if settings.method in ("houlsby", "pfeiffer"):
            if self.cfg.gradient_checkpointing and hasattr(model, "enable_input_require_grads"):
                model.enable_input_require_grads()
            self.bottleneck = BottleneckAdapters(model)
            self.bottleneck.add(
                "default",
                settings.method,
                settings.target_modules or default_adapter_targets(self.model_type, settings.method),
                settings.adapter_size,
                settings.adapter_activation,
                settings.adapter_init_std,
            )
        return model

    def _peft_model(self, model: nn.Module) -> nn.Module:
        settings = self.cfg.peft
        if settings.method == "lora":
            targets = settings.target_modules or default_target_modules(self.model_type)
            config = LoraConfig(
                r=settings.r, lora_alpha=settings.alpha, lora_dropout=settings.dropout, target_modules=targets
            )
        else:
            targets = settings.target_modules
            config = IA3Config(target_modules=targets, feedforward_modules=settings.feedforward_modules)
        try:
            return get_peft_model(model, config)
        except ValueError as err:
            raise ConfigError(f"peft.target_modules={targets} do not fit {self.model_type}: {err}") from err

    @property
    def output_dim(self) -> int:
        return self.cfg.projection_dim or self.hidden_size

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def base_model(self) -> nn.Module:
        """The transformers model under any peft wrapper."""
        return self.backbone.get_base_model() if hasattr(self.backbone, "get_base_model") else self.backbone

    def tokenize(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        """Tokenize, pad on the right and truncate to ``max_seq_length``."""
        batch = self.tokenizer(
            list(texts), padding=True, truncation=True, max_length=self.max_seq_length, return_tensors="pt"
        )
        return {k: batch[k] for k in self._input_keys if k in batch}

    def forward(self, features: dict[str, torch.Tensor], normalize: bool | None = None) -> torch.Tensor:
        """Embed a tokenized batch: (batch, output_dim) float32 tensor.

        ``normalize=False`` returns the embedding before L2 normalisation (distillation targets);
        ``None`` follows ``cfg.normalize``.
        """
        inputs = {k: v for k, v in features.items() if k in self._input_keys}
        hidden = self.backbone(**inputs).last_hidden_state
        emb = pool(hidden.float(), inputs["attention_mask"], self.cfg.pooling)
        if self.projection is not None:
            emb = self.projection(emb.to(self.projection.weight.dtype)).float()
        normalize = self.cfg.normalize if normalize is None else normalize
        return F.normalize(emb, dim=-1) if normalize else emb

    @torch.inference_mode()
    def encode(
        self, texts: Sequence[str], batch_size: int = 64, progress: bool = False, desc: str = "encode"
    ) -> torch.Tensor:
        """Embed ``texts`` in eval mode, longest first for less padding; rows in input order, on CPU."""
        was_training = self.training
        self.eval()
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        out: list[torch.Tensor] = []
        device = self.device
        for start in tqdm(range(0, len(order), batch_size), desc=desc, disable=not progress, leave=False):
            chunk = [texts[i] for i in order[start : start + batch_size]]
            features = {k: v.to(device) for k, v in self.tokenize(chunk).items()}
            out.append(self(features).cpu())
        self.train(was_training)
        if not out:
            return torch.empty(0, self.output_dim)
        stacked = torch.cat(out)
        result = torch.empty_like(stacked)
        result[torch.tensor(order)] = stacked
        return result

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        """Only the weights that train (adapters, projection; everything for ``full``): what checkpoints hold."""
        return {n: p.detach().clone() for n, p in self.named_parameters() if p.requires_grad}

    def parameter_counts(self) -> dict[str, int]:
        """Trainable and total parameters; 4-bit weights count as their unpacked number."""
        total = trainable = 0
        for param in self.parameters():
            n = param.numel()
            if getattr(param, "quant_state", None) is not None or param.__class__.__name__ == "Params4bit":
                n *= 2
            total += n
            if param.requires_grad:
                trainable += n
        return {"trainable_params": trainable, "total_params": total}

    def describe(self) -> dict[str, Any]:
        """Facts about this encoder for metrics.json and the run log."""
        return {
            "backbone": self.cfg.name,
            "model_type": self.model_type,
            "bits": self.cfg.bits,
            "peft_method": self.cfg.peft.method,
            "lora_r": self.cfg.peft.r if self.cfg.peft.method == "lora" else None,
            "adapter_size": self.cfg.peft.adapter_size if self.bottleneck is not None else None,
            "pooling": self.cfg.pooling,
            "output_dim": self.output_dim,
            "max_seq_length": self.max_seq_length,
            **self.parameter_counts(),
        }
