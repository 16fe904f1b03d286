"""lacos-estimate: parameter formulas against transformers, the memory arithmetic by hand, the CLI, and the
stored CPU measurements of bench/bench_estimate.py."""

from __future__ import annotations

import json
import math
import re
import sys

import pytest
import torch
from transformers import AutoConfig, AutoModel

from lacos_lightning import estimate as E
from lacos_lightning.estimate import Linear, Setup, Shape, estimate_memory, parameter_counts, shape_from_config
from tests.conftest import MINILM, ROOT, TINY_BERT, TINY_BLOOM

TINY_BLOOM = {**TINY_BLOOM, "vocab_size": 1000}
TINY_BERT = {**TINY_BERT, "vocab_size": 1000}
BLOOM = Shape("bloom", hidden_size=64, num_layers=2, num_heads=4, vocab_size=1000)


# -- parameter counts ------------------------------------------------------------------------------
@pytest.mark.parametrize("values", [TINY_BLOOM, TINY_BERT, {**TINY_BLOOM, "hidden_size": 96, "n_layer": 3}])
def test_parameter_formula_matches_transformers(values: dict) -> None:
    values = dict(values)
    config = AutoConfig.for_model(values.pop("model_type"), **values)
    model = AutoModel.from_config(config)
    shape = shape_from_config(config)
    counts = parameter_counts(shape)
    assert counts["total"] == sum(p.numel() for p in model.parameters())
    linear_numel = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))
    assert counts["linear_weights"] == linear_numel
    names = {
        re.sub(r"^(h|encoder\.layer)\.\d+\.", "", n) for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)
    }
    assert {x.name for x in E.linears(shape)} == names  # the names LoRA targets are matched against


def test_bloom_560m_formula_by_hand() -> None:
    shape = E.shape_for_backbone("bigscience/bloom-560m")  # offline: conf/backbone/bloom-560m-random.yaml
    assert (shape.hidden_size, shape.num_layers, shape.num_heads, shape.vocab_size) == (1024, 24, 16, 250880)
    h, n, v = 1024, 24, 250880
    assert parameter_counts(shape)["total"] == v * h + 4 * h + n * (12 * h * h + 13 * h) == 559_214_592


def test_backbone_shapes_resolve() -> None:
    assert E.shape_for_backbone("bloom-7b1").hidden_size == 4096  # conf/backbone name
    minilm = E.shape_for_backbone(MINILM)  # the packaged folder, read offline
    assert (minilm.model_type, minilm.hidden_size, minilm.num_layers) == ("bert", 384, 6)
    assert parameter_counts(minilm)["total"] == 22_713_216  # all-MiniLM-L6-v2 incl. pooler
    tiny = E.shape_for_backbone("tiny-bloom")  # random_init without vocab: the tokenizer's
    assert tiny.vocab_size == 30522
    with pytest.raises(E.ConfigError, match="offline"):
        E.shape_for_backbone("nobody/no-such-model-4711")


