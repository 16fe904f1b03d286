"""Siamese contrastive training (LACoS-BLOOM): one encoder embeds both sides; in-batch negatives loss."""

from __future__ import annotations

import math
from dataclasses import asdict
from typing import Any

import pytorch_lightning as pl
import torch

from lacos_lightning.data.loader import ResumableLoader
from lacos_lightning.errors import require
from lacos_lightning.eval.base import Evaluator
from lacos_lightning.losses import LossConfig, grad_cache_step
from lacos_lightning.models import Encoder
from lacos_lightning.tasks.optim import OptimConfig


class EmbeddingTask(pl.LightningModule):
    """What every task shares: evaluation loops, trainable-only checkpoints, exact resume, optimizer.

    Subclasses implement ``training_step``.
    """

    def __init__(
        self,
        encoder: Encoder,
        optim: OptimConfig,
        val_evaluators: list[Evaluator] | None = None,
        test_evaluators: list[Evaluator] | None = None,
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.optim = optim
        self.val_evaluators = list(val_evaluators or [])
        self.test_evaluators = list(test_evaluators or [])
        # Registered so that torchmetrics states follow the device; they hold no weights.
        self._eval_metrics = torch.nn.ModuleList([ev.metric for ev in self.val_evaluators + self.test_evaluators])
        self.strict_loading = False  # checkpoints hold only the trainable weights

    def configure_optimizers(self) -> dict[str, Any]:
        return self.optim.build(self.named_parameters(), self._total_steps())

    def _total_steps(self) -> int:
        """Optimizer steps of the whole run, for the schedule.

        Computed from a fresh loader rather than ``trainer.estimated_stepping_batches``: that property
        builds the fit loop's train loader before a checkpoint is restored, and Lightning then never
        hands the saved loader position to it, so a mid-epoch resume would restart the epoch.
        """
        trainer = self.trainer
        if trainer.max_steps and trainer.max_steps > 0:
            return trainer.max_steps
        batches = len(trainer.datamodule.train_dataloader())
        limit = trainer.limit_train_batches
        if isinstance(limit, int):
            batches = min(batches, limit)
        elif limit is not None:
            batches = int(batches * limit)
        per_epoch = max(1, math.ceil(batches / trainer.accumulate_grad_batches))
        return per_epoch * max(1, trainer.max_epochs or 1)

    def _mark_consumed(self, batch: dict[str, Any]) -> None:
        loader = self.trainer.train_dataloader if self._trainer is not None else None
        if isinstance(loader, ResumableLoader) and "position" in batch:
            loader.mark_consumed(batch["position"])

    def on_train_batch_start(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._mark_consumed(batch)

    def _eval_step(self, evaluators: list[Evaluator], batch: dict[str, Any], dataloader_idx: int) -> None:
        evaluators[dataloader_idx].update(self.encoder, batch)

    def _eval_end(self, evaluators: list[Evaluator]) -> None:
        for ev in evaluators:
            self.log_dict(ev.compute(), prog_bar=len(evaluators) == 1)
            ev.reset()

    def validation_step(self, batch: dict[str, Any], batch_idx: int, dataloader_idx: int = 0) -> None:
        self._eval_step(self.val_evaluators, batch, dataloader_idx)

    def on_validation_epoch_end(self) -> None:
        self._eval_end(self.val_evaluators)

    def test_step(self, batch: dict[str, Any], batch_idx: int, dataloader_idx: int = 0) -> None:
        self._eval_step(self.test_evaluators, batch, dataloader_idx)

    def on_test_epoch_end(self) -> None:
        self._eval_end(self.test_evaluators)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        trainable = {n for n, p in self.named_parameters() if p.requires_grad}
        checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items() if k in trainable}
        checkpoint["rng"] = {"torch": torch.get_rng_state()}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if "rng" in checkpoint:
            torch.set_rng_state(checkpoint["rng"]["torch"])


class ContrastiveTask(EmbeddingTask):
    """In-batch-negatives contrastive training on pairs/triplets, or CoSENT on scored pairs.

    A batch holds every text (anchors, positives, optional hard negatives) tokenized as one tensor, so
    the two Siamese towers are one forward pass of the shared encoder. Under data parallelism the loss
    uses the examples of every rank (``loss.gather``).

    With ``loss.grad_cache_chunk`` the step is GradCache (:func:`~lacos_lightning.losses.grad_cache_step`)
    under Lightning's manual optimization: the task runs backward, clipping, the optimizer and the
    schedule itself, so the Trainer must not clip or accumulate (see :meth:`take_trainer_settings`).

    Args:
        encoder: the encoder to train.
        loss: loss settings (:class:`LossConfig`).
        optim: optimizer and schedule (:class:`OptimConfig`).
        val_evaluators: evaluators for the validation loop.
        test_evaluators: evaluators for the test loop.
        gradient_clip_val: with GradCache, clip gradients to this value (``None``/0: no clipping);
            without GradCache the Trainer clips.
        gradient_clip_algorithm: ``norm`` or ``value``.
    """

    def __init__(
        self,
        encoder: Encoder,
        loss: LossConfig,
        optim: OptimConfig,
        val_evaluators: list[Evaluator] | None = None,
        test_evaluators: list[Evaluator] | None = None,
        gradient_clip_val: float | None = None,
        gradient_clip_algorithm: str | None = None,
    ) -> None:
        super().__init__(encoder, optim, val_evaluators, test_evaluators)
        self.loss = loss
        self.automatic_optimization = loss.grad_cache_chunk is None
        self.gradient_clip_val = gradient_clip_val
        self.gradient_clip_algorithm = gradient_clip_algorithm or "norm"
        self.save_hyperparameters({"loss": asdict(loss), "optim": asdict(optim), "encoder": encoder.describe()})

    @staticmethod
    def take_trainer_settings(trainer_kwargs: dict[str, Any], loss: LossConfig) -> dict[str, Any]:
        """Move what manual optimization does itself out of the Trainer keyword arguments.

        Without GradCache nothing changes and ``{}`` is returned. With it, ``gradient_clip_val`` and
        ``gradient_clip_algorithm`` are removed from ``trainer_kwargs`` (Lightning refuses them under
        manual optimization) and returned as task keyword arguments; gradient accumulation and DeepSpeed
        are refused.
        """
        if loss.grad_cache_chunk is None:
            return {}
        strategy = trainer_kwargs.get("strategy")
        strategy_name = strategy if isinstance(strategy, str) else type(strategy).__name__
        require(
            "deepspeed" not in str(strategy_name).lower(),
            "loss.grad_cache_chunk does not work with DeepSpeed (ZeRO reduces each gradient once per step, "
            "GradCache backpropagates once per chunk); use trainer=ddp",
        )
        accumulate = trainer_kwargs.get("accumulate_grad_batches") or 1
        require(
            accumulate == 1,
            f"loss.grad_cache_chunk cannot be combined with trainer.accumulate_grad_batches={accumulate}; "
            "set it to 1 and raise data.batch_size instead (GradCache keeps memory flat in the batch size)",
        )
        return {
            "gradient_clip_val": trainer_kwargs.pop("gradient_clip_val", None),
            "gradient_clip_algorithm": trainer_kwargs.pop("gradient_clip_algorithm", None),
        }

    def embed_batch(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """Embeddings of a collated batch by role: one forward per role, each trimmed to its own
        longest text, so short anchors are not padded to the length of long positives."""
        from lacos_lightning.losses.gradcache import split_features

        parts = split_features(batch["features"], batch["size"])
        return dict(zip(batch["roles"], (self.encoder(part) for part in parts)))

    @staticmethod
    def split_roles(embeddings: torch.Tensor, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """Rows of the batch's embeddings by role (``anchor``, ``positive``, ``negative``)."""
        return dict(zip(batch["roles"], embeddings.split(batch["size"])))

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        if self.automatic_optimization:
            loss = self.loss(self.embed_batch(batch), batch.get("scores"))
        else:
            loss = self._grad_cache_step(batch)
        self.log("train/loss", loss, prog_bar=True, batch_size=batch["size"], sync_dist=True)
        return loss

    def _grad_cache_step(self, batch: dict[str, Any]) -> torch.Tensor:
        optimizer = self.optimizers()
        scheduler = self.lr_schedulers()
        optimizer.zero_grad()
        loss = grad_cache_step(
            self.encoder,
            batch["features"],
            lambda emb: self.loss(self.split_roles(emb, batch), batch.get("scores")),
            self.loss.grad_cache_chunk,
            backward=self.manual_backward,
            no_sync=getattr(self.trainer.strategy, "block_backward_sync", None),
        )
        optimizer.step()  # clipping happens in on_before_optimizer_step, after AMP unscaling
        if scheduler is not None:
            scheduler.step()
        return loss

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        if not self.automatic_optimization and self.gradient_clip_val:
            self.clip_gradients(
                optimizer,
                gradient_clip_val=self.gradient_clip_val,
                gradient_clip_algorithm=self.gradient_clip_algorithm,
            )
