"""Run lm-eval on a (sparsified) model object and boil the results down to one row per task.

`evaluate_tasks(model_or_handle, tokenizer, ["gsm8k", "bbh"], limit=..., data_dir=...)` wraps the
object in `HFLM(pretrained=model)`, so what lm-eval generates with is exactly the engine's model:
prefill dense, decode steps sparse with the handle's current profile (the torch backend batches
with a per-row mask). Each requested task (or group) is one `simple_evaluate` call, so its score
does not depend on which other tasks were asked for in the same run (lm-eval batches requests
across all tasks of a call, and batch composition moves scores). lm-eval's response cache is never
used (`use_cache=None`): its key has no model identity, so profiles would share answers.
"""

from __future__ import annotations

import difflib
import functools
import json
import logging
import math
import time
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence

from sparseinfer_dse.atomic import write_text
from sparseinfer_dse.demo import TASK_NAME, task_include_path
from sparseinfer_dse.engine.decode import model_of
from sparseinfer_dse.errors import UserError
from sparseinfer_dse.eval.items import item_scores, pack
from sparseinfer_dse.eval.offline_tasks import (builtin_offline_tasks, check_data_dir, lm_eval_tasks_dir,
                                               offline_task_dir)

DEFAULT_SEED = 1234
# preferred primary metric per result row, first match wins
PRIMARY_METRICS = (
    "exact_match,strict-match",
    "exact_match,get-answer",
    "exact_match,flexible-extract",
    "exact_match,none",
    "acc,none",
    "acc_norm,none",
)


def parse_tasks(text: str | Sequence[str]) -> list[str]:
    """'gsm8k, bbh' -> ['gsm8k', 'bbh'] (order kept, duplicates dropped)."""
    parts = text.split(",") if isinstance(text, str) else list(text)
    out: list[str] = []
    for p in (p.strip() for p in parts):
        if p and p not in out:
            out.append(p)
    if not out:
        raise UserError("--tasks is empty; name at least one task (e.g. gsm8k, bbh, demo_arith)")
    return out


def build_task_manager(tasks: Sequence[str], data_dir: Optional[Path | str] = None,
                       include_path: Sequence[Path | str] = ()) -> Any:
    """A TaskManager that knows every name in `tasks`, or a one-line UserError.

    gsm8k*/bbh* names run from `data_dir` (default: the shipped copy); `demo_arith` from the demo
    package; any other name needs lm-eval's built-in index (about 12 s to build) and, usually, the hub.
    """
    from lm_eval.tasks import TaskManager

    paths: list[str] = [str(p) for p in include_path]
    offline_known: set[str] = set()
    if TASK_NAME in tasks:
        paths.append(task_include_path())
        offline_known.add(TASK_NAME)
    builtin = builtin_offline_tasks()
    if data_dir is not None or any(t in builtin for t in tasks):
        check_data_dir(data_dir, tasks)
        paths.append(str(offline_task_dir(data_dir)))
        offline_known |= set(builtin)
    rest = [t for t in tasks if t not in offline_known]
    if rest:
        # building lm-eval's full index takes 12-30 s: first rule out names no task file mentions
        missing = _not_mentioned(rest, paths)
        if missing:
            near = difflib.get_close_matches(missing[0], sorted(set(builtin) | {TASK_NAME}), n=3)
            hint = f" (did you mean {', '.join(near)}?)" if near else ""
            raise UserError(f"unknown lm-eval task {missing[0]!r}{hint}")
    need_defaults = bool(rest)
    if not need_defaults:
        # include paths listed by the caller may define extra tasks: check them without the defaults
        tm = TaskManager(include_path=paths or None, include_defaults=False)
        if all(t in tm.all_tasks for t in tasks):
            return tm
    tm = TaskManager(include_path=paths or None, include_defaults=True)
    unknown = [t for t in tasks if t not in tm.all_tasks]
    if unknown:
        near = difflib.get_close_matches(unknown[0], tm.all_tasks, n=3)
        hint = f" (did you mean {', '.join(near)}?)" if near else ""
        raise UserError(f"unknown lm-eval task {unknown[0]!r}{hint}")
    return tm


def _not_mentioned(names: Sequence[str], extra_dirs: Sequence[str]) -> list[str]:
    """Names that appear in no task YAML of lm-eval or of `extra_dirs` (so surely unknown)."""
    left = {n: n.encode() for n in names}
    for root in [lm_eval_tasks_dir(), *map(Path, extra_dirs)]:
        for f in root.glob("**/*.yaml"):
            if not left:
                return []
            try:
                blob = f.read_bytes()
            except OSError:
                continue
            for n in [n for n, b in left.items() if b in blob]:
                del left[n]
    return [n for n in names if n in left]


