"""The teacher embedding cache: reused when it should be, rebuilt (with a message) when anything changes."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest
import torch

from lacos_lightning.models import Encoder, EncoderConfig
from lacos_lightning.models.fingerprint import weights_fingerprint
from lacos_lightning.tasks.teacher_cache import TeacherCache
from tests.conftest import MINILM, TINY_BERT

TEXTS = ["A man plays the guitar.", "Two dogs run in a field.", "x", "A woman is reading a long book on a bench."]


def _teacher(seed: int = 0, **kwargs) -> Encoder:
    cfg = EncoderConfig(name=MINILM, random_init=TINY_BERT, seed=seed, peft={"method": "none"}, **kwargs)
    return Encoder(cfg).eval()


@pytest.fixture(scope="module")
def teacher() -> Encoder:
    return _teacher()


def test_computes_then_reuses(tmp_path: Path, teacher: Encoder) -> None:
    cache = TeacherCache(tmp_path)
    first = cache.embeddings(teacher, TEXTS)
    assert cache.last["hit"] is False and Path(cache.last["path"]).is_file()
    second = cache.embeddings(teacher, TEXTS)
    assert cache.last["hit"] is True
    torch.testing.assert_close(second, first, rtol=0, atol=0)
    # what is cached is the teacher's output before normalisation: normalised, it is what encode() gives
    torch.testing.assert_close(torch.nn.functional.normalize(first, dim=-1), teacher.encode(TEXTS), atol=1e-6, rtol=0)
    assert first.norm(dim=-1).sub(1).abs().max() > 1e-3


def test_only_new_texts_are_computed(tmp_path: Path, teacher: Encoder) -> None:
    cache = TeacherCache(tmp_path)
    first = cache.embeddings(teacher, TEXTS[:3])
    subset = cache.embeddings(teacher, [TEXTS[2], TEXTS[0]])
    assert cache.last["hit"] is True
    torch.testing.assert_close(subset, first[[2, 0]], rtol=0, atol=0)
    more = cache.embeddings(teacher, ["A new sentence.", *TEXTS])
    assert cache.last["hit"] is False and cache.last["computed"] == 2
    expected = torch.nn.functional.normalize(teacher(teacher.tokenize(["A new sentence.", *TEXTS])), dim=-1)
    torch.testing.assert_close(torch.nn.functional.normalize(more, dim=-1), expected.detach(), atol=1e-6, rtol=0)
    assert len(list(tmp_path.glob("*.pt"))) == 1


def test_other_settings_are_another_file(tmp_path: Path, teacher: Encoder) -> None:
    cache = TeacherCache(tmp_path)
    cache.embeddings(teacher, TEXTS)
    shorter = _teacher(max_seq_length=4)
    out = cache.embeddings(shorter, TEXTS)
    assert cache.last["hit"] is False and cache.last["computed"] == len(TEXTS)
    torch.testing.assert_close(torch.nn.functional.normalize(out, dim=-1), shorter.encode(TEXTS), atol=1e-6, rtol=0)
    assert len(list(tmp_path.glob("*.pt"))) == 2


def test_file_of_another_teacher_is_rebuilt_with_a_message(tmp_path: Path, teacher: Encoder, caplog) -> None:
    cache = TeacherCache(tmp_path)
    cache.embeddings(teacher, TEXTS)
    other = _teacher(seed=1)  # same name and settings, other weights: same file name, other fingerprint
    assert weights_fingerprint(other.info["weights"]) != weights_fingerprint(teacher.info["weights"])
    with caplog.at_level(logging.INFO, logger="lacos_lightning"):
        out = cache.embeddings(other, TEXTS)
    assert cache.last["hit"] is False
    assert "written by another teacher (fingerprint differ)" in caplog.text
    torch.testing.assert_close(torch.nn.functional.normalize(out, dim=-1), other.encode(TEXTS), atol=1e-6, rtol=0)
    cache.embeddings(other, TEXTS)
    assert cache.last["hit"] is True


def test_copied_weights_keep_the_fingerprint(tmp_path: Path, teacher: Encoder) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(teacher.info["weights"], copy)
    assert weights_fingerprint(copy) == weights_fingerprint(teacher.info["weights"])
    (copy / "model.safetensors").write_bytes(b"other bytes")
    assert weights_fingerprint(copy) != weights_fingerprint(teacher.info["weights"])


def test_fingerprint_of_weights_that_are_not_here_is_an_error(tmp_path: Path) -> None:
    from lacos_lightning.errors import ConfigError

    with pytest.raises(ConfigError, match="cannot find the weights of 'nobody/no-such-model' locally"):
        weights_fingerprint("nobody/no-such-model")  # a hub id absent from the local cache (HF_HUB_OFFLINE)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="no weight files"):
        weights_fingerprint(tmp_path / "empty")


def test_unreadable_file_is_rebuilt(tmp_path: Path, teacher: Encoder) -> None:
    cache = TeacherCache(tmp_path)
    cache.embeddings(teacher, TEXTS)
    Path(cache.last["path"]).write_bytes(b"not a torch file")
    cache.embeddings(teacher, TEXTS)
    assert cache.last["hit"] is False and "unreadable" in cache.last["reason"]


def test_disabled_cache_writes_nothing(tmp_path: Path, teacher: Encoder) -> None:
    cache = TeacherCache(tmp_path / "c", enabled=False)
    cache.embeddings(teacher, TEXTS)
    cache.embeddings(teacher, TEXTS)
    assert cache.last["hit"] is False and not (tmp_path / "c").exists()
