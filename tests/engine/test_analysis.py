"""`analyze`: predictor statistics checked against an independent count, and the files it writes."""

import json

import pandas as pd
import torch
from typer.testing import CliRunner

from sparseinfer_dse.cli import _register, app
from sparseinfer_dse.engine import sparsify
from sparseinfer_dse.engine.analysis import PredictorAnalysis
from sparseinfer_dse.models.loading import ModelSpec, load_model
from sparseinfer_kernels.signs import pack_signs, count_negative


def test_precision_recall_match_an_independent_count(tiny_model):
    lm = load_model(ModelSpec(str(tiny_model("sparsellama"))))
    h = sparsify(lm, None, "numba-cpu")
    h.configure(predict=False)
    seen = []
    an = PredictorAnalysis(h, [0.9, 1.0])
    layer0 = h.layers[0]
    inner = layer0.observer

    def spy(layer, x, res):
        seen.append(x.clone())
        inner(layer, x, res)

    layer0.observer = spy
    ids = torch.randint(4, 100, (1, 9))
    with torch.no_grad():
        lm.model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=6, min_new_tokens=6,
                          do_sample=False, pad_token_id=3)
    an.detach()
    x = torch.cat(seen)
    w = lm.mlps[0].gate.weight
    g = x @ w.t()
    ideal = g < 0.01  # FATReLU(0.01) zeros
    nneg = count_negative(pack_signs(w), pack_signs(x))
    rows = {r["alpha"]: r for r in an.rows() if r["layer"] == 0}
    for alpha in (0.9, 1.0):
        pred = alpha * (72 - nneg) < nneg
        tp = (pred & ideal).sum().item()
        assert rows[alpha]["precision"] == tp / pred.sum().item()
        assert rows[alpha]["recall"] == tp / ideal.sum().item()
        assert rows[alpha]["ideal_sparsity"] == ideal.sum().item() / ideal.numel()
    assert rows[0.9]["predicted_sparsity"] >= rows[1.0]["predicted_sparsity"]
    h.undo()


def test_analyze_command_writes_files(tiny_model, tmp_path):
    prompts = tmp_path / "p.txt"
    prompts.write_text("Question: Tom has 3 apples.\nAnswer:\nQuestion: 2 + 5 = ?\nAnswer:\n")
    _register()
    res = CliRunner().invoke(app, ["analyze", "-m", str(tiny_model("llama-relu")), "--prompts", str(prompts),
                                   "--limit", "2", "--tokens", "4", "--alphas", "0.9,1.0", "--out", str(tmp_path / "o")],
                             catch_exceptions=False)
    assert res.exit_code == 0, res.output
    df = pd.read_csv(tmp_path / "o" / "layers.csv")
    assert {"layer", "alpha", "ideal_sparsity", "predicted_sparsity", "precision", "recall"} <= set(df.columns)
    assert len(df) == 3 * 2 and df["tokens"].iloc[0] > 0
    assert json.loads((tmp_path / "o" / "layers.json").read_text())["rows"]
    assert (tmp_path / "o" / "layers.png").stat().st_size > 1000
