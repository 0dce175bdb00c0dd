"""Synthetic ProSparse-shaped models: Llama layers with 7B/13B dimensions and random weights whose
ReLU activation sparsity at decode is about 90% in every layer, for latency measurements.

ProSparse's ReLU-fied checkpoints may not be at hand (they are large, and an offline machine cannot
download them), so latency studies can use a model with the real per-layer shapes (`synthetic-7b`: d=4096, k=11008, 32 heads; `synthetic-13b`:
d=5120, k=13824, 40 heads; no GQA) but only a few layers (`synthetic-7b:L2` = 2 layers, default 4)
and a byte-level vocabulary of 259 tokens, so the lm_head is negligible and the MLP is about 2/3 of
the weight bytes read per token, as in the real model.

How the sparsity is built into the weights (never faked in a mask):

* the residual stream carries a persistent common direction `u`: every token embedding is
  `c * u + rho * noise`, and the attention and MLP output projections are small, so the input `x`
  of every MLP (after RMSNorm) has nearly the same sign pattern as `u` at every position;
* gate row `i` is `sigma * (z_i + mu_i * sign(u))` with `z_i` uniform noise; `mu_i < 0` for a
  fraction `sparse_rows` of the rows and `> 0` for the rest, with a margin drawn per row. Then
  `W_gate[i] . x` is about `N(sign(mu_i) * margin_i, 1)`: negative (ReLU gives 0) for ~90% of the
  rows, and the sign bits of `W_gate[i]` disagree with those of `x` more often than they agree, so
  SparseInfer's sign predictor (Eq. 2) sees the same sparsity. Rows with a small margin are the
  ones the predictor misses and actual sparsity catches, or that flip from token to token.

The weights are generated directly in the target dtype, in place, with uniform noise (fast: a few
seconds per 7B-shaped layer on 2 cores); nothing is saved or reloaded.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass
from typing import Any, Optional

import torch

from sparseinfer_dse.errors import UserError

# name -> (hidden size d, intermediate size k, attention heads); the real ProSparse-Llama2 shapes.
SHAPES: dict[str, tuple[int, int, int]] = {
    "synthetic-7b": (4096, 11008, 32),
    "synthetic-13b": (5120, 13824, 40),
}
DEFAULT_LAYERS = 4
SPECIAL_TOKENS = ("<pad>", "<s>", "</s>")
_NAME = re.compile(r"^(synthetic-[0-9a-z]+)(?::L(\d+))?$")


@dataclass(frozen=True)
class SyntheticRecipe:
    """The knobs of the weight construction (defaults give 85-92% ReLU sparsity per layer)."""

    common: float = 1.0  # amplitude c of the common direction u in every embedding
    token_noise: float = 0.4  # rho: per-token embedding noise (relative to c)
    sparse_rows: float = 0.9  # fraction of gate rows biased negative along u
    # per-row margin |E[W_gate[i] . x]| in units of its noise std, uniform in [lo, hi]: rows meant to
    # be sparse, and the others (a wider margin keeps the predictor's precision high, as in ProSparse)
    sparse_margin: tuple[float, float] = (2.0, 5.0)
    dense_margin: tuple[float, float] = (2.5, 5.0)
    residual_budget: float = 0.25  # rms added to the residual by all attention + MLP outputs together


def is_synthetic_name(name: str) -> bool:
    """True for `synthetic-7b`, `synthetic-13b:L2`... (whether or not the size is known)."""
    return bool(_NAME.match(name))


def parse_synthetic_name(name: str) -> tuple[str, Optional[int]]:
    """'synthetic-7b:L2' -> ('synthetic-7b', 2); 'synthetic-13b' -> ('synthetic-13b', None)."""
    m = _NAME.match(name)
    if not m or m.group(1) not in SHAPES:
        known = ", ".join(SHAPES)
        raise UserError(f"unknown synthetic model {name!r}: use one of {known}, optionally with :L<layers> (e.g. synthetic-7b:L2)")
    layers = int(m.group(2)) if m.group(2) is not None else None
    if layers is not None and layers < 1:
        raise UserError(f"{name}: the layer count must be at least 1")
    return m.group(1), layers


def build_tokenizer(max_length: int = 4096) -> Any:
    """A byte-level tokenizer (256 byte tokens + <pad> <s> </s>, BOS prepended): any text tokenizes."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {t: i for i, t in enumerate(SPECIAL_TOKENS)}
    vocab.update({ch: len(SPECIAL_TOKENS) + i for i, ch in enumerate(alphabet)})
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A $B", special_tokens=[("<s>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                                   model_max_length=max_length)


