"""Dense baselines on disk, so a search evaluates the dense model once per setting.

A baseline is keyed by everything that changes its score: the model (name, architecture hash,
a fingerprint of the weights, dtype, device kind, decode activation), the tokenizer, the task and
the digest of its local data files, limit, few-shot, batch size, seed, generation overrides, and
the versions of lm-eval, transformers and torch. Change any of them and the key changes.

Layout: `<root>/<digest[:2]>/<digest>.json` holding the key and the task's result row; root is
`$SPARSEINFER_DSE_CACHE/baselines` (default `~/.cache/sparseinfer-dse/baselines`).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path
from typing import Any, Optional, Sequence

import torch

from sparseinfer_dse.demo import TASK_NAME, heldout_path
from sparseinfer_dse.engine.sparse_mlp import SparseMLP
from sparseinfer_dse.eval.harness import build_task_manager, evaluate_tasks, parse_tasks
from sparseinfer_dse.eval.offline_tasks import builtin_offline_tasks, cache_root, data_files_for, leaf_tasks
from sparseinfer_dse.models.identity import config_hash

SCHEMA = 2  # 2: rows carry per-document `items` (paired comparisons)


def baseline_dir() -> Path:
    return cache_root() / "baselines"


# ---------------------------------------------------------------------------------------------
# fingerprints


def weights_fingerprint(model: torch.nn.Module, samples_per_tensor: int = 4096) -> str:
    """sha256 over every parameter's name, shape, dtype and up to `samples_per_tensor` evenly strided
    values: cheap on a 7B model, and different for any two trained (or differently seeded) models."""
    h = hashlib.sha256()
    with torch.no_grad():
        for name, p in model.named_parameters():
            name = name.replace(".original.", ".")  # a sparsified model keeps each MLP under .original
            if p.device.type == "meta":
                h.update(f"{name}:{tuple(p.shape)}:{p.dtype}:meta".encode())
                continue
            flat = p.detach().reshape(-1)
            step = max(1, flat.numel() // samples_per_tensor)
            vals = flat[::step][:samples_per_tensor].to("cpu", torch.float32).contiguous()
            h.update(f"{name}:{tuple(p.shape)}:{p.dtype}".encode())
            h.update(vals.numpy().tobytes())
    return "sha256:" + h.hexdigest()[:20]


def tokenizer_fingerprint(tokenizer: Any) -> str:
    if tokenizer is None:
        return "none"
    parts = [type(tokenizer).__name__, str(len(tokenizer))]
    for attr in ("bos_token_id", "eos_token_id", "pad_token_id", "padding_side"):
        parts.append(f"{attr}={getattr(tokenizer, attr, None)}")
    try:
        sample = tokenizer("Question: 12 + 30 = 42. The answer is 42.\nA:")["input_ids"]
        parts.append(",".join(map(str, sample)))
    except Exception:  # noqa: BLE001 - fingerprint only
        pass
    return "sha256:" + hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


@lru_cache(maxsize=256)
def _file_digest(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


def file_digest(path: Path) -> str:
    st = path.stat()
    return _file_digest(str(path), st.st_size, st.st_mtime_ns)


def task_data_digest(task: str, data_dir: Optional[Path | str]) -> str:
    """Digest of the local files a task reads (gsm8k/bbh from data_dir, default the shipped copy;
    demo_arith's JSONL); 'hub' else."""
    files: list[Path] = []
    if task == TASK_NAME:
        files = [Path(heldout_path())]
    elif task in builtin_offline_tasks():
        known = builtin_offline_tasks()
        for leaf in leaf_tasks(task):
            files.extend(f for f in data_files_for(known[leaf], data_dir).values() if f.is_file())
    if not files:
        return "hub"
    parts = sorted(f"{f.name}:{file_digest(f)}" for f in set(files))
    return "sha256:" + hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


def _versions() -> dict[str, str]:
    import lm_eval
    import transformers

    return {"lm_eval": lm_eval.__version__, "transformers": transformers.__version__, "torch": torch.__version__}


# ---------------------------------------------------------------------------------------------
# the key


@dataclass(frozen=True)
class BaselineKey:
    model: str
    config_hash: str
    weights: str
    tokenizer: str
    dtype: str
    device: str
    decode_activation: Optional[str]
    task: str
    data: str
    limit: Optional[int]
    num_fewshot: Optional[int]
    batch_size: int
    seed: int
    gen_kwargs: str
    lm_eval: str
    transformers: str
    torch: str
    schema: int = SCHEMA

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def digest(self) -> str:
        blob = json.dumps(self.to_dict(), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:32]


@dataclass(frozen=True)
class ModelFacts:
    """What of the model goes into a baseline key (computed once per loaded model)."""

    name: str
    config_hash: str
    weights: str
    tokenizer: str
    dtype: str
    device: str
    decode_activation: Optional[str]

    @classmethod
    def of(cls, target: Any, tokenizer: Any = None, *, name: Optional[str] = None,
           decode_activation: Optional[str] = None) -> "ModelFacts":
        """From a LoadedModel (preferred: its identity), a SparsifiedModel or a transformers model."""
        model = target if isinstance(target, torch.nn.Module) else target.model
        ident = getattr(target, "identity", None)
        spec = getattr(target, "spec", None)
        if tokenizer is None:
            tokenizer = getattr(target, "tokenizer", None)
        if decode_activation is None and spec is not None:
            decode_activation = spec.decode_activation
        p = next(model.parameters())
        return cls(
            name=name or (ident.name if ident else str(getattr(model.config, "_name_or_path", type(model).__name__))),
            config_hash=ident.config_hash if ident else config_hash(model.config),
            weights=weights_fingerprint(model),
            tokenizer=tokenizer_fingerprint(tokenizer),
            dtype=str(p.dtype).replace("torch.", ""),
            device=p.device.type,
            decode_activation=decode_activation,
        )


def baseline_key(facts: ModelFacts, task: str, *, limit: Optional[int], num_fewshot: Optional[int], batch_size: int,
                 seed: int, data_dir: Optional[Path | str] = None, gen_kwargs: Optional[dict] = None) -> BaselineKey:
    v = _versions()
    return BaselineKey(
        model=facts.name, config_hash=facts.config_hash, weights=facts.weights, tokenizer=facts.tokenizer,
        dtype=facts.dtype, device=facts.device, decode_activation=facts.decode_activation,
        task=task, data=task_data_digest(task, data_dir), limit=limit, num_fewshot=num_fewshot,
        batch_size=int(batch_size), seed=int(seed), gen_kwargs=json.dumps(gen_kwargs or {}, sort_keys=True),
        lm_eval=v["lm_eval"], transformers=v["transformers"], torch=v["torch"],
    )


# ---------------------------------------------------------------------------------------------
# the store


class BaselineCache:
    def __init__(self, root: Optional[Path | str] = None) -> None:
        self.root = Path(root) if root is not None else baseline_dir()

    def path(self, key: BaselineKey) -> Path:
        d = key.digest
        return self.root / d[:2] / f"{d}.json"

    def get(self, key: BaselineKey) -> Optional[dict]:
        p = self.path(key)
        if not p.is_file():
            return None
        try:
            data = json.loads(p.read_text())
        except (OSError, json.JSONDecodeError):
            return None
        if data.get("key") != key.to_dict():
            return None
        return data.get("result")

    def put(self, key: BaselineKey, result: dict) -> Path:
        p = self.path(key)
        p.parent.mkdir(parents=True, exist_ok=True)
        body = {"key": key.to_dict(), "result": result,
                "created": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=".tmp.", suffix=".json")
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps(body, indent=2) + "\n")
        os.replace(tmp, p)
        return p


