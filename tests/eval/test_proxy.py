"""Fidelity proxies: teacher-forced decode steps, KL(dense || sparse), top-1, NLL."""

from __future__ import annotations

import json

import pytest
import torch

from sparseinfer_dse.data import DATA_DIR
from sparseinfer_dse.engine.sparsify import sparsify
from sparseinfer_dse.errors import UserError
from sparseinfer_dse.eval.calibration import (
    Calibration,
    demo_calibration,
    encode_calibration,
    file_calibration,
    gsm8k_calibration,
    load_calibration,
)
from sparseinfer_dse.eval.proxy import DenseReference, proxy_metrics
from sparseinfer_dse.engine.profile import Profile


@pytest.fixture
def handle(small_lm):
    return sparsify(small_lm, None, backend="torch")


@pytest.fixture
def reference(handle, small_lm):
    return DenseReference.build(handle, small_lm.tokenizer, demo_calibration(6), batch_size=4,
                                max_continuation_tokens=24)


def test_stepwise_dense_pass_equals_a_full_teacher_forced_forward(handle, small_lm, reference):
    model = small_lm.model
    for i in (0, 5):
        p, c = reference.samples[i]
        with handle.options_set(enabled=False), torch.no_grad():
            full = torch.log_softmax(model(torch.tensor([p + c])).logits[0].float(), -1)
        # prediction of c[t+1] sits at position len(p) + t; c[0]'s (from the prefill) is not scored
        want = full[len(p): len(p) + len(c) - 1]
        torch.testing.assert_close(reference.logprobs[i], want, atol=2e-5, rtol=0)
    assert reference.n_tokens == sum(len(c) - 1 for _, c in reference.samples)


def test_kl_of_dense_against_dense_is_zero(handle, small_lm, reference):
    n = small_lm.identity.num_layers
    got = proxy_metrics(handle, small_lm.tokenizer, reference, profile=Profile.dense(n))
    assert got["kl"] == 0.0 and got["kl_max"] == 0.0 and got["top1"] == 1.0
    assert got["nll"] == pytest.approx(got["dense_nll"], abs=1e-9)
    with handle.options_set(enabled=False):
        assert proxy_metrics(handle, small_lm.tokenizer, reference)["kl"] == 0.0


def test_aggressive_alpha_raises_kl_and_runs_sparse_decode_steps(handle, small_lm, reference):
    n = small_lm.identity.num_layers
    handle.configure(collect=True)
    handle.reset_stats()
    mild = proxy_metrics(handle, small_lm.tokenizer, reference, profile=Profile.uniform(n, 1.1))
    stats = handle.layer_stats()
    batches = -(-len(reference.samples) // reference.batch_size)
    assert all(s["calls"]["prefill"] == batches for s in stats)  # one dense prefill per batch
    assert all(s["tokens"] == _decode_rows(reference) for s in stats)  # each fed token was a decode step
    hard = proxy_metrics(handle, small_lm.tokenizer, reference, profile=Profile.uniform(n, 0.6))
    assert hard["kl"] > mild["kl"] > 0.0
    assert hard["top1"] <= mild["top1"]
    assert handle.profile.levels == (1.0,) * n  # the handle's own profile is restored


def _decode_rows(ref: DenseReference) -> int:
    """Rows the engine sees: every batch runs max(len(c)) - 1 decode steps over all its rows."""
    total = 0
    for s in range(0, len(ref.samples), ref.batch_size):
        batch = ref.samples[s: s + ref.batch_size]
        total += len(batch) * (max(len(c) for _, c in batch) - 1)
    return total


def test_reference_save_load_and_build_on_the_fly(handle, small_lm, reference, tmp_path):
    n = small_lm.identity.num_layers
    prof = Profile.uniform(n, 0.8)
    a = proxy_metrics(handle, small_lm.tokenizer, reference, profile=prof)
    loaded = DenseReference.load(reference.save(tmp_path / "ref.pt"))
    b = proxy_metrics(handle, small_lm.tokenizer, loaded, profile=prof)
    assert (a["kl"], a["top1"], a["nll"]) == (b["kl"], b["top1"], b["nll"])
    c = proxy_metrics(handle, small_lm.tokenizer, demo_calibration(6), profile=prof, batch_size=4,
                      max_continuation_tokens=24)
    assert c["kl"] == pytest.approx(a["kl"], rel=1e-6) and c["n_tokens"] == a["n_tokens"]


def test_calibration_sources(data_dir, tmp_path):
    g = gsm8k_calibration(data_dir, 3)
    first = json.loads((data_dir / "gsm8k" / "train.jsonl").read_text().splitlines()[0])
    assert len(g) == 3 and g.samples[0] == (f"Question: {first['question']}\nAnswer:", " " + first["answer"])
    d = demo_calibration(4)
    assert len(d) == 4 and d.samples[0][0].startswith("Question: ") and "####" in d.samples[0][1]
    j = tmp_path / "c.jsonl"
    j.write_text('{"prompt": "a b", "continuation": " c d"}\n{"question": "q?", "answer": "#### 1"}\n')
    assert file_calibration(j).samples == (("a b", " c d"), ("Question: q?\nAnswer:", " #### 1"))
    t = tmp_path / "c.txt"
    t.write_text("one two three four five six\n\nshort\n\nseven eight nine ten eleven twelve")
    fc = file_calibration(t)
    assert len(fc) == 2 and "".join(fc.samples[0]) == "one two three four five six"
    assert load_calibration(None, model_name="demo", n=2).name.startswith("demo")
    assert load_calibration(None, data_dir=data_dir, n=2).name.startswith("gsm8k")
    # no --data-dir: the shipped GSM8K
    shipped_first = json.loads((DATA_DIR / "gsm8k" / "train.jsonl").read_text().splitlines()[0])
    for cal in (load_calibration(None, model_name="x", n=2), load_calibration("gsm8k", n=2)):
        assert cal.name.startswith("gsm8k") and len(cal) == 2
        assert cal.samples[0] == (f"Question: {shipped_first['question']}\nAnswer:", " " + shipped_first["answer"])
    with pytest.raises(UserError, match="calibration needs"):
        gsm8k_calibration(tmp_path / "nowhere", 1)
    with pytest.raises(UserError, match="not found"):
        load_calibration(str(tmp_path / "missing.txt"))
    with pytest.raises(UserError, match="continuation of 2"):
        encode_calibration(_WordTok(), Calibration("x", (("a", " b"),)))


class _WordTok:
    def __call__(self, text, add_special_tokens=True):
        return {"input_ids": [len(w) for w in text.split()]}
