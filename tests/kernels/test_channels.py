"""The channel-sparse linear (prepare_linear / channel_linear) of every backend against the torch reference.

numba-cuda runs here when a GPU or the simulator is present; otherwise
test_numba_cuda_in_simulator reruns this file's numba-cuda cases in a child process with
NUMBA_ENABLE_CUDASIM=1 (which must be set before numba.cuda is first imported).
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from sparseinfer_kernels import channels_cpu
from sparseinfer_kernels.api import available_backends, get_backend
from sparseinfer_kernels.channels import truncate_lowrank
from sparseinfer_kernels.testing import tolerances

DTYPES = [torch.float32, torch.float16, torch.bfloat16]
BACKENDS = available_backends()
SIM = os.environ.get("NUMBA_ENABLE_CUDASIM") == "1"
# (n_in, n_out, B); 150 x 129 spans two 128-channel tiles and two 128-column blocks in numba-cuda.
SHAPES = [(37, 53, 1), (37, 53, 3), (70, 129, 1), (70, 129, 3), (150, 129, 2)]
LABELS = ("zeros", "half", "half-scaled", "all", "none")


def _cases(name, dtype):
    """(n_in, n_out, B, config labels). The simulator is slow (about 0.5 s a call): there, the small
    odd shape with every config, and in float32 the two-tile shape with one."""
    if name == "numba-cuda" and SIM:
        return [(37, 53, 1, LABELS)] + ([(150, 129, 2, ("half-scaled",))] if dtype == torch.float32 else [])
    return [(*shape, LABELS) for shape in SHAPES]


def _device(name: str) -> str:
    return "cuda" if name == "numba-cuda" and not SIM else "cpu"


def _case(n_in, n_out, B, dtype, seed):
    """w (n_out, n_in), x (B, n_in) with exact zeros (a tenth of the channels, and all of channel 0),
    and a float32 scale in [0, 2)."""
    gen = torch.Generator().manual_seed(seed)
    w = torch.randn(n_out, n_in, generator=gen).to(dtype)
    x = torch.randn(B, n_in, generator=gen)
    x[torch.rand(B, n_in, generator=gen) < 0.1] = 0.0
    x[:, 0] = 0.0
    scale = 2 * torch.rand(n_in, generator=gen)
    return w, x.to(dtype), scale


def _configs(x, scale):
    """(label, x, threshold, scale): zeros skipped, about half kept (without and with scale), all, none."""
    a = x.float().abs()
    return [
        ("zeros", x, 0.0, None),
        ("half", x, float(a.median()), None),
        ("half-scaled", x, float((a * scale).median()), scale),
        ("all", torch.where(x == 0, torch.ones_like(x), x), 0.0, scale + 1),
        ("none", x, 1e30, scale),
    ]


def _check(name, dtype, n_in, n_out, B, labels, seed):
    ref, be = get_backend("torch"), get_backend(name)
    dev = _device(name)
    w, x, scale = _case(n_in, n_out, B, dtype, seed)
    prep, ref_prep = be.prepare_linear(w.to(dev)), ref.prepare_linear(w)
    rtol, atol = tolerances(dtype)
    for label, xc, thr, sc in _configs(x, scale):
        if label not in labels:
            continue
        what = f"{name} {dtype} {n_in}x{n_out} B={B} {label}"
        want = ref.channel_linear(ref_prep, xc, threshold=thr, scale=sc, with_counts=True)
        got = be.channel_linear(prep, xc.to(dev), threshold=thr, scale=None if sc is None else sc.to(dev),
                                with_counts=True)
        assert got.y.dtype == dtype and got.y.shape == (B, n_out) and got.y.device.type == dev, what
        assert got.kept.dtype == np.int64 and np.array_equal(got.kept, want.kept), (what, got.kept, want.kept)
        torch.testing.assert_close(got.y.float().cpu(), want.y.float(), rtol=rtol,
                                   atol=atol * (float(want.y.float().abs().max()) or 1.0), msg=lambda m: f"{what}: {m}")
        if label == "zeros":
            assert want.kept.tolist() == (xc != 0).sum(1).tolist(), what
        elif label == "half":
            assert all(0.3 * n_in < k < 0.7 * n_in for k in want.kept), (what, want.kept)
        elif label == "all":
            assert want.kept.tolist() == [n_in] * B, what
        elif label == "none":
            assert want.kept.tolist() == [0] * B and not got.y.float().abs().max(), what
        if label == "half" and not SIM:  # without counts: the same y (bit for bit on the CPU)
            plain = be.channel_linear(prep, xc.to(dev), threshold=thr)
            assert plain.kept is None, what
            if dev == "cpu":
                assert torch.equal(plain.y, got.y), what
            else:
                torch.testing.assert_close(plain.y, got.y, rtol=rtol, atol=atol * float(got.y.float().abs().max()))


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("name", BACKENDS)
def test_channel_linear_matches_reference(name, dtype):
    for n_in, n_out, B, labels in _cases(name, dtype):
        _check(name, dtype, n_in, n_out, B, labels, seed=n_in * B)


def test_reference_matches_a_float64_loop():
    """The reference against the definition read literally: per row, per kept channel."""
    w, x, scale = _case(37, 53, 3, torch.float32, seed=1)
    ref = get_backend("torch")
    thr = float((x.abs() * scale).median())
    res = ref.channel_linear(ref.prepare_linear(w), x, threshold=thr, scale=scale, with_counts=True)
    y = np.zeros((3, 53))
    for b in range(3):
        for j in range(37):
            if np.float32(abs(x[b, j].item())) * np.float32(scale[j].item()) > np.float32(thr):
                y[b] += x[b, j].item() * w[:, j].double().numpy()
    torch.testing.assert_close(res.y.double(), torch.from_numpy(y), rtol=1e-5, atol=1e-5 * np.abs(y).max())


@pytest.mark.parametrize("B", [1, 3])
def test_numba_cpu_parallel_and_serial_paths_agree(B, monkeypatch):
    """Large enough for several chunks (and, for B = 3, several GROUPs per chunk); the parallel
    result must not depend on which thread took which chunk."""
    be = get_backend("numba-cpu")
    w, x, scale = _case(300, 129, B, torch.float32, seed=B)
    prep = be.prepare_linear(w)
    thr = float((x.abs() * scale).median())
    out = {}
    for serial_below in (0, 1 << 40):
        monkeypatch.setattr(channels_cpu, "SERIAL_BELOW", serial_below)
        out[serial_below] = be.channel_linear(prep, x, threshold=thr, scale=scale, with_counts=True)
    par, ser = out[0], out[1 << 40]
    assert np.array_equal(par.kept, ser.kept)
    torch.testing.assert_close(par.y, ser.y, rtol=1e-5, atol=1e-5 * float(ser.y.abs().max()))
    monkeypatch.setattr(channels_cpu, "SERIAL_BELOW", 0)
    for _ in range(3):
        assert torch.equal(be.channel_linear(prep, x, threshold=thr, scale=scale).y, par.y)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("name", ["torch", "numba-cpu"])
def test_layout_and_dense_weight_view(name, dtype):
    w, _, _ = _case(37, 53, 1, dtype, seed=0)
    prep = get_backend(name).prepare_linear(w)
    w_t = prep.state["w_t"]
    assert (prep.backend, prep.n_in, prep.n_out, prep.dtype, prep.device.type) == (name, 37, 53, dtype, "cpu")
    assert w_t.shape == (37, 53) and w_t.is_contiguous() and w_t.dtype == dtype
    assert w_t.data_ptr() != w.data_ptr() and prep.extra_bytes == 37 * 53 * w.element_size()
    dense = prep.dense_weight()
    assert dense.shape == (53, 37) and torch.equal(dense, w)
    assert dense.data_ptr() == w_t.data_ptr() and dense.untyped_storage().data_ptr() == w_t.untyped_storage().data_ptr()


@pytest.mark.parametrize("name", ["torch", "numba-cpu"])
def test_bad_arguments_are_clear_value_errors(name):
    be = get_backend(name)
    w, x, scale = _case(37, 53, 2, torch.float32, seed=0)
    for bad, match in ((w[0], "2-D"), (w.double(), "dtype torch.float64"), (w[:0], "at least one row"),
                       ("w", "2-D")):
        with pytest.raises(ValueError, match=match):
            be.prepare_linear(bad)
    prep = be.prepare_linear(w)
    bad_calls = [
        (dict(x=x[:, :30]), r"\(B, 37\)"),
        (dict(x=x[0]), r"\(B, 37\)"),
        (dict(x=x[:0]), r"B >= 1"),
        (dict(x=x.half()), "dtype"),
        (dict(threshold=float("nan")), "finite"),
        (dict(threshold="high"), "number"),
        (dict(scale=scale[:30]), r"scale must be a float32 \(37,\)"),
        (dict(scale=scale.double()), "scale must be"),
        (dict(prep=object()), "PreparedLinear"),
        (dict(prep=get_backend("numba-cpu" if name == "torch" else "torch").prepare_linear(w)), "made by backend"),
    ]
    for change, match in bad_calls:
        kw = dict(prep=prep, x=x, threshold=0.5, scale=None)
        kw.update(change)
        with pytest.raises(ValueError, match=match):
            be.channel_linear(kw.pop("prep"), kw.pop("x"), **kw)


def _lowrank_factors(w: torch.Tensor, r: int):
    """a = diag(S_r) V_r^T (r, n_in) and u = U_r (n_out, r) of an nn.Linear weight, as R-Sparse keeps them."""
    U, S, Vh = torch.linalg.svd(w.double(), full_matrices=False)
    return (S[:r, None] * Vh[:r]).float(), U[:, :r].float()


# (label, rank of gate / up / down; None = no remainder): R-Sparse's three, or only down's
LOWRANK_CASES = (("none", (None, None, None)), ("all-r5", (5, 5, 5)), ("down-r3", (None, None, 3)))


@pytest.mark.parametrize("name", BACKENDS)
def test_channel_mlp_matches_reference(name):
    """The whole decode step of a TEAL/WiSparse block in one call equals the reference: every dtype
    (float32 only in the slow simulator), SiLU and ReLU, scaled or not, B = 1 and 3; and with
    R-Sparse's low-rank remainders (SiLU, scaled) on all three projections or on down only."""
    ref, be = get_backend("torch"), get_backend(name)
    dev = _device(name)
    dtypes = [torch.float32] if name == "numba-cuda" and SIM else DTYPES
    for dtype in dtypes:
        for d, k, B in ((37, 53, 1), (70, 129, 3)):
            gen = torch.Generator().manual_seed(d * B)
            ws = [torch.randn(k, d, generator=gen) / d ** 0.5, torch.randn(k, d, generator=gen) / d ** 0.5,
                  torch.randn(d, k, generator=gen) / k ** 0.5]
            x = torch.randn(B, d, generator=gen).to(dtype)
            configs = [(a, sc, "none") for a in ("silu", "relu") for sc in (False, True)]
            configs += [("silu", True, label) for label, _ in LOWRANK_CASES[1:]]
            for activation, scaled, lr_label in configs:
                scales = tuple(w.norm(dim=0) for w in ws) if scaled else (None, None, None)
                thr = (float(x.float().abs().median() * (2.0 if scaled else 1.0)),) * 2 + (0.02,)
                ranks = dict(LOWRANK_CASES)[lr_label]
                factors = [None if r is None else _lowrank_factors(w, r) for w, r in zip(ws, ranks)]
                lr_ref = [None if f is None else ref.prepare_lowrank(f[0].to(dtype), f[1].to(dtype)) for f in factors]
                # the backend's remainders are views of a rank-8 layout, as the engine keeps them
                lr_be = [None if r is None else truncate_lowrank(be.prepare_lowrank(
                    *(t.to(dtype).to(dev) for t in _lowrank_factors(w, 8))), r) for w, r in zip(ws, ranks)]
                want = ref.channel_mlp([ref.prepare_linear(w.to(dtype)) for w in ws], x, thresholds=thr,
                                       scales=scales, activation=activation, lowrank=lr_ref, with_counts=True)
                got = be.channel_mlp([be.prepare_linear(w.to(dtype).to(dev)) for w in ws], x.to(dev), thresholds=thr,
                                     scales=tuple(None if s is None else s.to(dev) for s in scales),
                                     activation=activation, lowrank=lr_be, with_counts=True)
                rtol, atol = tolerances(dtype)
                what = f"{name} {dtype} {d}x{k} B={B} {activation} scaled={scaled} lowrank={lr_label}"
                assert np.array_equal(got.kept, want.kept), what
                torch.testing.assert_close(got.y.cpu().float(), want.y.float(), rtol=rtol,
                                           atol=atol * float(want.y.float().abs().max()), msg=what)
                assert 0 < want.kept.min() < 2 * d + k  # some channels skipped, some kept
                if lr_label != "none":  # the remainder changes the result
                    plain = ref.channel_mlp([ref.prepare_linear(w.to(dtype)) for w in ws], x, thresholds=thr,
                                            scales=scales, activation=activation)
                    assert not torch.equal(plain.y, want.y), what
    with pytest.raises(ValueError, match="activation must be one of"):
        be.channel_mlp([be.prepare_linear(torch.randn(5, 4).to(dev)), be.prepare_linear(torch.randn(5, 4).to(dev)),
                        be.prepare_linear(torch.randn(4, 5).to(dev))], torch.randn(1, 4).to(dev),
                       thresholds=(0.0, 0.0, 0.0), activation="gelu")


