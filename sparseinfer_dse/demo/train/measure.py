"""Measuring a demo model: greedy exact-match accuracy, decode-time ReLU sparsity, lm-eval's `demo_arith`.

Greedy decoding uses the lm-eval prompt format and stop strings, and answers are scored with
gsm8k's strict-match rules, so `evaluate` and `lm_eval_accuracy` agree on what counts as right.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Optional, Sequence

import torch

from sparseinfer_dse.demo import TASK_NAME, heldout_path, task_include_path
from sparseinfer_dse.demo import data as D
from sparseinfer_dse.engine.layer_stats import continuation_sparsity

STOP_STRINGS = ("\n\n", "Question:")  # the lm-eval task's `until`, plus eos


def _normalize(ans: Optional[str]) -> Optional[str]:
    """gsm8k's exact_match normalisation of the extracted number (drop ',', '$', a trailing '.')."""
    if ans is None:
        return None
    ans = ans.replace(",", "").replace("$", "")
    return ans[:-1] if ans.endswith(".") else ans


def _cut(text: str) -> str:
    for s in STOP_STRINGS:
        i = text.find(s)
        if i >= 0:
            text = text[:i]
    return text


@torch.no_grad()
def greedy_generate(model, hf_tok, prompts: Sequence[str], batch_size: int = 32,
                    max_new_tokens: int = 160, progress: Optional[Callable[[int], None]] = None):
    """Greedy continuations (token id lists, eos excluded, and decoded text cut at the stops)."""
    model.eval()
    eos = hf_tok.eos_token_id
    out_ids: list[list[int]] = []
    out_text: list[str] = []
    for i in range(0, len(prompts), batch_size):
        chunk = list(prompts[i: i + batch_size])
        enc = hf_tok(chunk, return_tensors="pt", padding=True, add_special_tokens=False)
        gen = model.generate(
            input_ids=enc["input_ids"], attention_mask=enc["attention_mask"], do_sample=False,
            max_new_tokens=max_new_tokens, eos_token_id=eos, pad_token_id=hf_tok.pad_token_id,
        )
        for row in gen[:, enc["input_ids"].shape[1]:].tolist():
            if eos in row:
                row = row[: row.index(eos)]
            out_ids.append(row)
            out_text.append(_cut(hf_tok.decode(row, skip_special_tokens=True)))
        if progress:
            progress(len(chunk))
    return out_ids, out_text


def decode_sparsity(model, hf_tok, prompts: Sequence[str], continuations: Sequence[Sequence[int]]) -> list[float]:
    """Per-layer fraction of exact zeros in act_fn(gate) at the decode positions of the model's own
    greedy continuations (the engine's collector, teacher-forced; NaN for a layer that saw none)."""
    samples = [(hf_tok(p, add_special_tokens=False)["input_ids"], list(c)) for p, c in zip(prompts, continuations)]
    return [r["relu_sparsity"] if r["tokens"] else float("nan") for r in continuation_sparsity(model, samples)]


def evaluate(model, hf_tok, problems: Sequence[dict], batch_size: int = 32,
             progress: Optional[Callable[[int], None]] = None, sparsity: bool = True,
             max_new_tokens: int = 160) -> dict:
    """Dense greedy exact-match accuracy (gsm8k strict-match rules) and decode sparsity per layer."""
    prompts = [D.format_prompt(p["question"]) for p in problems]
    ids, texts = greedy_generate(model, hf_tok, prompts, batch_size=batch_size, progress=progress,
                                 max_new_tokens=max_new_tokens)
    correct = [
        _normalize(D.extract_answer(t)) == _normalize(D.extract_answer(p["answer"]))
        for t, p in zip(texts, problems)
    ]
    n = len(correct)
    acc = sum(correct) / n if n else float("nan")
    res = {
        "n": n,
        "accuracy": acc,
        "stderr": math.sqrt(acc * (1 - acc) / (n - 1)) if n > 1 else float("nan"),
        "first_40_accuracy": sum(correct[:40]) / min(40, n) if n else float("nan"),
        "mean_generated_tokens": sum(map(len, ids)) / n if n else float("nan"),
    }
    if sparsity:
        sp = decode_sparsity(model, hf_tok, prompts, ids)
        res["decode_sparsity_per_layer"] = [round(s, 4) for s in sp]
        res["decode_sparsity_mean"] = round(sum(sp) / len(sp), 4)
    return res


def load_heldout(limit: int = 0) -> list[dict]:
    """The shipped held-out rows (the first `limit`; 0: all)."""
    rows = D.read_jsonl(heldout_path())
    return rows[:limit] if limit else rows


def lm_eval_accuracy(model: Any, tokenizer: Any, *, limit: Optional[int] = None, batch_size: int = 16) -> dict:
    """Run `demo_arith` through lm-eval (HFLM on the given model object); strict-match accuracy."""
    import lm_eval
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size)
    tm = TaskManager(include_path=task_include_path(), include_defaults=False)
    res = lm_eval.simple_evaluate(model=lm, tasks=[TASK_NAME], task_manager=tm, limit=limit,
                                  num_fewshot=None, log_samples=False, bootstrap_iters=0)
    r = res["results"][TASK_NAME]
    acc = float(r["exact_match,strict-match"])
    n = int(res["n-samples"][TASK_NAME]["effective"])
    se = r.get("exact_match_stderr,strict-match")
    if not isinstance(se, (int, float)):
        se = math.sqrt(acc * (1 - acc) / (n - 1)) if n > 1 else float("nan")
    return {"accuracy": acc, "stderr": float(se), "n": n, "batch_size": batch_size,
            "filter": "strict-match", "lm_eval": lm_eval.__version__}
