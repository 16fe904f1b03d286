"""Domain-adaptation bad input on the command line: one ``error:`` line, exit code 2, before any model loads."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import compose_train, needs_data
from tests.test_cli import run_train
from tests.test_domain import write_domain

# Each case is a subprocess (about 30 s on the shared CPU), so only these run end to end; the others are
# checked in-process through the same Pipeline validation below.
CASES: dict[str, tuple[list[str], str]] = {
    "unknown_method": (["encoder.peft.method=adapterdrop"], "peft.method='adapterdrop' is unknown"),
    "adapter_size_zero": (["peft=houlsby", "encoder.peft.adapter_size=0"], "peft.adapter_size=0"),
    "unknown_domain": (["data=mqp", "data.train.name=legal"], "domain 'legal' is unknown"),
}
IN_PROCESS: dict[str, tuple[list[str], str]] = {
    "pfeiffer_size_zero": (["peft=pfeiffer", "encoder.peft.adapter_size=0"], "peft.adapter_size=0"),
    "unknown_split": (["data=qatar", "data.train.split=all"], "no split 'all'"),
    "bad_eval_spec": (["data=mqp", "loss=cosent", "eval.val=[domain:mqp]"], "domain:NAME:SPLIT"),
    "train_not_bool": (["train=maybe"], "train='maybe'"),
    "store_with_projection": (["store.dir=/tmp/x", "encoder.projection_dim=32"], "store.dir"),
}


@needs_data
@pytest.mark.parametrize("case", sorted(CASES))
def test_domain_bad_input_exits_2(case: str, tmp_path: Path) -> None:
    args, needle = CASES[case]
    proc = run_train(*args, tmp_path=tmp_path)
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and needle in lines[0], proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and "Loading weights" not in proc.stderr + proc.stdout


@needs_data
@pytest.mark.parametrize("case", sorted(IN_PROCESS))
def test_domain_bad_settings_fail_validation(case: str, tmp_path: Path) -> None:
    from lacos_lightning.errors import LacosError
    from lacos_lightning.pipeline import Pipeline

    args, needle = IN_PROCESS[case]
    pipe = Pipeline(compose_train(args, tmp_path / "run"))
    with pytest.raises(LacosError) as err:
        pipe.settings()
        pipe.read_data()
    assert needle in str(err.value) and "\n" not in str(err.value)


def test_domain_file_with_missing_labels_exits_2(tmp_path: Path) -> None:
    domain, needle = "mqp", "row 2 has no label"
    root = write_domain(tmp_path / "data", mqp="1,q one,q two,1\n2,q three,q four,\n")
    proc = run_train(
        f"data={domain}", "loss=cosent", f"paths.data_dir={root}", "eval.val=[]", "eval.test=[]", tmp_path=tmp_path
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and needle in lines[0], proc.stderr[-2000:]
    assert "Loading weights" not in proc.stderr + proc.stdout


@pytest.mark.parametrize("domain", ["mqp", "qatar", "twitter"])
def test_every_point_of_the_domain_sweep_validates(domain: str, tmp_path: Path) -> None:
    """experiment=domain_adapters x sweep=domain_adapters: each grid point composes and validates."""
    from lacos_lightning.pipeline import Pipeline

    for method in ("none", "full", "houlsby", "lora", "pfeiffer", "ia3"):
        cfg = compose_train(["experiment=domain_adapters", f"data={domain}", f"peft={method}"], tmp_path / method)
        pipe = Pipeline(cfg)
        pipe.settings()
        assert pipe.encoder_cfg.peft.method == method and pipe.data_cfg.train.name == domain
        assert cfg.train == (method != "none")
        assert pipe.optim_cfg.lr > 0
        assert list(cfg.eval.test) == [f"domain:{domain}:test"]
