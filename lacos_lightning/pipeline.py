"""The run pipeline: validate everything, read data, build trainer, encoder and task, fit, test, export.

Kept apart from the Hydra entry point so tests and other tools can run a composed config directly.
:class:`Pipeline` holds what every task shares (run record, trainer, loggers, fit/test order, export);
a subclass per task (:class:`ContrastivePipeline`, ``distill_pipeline.DistillPipeline``) validates its
own settings and data and builds its LightningModule. ``Pipeline(cfg)`` returns the subclass that
``cfg.task`` names (registry :data:`TASKS`).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from omegaconf import DictConfig, OmegaConf

from lacos_lightning.data import DataConfig, PairDataModule, load_source
from lacos_lightning.data.datamodule import subsample
from lacos_lightning.data.recipes import data_dir
from lacos_lightning.errors import ConfigError, LacosError, require
from lacos_lightning.eval import build_evaluators
from lacos_lightning.losses import LossConfig
from lacos_lightning.models import Encoder, EncoderConfig
from lacos_lightning.run_record import RunRecord, SpeedMonitor
from lacos_lightning.strategies import check_strategy, full_weights, resolve_strategy
from lacos_lightning.tasks import ContrastiveTask, OptimConfig

log = logging.getLogger("lacos_lightning")
# task name -> "module:class" of its pipeline (imported on use, so a task's dependencies load only for it)
TASKS = {
    "contrastive": "lacos_lightning.pipeline:ContrastivePipeline",
    "distill": "lacos_lightning.distill_pipeline:DistillPipeline",
}


def pipeline_class(task: str) -> type[Pipeline]:
    """The pipeline class registered for ``task`` (the base class for an unknown task, which then fails
    validation with a one-line error and an ``invalid`` run record)."""
    import importlib

    if task not in TASKS:
        return Pipeline
    module, name = TASKS[task].split(":")
    return getattr(importlib.import_module(module), name)


def _plain(node: Any) -> Any:
    return (
        OmegaConf.to_container(node, resolve=True)
        if isinstance(node, DictConfig) or OmegaConf.is_config(node)
        else node
    )


class Pipeline:
    """One run. ``run()`` returns the final metrics.json content.

    The order matters: settings and data are validated (and the run's ``metrics.json`` written with
    status ``running``) before the trainer and the model are built, so bad input costs no model load.

    Subclasses implement :meth:`settings` (calling this one first), :meth:`read_data` (calling this one
    last for the evaluators), :meth:`build_task` and :meth:`axes`; they may extend :meth:`after_test`.
    """

    score_prefixes: tuple[str, ...] = ("sts/", "bitext/", "domain/")

    def __new__(cls, cfg: DictConfig) -> Pipeline:
        if cls is Pipeline:
            cls = pipeline_class(str(cfg.get("task", "contrastive")))
        return super().__new__(cls)

    def __init__(self, cfg: DictConfig) -> None:
        self.cfg = cfg
        self.out = Path(cfg.paths.output_dir)
        self.record = RunRecord(self.out, str(cfg.get("task", "contrastive")), {})

    def run(self) -> dict[str, Any]:
        try:
            self._run()
            self._close_loggers()
        except KeyboardInterrupt:
            self.record.finish("interrupted", "KeyboardInterrupt")
            raise
        except LacosError as err:
            self.record.finish("invalid", str(err))
            raise
        except Exception as err:
            self.record.finish("failed", f"{type(err).__name__}: {err}")
            self._close_loggers(exit_code=1)
            raise
        return self.record.data

    def _close_loggers(self, exit_code: int = 0) -> None:
        """Finish W&B runs so their config and summary are written (Lightning leaves them open)."""
        for logger in getattr(self, "loggers", []):
            if type(logger).__name__ == "WandbLogger" and logger._experiment is not None:
                logger.experiment.summary.update(self.record.data.get("scores", {}))
                logger.experiment.finish(exit_code=exit_code)

    # -- steps -------------------------------------------------------------------------------------
    def settings(self) -> None:
        """Validate what every task shares: the task name, the encoder, the optimizer, ``ckpt_path``."""
        cfg = self.cfg
        task = cfg.get("task", "contrastive")
        require(task in TASKS, f"task={task!r} is unknown; choose one of {tuple(TASKS)}")
        self.encoder_cfg = EncoderConfig.from_dict(_plain(cfg.encoder))
        self.optim_cfg = OptimConfig(**_plain(cfg.optim))
        ckpt = cfg.get("ckpt_path")
        require(not ckpt or Path(ckpt).is_file(), f"ckpt_path={ckpt} does not exist")
        require(isinstance(cfg.get("train", True), bool), f"train={cfg.get('train')!r} must be true or false")
        from lacos_lightning.store import StoreConfig

        self.store_cfg = StoreConfig.from_dict(_plain(cfg.get("store")), self.encoder_cfg)

    def read_data(self) -> None:
        """Read the evaluators' data (subclasses read their training data first)."""
        root = data_dir(self.cfg.paths.get("data_dir"))
        ev = self.cfg.get("eval", {})
        batch = int(ev.get("batch_size", 64))
        self.val_evaluators = build_evaluators(_plain(ev.get("val")), root, batch)
        self.test_evaluators = build_evaluators(_plain(ev.get("test")), root, batch)

    def build_task(self, encoder: Encoder) -> tuple[pl.LightningModule, pl.LightningDataModule]:
        """The LightningModule and its datamodule for ``encoder``."""
        raise NotImplementedError

    def trainer_settings(self, kwargs: dict[str, Any]) -> None:
        """Adjust the Trainer keyword arguments (in place) before the Trainer is built."""

    def after_test(self, trainer: pl.Trainer, task: pl.LightningModule, encoder: Encoder) -> None:
        """Record task-specific results after the test loop, before the export."""

    def trainer(self) -> pl.Trainer:
        from pytorch_lightning.callbacks import ModelCheckpoint

        from lacos_lightning.loggers import build_loggers

        cfg = self.cfg
        self.speed = SpeedMonitor()
        every = cfg.checkpoint.get("every_n_steps")
        callbacks = [
            self.speed,
            ModelCheckpoint(
                dirpath=self.out / "checkpoints",
                save_last=True,
                save_top_k=0,
                every_n_train_steps=every or None,
                save_on_train_epoch_end=True,
            ),
        ]
        kwargs = resolve_strategy(_plain(cfg.trainer))
        self.trainer_settings(kwargs)
        if not self.val_evaluators:
            kwargs["limit_val_batches"] = 0
        self.loggers = build_loggers(cfg, self.out)
        try:
            return pl.Trainer(default_root_dir=str(self.out), callbacks=callbacks, logger=self.loggers, **kwargs)
        except (TypeError, ValueError) as err:
            raise ConfigError(f"trainer settings rejected: {err}") from err
        except Exception as err:
            if type(err).__name__ == "MisconfigurationException":
                raise ConfigError(f"trainer settings rejected: {err}") from err
            raise

    def _run(self) -> None:
        self.settings()
        check_strategy(_plain(self.cfg.trainer))  # a strategy that cannot run here stops before any data or model
        self.read_data()
        self.record.update(axes=self.axes())
        trainer = self.trainer()
        pl.seed_everything(int(self.cfg.seed), workers=True, verbose=False)
        encoder = Encoder(self.encoder_cfg)
        self.record.update(params=self.params(encoder))
        log.info("encoder: %s", encoder.describe())
        task, datamodule = self.build_task(encoder)
        if not self.cfg.get("train", True):  # evaluation only (the frozen base as a baseline): no fit, no export
            if self.val_evaluators:
                trainer.validate(task, datamodule=datamodule, verbose=False)
                self.record.update(scores=self.scores(trainer))
            if self.test_evaluators:
                trainer.test(task, datamodule=datamodule, verbose=False)
                self.record.update(scores=self.scores(trainer))
            self.record.finish("completed")
            return
        trainer.fit(task, datamodule=datamodule, ckpt_path=self.cfg.get("ckpt_path"))
        if trainer.interrupted:
            self.record.finish("interrupted", "training was interrupted; continue with resume=" + str(self.out))
            return
        self.record.update(speed=self.speed.summary(), scores=self.scores(trainer))
        if self.test_evaluators:
            trainer.test(task, datamodule=datamodule, verbose=False)
            self.record.update(scores=self.scores(trainer))
        self.after_test(trainer, task, encoder)
        with full_weights(trainer):  # entered on every rank; only rank 0 writes
            if trainer.is_global_zero:
                self.record.update(exports=self.export(encoder))
                self.record.update(exports=self.store(encoder))
        self.record.finish("completed")

    # -- pieces --------------------------------------------------------------------------------------
    def axes(self) -> dict[str, Any]:
        """The run's coordinates for comparisons across runs (``lacos-report``)."""
        e = self.encoder_cfg
        return {
            "backbone": e.name if not e.random_init else f"random-{e.random_init.get('model_type')}",
            "backbone_shape": e.random_init,
            "bits": e.bits,
            "peft_method": e.peft.method,
            "lora_r": e.peft.r if e.peft.method == "lora" else None,
            "adapter_size": e.peft.adapter_size if e.peft.method in ("houlsby", "pfeiffer") else None,
            "lr": self.optim_cfg.lr,
            "optimizer": self.optim_cfg.name,
            "seed": int(self.cfg.seed),
            "experiment": self.cfg.get("experiment_name"),
        }

    @staticmethod
    def params(encoder: Encoder) -> dict[str, Any]:
        counts = encoder.parameter_counts()
        counts["trainable_pct"] = round(100 * counts["trainable_params"] / max(counts["total_params"], 1), 4)
        counts["output_dim"] = encoder.output_dim
        return counts

    def scores(self, trainer: pl.Trainer) -> dict[str, float]:
        metrics = trainer.callback_metrics.items()
        return {k: round(float(v), 4) for k, v in metrics if k.startswith(self.score_prefixes)}

    def export(self, encoder: Encoder) -> dict[str, str]:
        from lacos_lightning.export import export_sentence_transformers, save_adapter

        spec = self.cfg.get("export", {})
        out: dict[str, str] = {}
        if spec.get("adapter", True):
            out["adapter"] = str(save_adapter(encoder, self.out / "adapter"))
        if spec.get("sentence_transformers", True):
            out["sentence_transformers"] = str(
                export_sentence_transformers(encoder, self.out / "sentence_transformers")
            )
        return out

    def store_domain(self) -> str | None:
        """Domain label of an adapter saved to the store (``store.domain``; subclasses may infer one)."""
        return self.store_cfg.domain

    def store(self, encoder: Encoder) -> dict[str, str]:
        """Save the trained adapter with its metadata into the adapter store (``store.dir``), if set."""
        if not self.store_cfg.enabled or not self.store_cfg.stores(encoder.cfg.peft.method):
            return {}
        from lacos_lightning.store import save_to_store

        entry = save_to_store(
            encoder,
            self.store_cfg.dir,
            domain=self.store_domain(),
            scores=self.record.data.get("scores", {}),
            run_dir=self.out,
        )
        return {"adapter_store": str(entry)}


