"""On-disk cache of a frozen teacher's embeddings, so the teacher runs once per (teacher, texts, settings).

A cache file holds the teacher's embeddings before L2 normalisation (normalising is cheap, the other way
round is impossible) for the texts it has seen, with the teacher's identity: its resolved name, a
fingerprint of its weight files, and every setting that changes its output (bits, dtype, pooling,
max_seq_length, normalize, append_eos, layers). The file name is derived from the name and the settings,
so another setting is another file; texts are looked up one by one, so only texts never seen are
computed. The fingerprint is checked on load: a file written by another teacher under the same name
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
from lacos_lightning.models.fingerprint import weights_fingerprint

log = logging.getLogger("lacos_lightning")


def default_cache_dir() -> Path:
    """``$LACOS_CACHE_DIR/teacher_embeddings``, else ``~/.cache/lacos_lightning/teacher_embeddings``."""
    return Path(os.environ.get("LACOS_CACHE_DIR", Path.home() / ".cache" / "lacos_lightning")) / "teacher_embeddings"


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
    } | ({"ffn_size": cfg.ffn_size} if getattr(cfg, "ffn_size", None) else {})  # absent: earlier caches stay valid


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
    """Teacher embeddings of texts, kept on disk per teacher and filled in as new texts come.

    One file per (teacher name, settings) holds every text embedded so far and its embedding. A call
    computes only the texts the file lacks (none on a later epoch or run over the same data; only the new
    ones when the data grows or changes) and rewrites the file. A file whose teacher fingerprint differs
    (another teacher under the same name) or that cannot be read is rebuilt, with a log message.

    Args:
        folder: where cache files live (``None``: :func:`default_cache_dir`).
        enabled: ``False`` computes every time and writes nothing.

    After each :meth:`embeddings` call, ``last`` says what happened (``hit``: nothing computed,
    ``computed``: texts embedded by the teacher, ``path``, ``seconds``, ``reason``) for the run record
    and the benchmark.
    """

    def __init__(self, folder: str | Path | None = None, enabled: bool = True) -> None:
        self.folder = Path(folder).expanduser() if folder else default_cache_dir()
        self.enabled = enabled
        self.last: dict[str, Any] = {}

    def path_for(self, identity: dict[str, Any]) -> Path:
        named = {k: v for k, v in identity.items() if k not in ("fingerprint", "source")}
        key = hashlib.sha256(json.dumps(named, sort_keys=True).encode()).hexdigest()
        slug = re.sub(r"[^A-Za-z0-9._-]+", "_", str(identity["name"]).rstrip("/").split("/")[-1])[:40]
        return self.folder / f"{slug}-{key[:16]}.pt"

    def embeddings(self, teacher: Encoder, texts: list[str], batch_size: int = 128) -> torch.Tensor:
        """(len(texts), teacher.output_dim) float32 embeddings before normalisation, rows in ``texts`` order."""
        start = time.perf_counter()
        identity = teacher_identity(teacher)
        path = self.path_for(identity)
        stored, stored_emb, reason = self._load(path, identity) if self.enabled else ([], None, "cache disabled")
        index = {text: i for i, text in enumerate(stored)}
        missing = list(dict.fromkeys(t for t in texts if t not in index))
        if missing:
            log.info(
                "teacher embeddings: %s; computing %d of %d texts", reason or "new texts", len(missing), len(texts)
            )
            new = embed_raw(teacher, missing, batch_size)
            stored_emb = new if stored_emb is None else torch.cat([stored_emb, new])
            for text in missing:
                index[text] = len(index)
            stored = stored + missing
            if self.enabled:
                self._save(path, identity, stored, stored_emb)
        else:
            log.info("teacher embeddings of %d texts read from %s", len(texts), path)
        emb = stored_emb[torch.tensor([index[t] for t in texts], dtype=torch.long)]
        self.last = {
            "hit": not missing,
            "computed": len(missing),
            "path": str(path),
            "seconds": round(time.perf_counter() - start, 3),
            "reason": (reason or "new texts") if missing else None,
        }
        return emb

    @staticmethod
    def _save(path: Path, identity: dict[str, Any], texts: list[str], emb: torch.Tensor) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + f".tmp{os.getpid()}")
        torch.save({"identity": identity, "texts": texts, "embeddings": emb}, tmp)
        tmp.replace(path)

    @staticmethod
    def _load(path: Path, identity: dict[str, Any]) -> tuple[list[str], torch.Tensor | None, str | None]:
        """``(texts, embeddings, reason)``: what ``path`` holds for this teacher, or nothing and why."""
        if not path.is_file():
            return [], None, f"nothing cached at {path}"
        try:
            saved = torch.load(path, weights_only=True)
            texts, emb = list(saved["texts"]), saved["embeddings"]
        except Exception as err:  # a truncated or foreign file is rebuilt, not fatal
            return [], None, f"{path} is unreadable ({type(err).__name__}); rebuilding"
        old = saved.get("identity", {})
        changed = sorted(k for k in identity if old.get(k) != identity[k])
        if changed:
            return [], None, f"{path} was written by another teacher ({', '.join(changed)} differ); rebuilding"
        if emb.shape[0] != len(texts):
            return [], None, f"{path} is inconsistent ({emb.shape[0]} embeddings, {len(texts)} texts); rebuilding"
        return texts, emb, None
