"""Model identity for profiles and caches: the name the user gave plus a hash of the architecture.

The hash covers only fields that define the architecture, so the same model loaded from
safetensors, from GGUF or in another dtype keeps its identity.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from typing import Any

_ARCH_FIELDS = (
    "model_type",
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "vocab_size",
    "hidden_act",
    "hidden_act_param",
)


@dataclass(frozen=True)
class ModelIdentity:
    name: str
    config_hash: str
    num_layers: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def config_hash(config: Any) -> str:
    """sha256 over the architecture fields of a transformers config (or a plain dict)."""
    raw = config if isinstance(config, dict) else config.to_dict()
    fields = {f: raw.get(f) for f in _ARCH_FIELDS}
    blob = json.dumps(fields, sort_keys=True, default=str).encode()
    return "sha256:" + hashlib.sha256(blob).hexdigest()[:16]