def dense_baseline(target: Any, tokenizer: Any, tasks: Sequence[str] | str, limit: Optional[int] = None,
                   num_fewshot: Optional[int] = None, batch_size: int = 1, data_dir: Optional[Path | str] = None,
                   seed: int = 1234, *, handle: Any = None, facts: Optional[ModelFacts] = None,
                   cache: Optional[BaselineCache] = None, refresh: bool = False, use_cache: bool = True,
                   out_dir: Optional[Path | str] = None, gen_kwargs: Optional[dict] = None, task_manager: Any = None,
                   verbose: bool = False) -> dict[str, dict]:
    """The dense model's rows for `tasks` (see harness.evaluate_tasks), from the cache when possible.

    `target` is a LoadedModel (best: its identity names the model) or a model; `handle`, if the
    model is already sparsified, is used with its engine switched off (the original MLPs run).
    Every row gets `cached: True/False` and `key` (the cache digest).
    """
    names = parse_tasks(tasks)
    if handle is None:
        model = target if isinstance(target, torch.nn.Module) else target.model
        if any(isinstance(m, SparseMLP) for m in model.modules()):
            raise ValueError("the model is sparsified: pass its SparsifiedModel as handle= so the baseline runs dense")
    facts = facts or ModelFacts.of(target, tokenizer)
    store = cache or BaselineCache()
    out: dict[str, dict] = {}
    todo: list[tuple[str, BaselineKey]] = []
    for name in names:
        key = baseline_key(facts, name, limit=limit, num_fewshot=num_fewshot, batch_size=batch_size, seed=seed,
                           data_dir=data_dir, gen_kwargs=gen_kwargs)
        hit = store.get(key) if use_cache and not refresh else None
        if hit is not None:
            out[name] = {**hit, "cached": True, "key": key.digest}
        else:
            todo.append((name, key))
    if todo:
        runner = handle if handle is not None else target
        tm = task_manager or build_task_manager([n for n, _ in todo], data_dir)
        rows = evaluate_tasks(runner, tokenizer, [n for n, _ in todo], limit, num_fewshot, batch_size, data_dir, seed,
                              out_dir=out_dir, dense=True, gen_kwargs=gen_kwargs, task_manager=tm, verbose=verbose)
        for name, key in todo:
            row = rows[name]
            if use_cache:
                store.put(key, row)
            out[name] = {**row, "cached": False, "key": key.digest}
    return {n: out[n] for n in names}
