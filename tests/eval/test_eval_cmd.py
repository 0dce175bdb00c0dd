"""`sparseinfer-dse eval` as a user runs it: table, summary.json, lm-eval files, one-line errors."""

from __future__ import annotations

import json

import pytest
import typer
from typer.testing import CliRunner

from sparseinfer_dse.errors import UserError
from sparseinfer_dse.cli.eval import eval_command

app = typer.Typer()
app.command("eval")(eval_command)


@app.command("version")
def _version() -> None:  # a second command keeps `eval` a subcommand, as in the real CLI
    pass


runner = CliRunner()


def run(*args):
    return runner.invoke(app, ["eval", *map(str, args)])


def test_eval_writes_summary_results_and_samples(small_lm_dir, tmp_path, data_dir):
    from sparseinfer_dse.engine.profile import Profile

    prof = Profile.uniform(2, 0.8).save(tmp_path / "p.json")
    out = tmp_path / "out"
    res = run("--model", small_lm_dir, "--profile", prof, "--tasks", "demo_arith,gsm8k", "--limit", 2,
              "--batch-size", 2, "--data-dir", data_dir, "--max-gen-toks", 8, "--out", out,
              "--proxy", "--calibration", "demo", "--calibration-samples", 3)
    assert res.exit_code == 0, res.output + repr(res.exception)
    assert "strict-match" in res.output and "flexible-extract" in res.output and "delta pts" in res.output
    assert "KL(dense||sparse)" in res.output
    s = json.loads((out / "summary.json").read_text())
    assert s["profile"]["alphas"] == [0.8, 0.8] and s["backend"] == "torch"
    for task in ("demo_arith", "gsm8k"):
        t = s["tasks"][task]
        for field in ("metric", "value", "stderr", "n", "dense", "delta"):
            assert field in t, field
        assert t["n"] == 2 and t["metric"] == "exact_match,strict-match"
        assert t["delta"] == pytest.approx(100 * (t["value"] - t["dense"]))
        for side in ("sparse", "dense"):
            assert (out / side / task / "results.json").is_file()
            assert (out / side / task / f"samples_{task}.jsonl").is_file()
    assert s["proxy"]["kl"] > 0 and 0 <= s["proxy"]["top1"] <= 1 and s["proxy"]["n_tokens"] > 0
    # the second run finds the dense baseline in the cache
    res2 = run("--model", small_lm_dir, "--profile", prof, "--tasks", "demo_arith", "--limit", 2,
               "--batch-size", 2, "--max-gen-toks", 8)
    assert res2.exit_code == 0 and "from the cache" in res2.output


@pytest.mark.parametrize("args, message", [
    (["--tasks", "no_such_task_xyz"], "unknown lm-eval task 'no_such_task_xyz'"),
    (["--tasks", "gsm8k", "--data-dir", "/nonexistent"], "not a directory"),
    (["--tasks", "demo_arith", "--backend", "cuda-magic"], "--backend must be one of"),
    (["--tasks", " , "], "--tasks is empty"),
])
def test_one_line_errors(args, message, small_lm_dir):
    res = run("--model", small_lm_dir, *args)
    assert isinstance(res.exception, UserError), res.output
    assert message in str(res.exception) and "\n" not in str(res.exception)


def test_missing_data_file_error(small_lm_dir, tmp_path):
    (tmp_path / "bbh").mkdir()
    res = run("--model", small_lm_dir, "--tasks", "bbh_cot_fewshot_navigate", "--data-dir", tmp_path)
    assert isinstance(res.exception, UserError)
    assert "bbh/navigate.json" in str(res.exception)
