"""Tile test programs (TSRAM image + command lists) and the RTL-vs-golden checker.

Each builder returns ``(image, cmd_addrs, info)``; ``info`` names the output regions for
messages. Used by tests/test_tile_rtl.py, cosim/bench/tile.py and the replay examples.
"""

from __future__ import annotations

import numpy as np

from golden import mx
from golden.tile import GoldenTile, Program
from spec import tile as T
from spec.formats import BLOCK

PAIRS = [("e4m3", "e4m3"), ("e5m2", "e5m2"), ("e2m1", "e2m1"), ("e4m3", "e2m1"),
         ("e2m1", "e5m2"), ("e5m2", "e4m3")]


def _q(rng, shape, fmt, scale=1.0):
    x = (rng.standard_normal(shape) * scale).astype(np.float32)
    return mx.quantize(x, fmt)


def gemm_program(cfg, seed, shapes, pairs=PAIRS, specials=True):
    """Several MATMULs (shapes x format pairs), alternating accumulate, some NaN/Inf blocks."""
    rng = np.random.default_rng(seed)
    p = Program(cfg, max_commands=len(shapes) * len(pairs) + 2)
    outs = []
    for si, (M, N, K) in enumerate(shapes):
        for pi, (fa, fb) in enumerate(pairs):
            a, sa = _q(rng, (M, K), fa, 10.0 ** rng.integers(-3, 3))
            bt, sbt = _q(rng, (N, K), fb, 10.0 ** rng.integers(-3, 3))
            if specials and (si + pi) % 3 == 0:
                # an Inf element (e5m2 only has Inf), a NaN scale, a NaN element
                if fa == "e5m2":
                    a[0, min(5, K - 1)] = 0x7C
                sa[-1, -1] = 0xFF
                if fb == "e4m3":
                    bt[-1, 0] = 0x7F
            acc = None
            accumulate = (si + pi) % 2 == 1
            if accumulate:
                acc = (rng.standard_normal((M, N)) * 4).astype(np.float32)
            pc = p.put_matmul(a, sa, fa, bt.T, sbt.T, fb, c=acc, accumulate=accumulate)
            outs.append((f"C {M}x{N}x{K} {fa}x{fb} acc={accumulate}", pc, M, N))
    p.cmd(T.cmd_end())
    return p.image(), [0], {"outputs": outs}


