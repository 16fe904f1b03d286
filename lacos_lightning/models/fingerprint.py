"""One fingerprint of a model's weights, shared by the adapter store (which base an adapter belongs to)
and the teacher-embedding cache (which teacher wrote a file).

It is read from the weight files, not from the loaded model, so one base loaded at 32, 16, 8 or 4 bits
has one fingerprint; a hub id is looked up in the local Hugging Face cache (never downloaded).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from lacos_lightning.errors import ConfigError, require

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")
_FILE_HASHES: dict[tuple[str, int, float], str] = {}  # per file, while its size and mtime stay the same


def weights_location(weights: str | Path) -> Path:
    """A local folder (or file) of weights, or the local snapshot of a hub id."""
    path = Path(weights)
    if path.exists():
        return path
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(str(weights), local_files_only=True))
    except Exception as err:
        raise ConfigError(f"cannot find the weights of {str(weights)!r} locally to fingerprint them") from err


def weights_fingerprint(weights: str | Path) -> str:
    """SHA-256 (16 hex digits) over the weight files of a model folder (or one file), in name order."""
    path = weights_location(weights)
    files = (
        sorted(p for p in path.rglob("*") if p.suffix in WEIGHT_SUFFIXES and p.is_file()) if path.is_dir() else [path]
    )
    require(bool(files), f"{path}: no weight files ({', '.join(WEIGHT_SUFFIXES)}) to fingerprint")
    digest = hashlib.sha256()
    for file in files:
        stat = file.stat()
        key = (str(file.resolve()), stat.st_size, stat.st_mtime)
        if key not in _FILE_HASHES:
            part = hashlib.sha256()
            with file.open("rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    part.update(block)
            _FILE_HASHES[key] = part.hexdigest()
        digest.update(file.name.encode() + _FILE_HASHES[key].encode())
    return digest.hexdigest()[:16]
