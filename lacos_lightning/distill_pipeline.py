"""``task=distill``: a frozen teacher's embeddings (cached on disk) distilled into the run's encoder.

Validation before any model loads: the teacher, loss, data and ``distill`` blocks; the student's tokenizer
against the teacher's where it must match (thin-deep students built from a config, students made of the
teacher's layers); layer indices against the teacher's layer count; every data file (line counts, empty
lines); and that no training source is a test set the run evaluates on.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch

from lacos_lightning.data.distill_datamodule import DistillCollator, DistillDataModule
from lacos_lightning.data.parallel import DistillDataConfig, read_source, split_heldout
from lacos_lightning.data.recipes import data_dir
from lacos_lightning.errors import require
from lacos_lightning.eval.teacher import TeacherDistanceEvaluator
from lacos_lightning.losses.distill import DistillLossConfig
from lacos_lightning.models import Encoder, EncoderConfig
from lacos_lightning.models.config import _from_mapping
from lacos_lightning.models.layers import size_counts
from lacos_lightning.pipeline import Pipeline, _plain
from lacos_lightning.tasks.distill import DistillationTask, DistillSettings, pca_projection
from lacos_lightning.tasks.teacher_cache import TeacherCache

log = logging.getLogger("lacos_lightning")


def _layer_count(cfg: EncoderConfig) -> int:
    from transformers import AutoConfig

    from lacos_lightning.models.backbone import resolve_name

    if cfg.random_init:
        values = dict(cfg.random_init)
        config = AutoConfig.for_model(values.pop("model_type"), **values)
    else:
        config = AutoConfig.from_pretrained(resolve_name(cfg.name))
    return int(config.num_hidden_layers)


def check_student(student: EncoderConfig, teacher: EncoderConfig) -> None:
    """Students built from a config or from the teacher's layers must share the teacher's tokenizer."""
    from transformers import AutoTokenizer

    from lacos_lightning.models.backbone import resolve_name

    if student.keep_layers is not None:
        same = (resolve_name(student.name), student.random_init, student.seed if student.random_init else 0) == (
            resolve_name(teacher.name),
            teacher.random_init,
            teacher.seed if teacher.random_init else 0,
        )
        require(
            same,
            f"encoder.keep_layers takes layers of the teacher, but the student (encoder.name={student.name}, "
            f"random_init={student.random_init}) is not the teacher (teacher.name={teacher.name}, "
            f"random_init={teacher.random_init})",
        )
        layers = _layer_count(teacher)
        bad = [i for i in student.keep_layers if i >= layers]
        require(
            not bad, f"encoder.keep_layers={student.keep_layers}: the teacher has {layers} layers (0..{layers - 1})"
        )
    if student.random_init is None and student.keep_layers is None:
        return  # a pretrained student brings its own tokenizer
    ours, theirs = resolve_name(student.name), resolve_name(teacher.name)
    if ours == theirs:
        return
    vocab_s = AutoTokenizer.from_pretrained(ours).get_vocab()
    vocab_t = AutoTokenizer.from_pretrained(theirs).get_vocab()
    require(
        vocab_s == vocab_t,
        f"the student's tokenizer (encoder.name={student.name}, {len(vocab_s)} tokens) differs from the teacher's "
        f"(teacher.name={teacher.name}, {len(vocab_t)} tokens); a student built from a config or from the "
        "teacher's layers must use the teacher's tokenizer",
    )


def _test_set_keys(files: list[Path]) -> set[tuple[str, ...]]:
    """What a file is, as a test set: STS-B splits share rows across languages, so any language counts."""
    keys: set[tuple[str, ...]] = set()
    for f in files:
        name = f.name
        if f.parent.name == "stsb" and name.startswith("stsb-"):
            keys.add(("stsb", name.rsplit("-", 1)[-1].removesuffix(".csv")))
        elif name.startswith("tatoeba."):
            keys.add(("tatoeba", name.split(".")[1]))
        else:
            keys.add(("file", str(f.resolve())))
    return keys


class DistillPipeline(Pipeline):
    """``task=distill``: the ``encoder`` block is the student, the ``teacher`` block the frozen teacher."""

    score_prefixes = ("sts/", "bitext/", "distill/")

    def settings(self) -> None:
        super().settings()
        cfg = self.cfg
        require(cfg.get("teacher") is not None, "task=distill needs a teacher block (use task=distill)")
        self.teacher_cfg = EncoderConfig.from_dict(_plain(cfg.teacher))
        t = self.teacher_cfg
        require(t.peft.method == "none", f"teacher.peft.method={t.peft.method!r}: the teacher is frozen; use none")
        require(t.projection_dim is None, "teacher.projection_dim: a teacher has no (untrained) projection; use null")
        loss, data = _plain(cfg.loss), _plain(cfg.data)
        require(loss.get("name") == "distill", f"loss.name={loss.get('name')!r}: task=distill takes loss=distill")
        require("sources" in data, "task=distill reads data.sources; use data=distill_en or data=distill_multilingual")
        self.loss_cfg = _from_mapping(DistillLossConfig, loss, "loss")
        self.data_cfg = _from_mapping(DistillDataConfig, data, "data")
        self.distill_cfg = _from_mapping(DistillSettings, _plain(cfg.get("distill")), "distill")
        check_student(self.encoder_cfg, self.teacher_cfg)

    def read_data(self) -> None:
        root = data_dir(self.cfg.paths.get("data_dir"))
        records: list[dict[str, str]] = []
        self.source_counts: dict[str, int] = {}
        files: list[tuple[str, Path]] = []
        for source in self.data_cfg.sources:
            part, read = read_source(source, root)
            records += part
            self.source_counts[source.describe()] = len(part)
            files += [(source.describe(), f) for f in read]
        self.records, self.heldout = split_heldout(records, self.data_cfg)
        require(
            len(self.records) >= self.data_cfg.batch_size,
            f"only {len(self.records)} training records, fewer than data.batch_size={self.data_cfg.batch_size}",
        )
        super().read_data()
        self._refuse_test_sets(files, root)
        if self.heldout:
            batch = int(self.cfg.get("eval", {}).get("batch_size", 64))
            normalized = self.loss_cfg.mse_normalized
            self.val_evaluators.append(TeacherDistanceEvaluator("heldout", self.heldout, None, normalized, batch))
            self.test_evaluators.append(TeacherDistanceEvaluator("heldout", self.heldout, None, normalized, batch))

    def _refuse_test_sets(self, files: list[tuple[str, Path]], root: Path | None) -> None:
        """Never train on a test set the run evaluates on (STS-B test in any language, Tatoeba)."""
        tested: set[tuple[str, ...]] = set()
        for ev in self.test_evaluators + self.val_evaluators:
            kind, _, rest = ev.name.partition("-")
            if kind == "stsb":
                tested.add(("stsb", rest.rsplit("-", 1)[-1]))
            elif kind == "tatoeba":
                tested.add(("tatoeba", f"{rest}-eng"))
            tested |= _test_set_keys(list(getattr(ev, "files", [])))
        for described, f in files:
            clash = _test_set_keys([f]) & tested
            require(
                not clash, f"data.sources: {described} reads {f}, a test set this run evaluates on; never train on it"
            )

    def build_task(self, encoder: Encoder) -> tuple[pl.LightningModule, pl.LightningDataModule]:
        self.teacher = Encoder(self.teacher_cfg).eval()
        self.teacher.requires_grad_(False)
        log.info("teacher: %s", self.teacher.describe())
        texts = sorted({r["source"] for r in self.records} | {r["related"] for r in self.records if "related" in r})
        texts = sorted(set(texts) | set(self.heldout))
        cache = TeacherCache(self.distill_cfg.cache_dir, self.distill_cfg.cache)
        targets = cache.embeddings(self.teacher, texts, self.distill_cfg.teacher_batch_size)
        self.record.update(teacher_cache={**cache.last, "texts": len(texts)})
        index = {text: i for i, text in enumerate(texts)}
        heldout_targets = targets[torch.tensor([index[t] for t in self.heldout], dtype=torch.long)]
        for ev in self.val_evaluators + self.test_evaluators:
            if isinstance(ev, TeacherDistanceEvaluator):
                ev.teacher = heldout_targets
        self.prepare_student(encoder)
        task = DistillationTask(
            encoder, self.loss_cfg, self.optim_cfg, self.teacher.output_dim, self.val_evaluators, self.test_evaluators
        )
        distance = [ev for ev in self.val_evaluators if isinstance(ev, TeacherDistanceEvaluator)]
        if distance and not self.cfg.get("ckpt_path"):  # the student before any training, for comparison
            before = distance[0].run(encoder, progress=False)
            self.record.update(
                scores={k.replace("/heldout/", "/heldout_initial/"): round(v, 6) for k, v in before.items()}
            )
        collate = DistillCollator(encoder.tokenize, targets, index, self.loss_cfg.embed_sources)
        d = self.data_cfg
        datamodule = DistillDataModule(
            self.records, d.batch_size, d.seed, collate, d.num_workers, self.val_evaluators, self.test_evaluators
        )
        return task, datamodule

    def prepare_student(self, encoder: Encoder) -> None:
        """``distill.freeze_embeddings`` and ``distill.init_projection`` (not on resume: the checkpoint has them)."""
        settings = self.distill_cfg
        if settings.freeze_embeddings:
            encoder.base_model.get_input_embeddings().requires_grad_(False)
            self.record.update(params=self.params(encoder))
        if settings.init_projection == "pca" and encoder.projection is not None and not self.cfg.get("ckpt_path"):
            texts = sorted({r["source"] for r in self.records})
            texts = [
                texts[i]
                for i in torch.randperm(len(texts), generator=torch.Generator().manual_seed(0))[: settings.pca_texts]
            ]
            pca_projection(encoder, texts)
            log.info("student projection initialised from the principal directions of %d sentences", len(texts))

    def after_test(self, trainer: pl.Trainer, task: pl.LightningModule, encoder: Encoder) -> None:
        self.record.update(params={"teacher": self.params(self.teacher) | size_counts(self.teacher.backbone)})
        n = self.distill_cfg.speed_texts
        if n and trainer.is_global_zero:
            self.record.update(speed=self.encoding_speed(encoder, n))

    def encoding_speed(self, encoder: Encoder, n: int) -> dict[str, Any]:
        """Sentences per second of student and teacher on the same texts (the held-out ones first), fp32."""
        texts = (list(self.heldout) + sorted({r["source"] for r in self.records}))[:n]
        out: dict[str, Any] = {"speed_texts": len(texts), "torch_threads": torch.get_num_threads()}
        for name, model in (("student", encoder), ("teacher", self.teacher)):
            model.encode(texts[:64])  # warm-up
            start = time.perf_counter()
            model.encode(texts, batch_size=64)
            out[f"{name}_sentences_per_s"] = round(len(texts) / (time.perf_counter() - start), 2)
        out["speedup"] = round(out["student_sentences_per_s"] / out["teacher_sentences_per_s"], 3)
        return out

    @staticmethod
    def params(encoder: Encoder) -> dict[str, Any]:
        counts = Pipeline.params(encoder)
        return counts | size_counts(encoder.backbone)

    def axes(self) -> dict[str, Any]:
        e, t, d, lc = self.encoder_cfg, self.teacher_cfg, self.data_cfg, self.loss_cfg
        return super().axes() | {
            "keep_layers": e.keep_layers,
            "ffn_size": e.ffn_size,
            "output_dim": e.projection_dim,
            "teacher": t.name if not t.random_init else f"random-{t.random_init.get('model_type')}",
            "teacher_bits": t.bits,
            "data": self.source_counts,
            "data_volume": len(self.records),
            "heldout": len(self.heldout),
            "batch_size": d.batch_size,
            "loss": f"distill(mse={lc.mse}, kl={lc.kl}, sim={lc.sim}, bitext={lc.bitext})",
        }
