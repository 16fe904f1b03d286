"""Cross-device negatives, GradCache and strategy checks.

Equivalences checked (tiny random BERT + LoRA, CPU):

* 2 gloo processes with half the batch each, loss with cross-device negatives, gradients averaged
  like DDP does (all_reduce mean) == 1 process with the whole batch (loss and LoRA gradients);
* GradCache == the plain step, also with dropout active (masks replayed), chunks not dividing the batch;
* GradCache inside the 2 processes == 1 process with the whole batch.

Tolerances: float32 throughout; different padding widths and summation orders leave differences of
about 1e-7 (observed: losses <= 1e-6, gradients <= 4e-8 with gradients up to 3e-2). Losses:
``abs <= 1e-5``; gradients: ``torch.testing.assert_close(rtol=1e-4, atol=1e-6)``; trained weights after
two AdamW steps (the pipeline tests): ``rtol=1e-4, atol=1e-5``.
The negative controls (no gather; no RNG replay) differ by orders of magnitude more.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from lacos_lightning.errors import ConfigError
from lacos_lightning.losses import LossConfig, gather_with_grad, grad_cache_step
from lacos_lightning.losses import gradcache as gradcache_module
from lacos_lightning.losses.gradcache import split_features
from lacos_lightning.models import Encoder, EncoderConfig
from lacos_lightning.models.config import LoraSettings
from lacos_lightning.strategies import check_strategy, resolve_strategy
from tests.conftest import DATA, ROOT, needs_data

LOSS_TOL = 1e-5
GRAD_TOL = {"rtol": 1e-4, "atol": 1e-6}
# Weights after AdamW steps (lr 1e-3): Adam divides by sqrt(v), which magnifies float noise of near-zero
# gradients; 1e-5 is 1% of one step (without gather the difference is ~2.5e-3).
WEIGHT_TOL = {"rtol": 1e-4, "atol": 1e-5}
WORLD = 2
SHAPE = {
    "model_type": "bert",
    "hidden_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "intermediate_size": 128,
}

ANCHORS = [
    "A man is playing a guitar on stage.",
    "Two dogs run through a snowy field.",
    "A woman slices tomatoes in the kitchen.",
    "Children are building a sandcastle at the beach.",
    "An old man reads a newspaper on a bench.",
    "A cyclist rides up a steep mountain road.",
]
POSITIVES = [
    "Someone performs music with a guitar.",
    "Dogs are playing outside in the snow.",
    "A person is cutting vegetables.",
    "Kids play in the sand by the sea.",
    "A man is reading.",
    "A person is riding a bike uphill.",
]
NEGATIVES = [
    "The stage is empty and silent.",
    "The dogs are asleep indoors by the fire.",
    "Nobody is in the kitchen today.",
    "The children are at school doing homework.",
    "A young girl is watching television.",
    "A car drives down a flat highway.",
]
SCORES = [4.5, 3.8, 2.0, 4.9, 1.2, 3.1]


# ---------------------------------------------------------------- helpers


def make_encoder(dropout: float = 0.0, bits: int = 32) -> Encoder:
    """Tiny random BERT with LoRA; ``lora_B`` made non-zero so every LoRA matrix has a gradient."""
    torch.manual_seed(0)
    shape = {**SHAPE, "hidden_dropout_prob": dropout, "attention_probs_dropout_prob": dropout}
    encoder = Encoder(EncoderConfig(random_init=shape, bits=bits, peft=LoraSettings(dropout=dropout)))
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, param in encoder.named_parameters():
            if "lora_B" in name:
                param.copy_(0.2 * torch.randn(param.shape, generator=gen))
    encoder.train()
    return encoder


def make_batch(encoder: Encoder, rows: slice, negatives: bool = True, scores: bool = False) -> dict[str, Any]:
    """A collated batch like the data module builds: all texts in one tensor, split by role."""
    roles = [("anchor", ANCHORS), ("positive", POSITIVES)] + ([("negative", NEGATIVES)] if negatives else [])
    texts = [t for _, column in roles for t in column[rows]]
    batch: dict[str, Any] = {
        "features": encoder.tokenize(texts),
        "roles": [r for r, _ in roles],
        "size": len(ANCHORS[rows]),
    }
    if scores:
        batch["scores"] = torch.tensor(SCORES[rows])
    return batch


def batch_loss(loss_cfg: LossConfig, batch: dict[str, Any]):
    def fn(emb: torch.Tensor) -> torch.Tensor:
        return loss_cfg(dict(zip(batch["roles"], emb.split(batch["size"]))), batch.get("scores"))

    return fn


def lora_grads(encoder: Encoder) -> dict[str, torch.Tensor]:
    grads = {n: p.grad.detach().clone() for n, p in encoder.named_parameters() if p.requires_grad}
    assert grads and all(g is not None for g in grads.values())
    return grads


def plain_step(encoder: Encoder, loss_cfg: LossConfig, batch: dict[str, Any]) -> tuple[float, dict]:
    encoder.zero_grad(set_to_none=True)
    loss = batch_loss(loss_cfg, batch)(encoder(batch["features"]))
    loss.backward()
    return loss.item(), lora_grads(encoder)


def cached_step(encoder: Encoder, loss_cfg: LossConfig, batch: dict[str, Any], chunk: int) -> tuple[float, dict]:
    encoder.zero_grad(set_to_none=True)
    loss = grad_cache_step(encoder, batch["features"], batch_loss(loss_cfg, batch), chunk)
    return loss.item(), lora_grads(encoder)


def assert_grads_close(got: dict, want: dict, tol: dict | None = None) -> None:
    assert got.keys() == want.keys()
    for name in want:
        torch.testing.assert_close(got[name], want[name], **(tol or GRAD_TOL), msg=lambda m, n=name: f"{n}: {m}")


def max_diff(a: dict, b: dict) -> float:
    return max((a[k] - b[k]).abs().max().item() for k in a)


# ---------------------------------------------------------------- two processes (gloo, 127.0.0.1 file store)

CASES: dict[str, dict[str, Any]] = {
    "mnrl_negatives": {"loss": {}, "negatives": True},
    "mnrl_symmetric": {"loss": {"symmetric": True}, "negatives": False},
    "cosent": {"loss": {"name": "cosent"}, "negatives": False, "scores": True},
    "mnrl_negatives_gradcache": {"loss": {"grad_cache_chunk": 2}, "negatives": True},  # 9 rows: 2+2+2+2+1
    "mnrl_no_gather": {"loss": {"gather": False}, "negatives": True},  # negative control
}


def _worker(rank: int, init_file: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    try:
        encoder = make_encoder(dropout=0.0)
        n = len(ANCHORS) // WORLD
        rows = slice(rank * n, (rank + 1) * n)
        results: dict[str, Any] = {}
        for name, case in CASES.items():
            loss_cfg = LossConfig(**case["loss"])
            batch = make_batch(encoder, rows, case["negatives"], case.get("scores", False))
            if loss_cfg.grad_cache_chunk:
                loss, grads = cached_step(encoder, loss_cfg, batch, loss_cfg.grad_cache_chunk)
            else:
                loss, grads = plain_step(encoder, loss_cfg, batch)
            for grad in grads.values():  # what DDP does to gradients
                dist.all_reduce(grad)
                grad /= WORLD
            mean_loss = torch.tensor([loss])
            dist.all_reduce(mean_loss)
            results[name] = {"loss": loss, "mean_loss": mean_loss.item() / WORLD, "grads": grads}
        gathered = gather_with_grad(torch.full((2, 3), float(rank)))
        results["gather_order"] = gathered[:, 0].tolist()
        torch.save(results, Path(out_dir) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def two_process_results(tmp_path_factory) -> list[dict[str, Any]]:
    folder = tmp_path_factory.mktemp("ddp")
    make_encoder()  # writes the random backbone to the cache once, before the workers race for it
    mp.spawn(_worker, args=(str(folder / "store"), str(folder)), nprocs=WORLD, join=True)
    return [torch.load(folder / f"rank{r}.pt") for r in range(WORLD)]


@pytest.fixture(scope="module")
def whole_batch_reference() -> dict[str, Any]:
    encoder = make_encoder(dropout=0.0)
    out = {}
    for name, case in CASES.items():
        loss_cfg = LossConfig(**{**case["loss"], "grad_cache_chunk": None, "gather": True})
        batch = make_batch(encoder, slice(None), case["negatives"], case.get("scores", False))
        out[name] = dict(zip(("loss", "grads"), plain_step(encoder, loss_cfg, batch)))
    return out


def test_gather_with_grad_is_rank_ordered_and_a_noop_on_one_process(two_process_results) -> None:
    assert two_process_results[0]["gather_order"] == [0.0, 0.0, 1.0, 1.0]
    t = torch.randn(3, 2, requires_grad=True)
    assert gather_with_grad(t) is t


@pytest.mark.parametrize("case", ["mnrl_negatives", "mnrl_symmetric", "cosent", "mnrl_negatives_gradcache"])
def test_two_processes_equal_one_process_with_the_whole_batch(two_process_results, whole_batch_reference, case) -> None:
    want = whole_batch_reference[case]
    for rank in range(WORLD):
        got = two_process_results[rank][case]
        assert abs(got["mean_loss"] - want["loss"]) <= LOSS_TOL
        assert_grads_close(got["grads"], want["grads"])
    if case == "cosent":  # every rank computes the global CoSENT loss itself
        assert abs(two_process_results[1][case]["loss"] - want["loss"]) <= LOSS_TOL


def test_without_gather_two_processes_differ(two_process_results, whole_batch_reference) -> None:
    """Negative control: local negatives only is a different loss, so the check above has teeth."""
    got = two_process_results[0]["mnrl_no_gather"]
    want = whole_batch_reference["mnrl_negatives"]
    assert abs(got["mean_loss"] - want["loss"]) > 0.05
    assert max_diff(got["grads"], want["grads"]) > 1e-3


# ---------------------------------------------------------------- GradCache on one process


@pytest.mark.parametrize("bits", [32, 8])
def test_grad_cache_equals_plain_step_without_dropout(bits: int) -> None:
    encoder = make_encoder(dropout=0.0, bits=bits)
    loss_cfg = LossConfig()
    batch = make_batch(encoder, slice(0, 5))  # 15 texts
    want_loss, want = plain_step(encoder, loss_cfg, batch)
    for chunk in (1, 2, 4, 7, 100):
        loss, grads = cached_step(encoder, loss_cfg, batch, chunk)
        assert abs(loss - want_loss) <= LOSS_TOL, chunk
        assert_grads_close(grads, want)
    frozen = [n for n, p in encoder.named_parameters() if not p.requires_grad]
    assert frozen and all(dict(encoder.named_parameters())[n].grad is None for n in frozen)


def _chunked_plain_step(encoder, loss_cfg, batch, chunk: int) -> tuple[float, dict]:
    """The plain step with the same dropout masks GradCache draws: chunk by chunk, with a graph."""
    encoder.zero_grad(set_to_none=True)
    emb = torch.cat([encoder(part) for part in split_features(batch["features"], chunk)])
    loss = batch_loss(loss_cfg, batch)(emb)
    loss.backward()
    return loss.item(), lora_grads(encoder)


@pytest.mark.parametrize("chunk", [1, 2, 4, 7])
def test_grad_cache_replays_dropout(chunk: int) -> None:
    """With dropout on, GradCache's gradients are those of the embeddings its loss saw.

    Dropout masks depend on how the batch is cut, so the reference is the plain step run chunk by
    chunk from the same seed (same masks): equal only if the second pass replays the first pass's masks.
    """
    encoder = make_encoder(dropout=0.1)
    loss_cfg = LossConfig()
    batch = make_batch(encoder, slice(0, 5))  # 15 texts; chunks 2, 4 and 7 leave a remainder
    torch.manual_seed(123)
    want_loss, want = _chunked_plain_step(encoder, loss_cfg, batch, chunk)
    after_reference = torch.rand(1)
    torch.manual_seed(123)
    loss, grads = cached_step(encoder, loss_cfg, batch, chunk)
    assert torch.rand(1) == after_reference  # the random stream goes on as after one pass
    assert abs(loss - want_loss) <= LOSS_TOL
    assert_grads_close(grads, want)
    torch.manual_seed(124)  # dropout is really active: another seed, another loss
    assert abs(_chunked_plain_step(encoder, loss_cfg, batch, chunk)[0] - want_loss) > 1e-4


def test_grad_cache_without_rng_replay_differs(monkeypatch) -> None:
    """Negative control: skipping the RNG restore breaks the equality checked above."""
    encoder = make_encoder(dropout=0.1)
    loss_cfg = LossConfig()
    batch = make_batch(encoder, slice(0, 5))
    torch.manual_seed(123)
    _, want = _chunked_plain_step(encoder, loss_cfg, batch, 4)
    monkeypatch.setattr(gradcache_module.RngState, "restore", lambda self: None)
    torch.manual_seed(123)
    _, grads = cached_step(encoder, loss_cfg, batch, 4)
    assert max_diff(grads, want) > 1e-3


def test_split_features_trims_padding_of_short_chunks() -> None:
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0], [1, 0, 0, 0]])
    features = {"input_ids": torch.arange(12).view(3, 4), "attention_mask": mask}
    chunks = split_features(features, 2)
    assert [c["input_ids"].shape for c in chunks] == [(2, 4), (1, 1)]
    assert chunks[1]["input_ids"].tolist() == [[8]]


def test_loss_config_validates_new_fields() -> None:
    assert LossConfig(grad_cache_chunk=1).grad_cache_chunk == 1
    for bad in (0, -3, 2.5, True, "4"):
        with pytest.raises(ConfigError, match="grad_cache_chunk"):
            LossConfig(grad_cache_chunk=bad)
    with pytest.raises(ConfigError, match="gather"):
        LossConfig(gather="yes")


# ---------------------------------------------------------------- pipeline
# (Pipeline is imported inside the tests: the spawned workers import this module and need no Lightning.)


@needs_data
def test_pipeline_runs_with_grad_cache(tiny_cfg) -> None:
    from lacos_lightning.pipeline import Pipeline

    cfg = tiny_cfg("loss.grad_cache_chunk=4", "trainer.fast_dev_run=true", "export.sentence_transformers=false")
    record = Pipeline(cfg).run()
    assert record["status"] == "completed", record["error"]
    assert record["speed"]["train_batches"] == 1


@needs_data
def test_pipeline_grad_cache_matches_plain_training(tiny_cfg, tmp_path: Path, monkeypatch) -> None:
    """Two optimizer steps (AdamW, linear decay, clipping) end at the same weights with and without GradCache.

    Also checks that the manual-optimization path clips: the gradient norm after clipping is <= the limit.
    """
    from safetensors.torch import load_file

    from lacos_lightning.pipeline import Pipeline
    from lacos_lightning.tasks import ContrastiveTask

    norms: list[float] = []
    original = ContrastiveTask.on_before_optimizer_step

    def spy(self, optimizer) -> None:
        original(self, optimizer)
        grads = [p.grad for p in self.parameters() if p.grad is not None]
        norms.append(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads])).item())

    monkeypatch.setattr(ContrastiveTask, "on_before_optimizer_step", spy)
    common = [
        "encoder.peft.dropout=0",
        "optim.name=adamw",
        "optim.warmup_ratio=0",
        "optim.lr=1e-3",
        "trainer.max_steps=2",
        "trainer.gradient_clip_val=0.01",
        "eval.val=[]",
        "eval.test=[]",
        "export.sentence_transformers=false",
    ]
    weights = {}
    for name, extra in (("plain", []), ("gradcache", ["loss.grad_cache_chunk=5"])):
        record = Pipeline(tiny_cfg(*common, *extra, out=tmp_path / name)).run()
        assert record["status"] == "completed", record["error"]
        weights[name] = load_file(Path(record["exports"]["adapter"]) / "adapter_model.safetensors")
    assert_grads_close(weights["gradcache"], weights["plain"], WEIGHT_TOL)
    manual_norms = norms[2:]  # the plain run's hook sees gradients before Lightning clips them
    assert len(manual_norms) == 2 and all(n <= 0.01 * (1 + 1e-4) for n in manual_norms)


def test_grad_cache_takes_clipping_and_refuses_accumulation_and_deepspeed() -> None:
    from lacos_lightning.tasks import ContrastiveTask

    kwargs = {"gradient_clip_val": 1.0, "gradient_clip_algorithm": "value", "accumulate_grad_batches": 1}
    moved = ContrastiveTask.take_trainer_settings(kwargs, LossConfig(grad_cache_chunk=4))
    assert moved == {"gradient_clip_val": 1.0, "gradient_clip_algorithm": "value"}
    assert "gradient_clip_val" not in kwargs
    assert ContrastiveTask.take_trainer_settings({"gradient_clip_val": 1.0}, LossConfig()) == {}
    with pytest.raises(ConfigError, match="accumulate_grad_batches"):
        ContrastiveTask.take_trainer_settings({"accumulate_grad_batches": 4}, LossConfig(grad_cache_chunk=4))
    with pytest.raises(ConfigError, match="DeepSpeed"):
        ContrastiveTask.take_trainer_settings({"strategy": "deepspeed_stage_2"}, LossConfig(grad_cache_chunk=4))


# ---------------------------------------------------------------- strategies


deepspeed_missing = pytest.mark.skipif(
    __import__("importlib").util.find_spec("deepspeed") is not None, reason="deepspeed is installed"
)
no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA GPU is present")


def _one_line_error(cfg: dict[str, Any], *needles: str) -> str:
    with pytest.raises(ConfigError) as info:
        check_strategy(cfg)
    message = str(info.value)
    assert "\n" not in message
    for needle in needles:
        assert needle in message
    return message


@deepspeed_missing
def test_deepspeed_without_the_package_is_a_one_line_error() -> None:
    _one_line_error({"strategy": {"name": "deepspeed_stage_2"}}, "pip install deepspeed", "trainer=ddp")
    _one_line_error({"strategy": "deepspeed"}, "pip install deepspeed")


@no_cuda
def test_gpu_only_strategies_on_cpu_are_one_line_errors() -> None:
    _one_line_error(
        {"accelerator": "cpu", "devices": 2, "strategy": {"name": "ddp", "process_group_backend": "nccl"}},
        "nccl",
        "gloo",
    )
    _one_line_error({"accelerator": "auto", "strategy": {"name": "ddp", "process_group_backend": "nccl"}}, "gloo")
    _one_line_error({"accelerator": "cpu", "strategy": {"name": "fsdp"}}, "CUDA", "trainer=ddp")
    _one_line_error({"accelerator": "gpu", "devices": 1}, "trainer.accelerator=cpu")


def test_strategy_configs_compose_and_build(tiny_cfg) -> None:
    from pytorch_lightning.strategies import DDPStrategy

    _one_line_error({"strategy": "no_such_strategy"}, "unknown")
    _one_line_error({"strategy": {"process_group_backend": "gloo"}}, "name")
    for name in ("ddp", "ddp_spawn", "fsdp", "deepspeed"):
        cfg = tiny_cfg(f"trainer={name}")
        assert cfg.trainer.max_epochs == 1 and cfg.trainer.gradient_clip_val == 1.0  # defaults kept
        assert cfg.trainer.limit_val_batches == 2  # the experiment still applies
    kwargs = resolve_strategy({"accelerator": "cpu", "devices": 2, "strategy": {"name": "ddp_spawn"}})
    assert isinstance(kwargs["strategy"], DDPStrategy) and kwargs["strategy"]._start_method == "spawn"
    assert resolve_strategy({"strategy": "ddp", "accelerator": "cpu"})["strategy"] == "ddp"


@deepspeed_missing
def test_pipeline_stops_before_the_model_on_a_strategy_that_cannot_run(tiny_cfg, monkeypatch) -> None:
    from lacos_lightning.pipeline import Pipeline

    def no_model(*args, **kwargs):
        raise AssertionError("the model must not be loaded")

    monkeypatch.setattr("lacos_lightning.pipeline.Encoder", no_model)
    cfg = tiny_cfg("trainer=deepspeed")
    with pytest.raises(ConfigError, match="pip install deepspeed"):
        Pipeline(cfg).run()


@deepspeed_missing
@needs_data
def test_cli_deepspeed_exits_2_with_one_line(tmp_path: Path) -> None:
    env = {**os.environ, "LACOS_DATA_DIR": str(DATA), "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline"}
    proc = subprocess.run(
        [sys.executable, "-m", "lacos_lightning.train", "experiment=tiny_smoke", "trainer=deepspeed",
         f"hydra.run.dir={tmp_path / 'run'}"],
        capture_output=True, text=True, cwd=ROOT, env=env, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr[-2000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "pip install deepspeed" in errors[0], proc.stderr[-2000:]


@pytest.mark.slow
@needs_data
def test_cli_ddp_two_cpu_processes_match_one_process(tmp_path: Path) -> None:
    """End to end: ``trainer=ddp`` on 2 CPU processes (batch 16 each, GradCache) == 1 process, batch 32.

    The sampler hands rank r the r-th half of each 32-example slice of the same permutation, so both
    runs see the same global batches. About a minute of wall time (two Hydra launches, three processes).
    """
    from safetensors.torch import load_file

    env = {**os.environ, "LACOS_DATA_DIR": str(DATA), "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline"}
    common = [
        "experiment=tiny_smoke", "encoder.peft.dropout=0", "optim.name=adamw", "optim.warmup_ratio=0",
        "optim.lr=1e-3", "trainer.max_steps=2", "eval.val=[]", "eval.test=[]", "export.sentence_transformers=false",
        "trainer.enable_progress_bar=false", "trainer.accelerator=cpu",
    ]  # fmt: skip
    runs = {
        "single": ["data.batch_size=32"],
        "ddp": ["trainer=ddp", "trainer.devices=2", "loss.grad_cache_chunk=8"],
    }
    weights = {}
    for name, extra in runs.items():
        out = tmp_path / name
        proc = subprocess.run(
            [sys.executable, "-m", "lacos_lightning.train", *common, *extra, f"hydra.run.dir={out}"],
            capture_output=True, text=True, cwd=ROOT, env=env, timeout=600,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr[-3000:]
        weights[name] = load_file(out / "adapter" / "adapter_model.safetensors")
    assert_grads_close(weights["ddp"], weights["single"], WEIGHT_TOL)


@pytest.mark.slow
@needs_data
def test_cli_ddp_keeps_one_hydra_run_folder_and_only_rank_zero_writes(tmp_path: Path) -> None:
    """``trainer=ddp`` with 2 CPU processes and Hydra's default run folder (``outputs/DATE/TIME`` under the
    working directory): Lightning re-launches the script for rank 1, which must land in rank 0's folder.
    Exactly one run folder results; metrics.json and the exports are written once, by rank 0, and the
    speed counts the examples of both ranks."""
    env = {
        **os.environ,
        "LACOS_DATA_DIR": str(DATA),
        "HF_HUB_OFFLINE": "1",
        "WANDB_MODE": "offline",
        "PYTHONPATH": str(ROOT),  # cwd is the temporary folder, so import this checkout explicitly
    }
    args = [
        "experiment=tiny_smoke", "trainer=ddp", "trainer.devices=2", "trainer.accelerator=cpu",
        "trainer.max_steps=2", "eval.val=[]", "trainer.enable_progress_bar=false",
    ]  # fmt: skip
    proc = subprocess.run(
        [sys.executable, "-m", "lacos_lightning.train", *args],
        capture_output=True, text=True, cwd=tmp_path, env=env, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = [p for p in (tmp_path / "outputs").glob("*/*") if p.is_dir()]
    assert len(runs) == 1, runs
    run = runs[0]
    import json

    record = json.loads((run / "metrics.json").read_text())
    assert record["status"] == "completed", record["error"]
    assert record["speed"]["train_examples_seen"] == 2 * 16 * 2  # 2 steps x batch 16 x 2 ranks
    assert "sts/stsb-en-test/spearman" in record["scores"]
    assert (run / "adapter" / "adapter_model.safetensors").is_file()
    assert (run / "sentence_transformers" / "modules.json").is_file()
    assert (run / ".hydra" / "config.yaml").is_file()
    assert not list(run.glob("metrics.tmp*")) and not list(run.glob("*.tmp*"))
    # rank 1 was re-launched with hydra.output_subdir=null: no second .hydra folder anywhere
    assert len(list(tmp_path.rglob(".hydra"))) == 1
