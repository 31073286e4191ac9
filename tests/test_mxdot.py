"""MX dot-product unit and binary32 units: RTL against golden and against independent refs."""

from __future__ import annotations

import os
import random

import numpy as np
import pytest
from amaranth.sim import Simulator
from mxref import frac_to_f32

import cosim.mxdot as drv
from cosim.check import Mismatch, compare_words
from cosim.mxdot.vectors import describe, edge_vectors, golden_dot, random_vectors
from cosim.sim import default_sims
from rtl.fp32 import AddFP32, AlignAdd
from rtl.mxdot import MXDotUnit

SEED = int(os.environ.get("MAIA_SEED", random.randrange(1 << 30)))


def rng_for(name: str) -> np.random.Generator:
    seed = (SEED + sum(map(ord, name))) & 0xFFFFFFFF
    print(f"[seed] {name}: MAIA_SEED={SEED} -> {seed}")
    return np.random.default_rng(seed)


def amaranth_comb(dut, inputs: dict, outputs: list[str], n: int) -> dict:
    """Drive a combinational Amaranth component with n input vectors, collect outputs."""
    res = {o: [] for o in outputs}

    async def tb(ctx):
        for i in range(n):
            for k, v in inputs.items():
                ctx.set(getattr(dut, k), int(v[i]))
            for o in outputs:
                res[o].append(ctx.get(getattr(dut, o)))

    sim = Simulator(dut)
    sim.add_testbench(tb)
    sim.run()
    return {o: np.array(v, dtype=np.uint64) for o, v in res.items()}


# ----------------------------------------------------------------- binary32 units (Amaranth sim)

def test_addfp32_matches_numpy_float32():
    rng = rng_for("addfp32")
    n = 2000
    a = rng.integers(0, 1 << 32, n, dtype=np.uint64).astype(np.uint32)
    b = rng.integers(0, 1 << 32, n, dtype=np.uint64).astype(np.uint32)
    # near-cancellation and equal-exponent pairs, subnormal operands
    b[:600] = (a[:600] ^ 0x80000000) + rng.integers(-4, 5, 600).astype(np.uint32)
    b[600:800] = a[600:800]
    a[800:1000] &= 0x807FFFFF
    b[800:1000] &= 0x80FFFFFF
    edge = np.array([0, 0x80000000, 1, 0x80000001, 0x7F7FFFFF, 0xFF7FFFFF, 0x7F800000,
                     0xFF800000, 0x7FC00000, 0x7F800001, 0x00800000, 0x807FFFFF, 0x3F800000,
                     0xBF800000, 0x33800000, 0x4B800000, 0x34000000], np.uint32)
    ea, eb = np.meshgrid(edge, edge)
    a = np.concatenate([a, ea.ravel()])
    b = np.concatenate([b, eb.ravel()])
    with np.errstate(all="ignore"):
        exp = (a.view(np.float32) + b.view(np.float32)).view(np.uint32).copy()
    exp[np.isnan(exp.view(np.float32))] = 0x7FC00000
    got = amaranth_comb(AddFP32(), {"a": a, "b": b}, ["result"], len(a))["result"]
    compare_words("AddFP32 vs numpy float32", exp, got,
                  lambda i: f"a={int(a[i]):#010x} b={int(b[i]):#010x}")


def test_alignadd_wide_operand_exact():
    """acc (binary32) + S * 2^E with a 72-bit S, against exact rational rounding."""
    from fractions import Fraction

    rng = rng_for("alignadd")
    n = 1500
    dut = AlignAdd(24, 71)
    xs, xm, xe, ys, ym, ye, exp = [], [], [], [], [], [], []
    for i in range(n):
        m_acc = int(rng.integers(0, 1 << 24))
        e_acc = int(rng.integers(-149, 105))
        bits = int(rng.integers(1, 72))
        s_mag = int(rng.integers(0, 1 << 62)) >> (62 - min(bits, 62)) if bits <= 62 else \
            (int(rng.integers(0, 1 << 62)) << (bits - 62)) | int(rng.integers(0, 1 << 20))
        s_mag &= (1 << 71) - 1
        # keep exponents close in a third of the cases to force cancellation
        if i % 3 == 0:
            e_s = e_acc + 23 - max(s_mag.bit_length() - 1, 0) + int(rng.integers(-2, 3))
        else:
            e_s = int(rng.integers(-300, 200))
        sx, sy = int(rng.integers(0, 2)), int(rng.integers(0, 2))
        if i % 3 == 0:
            sy = 1 - sx
        v = (-1) ** sx * Fraction(m_acc) * Fraction(2) ** e_acc + \
            (-1) ** sy * Fraction(s_mag) * Fraction(2) ** e_s
        if m_acc == 0 and s_mag == 0:
            want = (sx & sy) << 31
        else:
            want = frac_to_f32(v, 0)
        xs.append(sx), xm.append(m_acc), xe.append(e_acc & 0xFFF)
        ys.append(sy), ym.append(s_mag), ye.append(e_s & 0xFFF)
        exp.append(want)
    got = amaranth_comb(dut, {"x_sign": xs, "x_mag": xm, "x_exp": xe, "y_sign": ys,
                              "y_mag": ym, "y_exp": ye}, ["result"], n)["result"]
    compare_words("AlignAdd vs exact rational", exp, got,
                  lambda i: f"x=({xs[i]},{xm[i]:#x},{xe[i]}) y=({ys[i]},{ym[i]:#x},{ye[i]})")


