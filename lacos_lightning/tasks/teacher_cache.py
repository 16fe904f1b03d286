"""On-disk cache of a frozen teacher's embeddings, so the teacher runs once per (teacher, texts, settings).

A cache file holds the teacher's embeddings before L2 normalisation (normalising is cheap, the other way
round is impossible) for an ordered list of texts, with the teacher's identity: its resolved name, a
fingerprint of its weight files, and every setting that changes its output (bits, dtype, pooling,
max_seq_length, normalize, append_eos, layers). The file name is derived from the name, the settings and
the texts; the fingerprint is checked on load, so a file written by another teacher under the same name
(retrained weights, a copied file) is rebuilt with a message rather than silently reused.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import time
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from lacos_lightning.models import Encoder

log = logging.getLogger("lacos_lightning")
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")
_FINGERPRINTS: dict[tuple[str, int, float], str] = {}


def default_cache_dir() -> Path:
    """``$LACOS_CACHE_DIR/teacher_embeddings``, else ``~/.cache/lacos_lightning/teacher_embeddings``."""
    return Path(os.environ.get("LACOS_CACHE_DIR", Path.home() / ".cache" / "lacos_lightning")) / "teacher_embeddings"


def weights_fingerprint(location: str | Path) -> str:
    """SHA-256 (16 hex digits) over the weight files of a model folder (or one file), in name order."""
    path = Path(location)
    files = sorted(p for p in path.rglob("*") if p.suffix in WEIGHT_SUFFIXES) if path.is_dir() else [path]
    digest = hashlib.sha256()
    for file in files:
        if not file.is_file():
            continue
        stat = file.stat()
        key = (str(file.resolve()), stat.st_size, stat.st_mtime)
        if key not in _FINGERPRINTS:
            part = hashlib.sha256()
            with file.open("rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    part.update(block)
            _FINGERPRINTS[key] = part.hexdigest()
        digest.update(file.name.encode() + _FINGERPRINTS[key].encode())
    return digest.hexdigest()[:16]


def teacher_identity(teacher: Encoder) -> dict[str, Any]:
    """Everything that determines the teacher's embeddings of a text."""
    cfg = teacher.cfg
    return {
        "name": cfg.name,
        "source": teacher.info.get("source"),
        "fingerprint": weights_fingerprint(teacher.info["weights"]),
        "bits": cfg.bits,
        "dtype": cfg.dtype,
        "pooling": cfg.pooling,
        "max_seq_length": teacher.max_seq_length,
        "normalize": cfg.normalize,
        "append_eos": teacher.info.get("append_eos"),
        "keep_layers": getattr(cfg, "keep_layers", None),
        "output_dim": teacher.output_dim,
    }


def texts_digest(texts: list[str]) -> str:
    digest = hashlib.sha256()
    for text in texts:
        digest.update(text.encode("utf-8") + b"\x00")
    return digest.hexdigest()[:16]


@torch.inference_mode()
def embed_raw(encoder: Encoder, texts: list[str], batch_size: int = 128, desc: str = "teacher") -> torch.Tensor:
    """Embeddings before normalisation, in eval mode, longest first (less padding), rows in input order."""
    encoder.eval()
    order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
    out = torch.empty(len(texts), encoder.output_dim)
    for start in tqdm(range(0, len(order), batch_size), desc=desc, leave=False):
        rows = order[start : start + batch_size]
        features = {k: v.to(encoder.device) for k, v in encoder.tokenize([texts[i] for i in rows]).items()}
        out[torch.tensor(rows)] = encoder(features, normalize=False).float().cpu()
    return out


class TeacherCache:
    """Teacher embeddings of text lists, from disk when a matching file exists, else computed and stored.

    Args:
        folder: where cache files live (``None``: :func:`default_cache_dir`).
        enabled: ``False`` computes every time and writes nothing.

    After each :meth:`embeddings` call, ``last`` says what happened (``hit``, ``path``, ``seconds``,
    ``reason``) for the run record and the benchmark.
    """

    def __init__(self, folder: str | Path | None = None, enabled: bool = True) -> None:
        self.folder = Path(folder).expanduser() if folder else default_cache_dir()
        self.enabled = enabled
        self.last: dict[str, Any] = {}

    def path_for(self, identity: dict[str, Any], digest: str) -> Path:
        named = {k: v for k, v in identity.items() if k not in ("fingerprint", "source")}
        key = hashlib.sha256(json.dumps({"teacher": named, "texts": digest}, sort_keys=True).encode()).hexdigest()
        slug = re.sub(r"[^A-Za-z0-9._-]+", "_", str(identity["name"]).rstrip("/").split("/")[-1])[:40]
        return self.folder / f"{slug}-{key[:16]}.pt"

    def embeddings(self, teacher: Encoder, texts: list[str], batch_size: int = 128) -> torch.Tensor:
        """(len(texts), teacher.output_dim) float32 embeddings before normalisation."""
        start = time.perf_counter()
        identity, digest = teacher_identity(teacher), texts_digest(texts)
        path = self.path_for(identity, digest)
        reason = "cache disabled"
        if self.enabled:
            reason = self._stale(path, identity, digest, len(texts))
            if reason is None:
                emb = torch.load(path, weights_only=True)["embeddings"]
                self.last = {"hit": True, "path": str(path), "seconds": time.perf_counter() - start, "reason": None}
                log.info("teacher embeddings of %d texts read from %s", len(texts), path)
                return emb
            log.info("teacher embeddings: %s; computing %d", reason, len(texts))
        emb = embed_raw(teacher, texts, batch_size)
        if self.enabled:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(path.name + f".tmp{os.getpid()}")
            torch.save({"identity": identity, "texts": digest, "count": len(texts), "embeddings": emb}, tmp)
            tmp.replace(path)
        self.last = {"hit": False, "path": str(path), "seconds": time.perf_counter() - start, "reason": reason}
        return emb

    @staticmethod
    def _stale(path: Path, identity: dict[str, Any], digest: str, count: int) -> str | None:
        """Why ``path`` cannot be used (``None`` if it can)."""
        if not path.is_file():
            return f"nothing cached at {path}"
        try:
            saved = torch.load(path, weights_only=True)
        except Exception as err:  # a truncated or foreign file is rebuilt, not fatal
            return f"{path} is unreadable ({type(err).__name__}); rebuilding"
        old = saved.get("identity", {}) if isinstance(saved, dict) else {}
        changed = sorted(k for k in identity if old.get(k) != identity[k])
        if changed:
            return f"{path} was written by another teacher ({', '.join(changed)} differ); rebuilding"
        if saved.get("texts") != digest or saved.get("count") != count or saved["embeddings"].shape[0] != count:
            return f"{path} holds other texts; rebuilding"
        return None
