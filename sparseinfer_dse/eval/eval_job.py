"""One `eval` job: a model under a profile through lm-eval, against its cached dense baseline, with
the optional KL proxy; `run_eval(job)` returns the rows (and writes summary.json under `job.out`).

One profile, one measurement: lm-eval scores move with batch size and backend numerics, so a
profile exported by a search records how its accuracy was measured (`metrics.measurement`) and
`EvalJob.resolve` takes every setting the user did not give from there (flag > profile > defaults).
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Optional

from sparseinfer_dse.atomic import write_text
from sparseinfer_dse.engine.profile import Profile, levels_repr
from sparseinfer_dse.engine.sparsify import BACKEND_CHOICES, sparsify
from sparseinfer_dse.errors import OptionError, UserError
from sparseinfer_dse.eval.baseline_cache import ModelFacts, dense_baseline
from sparseinfer_dse.eval.harness import build_task_manager, evaluate_tasks, parse_tasks
from sparseinfer_dse.eval.calibration import load_calibration
from sparseinfer_dse.eval.items import accuracy_interval, delta_interval, unpack
from sparseinfer_dse.eval.proxy import DenseReference, proxy_metrics
from sparseinfer_dse.models.loading import ModelSpec, load_model


@dataclass(frozen=True)
class EvalJob:
    """The settings of one evaluation (the `eval` options, tasks already parsed)."""

    tasks: tuple[str, ...] = ()
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
    # the profile's recorded measurement (None: the profile has none) and the settings given that differ
    measurement: Optional[dict[str, Any]] = field(default=None, compare=False)
    overridden: tuple[str, ...] = ()

    # ---- the one precedence rule ---------------------------------------------------------------
    @classmethod
    def resolve(cls, given: Mapping[str, Any], measurement: Optional[Mapping[str, Any]] = None) -> "EvalJob":
        """Settings given (flags) > the profile's recorded measurement > the defaults."""
        recorded = _normalized({k: v for k, v in (measurement or {}).items() if k in MEASURED})
        values = {**recorded, **_normalized(given)}
        overridden = tuple(k for k in MEASURED if k in recorded and k in given and values[k] != recorded[k])
        try:
            return cls(**values, measurement=dict(measurement) if measurement else None, overridden=overridden)
        except OptionError as exc:
            if exc.field in recorded and exc.field not in given:  # the value came from the profile
                raise OptionError(exc.field, exc.template + f" (recorded in the profile's measurement; pass "
                                  f"{{{exc.field}}} to override)") from None
            raise

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        if not self.tasks:
            raise OptionError("tasks", "{tasks} is required (or a {profile} whose measurement records them)")
        if self.backend not in BACKEND_CHOICES:
            raise OptionError("backend", f"{{backend}} must be one of {', '.join(BACKEND_CHOICES)}, not {self.backend!r}")
        for key in ("batch_size", "limit", "calibration_samples"):
            if getattr(self, key) is not None and getattr(self, key) < 1:
                raise OptionError(key, f"{{{key}}} must be at least 1")
        if self.data_dir is not None and not self.data_dir.is_dir():
            raise OptionError("data_dir", f"{{data_dir}} {self.data_dir} is not a directory")
        if self.proxy and self.calibration not in (None, "gsm8k", "demo") and not Path(self.calibration).is_file():
            raise OptionError("calibration", f"{{calibration}} {self.calibration}: not gsm8k, demo or an existing file")

    def measurement_lines(self) -> list[str]:
        """What `eval` says about following the profile's measurement (nothing when it has none)."""
        if not self.measurement:
            return []
        m = _normalized({k: v for k, v in self.measurement.items() if k in MEASURED})
        lines = ["measurement: as the search measured it: " + _describe(m)]
        if self.overridden:
            changed = ", ".join(f"{LABELS[k]} {_show(getattr(self, k))} (profile: {_show(m[k])})" for k in self.overridden)
            lines.append(f"note: {changed}: this figure is not comparable with the profile's recorded accuracy "
                         "(scores move with these settings)")
        return lines

    @property
    def gen_kwargs(self) -> Optional[dict[str, int]]:
        return {"max_gen_toks": self.max_gen_toks} if self.max_gen_toks else None


# the settings a search records in each profile's metrics.measurement, in the order they are shown
MEASURED = ("tasks", "limit", "num_fewshot", "batch_size", "backend", "seed", "data_dir", "max_gen_toks",
            "device", "dtype", "decode_activation")
