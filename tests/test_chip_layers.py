"""Whole-chip layer programs (cosim.chip.layers) and GEMMs with K above the tile's max_k.

Golden chip model == the layer definition (golden.layers) bit for bit on several
configurations; the definitions themselves against float64 numpy within the error the
quantization allows; RTL == golden chip on Verilator (tiny chip).
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from cosim.chip.program import ChipProgram, compare
from cosim.sim import default_sims
from golden import layers as GL
from golden import mx
from spec import chip as C

TINY = C.TINY
SEED = int(os.environ.get("MX_SEED", "20261122"))


@pytest.fixture
def rng():
    print(f"seed {SEED} (MX_SEED to replay)")
    return np.random.default_rng(SEED)


def _f(bits):
    return np.asarray(bits, np.uint32).view(np.float32).astype(np.float64)


def _assert_same(got, exp, what):
    bad = np.argwhere(got != exp)
    assert bad.size == 0, (f"{what}: {len(bad)} of {exp.size} elements differ, first at "
                           f"{tuple(bad[0])}: expected {exp[tuple(bad[0])]:#010x}, got "
                           f"{got[tuple(bad[0])]:#010x}")


def _layers_program(cfg, rng, small=False):
    p = ChipProgram(cfg)
    L, Lk, d = (8, 32, 32) if small else (20, 64, 32)
    hs = p.softmax((rng.standard_normal((12 if small else 40, 72)) * 3).astype(np.float32))
    hm = p.mlp(rng.standard_normal((8 if small else 24, 64)).astype(np.float32),
               (rng.standard_normal((64, 64)) * 0.1).astype(np.float32),
               (rng.standard_normal((64, 40)) * 0.1).astype(np.float32), w_fmt="e2m1")
    ha = p.attention(*(rng.standard_normal((s, d)).astype(np.float32) for s in (L, Lk, Lk)))
    return p, {"softmax": hs, "mlp": hm, "attention": ha}


@pytest.mark.parametrize("name", ["tiny", "default", "small"])
def test_golden_layers_equal_their_definitions(name, rng):
    p, handles = _layers_program(C.config(name), rng)
    res = p.run("golden")
    assert all(q["ERR_COUNT"] == 0 for q in res.queues), res.queues
    for what, h in handles.items():
        _assert_same(h.read(res), h.reference(), f"{what} on {name}")


def test_layers_spread_rows_over_every_tile(rng):
    p, handles = _layers_program(C.DEFAULT, rng)
    units = len(p.units())
    for what, h in handles.items():
        assert h.block_rows == -(-h.rows // units), what
    assert all(p.entries[q] for q in range(p.cfg.queues))  # every queue got work


def test_softmax_definition_against_float64(rng):
    x = (rng.standard_normal((16, 100)) * 4).astype(np.float32)
    got = _f(GL.softmax(x))
    xd = x.astype(np.float64)
    ref = np.exp(xd - xd.max(1, keepdims=True))
    ref /= ref.sum(1, keepdims=True)
    assert np.max(np.abs(got - ref) / ref) < 2e-6
    # special rows: all -Inf but one, a +Inf (-> NaN by the IEEE ops), equal values
    s = np.zeros((3, 8), np.float32)
    s[0, :] = -np.inf
    s[0, 3] = 1.0
    s[1, 2] = np.inf
    out = _f(GL.softmax(s))
    assert abs(out[0, 3] - 1) < 1e-6 and (out[0, np.arange(8) != 3] == 0).all()
    assert np.isnan(out[1]).any()
    assert np.allclose(out[2], 1 / 8, rtol=1e-6)


def test_mlp_and_attention_definitions_approximate_float64(rng):
    x = rng.standard_normal((16, 64)).astype(np.float32)
    w1 = (rng.standard_normal((64, 96)) * 0.1).astype(np.float32)
    w2 = (rng.standard_normal((96, 32)) * 0.1).astype(np.float32)
    xq, xs = mx.quantize(x, "e4m3")
    w1t, w1s = mx.quantize(np.ascontiguousarray(w1.T), "e4m3")
    w2t, w2s = mx.quantize(np.ascontiguousarray(w2.T), "e4m3")
    y = _f(GL.mlp(xq, xs, w1t, w1s, w2t, w2s))
    ref = np.maximum(x.astype(np.float64) @ w1, 0) @ w2
    err = np.linalg.norm(y - ref) / np.linalg.norm(ref)
    print(f"mlp relative error vs float64: {err:.4f}")
    assert err < 0.1  # e4m3: 3 mantissa bits, three quantizations
    q, k, v = (rng.standard_normal((s, 32)).astype(np.float32) for s in (8, 64, 64))
    qq, qs = mx.quantize(q, "e4m3")
    kq, ks = mx.quantize(k, "e4m3")
    vt, vs = mx.quantize(np.ascontiguousarray(v.T), "e4m3")
    o = _f(GL.attention(qq, qs, kq, ks, vt, vs))
    sc = q.astype(np.float64) @ k.T.astype(np.float64) / np.sqrt(32)
    pr = np.exp(sc - sc.max(1, keepdims=True))
    pr /= pr.sum(1, keepdims=True)
    ref = pr @ v.astype(np.float64)
    err = np.linalg.norm(o - ref) / np.linalg.norm(ref)
    print(f"attention relative error vs float64: {err:.4f}")
    assert err < 0.15  # four e4m3 quantizations (Q, K, P, V)


@pytest.mark.parametrize("fa, fb", [("e4m3", "e4m3"), ("e2m1", "e5m2")])
def test_golden_gemm_with_k_above_max_k_equals_mx_matmul(fa, fb, rng):
    M, N, K = 24, 40, 3 * TINY.tile.max_k + 64  # three full chunks and a short one
    a, sa = mx.quantize(rng.standard_normal((M, K)).astype(np.float32), fa)
    bt, sbt = mx.quantize(rng.standard_normal((N, K)).astype(np.float32), fb)
    p = ChipProgram(TINY)
    h = p.gemm(a, sa, fa, bt.T, sbt.T, fb)
    res = p.run("golden")
    _assert_same(h.read(res), mx.matmul(a, sa, fa, bt.T, sbt.T, fb), f"K={K} {fa}x{fb}")
    assert res.regs["MACS_LO"] | res.regs["MACS_HI"] << 32 == M * N * K


def test_layer_builders_reject_bad_arguments():
    p = ChipProgram(TINY)
    x = np.zeros((8, 64), np.float32)
    w = np.zeros((64, 64), np.float32)
    with pytest.raises(ValueError, match="x"):
        p.softmax(np.zeros(8, np.float32))
    with pytest.raises(ValueError, match="x"):
        p.softmax(np.zeros((4, 4), np.int32))
    with pytest.raises(ValueError, match="w1"):
        p.mlp(x, np.zeros((32, 64), np.float32), w)
    with pytest.raises(ValueError, match="w2"):
        p.mlp(x, w, np.zeros((32, 8), np.float32))
    with pytest.raises(ValueError, match="D"):
        p.mlp(np.zeros((8, 48), np.float32), np.zeros((48, 64), np.float32), w)
    with pytest.raises(ValueError, match="k, v"):
        p.attention(x[:, :32], w[:, :32], w[:32, :32])
    with pytest.raises(ValueError, match="Lk"):
        p.attention(x[:, :32], np.zeros((512, 32), np.float32), np.zeros((512, 32),
                                                                          np.float32))
    with pytest.raises(ValueError, match="block_rows"):
        p.softmax(x, block_rows=0)
    with pytest.raises(ValueError, match="block_rows"):  # 256 rows x 64 f32 do not fit
        p.softmax(np.zeros((256, 64), np.float32), block_rows=256)
    with pytest.raises(ValueError, match="ring_slots"):
        ChipProgram(TINY, ring_slots=1)
    small = ChipProgram(TINY, ring_slots=8)
    with pytest.raises(ValueError, match="ring 0 is full"):
        small.softmax(np.zeros((64, 8), np.float32), block_rows=1)


def test_checker_catches_a_corrupted_output_and_mlp_applies_relu(rng):
    p = ChipProgram(TINY)
    h = p.mlp(rng.standard_normal((8, 64)).astype(np.float32),
              rng.standard_normal((64, 64)).astype(np.float32),
              rng.standard_normal((64, 32)).astype(np.float32))
    res = p.run("golden")
    _assert_same(h.read(res), h.reference(), "mlp")
    res.hbm[h.addr + h.pitch + 5] ^= 0x10  # one bit of row 1
    with pytest.raises(AssertionError, match="1 of 256 elements differ"):
        _assert_same(h.read(res), h.reference(), "mlp")
    q = ChipProgram(TINY)  # relu(x (-I)) I: no negative output
    hw = q.mlp(rng.standard_normal((8, 64)).astype(np.float32), -np.eye(64, dtype=np.float32),
               np.eye(64, 32, dtype=np.float32))
    out = _f(hw.read(q.run("golden")))
    assert (out >= 0).all() and (out > 0).any()


@pytest.mark.sim
@pytest.mark.parametrize("sim", [s if s == "verilator" else
                                 pytest.param(s, marks=pytest.mark.slow)  # ~15k cycles
                                 for s in default_sims()])
def test_rtl_layers_match_golden(sim, rng):
    """Softmax, MLP, attention and a K > max_k GEMM in one program on the tiny chip."""
    p, handles = _layers_program(TINY, rng, small=True)
    K = 2 * TINY.tile.max_k
    a, sa = mx.quantize(rng.standard_normal((8, K)).astype(np.float32), "e4m3")
    bt, sbt = mx.quantize(rng.standard_normal((16, K)).astype(np.float32), "e4m3")
    hg = p.gemm(a, sa, "e4m3", bt.T, sbt.T, "e4m3")
    g = p.run("golden")
    r = p.run(sim)
    errs = compare(g, r)
    assert not errs, f"RTL ({sim}) vs golden:\n" + "\n".join(errs)
    for what, h in handles.items():
        _assert_same(h.read(r), h.reference(), f"RTL {what}")
    _assert_same(hg.read(r), mx.matmul(a, sa, "e4m3", bt.T, sbt.T, "e4m3"), "RTL K=2*max_k")
    print(f"{sim}: layers program, RTL {r.cycles} cycles, golden estimate {g.cycles}")
