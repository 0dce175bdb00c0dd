"""One `eval` job: a model under a profile through lm-eval, against its cached dense baseline, with
the optional KL proxy; `run_eval(job)` returns the rows (and writes summary.json under `job.out`)."""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from sparseinfer_dse.atomic import write_text
from sparseinfer_dse.engine.profile import AlphaProfile, alphas_repr
from sparseinfer_dse.engine.sparsify import sparsify
from sparseinfer_dse.errors import UserError
from sparseinfer_dse.eval.baseline_cache import ModelFacts, dense_baseline
from sparseinfer_dse.eval.harness import build_task_manager, evaluate_tasks
from sparseinfer_dse.eval.calibration import load_calibration
from sparseinfer_dse.eval.proxy import DenseReference, proxy_metrics
from sparseinfer_dse.models.loading import ModelSpec, load_model


@dataclass(frozen=True)
class EvalJob:
    """The settings of one evaluation (the `eval` options, tasks already parsed)."""

    tasks: tuple[str, ...]
    model: str = "demo"
    gguf_file: Optional[str] = None
    profile: Optional[Path] = None
    limit: Optional[int] = None
    num_fewshot: Optional[int] = None
    batch_size: int = 8
    data_dir: Optional[Path] = None
    out: Optional[Path] = None
    backend: str = "torch"
    proxy: bool = False
    calibration: Optional[str] = None
    calibration_samples: int = 32
    decode_activation: Optional[str] = None
    device: str = "auto"
    dtype: str = "auto"
    seed: int = 1234
    max_gen_toks: Optional[int] = None
    refresh_baseline: bool = False
    no_baseline: bool = False
    allow_model_mismatch: bool = False
    verbose: bool = False

    @property
    def gen_kwargs(self) -> Optional[dict[str, int]]:
        return {"max_gen_toks": self.max_gen_toks} if self.max_gen_toks else None


@dataclass
class EvalResult:
    """Per task the sparse rows and the dense baseline rows (empty with no_baseline), the proxy."""

    rows: dict[str, dict]
    dense_rows: dict[str, dict]
    proxy: Optional[dict[str, Any]]
    profile_desc: str
    backend: str
    summary_path: Optional[Path] = None
    notes: list[str] = field(default_factory=list)


def run_eval(job: EvalJob, say: Callable[[str], None] = lambda msg: None) -> EvalResult:
    """Evaluate `job`; `say` receives one line per step (what is checked, loaded, evaluated)."""
    names = list(job.tasks)
    say(f"tasks: checking {', '.join(names)}")
    tm = build_task_manager(names, job.data_dir)
    given = AlphaProfile.load(job.profile) if job.profile is not None else None  # fails before the model loads
    say(f"model: loading {job.model}")
    t0 = time.perf_counter()
    loaded = load_model(ModelSpec(job.model, job.gguf_file, job.device, job.dtype, job.decode_activation),
                        weights=True, tokenizer=True)
    say(f"model: loaded in {time.perf_counter() - t0:.1f}s ({loaded.identity.num_layers} layers, {loaded.dtype}, "
        f"{loaded.device})")
    if given is not None:
        prof = given.check_model(loaded.identity, job.allow_model_mismatch)
        desc = f"{job.profile} ({prof.name or 'unnamed'})"
    else:
        prof = AlphaProfile.uniform(loaded.identity.num_layers, 1.0, loaded.identity)
        desc = "uniform 1.00 (engine default; pass --profile for another)"
    facts = ModelFacts.of(loaded, loaded.tokenizer)  # before sparsify: fingerprints the original weights
    handle = sparsify(loaded, prof, backend=job.backend, allow_model_mismatch=job.allow_model_mismatch)
    if handle.backend == "numba-cpu" and job.batch_size != 1:  # also when `auto` chose it
        raise UserError("--backend numba-cpu runs one sequence at a time: use --batch-size 1")
    if handle.notice:
        say(f"note: {handle.notice}")
    say(f"profile: {desc}: {alphas_repr(prof.alphas)} [backend {handle.backend}]")
    common = dict(gen_kwargs=job.gen_kwargs, task_manager=tm, verbose=job.verbose)

    dense_rows: dict[str, dict] = {}
    if not job.no_baseline:
        say("dense baseline: looking up the cache / evaluating the dense model")
        dense_rows = dense_baseline(loaded, loaded.tokenizer, names, job.limit, job.num_fewshot, job.batch_size,
                                    job.data_dir, job.seed, handle=handle, facts=facts, refresh=job.refresh_baseline,
                                    out_dir=(job.out / "dense") if job.out else None, **common)
        for n, r in dense_rows.items():
            say(f"dense baseline {n}: " + ("from the cache" if r["cached"] else f"evaluated in {r.get('seconds') or 0:.1f}s"))

    say("sparse: evaluating with the profile")
    rows = evaluate_tasks(handle, loaded.tokenizer, names, job.limit, job.num_fewshot, job.batch_size, job.data_dir,
                          job.seed, out_dir=(job.out / "sparse") if job.out else None, **common)

    proxy_res = None
    if job.proxy:
        cal = load_calibration(job.calibration, data_dir=job.data_dir, model_name=job.model, n=job.calibration_samples)
        say(f"proxy: calibration {cal.name}")
        ref = DenseReference.build(handle, loaded.tokenizer, cal, batch_size=1 if handle.backend == "numba-cpu" else 8,
                                   progress=True)
        proxy_res = proxy_metrics(handle, loaded.tokenizer, ref, progress=True)

    result = EvalResult(rows, dense_rows, proxy_res, desc, handle.backend)
    for n in names:
        kind = rows[n].get("output_type", "generate_until")
        if "generate_until" not in kind:
            result.notes.append(f"{n} is scored by log-likelihood ({kind}): one prefill pass, which runs dense, "
                                "so the profile cannot change its score")
    if job.out is not None:
        result.summary_path = _write_summary(job, result, loaded, facts, prof)
    return result


