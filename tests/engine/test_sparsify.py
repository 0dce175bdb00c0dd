"""The engine on tiny real transformers models: exactness, backend agreement, profiles, undo."""

import pytest
import torch

from sparseinfer_dse.engine.decode import prefill, step
from sparseinfer_dse.engine import sparsify
from sparseinfer_dse.errors import OptionError, UserError
from sparseinfer_dse.models.loading import ModelSpec, load_model
from sparseinfer_dse.engine.profile import Profile, ProfileError

BACKENDS = ["torch", "numba-cpu"]


def _prompt(batch=2, length=7, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(4, 100, (batch, length), generator=g)


def _generate(model, ids, n=10):
    with torch.no_grad():
        return model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=n, min_new_tokens=n,
                              do_sample=False, pad_token_id=3)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind", ["llama-relu", "sparsellama"])
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_prediction_off_equals_dense(tiny_model, kind, backend, dtype):
    """AS alone skips only exact zeros: same logits (dtype tolerance) and identical greedy tokens."""
    lm = load_model(ModelSpec(str(tiny_model(kind)), dtype=dtype))
    ids = _prompt()
    dense = _generate(lm.model, ids)
    with torch.no_grad():
        out = lm.model(dense)
    with sparsify(lm, None, backend) as h:
        h.configure(predict=False)
        assert torch.equal(_generate(lm.model, ids), dense)
        # decode-step logits against dense, one token at a time through the KV cache
        with torch.no_grad():
            _, cache = prefill(lm.model, dense[:, :-3])
            logits, _ = step(lm.model, dense[:, -3:-2], cache)
        tol = 1e-4 if dtype == "float32" else 3e-2
        torch.testing.assert_close(logits.float(), out.logits[:, -3].float(), atol=tol, rtol=tol)


@pytest.mark.parametrize("kind", ["llama-relu", "sparsellama"])
def test_numba_and_torch_agree_under_a_profile(tiny_model, kind):
    lm = load_model(ModelSpec(str(tiny_model(kind))))
    prof = Profile((0.9, 1.0, None), lm.identity)
    ids = _prompt(batch=1)
    outs, stats = {}, {}
    for be in BACKENDS:
        with sparsify(lm, prof, be) as h:
            h.configure(collect=True)
            outs[be] = _generate(lm.model, ids, 12)
            stats[be] = [(s["predicted_sparsity"], s["actual_sparsity"]) for s in h.layer_stats()]
    assert torch.equal(outs["torch"], outs["numba-cpu"])
    assert stats["torch"] == stats["numba-cpu"]
    assert stats["torch"][0][0] > 0.2  # alpha 0.9 really skips rows


def test_prefill_dense_decode_sparse_and_dense_layers(tiny_model):
    lm = load_model(ModelSpec(str(tiny_model("llama-relu"))))
    with sparsify(lm, [1.0, None, 1.0], "numba-cpu") as h:
        _generate(lm.model, _prompt(batch=1), 5)
        calls = [layer.stats.calls for layer in h.layers]
    assert calls[0] == {"prefill": 1, "decode_dense": 0, "decode_sparse": 4}
    assert calls[1] == {"prefill": 1, "decode_dense": 4, "decode_sparse": 0}


def test_undo_restores_the_model(tiny_model):
    lm = load_model(ModelSpec(str(tiny_model("llama-relu"))))
    before = [layer.mlp for layer in lm.model.model.layers]
    h = sparsify(lm, Profile.uniform(3, 0.8), "torch")
    assert type(lm.model.model.layers[0].mlp).__name__ == "SparseMLP"
    assert h.extra_bytes == 3 * (200 * 3 * 4 + 72 * 200 * 4)  # sign words + W_down^T per layer
    h.undo()
    assert [layer.mlp for layer in lm.model.model.layers] == before


def test_aggressive_alpha_changes_output(tiny_model):
    """A real effect, not a no-op: alpha 0.5 skips rows that are not zero and moves the logits."""
    lm = load_model(ModelSpec(str(tiny_model("llama-relu"))))
    ids = _prompt(batch=1)
    with torch.no_grad():
        ref = lm.model(ids).logits
    with sparsify(lm, Profile.uniform(3, 0.5), "numba-cpu"), torch.no_grad():
        _, cache = prefill(lm.model, ids[:, :-1])
        logits, _ = step(lm.model, ids[:, -1:], cache)
    assert (logits - ref[:, -1]).abs().max() > 1e-3


def test_silu_refused_without_opt_in(tiny_model):
    lm = load_model(ModelSpec(str(tiny_model("mistral"))))
    with pytest.raises(UserError, match="--decode-activation relu"):
        sparsify(lm, None, "torch")
    lm = load_model(ModelSpec(str(tiny_model("mistral")), decode_activation="relu"))
    ids = _prompt(batch=1)

    def decode_step():
        with torch.no_grad():
            _, cache = prefill(lm.model, ids[:, :-1])
            return step(lm.model, ids[:, -1:], cache)[0]

    with torch.no_grad():
        silu = lm.model(ids).logits[:, -1]
    with sparsify(lm, None, "numba-cpu") as h:
        assert "CHANGES the model" in h.notice
        h.configure(predict=False)
        kernel_relu = decode_step()  # SiLU prefill, ReLU decode through the kernels (AS only)
        h.set_profile([None, None, None])
        dense_relu = decode_step()  # the same ReLU decode, dense in torch
    torch.testing.assert_close(kernel_relu, dense_relu, atol=1e-4, rtol=1e-4)
    assert (kernel_relu - silu).abs().max() > 1e-3  # and it really is a different model than SiLU


def test_profile_checks(tiny_model):
    lm = load_model(ModelSpec(str(tiny_model("llama-relu"))))
    with pytest.raises(ProfileError, match="4 layers"):
        sparsify(lm, [1.0] * 4, "torch")
    other = load_model(ModelSpec(str(tiny_model("qwen2"))), weights=False).identity
    with pytest.raises(ProfileError, match="allow-model-mismatch"):
        sparsify(lm, Profile.uniform(3, 1.0, other), "torch")
    sparsify(lm, Profile.uniform(3, 1.0, other), "torch", allow_model_mismatch=True).undo()


def test_backend_choice_errors(tiny_model):
    lm = load_model(ModelSpec(str(tiny_model("llama-relu"))))
    with pytest.raises(OptionError, match="^backend must be one of") as info:
        sparsify(lm, None, "cublas")
    assert info.value.field == "backend"
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="numba-cuda cannot run here"):
            sparsify(lm, None, "numba-cuda")