def test_lowrank_reference_matches_the_definition():
    """R-Sparse's y = W (x * m) + U_r S_r V_r^T (x * (1 - m)) read literally (their modeling code),
    in float64, against the reference's gate product; at full rank the remainder is exact, so
    the block equals the dense block."""
    gen = torch.Generator().manual_seed(3)
    d, k = 12, 20
    ws = [torch.randn(k, d, generator=gen), torch.randn(k, d, generator=gen), torch.randn(d, k, generator=gen)]
    x = torch.randn(2, d, generator=gen)
    ref = get_backend("torch")
    scales = tuple(w.norm(dim=0) for w in ws)
    thr = float((x.abs() * scales[0]).median())
    a, u = _lowrank_factors(ws[0], 4)
    m = ((x.abs() * scales[0]) > thr).double()
    want = (x.double() * m) @ ws[0].double().t() + (x.double() * (1 - m)) @ (a.double().t() @ u.double().t())
    got, _ = __import__("sparseinfer_kernels.channels", fromlist=["_"])._reference_product(
        ref.prepare_linear(ws[0]), x, np.float32(thr), scales[0], ref.prepare_lowrank(a, u))
    torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=1e-5 * float(want.abs().max()))
    full = [ref.prepare_lowrank(*_lowrank_factors(w, min(w.shape))) for w in ws]
    preps = [ref.prepare_linear(w) for w in ws]
    sparse = ref.channel_mlp(preps, x, thresholds=(1e3, 1e3, 1e3), scales=scales, lowrank=full, with_counts=True)
    dense = ref.channel_mlp(preps, x, thresholds=(-1.0, -1.0, -1.0), scales=scales, with_counts=True)
    assert sparse.kept.tolist() == [0, 0] and dense.kept.tolist() == [2 * d + k] * 2
    torch.testing.assert_close(sparse.y, dense.y, rtol=1e-4, atol=1e-4 * float(dense.y.abs().max()))


