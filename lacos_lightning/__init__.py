"""lacos_lightning: parameter-efficient sentence-embedding training on Lightning + Hydra."""

from __future__ import annotations

__version__ = "0.1.0"
