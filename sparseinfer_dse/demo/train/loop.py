"""The training loop: length-bucketed batches of generated problems, the weighted loss, AdamW + cosine.

Seeded end to end: the tokenizer corpus, the training stream and the batch order each come
from their own seed derived from `Recipe.seed`.
"""

from __future__ import annotations

import json
import math
import random
import time
from typing import Callable, Optional, Sequence

import torch

from sparseinfer_dse.demo import data as D
from sparseinfer_dse.demo.train.measure import evaluate, load_heldout
from sparseinfer_dse.demo.train.recipe import Recipe, make_config
from sparseinfer_dse.demo.train.tokenizer import build_tokenizer, wrap_tokenizer


def _training_text(p: D.Problem) -> tuple[str, str]:
    """(prompt, completion): the completion starts with the space after 'Answer:'."""
    return D.format_prompt(p.question), " " + p.answer


def _lr_at(step: int, r: Recipe) -> float:
    if step < r.warmup_steps:
        return r.lr * (step + 1) / r.warmup_steps
    t = (step - r.warmup_steps) / max(1, r.steps - r.warmup_steps)
    return r.lr * (r.min_lr_ratio + (1 - r.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, t))))


def _batch(problems: Sequence[D.Problem], tok, rng: random.Random, bos_prob: float):
    """Right-padded input ids, labels (-100 on padding) and 0/1 completion flags per label."""
    prompts = tok.encode_batch([_training_text(p)[0] for p in problems])
    comps = tok.encode_batch([_training_text(p)[1] for p in problems])
    seqs, labs, flags = [], [], []
    for pe, ce in zip(prompts, comps):
        pre = [1] if rng.random() < bos_prob else []
        seqs.append(pre + pe.ids + ce.ids + [2])
        labs.append([-100] * len(pre) + pe.ids + ce.ids + [2])
        flags.append([0] * (len(pre) + len(pe.ids)) + [1] * (len(ce.ids) + 1))
    n = max(map(len, seqs))
    x = torch.zeros((len(seqs), n), dtype=torch.long)
    y = torch.full((len(seqs), n), -100, dtype=torch.long)
    c = torch.zeros((len(seqs), n), dtype=torch.bool)
    for i, (s, l, f) in enumerate(zip(seqs, labs, flags)):
        x[i, : len(s)] = torch.tensor(s)
        y[i, : len(l)] = torch.tensor(l)
        c[i, : len(f)] = torch.tensor(f, dtype=torch.bool)
    return x, y, c


def _loss(model, x: torch.Tensor, y: torch.Tensor, comp: torch.Tensor, prompt_weight: float):
    """Next-token cross-entropy (weighted mean; question tokens weigh `prompt_weight`), and the
    completion-only loss for the log. The LM head runs on labelled positions only."""
    hidden = model.model(input_ids=x, use_cache=False).last_hidden_state[:, :-1]
    target, c = y[:, 1:], comp[:, 1:]
    keep = target != -100
    if prompt_weight == 0:
        keep = keep & c
    logits = model.lm_head(hidden[keep])
    nll = torch.nn.functional.cross_entropy(logits.float(), target[keep], reduction="none")
    ck = c[keep]
    w = torch.where(ck, 1.0, prompt_weight)
    return (nll * w).sum() / w.sum(), nll.detach()[ck].mean()


BUCKET_BATCHES = 8


def _bucketed(stream, tok, batch_size: int, n_batches: int, rng: random.Random) -> list[list[D.Problem]]:
    """Draw n_batches * batch_size problems, sort by token length, cut into batches, shuffle them."""
    probs = [next(stream) for _ in range(batch_size * n_batches)]
    lens = [len(e.ids) for e in tok.encode_batch(["".join(_training_text(p)) for p in probs])]
    order = sorted(range(len(probs)), key=lambda i: (lens[i], i))
    batches = [[probs[i] for i in order[j: j + batch_size]] for j in range(0, len(order), batch_size)]
    rng.shuffle(batches)
    return batches


def train(r: Recipe, progress: Optional[Callable[[int, float], None]] = None, log: Callable[[str], None] = print):
    """Train tokenizer + model; returns (model, tokenizers.Tokenizer, train_seconds, history)."""
    threads_before = torch.get_num_threads()
    torch.set_num_threads(r.threads)
    try:
        return _train(r, progress, log)
    finally:
        torch.set_num_threads(threads_before)


def _train(r: Recipe, progress, log):
    from transformers import LlamaForCausalLM

    torch.manual_seed(r.seed)
    random.seed(r.seed)
    texts = ["".join(_training_text(p)) for p in D.train_problems(r.seed, r.tokenizer_problems)]
    tok = build_tokenizer(texts, r.vocab_size)
    cfg = make_config(r, tok.get_vocab_size())
    model = LlamaForCausalLM(cfg)
    model.train()
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.ndim < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": r.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=r.lr, betas=(0.9, r.beta2), eps=1e-8,
    )
    stream = D.train_stream(r.seed + 1)  # tokenizer corpus and training stream differ
    brng = random.Random(r.seed + 2)
    quick = load_heldout(100) if r.eval_every else []
    hf_tok = wrap_tokenizer(tok, r.max_position_embeddings) if r.eval_every else None
    history: list[dict] = []
    t0 = time.perf_counter()
    c0 = time.process_time()
    ema = None
    pending: list[list[D.Problem]] = []
    for step in range(r.steps):
        for g in opt.param_groups:
            g["lr"] = _lr_at(step, r)
        if not pending:  # length-bucketed batches: less padding, same problems in the same order
            pending = _bucketed(stream, tok, r.batch_size, BUCKET_BATCHES, brng)
        x, y, comp = _batch(pending.pop(), tok, brng, r.bos_prob)
        loss, comp_loss = _loss(model, x, y, comp, r.prompt_loss_weight)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), r.grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
        lv = float(comp_loss)  # the logged loss: completion tokens only
        ema = lv if ema is None else 0.95 * ema + 0.05 * lv
        if progress:
            progress(step, ema)
        if r.eval_every and (step + 1) % r.eval_every == 0:
            model.eval()
            ev = evaluate(model, hf_tok, quick, r.eval_batch_size, sparsity=False,
                          max_new_tokens=r.eval_max_new_tokens)
            model.train()
            history.append({"step": step + 1, "loss": round(ema, 4), "acc100": ev["accuracy"],
                            "seconds": round(time.perf_counter() - t0, 1)})
            log(json.dumps(history[-1]))
    secs = time.perf_counter() - t0
    history.append({"final": True, "wall_seconds": round(secs, 1),
                    "cpu_seconds": round(time.process_time() - c0, 1)})
    model.eval()
    return model, tok, secs, history
