"""Threshold calibration: computed on GSM8K train text past the proxy's samples, cached by model,
method and text, loaded back identical; `refresh` computes again."""

import numpy as np

from sparseinfer_dse.eval import threshold_calibration as tc
from sparseinfer_dse.models.loading import ModelSpec, load_model


def test_calibrate_caches_and_reloads(tiny_model, tmp_path, monkeypatch):
    monkeypatch.setenv("SPARSEINFER_DSE_CACHE", str(tmp_path))
    lm = load_model(ModelSpec(str(tiny_model("llama-silu"))), tokenizer=True)
    spec = tc.CalibrationSpec(samples=3, max_tokens=200)
    calls = []
    real = tc.build_table
    monkeypatch.setattr(tc, "build_table", lambda *a, **k: calls.append(1) or real(*a, **k))
    first = tc.calibrate(lm, "wisparse", spec, progress=False)
    assert first.calibration["text"] == f"gsm8k-train[{tc.PROXY_SKIP}:{tc.PROXY_SKIP + 3}]"
    assert first.calibration["tokens"] == 200 and first.splits is not None
    assert len(list((tmp_path / "thresholds").glob("wisparse-*.npz"))) == 1
    again = tc.calibrate(lm, "wisparse", spec, progress=False)
    assert calls == [1]  # from the cache
    assert np.array_equal(again.quantiles, first.quantiles) and np.array_equal(again.splits, first.splits)
    assert again.calibration == first.calibration
    tc.calibrate(lm, "wisparse", spec, progress=False, refresh=True)
    assert calls == [1, 1]
    other = tc.calibrate(lm, "teal", spec, progress=False)  # another method: another table
    assert other.splits is None and calls == [1, 1, 1]
