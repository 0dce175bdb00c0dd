"""The shipped checkpoint: loads through plain transformers and through `--model demo`, generates."""

from __future__ import annotations

import pytest
import torch

from sparseinfer_dse.demo import card, checkpoint_dir, heldout_path
from sparseinfer_dse.demo import data as D


@pytest.fixture(scope="module")
def shipped():
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(checkpoint_dir()).eval()
    tok = AutoTokenizer.from_pretrained(checkpoint_dir())
    return model, tok


def test_files_and_size():
    d = checkpoint_dir()
    for f in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "card.json"):
        assert (d / f).is_file(), f
    assert (d / "model.safetensors").stat().st_size <= 10 * 1024 * 1024


def test_config_is_relu_gated_llama(shipped):
    model, tok = shipped
    cfg = model.config
    assert type(model).__name__ == "LlamaForCausalLM"
    assert cfg.hidden_act == "relu"
    assert cfg.intermediate_size > cfg.hidden_size
    assert cfg.num_hidden_layers >= 4
    mlp = model.model.layers[0].mlp
    assert {"gate_proj", "up_proj", "down_proj"} <= {n for n, _ in mlp.named_children()}
    assert tok.eos_token == "</s>" and tok.pad_token == "<pad>" and tok.bos_token == "<s>"
    assert tok.eos_token_id == cfg.eos_token_id
    assert card()["model"]["parameters"] == sum(p.numel() for p in model.parameters())


def test_tokenizer_adds_nothing_and_round_trips(shipped):
    _, tok = shipped
    text = D.format_prompt(D.read_jsonl(heldout_path())[0]["question"])
    assert tok(text)["input_ids"] == tok(text, add_special_tokens=False)["input_ids"]
    assert tok.decode(tok(text)["input_ids"]) == text


def test_generates_a_worked_answer(shipped):
    from sparseinfer_dse.demo.train import evaluate

    model, tok = shipped
    rows = D.read_jsonl(heldout_path())[:8]
    res = evaluate(model, tok, rows, batch_size=8, sparsity=True)
    assert res["accuracy"] >= 0.25  # documented ~80% on 400; 8 problems, loose
    assert all(0.3 <= s <= 0.99 for s in res["decode_sparsity_per_layer"])


def test_loads_through_the_model_loader():
    loading = pytest.importorskip("sparseinfer_dse.models.loading")
    lm = loading.load_model(loading.ModelSpec("demo"), tokenizer=True)
    assert lm.source.kind == "demo"
    assert len(lm.mlps) == lm.config.num_hidden_layers
    ids = lm.tokenizer("Question: Ava has 3 apples.", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        out = lm.model.generate(ids, max_new_tokens=4, do_sample=False)
    assert out.shape[1] == ids.shape[1] + 4 or int(out[0, -1]) == lm.tokenizer.eos_token_id