# -- arithmetic by hand ----------------------------------------------------------------------------
def test_bytes_per_weight_by_bits() -> None:
    lin = Linear("x", 64, 192, 1)
    n = 64 * 192
    assert E.linear_weight_bytes(lin, 32) == 4 * n
    assert E.linear_weight_bytes(lin, 16) == 2 * n
    assert E.linear_weight_bytes(lin, 8) == n + 4 * 192  # int8 + fp32 scale per output row
    assert E.linear_weight_bytes(lin, 4) == n / 2 + 4 * (n // 64)  # nf4 + fp32 absmax per 64
    assert [E.other_param_bytes(b) for b in (32, 16, 8, 4)] == [4, 2, 4, 4]


def test_lora_tensors_and_optimizer_states() -> None:
    tensors = E.adapter_tensors(BLOOM, Setup(lora_r=8))
    assert tensors == [8 * 64, 192 * 8] * 2  # A (r x in) and B (out x r) of query_key_value, 2 layers
    assert sum(E.adapter_tensors(BLOOM, Setup(lora_r=2))) == 1024  # the tiny_smoke run records 1024 at r=2
    bert = Shape("bert", 64, 2, 4, 1000, 128, 512, 2, pooler=True)
    assert E.adapter_tensors(bert, Setup(lora_r=4)) == [4 * 64, 64 * 4] * 4  # query and value
    assert E.adapter_tensors(bert, Setup(lora_r=4, lora_targets=["dense"]))[:2] == [4 * 64, 64 * 4]
    assert E.optimizer_bytes([512, 1536], "adamw8bit", 4) == 8 * 2048  # under 4096: 32-bit states
    assert E.optimizer_bytes([8192], "adamw8bit", 4) == 2 * 8192 + 2 * 4 * 32  # 8-bit + absmax per 256
    assert E.optimizer_bytes([512, 8192], "adamw", 4) == 8 * 8704
    assert E.optimizer_bytes([100], "adamw", 2) == 400  # torch AdamW states take the parameter's dtype
    full = E.adapter_tensors(BLOOM, Setup(bits=16, peft_method="full"))
    assert sum(full) == parameter_counts(BLOOM)["total"]


def test_activations_by_hand() -> None:
    t, h, i, a = 2 * 8, 64, 256, 4
    setup = Setup(bits=32, batch_texts=2, seq_len=8, lora_r=8, lora_dropout=0.05)
    lora = t * h * (4 + 1) + t * 8 * 4  # dropout output fp32 + mask, rank-r output
    layer = t * 4 * (2 * h + 3 * h + i) + 2 * a * 8 * 8 * 4 + lora
    outside = 2 * t * h * 4
    saved, workspace = E.activation_bytes(BLOOM, setup)
    assert saved == 2 * layer + outside == 97280
    assert workspace == max(2 * 2 * a * 64 * 4, 2 * t * i * 4) + t * 3 * h * 4
    gc, _ = E.activation_bytes(BLOOM, Setup(bits=32, batch_texts=2, seq_len=8, gradient_checkpointing=True))
    assert gc == 2 * t * h * 4 + layer + outside
    bf16, _ = E.activation_bytes(BLOOM, Setup(bits=16, batch_texts=2, seq_len=8))
    assert bf16 == 2 * (t * 2 * (2 * h + 3 * h + i) + 2 * a * 64 * (4 + 2) + lora) + 2 * t * h * 2
    int8, _ = E.activation_bytes(BLOOM, Setup(bits=8, batch_texts=2, seq_len=8))
    assert int8 == saved + 2 * t * (h + h + h + i) * 4  # bitsandbytes keeps each int8 linear's input


def test_cuda_estimate_adds_up() -> None:
    setup = Setup(bits=8, batch_texts=4, seq_len=16)
    est = estimate_memory(BLOOM, setup, "cuda")
    counts = parameter_counts(BLOOM)
    lin = E.linears(BLOOM)
    weights = sum(E.linear_weight_bytes(x, 8) * x.count for x in lin)
    weights += 4 * (counts["embeddings"] + counts["norms"] + counts["linear_biases"])
    assert est.weights == weights
    assert est.adapter == est.gradients == 4 * est.trainable_params == 4 * 4096
    parts = est.weights + est.adapter + est.gradients + est.optimizer + est.activations + est.workspace
    assert est.train_peak == pytest.approx(parts + E.CUDA_CONTEXT_GIB * E.GIB)
    assert est.peak == max(est.train_peak, est.load_peak)
    fp32 = estimate_memory(BLOOM, Setup(bits=32, batch_texts=4, seq_len=16, optimizer="adamw"), "cuda")
    assert fp32.optimizer == 8 * fp32.trainable_params


def test_cpu_estimate_terms() -> None:
    counts = parameter_counts(BLOOM)
    bf16 = estimate_memory(BLOOM, Setup(bits=16, checkpoint_bytes_per_param=4), "cpu")
    assert bf16.load_peak == pytest.approx(4 * counts["total"] + bf16.weights + E.CPU_LOAD_RUNTIME_GIB * E.GIB)
    int8 = estimate_memory(BLOOM, Setup(bits=8, checkpoint_bytes_per_param=4, vocab_in_use=100), "cpu")
    assert int8.backend_terms["checkpoint_pages_kept"] == 4 * counts["linear_weights"]  # fp32 pages stay mapped
    assert int8.backend_terms["embedding_rows_never_read"] == pytest.approx(-4 * 64 * 900)
    converted = estimate_memory(BLOOM, Setup(bits=8, dtype="bfloat16"), "cpu")  # bf16 load: copies, no mapping
    assert "checkpoint_pages_kept" not in converted.backend_terms


def test_paper_claim_bloom_7b1_needs_checkpointing_on_32gb() -> None:
    shape = E.shape_for_backbone("bigscience/bloom-7b1")
    assert parameter_counts(shape)["total"] == pytest.approx(7.07e9, rel=0.01)
    plain = estimate_memory(shape, Setup(bits=8, batch_texts=96, seq_len=64), "cuda")
    gc = estimate_memory(shape, Setup(bits=8, batch_texts=96, seq_len=64, gradient_checkpointing=True), "cuda")
    assert plain.peak > 32 * E.GIB > gc.peak
    assert 9 * E.GIB < plain.weights < 10 * E.GIB  # int8 linears + the fp32 embedding peft casts


# -- the CLI ---------------------------------------------------------------------------------------
def test_cli_paper_table(capsys) -> None:
    E.main(["--paper-table"])
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("| bloom-")]
    assert len(rows) == 20 and "bloom-7b1" in rows[-1]


def test_cli_from_config_json(capsys) -> None:
    E.main(["experiment=tiny_smoke", "encoder.bits=4", "encoder.peft.r=2", "--json"])
    result = json.loads(capsys.readouterr().out)
    assert result["setup"]["bits"] == 4 and result["setup"]["batch_texts"] == 16 * 3  # NLI triplets
    assert result["trainable_params"] == 1024 and result["total_params"] == 2_053_632
    assert result["peak_gib"] > 0


@pytest.mark.parametrize(
    "argv, needle",
    [(["encoder.bits=5"], "encoder.bits=5"), (["backbone=nope"], "overrides rejected"), (["--bits"], None)],
)
def test_cli_bad_input_exits_2(argv: list[str], needle: str | None, capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        E.main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    if needle:
        assert len(err) == 1 and err[0].startswith("error:") and needle in err[0]


# -- the CPU measurements --------------------------------------------------------------------------
def test_estimate_within_15pct_of_stored_cpu_measurements() -> None:
    """Re-estimate every configuration measured by bench/bench_estimate.py (no new measurement)."""
    path = ROOT / "bench" / "results" / "estimate.json"
    if not path.is_file():
        pytest.skip("bench/results/estimate.json not found (run bench/bench_estimate.py)")
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        import bench_estimate
    finally:
        sys.path.remove(str(ROOT / "bench"))
    payload = json.loads(path.read_text())
    args = payload["args"]
    rows = [r for r in payload["rows"] if "error" not in r or not r["error"]]
    assert len(rows) >= 10
    for row in rows:
        out = bench_estimate.compare(row, args["batch"], args["seq_len"], args["lora_r"])
        assert abs(out["rel_error"]) <= 0.15, (row["label"], row["bits"], row["gc"], out["rel_error"])
        assert math.isclose(out["est_weights_gib"], row["weights_gib"], rel_tol=0.01)  # tensor bytes exactly
