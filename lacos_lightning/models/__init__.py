"""Backbone loading, quantization, adapters, pooling and the Encoder."""

from __future__ import annotations

from lacos_lightning.models.config import EncoderConfig, LoraSettings, PeftSettings
from lacos_lightning.models.encoder import Encoder
from lacos_lightning.models.pooling import POOLING_MODES, pool

__all__ = ["POOLING_MODES", "Encoder", "EncoderConfig", "LoraSettings", "PeftSettings", "pool"]
