"""Fidelity proxies: how far a sparse profile moves the model's next-token distributions.

On calibration text (prompt + reference continuation), teacher-forced:

* the prompt runs as one prefill pass (dense, as in real decoding);
* the continuation tokens are then fed one at a time with the KV cache, so every continuation
  position is a real decode step (one token per sequence) and runs the SparseInfer kernels with
  the profile's per-layer alpha, exactly as during generation (the torch backend batches sequences
  with a per-row mask). The KV entries of earlier continuation tokens are the sparse model's own.

Scored positions are the predictions made by decode steps: for a continuation c_1..c_L, the
distributions of c_2..c_L (the prediction of c_1 comes from the dense prefill and is identical in
both models, so it is left out). Against the dense model on the same positions:

* `kl`   mean KL(dense || sparse) of the next-token distributions, in nats;
* `top1` fraction of positions where the sparse argmax equals the dense argmax;
* `nll`  mean negative log-likelihood of the reference tokens under the sparse model
  (`dense_nll` the same for the dense model).

`DenseReference.build(...)` runs the dense pass once and keeps its log-probabilities, so a search
trial only runs the sparse pass: `proxy_metrics(handle, tok, reference)`.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Optional, Sequence

import torch

from sparseinfer_dse.errors import UserError
from sparseinfer_dse.eval.harness import _model_of

DEFAULT_SAMPLES = 32
DEFAULT_MAX_PROMPT_TOKENS = 384
DEFAULT_MAX_CONTINUATION_TOKENS = 64
# reference log-probs above this many bytes are kept in float16 (KL stays exact for dense vs dense:
# the sparse side is rounded the same way before comparing)
_FP32_LIMIT_BYTES = 1 << 30


# ---------------------------------------------------------------------------------------------
# calibration text


@dataclass(frozen=True)
class Calibration:
    """Calibration samples: (prompt, reference continuation) strings."""

    name: str
    samples: tuple[tuple[str, str], ...]

    def __len__(self) -> int:
        return len(self.samples)


def gsm8k_calibration(data_dir: Path | str, n: int = DEFAULT_SAMPLES, split: str = "train") -> Calibration:
    """GSM8K questions with their reference answers, formatted like lm-eval's gsm8k task."""
    path = Path(data_dir).expanduser() / "gsm8k" / f"{split}.jsonl"
    if not path.is_file():
        raise UserError(f"calibration needs {path} (--data-dir must hold gsm8k/{split}.jsonl)")
    out = []
    with path.open(encoding="utf-8") as f:
        for line in f:
            if len(out) >= n:
                break
            if line.strip():
                row = json.loads(line)
                out.append((f"Question: {row['question']}\nAnswer:", " " + row["answer"]))
    return Calibration(f"gsm8k-{split}[:{len(out)}]", tuple(out))


def demo_calibration(n: int = DEFAULT_SAMPLES, seed: int = 4242) -> Calibration:
    """The demo model's own kind of problems, from its training distribution (never held-out ones)."""
    from sparseinfer_dse.demo import data as D

    probs = D.train_problems(seed, n)
    return Calibration(f"demo-train[seed={seed},n={n}]", tuple((D.format_prompt(p.question), " " + p.answer) for p in probs))