def _number(v: Any) -> Optional[float]:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    v = float(v)
    return v if math.isfinite(v) else None


def _metrics_of(row: dict) -> dict[str, dict[str, Optional[float]]]:
    """{'exact_match,strict-match': {'value': .., 'stderr': ..}, ...} from one lm-eval results row."""
    out: dict[str, dict[str, Optional[float]]] = {}
    for key, val in row.items():
        if key in ("alias", "name", "sample_len", "samples") or "_stderr," in key:
            continue
        if _number(val) is None:
            continue
        name, _, flt = key.partition(",")
        out[key] = {"value": _number(val), "stderr": _number(row.get(f"{name}_stderr,{flt}"))}
    return out


def primary_metric(metrics: dict[str, Any]) -> Optional[str]:
    for m in PRIMARY_METRICS:
        if m in metrics:
            return m
    return next(iter(metrics), None)


def _row(results: dict, name: str, n: int, seconds: Optional[float] = None) -> dict:
    metrics = _metrics_of(results["results"].get(name, {}))
    key = primary_metric(metrics)
    row: dict[str, Any] = {
        "metric": key,
        "value": metrics[key]["value"] if key else None,
        "stderr": metrics[key]["stderr"] if key else None,
        "n": n,
        "metrics": metrics,
    }
    if seconds is not None:
        row["seconds"] = round(seconds, 2)
    return row


def _leaves(results: dict, name: str) -> list[str]:
    subs = results.get("group_subtasks", {})
    if not subs.get(name):
        return [name]
    out: list[str] = []
    for s in subs[name]:
        out.extend(_leaves(results, s))
    return out


def summarize(results: dict, name: str, seconds: Optional[float] = None) -> dict:
    """The row for one requested task or group; a group also gets a row per leaf under 'subtasks'."""
    nsamp = results.get("n-samples", {})

    def n_of(leaf: str) -> int:
        s = nsamp.get(leaf, {})
        return int(s.get("effective", s.get("original", 0)))

    leaves = _leaves(results, name)
    row = _row(results, name, sum(n_of(x) for x in leaves), seconds)
    items = item_scores(results, leaves, row["metric"])
    if items is not None:
        row["items"] = pack(items)  # per-document scores, for paired comparisons (eval/items.py)
    kinds = sorted({str(results.get("configs", {}).get(x, {}).get("output_type", "")) for x in leaves} - {""})
    if kinds:
        # only generate_until runs decode steps: loglikelihood scoring is one (dense) prefill pass
        row["output_type"] = ",".join(kinds)
    if leaves != [name]:
        row["subtasks"] = {x: _row(results, x, n_of(x)) for x in leaves}
    return row


@contextmanager
def _quiet_lm_eval(verbose: bool) -> Iterator[None]:
    if verbose:
        yield
        return
    import lm_eval.evaluator as evaluator

    loggers = [logging.getLogger(n) for n in ("lm_eval", "lm-eval", "lm_eval.evaluator", "lm_eval.models.huggingface")]
    old = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    # lm-eval records the git commit of the working directory by running `git describe`, which prints
    # "fatal: not a git repository" to the terminal outside one; the results do not need it
    git_hash = getattr(evaluator, "get_git_commit_hash", None)
    if git_hash is not None:
        evaluator.get_git_commit_hash = lambda: None
    # its per-document "building requests" bar: the caller shows its own progress
    import lm_eval.api.task as task_module

    task_bar = getattr(task_module, "tqdm", None)
    if task_bar is not None:
        task_module.tqdm = functools.partial(task_bar, disable=True)
    try:
        yield
    finally:
        for lg, lvl in zip(loggers, old):
            lg.setLevel(lvl)
        if git_hash is not None:
            evaluator.get_git_commit_hash = git_hash
        if task_bar is not None:
            task_module.tqdm = task_bar


def _quiet_hflm() -> type:
    """HFLM without its per-request progress bars (the caller shows its own progress)."""
    from lm_eval.models.huggingface import HFLM

    class QuietHFLM(HFLM):
        def generate_until(self, requests, disable_tqdm: bool = False):  # noqa: ANN001 - lm-eval's signature
            return super().generate_until(requests, disable_tqdm=True)

        def loglikelihood(self, requests, disable_tqdm: bool = False):  # noqa: ANN001
            return super().loglikelihood(requests, disable_tqdm=True)

        def loglikelihood_rolling(self, requests, disable_tqdm: bool = False):  # noqa: ANN001
            return super().loglikelihood_rolling(requests, disable_tqdm=True)

    return QuietHFLM


