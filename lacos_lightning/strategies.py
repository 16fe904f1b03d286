"""Multi-device strategies (DDP, FSDP, DeepSpeed): checked before any model is loaded, then built.

``trainer.strategy`` is either a Lightning strategy name (``ddp``, ``fsdp``, ``deepspeed_stage_2``, ...)
or a mapping ``{name: <registered name>, <constructor argument>: value, ...}``, as in
``conf/trainer/{ddp,ddp_spawn,fsdp,deepspeed}.yaml``; the mapping becomes the strategy object.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import torch
import torch.distributed as dist

from lacos_lightning.errors import ConfigError, require

GPU_ACCELERATORS = ("gpu", "cuda")


def _split(strategy: Any) -> tuple[str, dict[str, Any]]:
    """``(name, constructor options)`` of a ``trainer.strategy`` value."""
    if strategy is None:
        return "auto", {}
    if isinstance(strategy, str):
        return strategy, {}
    if isinstance(strategy, Mapping):
        options = dict(strategy)
        name = options.pop("name", None)
        require(
            isinstance(name, str) and bool(name),
            "trainer.strategy needs a name (e.g. trainer.strategy.name=ddp), or pick trainer=ddp/fsdp/deepspeed",
        )
        return name, options
    return type(strategy).__name__, {}  # an already built Strategy object: Lightning checks it


def _registered() -> list[str]:
    from pytorch_lightning.strategies import StrategyRegistry

    return list(StrategyRegistry.available_strategies())


def check_strategy(trainer_cfg: Mapping[str, Any]) -> None:
    """Raise :class:`ConfigError` (one line, what to install or choose) for a strategy that cannot run here.

    Checks that the strategy exists, that DeepSpeed is installed and has CUDA GPUs, that NCCL (and FSDP,
    which needs CUDA in this project) is not asked for without GPUs, and that ``accelerator=gpu`` has a GPU.
    """
    name, options = _split(trainer_cfg.get("strategy"))
    accelerator = str(trainer_cfg.get("accelerator") or "auto").lower()
    cuda = torch.cuda.is_available()
    if accelerator in GPU_ACCELERATORS:
        require(
            cuda,
            f"trainer.accelerator={accelerator} but no CUDA GPU is visible; use trainer.accelerator=cpu (or auto)",
        )
    on_gpu = cuda and accelerator in (*GPU_ACCELERATORS, "auto")
    if isinstance(trainer_cfg.get("strategy"), (str, Mapping)) and name != "auto":
        known = _registered()
        require(
            name in known,
            f"trainer.strategy={name!r} is unknown; choose trainer=ddp, ddp_spawn, fsdp or deepspeed "
            f"(Lightning strategies: {', '.join(known)})",
        )
    if name.startswith("deepspeed"):
        require(
            importlib.util.find_spec("deepspeed") is not None,
            f"trainer.strategy={name} needs DeepSpeed: pip install deepspeed (CUDA GPUs only); "
            "or choose trainer=ddp or trainer=fsdp",
        )
        require(on_gpu, f"trainer.strategy={name} runs on CUDA GPUs only and none is used here; choose trainer=ddp")
    if name.startswith("fsdp"):
        require(
            on_gpu,
            f"trainer.strategy={name} needs CUDA GPUs (no GPU is used here); on CPU choose trainer=ddp "
            "with trainer.accelerator=cpu",
        )
    backend = options.get("process_group_backend")
    if backend is not None and str(backend).lower() == "nccl":
        require(
            on_gpu and dist.is_nccl_available(),
            "process_group_backend=nccl needs NVIDIA GPUs and a CUDA build of torch; on CPU set "
            "trainer.strategy.process_group_backend=gloo (or null to pick it by device)",
        )


def resolve_strategy(trainer_cfg: Mapping[str, Any]) -> dict[str, Any]:
    """Check the strategy (:func:`check_strategy`) and return Trainer keyword arguments with it built.

    A ``{name: ..., **options}`` mapping becomes the registered strategy class constructed with its
    registered defaults updated by ``options``; strings pass through for Lightning to resolve.
    """
    check_strategy(trainer_cfg)
    kwargs = dict(trainer_cfg)
    strategy = kwargs.get("strategy")
    if not isinstance(strategy, Mapping):
        return kwargs
    name, options = _split(strategy)
    from pytorch_lightning.strategies import StrategyRegistry

    entry = StrategyRegistry[name]
    params = {**entry["init_params"], **{k: v for k, v in options.items() if v is not None}}
    try:
        kwargs["strategy"] = entry["strategy"](**params)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"trainer.strategy={dict(strategy)} rejected: {err}") from err
    return kwargs


def full_weights(trainer: Any) -> AbstractContextManager:
    """Context in which the LightningModule's parameters are whole on every rank (for exporting).

    FSDP shards parameters between steps; inside this context (entered on *every* rank) they are
    gathered. DDP and DeepSpeed ZeRO-2 keep whole weights on each rank: nothing to do.
    """
    model = getattr(trainer.strategy, "model", None)
    try:
        from torch.distributed.fsdp import FullyShardedDataParallel
    except ImportError:  # pragma: no cover - torch without distributed
        return nullcontext()
    if isinstance(model, FullyShardedDataParallel):
        return FullyShardedDataParallel.summon_full_params(model, writeback=False)
    return nullcontext()