def synthetic_config(name: str = "synthetic-7b", *, layers: Optional[int] = None, d: Optional[int] = None,
                     k: Optional[int] = None, heads: Optional[int] = None, vocab_size: int = 259,
                     recipe: Optional[SyntheticRecipe] = None, seed: int = 0) -> Any:
    """The LlamaConfig of a synthetic model (`name` may carry `:L<n>`; `d`/`k`/`heads` override the shape)."""
    from transformers import LlamaConfig

    base, name_layers = parse_synthetic_name(name)
    if layers is not None and name_layers is not None and layers != name_layers:
        raise UserError(f"{name} asks for {name_layers} layers but layers={layers} was given")
    n = layers if layers is not None else (name_layers if name_layers is not None else DEFAULT_LAYERS)
    if n < 1:
        raise UserError(f"a synthetic model needs at least one layer, not {n}")
    d0, k0, h0 = SHAPES[base]
    d, k, heads = d or d0, k or k0, heads or h0
    if d % heads or (d // heads) % 2:
        raise UserError(f"hidden size {d} must split into {heads} heads of even size")
    cfg = LlamaConfig(
        vocab_size=vocab_size, hidden_size=d, intermediate_size=k, num_hidden_layers=n,
        num_attention_heads=heads, num_key_value_heads=heads, hidden_act="relu",
        max_position_embeddings=4096, rms_norm_eps=1e-5, tie_word_embeddings=False,
        pad_token_id=0, bos_token_id=1, eos_token_id=2,
    )
    cfg.architectures = ["LlamaForCausalLM"]
    cfg.sparseinfer_synthetic = {"name": base, "layers": n, "seed": seed, "recipe": asdict(recipe or SyntheticRecipe())}
    return cfg


def _uniform_(t: torch.Tensor, std: float, gen: torch.Generator) -> torch.Tensor:
    a = std * math.sqrt(3.0)
    return t.uniform_(-a, a, generator=gen)


@torch.no_grad()
def build_synthetic(name: str = "synthetic-7b", *, layers: Optional[int] = None, dtype: torch.dtype = torch.float32,
                    seed: int = 0, d: Optional[int] = None, k: Optional[int] = None, heads: Optional[int] = None,
                    recipe: Optional[SyntheticRecipe] = None) -> tuple[Any, Any]:
    """(LlamaForCausalLM on the CPU in eval mode, byte-level tokenizer) for `name` ('synthetic-7b[:Ln]').

    `layers` (default 4, or the `:L<n>` suffix), and `d`, `k`, `heads` override the shape (tests use
    small ones). Weights are generated in `dtype`, deterministically from `seed`. 4 layers of
    synthetic-7b take about 3.3 GB in float32, half that in bfloat16.
    """
    from transformers import LlamaForCausalLM
    from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding

    if dtype not in (torch.float32, torch.float16, torch.bfloat16):
        raise UserError(f"synthetic models are built in float32, float16 or bfloat16, not {dtype}")
    r = recipe or SyntheticRecipe()
    tok = build_tokenizer()
    cfg = synthetic_config(name, layers=layers, d=d, k=k, heads=heads, vocab_size=len(tok), recipe=r, seed=seed)
    cfg.dtype = dtype
    with torch.device("meta"):
        model = LlamaForCausalLM(cfg)
    model = model.to(dtype).to_empty(device="cpu")
    model.model.rotary_emb = LlamaRotaryEmbedding(cfg)  # its buffers were left uninitialised by to_empty
    d, k, n = cfg.hidden_size, cfg.intermediate_size, cfg.num_hidden_layers
    gen = torch.Generator().manual_seed(seed)

    u = torch.randn(d, generator=gen)
    sign_u = torch.where(u < 0, -1.0, 1.0)
    # E[sign(u_j) * x_j] for x = RMSNorm(c u + rho noise): the mean of a gate row's biased part per element
    kappa = r.common * math.sqrt(2 / math.pi) / math.sqrt(r.common**2 + r.token_noise**2)
    per_out = r.residual_budget / math.sqrt(2 * n)  # rms added by each attention / MLP output

    emb = model.model.embed_tokens.weight
    emb.copy_((r.common * u + r.token_noise * torch.randn(cfg.vocab_size, d, generator=gen)).to(dtype))
    _uniform_(model.lm_head.weight, d**-0.5, gen)
    model.model.norm.weight.fill_(1.0)
    active = 1.0 - r.sparse_rows
    # mean of relu(g)^2 * up^2 over all rows, g ~ N(margin, 1) on the active rows, up ~ N(0, 1)
    mean_margin = sum(r.dense_margin) / 2
    h3_sq = active * (mean_margin**2 + 1.0)
    for layer in model.model.layers:
        layer.input_layernorm.weight.fill_(1.0)
        layer.post_attention_layernorm.weight.fill_(1.0)
        att = layer.self_attn
        for proj in (att.q_proj, att.k_proj, att.v_proj):
            _uniform_(proj.weight, d**-0.5, gen)
        _uniform_(att.o_proj.weight, per_out / math.sqrt(d), gen)
        mlp = layer.mlp
        sparse = torch.rand(k, generator=gen) < r.sparse_rows
        lo = torch.where(sparse, r.sparse_margin[0], r.dense_margin[0])
        hi = torch.where(sparse, r.sparse_margin[1], r.dense_margin[1])
        margin = lo + (hi - lo) * torch.rand(k, generator=gen)
        mu = torch.where(sparse, -margin, margin) / (kappa * d)  # already times the row scale d**-0.5
        w = _uniform_(mlp.gate_proj.weight, d**-0.5, gen)
        w.addr_(mu.to(dtype), sign_u.to(dtype))
        _uniform_(mlp.up_proj.weight, d**-0.5, gen)
        _uniform_(mlp.down_proj.weight, per_out / math.sqrt(k * h3_sq), gen)
    model.eval()
    model.generation_config.pad_token_id = cfg.pad_token_id
    return model, tok


def weight_bytes(model: Any) -> dict[str, int]:
    """Bytes of the weights read per decoded token, split into MLP, attention and the rest."""
    out = {"mlp": 0, "attention": 0, "other": 0}
    for pname, p in model.named_parameters():
        part = "mlp" if ".mlp." in pname else "attention" if ".self_attn." in pname else "other"
        if pname.endswith("embed_tokens.weight"):
            continue  # one row is read per token
        out[part] += p.numel() * p.element_size()
    return out