def _write_summary(job: EvalJob, res: EvalResult, loaded: Any, facts: ModelFacts, prof: AlphaProfile) -> Path:
    import lm_eval

    summary = {
        "model": job.model,
        "model_identity": loaded.identity.to_dict(),
        "weights": facts.weights,
        "profile": {"path": str(job.profile) if job.profile else None, "name": prof.name, "alphas": list(prof.alphas)},
        "backend": res.backend,
        "decode_activation": loaded.spec.decode_activation,
        "dtype": str(loaded.dtype).replace("torch.", ""),
        "device": str(loaded.device),
        "limit": job.limit,
        "num_fewshot": job.num_fewshot,
        "batch_size": job.batch_size,
        "seed": job.seed,
        "gen_kwargs": job.gen_kwargs,
        "data_dir": str(job.data_dir.resolve()) if job.data_dir else None,
        "lm_eval": lm_eval.__version__,
        "tasks": {n: summary_entry(res.rows[n], res.dense_rows.get(n)) for n in job.tasks},
        "proxy": res.proxy,
        "command": " ".join(sys.argv),
    }
    job.out.mkdir(parents=True, exist_ok=True)
    return write_text(job.out / "summary.json", json.dumps(summary, indent=2) + "\n")


def summary_entry(row: dict, dense: Optional[dict]) -> dict[str, Any]:
    """One task of summary.json: the sparse metric, the dense one and the delta in points (subtasks too)."""
    dv = dense.get("value") if dense else None
    entry: dict[str, Any] = {
        "metric": row.get("metric"),
        "value": row.get("value"),
        "stderr": row.get("stderr"),
        "n": row.get("n"),
        "dense": dv,
        "dense_stderr": dense.get("stderr") if dense else None,
        "delta": None if dv is None or row.get("value") is None else 100 * (row["value"] - dv),
        "delta_unit": "points",
        "seconds": row.get("seconds"),
        "dense_seconds": dense.get("seconds") if dense else None,
        "dense_cached": dense.get("cached") if dense else None,
        "metrics": {
            k: {**v, "dense": (dense or {}).get("metrics", {}).get(k, {}).get("value")} for k, v in row.get("metrics", {}).items()
        },
    }
    if "subtasks" in row:
        entry["subtasks"] = {
            s: summary_entry(r, (dense or {}).get("subtasks", {}).get(s)) for s, r in row["subtasks"].items()
        }
    return entry
