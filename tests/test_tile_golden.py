"""Golden tile: layouts, descriptors, TVP ops against independent references, error checks."""

from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest

from golden import mx, tvp
from golden.tile import GoldenTile, Program, check_command, read_matrix_f32
from spec import tile as T

CFG = T.TileConfig()


def rng_seed(seed):
    print(f"seed={seed}")
    return np.random.default_rng(seed)


def f32bits(x):
    return np.asarray(x, dtype=np.float32).view(np.uint32)


def interesting_f32(rng, n):
    """Random binary32 bit patterns biased to edge cases (zeros, subnormals, Inf, NaN)."""
    bits = rng.integers(0, 1 << 32, n, dtype=np.uint64).astype(np.uint32)
    edge = np.array([0, 0x80000000, 1, 0x80000001, 0x007FFFFF, 0x00800000, 0x7F7FFFFF,
                     0xFF7FFFFF, 0x7F800000, 0xFF800000, 0x7FC00000, 0x3F800000, 0xBF800000],
                    dtype=np.uint32)
    pick = rng.random(n) < 0.1
    bits[pick] = rng.choice(edge, pick.sum())
    normal = rng.standard_normal(n).astype(np.float32).view(np.uint32)
    use = rng.random(n) < 0.5
    bits[use] = normal[use]
    return bits


def same_or_both_nan(a, b):
    a, b = np.asarray(a, np.uint32), np.asarray(b, np.uint32)
    nan_a = (a & 0x7FFFFFFF) > 0x7F800000
    nan_b = (b & 0x7FFFFFFF) > 0x7F800000
    return (a == b) | (nan_a & nan_b)


# ----------------------------------------------------------------------------- descriptors

def test_descriptor_roundtrip():
    d = T.cmd_matmul(0x100, 0x200, 0x300, 0x400, 0x500, 7, 9, 96, "e2m1", "e5m2", True,
                     wait=3, signal=5)
    c = T.Command.decode(d)
    assert (c.opcode, c.a, c.a_scale, c.b, c.b_scale, c.c) == (T.OP_MATMUL, 0x100, 0x200,
                                                                0x300, 0x400, 0x500)
    assert (c.M, c.N, c.K, c.a_fmt, c.b_fmt, c.accumulate) == (7, 9, 96, 2, 1, 1)
    assert (c.wait_en, c.wait_sem, c.sig_en, c.sig_sem) == (1, 3, 1, 5)
    t = T.Command.decode(T.cmd_tvp("quant", 0x40, 0x80, 3, 64, src2=0xC0, fmt="e4m3"))
    assert (t.tvp_op, t.src1, t.dst, t.rows, t.n, t.src2, t.fmt) == (T.TVP_QUANT, 0x40, 0x80,
                                                                      3, 64, 0xC0, 0)


@pytest.mark.parametrize("call, arg", [
    (lambda: T.cmd_matmul(0, 0, 0, 0, 0, 1 << 16, 1, 32, "e4m3", "e4m3"), "M"),
    (lambda: T.cmd_matmul(0, 0, 0, 0, 0, 1, 1, 32, "fp8", "e4m3"), "a_fmt"),
    (lambda: T.cmd_tvp("tanh", 0, 0, 1, 8), "op"),
    (lambda: T.cmd_sem_wait(-1), "sem"),
    (lambda: T.cmd_matmul(0, 0, 0, 0, 0, 1, 1, 32, "e4m3", "e4m3", wait=16), "wait"),
])
def test_descriptor_bad_arguments(call, arg):
    with pytest.raises(ValueError, match=arg):
        call()


def test_config_validation():
    with pytest.raises(ValueError, match="cols"):
        T.TileConfig(cols=3)
    with pytest.raises(ValueError, match="window"):
        T.TileConfig(rows=8, window=4)
    with pytest.raises(ValueError, match="tsram_bytes"):
        T.TileConfig(tsram_bytes=1000)


# ----------------------------------------------------------------------------- matmul

