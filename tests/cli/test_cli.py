"""The command line as a user meets it: help, version, inspect, profile, one-line errors."""

import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from sparseinfer_dse import __version__
from sparseinfer_dse.cli import _register, app

_register()
runner = CliRunner()


def run(*args):
    return runner.invoke(app, list(args), catch_exceptions=False)


def test_version_and_help():
    assert __version__ in run("--version").output
    assert "inspect" in run("--help").output
    for cmd in (["inspect"], ["profile", "make"], ["profile", "show"]):
        res = run(*cmd, "--help")
        assert res.exit_code == 0 and "Usage" in res.output


def test_inspect_json_tiny_llama(tiny_model):
    res = run("inspect", "--model", str(tiny_model("llama-relu")), "--json")
    s = json.loads(res.output)
    assert (s["num_layers"], s["d"], s["k"], s["activation"]) == (3, 72, 200, "relu")
    assert s["mlp_bytes_per_token_dense"] == 3 * 3 * 72 * 200 * 4
    assert s["sign_bytes"] == 3 * 200 * 3 * 4  # ceil(72/32) = 3 words per row
    assert s["sparseinfer_applies"] is True


def test_inspect_sparsellama_and_silu(tiny_model):
    s = json.loads(run("inspect", "-m", str(tiny_model("sparsellama")), "--json").output)
    assert s["activation"] == "fatrelu" and s["activation_threshold"] == pytest.approx(0.01)
    assert s["model_type"] == "sparsellama"
    s = json.loads(run("inspect", "-m", str(tiny_model("mistral")), "--json").output)
    assert s["activation"] == "silu" and not s["sparseinfer_applies"]
    s = json.loads(run("inspect", "-m", str(tiny_model("mistral")), "--decode-activation", "relu", "--json").output)
    assert s["sparseinfer_applies"] and "CHANGES the model" in s["reason"]


def test_profile_make_and_show(tiny_model, tmp_path):
    m = str(tiny_model("llama-relu"))
    out = tmp_path / "p.json"
    assert run("profile", "make", "-m", m, "--paper", "--first", "1", "--out", str(out)).exit_code == 0
    shown = run("profile", "show", str(out), "--model", m)
    assert "1.030 1.000 1.000" in shown.output
    run("profile", "make", "-m", m, "--levels", "dense,1.0,1.2", "--out", str(out))
    layers = json.loads(out.read_text())["layers"]
    assert [r["alpha"] for r in layers] == [None, 1.0, 1.2] and {r["method"] for r in layers} == {"sparseinfer"}


@pytest.mark.parametrize(
    "args,message",
    [
        (["inspect", "--model", "/no/such/model"], "error: model path not found: /no/such/model"),
        (["inspect", "--model", "GPT2"], "not in the Hugging Face cache"),
        (["profile", "show", "/no/profile.json"], "error: profile not found"),
    ],
)
def test_errors_are_one_line(args, message):
    """Through the real console entry point: exit code 2, one line on stderr, no traceback."""
    proc = subprocess.run([sys.executable, "-c", "from sparseinfer_dse.cli import main; main()", *args],
                          capture_output=True, text=True, env={"HF_HUB_OFFLINE": "1", "PATH": ""})
    assert proc.returncode == 2
    assert message in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_gpt2_error_through_cli(tiny_model):
    proc = subprocess.run([sys.executable, "-c", "from sparseinfer_dse.cli import main; main()",
                           "inspect", "-m", str(tiny_model("gpt2"))], capture_output=True, text=True)
    assert proc.returncode == 2 and "no gated MLP" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize("cmd", [["bench", "model"], ["eval", "--tasks", "demo_arith"], ["analyze"]])
def test_a_malformed_profile_fails_before_the_model_loads(cmd, tmp_path):
    """The profile is read first: a typo in it costs no model load (minutes for a 7B model)."""
    bad = tmp_path / "bad.json"
    bad.write_text('{"alphas": [1.0, 1.03')
    proc = subprocess.run([sys.executable, "-c", "from sparseinfer_dse.cli import main; main()", *cmd,
                           "--model", "/no/such/model", "--profile", str(bad)],
                          capture_output=True, text=True, env={"HF_HUB_OFFLINE": "1", "PATH": ""})
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]  # eval also says what it checks
    assert errors == [f"error: {bad}: not valid JSON (Expecting ',' delimiter at line 1)"], proc.stderr[-2000:]
