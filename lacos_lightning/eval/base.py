"""The evaluator interface and the parser of evaluator specs from config.

An evaluator owns a DataLoader of raw texts and a torchmetrics Metric. ``update(encoder, batch)``
embeds one batch and updates the metric, ``compute()`` returns named scores (x100). The same object
runs inside Lightning's validation/test loops (progress bar, distributed sync through torchmetrics)
or alone through :meth:`Evaluator.run`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from lacos_lightning.errors import ConfigError


class Evaluator:
    """Base class; subclasses set ``name``, ``metric`` and implement ``update`` and ``compute``."""

    name: str
    metric: torch.nn.Module

    def __init__(self, batch_size: int = 64) -> None:
        self.batch_size = batch_size

    def dataloader(self) -> DataLoader:
        raise NotImplementedError

    def update(self, encoder: Any, batch: dict[str, Any]) -> None:
        raise NotImplementedError

    def compute(self) -> dict[str, float]:
        raise NotImplementedError

    def reset(self) -> None:
        self.metric.reset()

    @torch.inference_mode()
    def run(self, encoder: Any, progress: bool = True) -> dict[str, float]:
        """Evaluate ``encoder`` outside Lightning (eval mode, no gradients)."""
        was_training = encoder.training
        encoder.eval()
        self.metric.to(encoder.device)
        self.reset()
        for batch in tqdm(self.dataloader(), desc=self.name, disable=not progress, leave=False):
            self.update(encoder, batch)
        scores = self.compute()
        self.reset()
        encoder.train(was_training)
        return scores


def _texts_collate(batch: list[dict[str, Any]]) -> dict[str, Any]:
    return {key: [row[key] for row in batch] for key in batch[0]}


def text_loader(rows: list[dict[str, Any]], batch_size: int) -> DataLoader:
    """A sequential loader of raw-text rows."""
    return DataLoader(
        rows, batch_size=batch_size, shuffle=False, collate_fn=_texts_collate, generator=torch.Generator()
    )  # leaves the global RNG (dropout) untouched


def build_evaluators(specs: Any, root: Path | None, batch_size: int = 64) -> list[Evaluator]:
    """Build evaluators from config specs.

    A spec is a string ``sts:LANG:SPLIT`` (STS-B, e.g. ``sts:en:dev``), ``tatoeba:LANG`` (e.g.
    ``tatoeba:deu``), ``domain:NAME:SPLIT`` (pair classification on a domain set, e.g.
    ``domain:mqp:test``; :mod:`lacos_lightning.data.domain`), or a mapping ``{kind: sts_file, path: ..., columns: [s1, s2, score], header:
    bool, name: ...}`` for scored pairs in a local file. All data is read here, before any model.
    """
    from lacos_lightning.data.readers import check_records, read_table, select_columns
    from lacos_lightning.data.recipes import stsb, tatoeba
    from lacos_lightning.eval.bitext import BitextEvaluator
    from lacos_lightning.eval.sts import STSEvaluator

    out: list[Evaluator] = []
    for spec in specs or []:
        if isinstance(spec, str):
            parts = spec.split(":")
            if parts[0] == "sts" and len(parts) == 3:
                records = stsb(parts[1], parts[2], root)
                out.append(STSEvaluator(f"stsb-{parts[1]}-{parts[2]}", records, batch_size))
                continue
            if parts[0] == "domain" and len(parts) == 3:
                out.append(_domain_evaluator(parts[1], parts[2], root, batch_size))
                continue
            if parts[0] == "tatoeba" and len(parts) == 2:
                src, eng = tatoeba(parts[1], root)
                out.append(BitextEvaluator(f"tatoeba-{parts[1]}", src, eng, batch_size))
                continue
            raise ConfigError(
                f"evaluator spec {spec!r} is unknown; use sts:LANG:SPLIT, tatoeba:LANG, "
                "domain:NAME:SPLIT or a sts_file mapping"
            )
        spec = dict(spec)
        if spec.get("kind") == "bitext_file":
            out.append(_bitext_file(spec, root, batch_size))
            continue
        if spec.get("kind") != "sts_file" or "path" not in spec:
            raise ConfigError(f"evaluator spec {spec} needs kind: sts_file (or bitext_file) and a path")
        frame = read_table(spec["path"], spec.get("format"), bool(spec.get("header", False)))
        s1, s2, score = spec.get("columns", [0, 1, 2])
        records = select_columns(frame, {"anchor": s1, "positive": s2, "score": score}, spec["path"])
        check_records(records, spec["path"])
        out.append(STSEvaluator(spec.get("name", Path(spec["path"]).stem), records, batch_size))
    return out


def _domain_evaluator(name: str, split: str, root: Path | None, batch_size: int) -> Evaluator:
    """``domain:NAME:SPLIT``: AP / best accuracy (/ Spearman for graded labels) on a domain set."""
    from lacos_lightning.data.domain import domain_pairs
    from lacos_lightning.eval.pairs import PairClassificationEvaluator

    return PairClassificationEvaluator(f"{name}-{split}", domain_pairs(name, split, root), batch_size)


def _bitext_file(spec: dict[str, Any], root: Path | None, batch_size: int) -> Evaluator:
    """``{kind: bitext_file, path: PREFIX, langs: [src, tgt]}``: retrieval between the line-aligned files
    ``PREFIX.src`` and ``PREFIX.tgt`` (a relative PREFIX is read under the data folder), e.g. Multi30k val
    as a development set for Tatoeba-style retrieval."""
    from lacos_lightning.data.readers import check_records, read_lines
    from lacos_lightning.errors import DataError
    from lacos_lightning.eval.bitext import BitextEvaluator

    langs = list(spec.get("langs") or [])
    if "path" not in spec or len(langs) != 2:
        raise ConfigError(f"evaluator spec {spec} needs a path (files' prefix) and langs: [src, tgt]")
    prefix = Path(spec["path"]).expanduser()
    if root is not None and not prefix.is_absolute() and not prefix.parent.exists():
        prefix = root / prefix
    files = [Path(f"{prefix}.{lang}") for lang in langs]
    src, tgt = read_lines(files[0]), read_lines(files[1])
    if len(src) != len(tgt):
        raise DataError(f"{files[0]} has {len(src)} lines but {files[1]} has {len(tgt)}")
    check_records([{"source": a, "target": b} for a, b in zip(src, tgt)], str(prefix))
    evaluator = BitextEvaluator(spec.get("name", f"{prefix.name}-{langs[0]}-{langs[1]}"), src, tgt, batch_size)
    evaluator.files = files
    return evaluator
