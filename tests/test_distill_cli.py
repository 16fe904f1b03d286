"""lacos-train task=distill: bad input ends in one `error:` line and exit code 2 before any model loads."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import needs_data
from tests.test_cli import run_train


def _lines(folder: Path, name: str, en: list[str], de: list[str]) -> str:
    (folder / f"{name}.en").write_text("".join(f"{line}\n" for line in en))
    (folder / f"{name}.de").write_text("".join(f"{line}\n" for line in de))
    return f"data.sources=[{{kind: lines, path: {folder / name}, langs: [en, de]}}]"


def _other_tokenizer(folder: Path) -> str:
    """A WordPiece tokenizer with a vocabulary of its own (not the teacher's)."""
    from transformers import BertTokenizerFast

    vocab = folder / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "dog", "cat", "runs"]) + "\n")
    out = folder / "other-tokenizer"
    BertTokenizerFast(vocab_file=str(vocab)).save_pretrained(out)
    return str(out)


def _cases(tmp: Path) -> dict[str, tuple[list[str], str]]:
    return {
        "tokenizer_mismatch": (
            ["backbone=tiny-bert", f"encoder.name={_other_tokenizer(tmp)}", "encoder.keep_layers=null"],
            "differs from the teacher's",
        ),
        "keep_layers_not_teacher": (["backbone=tiny-bert", "encoder.keep_layers=[0]"], "is not the teacher"),
        "keep_layers_out_of_range": (["encoder.keep_layers=[0, 9]"], "the teacher has 6 layers"),
        "mismatched_lines": ([_lines(tmp, "m", ["one", "two", "three"], ["eins", "zwei"])], "has 3 lines but"),
        "empty_line": ([_lines(tmp, "e", ["one", "", "three"], ["eins", "zwei", "drei"])], "line 2 is empty"),
        "test_set_as_training_data": (
            ["data.sources=[{kind: stsb, lang: de, split: test}]", "eval.test=[sts:en:test]"],
            "a test set this run evaluates on",
        ),
        "tatoeba_as_training_data": (
            [
                "data.sources=[{kind: lines, path: tatoeba/tatoeba.deu-eng, langs: [eng, deu]}]",
                "eval.test=[tatoeba:deu]",
            ],
            "never train on it",
        ),
        "teacher_with_lora": (["teacher.peft.method=lora"], "teacher.peft.method='lora'"),
        "contrastive_loss": (["loss=mnrl"], "task=distill takes loss=distill"),
        "contrastive_data": (["data=nli"], "data.sources"),
        "unknown_loss_key": (["+loss.colour=red"], "colour"),
    }


@needs_data
@pytest.mark.parametrize(
    "case",
    [
        "tokenizer_mismatch",
        "keep_layers_not_teacher",
        "keep_layers_out_of_range",
        "mismatched_lines",
        "empty_line",
        "test_set_as_training_data",
        "tatoeba_as_training_data",
        "teacher_with_lora",
        "contrastive_loss",
        "contrastive_data",
        "unknown_loss_key",
    ],
)
def test_distill_bad_input_exits_2_with_one_line(case: str, tmp_path: Path) -> None:
    args, needle = _cases(tmp_path)[case]
    proc = run_train("task=distill", *args, tmp_path=tmp_path)  # the default teacher: MiniLM, never loaded
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and needle in lines[0], proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert "Loading weights" not in proc.stderr + proc.stdout  # failed before any model was loaded
