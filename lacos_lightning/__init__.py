"""lacos_lightning: parameter-efficient sentence-embedding training on Lightning + Hydra."""

from __future__ import annotations

import logging
import warnings

__version__ = "0.1.0"

# bitsandbytes logs a warning at import on CPUs with AVX512-BF16 when it cannot fetch an optional
# kernel from the hub, and warns on every 8-bit matmul that inputs are cast to fp16: neither is
# actionable for a user.
logging.getLogger("bitsandbytes").setLevel(logging.ERROR)
warnings.filterwarnings("ignore", message=".*MatMul8bitLt: inputs will be cast.*")
