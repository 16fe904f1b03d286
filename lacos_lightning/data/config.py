"""Validated data settings."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from lacos_lightning.errors import require

RECIPES = ("nli", "stsb", "file", "hub", "domain")
ROLES = ("anchor", "positive", "negative", "score")


@dataclass
class SourceConfig:
    """Where training examples come from.

    Attributes:
        recipe: ``nli`` (entailment pairs, contradiction as hard negative), ``stsb`` (scored pairs),
            ``file`` (a local table), ``hub`` (a Hugging Face dataset by name) or ``domain`` (labelled
            pairs of a domain set, :mod:`lacos_lightning.data.domain`).
        path: local file for ``file``.
        name: hub dataset name for ``hub`` (or to override a recipe's hub source); for ``domain`` the
            domain: ``twitter``, ``mqp`` or ``qatar``.
        subset: hub dataset configuration name.
        split: split to read (recipes: ``train``/``dev``/``test``; NLI also ``validation``).
        format: ``csv``, ``tsv``, ``jsonl`` or ``parquet``; ``None`` guesses from the extension.
        header: whether the file has a header row; without one, columns are 0, 1, 2...
        columns: role -> column name (or index without header); roles are anchor, positive,
            negative (optional) and score (scored pairs).
        lang: language of a multilingual recipe (STS-B).
        hard_negatives: NLI recipe: add a contradiction hypothesis as hard negative.
        score_range: allowed [min, max] of scores; rows outside are an error.
    """

    recipe: str = "nli"
    path: str | None = None
    name: str | None = None
    subset: str | None = None
    split: str = "train"
    format: str | None = None
    header: bool = True
    columns: dict[str, Any] = field(default_factory=dict)
    lang: str = "en"
    hard_negatives: bool = True
    score_range: list[float] | None = None

    def __post_init__(self) -> None:
        require(self.recipe in RECIPES, f"data.train.recipe={self.recipe!r} is unknown; choose one of {RECIPES}")
        self.columns = dict(self.columns or {})
        bad = sorted(set(self.columns) - set(ROLES))
        require(not bad, f"data.train.columns has unknown role(s) {bad}; roles are {ROLES}")
        if self.recipe == "file":
            require(bool(self.path), "data.train.recipe=file needs data.train.path")
        if self.recipe == "hub":
            require(bool(self.name), "data.train.recipe=hub needs data.train.name (a dataset id)")
        if self.recipe == "domain":
            from lacos_lightning.data.domain import check_split

            check_split(str(self.name), self.split)
        if self.recipe in ("file", "hub"):
            require(
                {"anchor", "positive"} <= set(self.columns),
                "data.train.columns must map at least anchor and positive (e.g. {anchor: sentence1, positive: sentence2})",
            )
        if self.score_range is not None:
            self.score_range = [float(x) for x in self.score_range]
            require(
                len(self.score_range) == 2 and self.score_range[0] < self.score_range[1],
                f"data.train.score_range={self.score_range} must be [min, max] with min < max",
            )


@dataclass
class DataConfig:
    """Training data, its volume and batching.

    Attributes:
        train: the training source (:class:`SourceConfig`).
        max_train_samples: keep at most this many examples (a seeded random subset).
        train_fraction: keep this fraction of the examples (applied before ``max_train_samples``).
        batch_size: examples per batch (each gives 2 or 3 texts).
        num_workers: DataLoader worker processes.
        seed: seed of the subset and of the shuffling.
    """

    train: SourceConfig = field(default_factory=SourceConfig)
    max_train_samples: int | None = None
    train_fraction: float | None = None
    batch_size: int = 32
    num_workers: int = 0
    seed: int = 42

    def __post_init__(self) -> None:
        if not isinstance(self.train, SourceConfig):
            from lacos_lightning.models.config import _from_mapping

            self.train = _from_mapping(SourceConfig, self.train, "data.train")
        require(
            self.max_train_samples is None or self.max_train_samples >= 1,
            f"data.max_train_samples={self.max_train_samples!r} must be >= 1",
        )
        require(
            self.train_fraction is None or 0 < self.train_fraction <= 1,
            f"data.train_fraction={self.train_fraction!r} must be in (0, 1]",
        )
        require(self.batch_size >= 2, f"data.batch_size={self.batch_size!r} must be >= 2 for in-batch negatives")
        require(self.num_workers >= 0, f"data.num_workers={self.num_workers!r} must be >= 0")
