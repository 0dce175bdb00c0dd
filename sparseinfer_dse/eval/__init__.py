"""Accuracy of sparsified models: lm-eval tasks (offline GSM8K/BBH), cached dense baselines, proxies.

The modules' entry points:

* `evaluate_tasks(handle_or_model, tokenizer, tasks, limit, num_fewshot, batch_size, data_dir, seed)`
  -> {task: {metric, value, stderr, n, metrics, seconds[, subtasks]}}  (harness)
* `dense_baseline(loaded, tokenizer, tasks, ..., handle=...)` -> same rows, cached on disk  (baseline_cache)
* `DenseReference.build(handle, tokenizer, calibration)` and
  `proxy_metrics(handle, tokenizer, reference, profile=...)` -> {kl, top1, nll, n_tokens, ...}  (proxy)
* `load_calibration(spec, data_dir=..., model_name=...)`: the proxy's calibration text  (calibration)
* `offline_task_dir(data_dir)`: lm-eval task YAMLs for GSM8K/BBH read from local files  (offline_tasks)
"""
