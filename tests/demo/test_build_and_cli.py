"""The training recipe runs (tiny config, a few steps) and `demo info` describes the model."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from sparseinfer_dse.demo import card, checkpoint_dir


@pytest.fixture(scope="module")
def cli_app():
    from sparseinfer_dse import cli

    cli._register()
    return cli.app


def test_tiny_recipe_writes_a_loadable_checkpoint(tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from sparseinfer_dse.demo.train import Recipe, build

    out = tmp_path / "m"
    c = build(out, Recipe.tiny(steps=3), show_progress=False, log=lambda s: None)
    model = AutoModelForCausalLM.from_pretrained(out)
    tok = AutoTokenizer.from_pretrained(out)
    assert model.config.hidden_act == "relu"
    assert model.config.intermediate_size > model.config.hidden_size
    assert c["results"]["dense_greedy"]["n"] == 8
    assert len(c["results"]["dense_greedy"]["decode_sparsity_per_layer"]) == model.config.num_hidden_layers
    assert json.loads((out / "card.json").read_text())["recipe"]["steps"] == 3
    assert tok.eos_token_id == model.config.eos_token_id
    assert not (tmp_path / "m.partial").exists()


def test_recipe_is_seeded(tmp_path):
    import torch

    from sparseinfer_dse.demo.train import Recipe, train

    r = Recipe.tiny(steps=2)
    m1, t1, _, _ = train(r, log=lambda s: None)
    m2, t2, _, _ = train(r, log=lambda s: None)
    assert t1.to_str() == t2.to_str()
    for (n, a), (_, b) in zip(m1.state_dict().items(), m2.state_dict().items()):
        assert torch.equal(a, b), n


def test_demo_build_cli_tiny(cli_app, tmp_path):
    out = tmp_path / "cli-model"
    res = CliRunner().invoke(cli_app, ["demo", "build", "--tiny", "--steps", "2", "--out", str(out),
                                       "--eval-problems", "4"])
    assert res.exit_code == 0, res.output
    assert (out / "model.safetensors").is_file() and (out / "card.json").is_file()
    res = CliRunner().invoke(cli_app, ["demo", "info", "--path", str(out), "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["recipe"]["steps"] == 2


def test_demo_info_json(cli_app):
    res = CliRunner().invoke(cli_app, ["demo", "info", "--json"])
    assert res.exit_code == 0, res.output
    info = json.loads(res.output)
    assert info["checkpoint_dir"] == str(checkpoint_dir())
    assert info["recipe"] == card()["recipe"]
    dense = info["results"]["dense_greedy"]
    assert 0.6 <= dense["accuracy"] <= 0.95
    assert len(dense["decode_sparsity_per_layer"]) == info["model"]["num_hidden_layers"]


def test_demo_info_text(cli_app):
    res = CliRunner().invoke(cli_app, ["demo", "info"])
    assert res.exit_code == 0, res.output
    for word in ("relu", "accuracy", "sparsity", "recipe", "data"):
        assert word in res.output