@pytest.mark.parametrize("fa, fb", [("e4m3", "e4m3"), ("e2m1", "e2m1"), ("e5m2", "e2m1")])
def test_golden_matmul_layout(fa, fb):
    """The golden tile reads operands from the documented layout: equals mx.matmul."""
    rng = rng_seed(11)
    M, N, K = 5, 7, 96
    x = rng.standard_normal((M, K)).astype(np.float32)
    y = rng.standard_normal((K, N)).astype(np.float32)
    a, sa = mx.quantize(x, fa)
    bt, sbt = mx.quantize(y.T, fb)
    acc = rng.standard_normal((M, N)).astype(np.float32)
    p = Program(CFG)
    pc = p.put_matmul(a, sa, fa, bt.T, sbt.T, fb, c=acc, accumulate=True)
    p.cmd(T.cmd_end())
    res = GoldenTile(CFG).run(p.image())
    assert res.status == T.status_word(T.ST_DONE, 0, 1)
    want = mx.matmul(a, sa, fa, bt.T, sbt.T, fb, acc)
    np.testing.assert_array_equal(read_matrix_f32(res.tsram, pc, M, N), want)
    assert res.counters["macs_lo"] == M * N * K
    assert res.counters["cmds_retired"] == 2
    # the C padding of every row (N=7 -> 8 lanes) is left alone
    assert (res.tsram[pc + 28:pc + 32] == 0).all()


# ----------------------------------------------------------------------------- TVP vs numpy

@pytest.mark.parametrize("op, ref", [(T.TVP_ADD, np.add), (T.TVP_SUB, np.subtract),
                                     (T.TVP_MUL, np.multiply)])
def test_tvp_ieee_ops_vs_numpy(op, ref):
    rng = rng_seed(5)
    a, b = interesting_f32(rng, 20000), interesting_f32(rng, 20000)
    with np.errstate(all="ignore"):
        want = ref(a.view(np.float32), b.view(np.float32)).view(np.uint32)
    got = tvp.binary(op, a, b)
    bad = ~same_or_both_nan(got, want)
    assert not bad.any(), f"{bad.sum()} mismatches, first a={a[bad][0]:#x} b={b[bad][0]:#x}"
    assert (got[np.isnan(got.view(np.float32))] == 0x7FC00000).all()


def test_tvp_max_min_relu_scale2():
    rng = rng_seed(6)
    a, b = interesting_f32(rng, 5000), interesting_f32(rng, 5000)
    fa, fb = a.view(np.float32), b.view(np.float32)
    plain = ~np.isnan(fa) & ~np.isnan(fb) & ~((fa == 0) & (fb == 0))
    np.testing.assert_array_equal(tvp.fmax(a, b)[plain], np.maximum(fa, fb).view(np.uint32)[plain])
    np.testing.assert_array_equal(tvp.fmin(a, b)[plain], np.minimum(fa, fb).view(np.uint32)[plain])
    z = f32bits([0.0, -0.0])
    assert tvp.fmax(z[[1]], z[[0]])[0] == 0 and tvp.fmin(z[[0]], z[[1]])[0] == 0x80000000
    assert tvp.fmax(f32bits([np.nan]), f32bits([1.0]))[0] == 0x7FC00000
    r = tvp.unary(T.TVP_RELU, f32bits([-1.0, -0.0, 2.5, np.inf, -np.inf]))
    np.testing.assert_array_equal(r, f32bits([0.0, 0.0, 2.5, np.inf, 0.0]))
    fin = np.isfinite(fa)
    with np.errstate(all="ignore"):
        want = (fa * np.float32(2.0 ** -5)).view(np.uint32)
    np.testing.assert_array_equal(tvp.unary(T.TVP_SCALE2, a, -5)[fin], want[fin])
    with pytest.raises(ValueError, match="imm"):
        tvp.unary(T.TVP_SCALE2, a, 200)


def test_tvp_bf16_vs_ml_dtypes():
    rng = rng_seed(7)
    a = interesting_f32(rng, 20000)
    want = a.view(np.float32).astype(ml_dtypes.bfloat16).view(np.uint16)
    got = tvp.to_bf16(a)
    nan = np.isnan(a.view(np.float32))
    np.testing.assert_array_equal(got[~nan], want[~nan])
    assert (got[nan] == 0x7FC0).all()


def test_tvp_exp2_accuracy_and_specials():
    x = np.linspace(-149, 127.9, 200001).astype(np.float32)
    got = tvp.exp2(x.view(np.uint32)).view(np.float32).astype(np.float64)
    want = np.exp2(x.astype(np.float64))
    normal = want >= 2.0 ** -126
    rel = np.abs(got[normal] / want[normal] - 1)
    assert rel.max() < 4e-7, rel.max()
    sp = f32bits([np.nan, np.inf, -np.inf, 128.0, -149.5, 0.0, -0.0, 1.0, 3.0])
    np.testing.assert_array_equal(tvp.exp2(sp)[:7],
                                  [0x7FC00000, 0x7F800000, 0, 0x7F800000, 0, 0x3F800000,
                                   0x3F800000])
    assert tvp.exp2(sp)[8] == f32bits(8.0)


