"""The adapter store: trained adapters with their metadata, and loading/switching them on one loaded base.

A store is a folder with one sub-folder per adapter::

    STORE/<id>/meta.json                 method, settings, base name + weight fingerprint, parameters, domain, scores
    STORE/<id>/adapter_config.json, adapter_model.safetensors     (LoRA / IA3, peft's format)
    STORE/<id>/bottleneck.safetensors                              (houlsby / pfeiffer)

:func:`attach` loads an entry onto an already loaded :class:`~lacos_lightning.models.Encoder` under a
name, :func:`activate` switches between the loaded adapters or back to the base (``None``); neither
reloads the base. An entry whose base fingerprint differs from the encoder's is refused.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from lacos_lightning.errors import ConfigError, require
from lacos_lightning.models import Encoder
from lacos_lightning.models.adapters import BottleneckAdapters
from lacos_lightning.models.fingerprint import weights_fingerprint

PEFT_TYPES = ("lora", "ia3")
BOTTLENECK = ("houlsby", "pfeiffer")
STORABLE = PEFT_TYPES + BOTTLENECK


@dataclass
class StoreConfig:
    """Where a training run saves its adapter (``store.dir``; null: nowhere) and under which domain.

    Attributes:
        dir: the store folder; ``None`` keeps the adapter only in the run folder.
        domain: domain label of the entry; ``None`` takes the ``domain`` recipe's name.
    """

    dir: str | None = None
    domain: str | None = None

    @property
    def enabled(self) -> bool:
        return bool(self.dir)

    @staticmethod
    def stores(method: str) -> bool:
        return method in STORABLE

    @classmethod
    def from_dict(cls, values: Any, encoder_cfg: Any) -> StoreConfig:
        from lacos_lightning.models.config import _from_mapping

        cfg = _from_mapping(cls, values, "store")
        if cfg.enabled:
            require(
                encoder_cfg.projection_dim is None,
                "store.dir: adapters are stored without a projection head; set encoder.projection_dim=null or store.dir=null",
            )
        return cfg


def base_identity(encoder: Encoder) -> dict[str, Any]:
    """The encoder's base: its name and the fingerprint of its weights."""
    require(
        encoder.cfg.peft.method != "full",
        "this encoder's base weights were fine-tuned (peft.method=full); adapters need the original base",
    )
    return {
        "name": encoder.cfg.name,
        "random_init": encoder.cfg.random_init,
        "fingerprint": weights_fingerprint(encoder.info["weights"]),
    }


# -- saving and listing -------------------------------------------------------------------------------
def adapter_method(encoder: Encoder, name: str) -> str:
    """The method of loaded adapter ``name`` (``lora``, ``ia3``, ``houlsby``, ``pfeiffer``)."""
    if encoder.bottleneck is not None and name in encoder.bottleneck.adapters:
        return encoder.bottleneck.specs[name]["method"]
    peft_config = getattr(encoder.backbone, "peft_config", {})
    if name in peft_config:
        return str(peft_config[name].peft_type.value).lower()
    require(name in _sources(encoder), f"no adapter named {name!r} is loaded on this encoder")
    return _sources(encoder)[name][0]


