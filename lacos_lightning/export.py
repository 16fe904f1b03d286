"""Export a trained encoder: the peft adapter, and a sentence-transformers folder with merged fp32 weights."""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from dataclasses import asdict
from pathlib import Path

import torch
from transformers import AutoModel

from lacos_lightning.models import Encoder

log = logging.getLogger(__name__)
ST_POOLING = {"mean": "mean", "cls": "cls", "last_token": "lasttoken", "weighted_mean": "weightedmean"}


def save_adapter(encoder: Encoder, folder: str | Path) -> Path:
    """Save what trained: the peft adapter (peft format), the projection, and the encoder config."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if encoder.cfg.peft.method == "lora":
        encoder.backbone.save_pretrained(folder)
    elif encoder.cfg.peft.method == "full":
        encoder.base_model.save_pretrained(folder / "backbone")
        encoder.tokenizer.save_pretrained(folder / "backbone")  # load_encoder loads the backbone by this folder
    if encoder.projection is not None:
        torch.save(encoder.projection.state_dict(), folder / "projection.pt")
    (folder / "encoder.json").write_text(json.dumps(asdict(encoder.cfg), indent=2))
    encoder.tokenizer.save_pretrained(folder / "tokenizer")
    return folder


def merged_backbone(encoder: Encoder) -> torch.nn.Module:
    """The backbone in fp32 with any LoRA update merged in (loaded afresh, so a quantized run exports
    full-precision base weights plus its adapter)."""
    method = encoder.cfg.peft.method
    if method == "full":
        return encoder.base_model.float()
    base = AutoModel.from_pretrained(encoder.info["weights"], dtype=torch.float32)
    if encoder.cfg.keep_layers is not None:  # the same layers as the trained encoder, not the full model
        from lacos_lightning.models.layers import select_layers

        base = select_layers(base, encoder.cfg.keep_layers)
    if method == "none":
        return base
    from peft import PeftModel

    with tempfile.TemporaryDirectory() as tmp:
        encoder.backbone.save_pretrained(tmp)
        return PeftModel.from_pretrained(base, tmp).merge_and_unload()


def export_sentence_transformers(encoder: Encoder, folder: str | Path) -> Path:
    """Write a folder that ``SentenceTransformer(folder)`` loads: transformer, pooling, dense, normalize."""
    from sentence_transformers import SentenceTransformer, models

    folder = Path(folder)
    with tempfile.TemporaryDirectory() as tmp:
        merged_backbone(encoder).save_pretrained(tmp)
        encoder.tokenizer.save_pretrained(tmp)
        modules: list[torch.nn.Module] = [models.Transformer(tmp, max_seq_length=encoder.max_seq_length)]
        modules.append(models.Pooling(encoder.hidden_size, pooling_mode=ST_POOLING[encoder.cfg.pooling]))
        if encoder.projection is not None:
            dense = models.Dense(
                encoder.hidden_size, encoder.output_dim, bias=True, activation_function=torch.nn.Identity()
            )
            dense.linear.load_state_dict({k: v.float() for k, v in encoder.projection.state_dict().items()})
            modules.append(dense)
        if encoder.cfg.normalize:
            modules.append(models.Normalize())
        model = SentenceTransformer(modules=modules, device="cpu")
        if folder.exists():
            shutil.rmtree(folder)
        model.save(str(folder))
    if encoder.info.get("append_eos"):
        from transformers import AutoTokenizer

        from lacos_lightning.models.backbone import appends_eos

        if not appends_eos(AutoTokenizer.from_pretrained(folder)):
            log.warning(
                "%s: this tokenizer class does not keep the EOS template when saved; the exported folder "
                "encodes without EOS, so last-token embeddings differ from the framework's",
                folder,
            )
    return folder


def load_encoder(folder: str | Path, bits: int | None = None) -> Encoder:
    """Rebuild an encoder saved by :func:`save_adapter` (optionally at another bit width)."""
    from lacos_lightning.errors import ConfigError
    from lacos_lightning.models import EncoderConfig

    folder = Path(folder)
    spec = folder / "encoder.json"
    if not spec.is_file():
        raise ConfigError(f"{folder} is not a saved adapter folder (no encoder.json)")
    values = json.loads(spec.read_text())
    if bits is not None:
        values["bits"] = bits
    if values["peft"]["method"] == "full":
        values["name"] = str(folder / "backbone")
        values["random_init"] = None
        values["keep_layers"] = None  # the saved backbone already holds only the kept layers
    encoder = Encoder(EncoderConfig.from_dict(values))
    if values["peft"]["method"] == "lora":
        from peft import set_peft_model_state_dict
        from safetensors.torch import load_file

        set_peft_model_state_dict(encoder.backbone, load_file(str(folder / "adapter_model.safetensors")))
    if encoder.projection is not None:
        encoder.projection.load_state_dict(torch.load(folder / "projection.pt", weights_only=True))
    return encoder.eval()