def tvp_program(cfg, seed, rows=3, n=40):
    """Every TVP op once (all src2 modes), edge values included."""
    rng = np.random.default_rng(seed)
    p = Program(cfg, max_commands=24)
    x = (rng.standard_normal((rows, n)) * 3).astype(np.float32)
    x.flat[[1, 7, 12]] = [np.inf, -0.0, np.nan]
    x.flat[3] = 1e-40
    y = (rng.standard_normal((rows, n)) * 3).astype(np.float32)
    y.flat[[2, 7]] = [0.0, 0.0]
    xa, ya = p.put_f32(x), p.put_f32(y)
    rv = p.put_f32(np.array([[1.5, -2.0, np.inf, 0.25, 0, 0, 0, 0][:max(rows, 1)]],
                            dtype=np.float32))
    outs = []
    for op in ("add", "sub", "mul", "max", "min", "relu", "exp2", "copy", "rcp"):
        d = p.alloc_f32(rows, n)
        p.cmd(T.cmd_tvp(op, xa, d, rows, n, src2=ya))
        outs.append(op)
    for mode, src2, imm in ((T.SRC2_ROW, rv, 0), (T.SRC2_IMM, 0, 0x3FC00000)):
        p.cmd(T.cmd_tvp("mul", xa, p.alloc_f32(rows, n), rows, n, src2=src2, imm=imm,
                        src2_mode=mode))
    p.cmd(T.cmd_tvp("scale2", xa, p.alloc_f32(rows, n), rows, n, imm=-3))
    p.cmd(T.cmd_tvp("rowsum", ya, p.alloc_f32(1, rows), rows, n))
    p.cmd(T.cmd_tvp("rowmax", xa, p.alloc_f32(1, rows), rows, n))
    p.cmd(T.cmd_tvp("bf16", xa, p.alloc(rows * T.bf16_row_words(n) * 32), rows, n))
    nq = (n // BLOCK) * BLOCK or BLOCK
    z = p.put_f32((rng.standard_normal((rows, nq)) * 50).astype(np.float32))
    for fmt in ("e4m3", "e5m2", "e2m1"):
        p.cmd(T.cmd_tvp("quant", ya if False else z, p.alloc(rows * T.code_row_words(nq, fmt) * 32),
                        rows, nq, src2=p.alloc(rows * 32), fmt=fmt))
    p.cmd(T.cmd_end())
    return p.image(), [0], {"outputs": outs}


def pipeline_program(cfg, seed, M=4, N=16, K=64):
    """quantize -> matmul -> softmax (exp2 based) with semaphores between TVP and TTU, plus
    a second independent TVP job overlapping the matmul."""
    rng = np.random.default_rng(seed)
    p = Program(cfg, max_commands=32)
    x = rng.standard_normal((M, K)).astype(np.float32)
    wt, swt = _q(rng, (N, K), "e4m3")
    xa = p.put_f32(x)
    qa = p.alloc(M * T.code_row_words(K, "e4m3") * 32)
    qs = p.alloc(M * 32)
    wb, ws = p.put_codes(wt, "e4m3"), p.put_scales(swt)
    c = p.alloc_f32(M, N)
    mx_, sh, e, s, r, out = (p.alloc_f32(1, M), p.alloc_f32(M, N), p.alloc_f32(M, N),
                             p.alloc_f32(1, M), p.alloc_f32(1, M), p.alloc_f32(M, N))
    other = p.put_f32(rng.standard_normal((8, 64)).astype(np.float32))
    other_out = p.alloc_f32(8, 64)
    log2e = int(np.float32(1.4426950408889634).view(np.uint32))
    p.cmd(T.cmd_tvp("quant", xa, qa, M, K, src2=qs, fmt="e4m3", signal=0))
    p.cmd(T.cmd_matmul(qa, qs, wb, ws, c, M, N, K, "e4m3", "e4m3", wait=0, signal=1))
    p.cmd(T.cmd_tvp("exp2", other, other_out, 8, 64))          # overlaps the matmul
    p.cmd(T.cmd_tvp("rowmax", c, mx_, M, N, wait=1))
    p.cmd(T.cmd_tvp("sub", c, sh, M, N, src2=mx_, src2_mode=T.SRC2_ROW))
    p.cmd(T.cmd_tvp("mul", sh, sh, M, N, imm=log2e, src2_mode=T.SRC2_IMM))
    p.cmd(T.cmd_tvp("exp2", sh, e, M, N))
    p.cmd(T.cmd_tvp("rowsum", e, s, M, N))
    p.cmd(T.cmd_tvp("rcp", s, r, 1, M))
    p.cmd(T.cmd_tvp("mul", e, out, M, N, src2=r, src2_mode=T.SRC2_ROW, signal=2))
    p.cmd(T.cmd_sem_wait(2))
    p.cmd(T.cmd_barrier())
    p.cmd(T.cmd_end())
    return p.image(), [0], {"softmax": (out, M, N), "x": x, "w": (wt, swt)}


def error_program(cfg):
    """One list per error path, each followed by a list that must still run (usable tile)."""
    p = Program(cfg, max_commands=40)
    src = p.put_f32(np.linspace(-4, 4, 16, dtype=np.float32).reshape(2, 8))
    dst = p.alloc_f32(2, 8)
    big = cfg.tsram_bytes
    bad = [
        T.cmd_raw([0x3F]),                                               # BAD_OPCODE
        T.cmd_raw([T.OP_DMA]),                                           # reserved: BAD_OPCODE
        T.cmd_matmul(64, 64, 64, 64, 64, 1, 1, 32, 3, 0),                 # BAD_FORMAT
        T.cmd_matmul(64, 64, 64, 64, 64, 1, 1, 40, 0, 0),                 # BAD_SHAPE
        T.cmd_matmul(64, 64, 64, 64, big - 32, 4, 9, 32, 0, 0),           # ADDR_RANGE
        T.cmd_tvp("exp2", src + 4, dst, 2, 8),                           # ADDR_ALIGN
        T.cmd_sem_signal(cfg.n_sems),                                    # BAD_SEM
        T.cmd_raw([T.OP_TVP, src, 0, dst, 0, 2 | 8 << 16, 14]),          # BAD_TVP_OP
        T.cmd_tvp("quant", src, dst, 2, 8, src2=dst),                    # BAD_SHAPE
    ]
    addrs = []
    for i, d in enumerate(bad):
        addrs.append(p.new_list())
        p.cmd(T.cmd_tvp("scale2", src, dst, 2, 8, imm=i + 1))            # runs before the error
        p.cmd(d)
        p.cmd(T.cmd_tvp("relu", src, dst, 2, 8))                        # never runs
        p.cmd(T.cmd_end())
    addrs.append(p.new_list())
    p.cmd(T.cmd_tvp("exp2", src, dst, 2, 8))                            # usable after errors
    p.cmd(T.cmd_end())
    return p.image(), addrs, {"dst": dst}


def compare(cfg, image, addrs, rtl: dict, gold=None) -> list[str]:
    """Mismatch messages (empty if the RTL result equals the golden tile bit for bit)."""
    gold = gold or GoldenTile(cfg).run_lists(image, addrs)
    msgs = []
    for i, g in enumerate(gold):
        st = rtl["statuses"][i]
        if g.status != st:
            msgs.append(f"list {i} at {addrs[i]:#x}: status expected {g.status:#010x} "
                        f"got {st:#010x}")
        for k in T.EXACT_COUNTERS:
            if g.counters[k] != rtl["all_counters"][i][k]:
                msgs.append(f"list {i}: counter {k} expected {g.counters[k]} "
                            f"got {rtl['all_counters'][i][k]}")
    exp, got = gold[-1].tsram, rtl["image"]
    words = np.flatnonzero((exp != got).reshape(-1, T.WORD_BYTES).any(axis=1))
    for w in words[:8]:
        sl = slice(w * T.WORD_BYTES, (w + 1) * T.WORD_BYTES)
        msgs.append(f"TSRAM word {w} (byte {w * 32:#x}) expected "
                    f"{exp[sl][::-1].tobytes().hex()} got {got[sl][::-1].tobytes().hex()}")
    if len(words) > 8:
        msgs.append(f"... {len(words)} TSRAM words differ in all")
    return msgs
