"""Scores one alpha profile for the search: latency on the device, proxy fidelity, lm-eval accuracy.

The model is loaded and sparsified once; each trial only switches the profile (`set_profile`). The
latency workload (dense prefill caches, fixed token sequences) and the dense proxy reference are
built once and reused by every trial.

Every figure comes with its 95% interval: latency from the paired per-run sparse/dense ratios
(order-statistic interval of their median), lm-eval accuracy from its per-document scores
(bootstrap; and the paired delta vs dense), the proxy from its per-sequence scores (bootstrap).
The per-item scores are returned too (`items`), for paired comparisons between trials.
"""

from __future__ import annotations

from typing import Any, Optional

from sparseinfer_dse.engine.decode import prepare_workload
from sparseinfer_dse.engine.latency import measure_decode_latency
from sparseinfer_dse.engine.latency_model import LatencyModel
from sparseinfer_dse.engine.latency_prompts import gsm8k_prompts
from sparseinfer_dse.engine.profile import Profile
from sparseinfer_dse.errors import UserError
from sparseinfer_dse.eval.baseline_cache import dense_baseline
from sparseinfer_dse.eval.harness import DEFAULT_SEED, evaluate_tasks
from sparseinfer_dse.eval.calibration import load_calibration
from sparseinfer_dse.eval.items import accuracy_interval, delta_interval, pack, unpack
from sparseinfer_dse.eval.proxy import DenseReference, proxy_metrics
from sparseinfer_dse.stats import Interval, mean_interval
from sparseinfer_dse.search.model_setup import load_search_model
from sparseinfer_dse.search.options import SearchOptions