@contextmanager
def _task_controls_length(model: Any) -> Iterator[None]:
    """Let the task's max_gen_toks decide: a checkpoint's generation_config.max_new_tokens would win
    over the max_length lm-eval passes to generate(), so it is unset for the evaluation."""
    gc = getattr(model, "generation_config", None)
    saved = getattr(gc, "max_new_tokens", None)
    if saved is not None:
        gc.max_new_tokens = None
    try:
        yield
    finally:
        if saved is not None:
            gc.max_new_tokens = saved


def _friendly(exc: BaseException, task: str) -> Optional[str]:
    text = f"{type(exc).__name__}: {exc}"
    low = text.lower()
    if any(s in low for s in ("offline", "couldn't reach", "connection", "hub", "not find dataset", "datasetnotfound")):
        return (f"task {task}: its data set could not be loaded ({text.splitlines()[0][:160]}); offline, run "
                "a task whose data is local (gsm8k*, bbh*, demo_arith)")
    return None


def run_lm_eval(model: Any, tokenizer: Any, task: str, *, task_manager: Any, limit: Optional[int],
                num_fewshot: Optional[int], batch_size: int, seed: int,
                gen_kwargs: Optional[dict] = None, log_samples: bool = False, verbose: bool = False) -> dict:
    """One `simple_evaluate` call on one task/group with the given model object; lm-eval's raw results."""
    import lm_eval
    from lm_eval.models.huggingface import HFLM

    with _quiet_lm_eval(verbose), _task_controls_length(model):
        lm = (HFLM if verbose else _quiet_hflm())(pretrained=model, tokenizer=tokenizer, batch_size=batch_size)
        try:
            res = lm_eval.simple_evaluate(
                model=lm, tasks=[task], task_manager=task_manager, limit=limit, num_fewshot=num_fewshot,
                batch_size=batch_size, use_cache=None, cache_requests=False, log_samples=log_samples,
                gen_kwargs=dict(gen_kwargs) if gen_kwargs else None,
                random_seed=seed, numpy_random_seed=seed, torch_random_seed=seed, fewshot_random_seed=seed,
            )
        except UserError:
            raise
        except Exception as exc:  # noqa: BLE001 - turn data-loading failures into one line
            msg = _friendly(exc, task)
            if msg:
                raise UserError(msg) from None
            raise
    if res is None:
        raise RuntimeError("lm-eval returned no results (not rank 0?)")
    return res


def write_results(res: dict, out_dir: Path | str) -> Path:
    """lm-eval's results JSON (samples apart) and one samples_<task>.jsonl per leaf task."""
    from lm_eval.utils import handle_non_serializable

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    samples = res.get("samples") or {}
    body = {k: v for k, v in res.items() if k != "samples"}
    write_text(out / "results.json", json.dumps(body, indent=2, default=handle_non_serializable, ensure_ascii=False) + "\n")
    for task_name, rows in samples.items():
        with open(out / f"samples_{task_name}.jsonl", "w", encoding="utf-8") as f:
            for r in rows:
                f.write(json.dumps(r, default=handle_non_serializable, ensure_ascii=False) + "\n")
    return out


def evaluate_tasks(handle_or_model: Any, tokenizer: Any, tasks: Sequence[str] | str, limit: Optional[int] = None,
                   num_fewshot: Optional[int] = None, batch_size: int = 1, data_dir: Optional[Path | str] = None,
                   seed: int = DEFAULT_SEED, *, out_dir: Optional[Path | str] = None, dense: bool = False,
                   gen_kwargs: Optional[dict] = None, task_manager: Any = None, verbose: bool = False,
                   raw: Optional[dict] = None) -> dict[str, dict]:
    """Evaluate the model as it is now (a SparsifiedModel runs its current profile) on each task.

    Returns {task: {metric, value, stderr, n, metrics, seconds, items[, subtasks]}} with `value` and
    `stderr` as fractions (0..1) and `items` the per-document scores (eval/items.py `pack`). `dense=True` runs a SparsifiedModel with the engine switched off
    (the original MLPs). `out_dir` receives lm-eval's results JSON and samples per task
    (`out_dir/<task>/`). `raw`, if given, is filled with lm-eval's full results per task.
    """
    names = parse_tasks(tasks)
    if task_manager is None:
        task_manager = build_task_manager(names, data_dir)
    model = model_of(handle_or_model)
    switch = handle_or_model.options_set(enabled=False) if dense and hasattr(handle_or_model, "options_set") else nullcontext()
    out: dict[str, dict] = {}
    with switch:
        for name in names:
            t0 = time.perf_counter()
            res = run_lm_eval(model, tokenizer, name, task_manager=task_manager, limit=limit, num_fewshot=num_fewshot,
                              batch_size=batch_size, seed=seed, gen_kwargs=gen_kwargs,
                              log_samples=True, verbose=verbose)
            secs = time.perf_counter() - t0
            out[name] = summarize(res, name, secs)
            if out_dir is not None:
                write_results(res, Path(out_dir) / name)
            if raw is not None:
                raw[name] = res
    return out


