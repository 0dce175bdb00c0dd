"""On the real demo model: sparsity has a real, measurable effect; the dense profile changes nothing."""

from __future__ import annotations

import json

import pytest

from sparseinfer_dse.engine.sparsify import sparsify
from sparseinfer_dse.eval.harness import evaluate_tasks
from sparseinfer_dse.eval.calibration import demo_calibration
from sparseinfer_dse.eval.proxy import DenseReference, proxy_metrics
from sparseinfer_dse.engine.profile import Profile

LIMIT = 100  # held-out problems; the demo answers in about 40-60 tokens, batch 25 keeps this ~10 s a run
BATCH = 25

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def demo():
    from sparseinfer_dse.models.loading import ModelSpec, load_model

    return load_model(ModelSpec("demo", device="cpu"), tokenizer=True)


@pytest.fixture(scope="module")
def handle(demo):
    return sparsify(demo, None, backend="torch")


def _responses(raw):
    return [s["resps"] for s in raw["demo_arith"]["samples"]["demo_arith"]]


@pytest.fixture(scope="module")
def dense_run(handle, demo):
    raw: dict = {}
    row = evaluate_tasks(handle, demo.tokenizer, ["demo_arith"], limit=LIMIT, batch_size=BATCH, dense=True, raw=raw)
    return row["demo_arith"], raw


def test_dense_profile_reproduces_the_dense_baseline_exactly(handle, demo, dense_run):
    base, raw_base = dense_run
    assert base["value"] > 0.3, "the demo model should solve a fair share of its held-out problems"
    handle.set_profile(Profile.dense(demo.identity.num_layers))
    raw: dict = {}
    got = evaluate_tasks(handle, demo.tokenizer, ["demo_arith"], limit=LIMIT, batch_size=BATCH, raw=raw)["demo_arith"]
    assert got["metrics"] == base["metrics"]
    assert _responses(raw) == _responses(raw_base)


def test_aggressive_profile_lowers_accuracy_and_raises_kl(handle, demo, dense_run):
    base, _ = dense_run
    n = demo.identity.num_layers
    ref = DenseReference.build(handle, demo.tokenizer, demo_calibration(16), batch_size=8)
    kl = {}
    for a in (1.0, 0.8):
        kl[a] = proxy_metrics(handle, demo.tokenizer, ref, profile=Profile.uniform(n, a))["kl"]
    kl_dense = proxy_metrics(handle, demo.tokenizer, ref, profile=Profile.dense(n))["kl"]
    assert kl_dense == 0.0
    assert kl[0.8] > 3 * kl[1.0] > 0.0
    handle.set_profile(Profile.uniform(n, 0.8))
    agg = evaluate_tasks(handle, demo.tokenizer, ["demo_arith"], limit=LIMIT, batch_size=BATCH)["demo_arith"]
    drop = base["value"] - agg["value"]
    # a real effect: well beyond the run-to-run noise of one stderr
    assert drop > max(0.05, base["stderr"]), (base["value"], agg["value"])


def test_cli_on_demo(tmp_path):
    from typer.testing import CliRunner
    import typer

    from sparseinfer_dse.cli.eval import eval_command

    app = typer.Typer()
    app.command("eval")(eval_command)
    app.command("noop")(lambda: None)
    out = tmp_path / "out"
    res = CliRunner().invoke(app, ["eval", "--model", "demo", "--tasks", "demo_arith", "--limit", "10",
                                   "--batch-size", "10", "--proxy", "--calibration-samples", "4", "--out", str(out)])
    assert res.exit_code == 0, res.output + repr(res.exception)
    s = json.loads((out / "summary.json").read_text())
    t = s["tasks"]["demo_arith"]
    assert t["n"] == 10 and t["dense"] is not None and s["proxy"]["calibration"].startswith("demo")
