"""Tile test programs (TSRAM image + command lists) and the RTL-vs-golden checker.

Each builder returns ``(image, cmd_addrs, info)``; ``info`` names the output regions for
messages. Used by tests/test_tile_rtl.py, cosim/bench/tile.py and the replay examples.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from golden import mx
from golden.tile import GoldenTile, Program
from spec import dma as D
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
        T.cmd_raw([T.OP_BARRIER | 1 << 20]),                             # signal on a TCP op
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


def _lin(src, dst, n):
    """A 1-D tile-DMA descriptor copying n bytes (32-byte elements when aligned)."""
    e = 5 if src % 32 == 0 and dst % 32 == 0 and n % 32 == 0 else 0
    return D.Descriptor(src=src, dst=dst, counts=(n >> e, 1, 1), src_strides=(1 << e, 0, 0),
                        dst_strides=(1 << e, 0, 0), esize=e)


def dma_program(cfg, seed, M=8, N=8, K=256, fmt=("e4m3", "e2m1")):
    """Two GEMMs whose operands come from external memory by DMA and whose results go back
    by DMA; the second operand load overlaps the first MATMUL (semaphores 0, 1, 2).

    External memory layout: operands of GEMM g at ext offsets in ``info["ext_in"]``, in the
    TSRAM layouts; results written to ``info["ext_out"]`` as packed rows (4*N bytes, a 2-D
    descriptor strips the TSRAM row padding)."""
    rng = np.random.default_rng(seed)
    fa, fb = fmt
    p = Program(cfg, max_commands=16)
    ext = rng.integers(0, 256, cfg.ext_bytes, dtype=np.uint8)   # noise everywhere else
    X = T.DMA_EXT_BASE
    regs = T.matmul_regions(M, N, K, fa, fb)
    off = 4096
    gemms = []
    for _g in range(2):
        a, sa = _q(rng, (M, K), fa, 4.0)
        bt, sbt = _q(rng, (N, K), fb, 0.5)
        tmp = Program(T.TileConfig(tsram_bytes=1 << 20, banks=8))
        tmp.top = 0
        pa, psa = tmp.put_codes(a, fa), tmp.put_scales(sa)
        pb, psb = tmp.put_codes(bt, fb), tmp.put_scales(sbt)
        src = {"a": pa, "a_scale": psa, "b": pb, "b_scale": psb}
        dst = {k: p.alloc(regs[k]) for k in src}
        descs = []
        for k in src:
            ext[off:off + regs[k]] = tmp.img[src[k]:src[k] + regs[k]]
            descs.append(_lin(X + off, dst[k], regs[k]))
            off += regs[k]
        c = p.alloc(regs["c"])
        gemms.append((dst, c, p.put_dma_chain(descs)))
    pitch = T.f32_row_words(N) * T.WORD_BYTES
    outs = []
    for g in range(2):
        store = D.Descriptor(src=gemms[g][1], dst=X + off, counts=(N, M, 1),
                             src_strides=(4, pitch, 0), dst_strides=(4, 4 * N, 0), esize=2)
        outs.append((off, p.put_dma_chain([store])))
        off += 4 * N * M + 64
    (d0, c0, h0), (d1, c1, h1) = gemms
    p.cmd(T.cmd_dma(h0, signal=0))
    p.cmd(T.cmd_matmul(d0["a"], d0["a_scale"], d0["b"], d0["b_scale"], c0, M, N, K, fa, fb,
                       wait=0, signal=1))
    p.cmd(T.cmd_dma(h1, signal=0))                       # overlaps the first MATMUL
    p.cmd(T.cmd_matmul(d1["a"], d1["a_scale"], d1["b"], d1["b_scale"], c1, M, N, K, fa, fb,
                       wait=0, signal=1))
    p.cmd(T.cmd_dma(outs[0][1], wait=1))                  # overlaps the second MATMUL
    p.cmd(T.cmd_dma(outs[1][1], wait=1, signal=2))
    p.cmd(T.cmd_sem_wait(2))
    p.cmd(T.cmd_end())
    return p.image(), [0], {"ext": ext, "ext_out": [o for o, _ in outs], "M": M, "N": N,
                            "c": [c0, c1]}


def dma_error_program(cfg):
    """One list per tile-DMA error path, then a list that must still run; returns the
    expected error code of each list in ``info["codes"]``."""
    p = Program(cfg, max_commands=64)
    X = T.DMA_EXT_BASE
    src = p.put_f32(np.linspace(-4, 4, 16, dtype=np.float32).reshape(2, 8))
    dst = p.alloc_f32(2, 8)
    buf = p.alloc(256)
    good = _lin(X + 512, buf, 256)
    hole = cfg.tsram_bytes                 # between TSRAM and external memory: no window
    cases = [
        ("align", None, T.ERR_ADDR_ALIGN),
        ("range", None, T.ERR_ADDR_RANGE),
        ("src_window", [_lin(hole, buf, 64)], T.ERR_DMA | D.ERR_SRC_WINDOW),
        ("dst_window", [_lin(buf, X + cfg.ext_bytes - 32, 64)], T.ERR_DMA | D.ERR_DST_WINDOW),
        ("zero_count", [good, dataclasses.replace(good, counts=(0, 1, 1))],
         T.ERR_DMA | D.ERR_ZERO_COUNT),
        ("overlap", [_lin(buf, buf + 32, 64)], T.ERR_DMA | D.ERR_OVERLAP),
        ("bad_desc", [dataclasses.replace(good, reserved=1 << 5)], T.ERR_DMA | D.ERR_BAD_DESC),
        ("misaligned", [dataclasses.replace(good, src=X + 4)], T.ERR_DMA | D.ERR_MISALIGNED),
    ]
    heads = {}
    for name, descs, _ in cases:
        if descs is not None:
            heads[name] = p.put_dma_chain(descs)
    heads["desc_window"] = p.put_dma_chain([dataclasses.replace(good, next=hole)],
                                           link=False)
    cases.append(("desc_window", [], T.ERR_DMA | D.ERR_DESC_WINDOW))
    ok = p.put_dma_chain([good])
    buf2 = p.alloc(128)
    # recovery chain: external -> TSRAM, then a TSRAM -> TSRAM element-mode gather of every
    # other 4-byte element of what the first descriptor wrote
    gather = D.Descriptor(src=buf, dst=buf2, counts=(32, 1, 1), src_strides=(8, 0, 0),
                          dst_strides=(4, 0, 0), esize=2)
    ok2 = p.put_dma_chain([good, gather])
    addrs = []
    for i, (name, _, _) in enumerate(cases):
        addrs.append(p.new_list())
        p.cmd(T.cmd_tvp("scale2", src, dst, 2, 8, imm=i + 1))            # runs before
        if name == "align":
            p.cmd(T.cmd_dma(ok + 32))
        elif name == "range":
            p.cmd(T.cmd_dma(cfg.tsram_bytes))
        else:
            p.cmd(T.cmd_dma(heads[name], signal=0))
        # the list stops at the DMA error; these never run
        if i % 3 == 0:
            p.cmd(T.cmd_tvp("relu", src, dst, 2, 8, wait=0))                # dropped
            p.cmd(T.cmd_sem_wait(0))
        elif i % 3 == 1:
            p.cmd(T.cmd_barrier())
            p.cmd(T.cmd_tvp("relu", src, dst, 2, 8))
        p.cmd(T.cmd_end())                                  # i % 3 == 2: error while draining
    addrs.append(p.new_list())
    p.cmd(T.cmd_dma(ok2, signal=1))                                         # usable after
    p.cmd(T.cmd_tvp("exp2", src, dst, 2, 8, wait=1))
    p.cmd(T.cmd_end())
    ext = (np.arange(cfg.ext_bytes) * 7 % 251).astype(np.uint8)
    return p.image(), addrs, {"dst": dst, "buf": buf, "buf2": buf2, "ext": ext,
                              "codes": [c for _, _, c in cases] + [T.ERR_NONE]}


def compare(cfg, image, addrs, rtl: dict, gold=None, ext=None) -> list[str]:
    """Mismatch messages (empty if the RTL result equals the golden tile bit for bit)."""
    gold = gold or GoldenTile(cfg).run_lists(image, addrs, ext=ext)
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
    if rtl.get("ext") is not None:
        exp, got = gold[-1].ext, rtl["ext"]
        bad = np.flatnonzero(exp != got)
        for b in bad[:8]:
            msgs.append(f"external memory byte {b:#x} (DMA address {T.DMA_EXT_BASE + b:#x}) "
                        f"expected {exp[b]:#04x} got {got[b]:#04x}")
        if len(bad) > 8:
            msgs.append(f"... {len(bad)} external bytes differ in all")
    return msgs