def test_lowrank_arguments_are_checked():
    be = get_backend("numba-cpu")
    ws = [torch.randn(9, 6), torch.randn(9, 6), torch.randn(6, 9)]
    preps = [be.prepare_linear(w) for w in ws]
    good = be.prepare_lowrank(torch.randn(2, 6), torch.randn(9, 2))
    with pytest.raises(ValueError, match="disagree on r"):
        be.prepare_lowrank(torch.randn(2, 6), torch.randn(9, 3))
    with pytest.raises(ValueError, match=r"rank must be in \[1, 2\]"):
        truncate_lowrank(good, 3)
    view = truncate_lowrank(good, 1)
    assert view.rank == 1 and view.extra_bytes == 0 and view.a.state["w_t"].data_ptr() == good.a.state["w_t"].data_ptr()
    for lowrank, match in (((good, None), r"\(gate, up, down\)"),
                           ((None, None, good), r"lowrank down is 6->2->9"),
                           ((get_backend("torch").prepare_lowrank(torch.randn(2, 6), torch.randn(9, 2)), None, None),
                            "numba-cpu's prepare_lowrank")):
        with pytest.raises(ValueError, match=match):
            be.channel_mlp(preps, torch.randn(1, 6), thresholds=(0.1, 0.1, 0.1), lowrank=lowrank)


def test_numba_cuda_in_simulator():
    if "numba-cuda" in BACKENDS:
        pytest.skip("numba-cuda already ran in this process (GPU or simulator)")
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1")
    args = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", __file__, "-k", "numba-cuda"]
    proc = subprocess.run(args, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert "4 passed" in proc.stdout, proc.stdout[-2000:]
