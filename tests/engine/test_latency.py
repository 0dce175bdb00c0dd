"""Decode latency measurement: dense and SparseInfer variants interleaved, JSON of the bench command."""

from __future__ import annotations

import json
import math
import os
from types import SimpleNamespace

import pytest
import torch
import typer
from typer.testing import CliRunner

from sparseinfer_dse.engine.decode import prepare_workload
from sparseinfer_dse.engine.latency import VARIANTS, measure_decode_latency
from sparseinfer_dse.engine.latency_prompts import gsm8k_prompts
from sparseinfer_dse.engine.latency_table import format_table
from sparseinfer_dse.engine.sparsify import sparsify
from sparseinfer_dse.errors import UserError
from sparseinfer_dse.machine import set_threads
from sparseinfer_dse.models.synthetic import build_synthetic


@pytest.fixture(scope="module")
def small():
    return build_synthetic("synthetic-7b", layers=2, d=128, k=344, heads=4)


def test_load_prompts(tmp_path):
    built_in = gsm8k_prompts(3)
    assert len(built_in) == 3 and all(p.startswith("Question: ") and p.endswith("\nAnswer:") for p in built_in)
    (tmp_path / "gsm8k").mkdir()
    rows = [{"question": f"What is {i} + {i}?", "answer": "#### 0"} for i in range(4)]
    (tmp_path / "gsm8k" / "test.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    assert gsm8k_prompts(2, tmp_path) == ["Question: What is 0 + 0?\nAnswer:", "Question: What is 1 + 1?\nAnswer:"]
    with pytest.raises(UserError, match="only 4 prompts"):
        gsm8k_prompts(5, tmp_path)
    with pytest.raises(UserError, match="not found"):
        gsm8k_prompts(1, tmp_path / "nowhere")


def test_measure_interleaved_prefill_dense_decode_sparse(small):
    model, tok = small
    h = sparsify(model, None, backend="torch")
    try:
        P, N, R, W = 2, 2, 1, 1
        variants = list(VARIANTS)
        res = measure_decode_latency(h, tok, gsm8k_prompts(P), tokens=N, repeats=R, variants=variants, warmup=W)
        for key in ("dense_ms_per_token", "sparse_ms_per_token", "dense_p10_ms", "dense_p90_ms",
                    "sparse_p10_ms", "sparse_p90_ms", "dense_mlp_ms_per_token", "sparse_mlp_ms_per_token"):
            assert res[key] > 0, key
        assert math.isfinite(res["speedup"]) and res["speedup"] > 0 and math.isfinite(res["speedup_paired"])
        assert 0 < res["mlp_share"] < 1
        assert res["dense_p10_ms"] <= res["dense_ms_per_token"] <= res["dense_p90_ms"]
        assert set(res["variants"]) == set(VARIANTS) and res["sparse_variant"] == "kf+as"
        for name, v in res["variants"].items():
            assert v["timed_tokens"] == P * N * R and v["fused"] == VARIANTS[name]["fused"]
        assert res["dense"]["top1_agreement"] == 1.0  # dense replays its own greedy tokens
        assert res["backend"] == "torch" and res["dtype"] == "float32" and res["threads"]["torch"] >= 1
        assert res["profile"]["alphas"] == [1.0, 1.0]
        for layer in res["layers"]:
            assert 0.75 < layer["relu_sparsity"] < 0.97 and 0 < layer["predicted_sparsity"] <= layer["skipped"]
            assert layer["tokens"] == P * N
        # prefill ran the original module once per prompt; every sparse-run decode step went to the kernels
        sparse_steps = N * (len(variants) * (W + R * P) + P + 2 * P)  # timed + MLP-share pass + 2 counter passes
        for layer in h.layers:
            assert layer.stats.calls == {"prefill": P, "decode_dense": 0, "decode_sparse": sparse_steps}
        assert h.options.enabled and h.options.fused and not h.options.collect  # options restored
        assert "SparseInfer+KF+AS" in format_table(res)
    finally:
        h.undo()


def test_dense_only_on_a_plain_model(tiny_model):
    from sparseinfer_dse.models.loading import ModelSpec, load_model

    lm = load_model(ModelSpec(str(tiny_model("llama-relu")), device="cpu"))
    tok = lambda text, return_tensors=None: SimpleNamespace(input_ids=torch.tensor([[1, 5, 7, 9, 11]]))  # noqa: E731
    res = measure_decode_latency(lm.model, tok, ["x"], tokens=3, repeats=1, warmup=0)
    assert res["dense_ms_per_token"] > 0 and res["variants"] == {} and res["layers"] is None
    assert "speedup" not in res and 0 < res["mlp_share"] < 1


def test_workload_reuse_across_profiles(small):
    model, tok = small
    h = sparsify(model, [1.0, None], backend="torch")
    try:
        wl = prepare_workload(model, tok, gsm8k_prompts(1), 3, h)
        a = measure_decode_latency(h, workload=wl, repeats=1, mlp_share=False, include_dense=False)
        assert "speedup" not in a and a["sparse_ms_per_token"] > 0
        assert a["layers"][1]["alpha"] is None and a["layers"][1]["skipped"] == 0.0
        assert h.layers[1].stats.calls["decode_dense"] > 0
        h.set_profile([1.05, 1.05])
        b = measure_decode_latency(h, workload=wl, repeats=1, mlp_share=False, include_dense=False)
        assert b["layers"][1]["predicted_sparsity"] > 0
        with pytest.raises(UserError, match="unknown variant"):
            measure_decode_latency(h, workload=wl, variants=["fast"])
    finally:
        h.undo()


def test_bench_model_command_json(tmp_path, monkeypatch):
    from sparseinfer_dse.cli.bench_model import bench_model_command

    monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE")  # the command would set it (too late in this process)

    model, tok = build_synthetic("synthetic-7b", layers=2, d=96, k=258, heads=3, seed=3)
    model.save_pretrained(tmp_path / "m")
    tok.save_pretrained(tmp_path / "m")
    app = typer.Typer()
    app.command()(bench_model_command)
    app.command("other")(lambda: None)
    out = tmp_path / "bench.json"
    before = torch.get_num_threads()
    try:
        res = CliRunner().invoke(app, ["bench-model-command", "--model", str(tmp_path / "m"), "--device", "cpu",
                                       "--backend", "numba-cpu", "--tokens", "2", "--prompts", "1", "--repeats", "1",
                                       "--variants", "plain,kf+as", "--threads", "1", "--compile", "--json", str(out)],
                                 catch_exceptions=False)
    finally:
        set_threads(before)
    assert res.exit_code == 0, res.output
    data = json.loads(out.read_text())
    for key in ("dense_ms_per_token", "sparse_ms_per_token", "speedup", "dense_p10_ms", "dense_p90_ms",
                "sparse_p10_ms", "sparse_p90_ms", "variants", "device", "backend", "dtype", "model", "profile",
                "threads", "layers", "mlp_share", "command"):
        assert key in data, key
    assert data["backend"] == "numba-cpu" and data["threads"] == {"torch": 1, "numba": 1}
    assert data["model"] == str(tmp_path / "m") and list(data["variants"]) == ["kf+as", "plain"]
    assert data["sparse_variant"] == "kf+as" and len(data["layers"]) == 2
    assert data["dense_ms_per_token"] > 0 and data["sparse_ms_per_token"] > 0 and math.isfinite(data["speedup"])
    assert data["omp_wait_policy"] == "PASSIVE" and "warnings" not in data
    assert "--tokens 2" in data["command"] and "--variants kf+as,plain" in data["command"]
    assert data["compiled"] is True and "--compile" in data["command"]
    assert "SparseInfer+KF+AS" in res.output


def test_passive_openmp(monkeypatch):
    from sparseinfer_dse.cli.bench_model import passive_openmp

    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    assert passive_openmp() is None and os.environ["OMP_WAIT_POLICY"] == "ACTIVE"  # the user's choice stays
    monkeypatch.delenv("OMP_WAIT_POLICY")
    assert "torch was loaded" in passive_openmp()  # torch is imported here: too late, say so
    assert os.environ["OMP_WAIT_POLICY"] == "PASSIVE"
