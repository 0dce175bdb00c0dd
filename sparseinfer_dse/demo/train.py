"""The demo model's training recipe: a small ReLU Llama trained from scratch on `data.py` problems.

`build(out_dir, recipe)` trains the tokenizer and the model, measures dense greedy accuracy and
per-layer ReLU sparsity at decode positions on the shipped held-out set, and writes a checkpoint
directory (config.json, model.safetensors, tokenizer files, generation_config.json, card.json).
Everything is seeded: the same recipe on the same torch build gives the same model (float
reductions can differ across thread counts and CPU kinds, so "the same quality", not bit-equal).
"""

from __future__ import annotations

import json
import math
import os
import platform
import random
import shutil
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Callable, Iterable, Optional, Sequence

import torch

from sparseinfer_dse.machine import cpu_name
from sparseinfer_dse.demo import data as D

PAD, BOS, EOS = "<pad>", "<s>", "</s>"
STOP_STRINGS = ("\n\n", "Question:")  # the lm-eval task's `until`, plus eos


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


# ---------------------------------------------------------------------------------------------
# tokenizer


def build_tokenizer(texts: Iterable[str], vocab_size: int):
    """Byte-level BPE (`tokenizers`), digits split one per token, special tokens <pad> <s> </s>.

    No post-processor: encoding never adds special tokens, so `add_special_tokens` True/False (and
    lm-eval's add_bos_token handling) give the same ids.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=[PAD, BOS, EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
    )
    tok.train_from_iterator(list(texts), trainer)
    return tok


def wrap_tokenizer(tok, max_length: int):
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=BOS, eos_token=EOS, pad_token=PAD,
        model_max_length=max_length, padding_side="left", clean_up_tokenization_spaces=False,
    )


def _training_text(p: D.Problem) -> tuple[str, str]:
    """(prompt, completion): the completion starts with the space after 'Answer:'."""
    return D.format_prompt(p.question), " " + p.answer


# ---------------------------------------------------------------------------------------------
# model


def make_config(r: Recipe, vocab_size: int):
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=vocab_size, hidden_size=r.hidden_size, intermediate_size=r.intermediate_size,
        num_hidden_layers=r.num_layers, num_attention_heads=r.num_heads, num_key_value_heads=r.num_heads,
        max_position_embeddings=r.max_position_embeddings, hidden_act="relu", tie_word_embeddings=True,
        rms_norm_eps=1e-5, initializer_range=0.02, bos_token_id=1, eos_token_id=2, pad_token_id=0,
        rope_theta=10000.0, attention_bias=False, mlp_bias=False, architectures=["LlamaForCausalLM"],
    )


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


# ---------------------------------------------------------------------------------------------
# evaluation: greedy decoding through the lm-eval prompt format, and decode-time ReLU sparsity


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


@torch.no_grad()
def decode_sparsity(model, hf_tok, prompts: Sequence[str], continuations: Sequence[Sequence[int]]) -> list[float]:
    """Per-layer fraction of exact zeros in act_fn(gate) at decode positions.

    A teacher-forced pass over prompt + the model's own greedy continuation: by causality the
    activations at positions P .. P+G-2 (the tokens fed back one at a time while decoding) are
    those of incremental decoding; the prefill (prompt) positions are excluded.
    """
    from sparseinfer_dse.demo import _decoder_layers

    layers = _decoder_layers(model)
    zeros = [0] * len(layers)
    total = [0] * len(layers)
    sel: dict[str, Any] = {}

    def hook(idx):
        def fn(_mod, _inp, out):
            h = out[0, sel["lo"]: sel["hi"]]
            zeros[idx] += int((h == 0).sum())
            total[idx] += h.numel()
        return fn

    handles = [layer.mlp.act_fn.register_forward_hook(hook(i)) for i, layer in enumerate(layers)]
    try:
        for prompt, cont in zip(prompts, continuations):
            p = hf_tok(prompt, add_special_tokens=False)["input_ids"]
            if len(cont) < 2:
                continue
            ids = torch.tensor([p + list(cont)])
            sel["lo"], sel["hi"] = len(p), len(p) + len(cont) - 1
            model(input_ids=ids, use_cache=False)
    finally:
        for h in handles:
            h.remove()
    return [z / t if t else float("nan") for z, t in zip(zeros, total)]


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
    from sparseinfer_dse.demo import heldout_path

    rows = D.read_jsonl(heldout_path())
    return rows[:limit] if limit else rows


# ---------------------------------------------------------------------------------------------
# the recipe


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


def save_checkpoint(out: Path, model, tok, r: Recipe) -> None:
    from transformers import GenerationConfig

    out.mkdir(parents=True, exist_ok=True)
    model.generation_config = GenerationConfig(
        bos_token_id=1, eos_token_id=2, pad_token_id=0, do_sample=False, max_new_tokens=160,
    )
    model.save_pretrained(out, safe_serialization=True)
    wrap_tokenizer(tok, r.max_position_embeddings).save_pretrained(out)
    # the portable class name (transformers 4.x and 5.x both resolve it)
    tc = out / "tokenizer_config.json"
    cfg = json.loads(tc.read_text())
    cfg["tokenizer_class"] = "PreTrainedTokenizerFast"
    cfg.pop("backend", None)
    tc.write_text(json.dumps(cfg, indent=2) + "\n")
    for f in out.iterdir():
        f.chmod(0o644)


def _machine(threads: int) -> dict:
    import transformers

    return {
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
        "torch_threads": threads,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
    }


def build(out: Path | str, r: Recipe, *, lm_eval: bool = False, show_progress: bool = True,
          log: Callable[[str], None] = print) -> dict:
    """Run the recipe end to end into `out`; returns the card (also written to out/card.json)."""
    from tqdm.auto import tqdm
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = Path(out)
    bar = tqdm(total=r.steps, desc="demo build: training", unit="step", disable=not show_progress)

    def prog(step: int, loss: float) -> None:
        bar.update(1)
        if step % 10 == 0:
            bar.set_postfix(loss=f"{loss:.3f}")

    model, tok, secs, history = train(r, prog, log=log)
    bar.close()
    tmp = out.with_name(out.name + ".partial")
    if tmp.exists():
        shutil.rmtree(tmp)
    save_checkpoint(tmp, model, tok, r)
    # evaluate what was saved, loaded back through the normal path
    model = AutoModelForCausalLM.from_pretrained(tmp).eval()
    hf_tok = AutoTokenizer.from_pretrained(tmp)
    held = load_heldout(r.eval_problems)
    ebar = tqdm(total=len(held), desc="demo build: held-out eval", unit="problem", disable=not show_progress)
    t1 = time.perf_counter()
    ev = evaluate(model, hf_tok, held, r.eval_batch_size, progress=ebar.update,
                  max_new_tokens=r.eval_max_new_tokens)
    ebar.close()
    ev["eval_seconds"] = round(time.perf_counter() - t1, 1)
    card = make_card(r, model, secs, ev, history)
    if lm_eval:
        from sparseinfer_dse.demo.tasks import lm_eval_accuracy

        card["results"]["lm_eval"] = lm_eval_accuracy(model, hf_tok, limit=r.eval_problems or None)
    (tmp / "card.json").write_text(json.dumps(card, indent=2) + "\n")
    card["checkpoint_bytes"] = (tmp / "model.safetensors").stat().st_size
    (tmp / "card.json").write_text(json.dumps(card, indent=2) + "\n")
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    return card


def _sha256(path: Path) -> str:
    import hashlib

    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def make_card(r: Recipe, model, train_seconds: float, ev: dict, history: list) -> dict:
    from sparseinfer_dse.demo import heldout_path

    cfg = model.config
    return {
        "name": "sparseinfer-dse demo model",
        "model": {
            "architecture": "LlamaForCausalLM",
            "hidden_act": cfg.hidden_act,
            "hidden_size": cfg.hidden_size,
            "intermediate_size": cfg.intermediate_size,
            "num_hidden_layers": cfg.num_hidden_layers,
            "num_attention_heads": cfg.num_attention_heads,
            "vocab_size": cfg.vocab_size,
            "parameters": sum(p.numel() for p in model.parameters()),
            "dtype": "float32",
            "tokenizer": "byte-level BPE (tokenizers), digits one per token, <pad>/<s>/</s>, no post-processor",
        },
        "recipe": asdict(r),
        "data": {
            "generator": "sparseinfer_dse.demo.data: GSM8K-style word problems, 7 families "
                         "(change, groups, shopping, rate, compare, half, ages), 2-4 worked steps, answers end '#### N'",
            "train_problems_seen": r.steps * r.batch_size,
            "train_stream_seed": r.seed + 1,
            "split": f"SHA-256 of (family + worked equations) mod {D.SPLIT_BUCKETS}: bucket 0 held out",
            "heldout_file": "sparseinfer_dse/demo/data/heldout.jsonl",
            "heldout_sha256": _sha256(heldout_path()),
            "prompt": D.PROMPT_TEMPLATE,
            "loss": f"next-token cross-entropy on question (weight {r.prompt_loss_weight}) and worked answer + </s> "
                    f"(weight 1); <s> prepended to a random {r.bos_prob:.0%} of the examples",
        },
        "results": {"dense_greedy": ev},
        "training": {
            "seconds": round(train_seconds, 1),
            "cpu_seconds": next((h["cpu_seconds"] for h in history if h.get("final")), None),
            "note": "wall time of the training loop (tokenizer included, evaluation excluded) on a shared machine",
            "machine": _machine(r.threads),
            "history": [h for h in history if not h.get("final")],
        },
    }
