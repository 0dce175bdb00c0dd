"""The settings of one search, typed and checked, from flags, a study TOML and the defaults.

One precedence rule, written once in `SearchOptions.resolve`: a value given on the command line
wins over the study TOML, which wins over the built-in defaults (the demo model's own defaults
included, as in studies/demo.toml). Errors name the field (`OptionError`, errors.py); a front end
shows its own name for it (the CLI its flag).
"""

from __future__ import annotations

import tomllib
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Mapping, Optional

from sparseinfer_dse.engine.sparsify import BACKEND_CHOICES
from sparseinfer_dse.errors import OptionError, UserError
from sparseinfer_dse.engine.methods import METHODS, RANKED, SILU_METHODS
from sparseinfer_dse.search.spaces import LevelGrid, parse_level_grid, parse_rank_grid, parse_space

FIDELITIES = ("full", "proxy", "staged")
SAMPLERS = ("tpe", "nsga2", "gp", "random", "evo")
PROXY_METRICS = ("kl", "top1")

# The built-in demo's own study (as studies/demo.toml): what `search --model demo` runs when no flag
# or study file says otherwise, so the README's first command measures real task accuracy.
DEMO_DEFAULTS: dict[str, Any] = {"tasks": "demo_arith", "limit": 100, "alpha_range": "0.85:1.10"}


