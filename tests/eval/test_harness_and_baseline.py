"""lm-eval on the sparsified model object, dense baselines and their cache keys (small ReLU Llama)."""

from __future__ import annotations

import dataclasses
import json

import pytest

from sparseinfer_dse.engine.sparsify import sparsify
from sparseinfer_dse.eval import baseline_cache as bc
from sparseinfer_dse.eval.baseline_cache import BaselineCache, ModelFacts, baseline_key, dense_baseline, weights_fingerprint
from sparseinfer_dse.eval.harness import evaluate_tasks, summarize
from sparseinfer_dse.engine.profile import Profile

GEN = {"max_gen_toks": 12}


def _responses(raw: dict, task: str) -> list:
    return [s["resps"] for s in raw[task]["samples"][task]]


def test_dense_profile_reproduces_dense_baseline_exactly(small_lm, tmp_path):
    h = sparsify(small_lm, Profile.dense(small_lm.identity.num_layers), backend="torch")
    raw_dense, raw_sparse = {}, {}
    base = evaluate_tasks(h, small_lm.tokenizer, ["demo_arith"], limit=4, batch_size=2, dense=True, gen_kwargs=GEN,
                          raw=raw_dense, out_dir=tmp_path / "dense")
    got = evaluate_tasks(h, small_lm.tokenizer, ["demo_arith"], limit=4, batch_size=2, gen_kwargs=GEN, raw=raw_sparse,
                         out_dir=tmp_path / "sparse")
    assert got["demo_arith"]["metrics"] == base["demo_arith"]["metrics"]
    assert _responses(raw_sparse, "demo_arith") == _responses(raw_dense, "demo_arith")
    stats = h.layer_stats()
    assert all(s["calls"]["decode_dense"] > 0 for s in stats)  # it really went through the engine
    row = got["demo_arith"]
    assert row["metric"] == "exact_match,strict-match" and row["n"] == 4
    assert set(row["metrics"]) == {"exact_match,strict-match", "exact_match,flexible-extract"}
    assert (tmp_path / "sparse" / "demo_arith" / "results.json").is_file()
    samples = (tmp_path / "sparse" / "demo_arith" / "samples_demo_arith.jsonl").read_text().splitlines()
    rows = [json.loads(x) for x in samples]  # one row per document and filter
    assert {r["doc_id"] for r in rows} == {0, 1, 2, 3} and all("resps" in r for r in rows)


def test_sparse_decode_really_runs_sparse_in_lm_eval(small_lm):
    h = sparsify(small_lm, Profile.uniform(small_lm.identity.num_layers, 0.5), backend="torch")
    h.configure(collect=True)
    raw_sparse, raw_dense = {}, {}
    evaluate_tasks(h, small_lm.tokenizer, "demo_arith", limit=4, batch_size=4, gen_kwargs=GEN, raw=raw_sparse)
    stats = h.layer_stats()
    assert all(s["calls"]["decode_sparse"] > 0 and s["predicted_sparsity"] > 0.3 for s in stats)
    evaluate_tasks(h, small_lm.tokenizer, "demo_arith", limit=4, batch_size=4, gen_kwargs=GEN, raw=raw_dense, dense=True)
    assert _responses(raw_sparse, "demo_arith") != _responses(raw_dense, "demo_arith")


def test_summarize_group_rows():
    res = {
        "results": {
            "bbh": {"exact_match,get-answer": 0.25, "exact_match_stderr,get-answer": 0.1, "alias": "bbh"},
            "bbh_a": {"exact_match,get-answer": 0.5, "exact_match_stderr,get-answer": 0.2, "alias": " - a"},
            "bbh_b": {"exact_match,get-answer": 0.0, "exact_match_stderr,get-answer": "N/A", "alias": " - b"},
        },
        "group_subtasks": {"bbh": ["bbh_a", "bbh_b"], "bbh_a": [], "bbh_b": []},
        "n-samples": {"bbh_a": {"original": 10, "effective": 4}, "bbh_b": {"original": 8, "effective": 4}},
    }
    row = summarize(res, "bbh", 1.5)
    assert (row["metric"], row["value"], row["stderr"], row["n"], row["seconds"]) == ("exact_match,get-answer", 0.25, 0.1, 8, 1.5)
    assert row["subtasks"]["bbh_a"]["value"] == 0.5 and row["subtasks"]["bbh_b"]["stderr"] is None


