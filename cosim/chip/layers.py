"""Whole-chip layer programs: softmax, a quantized MLP and an attention head.

Each builder takes float32 data, quantizes it to MX on the host (``golden.mx.quantize``),
lays the operands out in HBM, and deals blocks of rows to every tile of every cluster: the
weights (or K and V) are loaded once per tile and stay in TSRAM, each row block is loaded,
run as one tile command list (MATMUL and TVP commands, with a BARRIER wherever one unit
reads what the other wrote: units run concurrently) and written back. The result
equals the layer definition in ``golden.layers`` bit for bit, on the golden chip model and on
the RTL; ``LayerHandle.reference()`` computes that definition from the same quantized
operands, without the chip.

    p = ChipProgram(spec.chip.TINY)
    h = p.mlp(x, w1, w2)                 # float32 (M, D), (D, H), (H, D2)
    res = p.run("verilator")
    assert (h.read(res) == h.reference()).all()
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from golden import layers as GL
from golden import mx
from golden import tile as gtile
from spec import tile as T

__all__ = ["LayerHandle", "softmax", "mlp", "attention"]

W = T.WORD_BYTES
CMD_BYTES = 16 * 32  # TSRAM offset 0: room for a 16-command list


@dataclass
class LayerHandle:
    """Where a layer's binary32 output (rows, n) sits in HBM, and its definition."""
    addr: int
    rows: int
    n: int
    pitch: int
    block_rows: int
    reference: Callable[[], np.ndarray]

    def read(self, res) -> np.ndarray:
        """The output as binary32 bits (uint32, (rows, n)) from a ProgramResult."""
        raw = res.hbm[self.addr:self.addr + self.rows * self.pitch].reshape(self.rows,
                                                                              self.pitch)
        return raw[:, :4 * self.n].copy().view(np.uint32)


