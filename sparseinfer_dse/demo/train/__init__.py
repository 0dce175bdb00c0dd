"""The demo model's training recipe: a small ReLU Llama trained from scratch on `demo.data` problems.

`build(out_dir, recipe)` trains the tokenizer and the model, measures dense greedy accuracy and
per-layer ReLU sparsity at decode positions on the shipped held-out set, and writes a checkpoint
directory (config.json, model.safetensors, tokenizer files, generation_config.json, card.json).
Everything is seeded: the same recipe on the same torch build gives the same model (float
reductions can differ across thread counts and CPU kinds, so "the same quality", not bit-equal).

The package sits in the eval layer (it trains with transformers and scores with lm-eval):
`recipe` (hyperparameters, model config), `tokenizer`, `loop` (batches, loss, training),
`measure` (greedy generation, accuracy, decode sparsity, lm-eval), `checkpoint` (build, card).
"""

from __future__ import annotations

from sparseinfer_dse.demo.train.checkpoint import build, make_card, save_checkpoint
from sparseinfer_dse.demo.train.loop import train
from sparseinfer_dse.demo.train.measure import (
    decode_sparsity,
    evaluate,
    greedy_generate,
    lm_eval_accuracy,
    load_heldout,
)
from sparseinfer_dse.demo.train.recipe import Recipe, make_config
from sparseinfer_dse.demo.train.tokenizer import build_tokenizer, wrap_tokenizer

__all__ = [
    "Recipe", "build", "build_tokenizer", "decode_sparsity", "evaluate", "greedy_generate",
    "lm_eval_accuracy", "load_heldout", "make_card", "make_config", "save_checkpoint", "train",
    "wrap_tokenizer",
]