LABELS = {"tasks": "tasks", "limit": "limit", "num_fewshot": "few-shot", "batch_size": "batch", "backend": "backend",
          "seed": "seed", "data_dir": "data", "max_gen_toks": "max tokens", "device": "device", "dtype": "dtype",
          "decode_activation": "decode activation"}


def _normalized(values: Mapping[str, Any]) -> dict[str, Any]:
    """Tasks as a tuple of names, data_dir as a Path: flags and JSON compare equal when they agree."""
    out = dict(values)
    if out.get("tasks") is not None:
        out["tasks"] = tuple(parse_tasks(out["tasks"]))
    if out.get("data_dir") is not None:
        out["data_dir"] = Path(out["data_dir"])
    return out


def _show(value: Any) -> str:
    return ",".join(value) if isinstance(value, tuple) else str(value)


def _describe(m: Mapping[str, Any]) -> str:
    """'demo_arith, limit 100, batch 16, backend numba-cpu, seed 1234' (+ the other recorded settings set)."""
    parts = [_show(m["tasks"])] if m.get("tasks") else []
    for key in ("limit", "batch_size", "backend", "seed"):
        if key in m:
            parts.append(f"{LABELS[key]} {'all' if m[key] is None and key == 'limit' else _show(m[key])}")
    parts += [f"{LABELS[k]} {_show(m[k])}" for k in ("num_fewshot", "max_gen_toks", "data_dir", "decode_activation")
              if m.get(k) is not None]
    return ", ".join(parts)


def recorded_measurement(profile: Optional[Path]) -> Optional[dict[str, Any]]:
    """The profile's `metrics.measurement` (how the search measured its accuracy), or None."""
    if profile is None:
        return None
    m = Profile.load(profile).metrics.get("measurement")
    if m is not None and not isinstance(m, dict):
        raise UserError(f"{profile}: metrics.measurement must be an object")
    return m or None


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
    for line in job.measurement_lines():
        say(line)
    say(f"tasks: checking {', '.join(names)}")
    tm = build_task_manager(names, job.data_dir)
    given = Profile.load(job.profile) if job.profile is not None else None  # fails before the model loads
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
        prof = Profile.uniform(loaded.identity.num_layers, 1.0, loaded.identity)
        desc = "uniform 1.00 (engine default; pass --profile for another)"
    facts = ModelFacts.of(loaded, loaded.tokenizer)  # before sparsify: fingerprints the original weights
    handle = sparsify(loaded, prof, backend=job.backend, allow_model_mismatch=job.allow_model_mismatch)
    if handle.notice:
        say(f"note: {handle.notice}")
    say(f"profile: {desc}: {levels_repr(prof)} [backend {handle.backend}]")
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
    recorded = prof.metrics.get("accuracy") if job.measurement else None
    if isinstance(recorded, (int, float)) and all(rows[n].get("value") is not None for n in names):
        now = sum(100 * rows[n]["value"] for n in names) / len(names)
        result.notes.append(f"the profile records accuracy {recorded:.2f} (the search's measurement); this run "
                            f"{now:.2f}" + (" under other settings" if job.overridden else ""))
    if job.out is not None:
        result.summary_path = _write_summary(job, result, loaded, facts, prof)
    return result


def _write_summary(job: EvalJob, res: EvalResult, loaded: Any, facts: ModelFacts, prof: Profile) -> Path:
    import lm_eval

    summary = {
        "model": job.model,
        "model_identity": loaded.identity.to_dict(),
        "weights": facts.weights,
        "profile": {"path": str(job.profile) if job.profile else None, "name": prof.name, "alphas": list(prof.levels)},
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
        "measurement": {"from_profile": job.measurement is not None, "overridden": list(job.overridden)},
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
        **task_intervals(row, dense),
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


def task_intervals(row: dict, dense: Optional[dict]) -> dict[str, Any]:
    """From the per-document items, in points: the accuracy's 95% interval and the paired delta vs
    dense with its interval; `delta_beyond_noise` when that interval excludes 0. Empty without items."""
    if "items" not in row:
        return {}
    items = {"task": unpack(row["items"])}
    acc = accuracy_interval(items)
    out: dict[str, Any] = {"value_ci95": [round(acc.low, 2), round(acc.high, 2)]}
    dense_items = unpack(dense["items"]) if dense and "items" in dense else None
    if dense_items is not None and len(dense_items) == len(items["task"]):
        d = delta_interval(items, {"task": dense_items})
        out["delta_items"] = round(d.estimate, 2)
        out["delta_ci95"] = [round(d.low, 2), round(d.high, 2)]
        out["delta_beyond_noise"] = bool(d.low > 0 or d.high < 0)
    return out