class _Tsram:
    """Word-aligned bump allocation in one tile's TSRAM."""

    def __init__(self, start: int):
        self.top = start

    def take(self, nbytes: int) -> int:
        addr = -(-self.top // W) * W
        self.top = addr + nbytes
        return addr


def _f32(x, name: str, ndim: int = 2) -> np.ndarray:
    a = np.asarray(x)
    if a.dtype.kind != "f" or a.ndim != ndim or 0 in a.shape:
        raise ValueError(f"{name}: must be a non-empty {ndim}-D float array, got dtype "
                         f"{a.dtype} and shape {a.shape}")
    return np.ascontiguousarray(a, dtype=np.float32)


def _check_k(n: int, name: str, max_k: int) -> None:
    if n % 32 or n > max_k:
        raise ValueError(f"{name}: {n} must be a multiple of 32 and <= the tile's max_k "
                         f"({max_k})")


def _put_codes(p, codes, scales, fmt):
    """MX operand rows in HBM: (codes address, scales address, code pitch, scale pitch)."""
    rows, k = codes.shape
    cw, sw = T.code_row_words(k, fmt) * W, T.scale_row_words(k) * W
    pc = p.alloc(rows * cw)
    gtile.write_codes(p.hbm, pc, codes, fmt)
    ps = p.alloc(rows * sw)
    gtile.write_scales(p.hbm, ps, scales)
    return pc, ps, cw, sw


def _row_parallel(p, rows: int, resident, plan, block_rows, what: str) -> int:
    """Deal blocks of ``rows`` to every tile and emit the program.

    resident: [(hbm address, bytes)] loaded once per tile, at the TSRAM offsets returned by
    plan. plan(mb) -> (resident offsets, per-block inputs [(hbm address of row 0, row pitch,
    tsram offset)], command list for mb rows, outputs [(tsram offset, hbm address of row 0,
    row pitch)], TSRAM bytes used). Returns the block size used."""
    tsram = p.cfg.tile.tsram_bytes
    units = p.units()
    if block_rows is not None and (not isinstance(block_rows, int) or block_rows < 1):
        raise ValueError(f"block_rows: must be a positive int, got {block_rows!r}")
    # default: spread the rows over every tile, at most 64 rows a block
    mb = min(rows, block_rows) if block_rows else min(64, -(-rows // len(units)))
    if block_rows is None:
        while mb > 1 and plan(mb)[-1] > tsram:
            mb = max(1, mb // 2)
    if plan(mb)[-1] > tsram:
        raise ValueError(f"block_rows: {what} with {mb}-row blocks needs {plan(mb)[-1]} bytes "
                         f"of TSRAM, the tile has {tsram}")
    blocks = [(i, min(mb, rows - i)) for i in range(0, rows, mb)]
    work = {u: blocks[k::len(units)] for k, u in enumerate(units)}
    ch_in, ch_out = p.channels()
    steps = {}
    for (c, t), mine in work.items():
        if not mine:
            continue
        tb = p.cfg.tsram_base(c, t)
        q = c % p.cfg.queues
        seq = []
        for n, (i, m) in enumerate(mine):
            res_off, ins, cmds, outs, _ = plan(m)
            pl = p.put(np.frombuffer(cmds, dtype=np.uint8), 64)
            descs = []
            if n == 0:
                descs += [p.copy(h, tb + o, nb) for (h, nb), o in zip(resident, res_off)]
            descs += [p.copy(h + i * pitch, tb + o, m * pitch) for h, pitch, o in ins]
            descs.append(p.copy(pl, tb, len(cmds)))
            out = [p.copy(tb + o, h + i * pitch, m * pitch) for o, h, pitch in outs]
            seq.append(([("dma", c, ch_in, descs, q), ("wait", c, ch_in, False, q),
                         ("wait", c, ch_out, False, q), ("tile", c, t, q)],
                        [("wait", c, t, True, q), ("dma", c, ch_out, out, q)]))
        steps[(c, t)] = seq
    p.emit_rounds(steps)
    p.fence_all()
    return mb


def _softmax_cmds(s: int, rows: int, n: int, vec: _Tsram) -> bytes:
    """TVP commands of golden.layers.softmax on the (rows, n) binary32 block at s, in
    place; vec allocates the three row vectors."""
    m, tot, r = (vec.take(T.f32_row_words(rows) * W) for _ in range(3))
    return (T.cmd_tvp("rowmax", s, m, rows, n)
            + T.cmd_tvp("sub", s, s, rows, n, src2=m, src2_mode=T.SRC2_ROW)
            + T.cmd_tvp("mul", s, s, rows, n, imm=GL.LOG2E_BITS, src2_mode=T.SRC2_IMM)
            + T.cmd_tvp("exp2", s, s, rows, n)
            + T.cmd_tvp("rowsum", s, tot, rows, n)
            + T.cmd_tvp("rcp", tot, r, 1, rows)
            + T.cmd_tvp("mul", s, s, rows, n, src2=r, src2_mode=T.SRC2_ROW))


def softmax(p, x, *, block_rows: int | None = None) -> LayerHandle:
    """Row softmax (golden.layers.softmax) of float32 x (R, n) on every tile."""
    x = _f32(x, "x")
    R, n = x.shape
    bits = x.view(np.uint32)
    pitch = T.f32_row_words(n) * W
    src = p.alloc(R * pitch)
    gtile.write_matrix_f32(p.hbm, src, bits)
    dst = p.alloc(R * pitch)

    def plan(mb):
        ts = _Tsram(CMD_BYTES)
        s = ts.take(mb * pitch)
        cmds = _softmax_cmds(s, mb, n, ts) + T.cmd_end()
        return [], [(src, pitch, s)], cmds, [(s, dst, pitch)], ts.top

    mb = _row_parallel(p, R, [], plan, block_rows, "softmax")
    return LayerHandle(dst, R, n, pitch, mb, lambda: GL.softmax(bits))


def mlp(p, x, w1, w2, *, x_fmt: str = "e4m3", w_fmt: str = "e4m3", h_fmt: str = "e4m3",
        block_rows: int | None = None) -> LayerHandle:
    """Y = relu(X W1) quantized to ``h_fmt``, times W2 (golden.layers.mlp) on every tile.

    x float32 (M, D), w1 (D, H), w2 (H, D2); D and H multiples of 32, at most max_k. X is
    quantized along D, W1^T along D and W2^T along H on the host; the hidden activation is
    quantized on the tile (TVP QUANT). W1 and W2 stay resident in every tile's TSRAM."""
    x, w1, w2 = _f32(x, "x"), _f32(w1, "w1"), _f32(w2, "w2")
    M, D = x.shape
    if w1.shape[0] != D:
        raise ValueError(f"w1: must have {D} rows (x has {D} columns), got {w1.shape}")
    H = w1.shape[1]
    if w2.shape[0] != H:
        raise ValueError(f"w2: must have {H} rows (w1 has {H} columns), got {w2.shape}")
    D2 = w2.shape[1]
    max_k = p.cfg.tile.max_k
    _check_k(D, "x columns (D)", max_k)
    _check_k(H, "w1 columns (H)", max_k)
    xq, xs = mx.quantize(x, x_fmt)
    w1t, w1s = mx.quantize(np.ascontiguousarray(w1.T), w_fmt)
    w2t, w2s = mx.quantize(np.ascontiguousarray(w2.T), w_fmt)
    px, pxs, xcw, xsw = _put_codes(p, xq, xs, x_fmt)
    p1, p1s, w1cw, w1sw = _put_codes(p, w1t, w1s, w_fmt)
    p2, p2s, w2cw, w2sw = _put_codes(p, w2t, w2s, w_fmt)
    ypitch = T.f32_row_words(D2) * W
    py = p.alloc(M * ypitch)
    resident = [(p1, H * w1cw), (p1s, H * w1sw), (p2, D2 * w2cw), (p2s, D2 * w2sw)]
    hcw, hsw, c1w = T.code_row_words(H, h_fmt) * W, T.scale_row_words(H) * W, \
        T.f32_row_words(H) * W

    def plan(mb):
        ts = _Tsram(CMD_BYTES)
        res = [ts.take(nb) for _, nb in resident]
        b1, b1s, b2, b2s = res
        xa, xsa = ts.take(mb * xcw), ts.take(mb * xsw)
        c1 = ts.take(mb * c1w)
        ha, hsa = ts.take(mb * hcw), ts.take(mb * hsw)
        y = ts.take(mb * ypitch)
        cmds = (T.cmd_matmul(xa, xsa, b1, b1s, c1, mb, H, D, x_fmt, w_fmt)
                + T.cmd_barrier()  # the TVP reads what the TTU wrote
                + T.cmd_tvp("relu", c1, c1, mb, H)
                + T.cmd_tvp("quant", c1, ha, mb, H, src2=hsa, fmt=h_fmt)
                + T.cmd_barrier()
                + T.cmd_matmul(ha, hsa, b2, b2s, y, mb, D2, H, h_fmt, w_fmt)
                + T.cmd_end())
        return res, [(px, xcw, xa), (pxs, xsw, xsa)], cmds, [(y, py, ypitch)], ts.top

    mb = _row_parallel(p, M, resident, plan, block_rows, "mlp")
    p.macs += M * H * D + M * D2 * H
    return LayerHandle(py, M, D2, ypitch, mb,
                       lambda: GL.mlp(xq, xs, w1t, w1s, w2t, w2s, x_fmt, w_fmt, h_fmt))


def attention(p, q, k, v, *, fmt: str = "e4m3", p_fmt: str = "e4m3",
              block_rows: int | None = None) -> LayerHandle:
    """One attention head O = softmax(Q K^T / sqrt(d))_q V (golden.layers.attention).

    q float32 (L, d), k and v (Lk, d); d and Lk multiples of 32, at most max_k. Q and K are
    quantized along d, V^T along Lk on the host; the probabilities on the tile (TVP QUANT).
    K and V stay resident in every tile's TSRAM; rows of Q are dealt to the tiles."""
    q, k, v = _f32(q, "q"), _f32(k, "k"), _f32(v, "v")
    L, d = q.shape
    if k.shape[1] != d or v.shape != k.shape:
        raise ValueError(f"k, v: must both be (Lk, {d}), got {k.shape} and {v.shape}")
    Lk = k.shape[0]
    max_k = p.cfg.tile.max_k
    _check_k(d, "q columns (d)", max_k)
    _check_k(Lk, "k rows (Lk)", max_k)
    qq, qs = mx.quantize(q, fmt)
    kq, ks = mx.quantize(k, fmt)
    vt, vs = mx.quantize(np.ascontiguousarray(v.T), fmt)
    pq, pqs, qcw, qsw = _put_codes(p, qq, qs, fmt)
    pk, pks, kcw, ksw = _put_codes(p, kq, ks, fmt)
    pv, pvs, vcw, vsw = _put_codes(p, vt, vs, fmt)
    opitch = T.f32_row_words(d) * W
    po = p.alloc(L * opitch)
    resident = [(pk, Lk * kcw), (pks, Lk * ksw), (pv, d * vcw), (pvs, d * vsw)]
    spitch = T.f32_row_words(Lk) * W
    pcw, psw = T.code_row_words(Lk, p_fmt) * W, T.scale_row_words(Lk) * W

    def plan(mb):
        ts = _Tsram(CMD_BYTES)
        res = [ts.take(nb) for _, nb in resident]
        kb, kbs, vb, vbs = res
        qa, qsa = ts.take(mb * qcw), ts.take(mb * qsw)
        s = ts.take(mb * spitch)
        pa, psa = ts.take(mb * pcw), ts.take(mb * psw)
        o = ts.take(mb * opitch)
        cmds = (T.cmd_matmul(qa, qsa, kb, kbs, s, mb, Lk, d, fmt, fmt)
                + T.cmd_barrier()  # the TVP reads what the TTU wrote
                + T.cmd_tvp("mul", s, s, mb, Lk, imm=GL.inv_sqrt_bits(d),
                            src2_mode=T.SRC2_IMM)
                + _softmax_cmds(s, mb, Lk, ts)
                + T.cmd_tvp("quant", s, pa, mb, Lk, src2=psa, fmt=p_fmt)
                + T.cmd_barrier()
                + T.cmd_matmul(pa, psa, vb, vbs, o, mb, d, Lk, p_fmt, fmt)
                + T.cmd_end())
        return res, [(pq, qcw, qa), (pqs, qsw, qsa)], cmds, [(o, po, opitch)], ts.top

    mb = _row_parallel(p, L, resident, plan, block_rows, "attention")
    p.macs += 2 * L * Lk * d
    return LayerHandle(po, L, d, opitch, mb,
                       lambda: GL.attention(qq, qs, kq, ks, vt, vs, fmt, p_fmt))
