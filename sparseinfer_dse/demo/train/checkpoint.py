"""Building a demo checkpoint: train, save, reload and evaluate what was saved, write the model card."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import time
from dataclasses import asdict
from pathlib import Path
from typing import Callable

import torch

from sparseinfer_dse.demo import data as D
from sparseinfer_dse.demo import heldout_path
from sparseinfer_dse.demo.train.loop import train
from sparseinfer_dse.demo.train.measure import evaluate, lm_eval_accuracy, load_heldout
from sparseinfer_dse.demo.train.recipe import Recipe
from sparseinfer_dse.demo.train.tokenizer import wrap_tokenizer
from sparseinfer_dse.machine import cpu_name


def save_checkpoint(out: Path, model, tok, r: Recipe) -> None:
    """Write model, tokenizer and generation config to `out`, loadable by plain transformers."""
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
        card["results"]["lm_eval"] = lm_eval_accuracy(model, hf_tok, limit=r.eval_problems or None)
    (tmp / "card.json").write_text(json.dumps(card, indent=2) + "\n")
    card["checkpoint_bytes"] = (tmp / "model.safetensors").stat().st_size
    (tmp / "card.json").write_text(json.dumps(card, indent=2) + "\n")
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    return card


def _sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def make_card(r: Recipe, model, train_seconds: float, ev: dict, history: list) -> dict:
    """The model card: architecture, recipe, data and split, results, training time and machine."""
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