@dataclass(frozen=True)
class SearchOptions:
    """Every setting of `search`, one field per option (the study TOML's keys)."""

    model: str = "demo"
    budget: int = 20
    out: Optional[Path] = None
    name: str = "demo"
    storage: Optional[str] = None
    space: str = "per-layer"
    method: Optional[str] = None  # sparseinfer for ReLU models (and --decode-activation relu); else required
    alpha_range: str = "0.95:1.10"
    alpha_step: float = 0.01
    sparsity_range: str = "0.0:0.9"
    sparsity_step: float = 0.05
    rank_range: str = "0:64"  # rsparse: the per-layer rank grid of the low-rank remainder
    rank_step: int = 16
    sampler: str = "tpe"
    seed: int = 0
    fidelity: Optional[str] = None
    tasks: Optional[str] = None
    limit: Optional[int] = None
    num_fewshot: Optional[int] = None
    batch_size: int = 16
    data_dir: Optional[Path] = None
    calibration: Optional[str] = None
    calibration_samples: int = 32
    proxy_metric: str = "kl"
    latency_tokens: int = 16
    latency_prompts: int = 2
    latency_repeats: int = 5  # x latency_prompts paired runs: 10 gives the median a 97.9% interval x(2)..x(9)
    latency_fidelity: str = "measured"  # or "staged": predicted by the latency model, measured near the front
    latency_model_error: float = 0.1  # staged: the prediction's assumed relative error (its interval)
    timeout: Optional[float] = None
    backend: str = "auto"
    threads: Optional[int] = None
    gguf_file: Optional[str] = None
    device: str = "auto"
    dtype: str = "auto"
    decode_activation: Optional[str] = None
    report: bool = True
    verify: bool = True
    heartbeat_interval: int = 10
    grace_period: int = 30
    storage_outage_limit: float = 300.0

    # ---- the one precedence rule ---------------------------------------------------------------
    @classmethod
    def resolve(cls, given: Mapping[str, Any], study_file: Optional[Path] = None) -> "SearchOptions":
        """Flags actually given (`given`) > the study TOML > the defaults (demo's when no study file)."""
        table = read_study_file(study_file) if study_file is not None else {}
        values = {**table, **given}
        if study_file is None and values.get("model", cls.model) == "demo":
            demo = dict(DEMO_DEFAULTS)
            if values.get("fidelity") == "proxy":  # a proxy-only search measures no task accuracy
                del demo["tasks"], demo["limit"]
            values = {**demo, **values}
        return cls(**values)

    def __post_init__(self) -> None:
        self.validate()

    # ---- checks --------------------------------------------------------------------------------
    def validate(self) -> None:
        if self.budget < 1:
            raise OptionError("budget", "{budget} must be at least 1")
        if self.fidelity is not None and self.fidelity not in FIDELITIES:
            raise OptionError("fidelity", f"{{fidelity}} must be full, proxy or staged, not {self.fidelity!r}")
        if self.effective_fidelity in ("full", "staged") and not self.task_list:
            raise OptionError("tasks", f"{{fidelity}} {self.effective_fidelity} needs {{tasks}}")
        if self.sampler not in SAMPLERS:
            raise OptionError("sampler", f"{{sampler}} must be tpe, nsga2, gp, random or evo, not {self.sampler!r}")
        if self.backend not in BACKEND_CHOICES:
            raise OptionError("backend", f"{{backend}} must be one of {', '.join(BACKEND_CHOICES)}, not {self.backend!r}")
        if self.latency_fidelity not in ("measured", "staged"):
            raise OptionError("latency_fidelity", f"{{latency_fidelity}} must be measured or staged, not "
                              f"{self.latency_fidelity!r}")
        if not 0 <= self.latency_model_error < 1:
            raise OptionError("latency_model_error", "{latency_model_error} must be in [0, 1)")
        if self.proxy_metric not in PROXY_METRICS:
            raise OptionError("proxy_metric", f"{{proxy_metric}} must be kl or top1, not {self.proxy_metric!r}")
        if self.method is not None and self.method not in METHODS:
            raise OptionError("method", f"{{method}} must be one of {', '.join(METHODS)}, not {self.method!r}")
        parse_space(self.space)
        self.grid_for("sparseinfer")  # checks alpha_range and alpha_step
        self.grid_for(SILU_METHODS[0])  # checks sparsity_range and sparsity_step
        self.grid_for(RANKED[0])  # checks rank_range and rank_step
        for key in ("calibration_samples", "latency_tokens", "latency_prompts", "latency_repeats", "batch_size"):
            if getattr(self, key) < 1:
                raise OptionError(key, f"{{{key}}} must be at least 1")
        if self.limit is not None and self.limit < 1:
            raise OptionError("limit", "{limit} must be at least 1")
        if self.storage_outage_limit < 0:
            raise OptionError("storage_outage_limit", "{storage_outage_limit} must be 0 or more seconds")
        if self.threads is not None and self.threads < 1:
            raise OptionError("threads", "{threads} must be at least 1")

    def grid_for(self, method: str) -> LevelGrid:
        """The level grid of `method`: alpha_range/alpha_step or sparsity_range/sparsity_step (and
        rank_range/rank_step for a ranked method)."""
        if method == "sparseinfer":
            return parse_level_grid(self.alpha_range, self.alpha_step, method)
        grid = parse_level_grid(self.sparsity_range, self.sparsity_step, method)
        return parse_rank_grid(grid, self.rank_range, self.rank_step)

    def method_for(self, sparse_activation: bool, activation: str = "silu") -> str:
        """The method to search: as given, else sparseinfer where it applies (exact zeros, or the
        decode-time ReLU opt-in); a model without exact zeros and no method is a one-line error."""
        if self.method is not None:
            return self.method
        if sparse_activation or self.decode_activation == "relu":
            return "sparseinfer"
        raise OptionError("method", f"this model's MLP activation ({activation}) gives no exact zeros: choose a "
                          f"method with {{method}} {' / '.join(SILU_METHODS)} (activation sparsity for SiLU models), "
                          "or sparseinfer with --decode-activation relu (changes the model)")

    # ---- derived settings ----------------------------------------------------------------------
    @property
    def task_list(self) -> tuple[str, ...]:
        return tuple(t.strip() for t in (self.tasks or "").split(",") if t.strip())

    @property
    def effective_fidelity(self) -> str:
        """As given, else staged with tasks and proxy without."""
        return self.fidelity or ("staged" if self.task_list else "proxy")

    @property
    def out_dir(self) -> Path:
        return Path(self.out or default_out(self.name))

    @property
    def storage_url(self) -> str:
        return self.storage or f"sqlite:///{(self.out_dir / 'study.db').resolve()}"

    def study_identity(self, *, config_hash: str, dtype: str, space: str, method: str, thresholds: Optional[str],
                       device_kind: str, backend: str,
                       decode_activation: Optional[str], task_data: Mapping[str, str],
                       threads: Optional[int]) -> dict[str, Any]:
        """What must match to resume or join a study: everything that moves a trial's figures (the
        model, the space, the lm-eval settings and the digest of each task's data, the latency
        workload, the device, backend and CPU thread count, the method and its calibration)."""
        return {
            "model": self.model, "config_hash": config_hash, "dtype": dtype, "space": space,
            "fidelity": self.effective_fidelity, "tasks": list(self.task_list), "limit": self.limit,
            "num_fewshot": self.num_fewshot, "batch_size": self.batch_size, "task_data": dict(task_data),
            "proxy_metric": self.proxy_metric, "calibration": self.calibration,
            "calibration_samples": self.calibration_samples, "device_kind": device_kind, "backend": backend,
            "threads": threads, "decode_activation": decode_activation,
            "latency": [self.latency_tokens, self.latency_prompts, self.latency_repeats],
            # the calibrated methods' (a sparseinfer study's identity stays as studies made before methods)
            **({"method": method, "thresholds": thresholds} if method != "sparseinfer" else {}),
        }

    def measurement(self, *, backend: str, device: str, dtype: str, seed: int) -> dict[str, Any]:
        """How an lm-eval accuracy of this search is measured: recorded with every exported profile,
        so `eval --profile` measures the same way."""
        return {"tasks": list(self.task_list), "limit": self.limit, "num_fewshot": self.num_fewshot,
                "batch_size": self.batch_size, "backend": backend, "seed": seed,
                "data_dir": str(self.data_dir) if self.data_dir else None, "max_gen_toks": None,
                "device": device, "dtype": dtype, "decode_activation": self.decode_activation}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


OPTION_NAMES = tuple(f.name for f in fields(SearchOptions))


def default_out(name: str) -> Path:
    """Where a study named `name` writes by default (and where `status` looks for its database)."""
    return Path("studies") / "runs" / name


def read_study_file(path: Path) -> dict[str, Any]:
    """The `[search]` table of a study TOML (keys are the option names), paths as Path."""
    if not path.is_file():
        raise UserError(f"study file not found: {path}")
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"{path}: not valid TOML ({exc})") from None
    table = data.get("search", data)
    unknown = sorted(set(table) - set(OPTION_NAMES))
    if unknown:
        raise UserError(f"{path}: unknown keys {', '.join(unknown)} (use the search option names, e.g. alpha_range)")
    return {k: Path(v) if k in ("data_dir", "out") and v is not None else v for k, v in table.items()}