def test_mxdot_rejects_bad_parameters():
    with pytest.raises(ValueError, match="formats"):
        MXDotUnit(("e4m3", "fp16"))
    with pytest.raises(ValueError, match="formats"):
        MXDotUnit(())


def test_checker_catches_corrupted_result():
    vec, labels = edge_vectors()
    exp = golden_dot(vec)
    bad = exp.copy()
    bad[3] ^= 1
    with pytest.raises(Mismatch, match="1 of"):
        compare_words("corrupted", exp, bad, lambda i: describe(vec, i, labels))


# ----------------------------------------------------------------- RTL vs golden (cocotb)

def check_rtl(vec, sim, labels=None, **kw):
    res = drv.run(vec, sim=sim, **kw)
    exp = golden_dot(vec)
    compare_words(f"mxdot RTL ({sim}) vs golden", exp, res["out"],
                  lambda i: describe(vec, i, labels))
    assert not res["error"].any(), "error flag set on valid formats"
    return res


@pytest.mark.sim
@pytest.mark.parametrize("sim", default_sims())
def test_rtl_edge_vectors(sim):
    vec, labels = edge_vectors()
    res = check_rtl(vec, sim, labels)
    # fully pipelined: one beat per cycle with no backpressure
    beats = sum((vec["a"].shape[1] // 32 + 1) // 2 if fa == fb == "e2m1"
                else vec["a"].shape[1] // 32 for fa, fb in zip(vec["a_fmt"], vec["b_fmt"]))
    assert int(res["accept_cycles"]) == beats


@pytest.mark.sim
@pytest.mark.parametrize("sim", default_sims())
def test_rtl_random_all_pairs(sim):
    rng = rng_for(f"rtl-random-{sim}")
    n, K = (6, 96) if sim == "icarus" else (60, 160)
    vec = random_vectors(rng, n, K, special_rate=0.02)
    check_rtl(vec, sim)


@pytest.mark.sim
@pytest.mark.parametrize("sim", default_sims())
def test_rtl_backpressure_and_bubbles(sim):
    rng = rng_for(f"rtl-backpressure-{sim}")
    vec = random_vectors(rng, 3 if sim == "icarus" else 20, 96)
    check_rtl(vec, sim, ready_prob=0.6, valid_prob=0.7, seed=int(rng.integers(1 << 20)))


@pytest.mark.sim
def test_rtl_invalid_format_code_reports_error():
    """A beat with format code 3 sets `error` and yields NaN; later dot products are fine."""
    from cosim.mxdot import beats_to_array, encode_beats
    from cosim.sim import run_bench
    from rtl.mxdot import dot_input_layout

    sim = default_sims()[-1]
    vec, _ = edge_vectors()
    sel = slice(0, 4)
    sub = {k: v[sel] for k, v in vec.items()}
    beats, n = encode_beats(sub)
    off = dot_input_layout()["a_fmt"].offset
    beats[0] |= 3 << off  # first beat of the first dot product: code 3 is not a format
    nbytes = (dot_input_layout().size + 7) // 8
    res = run_bench(name="mxdot", toplevel="mxdot", make=lambda: MXDotUnit(),
                    params={"formats": ("e2m1", "e4m3", "e5m2")},
                    test_module=drv.BENCH_MODULE, sim=sim,
                    inputs={"beats": beats_to_array(beats, nbytes), "n_out": np.array(n),
                            "knobs": np.array([1.0, 1.0, 0.0])})
    assert list(res["error"]) == [1, 0, 0, 0]
    assert int(res["out"][0]) == 0x7FC00000
    compare_words("after error", golden_dot(sub)[1:], res["out"][1:])


@pytest.mark.sim
@pytest.mark.parametrize("formats", [("e4m3",), ("e2m1",), ("e4m3", "e5m2")])
def test_rtl_reduced_format_sets(formats):
    """Units built with fewer formats compute the same results on their formats."""
    rng = rng_for(f"rtl-formats-{formats}")
    pairs = [(a, b) for a in formats for b in formats]
    vec = random_vectors(rng, 3, 128, pairs=pairs)
    # Icarus: these small runs need no (slow) Verilator build of three more designs
    check_rtl(vec, "icarus" if "icarus" in default_sims() else "verilator", formats=formats)


@pytest.mark.slow
@pytest.mark.sim
def test_rtl_exhaustive_fp8_single_products():
    """All 256 x 256 code pairs of every FP8 pair in lane 0, against golden (Verilator)."""
    codes = np.arange(256, dtype=np.uint8)
    for fa in ("e4m3", "e5m2"):
        for fb in ("e4m3", "e5m2"):
            ga, gb = np.meshgrid(codes, codes, indexing="ij")
            n = ga.size
            a = np.zeros((n, 32), np.uint8)
            b = np.zeros((n, 32), np.uint8)
            a[:, 0], b[:, 0] = ga.ravel(), gb.ravel()
            vec = dict(a=a, b=b, a_scale=np.full((n, 1), 120, np.uint8),
                       b_scale=np.full((n, 1), 125, np.uint8), acc=np.zeros(n, np.uint32),
                       a_fmt=np.array([fa] * n), b_fmt=np.array([fb] * n))
            check_rtl(vec, "verilator")
