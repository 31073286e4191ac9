"""Golden tensor tile: command list + TSRAM image in -> TSRAM image, status, counters out.

Bit-exact twin of rtl/tile/ per the contract in docs/tile.md (layouts and codes in
spec/tile.py). MATMUL goes through golden.mx.matmul, QUANT through golden.mx.quantize; the
TVP ops are defined here in numpy float32 with a fixed operation order (golden/tvp.py).

Execution model (docs/tile.md "Command execution"): the TCP walks the list in order; unit
commands (MATMUL -> TTU, TVP -> TVP) are handed to their unit when it is idle and run
concurrently with the TCP; a unit command with ``wait`` takes one token from its semaphore
before it starts, one with ``signal`` adds one when it finishes. The golden tile runs every
unit command atomically when it starts; for programs whose data dependencies are ordered by
semaphores or barriers this gives the same memory image as any concurrent schedule.

Cycle estimate: a per-command model (``CycleModel``) scheduled with the same semantics; it
fills the non-exact counters (cycles, busy/stall) with estimates.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np

from golden import dma as gdma
from golden import mx, tvp
from spec import dma as D
from spec import tile as T
from spec.formats import BLOCK, FORMAT_BY_CODE

__all__ = ["GoldenTile", "TileResult", "Program", "check_command", "CycleModel", "read_matrix_f32",
           "write_matrix_f32"]

W = T.WORD_BYTES


# --------------------------------------------------------------------------- image helpers

def _image(tsram, cfg: T.TileConfig) -> np.ndarray:
    img = np.asarray(tsram)
    if img.dtype != np.uint8 or img.ndim != 1:
        raise ValueError(f"tsram: must be a 1-D uint8 array, got {img.dtype} {img.shape}")
    if img.size != cfg.tsram_bytes:
        raise ValueError(f"tsram: must hold {cfg.tsram_bytes} bytes (the configured TSRAM), "
                         f"got {img.size}")
    return img.copy()


def _rows(img, addr: int, rows: int, row_words: int, nbytes: int) -> np.ndarray:
    """rows x nbytes view-copy of padded rows starting at addr."""
    pitch = row_words * W
    block = img[addr:addr + rows * pitch].reshape(rows, pitch)
    return block[:, :nbytes].copy()


def _write_rows(img, addr: int, row_words: int, data: np.ndarray) -> None:
    data = np.ascontiguousarray(data, dtype=np.uint8)
    rows, nbytes = data.shape
    pitch = row_words * W
    view = img[addr:addr + rows * pitch].reshape(rows, pitch)
    view[:, :nbytes] = data


def read_matrix_f32(img, addr: int, rows: int, n: int) -> np.ndarray:
    """binary32 rows (uint32 [rows, n]) stored with word-padded rows at addr."""
    b = _rows(img, addr, rows, T.f32_row_words(n), 4 * n)
    return b.view("<u4").reshape(rows, n).astype(np.uint32)


def write_matrix_f32(img, addr: int, data) -> None:
    d = np.asarray(data, dtype=np.uint32)
    _write_rows(img, addr, T.f32_row_words(d.shape[1]), d.astype("<u4").view(np.uint8)
                .reshape(d.shape[0], -1))


def read_codes(img, addr: int, rows: int, k: int, fmt: str) -> np.ndarray:
    """Element codes (uint8 [rows, k], unpacked) stored row by row at addr."""
    nbytes = k * T.fmt_bits(fmt) // 8
    b = _rows(img, addr, rows, T.code_row_words(k, fmt), nbytes)
    return mx.unpack_e2m1(b) if fmt == "e2m1" else b


def write_codes(img, addr: int, codes, fmt: str) -> None:
    c = np.asarray(codes, dtype=np.uint8)
    data = mx.pack_e2m1(c) if fmt == "e2m1" else c
    _write_rows(img, addr, T.code_row_words(c.shape[1], fmt), data)


def read_scales(img, addr: int, rows: int, k: int) -> np.ndarray:
    return _rows(img, addr, rows, T.scale_row_words(k), k // BLOCK)


def write_scales(img, addr: int, scales) -> None:
    s = np.asarray(scales, dtype=np.uint8)
    _write_rows(img, addr, T.scale_row_words(s.shape[1] * BLOCK), s)


def read_vector_f32(img, addr: int, n: int) -> np.ndarray:
    return img[addr:addr + 4 * n].view("<u4").astype(np.uint32)


# --------------------------------------------------------------------------- checking

def _fmt_name(code: int) -> str:
    return FORMAT_BY_CODE[code].name


def _region_ok(cfg, addr, nbytes):
    return addr + nbytes <= cfg.tsram_bytes


def check_command(cmd: T.Command, cfg: T.TileConfig) -> int:
    """Error code of a descriptor (ERR_NONE if it may run), checks in the documented order."""
    op = cmd.opcode
    w0_extra = cmd.words[0] & ~0x1F_1FFF  # bits outside opcode/wait/signal fields
    if op not in T.IMPLEMENTED_OPCODES or w0_extra:
        return T.ERR_BAD_OPCODE
    unit = op in T.UNIT_OPCODES
    if not unit and (cmd.wait_en or cmd.sig_en or cmd.wait_sem or cmd.sig_sem):
        return T.ERR_BAD_OPCODE
    if unit and ((cmd.wait_en and cmd.wait_sem >= cfg.n_sems)
                 or (cmd.sig_en and cmd.sig_sem >= cfg.n_sems)):
        return T.ERR_BAD_SEM
    if op in (T.OP_SEM_WAIT, T.OP_SEM_SIGNAL):
        if cmd.sem >= cfg.n_sems or not 1 <= cmd.count <= 255:
            return T.ERR_BAD_SEM
        return T.ERR_NONE
    if op == T.OP_DMA:
        if cmd.dma_desc % T.DMA_DESC_ALIGN:
            return T.ERR_ADDR_ALIGN
        if cmd.dma_desc + T.DMA_DESC_BYTES > cfg.tsram_bytes:
            return T.ERR_ADDR_RANGE
        return T.ERR_NONE
    if op == T.OP_MATMUL:
        if cmd.a_fmt > 2 or cmd.b_fmt > 2:
            return T.ERR_BAD_FORMAT
        M, N, K = cmd.M, cmd.N, cmd.K
        if M == 0 or N == 0 or K == 0 or K % BLOCK or K > cfg.max_k:
            return T.ERR_BAD_SHAPE
        addrs = (cmd.a, cmd.a_scale, cmd.b, cmd.b_scale, cmd.c)
        if any(a % W for a in addrs):
            return T.ERR_ADDR_ALIGN
        reg = T.matmul_regions(M, N, K, _fmt_name(cmd.a_fmt), _fmt_name(cmd.b_fmt))
        sizes = (reg["a"], reg["a_scale"], reg["b"], reg["b_scale"], reg["c"])
        if not all(_region_ok(cfg, a, s) for a, s in zip(addrs, sizes)):
            return T.ERR_ADDR_RANGE
        return T.ERR_NONE
    if op == T.OP_TVP:
        o = cmd.tvp_op
        if o >= len(T.TVP_OPS) or (o in T.TVP_BINARY and cmd.src2_mode == 3):
            return T.ERR_BAD_TVP_OP
        if o == T.TVP_SCALE2 and not T.SCALE2_MIN <= _s32(cmd.imm) <= T.SCALE2_MAX:
            return T.ERR_BAD_TVP_OP
        if o == T.TVP_QUANT and cmd.fmt > 2:
            return T.ERR_BAD_FORMAT
        rows, n = cmd.rows, cmd.n
        if rows == 0 or n == 0 or (o == T.TVP_QUANT and n % BLOCK):
            return T.ERR_BAD_SHAPE
        regions = tvp_regions(cmd)
        if any(a % W for a, _ in regions):
            return T.ERR_ADDR_ALIGN
        if not all(_region_ok(cfg, a, s) for a, s in regions):
            return T.ERR_ADDR_RANGE
        return T.ERR_NONE
    return T.ERR_NONE


def _s32(v: int) -> int:
    return v - (1 << 32) if v & 0x80000000 else v


def tvp_regions(cmd: T.Command) -> list[tuple[int, int]]:
    """(address, bytes) of every TSRAM region a TVP command reads or writes."""
    o, rows, n = cmd.tvp_op, cmd.rows, cmd.n
    src = rows * T.f32_row_words(n) * W
    vec = T.f32_row_words(rows) * W
    out = [(cmd.src1, src)]
    if o in T.TVP_BINARY and cmd.src2_mode == T.SRC2_VECTOR:
        out.append((cmd.src2, src))
    elif o in T.TVP_BINARY and cmd.src2_mode == T.SRC2_ROW:
        out.append((cmd.src2, vec))
    if o in T.TVP_ELEMENTWISE:
        out.append((cmd.dst, src))
    elif o in T.TVP_ROW:
        out.append((cmd.dst, vec))
    elif o == T.TVP_QUANT:
        f = _fmt_name(cmd.fmt)
        out.append((cmd.dst, rows * T.code_row_words(n, f) * W))
        out.append((cmd.src2, rows * T.scale_row_words(n) * W))
    elif o == T.TVP_BF16:
        out.append((cmd.dst, rows * T.bf16_row_words(n) * W))
    return out


# --------------------------------------------------------------------------- execution

def exec_matmul(img, cmd: T.Command) -> None:
    fa, fb = _fmt_name(cmd.a_fmt), _fmt_name(cmd.b_fmt)
    M, N, K = cmd.M, cmd.N, cmd.K
    a = read_codes(img, cmd.a, M, K, fa)
    sa = read_scales(img, cmd.a_scale, M, K)
    bt = read_codes(img, cmd.b, N, K, fb)           # B stored as N rows of K (transposed)
    sbt = read_scales(img, cmd.b_scale, N, K)
    acc = read_matrix_f32(img, cmd.c, M, N) if cmd.accumulate else None
    c = mx.matmul(a, sa, fa, bt.T, sbt.T, fb, acc)
    write_matrix_f32(img, cmd.c, c)


def exec_tvp(img, cmd: T.Command) -> None:
    o, rows, n = cmd.tvp_op, cmd.rows, cmd.n
    x = read_matrix_f32(img, cmd.src1, rows, n)
    if o in T.TVP_BINARY:
        if cmd.src2_mode == T.SRC2_VECTOR:
            y = read_matrix_f32(img, cmd.src2, rows, n)
        elif cmd.src2_mode == T.SRC2_ROW:
            y = np.broadcast_to(read_vector_f32(img, cmd.src2, rows)[:, None], (rows, n))
        else:
            y = np.full((rows, n), cmd.imm, dtype=np.uint32)
        write_matrix_f32(img, cmd.dst, tvp.binary(o, x, y))
    elif o in T.TVP_ELEMENTWISE:
        write_matrix_f32(img, cmd.dst, tvp.unary(o, x, _s32(cmd.imm)))
    elif o in T.TVP_ROW:
        r = tvp.rowsum(x) if o == T.TVP_ROWSUM else tvp.rowmax(x)
        img[cmd.dst:cmd.dst + 4 * rows] = r.astype("<u4").view(np.uint8)
    elif o == T.TVP_QUANT:
        f = _fmt_name(cmd.fmt)
        codes, scales = mx.quantize(x.view(np.float32), f)
        write_codes(img, cmd.dst, codes, f)
        write_scales(img, cmd.src2, scales)
    elif o == T.TVP_BF16:
        h = tvp.to_bf16(x)
        _write_rows(img, cmd.dst, T.bf16_row_words(n), h.astype("<u2").view(np.uint8)
                    .reshape(rows, 2 * n))
    else:  # pragma: no cover - check_command rejects it
        raise AssertionError(f"unhandled TVP op {o}")


def exec_dma(img, ext, cmd: T.Command, cfg: T.TileConfig) -> gdma.ChannelResult:
    """Run the tile-DMA chain at ``cmd.dma_desc`` on TSRAM ``img`` and external memory
    ``ext`` (both updated in place) with golden.dma in the tile-DMA address space."""
    flat = np.zeros(T.DMA_EXT_BASE + cfg.ext_bytes, dtype=np.uint8)
    flat[:cfg.tsram_bytes] = img
    flat[T.DMA_EXT_BASE:] = ext
    res = gdma.run(flat, [cmd.dma_desc], cfg.dma_windows(), data_width=T.DMA_DATA_WIDTH,
                   max_burst=T.DMA_MAX_BURST)
    ch = res.channels[0]
    # TSRAM words and bursts of the chain's completed descriptors (performance model)
    ch.tsram_words = ch.tsram_rd_bursts = ch.tsram_wr_bursts = ch.tsram_rd_descs = 0
    a = cmd.dma_desc
    for _ in range(ch.desc_count):
        d = D.Descriptor.unpack(bytes(flat[a:a + T.DMA_DESC_BYTES]))
        c0, c1, c2 = d.counts
        if d.src_strides[0] == d.dst_strides[0] == d.elem_bytes:   # row mode (aligned rows)
            row_words = -(-c0 * d.elem_bytes // W)
            bursts = c1 * c2 * -(-row_words // T.DMA_MAX_BURST)
        else:                                                        # element mode
            row_words = c0
            bursts = c0 * c1 * c2
        rd, wr = d.src < cfg.tsram_bytes, d.dst < cfg.tsram_bytes
        ch.tsram_words += c1 * c2 * row_words * (rd + wr)
        ch.tsram_rd_bursts += bursts * rd
        ch.tsram_wr_bursts += bursts * wr
        ch.tsram_rd_descs += rd
        a = d.next
    img[:] = res.mem[:cfg.tsram_bytes]
    ext[:] = res.mem[T.DMA_EXT_BASE:]
    return ch


# --------------------------------------------------------------------------- cycle model

@dataclass
class CycleModel:
    """Documented performance model of the RTL tile (docs/tile.md "Performance model").

    TCP: ``fetch`` cycles per command (fetch request, data, execute); a unit command starts
    ``launch`` cycles after it is placed in its slot. MATMUL: the loader's windows for the
    first tile, +2 (fill); then tiles of max(beats, loader windows per tile) cycles, plus
    a stall at each new row panel when its A panel cannot be hidden behind one tile; then
    ``mm_drain`` + R cycles (pipeline and stores). TVP: cycles per word or block by op.
    DMA: ``dma_ctl`` cycles of CSR traffic (HEAD, DOORBELL, final STATUS/ERROR/BYTES reads)
    plus golden.dma.PerfModel's estimate of the engine's busy time, plus the TSRAM bridge's
    gaps: ``dma_wr_gap`` cycles per burst written to TSRAM (AW, B) or ``dma_rd_gap`` per
    burst read from it, whichever is larger (reads and writes overlap), plus
    ``dma_rd_lat`` per descriptor that reads TSRAM (first data later than from m_axi).
    TSRAM bank conflicts are not modelled.
    """
    cfg: T.TileConfig
    fetch: int = 3
    launch: int = 2
    mm_drain: int = 5
    dma_ctl: int = 10
    dma_wr_gap: int = 2
    dma_rd_gap: int = 1
    dma_rd_lat: int = 5

    def dma(self, ch: gdma.ChannelResult) -> int:
        return (self.dma_ctl + ch.est_cycles + (3 if ch.status == D.ST_ERROR else 0)
                + max(self.dma_wr_gap * ch.tsram_wr_bursts,
                      self.dma_rd_gap * ch.tsram_rd_bursts)
                + self.dma_rd_lat * ch.tsram_rd_descs)

    def matmul(self, cmd: T.Command) -> dict:
        cfg = self.cfg
        fa, fb = _fmt_name(cmd.a_fmt), _fmt_name(cmd.b_fmt)
        M, N, K = cmd.M, cmd.N, cmd.K
        nb = K // BLOCK
        dual = fa == "e2m1" and fb == "e2m1"
        beats = -(-nb // 2) if dual else nb
        tm, tn = -(-M // cfg.rows), -(-N // cfg.cols)
        P = cfg.window
        sw = T.scale_row_words(K)
        aw, bw = T.code_row_words(K, fa), T.code_row_words(K, fb)
        w_b = cfg.cols * -(-bw // P) + sw + (1 if cmd.accumulate else 0)
        w_a = cfg.rows * -(-aw // P) + sw
        per_tile = max(beats, w_b)
        panel_stall = max(0, w_a + w_b + 2 - per_tile)
        issue = tm * tn * per_tile + (tm - 1) * panel_stall
        fill = w_a + w_b + 2
        drain = self.mm_drain + cfg.rows
        # TSRAM words the TTU moves in its issue phase (loader windows, A panels, C stores)
        words = (tm * tn * (cfg.cols * bw + sw + (cfg.cols if cmd.accumulate else 0)
                            + cfg.rows) + tm * (cfg.rows * aw + sw))
        share = min(0.9, words / max(1, issue * cfg.banks))
        return {"cycles": fill + issue + drain, "fill": fill, "issue": issue,
                "beats": tm * tn * beats, "bank_share": share}

    def conflict_cycles(self, accesses: int, start: int, dur: int, ttu) -> int:
        """Bank-conflict cycles of ``accesses`` TSRAM words spread over [start, start+dur)
        by a unit below the TTU in priority (DMA, TVP), while the TTU command ``ttu``
        = (issue_start, issue_end, bank_share) runs: each word overlapping the TTU's issue
        phase retries share / (1 - share) times on average (a bank is taken by the TTU
        with probability share)."""
        if ttu is None or dur <= 0:
            return 0
        i0, i1, share = ttu
        ov = max(0, min(start + dur, i1) - max(start, i0))
        return round(accesses * ov / dur * share / (1 - share))

    def tvp(self, cmd: T.Command) -> int:
        o, rows, n = cmd.tvp_op, cmd.rows, cmd.n
        rw = T.f32_row_words(n)
        words = rows * rw
        if o in T.TVP_ROW:
            return 1 + rows * (5 + 3 * rw)
        if o == T.TVP_QUANT:
            return 1 + rows * (n // BLOCK) * 28
        if o == T.TVP_EXP2:
            per = 14
        elif o == T.TVP_RCP:
            per = 3 + 3 * T.RCP_STEPS + 1
        elif o == T.TVP_BF16:
            per = 3
        elif o in T.TVP_BINARY and cmd.src2_mode != T.SRC2_IMM:
            per = 6
        else:
            per = 4
        return 1 + words * per


def tvp_accesses(cmd: T.Command) -> int:
    """TSRAM words a TVP command reads and writes (bank-conflict model)."""
    o = cmd.tvp_op
    src = tvp_words(cmd)
    if o in T.TVP_ROW:
        return src + T.f32_row_words(cmd.rows)
    if o == T.TVP_QUANT:
        return src + cmd.rows * (T.code_row_words(cmd.n, _fmt_name(cmd.fmt))
                                 + T.scale_row_words(cmd.n))
    two = o in T.TVP_BINARY and cmd.src2_mode == T.SRC2_VECTOR
    return src * (3 if two else 2)


def tvp_words(cmd: T.Command) -> int:
    """Words of src1 the TVP reads for a command (the exact ``tvp_words`` counter)."""
    words = cmd.rows * T.f32_row_words(cmd.n)
    return 2 * words if cmd.tvp_op == T.TVP_QUANT else words


# --------------------------------------------------------------------------- the tile

@dataclass
class TileResult:
    tsram: np.ndarray
    status: int
    counters: dict[str, int]
    deadlock: bool = False
    log: list = field(default_factory=list)
    ext: np.ndarray | None = None    # external memory of the tile DMA (after the run)

    @property
    def state(self):
        return T.status_fields(self.status)[0]

    @property
    def error(self):
        return T.status_fields(self.status)[1]

    @property
    def index(self):
        return T.status_fields(self.status)[2]


class GoldenTile:
    """Run command lists on a TSRAM image, bit-exact with rtl/tile (see module docstring)."""

    def __init__(self, cfg: T.TileConfig | None = None):
        if cfg is None:
            cfg = T.TileConfig()
        if not isinstance(cfg, T.TileConfig):
            raise TypeError(f"cfg: must be a spec.tile.TileConfig, got {type(cfg).__name__}")
        self.cfg = cfg
        self.model = CycleModel(cfg)

    def run_lists(self, tsram, cmd_addrs, ext=None) -> list[TileResult]:
        """Run several command lists one after the other on the same TSRAM image (and
        external memory)."""
        out = []
        img = tsram
        for a in cmd_addrs:
            res = self.run(img, a, ext=ext)
            out.append(res)
            img, ext = res.tsram, res.ext
        return out

    def run(self, tsram, cmd_addr: int = 0, max_commands: int = 1 << 16,
            ext=None) -> TileResult:
        """Run the list at ``cmd_addr``. ``ext``: the external memory of the tile DMA
        (uint8 [cfg.ext_bytes], zeros if None); the result carries it in ``ext``."""
        cfg = self.cfg
        img = _image(tsram, cfg)
        if not isinstance(cmd_addr, int) or cmd_addr < 0:
            raise ValueError(f"cmd_addr: must be a non-negative int, got {cmd_addr!r}")
        if ext is None:
            ext = np.zeros(cfg.ext_bytes, dtype=np.uint8)
        ext = np.asarray(ext)
        if ext.dtype != np.uint8 or ext.shape != (cfg.ext_bytes,):
            raise ValueError(f"ext: must be a uint8 array of cfg.ext_bytes={cfg.ext_bytes} "
                             f"bytes, got {ext.dtype} {ext.shape}")
        ext = ext.copy()
        self._ext = ext
        cnt = dict.fromkeys(T.COUNTERS, 0)
        sems = [0] * cfg.n_sems
        tokens: list[list[int]] = [[] for _ in range(cfg.n_sems)]  # signal times (estimate)
        pending: dict[str, tuple[int, T.Command, int] | None] = {"ttu": None, "tvp": None,
                                                                  "dma": None}
        unit_end = {"ttu": 0, "tvp": 0, "dma": 0}
        fail = False     # the tile DMA stopped a chain with an error
        ttu_issue = None  # (issue start, issue end, bank share) of the last MATMUL
        macs = 0
        t_tcp = 1
        idx = 0
        state, err = T.ST_RUNNING, T.ERR_NONE
        stopping = False     # END or error seen: wait for the units to drain
        log = []
        if cmd_addr % W:
            state, err, stopping = T.ST_ERROR, T.ERR_ADDR_ALIGN, True
        while True:
            progress = False
            # units: start (atomically execute) a pending command when its wait is met
            for u in ("ttu", "tvp", "dma"):
                if pending[u] is None or fail:
                    continue
                i, cmd, t_disp = pending[u]
                if cmd.wait_en:
                    if sems[cmd.wait_sem] == 0:
                        continue
                    sems[cmd.wait_sem] -= 1
                    t_tok = tokens[cmd.wait_sem].pop(0) if tokens[cmd.wait_sem] else 0
                else:
                    t_tok = 0
                start = max(t_disp, t_tok, unit_end[u])
                if u == "ttu":
                    exec_matmul(img, cmd)
                    est = self.model.matmul(cmd)
                    dur = est["cycles"]
                    cnt["ttu_busy"] += dur
                    cnt["ttu_fill"] += est["fill"]
                    cnt["ttu_issue"] += est["issue"]
                    cnt["ttu_stall"] += est["issue"] - est["beats"]
                    cnt["ttu_beats"] += est["beats"]
                    macs += cmd.M * cmd.N * cmd.K
                    i0 = start + est["fill"]
                    ttu_issue = (i0, i0 + est["issue"], est["bank_share"])
                elif u == "tvp":
                    exec_tvp(img, cmd)
                    dur = self.model.tvp(cmd)
                    dur += self.model.conflict_cycles(tvp_accesses(cmd), start, dur, ttu_issue)
                    cnt["tvp_busy"] += dur
                    cnt["tvp_words"] += tvp_words(cmd)
                else:
                    ch = exec_dma(img, ext, cmd, cfg)
                    dur = self.model.dma(ch)
                    dur += self.model.conflict_cycles(ch.tsram_words, start, dur, ttu_issue)
                    cnt["dma_busy"] += dur
                    cnt["dma_bytes"] += ch.bytes
                unit_end[u] = start + dur
                log.append((i, u, start, start + dur))
                pending[u] = None
                progress = True
                if u == "dma" and ch.status == D.ST_ERROR:
                    # the list stops: commands not started yet are dropped, no signal
                    fail = True
                    if err == T.ERR_NONE:
                        state, err, idx = T.ST_ERROR, T.ERR_DMA | ch.error, i
                    stopping = True
                    for v in pending:
                        pending[v] = None
                    break
                cnt["cmds_retired"] += 1
                if cmd.sig_en:
                    sems[cmd.sig_sem] = (sems[cmd.sig_sem] + 1) & 0xFF
                    tokens[cmd.sig_sem].append(start + dur)
                pending[u] = None
                progress = True
            # TCP
            if stopping:
                if all(p is None for p in pending.values()):
                    t_end = max([t_tcp, *[e + 1 for e in unit_end.values()]]) + 1
                    if state == T.ST_RUNNING:
                        state = T.ST_DONE
                        cnt["cmds_retired"] += 1  # END
                    break
                if not progress:
                    return self._finish(img, T.ST_RUNNING, err, idx, cnt, macs, t_tcp,
                                        True, log)
                continue
            if idx >= max_commands:
                raise ValueError(f"max_commands: command list longer than {max_commands} "
                                 "without END")
            addr = cmd_addr + idx * T.DESC_BYTES
            if addr + T.DESC_BYTES > cfg.tsram_bytes:
                state, err, stopping = T.ST_ERROR, T.ERR_CMD_RANGE, True
                continue
            cmd = T.Command.decode(img[addr:addr + T.DESC_BYTES].tobytes())
            e = check_command(cmd, cfg)
            if e != T.ERR_NONE:
                state, err, stopping = T.ST_ERROR, e, True
                t_tcp += self.model.fetch
                continue
            op = cmd.opcode
            if op in T.UNIT_OPCODES:
                u = {T.OP_MATMUL: "ttu", T.OP_TVP: "tvp", T.OP_DMA: "dma"}[op]
                if pending[u] is not None:
                    if not progress:
                        return self._finish(img, T.ST_RUNNING, err, idx, cnt, macs, t_tcp,
                                            True, log)
                    continue
                t_tcp = max(t_tcp + self.model.fetch, unit_end[u] + 1)
                pending[u] = (idx, cmd, t_tcp + self.model.launch)
            elif op == T.OP_SEM_WAIT:
                if sems[cmd.sem] < cmd.count:
                    if not progress:
                        return self._finish(img, T.ST_RUNNING, err, idx, cnt, macs, t_tcp,
                                            True, log)
                    continue
                sems[cmd.sem] -= cmd.count
                toks = [tokens[cmd.sem].pop(0) for _ in range(min(cmd.count,
                                                                  len(tokens[cmd.sem])))]
                t_tcp = max([t_tcp + self.model.fetch, *toks])
                cnt["cmds_retired"] += 1
            elif op == T.OP_SEM_SIGNAL:
                sems[cmd.sem] = (sems[cmd.sem] + cmd.count) & 0xFF
                t_tcp += self.model.fetch
                tokens[cmd.sem].extend([t_tcp] * cmd.count)
                cnt["cmds_retired"] += 1
            elif op == T.OP_BARRIER:
                if any(p is not None for p in pending.values()):
                    if not progress:
                        return self._finish(img, T.ST_RUNNING, err, idx, cnt, macs, t_tcp,
                                            True, log)
                    continue
                t_tcp = max([t_tcp + self.model.fetch, *unit_end.values()])
                cnt["cmds_retired"] += 1
            elif op == T.OP_END:
                t_tcp += self.model.fetch
                stopping = True
                continue
            else:  # NOP
                t_tcp += self.model.fetch
                cnt["cmds_retired"] += 1
            idx += 1
        return self._finish(img, state, err, idx, cnt, macs, t_end, False, log)

    def _finish(self, img, state, err, idx, cnt, macs, t_end, deadlock, log):
        cnt["macs_lo"] = macs & 0xFFFFFFFF
        cnt["macs_hi"] = (macs >> 32) & 0xFFFFFFFF
        cnt["cycles"] = int(t_end)
        busy = cnt["ttu_busy"] + cnt["tvp_busy"]
        cnt["tcp_stall"] = max(0, int(t_end) - busy)
        for k in cnt:
            cnt[k] = int(cnt[k]) & 0xFFFFFFFF
        return TileResult(img, T.status_word(state, err, idx), cnt, deadlock, log, self._ext)


# --------------------------------------------------------------------------- program builder

class Program:
    """Builds a TSRAM image: word-aligned data regions plus a command list.

    ``alloc`` hands out regions from the top of the command area upwards; ``put_*`` store
    operands in the documented layouts; ``cmd`` appends a descriptor (bytes from
    spec.tile.cmd_*). ``image()`` returns the uint8 TSRAM image; commands start at
    ``cmd_addr`` (0).
    """

    def __init__(self, cfg: T.TileConfig | None = None, max_commands: int = 64):
        self.cfg = cfg or T.TileConfig()
        if not isinstance(max_commands, int) or max_commands < 1:
            raise ValueError(f"max_commands: must be a positive int, got {max_commands!r}")
        self.img = np.zeros(self.cfg.tsram_bytes, dtype=np.uint8)
        self.cmd_addr = 0
        self.max_commands = max_commands
        self.ncmd = 0
        self.top = max_commands * T.DESC_BYTES

    def alloc(self, nbytes: int) -> int:
        nbytes = T.words_for_bytes(max(int(nbytes), 1)) * W
        addr = self.top
        if addr + nbytes > self.cfg.tsram_bytes:
            raise ValueError(f"nbytes: {nbytes} more bytes do not fit in TSRAM "
                             f"({self.cfg.tsram_bytes - addr} left)")
        self.top += nbytes
        return addr

    def new_list(self) -> int:
        """Start another command list right after the current one; returns its address."""
        self.cmd_addr = self.cmd_addr + self.ncmd * T.DESC_BYTES
        self.max_commands -= self.ncmd
        self.ncmd = 0
        return self.cmd_addr

    def cmd(self, desc: bytes) -> int:
        if self.ncmd >= self.max_commands:
            raise ValueError(f"desc: more than max_commands={self.max_commands} commands")
        a = self.cmd_addr + self.ncmd * T.DESC_BYTES
        self.img[a:a + T.DESC_BYTES] = np.frombuffer(desc, dtype=np.uint8)
        self.ncmd += 1
        return self.ncmd - 1

    def put_codes(self, codes, fmt: str) -> int:
        c = np.asarray(codes, dtype=np.uint8)
        addr = self.alloc(c.shape[0] * T.code_row_words(c.shape[1], fmt) * W)
        write_codes(self.img, addr, c, fmt)
        return addr

    def put_scales(self, scales) -> int:
        s = np.asarray(scales, dtype=np.uint8)
        addr = self.alloc(s.shape[0] * T.scale_row_words(s.shape[1] * BLOCK) * W)
        write_scales(self.img, addr, s)
        return addr

    def put_f32(self, x) -> int:
        b = np.asarray(x)
        if b.dtype == np.float32:
            b = b.view(np.uint32)
        b = np.atleast_2d(b.astype(np.uint32))
        addr = self.alloc(b.shape[0] * T.f32_row_words(b.shape[1]) * W)
        write_matrix_f32(self.img, addr, b)
        return addr

    def alloc_f32(self, rows: int, n: int) -> int:
        return self.alloc(rows * T.f32_row_words(n) * W)

    def put_matmul(self, a, sa, fa, b, sb, fb, c=None, accumulate=False, **kw):
        """Store A (M,K), B (K,N) codes and scales; append MATMUL; return the C address."""
        a, b = np.asarray(a), np.asarray(b)
        M, K = a.shape
        N = b.shape[1]
        pa = self.put_codes(a, fa)
        psa = self.put_scales(sa)
        pb = self.put_codes(b.T, fb)
        psb = self.put_scales(np.asarray(sb).T)
        pc = self.put_f32(c) if c is not None else self.alloc_f32(M, N)
        self.cmd(T.cmd_matmul(pa, psa, pb, psb, pc, M, N, K, fa, fb, accumulate, **kw))
        return pc

    def put_dma_chain(self, descs, link: bool = True) -> int:
        """Store tile-DMA descriptors (spec.dma.Descriptor) 64-byte aligned, one after the
        other; with ``link`` each ``next`` points at the following one (the last at 0).
        Returns the address of the first (the DMA command's operand)."""
        descs = list(descs)
        if not descs:
            raise ValueError("descs: at least one descriptor")
        base = self.alloc(len(descs) * T.DMA_DESC_BYTES + W)
        base += -base % T.DMA_DESC_ALIGN
        for i, d in enumerate(descs):
            if link:
                nxt = base + (i + 1) * T.DMA_DESC_BYTES if i + 1 < len(descs) else 0
                d = dataclasses.replace(d, next=nxt)
            a = base + i * T.DMA_DESC_BYTES
            self.img[a:a + T.DMA_DESC_BYTES] = np.frombuffer(d.pack(), dtype=np.uint8)
        return base

    def image(self) -> np.ndarray:
        return self.img.copy()
