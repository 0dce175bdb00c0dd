"""Verification: the front's profiles, dense and the seeds measured again, together, with more runs.

A search measures each trial once, minutes apart from the others, with the few latency runs and
the task limit a search can afford; its front is only as good as that. Verification takes the
candidates (the front, the seeds, dense), times them interleaved in one run (engine
`measure_profiles`: every round decodes the same tokens with dense and each profile in rotating
order) with `repeats` rounds, and measures accuracy the same way the search did (same backend,
batch size, seed: search/evaluator.py) on every document of the task unless a limit is given
(the proxy: on more calibration sequences). It writes verified.csv: one row per candidate, the
figures with their 95% intervals, the verdicts against dense and the paper seed, whether the point
is on the front of the verified points, and what the search had measured for it. Latencies are
stated as the search states them: the paired ratio to dense times the study's dense reference
(`verify_dense_ms` is the dense figure of this run).

`also` adds profiles measured in the same run but kept off the verified front and out of `export`
(kind "also"): trials of this or another study ("trial-12", "uniform-50%", "DIR:trial-12") or
profile files, so that another method's or another study's profiles are compared with this
study's on the same runs, paired, on the same sequences.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Optional

import optuna
import pandas as pd

from sparseinfer_dse.atomic import replaced
from sparseinfer_dse.engine.latency_profiles import DENSE, measure_profiles, runs_needed
from sparseinfer_dse.engine.profile import Profile
from sparseinfer_dse.errors import UserError
from sparseinfer_dse.eval.items import unpack
from sparseinfer_dse.search.evaluator import SearchEvaluator
from sparseinfer_dse.search.options import OPTION_NAMES, SearchOptions
from sparseinfer_dse.search.outputs import REFERENCE_SEEDS, judged_trials
from sparseinfer_dse.search.pareto import Measured, dominates, exact_reference, front_mask, verdict, versus_dense
from sparseinfer_dse.search.report import write_report
from sparseinfer_dse.search.storage import open_storage, redact
from sparseinfer_dse.search.trial_measures import lm_eval_items
from sparseinfer_dse.search.trial_profile import level_columns, trial_profile

REPEATS_FACTOR = 3  # verification rounds = this x the search's latency_repeats, unless given
CALIBRATION_FACTOR = 4  # proxy studies: this x the search's calibration sequences


@dataclass(frozen=True)
class VerifyOptions:
    """`study`: a search output folder. `repeats`: latency rounds over the prompts (default 3x the
    search's); `limit`: documents per task (default: all); `storage`: the study's storage URL when
    study.json cannot give it (a redacted password)."""

    study: Path
    repeats: Optional[int] = None
    limit: Optional[int] = None
    storage: Optional[str] = None
    report: bool = True
    also: tuple[str, ...] = ()  # extra profiles to measure alongside (module docstring)


@dataclass
class Candidate:
    kind: str  # dense, seed or front
    name: str
    trial: Optional[int]
    profile: Optional[Profile]
    search: dict[str, Any]


def search_options(folder: Path, storage: Optional[str] = None) -> SearchOptions:
    """The search's options as study.json recorded them (what verification measures with)."""
    path = folder / "study.json"
    if not path.is_file():
        raise UserError(f"{folder} is not a search output folder (no study.json)")
    meta = json.loads(path.read_text())
    recorded = meta.get("options")
    if not recorded:
        raise UserError(f"{path} was written by an older version (no options recorded); rerun the search to "
                        "continue the study, then verify")
    values = {k: v for k, v in recorded.items() if k in OPTION_NAMES}
    for key in ("out", "data_dir"):
        if values.get(key) is not None:
            values[key] = Path(values[key])
    values["out"] = folder
    if storage is not None:
        values["storage"] = storage
    elif recorded.get("storage") and "***" in str(recorded["storage"]):
        raise UserError(f"the study's storage has a password study.json does not keep: pass --storage "
                        f"({recorded['storage']})")
    return SearchOptions(**values)


def candidates(study: optuna.Study, fidelity: str) -> tuple[list[Candidate], str]:
    """Dense, the seeds and the front of the sparse profiles (a seed on the front counted once, as a
    seed; an all-dense trial is the reference itself)."""
    done, points, which = judged_trials(study, fidelity)
    if not done:
        raise UserError("the study has no finished trial to verify")
    out = [Candidate("dense", DENSE, None, None, {})]
    seen: set[int] = set()
    # The front of the sparse profiles: an all-dense trial (the calibrated methods' "dense" seed) is the
    # reference measured above, and beside it only profiles faster beyond the noise would survive.
    sparse = [(t, p) for t, p in zip(done, points) if not _all_dense(t)]
    done, points = [t for t, _ in sparse], [p for _, p in sparse]
    on_front = front_mask(points)
    seeds = [(t, p) for t, p in zip(done, points) if t.user_attrs.get("seed")]
    fronts = [(t, p) for t, p, keep in zip(done, points, on_front) if keep and not t.user_attrs.get("seed")]
    for kind, group in (("seed", seeds), ("front", fronts)):
        for t, p in group:
            if t.number in seen:
                continue
            seen.add(t.number)
            profile = trial_profile(t.user_attrs)
            name = t.user_attrs["seed"] if kind == "seed" else f"trial-{t.number}"
            out.append(Candidate(kind, name, t.number, profile,
                                 {"latency_ms": p.latency, "accuracy": p.accuracy}))
    return out, which


def _load_study(folder: Path, storage: Optional[str] = None) -> tuple[SearchOptions, optuna.Study]:
    opts = search_options(folder, storage)
    rdb = open_storage(opts.storage_url, heartbeat_interval=None)
    try:
        return opts, optuna.load_study(study_name=opts.name, storage=rdb)
    except KeyError:
        raise UserError(f"no study {opts.name!r} in {redact(opts.storage_url)}") from None


def also_candidates(specs: tuple[str, ...], study: optuna.Study, num_layers: Optional[int]) -> list[Candidate]:
    """The `also` profiles: "trial-N" or a seed's name (this study), "DIR:trial-N" / "DIR:seed" (the
    study in search folder DIR), or a profile JSON file."""
    out = []
    for spec in specs:
        if spec.endswith(".json"):
            prof, name, trial, search = Profile.load(spec), Path(spec).stem, None, {}
        else:
            where, _, label = spec.rpartition(":")
            st = study if not where else _load_study(Path(where))[1]
            done = [t for t in st.get_trials(deepcopy=False) if t.values is not None]
            found = [t for t in done if f"trial-{t.number}" == label or t.user_attrs.get("seed") == label]
            if not found:
                raise UserError(f"--also {spec}: no finished trial {label!r} in study {st.study_name!r}")
            t = found[0]
            prof, trial = trial_profile(t.user_attrs), t.number
            name = label if not where else f"{st.study_name}:{label}"
            # another study's figures are on its own scale (its dense reference): not shown as this one's
            search = {"latency_ms": t.values[0], "accuracy": t.values[1]} if not where else {}
        if prof is None or (num_layers is not None and prof.num_layers != num_layers):
            raise UserError(f"--also {spec}: not a profile for this model's {num_layers} layers")
        out.append(Candidate("also", name, trial, prof, search))
    return out


def _all_dense(trial: Any) -> bool:
    profile = trial_profile(trial.user_attrs)
    return profile is not None and all(a is None for a in profile.levels)


def _point(row: dict[str, Any], items: Optional[tuple[float, ...]]) -> Measured:
    return Measured(row["latency_ms"], row["accuracy"], row["latency_ci_low_ms"], row["latency_ci_high_ms"],
                    row.get("accuracy_low"), row.get("accuracy_high"), items)


def run_verify(vo: VerifyOptions, say: Callable[[str], None] = print, progress: bool = True) -> pd.DataFrame:
    """Measure the candidates again and write verified.csv (and the report); returns its rows."""
    from tqdm.auto import tqdm

    opts, study = _load_study(vo.study, vo.storage)
    fidelity = opts.effective_fidelity
    cands, which = candidates(study, fidelity)
    if vo.also:
        layers = next((c.profile.num_layers for c in cands if c.profile is not None), None)
        for c in also_candidates(vo.also, study, layers):  # one already measured (on the front) is skipped
            if c.name not in {d.name for d in cands}:
                cands.append(c)
    repeats = vo.repeats or REPEATS_FACTOR * opts.latency_repeats
    if repeats < 1:
        raise UserError("--repeats must be at least 1")
    if vo.limit is not None and vo.limit < 1:
        raise UserError("--limit must be at least 1")
    measure = replace(opts, limit=vo.limit, latency_repeats=repeats,
                      calibration_samples=CALIBRATION_FACTOR * opts.calibration_samples)
    ev = SearchEvaluator.load(measure)
    lm, handle = ev.lm, ev.handle
    profiles = {c.name: c.profile for c in cands if c.profile is not None}
    say(f"verifying {len(profiles)} profiles and dense on {lm.device} (backend {handle.backend}): latency "
        f"{repeats} rounds x {opts.latency_prompts} prompts interleaved"
        + (f", lm-eval {'+'.join(opts.task_list)} on {'all documents' if vo.limit is None else f'{vo.limit} documents'}"
           if opts.task_list else f", proxy on {measure.calibration_samples} calibration sequences"))
    bar = tqdm(total=runs_needed(len(profiles), opts.latency_prompts, repeats), unit="run", desc="verify: latency",
               disable=not progress)
    lat = measure_profiles(handle, ev.workload, profiles, repeats=repeats, progress=bar.update)
    bar.close()

    # Latencies as the search states them: each profile's paired ratio to this run's dense, times the
    # study's dense reference (the machine's speed drifts between runs; the ratios do not).
    measured_dense = lat[DENSE]["ms"]
    dense_ms = (study.user_attrs.get("dense") or {}).get("ms") or measured_dense
    scale = dense_ms / measured_dense
    rows: list[dict[str, Any]] = []
    items: list[Optional[tuple[float, ...]]] = []
    bar = tqdm(total=len(cands), unit="profile", desc="verify: accuracy", disable=not progress)
    dense_acc = ev.dense() if opts.task_list else {"score": ev.proxy_score(0.0, 1.0)}
    ev.dense_items = dense_acc.get("items")
    for c in cands:
        row: dict[str, Any] = {"kind": c.kind, "name": c.name, "trial": c.trial}
        if c.profile is None:  # dense
            row.update(latency_ms=dense_ms, latency_ci_low_ms=lat[DENSE]["ms_ci_low"] * scale,
                       latency_ci_high_ms=lat[DENSE]["ms_ci_high"] * scale, latency_ratio=1.0)
            if opts.task_list:
                row.update(accuracy=dense_acc["accuracy_full"], accuracy_low=dense_acc.get("accuracy_ci_low"),
                           accuracy_high=dense_acc.get("accuracy_ci_high"))
                items.append(lm_eval_items(dense_acc.get("items")))
            else:
                row.update(accuracy=dense_acc["score"], accuracy_low=dense_acc["score"],
                           accuracy_high=dense_acc["score"])
                items.append(None)
        else:
            m = lat[c.name]
            row.update(latency_ms=m["ratio"] * dense_ms, latency_ci_low_ms=m["ratio_ci_low"] * dense_ms,
                       latency_ci_high_ms=m["ratio_ci_high"] * dense_ms, latency_ratio=m["ratio"],
                       latency_ratio_ci_low=m["ratio_ci_low"], latency_ratio_ci_high=m["ratio_ci_high"])
            if opts.task_list:
                full = ev.full(c.profile)
                row.update(accuracy=full["accuracy"], accuracy_low=full.get("accuracy_ci_low"),
                           accuracy_high=full.get("accuracy_ci_high"), accuracy_delta=full.get("accuracy_delta"),
                           accuracy_delta_ci_low=full.get("accuracy_delta_ci_low"),
                           accuracy_delta_ci_high=full.get("accuracy_delta_ci_high"))
                items.append(lm_eval_items(full.get("items")))
            else:
                prox = ev.proxy(c.profile)
                row.update(accuracy=prox["score"], accuracy_low=prox["ci_low"], accuracy_high=prox["ci_high"])
                items.append(tuple(unpack(prox["items"])))
            row.update(level_columns(c.profile))
            row["profile"] = json.dumps(c.profile.to_dict())  # whole (thresholds in): what export writes
        row.update(search_latency_ms=c.search.get("latency_ms"), search_accuracy=c.search.get("accuracy"),
                   verify_repeats=repeats, verify_limit=vo.limit, verify_dense_ms=measured_dense)
        rows.append(row)
        bar.update()
    bar.close()
    _judge(rows, items)
    df = pd.DataFrame(rows)
    with replaced(vo.study / "verified.csv") as tmp:
        df.to_csv(tmp, index=False)
    if vo.report:
        write_report(vo.study)
    return df


def _judge(rows: list[dict[str, Any]], items: list[Optional[tuple[float, ...]]]) -> None:
    """Verdicts vs dense (latency on the paired ratio interval vs 1) and vs the paper seed, and the
    front of the verified profiles (dense marked on it when no profile dominates it)."""
    points = [_point(r, it) for r, it in zip(rows, items)]
    points[0] = exact_reference(points[0], next((len(it) for it in items if it is not None), 0))
    dense = points[0]
    seed = next((p for r, p in zip(rows, points) if r["name"] in REFERENCE_SEEDS), None)
    # the front of the profiles (what `export` chooses from); dense is on it when no profile dominates it;
    # the `also` profiles are measured for comparison only, never on it
    profiles = [p for r, p in zip(rows, points) if r["kind"] not in ("dense", "also")]
    keep = list(front_mask(profiles))
    for r, p in zip(rows, points):
        if r["kind"] == "also":
            r["on_front"] = False
        else:
            r["on_front"] = (not any(dominates(q, p) for q in profiles)) if r["kind"] == "dense" else bool(keep.pop(0))
        if r["kind"] == "dense":
            r["vs_dense"], r["vs_seed"] = "", verdict(p, seed) if seed is not None else ""
            continue
        r["vs_dense"] = versus_dense(p, dense, (r["latency_ratio"], r["latency_ratio_ci_low"], r["latency_ratio_ci_high"]))
        r["vs_seed"] = "" if seed is None or r["name"] in REFERENCE_SEEDS else verdict(p, seed)
