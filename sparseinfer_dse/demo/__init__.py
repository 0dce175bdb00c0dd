"""Built-in demo model: a small ReLU Llama trained here on GSM8K-style arithmetic.

`checkpoint_dir()` is the shipped checkpoint (`--model demo` resolves to it), `card()` its
recipe, data, accuracy and per-layer decode sparsity, `heldout_path()` the shipped held-out
problems, `task_include_path()` the lm-eval task directory that defines `demo_arith`.
The problem generator is `data.py` (families in `families.py`), the lm-eval task `tasks.py`,
the training recipe the `train` package (imported on its own: it needs torch). No heavy imports here.
"""

from __future__ import annotations

from sparseinfer_dse.demo.shipped import card, checkpoint_dir, heldout_path
from sparseinfer_dse.demo.tasks import TASK_NAME, task_include_path

__all__ = ["TASK_NAME", "card", "checkpoint_dir", "heldout_path", "task_include_path"]