# ---- what a task is scored by, known before anything runs ---------------------------------------
GENERATE_UNTIL = "generate_until"


def task_output_types(names: Sequence[str], task_manager: Any) -> dict[str, str]:
    """Each requested task's lm-eval `output_type` (a group: each of its leaf tasks'), read from the
    TaskManager's task configs without building a task, so a search can refuse before its first trial.

    A leaf inside a group is keyed `group::task` only when the group defines it inline."""
    index = task_manager.task_index
    out: dict[str, str] = {}
    for name in names:
        if name not in index:
            raise UserError(f"unknown lm-eval task {name!r}")
        _collect_types(index, name, None, out)
    return out


def _collect_types(index: dict, name: str, forced: Optional[str], out: dict[str, str]) -> None:
    """Walk a task, tag or group; `forced` is an output_type set on the way down (lm-eval overrides)."""
    entry = index[name]
    kind = getattr(entry.kind, "name", str(entry.kind))
    cfg = entry.cfg or {}
    if kind == "TAG":
        for task in sorted(entry.tags):
            _collect_types(index, task, forced, out)
    elif kind == "GROUP":
        for item in cfg.get("task") or []:
            _collect_member(index, name, item, forced or cfg.get("output_type"), out)
    else:
        out[name] = forced or _own_output_type(entry)


def _collect_member(index: dict, group: str, item: Any, forced: Optional[str], out: dict[str, str]) -> None:
    """One entry of a group's `task:` list: a name, `{task: name, ...}` or `{group: name, task: [...]}`."""
    if isinstance(item, str):
        item = {"task": item}
    if not isinstance(item, dict):
        return
    forced = item.get("output_type") or forced  # an item's own override wins, as in lm-eval
    if "group" in item:
        if item["group"] in index:
            _collect_types(index, item["group"], forced, out)
        else:  # an inline group
            for sub in item.get("task") or []:
                _collect_member(index, f"{group}::{item['group']}", sub, forced, out)
    elif "task" in item:
        if item["task"] in index:
            _collect_types(index, item["task"], forced, out)
        else:  # an inline task: its config is the item itself
            out[f"{group}::{item['task']}"] = forced or GENERATE_UNTIL


def _own_output_type(entry: Any) -> str:
    """A task config's output_type; TaskConfig's default (generate_until) when it sets none; a Python
    task (`class:`) declares it on its class."""
    cfg = entry.cfg or {}
    if cfg.get("output_type"):
        return str(cfg["output_type"])
    if "class" in cfg and entry.yaml_path is not None:
        from lm_eval.tasks._yaml_loader import load_yaml

        try:
            cls = load_yaml(entry.yaml_path, resolve_func=True).get("class")
        except Exception:  # noqa: BLE001 - an unloadable class: its type is unknown, not an error here
            return "unknown"
        return str(getattr(cls, "OUTPUT_TYPE", None) or "unknown")
    return GENERATE_UNTIL


def require_generate_until(names: Sequence[str], task_manager: Any) -> dict[str, str]:
    """Raise a one-line UserError for the first task not scored by generation: only decode steps run
    sparse, so a log-likelihood score cannot move with the profile. Returns the output types."""
    types = task_output_types(names, task_manager)
    for task, kind in types.items():
        if kind == "unknown":
            raise UserError(f"task {task}: its output_type could not be read from its config (a Python task "
                            "whose class does not load); search needs generate_until tasks (gsm8k, bbh, demo_arith)")
        if kind != GENERATE_UNTIL:
            raise UserError(f"task {task} is scored by log-likelihood (output_type {kind}): that is one prefill "
                            "pass, which runs dense, so no alpha profile can change its score; search needs "
                            "generate_until tasks (gsm8k, bbh, demo_arith)")
    return types