def test_tvp_rcp_accuracy_and_specials():
    x = np.concatenate([np.geomspace(1e-37, 1e37, 50001), -np.geomspace(1e-30, 1e30, 999)])
    x = x.astype(np.float32)
    got = tvp.rcp(x.view(np.uint32)).view(np.float32).astype(np.float64)
    rel = np.abs(got * x.astype(np.float64) - 1)
    assert rel.max() < 5e-7, rel.max()
    sp = f32bits([0.0, -0.0, np.inf, -np.inf, np.nan, 1e-40])
    np.testing.assert_array_equal(tvp.rcp(sp), [0x7F800000, 0xFF800000, 0, 0x80000000,
                                                0x7FC00000, 0x7F800000])


def test_tvp_row_reductions_order():
    """rowsum follows the documented order: lanes l, l+8, ... from -0, then the tree."""
    rng = rng_seed(8)
    n = 29
    x = (rng.standard_normal((6, n)) * 10.0 ** rng.integers(-6, 6, (6, n))).astype(np.float32)
    got = tvp.rowsum(x.view(np.uint32))
    for r in range(6):
        lanes = [np.float32(-0.0)] * 8
        for i in range(n):
            lanes[i % 8] = np.float32(lanes[i % 8] + x[r, i])
        l = lanes
        want = np.float32(np.float32(np.float32(l[0] + l[1]) + np.float32(l[2] + l[3]))
                          + np.float32(np.float32(l[4] + l[5]) + np.float32(l[6] + l[7])))
        assert got[r] == want.view(np.uint32), f"row {r}: {got[r]:#x} != {want.view(np.uint32):#x}"
    np.testing.assert_array_equal(tvp.rowmax(x.view(np.uint32)), x.max(axis=1).view(np.uint32))


def test_golden_quant_matches_mx_quantize():
    rng = rng_seed(9)
    x = (rng.standard_normal((3, 64)) * 100).astype(np.float32)
    x[1, 40] = np.inf
    for fmt in ("e4m3", "e5m2", "e2m1"):
        p = Program(CFG)
        src = p.put_f32(x)
        dst = p.alloc(3 * T.code_row_words(64, fmt) * 32)
        sdst = p.alloc(3 * 32)
        p.cmd(T.cmd_tvp("quant", src, dst, 3, 64, src2=sdst, fmt=fmt))
        p.cmd(T.cmd_end())
        res = GoldenTile(CFG).run(p.image())
        codes, scales = mx.quantize(x, fmt)
        from golden.tile import read_codes, read_scales
        np.testing.assert_array_equal(read_codes(res.tsram, dst, 3, 64, fmt), codes)
        np.testing.assert_array_equal(read_scales(res.tsram, sdst, 3, 64), scales)


# ----------------------------------------------------------------------------- errors

def _err(desc, cfg=CFG):
    return check_command(T.Command.decode(desc), cfg)


def test_check_command_error_codes():
    ok = T.cmd_matmul(1024, 2048, 3072, 4096, 5120, 2, 2, 32, "e4m3", "e4m3")
    assert _err(ok) == T.ERR_NONE
    assert _err(T.cmd_raw([0x3F])) == T.ERR_BAD_OPCODE
    assert _err(T.cmd_dma(4096)) == T.ERR_NONE
    assert _err(T.cmd_dma(4096 + 32)) == T.ERR_ADDR_ALIGN
    assert _err(T.cmd_dma(65536 - 64)) == T.ERR_NONE
    assert _err(T.cmd_dma(65536)) == T.ERR_ADDR_RANGE
    assert _err(T.cmd_dma(4096, signal=8)) == T.ERR_BAD_SEM
    assert _err(T.cmd_raw([T.OP_BARRIER | 1 << 20])) == T.ERR_BAD_OPCODE
    assert _err(T.cmd_raw([T.OP_NOP | 1 << 12])) == T.ERR_BAD_OPCODE
    assert _err(T.cmd_matmul(1024, 2048, 3072, 4096, 5120, 2, 2, 32, 3, 0)) == T.ERR_BAD_FORMAT
    assert _err(T.cmd_matmul(1024, 2048, 3072, 4096, 5120, 2, 2, 48, 0, 0)) == T.ERR_BAD_SHAPE
    assert _err(T.cmd_matmul(1024, 2048, 3072, 4096, 5120, 0, 2, 32, 0, 0)) == T.ERR_BAD_SHAPE
    assert _err(T.cmd_matmul(1024, 2048, 3072, 4096, 5120, 2, 2, 2048, 0, 0)) == T.ERR_BAD_SHAPE
    assert _err(T.cmd_matmul(1025, 2048, 3072, 4096, 5120, 2, 2, 32, 0, 0)) == T.ERR_ADDR_ALIGN
    assert _err(T.cmd_matmul(1024, 2048, 3072, 4096, 65536 - 32, 2, 2, 32, 0, 0)) \
        == T.ERR_ADDR_RANGE
    assert _err(T.cmd_sem_wait(8)) == T.ERR_BAD_SEM
    assert _err(T.cmd_sem_signal(0, 0)) == T.ERR_BAD_SEM
    assert _err(T.cmd_matmul(1024, 2048, 3072, 4096, 5120, 2, 2, 32, 0, 0, wait=9)) \
        == T.ERR_BAD_SEM
    assert _err(T.cmd_raw([T.OP_TVP, 0, 0, 0, 0, 1 | 8 << 16, 20])) == T.ERR_BAD_TVP_OP
    assert _err(T.cmd_tvp("add", 0, 64, 1, 8, src2_mode=3)) == T.ERR_BAD_TVP_OP
    assert _err(T.cmd_tvp("scale2", 0, 64, 1, 8, imm=-127)) == T.ERR_BAD_TVP_OP
    assert _err(T.cmd_tvp("quant", 0, 64, 1, 48, src2=128)) == T.ERR_BAD_SHAPE
    assert _err(T.cmd_tvp("exp2", 0, 65536 - 32, 2, 8)) == T.ERR_ADDR_RANGE