def test_baseline_is_cached_and_reused(small_lm, monkeypatch):
    h = sparsify(small_lm, None, backend="torch")
    facts = ModelFacts.of(small_lm)
    first = dense_baseline(small_lm, small_lm.tokenizer, ["demo_arith"], 3, None, 2, handle=h, facts=facts, gen_kwargs=GEN)
    assert first["demo_arith"]["cached"] is False

    def boom(*a, **k):
        raise AssertionError("the cached baseline must not be evaluated again")

    monkeypatch.setattr(bc, "evaluate_tasks", boom)
    again = dense_baseline(small_lm, small_lm.tokenizer, ["demo_arith"], 3, None, 2, handle=h, facts=facts, gen_kwargs=GEN)
    assert again["demo_arith"]["cached"] is True
    assert again["demo_arith"]["metrics"] == first["demo_arith"]["metrics"]
    assert again["demo_arith"]["key"] == first["demo_arith"]["key"]
    with pytest.raises(ValueError, match="handle"):  # a sparsified model without its handle would not be dense
        dense_baseline(small_lm, small_lm.tokenizer, ["demo_arith"], 3, None, 2, gen_kwargs=GEN)


def test_cache_keys_change_with_every_input(small_lm, small_lm_dir_other, tmp_path, data_dir, monkeypatch):
    from sparseinfer_dse.models.loading import ModelSpec, load_model

    facts = ModelFacts.of(small_lm)
    kw = dict(limit=10, num_fewshot=None, batch_size=8, seed=1234, data_dir=data_dir, gen_kwargs=None)
    base = baseline_key(facts, "gsm8k", **kw)
    assert base == baseline_key(ModelFacts.of(small_lm), "gsm8k", **kw)  # deterministic
    assert base == baseline_key(facts, "gsm8k", **{**kw, "data_dir": None})  # no data_dir: the shipped copy
    assert base.data != baseline_key(facts, "demo_arith", **kw).data != "hub"  # each task digests its own files
    variants = {
        "task": baseline_key(facts, "gsm8k_cot", **kw),
        "limit": baseline_key(facts, "gsm8k", **{**kw, "limit": 11}),
        "limit-all": baseline_key(facts, "gsm8k", **{**kw, "limit": None}),
        "fewshot": baseline_key(facts, "gsm8k", **{**kw, "num_fewshot": 3}),
        "batch": baseline_key(facts, "gsm8k", **{**kw, "batch_size": 1}),
        "seed": baseline_key(facts, "gsm8k", **{**kw, "seed": 1}),
        "gen": baseline_key(facts, "gsm8k", **{**kw, "gen_kwargs": {"max_gen_toks": 32}}),
        "dtype": baseline_key(dataclasses.replace(facts, dtype="bfloat16"), "gsm8k", **kw),
        "device": baseline_key(dataclasses.replace(facts, device="cuda"), "gsm8k", **kw),
        "decode-act": baseline_key(dataclasses.replace(facts, decode_activation="relu"), "gsm8k", **kw),
        "name": baseline_key(dataclasses.replace(facts, name="other"), "gsm8k", **kw),
        "tokenizer": baseline_key(dataclasses.replace(facts, tokenizer="sha256:x"), "gsm8k", **kw),
    }
    other = load_model(ModelSpec(str(small_lm_dir_other), device="cpu"), tokenizer=True)
    variants["weights"] = baseline_key(ModelFacts.of(other, name=facts.name), "gsm8k", **kw)
    # the data files' content is part of the key
    copy = tmp_path / "data"
    (copy / "gsm8k").mkdir(parents=True)
    for f in ("train.jsonl", "test.jsonl"):
        (copy / "gsm8k" / f).write_text((data_dir / "gsm8k" / f).read_text())
    assert baseline_key(facts, "gsm8k", **{**kw, "data_dir": copy}).data == base.data  # same content, same key
    with open(copy / "gsm8k" / "test.jsonl", "a") as f:
        f.write('{"question": "1+1?", "answer": "#### 2"}\n')
    variants["data-content"] = baseline_key(facts, "gsm8k", **{**kw, "data_dir": copy})
    monkeypatch.setattr(bc, "_versions", lambda: {"lm_eval": "9.9", "transformers": "5.23", "torch": "2.13"})
    variants["lm-eval-version"] = baseline_key(facts, "gsm8k", **kw)
    digests = {name: k.digest for name, k in variants.items()}
    for name, d in digests.items():
        assert d != base.digest, f"the key ignores {name}"
    assert len(set(digests.values())) == len(digests)
    # the store refuses a file whose recorded key differs (no silent collision)
    store = BaselineCache(tmp_path / "store")
    store.put(base, {"value": 0.5})
    assert store.get(base) == {"value": 0.5}
    p = store.path(base)
    body = json.loads(p.read_text())
    body["key"]["limit"] = 99
    p.write_text(json.dumps(body))
    assert store.get(base) is None


def test_weights_fingerprint_is_stable_across_sparsify(small_lm):
    before = weights_fingerprint(small_lm.model)
    h = sparsify(small_lm, None, backend="torch")
    assert weights_fingerprint(small_lm.model) == before
    h.undo()
    assert weights_fingerprint(small_lm.model) == before
