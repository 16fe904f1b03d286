"""task=distill end to end on tiny random backbones: the student gets closer to the teacher, the teacher stays
frozen, the cache serves a second run, layer-subset students export to sentence-transformers."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch
from transformers import AutoModel

from lacos_lightning.errors import ConfigError
from lacos_lightning.models import Encoder, EncoderConfig
from lacos_lightning.models.layers import prune_ffn, select_layers, size_counts
from lacos_lightning.pipeline import Pipeline
from tests.conftest import MINILM, TINY_BERT, TINY_BLOOM, compose_train

# A 4-layer random BERT teacher; initializer_range 0.2 spreads its sentence similarities (std ~0.16 rather
# than ~0.01 at the default 0.02), so there is a geometry to learn.
TEACHER = {**TINY_BERT, "num_hidden_layers": 4, "initializer_range": 0.2}
_SHAPE = "{model_type: bert, hidden_size: 64, num_hidden_layers: 4, num_attention_heads: 4, intermediate_size: 128, initializer_range: 0.2}"
TEACHER_ARG = f"teacher.random_init={_SHAPE}"
STUDENT_OF_TEACHER = f"encoder.random_init={_SHAPE}"


def _sentences(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    who = ["a man", "the woman", "two dogs", "a child", "an old cat", "the band", "a cook", "three birds"]
    does = ["plays", "eats", "watches", "carries", "paints", "throws", "finds", "cleans"]
    what = ["a guitar", "the red ball", "some bread", "a small boat", "the window", "an apple", "two books", "music"]
    where = ["in the park", "at home", "on the beach", "near the river", "", "in a busy street", "at night"]
    out = {
        f"{rng.choice(who)} {rng.choice(does)} {rng.choice(what)} {rng.choice(where)}".strip() + "."
        for _ in range(4 * n)
    }
    return sorted(out)[:n]


def _corpus(tmp_path: Path, n: int = 700) -> str:
    path = tmp_path / "corpus"
    (tmp_path / "corpus.en").write_text("\n".join(_sentences(n)) + "\n")
    return str(path)


def _cfg(tmp_path: Path, *overrides: str, out: str = "run"):
    corpus = _corpus(tmp_path)
    return compose_train(
        [
            "task=distill",
            TEACHER_ARG,
            f"'data.sources=[{{kind: lines, path: {corpus}, langs: [en]}}]'".strip("'"),
            "data.heldout_samples=64",
            "data.batch_size=32",
            "eval.val=[]",
            "eval.test=[]",
            f"distill.cache_dir={tmp_path / 'cache'}",
            "distill.speed_texts=64",
            "export.sentence_transformers=false",
            *overrides,
        ],
        tmp_path / out,
    )


def test_tiny_teacher_into_tiny_student_gets_closer(tmp_path: Path) -> None:
    overrides = (
        "backbone=tiny-bert",
        "encoder.projection_dim=32",
        "data.max_train_samples=512",
        "trainer.max_epochs=4",
        "optim.lr=2e-3",
        "optim.warmup_ratio=0",
    )
    pipeline = Pipeline(_cfg(tmp_path, *overrides))
    record = pipeline.run()
    assert record["status"] == "completed", record["error"]
    scores = record["scores"]
    assert scores["distill/heldout/sim_mad"] < 0.7 * scores["distill/heldout_initial/sim_mad"], scores
    assert scores["distill/heldout/mse"] < scores["distill/heldout_initial/mse"], scores
    assert record["teacher_cache"]["hit"] is False
    assert record["params"]["output_dim"] == 32 and record["params"]["teacher"]["output_dim"] == 64
    assert record["params"]["num_layers"] == 2 and record["params"]["teacher"]["num_layers"] == 4
    assert record["speed"]["student_sentences_per_s"] > 0 and record["speed"]["teacher_sentences_per_s"] > 0
    # the teacher is frozen and unchanged: equal to a fresh load of the same weights
    teacher = pipeline.teacher
    assert not any(p.requires_grad for p in teacher.parameters()) and not teacher.training
    fresh = AutoModel.from_pretrained(teacher.info["weights"]).state_dict()
    for name, value in teacher.backbone.state_dict().items():
        torch.testing.assert_close(value, fresh[name], rtol=0, atol=0)
    # a second run over the same texts takes the teacher's embeddings from the cache
    again = Pipeline(_cfg(tmp_path, *overrides, "trainer.max_epochs=1", out="run2")).run()
    assert again["teacher_cache"]["hit"] is True
    assert again["teacher_cache"]["path"] == record["teacher_cache"]["path"]


@pytest.mark.parametrize("peft", ["full", "lora"])
def test_layer_subset_student_exports_to_sentence_transformers(tmp_path: Path, peft: str) -> None:
    """Layers 0 and 3 of the teacher, each thinned to 96 of its 128 feed-forward neurons."""
    from sentence_transformers import SentenceTransformer

    from lacos_lightning.export import load_encoder

    extra = ["distill.freeze_embeddings=true", "distill.init_projection=pca", "distill.pca_texts=64"]
    cfg = _cfg(
        tmp_path,
        STUDENT_OF_TEACHER,
        "encoder.keep_layers=[0, 3]",
        "encoder.ffn_size=96",
        "encoder.projection_dim=16",
        f"peft={peft}",
        "data.max_train_samples=96",
        "trainer.max_steps=3",
        "optim.lr=1e-2",
        "export.sentence_transformers=true",
        *(extra if peft == "full" else []),
    )
    record = Pipeline(cfg).run()
    assert record["status"] == "completed", record["error"]
    assert record["params"]["num_layers"] == 2
    if peft == "full":  # everything trains but the input-embedding matrix
        params = record["params"]
        assert params["trainable_params"] == params["total_params"] - params["embedding_params"]
    texts = ["A man plays the guitar.", "Two dogs run", "x", "A much longer sentence about a woman reading a book."]
    ours = load_encoder(record["exports"]["adapter"]).encode(texts)
    st = SentenceTransformer(record["exports"]["sentence_transformers"], device="cpu")
    assert st[0].auto_model.config.num_hidden_layers == 2
    assert st[0].auto_model.config.intermediate_size == 96
    theirs = torch.from_numpy(st.encode(texts))
    assert theirs.shape == (4, 16)
    torch.testing.assert_close(theirs, ours, atol=1e-5, rtol=0)


@pytest.mark.parametrize("embed_sources", [True, False])
def test_parallel_pairs_train_with_every_loss(tmp_path: Path, embed_sources: bool) -> None:
    english = _sentences(300)
    (tmp_path / "par.en").write_text("\n".join(english) + "\n")
    (tmp_path / "rel.tsv").write_text("a\tb\n" + "".join(f"{x}\t{y}\n" for x, y in zip(english[::2], english[1::2])))
    (tmp_path / "par.xx").write_text("\n".join(" ".join(reversed(t.split())) for t in english) + "\n")
    cfg = _cfg(
        tmp_path,
        "backbone=tiny-bert",
        "encoder.keep_layers=null",
        "encoder.projection_dim=null",
        f"data.sources=[{{kind: lines, path: {tmp_path / 'par'}, langs: [en, xx]}}, "
        f"{{kind: table, path: {tmp_path / 'rel.tsv'}, text_columns: [a, b], related: true}}]",
        "loss.bitext=1.0",
        f"loss.embed_sources={str(embed_sources).lower()}",
        "trainer.max_steps=4",
        "trainer.log_every_n_steps=1",
    )
    record = Pipeline(cfg).run()
    assert record["status"] == "completed", record["error"]
    rows = (tmp_path / "run" / "csv" / "metrics.csv").read_text().splitlines()
    assert {"train/mse", "train/kl", "train/bitext"} <= set(rows[0].split(","))


@pytest.mark.parametrize("bits", [8, 4])
def test_quantized_teacher(tmp_path: Path, bits: int) -> None:
    cfg = _cfg(
        tmp_path,
        "backbone=tiny-bert",
        "encoder.keep_layers=null",
        "encoder.projection_dim=32",
        f"teacher.bits={bits}",
        "data.max_train_samples=64",
        "trainer.max_steps=2",
    )
    record = Pipeline(cfg).run()
    assert record["status"] == "completed", record["error"]
    assert record["axes"]["teacher_bits"] == bits
    assert "distill/heldout/sim_mad" in record["scores"]


def test_pca_projection_spans_the_top_principal_directions() -> None:
    import numpy as np

    from lacos_lightning.tasks.distill import pca_projection, pooled_embeddings

    cfg = EncoderConfig(name=MINILM, random_init=TEACHER, projection_dim=6, peft={"method": "none"})
    encoder = Encoder(cfg)
    texts = _sentences(60)
    pca_projection(encoder, texts)
    pooled = pooled_embeddings(encoder, texts).double().numpy()
    _, _, vh = np.linalg.svd(pooled, full_matrices=False)  # independent: numpy's SVD
    ours = encoder.projection.weight.detach().double().numpy()
    np.testing.assert_allclose(ours @ ours.T, np.eye(6), atol=1e-5)
    np.testing.assert_allclose(ours.T @ ours, vh[:6].T @ vh[:6], atol=1e-4)  # the same 6-d subspace
    assert encoder.projection.bias.abs().max().item() == 0


def test_select_layers_equals_a_model_built_with_those_layers() -> None:
    model = Encoder(EncoderConfig(name=MINILM, random_init=TEACHER, peft={"method": "none"})).base_model
    reference_state = {k: v.clone() for k, v in model.state_dict().items()}
    select_layers(model, [0, 3])
    assert model.config.num_hidden_layers == 2 and len(model.encoder.layer) == 2
    # an independent path: a fresh 2-layer BERT given layer 3's weights as its layer 1
    config = type(model.config).from_dict({**model.config.to_dict(), "num_hidden_layers": 2})
    fresh = type(model)(config).eval()
    renamed = {k.replace("encoder.layer.3.", "encoder.layer.1."): v for k, v in reference_state.items()}
    fresh.load_state_dict({k: v for k, v in renamed.items() if k in fresh.state_dict()})
    ids = torch.tensor([[101, 2023, 2003, 1037, 3231, 102]])
    mask = torch.ones_like(ids)
    torch.testing.assert_close(
        model.eval()(input_ids=ids, attention_mask=mask).last_hidden_state,
        fresh(input_ids=ids, attention_mask=mask).last_hidden_state,
    )


def test_select_layers_bloom_and_size_counts() -> None:
    model = Encoder(
        EncoderConfig(name=MINILM, random_init={**TINY_BLOOM, "n_layer": 3}, peft={"method": "none"})
    ).base_model
    per_layer = sum(p.numel() for p in model.h[2].parameters())
    select_layers(model, [2])
    assert model.config.n_layer == 1 and len(model.h) == 1
    counts = size_counts(model)
    assert counts["layer_params"] == per_layer and counts["num_layers"] == 1
    embedding = model.get_input_embeddings().weight.numel()
    assert counts["embedding_params"] == embedding
    assert counts["non_embedding_params"] == sum(p.numel() for p in model.parameters()) - embedding


def test_prune_ffn_equals_the_full_model_with_the_other_neurons_silenced() -> None:
    model = Encoder(EncoderConfig(name=MINILM, random_init=TEACHER, peft={"method": "none"})).base_model.eval()
    silenced = Encoder(EncoderConfig(name=MINILM, random_init=TEACHER, peft={"method": "none"})).base_model.eval()
    size = 48
    with torch.no_grad():  # by hand: neuron j's importance = |row j of W_in| * |column j of W_out|
        for layer in silenced.encoder.layer:
            w_in, w_out = layer.intermediate.dense.weight, layer.output.dense.weight
            importance = [w_in[j].norm().item() * w_out[:, j].norm().item() for j in range(w_in.shape[0])]
            dropped = sorted(range(len(importance)), key=lambda j: -importance[j])[size:]
            w_out[:, dropped] = 0.0  # a silenced neuron adds nothing to the layer's output
    prune_ffn(model, size)
    assert model.config.intermediate_size == size
    assert all(layer.intermediate.dense.out_features == size for layer in model.encoder.layer)
    assert all(layer.output.dense.in_features == size for layer in model.encoder.layer)
    ids = torch.tensor([[101, 2023, 2003, 1037, 3231, 102]])
    mask = torch.ones_like(ids)
    torch.testing.assert_close(
        model(input_ids=ids, attention_mask=mask).last_hidden_state,
        silenced(input_ids=ids, attention_mask=mask).last_hidden_state,
    )
    # a saved pruned model loads with its new width
    assert (
        type(model)(type(model.config).from_dict(model.config.to_dict()))
        .encoder.layer[0]
        .intermediate.dense.out_features
        == size
    )


def test_prune_ffn_refuses_what_it_cannot_thin() -> None:
    bloom = Encoder(EncoderConfig(name=MINILM, random_init=TINY_BLOOM, peft={"method": "none"})).base_model
    with pytest.raises(ConfigError, match="cannot thin the feed-forward layers of bloom"):
        prune_ffn(bloom, 8)
    bert = Encoder(EncoderConfig(name=MINILM, random_init=TEACHER, peft={"method": "none"})).base_model
    with pytest.raises(ConfigError, match="must be between 1 and the backbone's 128"):
        prune_ffn(bert, 500)
    with pytest.raises(ConfigError, match="ffn_size thins full-precision weights"):
        EncoderConfig(name=MINILM, ffn_size=8, bits=8)


def test_tatoeba_hand_made_example(tmp_path: Path) -> None:
    from lacos_lightning.eval import build_evaluators

    (tmp_path / "tatoeba").mkdir()
    (tmp_path / "tatoeba" / "tatoeba.xyz-eng.xyz").write_text("a dog\na cat\nthe sun\n")
    (tmp_path / "tatoeba" / "tatoeba.xyz-eng.eng").write_text("a dog\nthe sun\na cat\n")
    encoder = Encoder(EncoderConfig(name=MINILM, random_init=TINY_BERT, peft={"method": "none"}))
    (evaluator,) = build_evaluators(["tatoeba:xyz"], tmp_path)
    scores = evaluator.run(encoder, progress=False)
    # identical strings embed identically: only row 0 finds its aligned partner, in both directions
    assert scores["bitext/tatoeba-xyz/src2tgt"] == pytest.approx(100 / 3)
    assert scores["bitext/tatoeba-xyz/tgt2src"] == pytest.approx(100 / 3)
    assert scores["bitext/tatoeba-xyz/accuracy"] == pytest.approx(100 / 3)
    # the same files through a bitext_file spec (a development set in any line-aligned layout)
    (same,) = build_evaluators(
        [{"kind": "bitext_file", "path": "tatoeba/tatoeba.xyz-eng", "langs": ["xyz", "eng"]}], tmp_path
    )
    assert same.run(encoder, progress=False)["bitext/tatoeba.xyz-eng-xyz-eng/accuracy"] == pytest.approx(100 / 3)


def test_compress_preset_student_keeps_at_most_a_third_of_the_teacher_layers(tmp_path: Path) -> None:
    """Result 1's size condition, counted on the composed preset's real student and the stock teacher."""
    from omegaconf import OmegaConf

    cfg = compose_train(["experiment=distill_compress"], tmp_path)
    student = Encoder(EncoderConfig.from_dict(OmegaConf.to_container(cfg.encoder, resolve=True)))
    teacher = AutoModel.from_pretrained(student.info["weights"])
    teacher_layers = sum(p.numel() for p in teacher.encoder.layer.parameters())
    student_layers = sum(p.numel() for p in student.base_model.encoder.layer.parameters())
    assert teacher_layers == 10_646_784
    assert student_layers <= teacher_layers / 3
    assert student.output_dim == 128