def test_golden_error_stops_list_and_tile_stays_usable():
    p = Program(CFG)
    src = p.put_f32(np.arange(8, dtype=np.float32))
    dst = p.alloc_f32(1, 8)
    p.cmd(T.cmd_tvp("relu", src, dst, 1, 8))
    p.cmd(T.cmd_raw([0x55]))
    p.cmd(T.cmd_tvp("exp2", src, dst, 1, 8))   # never runs
    p.cmd(T.cmd_end())
    second = p.new_list()
    p.cmd(T.cmd_tvp("exp2", src, dst, 1, 8))
    p.cmd(T.cmd_end())
    r1, r2 = GoldenTile(CFG).run_lists(p.image(), [0, second])
    assert r1.status == T.status_word(T.ST_ERROR, T.ERR_BAD_OPCODE, 1)
    np.testing.assert_array_equal(read_matrix_f32(r1.tsram, dst, 1, 8),
                                  f32bits(np.arange(8, dtype=np.float32))[None])
    assert r2.status == T.status_word(T.ST_DONE, 0, 1)
    np.testing.assert_array_equal(read_matrix_f32(r2.tsram, dst, 1, 8)[0],
                                  tvp.exp2(f32bits(np.arange(8, dtype=np.float32))))


def test_golden_semaphores_order_and_deadlock():
    p = Program(CFG)
    src = p.put_f32(np.full(8, 3.0, np.float32))
    dst = p.alloc_f32(1, 8)
    p.cmd(T.cmd_tvp("exp2", src, dst, 1, 8, wait=2))   # waits for the signal below
    p.cmd(T.cmd_sem_signal(2))
    p.cmd(T.cmd_end())
    r = GoldenTile(CFG).run(p.image())
    assert r.state == T.ST_DONE and not r.deadlock
    p = Program(CFG)
    p.cmd(T.cmd_sem_wait(1))
    p.cmd(T.cmd_end())
    r = GoldenTile(CFG).run(p.image())
    assert r.deadlock and r.state == T.ST_RUNNING


# ----------------------------------------------------------------------------- tile DMA

def test_golden_dma_gemm_against_numpy():
    """Operands DMA'd in from external memory, C DMA'd out with its row padding stripped:
    the external result equals golden.mx.matmul of the external operands."""
    from cosim.tile import programs as P
    from golden.tile import read_codes, read_scales

    M, N, K = 4, 12, 128
    image, addrs, info = P.dma_program(CFG, 3, M, N, K)
    r = GoldenTile(CFG).run(image, ext=info["ext"])
    assert r.status == T.status_word(T.ST_DONE, 0, 7)
    assert r.counters["dma_bytes"] == 2 * sum(
        v for k, v in T.matmul_regions(M, N, K, "e4m3", "e2m1").items() if k != "c") \
        + 2 * 4 * M * N
    for g in range(2):
        o = info["ext_out"][g]
        got = r.ext[o:o + 4 * M * N].view("<u4").reshape(M, N)
        # recompute from the TSRAM copies of the operands (placed by the DMA)
        c_addr = info["c"][g]
        desc = T.Command.decode(image[(1 + 2 * g) * 32:(2 + 2 * g) * 32].tobytes())
        a = read_codes(r.tsram, desc.a, M, K, "e4m3")
        sa = read_scales(r.tsram, desc.a_scale, M, K)
        bt = read_codes(r.tsram, desc.b, N, K, "e2m1")
        sbt = read_scales(r.tsram, desc.b_scale, N, K)
        want = mx.matmul(a, sa, "e4m3", bt.T, sbt.T, "e2m1")
        np.testing.assert_array_equal(got, want)
        np.testing.assert_array_equal(read_matrix_f32(r.tsram, c_addr, M, N), want)
    # the operands in TSRAM are the external bytes (first GEMM's A at ext offset 4096)
    a_bytes = T.matmul_regions(M, N, K, "e4m3", "e2m1")["a"]
    d1 = T.Command.decode(image[32:64].tobytes())
    np.testing.assert_array_equal(r.tsram[d1.a:d1.a + a_bytes], info["ext"][4096:4096 + a_bytes])


