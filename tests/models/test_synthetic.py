"""Synthetic ProSparse-shaped models: names, shapes, decode sparsity, saving and loading back."""

from __future__ import annotations

import pytest
import torch
import typer
from typer.testing import CliRunner

from sparseinfer_dse.errors import UserError
from sparseinfer_dse.models.synthetic import (
    build_synthetic,
    build_tokenizer,
    is_synthetic_name,
    parse_synthetic_name,
    synthetic_config,
    weight_bytes,
)

SMALL = dict(d=256, k=688, heads=8)  # the 7B ratio k/d = 2.69, 32-wide heads


@pytest.fixture(scope="module")
def small():
    return build_synthetic("synthetic-7b", layers=2, **SMALL)


def test_names():
    assert parse_synthetic_name("synthetic-7b") == ("synthetic-7b", None)
    assert parse_synthetic_name("synthetic-13b:L2") == ("synthetic-13b", 2)
    assert is_synthetic_name("synthetic-7b:L3") and not is_synthetic_name("demo")
    for bad in ("synthetic-70b", "synthetic-7b:L0", "synthetic-7b:2"):
        with pytest.raises(UserError):
            parse_synthetic_name(bad)
    with pytest.raises(UserError, match="layers"):
        synthetic_config("synthetic-7b:L2", layers=3)


@pytest.mark.parametrize("name,d,k,heads,layers", [("synthetic-7b", 4096, 11008, 32, 4),
                                                   ("synthetic-13b:L2", 5120, 13824, 40, 2)])
def test_real_shapes(name, d, k, heads, layers):
    from transformers import LlamaForCausalLM

    cfg = synthetic_config(name)
    assert (cfg.hidden_size, cfg.intermediate_size, cfg.num_attention_heads) == (d, k, heads)
    assert cfg.num_key_value_heads == heads and cfg.num_hidden_layers == layers and cfg.hidden_act == "relu"
    with torch.device("meta"):
        model = LlamaForCausalLM(cfg)
    wb = weight_bytes(model)
    # MLP about 2/3 of the weights read per token, as in the real 7B/13B (small vocabulary, tiny lm_head)
    assert 0.64 < wb["mlp"] / sum(wb.values()) < 0.67


def test_deterministic_and_dtype(small):
    model, _ = small
    again, _ = build_synthetic("synthetic-7b:L2", **SMALL)
    for (n, a), (_, b) in zip(model.named_parameters(), again.named_parameters()):
        assert torch.equal(a, b), n
    half, tok = build_synthetic("synthetic-7b", layers=1, dtype=torch.bfloat16, seed=1, **SMALL)
    assert all(p.dtype == torch.bfloat16 for p in half.parameters())
    assert half.model.rotary_emb.inv_freq.dtype == torch.float32
    with torch.no_grad():
        out = half(input_ids=tok("Question: 2 + 2?", return_tensors="pt").input_ids)
    assert torch.isfinite(out.logits.float()).all()


def test_tokenizer_handles_gsm8k_text():
    tok = build_tokenizer()
    text = "Janet\u2019s ducks lay 16 eggs per day. She sells them for $2."
    ids = tok(text).input_ids
    assert ids[0] == tok.bos_token_id and max(ids) < len(tok) == 259
    assert tok.decode(ids, skip_special_tokens=True) == text


def test_build_command_saves_a_loadable_model(tmp_path):
    from sparseinfer_dse.models.loading import ModelSpec, load_model
    from sparseinfer_dse.cli.synthetic import synthetic_build_command

    app = typer.Typer()
    app.command()(synthetic_build_command)
    app.command("other")(lambda: None)  # keep a sub-command layout like the real CLI
    out = tmp_path / "syn"
    res = CliRunner().invoke(app, ["synthetic-build-command", "--out", str(out), "--name", "synthetic-7b:L1",
                                   "--hidden-size", "64", "--intermediate-size", "172", "--heads", "2",
                                   "--dtype", "bfloat16"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert (out / "config.json").is_file() and (out / "synthetic.json").is_file()
    lm = load_model(ModelSpec(str(out), device="cpu"), tokenizer=True)
    assert lm.dtype == torch.bfloat16 and len(lm.mlps) == 1 and lm.activation.kind == "relu"
    assert lm.tokenizer("Question: 1 + 1?").input_ids[0] == lm.tokenizer.bos_token_id
    res = CliRunner().invoke(app, ["synthetic-build-command", "--out", str(out)])
    assert res.exit_code != 0 and "not an empty directory" in str(res.exception)


def test_load_model_builds_a_synthetic_name(monkeypatch):
    from sparseinfer_dse.models import synthetic
    from sparseinfer_dse.models.loading import ModelSpec, load_model

    monkeypatch.setitem(synthetic.SHAPES, "synthetic-7b", (128, 344, 4))  # small stand-in for the real shape
    lm = load_model(ModelSpec("synthetic-7b:L2", device="cpu", dtype="auto"), tokenizer=True)
    assert lm.dtype == torch.float32 and len(lm.mlps) == 2 and lm.identity.num_layers == 2
    assert lm.identity.name == "synthetic-7b:L2" and lm.tokenizer is not None and lm.source.kind == "synthetic"
    assert lm.notes and "synthetic random weights" in lm.notes[0]
    meta = load_model(ModelSpec("synthetic-7b:L2", dtype="bfloat16"), weights=False)
    assert meta.identity == lm.identity and meta.dtype == torch.bfloat16 and meta.mlps[0].gate.weight.is_meta
    with pytest.raises(UserError, match="gguf"):
        load_model(ModelSpec("synthetic-7b", gguf_file="x.gguf"))