def write_adapter(encoder: Encoder, name: str, folder: Path) -> dict[str, Any]:
    """Write the weights of loaded adapter ``name`` into ``folder``; return its spec and parameter count."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    method = adapter_method(encoder, name)
    if method in BOTTLENECK:
        save_file(encoder.bottleneck.adapter_state(name), str(folder / "bottleneck.safetensors"))
        return {"method": method, "spec": encoder.bottleneck.specs[name], "params": encoder.bottleneck.count(name)}
    from peft import get_peft_model_state_dict

    state = get_peft_model_state_dict(encoder.backbone, adapter_name=name)
    save_file({k: v.detach().contiguous().cpu() for k, v in state.items()}, str(folder / "adapter_model.safetensors"))
    encoder.backbone.peft_config[name].save_pretrained(str(folder))
    return {"method": method, "spec": None, "params": sum(v.numel() for v in state.values())}


def save_to_store(
    encoder: Encoder,
    store: str | Path,
    domain: str | None = None,
    scores: dict[str, float] | None = None,
    run_dir: str | Path | None = None,
    adapter: str = "default",
) -> Path:
    """Save loaded adapter ``adapter`` of ``encoder`` into ``store`` with its metadata; return the entry folder."""
    base = base_identity(encoder)
    method = adapter_method(encoder, adapter)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    entry_id = f"{domain or 'any'}-{method}-{stamp}"
    folder, n = Path(store) / entry_id, 1
    while folder.exists():
        n += 1
        folder = Path(store) / f"{entry_id}-{n}"
    written = write_adapter(encoder, adapter, folder)
    counts = encoder.parameter_counts()
    total = counts["total_params"]
    meta = {
        "id": folder.name,
        "method": method,
        "bottleneck": written["spec"],
        "encoder": asdict(encoder.cfg),
        "base": base,
        "trainable_params": written["params"],
        "total_params": total,
        "trainable_pct": round(100 * written["params"] / max(total, 1), 4),
        "domain": domain,
        "scores": dict(scores or {}),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "run_dir": str(run_dir) if run_dir else None,
    }
    (folder / "meta.json").write_text(json.dumps(meta, indent=2, default=str))
    return folder


def read_entry(path: str | Path) -> dict[str, Any]:
    """The metadata of a store entry (a folder with ``meta.json``)."""
    meta = Path(path) / "meta.json"
    require(meta.is_file(), f"{path} is not an adapter-store entry (no meta.json)")
    data = json.loads(meta.read_text())
    data["path"] = str(Path(path))
    return data


def list_entries(store: str | Path) -> list[dict[str, Any]]:
    """Every entry of ``store``, oldest first."""
    root = Path(store)
    require(root.is_dir(), f"adapter store {store} does not exist")
    return sorted((read_entry(p.parent) for p in root.glob("*/meta.json")), key=lambda e: (e["created"], e["id"]))


# -- attaching and switching on a loaded base ---------------------------------------------------------
def encoder_for_entry(entry: str | Path, bits: int = 32) -> Encoder:
    """Load the base an entry was trained on (at ``bits``) and attach the entry, active."""
    from lacos_lightning.models import EncoderConfig

    values = dict(read_entry(entry)["encoder"])
    values["peft"] = {"method": "none"}
    values["bits"] = bits
    encoder = Encoder(EncoderConfig.from_dict(values)).eval()
    attach(encoder, entry)
    return encoder


def attach(encoder: Encoder, entry: str | Path, name: str | None = None, activate_it: bool = True) -> str:
    """Load store entry ``entry`` onto ``encoder`` as adapter ``name`` (default: the entry id).

    The base is not reloaded. Refused when the entry was trained on another base (fingerprint).
    """
    meta = read_entry(entry)
    name = (name or meta["id"]).replace(".", "_")
    mine = base_identity(encoder)
    if meta["base"]["fingerprint"] != mine["fingerprint"]:
        raise ConfigError(
            f"adapter {meta['id']} was trained on base {meta['base']['name']} (weights {meta['base']['fingerprint']}); "
            f"this encoder's base is {mine['name']} (weights {mine['fingerprint']})"
        )
    require(name not in loaded(encoder), f"an adapter named {name!r} is already loaded; pass another name")
    if meta["method"] in BOTTLENECK:
        from safetensors.torch import load_file

        if encoder.bottleneck is None:
            encoder.bottleneck = BottleneckAdapters(encoder.base_model).to(encoder.device)
        spec = meta["bottleneck"]
        encoder.bottleneck.add(name, spec["method"], spec["targets"], spec["size"], spec["activation"], 0.0)
        encoder.bottleneck.load_adapter_state(name, load_file(str(Path(entry) / "bottleneck.safetensors")))
        for param in encoder.bottleneck.adapters[name].parameters():
            param.requires_grad_(False)
    else:
        _attach_peft(encoder, Path(entry), name, meta["method"])
    if activate_it:
        activate(encoder, name)
    return name


def _attach_peft(encoder: Encoder, entry: Path, name: str, method: str) -> None:
    """Load a LoRA/IA3 entry; one of the other type is only registered and loaded when activated."""
    sources = _sources(encoder)
    sources[name] = (method, entry)
    current = _peft_type(encoder)
    if current is None:
        from peft import PeftModel

        encoder.backbone = PeftModel.from_pretrained(encoder.backbone, str(entry), adapter_name=name)
    elif current == method:
        encoder.backbone.load_adapter(str(entry), adapter_name=name)


def _sources(encoder: Encoder) -> dict[str, tuple[str, Path | None]]:
    """Where each peft adapter came from (method, entry folder; ``None``: trained in this process)."""
    if not hasattr(encoder, "_peft_sources"):
        own = {
            n: (str(c.peft_type.value).lower(), None) for n, c in getattr(encoder.backbone, "peft_config", {}).items()
        }
        encoder._peft_sources = own
    return encoder._peft_sources


def _switch_peft_type(encoder: Encoder, method: str) -> None:
    """peft holds one tuner type per model: remove the loaded one (weights of the base untouched, nothing
    merged) and inject the adapters of type ``method`` from their entries. The base is not reloaded."""
    from peft import PeftModel

    sources = _sources(encoder)
    unsaved = [n for n in getattr(encoder.backbone, "peft_config", {}) if sources.get(n, (None, None))[1] is None]
    require(
        not unsaved,
        f"switching to a {method} adapter would drop adapter(s) {unsaved} that exist only in memory; "
        "save them to the store first",
    )
    if _peft_type(encoder) is not None:
        encoder.backbone = encoder.backbone.base_model.unload()
    wanted = [(n, path) for n, (m, path) in sources.items() if m == method]
    for i, (n, path) in enumerate(wanted):
        if i == 0:
            encoder.backbone = PeftModel.from_pretrained(encoder.backbone, str(path), adapter_name=n)
        else:
            encoder.backbone.load_adapter(str(path), adapter_name=n)


def _peft_type(encoder: Encoder) -> str | None:
    configs = getattr(encoder.backbone, "peft_config", None)
    return str(next(iter(configs.values())).peft_type.value).lower() if configs else None


def loaded(encoder: Encoder) -> list[str]:
    """Names of the adapters on ``encoder`` (peft, including those waiting for a type switch, and bottleneck)."""
    names = list(getattr(encoder.backbone, "peft_config", {}) or {})
    names += [n for n in _sources(encoder) if n not in names]
    return names + (list(encoder.bottleneck.adapters) if encoder.bottleneck is not None else [])


def activate(encoder: Encoder, name: str | None) -> None:
    """Make adapter ``name`` the active one, or none (``None``: the base model exactly)."""
    require(name is None or name in loaded(encoder), f"no adapter named {name!r}; loaded: {loaded(encoder)}")
    encoder.active_adapter = name
    is_bottleneck = encoder.bottleneck is not None and name in encoder.bottleneck.adapters
    if encoder.bottleneck is not None:
        encoder.bottleneck.set_active(name if is_bottleneck else None)
    if name is not None and not is_bottleneck and _sources(encoder)[name][0] != _peft_type(encoder):
        _switch_peft_type(encoder, _sources(encoder)[name][0])
    if _peft_type(encoder) is not None:
        tuner = encoder.backbone.base_model
        if name is None or is_bottleneck:
            tuner.disable_adapter_layers()
        else:
            tuner.enable_adapter_layers()
            encoder.backbone.set_adapter(name)
            for param in encoder.backbone.parameters():  # set_adapter marks the adapter trainable
                param.requires_grad_(False)
