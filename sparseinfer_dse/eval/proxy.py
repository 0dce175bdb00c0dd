"""Fidelity proxies: how far a sparse profile moves the model's next-token distributions.

On calibration text (prompt + reference continuation, from `eval.calibration`), teacher-forced
with `engine.decode.teacher_forced`:

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

`per_sequence` holds each sequence's mean KL and top-1 and its scored positions, so a caller can
put a bootstrap interval on the token-weighted means and compare two profiles sequence by sequence.

`DenseReference.build(...)` runs the dense pass once and keeps its log-probabilities, so a search
trial only runs the sparse pass: `proxy_metrics(handle, tok, reference)`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Optional

import torch

from sparseinfer_dse.engine.decode import dense, model_of, pad_id, teacher_forced
from sparseinfer_dse.eval.calibration import (
    DEFAULT_MAX_CONTINUATION_TOKENS,
    DEFAULT_MAX_PROMPT_TOKENS,
    Calibration,
    encode_calibration,
)

# reference log-probs above this many bytes are kept in float16 (KL stays exact for dense vs dense:
# the sparse side is rounded the same way before comparing)
_FP32_LIMIT_BYTES = 1 << 30


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
        model = model_of(handle_or_model)
        max_len = getattr(getattr(model, "config", None), "max_position_embeddings", None)
        samples = encode_calibration(tokenizer, calibration, max_prompt_tokens, max_continuation_tokens, max_len)
        vocab = int(model.get_output_embeddings().weight.shape[0])
        n_pos = sum(len(c) - 1 for _, c in samples)
        if store_dtype is None:
            store_dtype = torch.float32 if n_pos * vocab * 4 <= _FP32_LIMIT_BYTES else torch.float16
        pad = pad_id(tokenizer)
        logprobs: list[Optional[torch.Tensor]] = [None] * len(samples)
        for i, (_, c) in enumerate(samples):
            logprobs[i] = torch.empty((len(c) - 1, vocab), dtype=store_dtype)
        t0 = time.perf_counter()
        bar = _bar(len(samples), "proxy: dense reference", progress)
        with dense(handle_or_model):
            for rows in _batches(len(samples), batch_size):
                batch = [samples[r] for r in rows]

                def keep(i: int, t: int, lp: torch.Tensor, rows=rows) -> None:
                    logprobs[rows[i]][t] = lp.to("cpu", store_dtype)

                teacher_forced(model, batch, pad, keep)
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
    model = model_of(handle)
    bs = batch_size or ref.batch_size
    old_profile = getattr(handle, "profile", None)
    if profile is not None:
        handle.set_profile(profile)
    kl_sum = 0.0
    top1 = 0
    nll_sum = 0.0
    kl_max = 0.0
    n_seq = len(ref.samples)
    seq_kl, seq_top1 = [0.0] * n_seq, [0] * n_seq  # per calibration sequence: for intervals and paired tests
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
                seq_kl[s_idx] += kl
                seq_top1[s_idx] += int(int(q.argmax()) == int(p_log.argmax()))
                acc["klmax"] = max(acc["klmax"], kl)
                acc["top1"] += int(int(q.argmax()) == int(p_log.argmax()))
                acc["nll"] -= float(q[ref.samples[s_idx][1][t + 1]])

            teacher_forced(model, batch, ref.pad_id, score)
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
    lengths = [len(c) - 1 for _, c in ref.samples]
    return {
        "per_sequence": {"tokens": lengths, "kl": [k / max(m, 1) for k, m in zip(seq_kl, lengths)],
                         "top1": [t / max(m, 1) for t, m in zip(seq_top1, lengths)]},
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