def file_calibration(path: Path | str, n: int = DEFAULT_SAMPLES) -> Calibration:
    """A JSONL file (rows with prompt/continuation, question/answer or input/target) or plain text.

    Plain text is cut into paragraphs (blank lines); each paragraph's first half is the prompt and
    its second half (split at a space) the continuation.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise UserError(f"calibration file not found: {path}")
    text = path.read_text(encoding="utf-8")
    pairs: list[tuple[str, str]] = []
    if path.suffix == ".jsonl":
        for i, line in enumerate(text.splitlines()):
            if not line.strip():
                continue
            row = json.loads(line)
            for a, b in (("prompt", "continuation"), ("question", "answer"), ("input", "target")):
                if a in row and b in row:
                    sep = "" if b == "continuation" else " "
                    prompt = f"Question: {row[a]}\nAnswer:" if a == "question" else str(row[a])
                    pairs.append((prompt, sep + str(row[b])))
                    break
            else:
                if "text" in row:
                    pairs.append(_halves(str(row["text"])))
                else:
                    raise UserError(f"{path}:{i + 1}: a row needs prompt+continuation, question+answer, input+target or text")
    else:
        for para in (p.strip() for p in text.split("\n\n")):
            if len(para.split()) >= 4:
                pairs.append(_halves(para))
    if not pairs:
        raise UserError(f"{path}: no calibration samples found")
    return Calibration(f"file:{path.name}[:{min(n, len(pairs))}]", tuple(pairs[:n]))


def _halves(text: str) -> tuple[str, str]:
    mid = len(text) // 2
    cut = text.rfind(" ", 0, mid)
    cut = cut if cut > 0 else mid
    return text[:cut], text[cut:]


def load_calibration(spec: Optional[str], *, data_dir: Optional[Path | str] = None, model_name: str = "",
                     n: int = DEFAULT_SAMPLES) -> Calibration:
    """`gsm8k` (needs data_dir), `demo`, a file path, or None: demo for the demo model, else gsm8k."""
    if spec is None:
        if model_name == "demo":
            spec = "demo"
        elif data_dir is not None:
            spec = "gsm8k"
        else:
            raise UserError("--proxy needs calibration text: --calibration FILE, or --data-dir for GSM8K, or demo")
    if spec == "demo":
        return demo_calibration(n)
    if spec == "gsm8k":
        if data_dir is None:
            raise UserError("--calibration gsm8k needs --data-dir (a folder with gsm8k/train.jsonl)")
        return gsm8k_calibration(data_dir, n)
    return file_calibration(spec, n)


# ---------------------------------------------------------------------------------------------
# tokenizing


def _encode(tokenizer: Any, prompt: str, cont: str, max_prompt: int, max_cont: int) -> tuple[list[int], list[int]]:
    p = list(tokenizer(prompt)["input_ids"])
    full = list(tokenizer(prompt + cont)["input_ids"])
    if full[: len(p)] == p and len(full) > len(p):
        c = full[len(p):]
    else:  # the joint tokenization merged across the boundary: encode the continuation alone
        c = list(tokenizer(cont, add_special_tokens=False)["input_ids"])
    return p[-max_prompt:], c[:max_cont]


def encode_calibration(tokenizer: Any, calibration: Calibration, max_prompt_tokens: int = DEFAULT_MAX_PROMPT_TOKENS,
                       max_continuation_tokens: int = DEFAULT_MAX_CONTINUATION_TOKENS,
                       max_length: Optional[int] = None) -> list[tuple[list[int], list[int]]]:
    out = []
    for prompt, cont in calibration.samples:
        p, c = _encode(tokenizer, prompt, cont, max_prompt_tokens, max_continuation_tokens)
        if max_length is not None and len(p) + len(c) > max_length:
            p = p[-max(1, max_length - len(c)):]
            c = c[: max_length - len(p)]
        if len(p) >= 1 and len(c) >= 2:  # need at least one decode-step prediction
            out.append((p, c))
    if not out:
        raise UserError(f"calibration {calibration.name}: no sample has a continuation of 2 or more tokens")
    return out


# ---------------------------------------------------------------------------------------------
# the teacher-forced, step-by-step pass


def _pad_id(tokenizer: Any) -> int:
    for attr in ("pad_token_id", "eos_token_id", "bos_token_id"):
        v = getattr(tokenizer, attr, None)
        if v is not None:
            return int(v)
    return 0


@torch.no_grad()
def _stepwise(model: torch.nn.Module, batch: Sequence[tuple[list[int], list[int]]], pad_id: int,
              consume: Callable[[int, int, torch.Tensor], None]) -> None:
    """Prefill the prompts (left-padded), then feed continuation tokens one per decode step.

    After feeding c_t (t = 0..L-2) the model's log-probs for c_{t+1} are passed to
    consume(sample_index_in_batch, t, logprobs[V]) for every sample that has a c_{t+1}.
    """
    device = next(model.parameters()).device
    B = len(batch)
    P = max(len(p) for p, _ in batch)
    ids = torch.full((B, P), pad_id, dtype=torch.long)
    attn = torch.zeros((B, P), dtype=torch.long)
    for i, (p, _) in enumerate(batch):
        ids[i, P - len(p):] = torch.tensor(p)
        attn[i, P - len(p):] = 1
    pos = (attn.cumsum(-1) - 1).clamp(min=0)
    ids, attn, pos = ids.to(device), attn.to(device), pos.to(device)
    out = model(input_ids=ids, attention_mask=attn, position_ids=pos, use_cache=True)
    cache = out.past_key_values
    next_pos = attn.sum(-1)
    L = max(len(c) for _, c in batch)
    for t in range(L - 1):
        valid = torch.tensor([t < len(c) - 1 for _, c in batch], dtype=torch.long, device=device)
        tok = torch.tensor([[c[t] if t < len(c) - 1 else pad_id] for _, c in batch], dtype=torch.long, device=device)
        attn = torch.cat([attn, valid[:, None]], dim=1)
        out = model(input_ids=tok, attention_mask=attn, position_ids=next_pos[:, None], past_key_values=cache,
                    use_cache=True)
        cache = out.past_key_values
        next_pos = next_pos + 1
        logp = torch.log_softmax(out.logits[:, -1, :].float(), dim=-1)
        for i in range(B):
            if valid[i]:
                consume(i, t, logp[i])


def _batches(n: int, size: int) -> Iterable[range]:
    for s in range(0, n, size):
        yield range(s, min(n, s + size))


# ---------------------------------------------------------------------------------------------
# dense reference and the metrics


@dataclass
class DenseReference:
    """Dense next-token log-probs on the calibration set's decode positions, computed once."""

    name: str
    samples: list[tuple[list[int], list[int]]]
    logprobs: list[torch.Tensor]  # per sample: [len(cont) - 1, vocab], store dtype
    batch_size: int
    pad_id: int
    dense_nll: float
    n_tokens: int
    seconds: float = 0.0
    meta: dict = field(default_factory=dict)

    @property
    def store_dtype(self) -> torch.dtype:
        return self.logprobs[0].dtype

    @classmethod
    def build(cls, handle_or_model: Any, tokenizer: Any, calibration: Calibration, *, batch_size: int = 8,
              max_prompt_tokens: int = DEFAULT_MAX_PROMPT_TOKENS,
              max_continuation_tokens: int = DEFAULT_MAX_CONTINUATION_TOKENS,
              store_dtype: Optional[torch.dtype] = None, progress: bool = False) -> "DenseReference":
        """Run the dense model (a SparsifiedModel with its engine switched off) over the calibration set."""
        from contextlib import nullcontext

        model = _model_of(handle_or_model)
        max_len = getattr(getattr(model, "config", None), "max_position_embeddings", None)
        samples = encode_calibration(tokenizer, calibration, max_prompt_tokens, max_continuation_tokens, max_len)
        vocab = int(model.get_output_embeddings().weight.shape[0])
        n_pos = sum(len(c) - 1 for _, c in samples)
        if store_dtype is None:
            store_dtype = torch.float32 if n_pos * vocab * 4 <= _FP32_LIMIT_BYTES else torch.float16
        pad = _pad_id(tokenizer)
        logprobs: list[Optional[torch.Tensor]] = [None] * len(samples)
        for i, (_, c) in enumerate(samples):
            logprobs[i] = torch.empty((len(c) - 1, vocab), dtype=store_dtype)
        switch = handle_or_model.options_set(enabled=False) if hasattr(handle_or_model, "options_set") else nullcontext()
        t0 = time.perf_counter()
        bar = _bar(len(samples), "proxy: dense reference", progress)
        with switch:
            for rows in _batches(len(samples), batch_size):
                batch = [samples[r] for r in rows]

                def keep(i: int, t: int, lp: torch.Tensor, rows=rows) -> None:
                    logprobs[rows[i]][t] = lp.to("cpu", store_dtype)

                _stepwise(model, batch, pad, keep)
                bar.update(len(batch))
        bar.close()
        secs = time.perf_counter() - t0
        nll_sum = 0.0
        for (_, c), lp in zip(samples, logprobs):
            tgt = torch.tensor(c[1:])
            nll_sum -= float(lp.float().gather(1, tgt[:, None]).double().sum())
        return cls(calibration.name, samples, logprobs, batch_size, pad, nll_sum / n_pos, n_pos, secs,
                   {"max_prompt_tokens": max_prompt_tokens, "max_continuation_tokens": max_continuation_tokens})

    def save(self, path: Path | str) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"name": self.name, "samples": self.samples, "logprobs": self.logprobs, "batch_size": self.batch_size,
                    "pad_id": self.pad_id, "dense_nll": self.dense_nll, "n_tokens": self.n_tokens,
                    "seconds": self.seconds, "meta": self.meta}, path)
        return path

    @classmethod
    def load(cls, path: Path | str) -> "DenseReference":
        d = torch.load(Path(path), weights_only=True)
        return cls(**d)


