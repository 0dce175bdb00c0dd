"""Fixtures for the evaluation tests: a small ReLU Llama with a real tokenizer, an isolated cache."""

from __future__ import annotations

from pathlib import Path

import pytest

from sparseinfer_dse.data import DATA_DIR


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The GSM8K/BBH copy shipped in the package (what an absent --data-dir reads)."""
    assert (DATA_DIR / "gsm8k" / "test.jsonl").is_file(), f"shipped data missing at {DATA_DIR}"
    return DATA_DIR


@pytest.fixture(autouse=True)
def _eval_env(tmp_path_factory, monkeypatch):
    """Own cache folder per session; one torch thread (2 shared cores: more threads spin and crawl)."""
    import torch

    root = tmp_path_factory.getbasetemp() / "sdse-cache"
    monkeypatch.setenv("SPARSEINFER_DSE_CACHE", str(root))
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def build_small_lm(out: Path, seed: int = 0, layers: int = 2) -> Path:
    """A random-weight ReLU Llama (d=64, k=192) with a byte-level BPE tokenizer trained on demo text."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from sparseinfer_dse.demo import data as D
    from sparseinfer_dse.demo.train import build_tokenizer, wrap_tokenizer

    probs = D.train_problems(0, 200)
    tok = build_tokenizer([p.question + " " + p.answer for p in probs], vocab_size=300)
    hf_tok = wrap_tokenizer(tok, 2048)
    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=len(hf_tok), hidden_size=64, intermediate_size=192, num_hidden_layers=layers,
                      num_attention_heads=4, num_key_value_heads=2, hidden_act="relu", max_position_embeddings=2048,
                      bos_token_id=1, eos_token_id=2, pad_token_id=0)
    model = LlamaForCausalLM(cfg)
    model.save_pretrained(out)
    hf_tok.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def small_lm_dir(tmp_path_factory) -> Path:
    return build_small_lm(tmp_path_factory.mktemp("small-lm"))


@pytest.fixture(scope="session")
def small_lm_dir_other(tmp_path_factory) -> Path:
    """Same architecture, other weights (seed 1)."""
    return build_small_lm(tmp_path_factory.mktemp("small-lm-other"), seed=1)


@pytest.fixture
def small_lm(small_lm_dir):
    from sparseinfer_dse.models.loading import ModelSpec, load_model

    return load_model(ModelSpec(str(small_lm_dir), device="cpu"), tokenizer=True)
