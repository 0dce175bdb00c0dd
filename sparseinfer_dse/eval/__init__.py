"""Accuracy of sparsified models: lm-eval tasks (offline GSM8K/BBH), cached dense baselines, proxies.

Public API (imported lazily, so `import sparseinfer_dse.eval` stays cheap):

* `evaluate_tasks(handle_or_model, tokenizer, tasks, limit, num_fewshot, batch_size, data_dir, seed)`
  -> {task: {metric, value, stderr, n, metrics, seconds[, subtasks]}}  (harness)
* `dense_baseline(loaded, tokenizer, tasks, ..., handle=...)` -> same rows, cached on disk  (baseline_cache)
* `DenseReference.build(handle, tokenizer, calibration)` and
  `proxy_metrics(handle, tokenizer, reference, profile=...)` -> {kl, top1, nll, n_tokens, ...}  (proxy)
* `load_calibration(spec, data_dir=..., model_name=...)`: the proxy's calibration text  (calibration)
* `offline_task_dir(data_dir)`: lm-eval task YAMLs for GSM8K/BBH read from local files  (offline_tasks)
"""

from __future__ import annotations

from typing import Any

_EXPORTS = {
    "evaluate_tasks": "harness",
    "build_task_manager": "harness",
    "parse_tasks": "harness",
    "dense_baseline": "baseline_cache",
    "BaselineCache": "baseline_cache",
    "BaselineKey": "baseline_cache",
    "ModelFacts": "baseline_cache",
    "baseline_key": "baseline_cache",
    "DenseReference": "proxy",
    "proxy_metrics": "proxy",
    "Calibration": "calibration",
    "load_calibration": "calibration",
    "gsm8k_calibration": "calibration",
    "demo_calibration": "calibration",
    "file_calibration": "calibration",
    "offline_task_dir": "offline_tasks",
}


def __getattr__(name: str) -> Any:
    mod = _EXPORTS.get(name)
    if mod is None:
        raise AttributeError(f"module 'sparseinfer_dse.eval' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f"sparseinfer_dse.eval.{mod}"), name)


__all__ = sorted(_EXPORTS)