class ContrastivePipeline(Pipeline):
    """``task=contrastive``: pairs/triplets/scored pairs, :class:`ContrastiveTask`, :class:`PairDataModule`."""

    def settings(self) -> None:
        super().settings()
        self.loss_cfg = LossConfig(**_plain(self.cfg.loss))
        self.data_cfg = DataConfig(**_plain(self.cfg.data))

    def read_data(self) -> None:
        root = data_dir(self.cfg.paths.get("data_dir"))
        records = load_source(self.data_cfg.train, root)
        self.records = subsample(records, self.data_cfg)
        has_scores = "score" in self.records[0]
        if self.loss_cfg.needs_scores:
            require(has_scores, "loss.name=cosent needs scored pairs (a score column); use loss=mnrl for pairs")
        require(
            len(self.records) >= self.data_cfg.batch_size,
            f"only {len(self.records)} training examples, fewer than data.batch_size={self.data_cfg.batch_size}",
        )
        super().read_data()

    def store_domain(self) -> str | None:
        train = self.data_cfg.train
        return self.store_cfg.domain or (train.name if train.recipe == "domain" else None)

    def trainer_settings(self, kwargs: dict[str, Any]) -> None:
        self.task_kwargs = ContrastiveTask.take_trainer_settings(kwargs, self.loss_cfg)

    def build_task(self, encoder: Encoder) -> tuple[pl.LightningModule, pl.LightningDataModule]:
        task = ContrastiveTask(
            encoder, self.loss_cfg, self.optim_cfg, self.val_evaluators, self.test_evaluators, **self.task_kwargs
        )
        datamodule = PairDataModule(
            self.records, self.data_cfg, encoder.tokenize, self.val_evaluators, self.test_evaluators
        )
        return task, datamodule

    def axes(self) -> dict[str, Any]:
        train = self.data_cfg.train
        return {
            **super().axes(),
            "domain": train.name if train.recipe == "domain" else None,
            "data": train.recipe,
            "data_volume": len(self.records),
            "batch_size": self.data_cfg.batch_size,
            "loss": self.loss_cfg.name,
        }