def _bar(total: int, desc: str, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="seq", disable=not enabled, leave=False)


@torch.no_grad()
def proxy_metrics(handle: Any, tokenizer: Any, calibration: Calibration | DenseReference, *,
                  profile: Any = None, batch_size: Optional[int] = None, progress: bool = False,
                  **reference_kwargs: Any) -> dict[str, Any]:
    """KL(dense || sparse), top-1 agreement and NLL of the sparse model on the calibration set.

    `handle` is a SparsifiedModel (its current profile, or `profile` for this call only). Pass a
    DenseReference to reuse the dense pass; a Calibration builds one first (`reference_kwargs` go
    to DenseReference.build). Batching follows the reference's batch size unless `batch_size`.
    """
    ref = calibration if isinstance(calibration, DenseReference) else DenseReference.build(
        handle, tokenizer, calibration, batch_size=batch_size or 8, progress=progress, **reference_kwargs)
    model = _model_of(handle)
    bs = batch_size or ref.batch_size
    old_profile = getattr(handle, "profile", None)
    if profile is not None:
        handle.set_profile(profile)
    kl_sum = 0.0
    top1 = 0
    nll_sum = 0.0
    kl_max = 0.0
    sd = ref.store_dtype
    t0 = time.perf_counter()
    bar = _bar(len(ref.samples), "proxy: sparse pass", progress)
    try:
        for rows in _batches(len(ref.samples), bs):
            batch = [ref.samples[r] for r in rows]
            acc = {"kl": 0.0, "top1": 0, "nll": 0.0, "klmax": 0.0}

            def score(i: int, t: int, lp: torch.Tensor, rows=rows, acc=acc) -> None:
                s_idx = rows[i]
                q = lp.to("cpu", sd).float()
                p_log = ref.logprobs[s_idx][t].float()
                kl = float((p_log.exp() * (p_log - q)).sum())
                acc["kl"] += kl
                acc["klmax"] = max(acc["klmax"], kl)
                acc["top1"] += int(int(q.argmax()) == int(p_log.argmax()))
                acc["nll"] -= float(q[ref.samples[s_idx][1][t + 1]])

            _stepwise(model, batch, ref.pad_id, score)
            kl_sum += acc["kl"]
            top1 += acc["top1"]
            nll_sum += acc["nll"]
            kl_max = max(kl_max, acc["klmax"])
            bar.update(len(batch))
    finally:
        bar.close()
        if profile is not None and old_profile is not None:
            handle.set_profile(old_profile)
    n = ref.n_tokens
    return {
        "kl": kl_sum / n,
        "kl_max": kl_max,
        "top1": top1 / n,
        "nll": nll_sum / n,
        "dense_nll": ref.dense_nll,
        "n_tokens": n,
        "n_sequences": len(ref.samples),
        "calibration": ref.name,
        "seconds": round(time.perf_counter() - t0, 3),
        "dense_seconds": round(ref.seconds, 3),
    }


def perplexity(nll: float) -> float:
    return math.exp(nll) if nll < 700 else float("inf")
