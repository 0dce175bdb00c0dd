"""Offline copies of lm-eval's GSM8K and BBH tasks: same prompts, filters and metrics, local data.

lm-eval's built-in `gsm8k*` tasks read `openai/gsm8k` and the `bbh_*` tasks `SaylorTwift/bbh` from
the Hugging Face hub. With a data folder laid out like the shipped copy (`sparseinfer_dse.data`,
the default wherever a data folder is optional)

    DIR/gsm8k/train.jsonl  DIR/gsm8k/test.jsonl  DIR/bbh/<subtask>.json  ({"examples": [...]})

`offline_task_dir(DIR)` writes, for every such built-in task, a YAML with the same task name that
`include`s lm-eval's own file (by absolute path) and overrides only where the documents come from:

    include: /.../lm_eval/tasks/gsm8k/gsm8k.yaml
    dataset_path: json
    dataset_name: null
    dataset_kwargs: {data_files: {train: DIR/gsm8k/train.jsonl, test: DIR/gsm8k/test.jsonl}}

BBH files add `field: examples`. The groups (`bbh`, `bbh_cot_fewshot`, `bbh_zeroshot`...) are
`include`d unchanged; their members resolve to the offline tasks because the generated folder
is the TaskManager's include path (with `include_defaults=False`, or later in the index, which wins).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Iterable, Optional

import sparseinfer_dse.data
from sparseinfer_dse.errors import UserError

GENERATOR_VERSION = 1
GSM8K_HUB = "openai/gsm8k"
BBH_HUB = "SaylorTwift/bbh"
# lm-eval task folders that hold tasks on those two hub data sets
_SCAN_DIRS = ("gsm8k", "bbh")


def cache_root() -> Path:
    """Root of sparseinfer-dse's caches: $SPARSEINFER_DSE_CACHE, else ~/.cache/sparseinfer-dse."""
    env = os.environ.get("SPARSEINFER_DSE_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "sparseinfer-dse"


def lm_eval_tasks_dir() -> Path:
    import lm_eval.tasks

    return Path(lm_eval.tasks.__file__).resolve().parent


@dataclass(frozen=True)
class BuiltinTask:
    """One lm-eval task (or group) we can run from local files."""

    name: str
    kind: str  # "task" | "group"
    yaml_path: Path
    source: str  # "gsm8k" | "bbh"
    subset: Optional[str]  # bbh subtask file stem; None for gsm8k and groups
    members: tuple[str, ...] = ()  # for groups: member task names


def _load(path: Path) -> dict:
    from lm_eval.tasks._yaml_loader import load_yaml

    return load_yaml(path, resolve_func=False, recursive=True)


@lru_cache(maxsize=None)
def builtin_offline_tasks() -> dict[str, BuiltinTask]:
    """Every built-in task/group in lm-eval's gsm8k/ and bbh/ folders that reads GSM8K or BBH.

    Scanning takes a few seconds; the result is kept in the cache folder per lm-eval install."""
    import lm_eval

    root = lm_eval_tasks_dir()
    key = hashlib.sha256(json.dumps([str(root), lm_eval.__version__, GENERATOR_VERSION]).encode()).hexdigest()[:16]
    index = cache_root() / "lm_eval_tasks" / f"index-{key}.json"
    try:
        rows = json.loads(index.read_text())
        found = {r["name"]: BuiltinTask(r["name"], r["kind"], Path(r["yaml_path"]), r["source"], r["subset"],
                                        tuple(r["members"])) for r in rows}
        if all(t.yaml_path.is_file() for t in found.values()):
            return found
    except (OSError, ValueError, KeyError, TypeError):
        pass
    found = _scan(root)
    rows = [{"name": t.name, "kind": t.kind, "yaml_path": str(t.yaml_path), "source": t.source, "subset": t.subset,
             "members": list(t.members)} for t in found.values()]
    try:
        _write_atomic(index, json.dumps(rows, indent=1))
    except OSError:
        pass
    return found


def _scan(root: Path) -> dict[str, BuiltinTask]:
    found: dict[str, BuiltinTask] = {}
    groups: list[tuple[str, Path, list]] = []
    for sub in _SCAN_DIRS:
        for path in sorted((root / sub).glob("**/*.yaml")):
            if "__pycache__" in path.parts:
                continue
            try:
                cfg = _load(path)
            except Exception:  # a file lm-eval itself would skip
                continue
            if "group" in cfg:
                members = cfg.get("task") or []
                groups.append((str(cfg["group"]), path, members))
                continue
            name = cfg.get("task")
            if not isinstance(name, str) or "class" in cfg:
                continue
            ds = cfg.get("dataset_path")
            if ds == GSM8K_HUB and cfg.get("dataset_name", "main") == "main":
                found.setdefault(name, BuiltinTask(name, "task", path, "gsm8k", None))
            elif ds == BBH_HUB and isinstance(cfg.get("dataset_name"), str):
                found.setdefault(name, BuiltinTask(name, "task", path, "bbh", cfg["dataset_name"]))
    for gname, path, members in groups:
        names = tuple(m for m in members if isinstance(m, str))
        if names and len(names) == len(members) and all(m in found for m in names):
            source = found[names[0]].source
            found.setdefault(gname, BuiltinTask(gname, "group", path, source, None, names))
    return found


def leaf_tasks(name: str) -> list[str]:
    """The leaf tasks of an offline task or group name."""
    t = builtin_offline_tasks()[name]
    if t.kind == "task":
        return [name]
    out: list[str] = []
    for m in t.members:
        out.extend(leaf_tasks(m))
    return out


def data_files_for(task: BuiltinTask, data_dir: Optional[Path | str] = None) -> dict[str, Path]:
    """The local files one leaf task reads, by split (`data_dir` None: the shipped copy)."""
    data_dir = sparseinfer_dse.data.data_dir(data_dir)
    if task.source == "gsm8k":
        return {"train": data_dir / "gsm8k" / "train.jsonl", "test": data_dir / "gsm8k" / "test.jsonl"}
    return {"test": data_dir / "bbh" / f"{task.subset}.json"}


def _needed_splits(task: BuiltinTask) -> set[str]:
    cfg = _load(task.yaml_path)
    splits = {cfg.get("test_split") or "test"}
    for key in ("training_split", "fewshot_split", "validation_split"):
        if cfg.get(key):
            splits.add(cfg[key])
    return splits


def check_data_dir(data_dir: Optional[Path | str], names: Iterable[str]) -> None:
    """One-line UserError when a file the named offline tasks read is missing from `data_dir`
    (None: the shipped copy)."""
    data_dir = sparseinfer_dse.data.data_dir(data_dir)
    if not data_dir.is_dir():
        raise UserError(f"--data-dir {data_dir} is not a directory")
    known = builtin_offline_tasks()
    for name in names:
        if name not in known:
            continue
        for leaf in leaf_tasks(name):
            t = known[leaf]
            files = data_files_for(t, data_dir)
            for split in sorted(_needed_splits(t)):
                f = files.get(split)
                if f is None:
                    raise UserError(f"task {leaf} needs a {split!r} split, which {data_dir} cannot provide")
                if not f.is_file():
                    rel = f.relative_to(data_dir)
                    raise UserError(f"task {name} needs {rel} in --data-dir {data_dir}, which is missing")


def _task_yaml(task: BuiltinTask, data_dir: Path) -> dict:
    if task.kind == "group":
        return {"include": str(task.yaml_path)}
    files = data_files_for(task, data_dir)
    splits = _needed_splits(task)
    kwargs: dict = {"data_files": {s: str(files[s]) for s in sorted(splits) if s in files}}
    if task.source == "bbh":
        kwargs["field"] = "examples"
    return {
        "include": str(task.yaml_path),
        "task": task.name,
        "dataset_path": "json",
        "dataset_name": None,
        "dataset_kwargs": kwargs,
    }


def _write_atomic(path: Path, text: str) -> None:
    if path.is_file() and path.read_text() == text:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp.", suffix=".part")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def offline_task_dir(data_dir: Optional[Path | str] = None, out_root: Optional[Path | str] = None) -> Path:
    """Write (or reuse) the offline task YAMLs for `data_dir` (None: the shipped copy); returns the
    folder for include_path.

    The folder is `<cache>/lm_eval_tasks/<key>`, the key a hash of the data folder's absolute path,
    lm-eval's version and this generator's version. Only files whose data exist are written.
    """
    import lm_eval
    import yaml

    data_dir = sparseinfer_dse.data.data_dir(data_dir).resolve()
    if not data_dir.is_dir():
        raise UserError(f"--data-dir {data_dir} is not a directory")
    key_src = json.dumps([str(data_dir), lm_eval.__version__, GENERATOR_VERSION, str(lm_eval_tasks_dir())])
    key = hashlib.sha256(key_src.encode()).hexdigest()[:16]
    out = Path(out_root) if out_root is not None else cache_root() / "lm_eval_tasks"
    out = out / key
    known = builtin_offline_tasks()
    for t in known.values():
        if t.kind == "task" and not all(f.is_file() for f in data_files_for(t, data_dir).values()
                                        if f.name != "train.jsonl"):
            continue
        body = yaml.safe_dump(_task_yaml(t, data_dir), sort_keys=False, allow_unicode=True)
        header = f"# generated by sparseinfer_dse.eval.offline_tasks from {t.yaml_path.name}; do not edit\n"
        _write_atomic(out / t.source / f"{t.name}.yaml", header + body)
    return out
