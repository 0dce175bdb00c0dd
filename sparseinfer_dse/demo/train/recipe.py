"""The demo model's recipe: every hyperparameter of a build (`Recipe`) and the model config it defines.

The card stores `asdict(recipe)`, so `Recipe.from_dict(card["recipe"])` rebuilds the same model.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any


@dataclass
class Recipe:
    seed: int = 1234
    # model (LlamaForCausalLM, gated MLP with ReLU; head_dim = hidden_size / num_heads)
    hidden_size: int = 160
    intermediate_size: int = 576
    num_layers: int = 4
    num_heads: int = 5
    vocab_size: int = 1024
    max_position_embeddings: int = 512
    # optimisation
    steps: int = 2000
    batch_size: int = 32
    lr: float = 3e-3
    min_lr_ratio: float = 0.05
    warmup_steps: int = 60
    weight_decay: float = 0.1
    beta2: float = 0.98
    grad_clip: float = 1.0
    bos_prob: float = 0.5  # prepend <s> to half the examples: works whether a caller adds bos or not
    prompt_loss_weight: float = 1.0  # loss weight of question tokens (completion and </s> weigh 1)
    # tokenizer: byte-level BPE (digits split one per token) trained on this many train problems
    tokenizer_problems: int = 20000
    threads: int = 2
    # evaluation on the shipped held-out set (0 = all of it)
    eval_problems: int = 0
    eval_batch_size: int = 32
    eval_max_new_tokens: int = 160  # the lm-eval task's max_gen_toks
    eval_every: int = 0  # >0: quick greedy accuracy on 100 held-out problems every N steps (tuning)

    @classmethod
    def tiny(cls, **over: Any) -> "Recipe":
        """A few-second recipe for tests: a very small model, a handful of steps."""
        base = dict(hidden_size=32, intermediate_size=96, num_layers=2, num_heads=2, vocab_size=300,
                    steps=3, batch_size=4, warmup_steps=1, tokenizer_problems=300, eval_problems=8,
                    eval_batch_size=8, eval_max_new_tokens=12)
        base.update(over)
        return cls(**base)

    @classmethod
    def from_dict(cls, d: dict) -> "Recipe":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


def make_config(r: Recipe, vocab_size: int):
    """The LlamaConfig of the recipe's model (ReLU gated MLP, tied embeddings, ids <pad>=0 <s>=1 </s>=2)."""
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=vocab_size, hidden_size=r.hidden_size, intermediate_size=r.intermediate_size,
        num_hidden_layers=r.num_layers, num_attention_heads=r.num_heads, num_key_value_heads=r.num_heads,
        max_position_embeddings=r.max_position_embeddings, hidden_act="relu", tie_word_embeddings=True,
        rms_norm_eps=1e-5, initializer_range=0.02, bos_token_id=1, eos_token_id=2, pad_token_id=0,
        rope_theta=10000.0, attention_bias=False, mlp_bias=False, architectures=["LlamaForCausalLM"],
    )