def test_golden_dma_2d_gather_against_numpy():
    from spec import dma as D
    p = Program(CFG)
    ext = np.random.default_rng(9).integers(0, 256, CFG.ext_bytes, dtype=np.uint8)
    dst = p.alloc(6 * 40)
    # 6 rows of 10 four-byte elements, source rows 100 bytes apart, every other element
    d = D.Descriptor(src=T.DMA_EXT_BASE + 1000, dst=dst, counts=(10, 6, 1),
                     src_strides=(8, 100, 0), dst_strides=(4, 40, 0), esize=2)
    p.cmd(T.cmd_dma(p.put_dma_chain([d])))
    p.cmd(T.cmd_end())
    r = GoldenTile(CFG).run(p.image(), ext=ext)
    want = np.stack([ext[1000 + 100 * i:1000 + 100 * i + 80].reshape(10, 8)[:, :4].ravel()
                     for i in range(6)])
    np.testing.assert_array_equal(r.tsram[dst:dst + 240].reshape(6, 40), want)
    assert r.counters["dma_bytes"] == 240 and r.counters["cmds_retired"] == 2
    np.testing.assert_array_equal(r.ext, ext)


def test_golden_dma_error_stops_list_and_drops_waiting_work():
    from cosim.tile import programs as P
    image, addrs, info = P.dma_error_program(CFG)
    res = GoldenTile(CFG).run_lists(image, addrs, ext=info["ext"])
    assert [r.error for r in res] == info["codes"]
    assert all(r.index == 1 for r in res[:-1]) and res[-1].state == T.ST_DONE
    # scale2 before the failing DMA ran, relu after it never did; the last list's exp2 did
    x = np.linspace(-4, 4, 16, dtype=np.float32).reshape(2, 8)
    np.testing.assert_array_equal(read_matrix_f32(res[-2].tsram, info["dst"], 2, 8),
                                  f32bits(x * np.float32(2.0 ** len(addrs[:-1]))))
    np.testing.assert_array_equal(read_matrix_f32(res[-1].tsram, info["dst"], 2, 8),
                                  tvp.exp2(f32bits(x)))


def test_golden_dma_argument_errors():
    with pytest.raises(ValueError, match="ext"):
        GoldenTile(CFG).run(np.zeros(CFG.tsram_bytes, np.uint8), ext=np.zeros(5, np.uint8))
    with pytest.raises(ValueError, match="ext_bytes"):
        T.TileConfig(ext_bytes=3000)
    with pytest.raises(ValueError, match="desc"):
        T.cmd_dma(-1)
    with pytest.raises(ValueError, match="descs"):
        Program(CFG).put_dma_chain([])


def test_cycle_model_bank_conflicts():
    """Conflict cycles: none without an overlapping MATMUL issue phase, accesses *
    share / (1 - share) under a full overlap, proportional to the overlap otherwise."""
    from golden.tile import CycleModel
    m = CycleModel(CFG)
    assert m.conflict_cycles(100, 0, 50, None) == 0
    assert m.conflict_cycles(100, 0, 50, (60, 200, 0.5)) == 0
    assert m.conflict_cycles(100, 100, 50, (60, 200, 0.5)) == 100
    assert m.conflict_cycles(100, 40, 40, (60, 200, 0.2)) == 12   # half overlapped: 50 * 0.25
    mm = m.matmul(T.Command.decode(T.cmd_matmul(0, 0, 0, 0, 0, 64, 64, 256, "e4m3", "e4m3")))
    # FP8 K=256: per 2x2 tile 2 B rows of 8 words + 1 scale word + 2 C words in 8 cycles
    assert 0.2 < mm["bank_share"] < 0.35
