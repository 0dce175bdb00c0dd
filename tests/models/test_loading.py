import pytest
import torch

from sparseinfer_dse.errors import OptionError, UserError
from sparseinfer_dse.models.loading import ModelSpec, load_model, resolve_source


@pytest.mark.parametrize("kind,act", [("llama-relu", "relu"), ("mistral", "silu"), ("qwen2", "silu"), ("llama-silu", "silu")])
def test_loads_llama_family(tiny_model, kind, act):
    lm = load_model(ModelSpec(str(tiny_model(kind)), device="cpu"))
    assert len(lm.mlps) == 3
    assert (lm.mlps[0].d, lm.mlps[0].k) == (72, 200)
    assert lm.activation.kind == act
    assert lm.identity.num_layers == 3


def test_sparsellama_loads_as_llama_with_fatrelu(tiny_model):
    lm = load_model(ModelSpec(str(tiny_model("sparsellama"))))
    assert type(lm.model).__name__ == "LlamaForCausalLM"
    assert lm.activation.kind == "fatrelu" and lm.activation.threshold == pytest.approx(0.01)
    x = torch.tensor([-1.0, 0.0, 0.005, 0.01, 0.5])
    assert lm.mlps[0].module.act_fn(x).tolist() == pytest.approx([0.0, 0.0, 0.0, 0.01, 0.5])


def test_weights_false_builds_on_meta(tiny_model):
    lm = load_model(ModelSpec(str(tiny_model("llama-relu"))), weights=False)
    assert lm.mlps[0].gate.weight.device.type == "meta"


@pytest.mark.parametrize("dtype,expected", [("float16", torch.float16), ("bfloat16", torch.bfloat16), ("float32", torch.float32)])
def test_dtype(tiny_model, dtype, expected):
    assert load_model(ModelSpec(str(tiny_model("llama-relu")), dtype=dtype)).dtype == expected


def test_identity_is_stable_across_dtype(tiny_model):
    p = str(tiny_model("llama-relu"))
    a = load_model(ModelSpec(p, dtype="float16"), weights=False).identity
    b = load_model(ModelSpec(p, dtype="float32"), weights=False).identity
    assert a.config_hash == b.config_hash
    other = load_model(ModelSpec(str(tiny_model("mistral"))), weights=False).identity
    assert other.config_hash != a.config_hash


def test_missing_path_is_one_line_error(tmp_path):
    with pytest.raises(UserError, match="model path not found"):
        resolve_source(ModelSpec(str(tmp_path / "nope")))
    with pytest.raises(UserError, match="model path not found"):
        resolve_source(ModelSpec("./missing.gguf"))


def test_uncached_hub_id(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    import huggingface_hub.constants as c

    monkeypatch.setattr(c, "HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(UserError, match="not in the Hugging Face cache"):
        resolve_source(ModelSpec("SparseLLM/prosparse-llama-2-7b"))


def test_dir_without_model(tmp_path):
    with pytest.raises(UserError, match="no config.json"):
        resolve_source(ModelSpec(str(tmp_path)))


def test_non_gguf_file(tmp_path):
    f = tmp_path / "weights.bin"
    f.write_bytes(b"x")
    with pytest.raises(UserError, match="not a .gguf"):
        resolve_source(ModelSpec(str(f)))


def test_bad_device_and_dtype(tiny_model):
    p = str(tiny_model("llama-relu"))
    # the library names the setting (the CLI shows it as its flag: tests/cli/test_flags.py)
    for spec, field in ((ModelSpec(p, dtype="int8"), "dtype"), (ModelSpec(p, device="tpu"), "device"),
                        (ModelSpec(p, decode_activation="gelu"), "decode_activation")):
        with pytest.raises(OptionError) as info:
            load_model(spec)
        assert info.value.field == field and str(info.value).startswith(field)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU message")
def test_cuda_requested_without_gpu(tiny_model):
    with pytest.raises(UserError, match="no CUDA device"):
        load_model(ModelSpec(str(tiny_model("llama-relu")), device="cuda"))


@pytest.mark.slow
def test_gguf_smollm2_real_checkpoint(smollm2_gguf):
    """The real SmolLM2-135M GGUF: structure without weights, then loaded and run for real."""
    lm = load_model(ModelSpec(str(smollm2_gguf)), weights=False)
    assert (len(lm.mlps), lm.mlps[0].d, lm.mlps[0].k, lm.activation.kind) == (30, 576, 1536, "silu")
    lm = load_model(ModelSpec(str(smollm2_gguf.parent), gguf_file=smollm2_gguf.name), tokenizer=True)
    ids = lm.tokenizer("2 + 2 =", return_tensors="pt").input_ids
    with torch.no_grad():
        logits = lm.model(ids).logits
    assert logits.shape[-1] == 49152 and torch.isfinite(logits).all()


def test_smollm2_alias_names_the_packaged_checkpoint(smollm2_gguf):
    from sparseinfer_dse.models.loading import ModelSpec, resolve_source

    src = resolve_source(ModelSpec("smollm2"))
    assert src.kind == "gguf" and src.gguf_file == smollm2_gguf.name and src.path == str(smollm2_gguf.parent)
