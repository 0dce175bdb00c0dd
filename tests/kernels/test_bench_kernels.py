"""`sparseinfer-dse bench kernels` on a tiny shape writes valid JSON."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from sparseinfer_dse.cli import _register, app

KEYS = {"backend", "dtype", "d", "k", "sparsity", "dense_ms", "sparse_ms", "predictor_ms", "speedup", "gbps",
        "dense_gbps", "actual_sparsity", "predicted_sparsity", "sparse_nofuse_ms", "sparse_noas_ms",
        "sparse_p10_ms", "sparse_p90_ms", "sign_read_ms", "predict_call_ms", "predictor_share", "predict_call_share",
        "read_dense_ms", "read_sparse_ms", "limit_gbps", "limit_ratio", "dense_limit_ratio", "sparse_floor_ratio",
        "flush_bytes", "rotations"}


@pytest.fixture(scope="module")
def runner():
    _register()
    return CliRunner()


def test_bench_kernels_tiny(runner, tmp_path):
    out = tmp_path / "bench.json"
    res = runner.invoke(app, ["bench", "kernels", "--shape", "64x200", "--sparsity", "0.5,0.9", "--repeats", "2",
                              "--warmup", "1", "--dtype", "float32,bfloat16", "--threads", "1", "--json", str(out)])
    assert res.exit_code == 0, res.output
    rows = json.loads(out.read_text())
    assert len(rows) == 4
    for row in rows:
        assert KEYS <= set(row)
        assert row["backend"] == "numba-cpu" and (row["d"], row["k"]) == (64, 200)
        assert row["sparse_ms"] > 0 and row["dense_ms"] > 0
        # the limit is the same-run streaming read of the dense block's bytes
        assert row["read_gbps"] == pytest.approx(row["dense_bytes"] / (row["read_dense_ms"] / 1e3) / 1e9)
        assert row["limit_gbps"] == max(row["read_gbps"], row["dense_gbps"])
        assert row["limit_ratio"] == pytest.approx(row["gbps"] / row["limit_gbps"])
        assert row["sparse_bytes"] < row["dense_bytes"] and row["flush_bytes"] >= 64 << 20
    assert "speedup" in res.output


@pytest.mark.parametrize("args,msg", [
    (["--shape", "64by200"], "expected DxK"),
    (["--sparsity", "1.5"], "between 0 and 1"),
    (["--backend", "tpu"], "unknown backend"),
    (["--dtype", "int8"], "--dtype"),
])
def test_bench_kernels_user_errors(args, msg):
    from sparseinfer_dse.cli.bench_kernels import bench_kernels_command
    from sparseinfer_dse.errors import UserError

    kwargs = dict(backend="numba-cpu", dtype="float32", shape=["64x200"], sparsity=["0.5"])
    keymap = {"--shape": "shape", "--sparsity": "sparsity", "--backend": "backend", "--dtype": "dtype"}
    key = keymap[args[0]]
    kwargs[key] = [args[1]] if key in ("shape", "sparsity") else args[1]
    with pytest.raises(UserError, match=msg):
        bench_kernels_command(**kwargs, repeats=1)


@pytest.mark.parametrize("method", ["cats", "teal", "wisparse"])
def test_bench_kernels_methods(runner, tmp_path, method):
    out = tmp_path / "bench.json"
    res = runner.invoke(app, ["bench", "kernels", "--method", method, "--shape", "64x200", "--sparsity", "0.5,0.8",
                              "--repeats", "2", "--warmup", "1", "--threads", "1", "--json", str(out)])
    assert res.exit_code == 0, res.output
    rows = json.loads(out.read_text())
    assert [r["sparsity"] for r in rows] == [0.5, 0.8]
    for row in rows:
        assert row["method"] == method and row["sparse_ms"] > 0 and row["dense_ms"] > 0
        # the thresholds are the quantiles of the inputs' scores: the target fraction is skipped
        assert row["skipped"] == pytest.approx(row["sparsity"], abs=0.08)
        assert row["ideal"] == pytest.approx(row["dense_bytes"] / row["sparse_bytes"])
        assert row["ideal_ratio"] == pytest.approx(row["speedup"] / row["ideal"])
        assert row["limit_ratio"] == pytest.approx(row["gbps"] / row["limit_gbps"])
    assert rows[1]["sparse_bytes"] < rows[0]["sparse_bytes"] < rows[0]["dense_bytes"]
    assert f"{method:<9}" in res.output


def test_bench_kernels_rsparse_ranks(runner, tmp_path):
    """One row per rank; the remainder's bytes count in the ideal; --rank is rsparse's only."""
    out = tmp_path / "bench.json"
    res = runner.invoke(app, ["bench", "kernels", "--method", "rsparse", "--shape", "64x200", "--sparsity", "0.5",
                              "--rank", "0,16", "--repeats", "2", "--warmup", "1", "--threads", "1", "--json", str(out)])
    assert res.exit_code == 0, res.output
    r0, r16 = json.loads(out.read_text())
    assert (r0["rank"], r16["rank"]) == (0, 16) and r0["skipped"] == pytest.approx(0.5, abs=0.08)
    # 16 values per skipped channel and 16 x n_out per projection on top of rank 0's bytes
    extra = sum(((1 - 0.5) * n_in + n_out) * 16 * 4 for n_in, n_out in ((64, 200), (64, 200), (200, 64)))
    assert r16["sparse_bytes"] - r0["sparse_bytes"] == pytest.approx(extra, rel=0.15)
    assert "rsparse r16" in res.output
    from sparseinfer_dse.cli.bench_kernels import bench_kernels_command
    from sparseinfer_dse.errors import UserError

    with pytest.raises(UserError, match="--rank is rsparse's"):
        bench_kernels_command(method="teal", backend="numba-cpu", dtype="float32", shape=["64x200"],
                              sparsity=["0.5"], rank=["8"], repeats=1)
    with pytest.raises(UserError, match="at most the smaller side"):
        bench_kernels_command(method="rsparse", backend="numba-cpu", dtype="float32", shape=["64x200"],
                              sparsity=["0.5"], rank=["65"], repeats=1)


def test_bench_kernels_unknown_method():
    from sparseinfer_dse.cli.bench_kernels import bench_kernels_command
    from sparseinfer_dse.errors import UserError

    with pytest.raises(UserError, match="--method 'magic'"):
        bench_kernels_command(method="magic", backend="numba-cpu", dtype="float32", shape=["64x200"],
                              sparsity=["0.5"], repeats=1)