class SearchEvaluator:
    def __init__(self, lm: Any, handle: Any, settings: SearchOptions, progress: bool = True) -> None:
        """`settings` are the search's options (tasks, proxy, latency workload); lm-eval runs with its fixed seed."""
        self.lm, self.handle, self.s = lm, handle, settings
        self.reference_ms: Optional[float] = None  # the study's dense ms/token (set by the caller)
        self.dense_items: Optional[dict[str, Any]] = None  # the dense model's per-document scores (same)
        self.tok = lm.tokenizer
        self.progress = progress
        prompts = gsm8k_prompts(settings.latency_prompts, settings.data_dir)
        self.workload = prepare_workload(lm.model, self.tok, prompts, settings.latency_tokens, handle)
        self._reference = None
        self.latency_model: Optional[LatencyModel] = None  # set for --latency-fidelity staged

    @classmethod
    def load(cls, settings: SearchOptions, progress: bool = False) -> "SearchEvaluator":
        """Load the model of `settings` (threads, device, dtype, backend, method as given) and build the evaluator."""
        sm = load_search_model(settings, progress=progress)
        return cls(sm.lm, sm.handle, settings, progress=progress)

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

    def _lm_eval(self, dense: bool = False) -> dict[str, dict]:
        s = self.s
        if dense:
            return dense_baseline(self.lm, self.tok, list(s.task_list), s.limit, s.num_fewshot, s.batch_size,
                                  s.data_dir, DEFAULT_SEED, handle=self.handle)
        return evaluate_tasks(self.handle, self.tok, list(s.task_list), s.limit, s.num_fewshot, s.batch_size,
                              s.data_dir, DEFAULT_SEED)

    @staticmethod
    def _accuracy(rows: dict[str, dict]) -> dict[str, Any]:
        """Mean accuracy over tasks in points, its interval and the per-document scores."""
        out: dict[str, Any] = {"accuracy": 100.0 * sum(r["value"] for r in rows.values()) / len(rows),
                               "per_task": {t: r["value"] for t, r in rows.items()}}
        if all("items" in r for r in rows.values()):
            items = {t: r["items"] for t, r in rows.items()}
            iv = accuracy_interval({t: unpack(v) for t, v in items.items()})
            out.update(accuracy_ci_low=iv.low, accuracy_ci_high=iv.high, items=items)
        return out

    # ---- the reference point -------------------------------------------------------------------
    def dense(self) -> dict[str, Any]:
        """The dense model once: latency (with its interval over runs), proxy score (0 KL / 100%
        agreement), lm-eval baseline with per-document scores."""
        res = measure_decode_latency(self.handle, workload=self.workload, repeats=self.s.latency_repeats,
                                     variants=(), include_dense=True, mlp_share=False, collect_sparsity=False)
        out: dict[str, Any] = {"ms": res["dense_ms_per_token"], "p10_ms": res["dense_p10_ms"],
                               "p90_ms": res["dense_p90_ms"], "ci_low_ms": res["dense_run_ms_ci_low"],
                               "ci_high_ms": res["dense_run_ms_ci_high"], "score": self.proxy_score(0.0, 1.0)}
        if self.s.task_list:
            acc = self._accuracy(self._lm_eval(dense=True))
            out["accuracy_full"] = acc.pop("accuracy")
            out.update(acc)
        return out

    # ---- per trial -----------------------------------------------------------------------------
    def resolve(self, profile: Profile) -> Profile:
        """The profile with the thresholds its levels resolve to on this model (stored with the trial)."""
        return self.handle.resolve(profile)

    def latency(self, profile: Profile) -> dict[str, Any]:
        self.handle.set_profile(profile)
        res = measure_decode_latency(self.handle, workload=self.workload, repeats=self.s.latency_repeats,
                                     variants=("kf+as",), include_dense=True, mlp_share=False, collect_sparsity=True)
        layers = res.get("layers") or []
        # Drift correction: the machine's speed moves between trials (other jobs, clocks), by more
        # than the profiles differ. Dense and sparse run interleaved in each trial, so their paired
        # per-run ratios are steady; their median, scaled by the study's one dense reference, is the
        # trial's latency, and the order-statistic interval of that median its 95% interval.
        ratio = Interval(res["ratio"], res["ratio_ci_low"], res["ratio_ci_high"])
        ref = self.reference_ms or res["dense_ms_per_token"]
        ms = ratio.scaled(ref)
        scale = ref / res["dense_ms_per_token"]
        return {
            "ms": ms.estimate,
            "ci_low_ms": ms.low,
            "ci_high_ms": ms.high,
            "ratio": ratio.estimate,
            "ratio_ci_low": ratio.low,
            "ratio_ci_high": ratio.high,
            "run_ratios": res["run_ratios"],
            "runs": len(res["run_ratios"]),
            "ms_measured": res["sparse_ms_per_token"],
            "speedup": res["speedup"],
            "dense_ms": res["dense_ms_per_token"],
            "p10_ms": res["sparse_p10_ms"] * scale,
            "p90_ms": res["sparse_p90_ms"] * scale,
            "layer_sparsity": [round(r["skipped"], 4) for r in layers],
            "layer_predicted": [round(r["predicted_sparsity"], 4) for r in layers],
            "layer_actual": [round(r["actual_sparsity"], 4) for r in layers],
        }

    def predicted_latency(self, profile: Profile) -> dict[str, Any]:
        """The latency model's figure for `profile` (staged latency): its predicted ratio to dense times
        the study's dense reference, with +-latency_model_error as its interval."""
        if self.latency_model is None:
            raise RuntimeError("no latency model was set (staged latency)")
        ratio = self.latency_model.predict_ratio(profile)
        ms, err = ratio * self.reference_ms, self.s.latency_model_error
        return {"ms": ms, "ci_low_ms": ms * (1 - err), "ci_high_ms": ms * (1 + err), "ratio": ratio,
                "predicted_ms": ms}

    def proxy(self, profile: Profile) -> dict[str, Any]:
        self.handle.set_profile(profile)
        m = proxy_metrics(self.handle, self.tok, self._ref())
        seq = m["per_sequence"]
        if self.s.proxy_metric == "kl":
            per = [-v for v in seq["kl"]]
        else:
            per = [100.0 * v for v in seq["top1"]]
        iv = mean_interval(per, weights=seq["tokens"])  # token-weighted, as the score itself
        return {"score": self.proxy_score(m["kl"], m["top1"]), "ci_low": iv.low, "ci_high": iv.high,
                "items": pack(per), "kl": m["kl"], "top1": m["top1"], "nll": m["nll"], "seconds": m["seconds"]}

    def full(self, profile: Profile) -> dict[str, Any]:
        """lm-eval accuracy (points) with its interval, per-document scores, and the paired delta vs
        dense with its interval (`dense_items`, set by the caller from the dense reference)."""
        if not self.s.task_list:
            raise UserError("lm-eval fidelity needs --tasks")
        self.handle.set_profile(profile)
        rows = self._lm_eval()
        out = self._accuracy(rows)
        items = out.get("items")
        if items and self.dense_items and set(self.dense_items) == set(items):
            d = delta_interval({t: unpack(v) for t, v in items.items()},
                               {t: unpack(v) for t, v in self.dense_items.items()})
            out.update(accuracy_delta=d.estimate, accuracy_delta_ci_low=d.low, accuracy_delta_ci_high=d.high)
        out["seconds"] = round(sum(r.get("seconds", 0.0) for r in rows.values()), 2)
        return out
