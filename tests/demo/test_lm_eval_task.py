"""lm-eval's `demo_arith` on the shipped model gives the documented dense accuracy (within stderr)."""

from __future__ import annotations

import math

import pytest

from sparseinfer_dse.demo import card, checkpoint_dir

LIMIT = 40


def test_task_yaml_is_usable_from_any_directory(tmp_path, monkeypatch):
    from lm_eval.tasks import TaskManager

    from sparseinfer_dse.demo import task_include_path

    monkeypatch.chdir(tmp_path)
    tm = TaskManager(include_path=task_include_path(), include_defaults=False)
    assert "demo_arith" in tm.all_tasks


@pytest.mark.slow
def test_lm_eval_matches_documented_accuracy(monkeypatch):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from sparseinfer_dse.demo.train import lm_eval_accuracy

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    model = AutoModelForCausalLM.from_pretrained(checkpoint_dir()).eval()
    tok = AutoTokenizer.from_pretrained(checkpoint_dir())
    res = lm_eval_accuracy(model, tok, limit=LIMIT, batch_size=16)
    assert res["n"] == LIMIT
    documented = card()["results"]["lm_eval"]["accuracy"]
    se = math.sqrt(documented * (1 - documented) / LIMIT)
    assert abs(res["accuracy"] - documented) <= 3 * se + 1e-9, (res, documented)
    assert 0.6 <= documented <= 0.95
