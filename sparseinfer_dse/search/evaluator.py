"""Scores one alpha profile for the search: latency on the device, proxy fidelity, lm-eval accuracy.

The model is loaded and sparsified once; each trial only switches the profile (`set_profile`). The
latency workload (dense prefill caches, fixed token sequences) and the dense proxy reference are
built once and reused by every trial.
"""

from __future__ import annotations

import math
from typing import Any, Optional

from sparseinfer_dse.engine.decode import prepare_workload
from sparseinfer_dse.engine.latency import measure_decode_latency
from sparseinfer_dse.engine.latency_prompts import gsm8k_prompts
from sparseinfer_dse.engine.profile import AlphaProfile
from sparseinfer_dse.errors import UserError
from sparseinfer_dse.eval.baseline_cache import dense_baseline
from sparseinfer_dse.eval.harness import DEFAULT_SEED, evaluate_tasks
from sparseinfer_dse.eval.calibration import load_calibration
from sparseinfer_dse.eval.proxy import DenseReference, proxy_metrics
from sparseinfer_dse.search.options import SearchOptions

def median_noise_ms(res: dict[str, Any], prefix: str) -> float:
    """Half-width of a ~95% interval of a median latency, from its p10/p90 and sample count."""
    sigma = (res[f"{prefix}_p90_ms"] - res[f"{prefix}_p10_ms"]) / 2.563
    n = max(int(res.get("variants", {}).get("kf+as", {}).get("timed_tokens", 1) or 1), 1)
    return 1.96 * 1.2533 * sigma / math.sqrt(n)


class SearchEvaluator:
    def __init__(self, lm: Any, handle: Any, settings: SearchOptions, progress: bool = True) -> None:
        """`settings` are the search's options (tasks, proxy, latency workload); lm-eval runs with its fixed seed."""
        self.lm, self.handle, self.s = lm, handle, settings
        self.reference_ms: Optional[float] = None  # the study's dense ms/token (set by the caller)
        self.tok = lm.tokenizer
        self.progress = progress
        prompts = gsm8k_prompts(settings.latency_prompts, settings.data_dir)
        self.workload = prepare_workload(lm.model, self.tok, prompts, settings.latency_tokens, handle)
        self._reference = None

    # ---- pieces -------------------------------------------------------------------------------
    def _ref(self):
        if self._reference is None:
            cal = load_calibration(self.s.calibration, data_dir=self.s.data_dir, model_name=self.lm.spec.model,
                                   n=self.s.calibration_samples)
            self._reference = DenseReference.build(self.handle, self.tok, cal, progress=self.progress)
        return self._reference

    def proxy_score(self, kl: float, top1: float) -> float:
        """Higher is better: -KL in nats, or top-1 agreement in percent."""
        return -kl if self.s.proxy_metric == "kl" else 100.0 * top1

    @property
    def accuracy_label(self) -> str:
        if self.s.task_list:
            return f"lm-eval accuracy (points, {'+'.join(self.s.task_list)})"
        return "proxy: -KL(dense||sparse) (nats)" if self.s.proxy_metric == "kl" else "proxy: top-1 agreement (%)"

    # ---- the reference point -------------------------------------------------------------------
    def dense(self) -> dict[str, Any]:
        """The dense model once: latency, proxy score (0 KL / 100% agreement), lm-eval baseline."""
        res = measure_decode_latency(self.handle, workload=self.workload, repeats=self.s.latency_repeats,
                                     variants=(), include_dense=True, mlp_share=False, collect_sparsity=False)
        out: dict[str, Any] = {"ms": res["dense_ms_per_token"], "p10_ms": res["dense_p10_ms"],
                               "p90_ms": res["dense_p90_ms"], "score": self.proxy_score(0.0, 1.0)}
        if self.s.task_list:
            rows = dense_baseline(self.lm, self.tok, list(self.s.task_list), self.s.limit, self.s.num_fewshot,
                                  self.s.batch_size, self.s.data_dir, DEFAULT_SEED, handle=self.handle)
            out["accuracy_full"] = 100.0 * sum(r["value"] for r in rows.values()) / len(rows)
            out["per_task"] = {t: r["value"] for t, r in rows.items()}
        return out

    # ---- per trial -----------------------------------------------------------------------------
    def latency(self, profile: AlphaProfile) -> dict[str, Any]:
        self.handle.set_profile(profile)
        res = measure_decode_latency(self.handle, workload=self.workload, repeats=self.s.latency_repeats,
                                     variants=("kf+as",), include_dense=True, mlp_share=False, collect_sparsity=True)
        layers = res.get("layers") or []
        ratio = 1.0 / res.get("speedup_paired", res["speedup"])  # sparse/dense of the same prompt and round
        # Drift correction: the machine's speed moves between trials (other jobs, clocks), by more
        # than the profiles differ. Dense and sparse run interleaved in each trial, so their paired
        # ratio is steady; scaled by the study's one dense reference it is the trial's latency.
        scale = self.reference_ms / res["dense_ms_per_token"] if self.reference_ms else 1.0
        return {
            "ms": ratio * self.reference_ms if self.reference_ms else res["sparse_ms_per_token"],
            "ms_measured": res["sparse_ms_per_token"],
            "ratio": ratio,
            "speedup": res["speedup"],
            "dense_ms": res["dense_ms_per_token"],
            "p10_ms": res["sparse_p10_ms"] * scale,
            "p90_ms": res["sparse_p90_ms"] * scale,
            "noise_ms": median_noise_ms(res, "sparse") * scale,
            "layer_sparsity": [round(r["skipped"], 4) for r in layers],
            "layer_predicted": [round(r["predicted_sparsity"], 4) for r in layers],
            "layer_actual": [round(r["actual_sparsity"], 4) for r in layers],
        }

    def proxy(self, profile: AlphaProfile) -> dict[str, Any]:
        self.handle.set_profile(profile)
        m = proxy_metrics(self.handle, self.tok, self._ref())
        return {"score": self.proxy_score(m["kl"], m["top1"]), "kl": m["kl"], "top1": m["top1"], "nll": m["nll"],
                "seconds": m["seconds"]}

    def full(self, profile: AlphaProfile) -> dict[str, Any]:
        if not self.s.task_list:
            raise UserError("lm-eval fidelity needs --tasks")
        self.handle.set_profile(profile)
        rows = evaluate_tasks(self.handle, self.tok, list(self.s.task_list), self.s.limit, self.s.num_fewshot,
                              self.s.batch_size, self.s.data_dir, DEFAULT_SEED)
        acc = 100.0 * sum(r["value"] for r in rows.values()) / len(rows)
        return {"accuracy": acc, "per_task": {t: r["value"] for t, r in rows.items()},
                "seconds": round(sum(r.get("seconds", 0.0) for r in rows.values()), 2)}
