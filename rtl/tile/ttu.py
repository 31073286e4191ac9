"""Tile tensor unit (TTU): an R x C array of MX dot-product cells fed from TSRAM.

Output stationary: for an R x C tile of C, cell (r, c) gets block j of A row m0+r and of B
column n0+c in beat j (two blocks per beat when both formats are e2m1), starting from the
old C element (``accumulate``) or +0. Tiles are issued back to back, row panels outer.

Three engines run concurrently (docs/tile.md "TTU"):

* loader: fetches tile operands into staging memories with ``window`` TSRAM lanes: A row
  codes and scales once per row panel (two buffers), B column codes, B scales and, when
  accumulating, the old C row segments per tile (three buffers: it runs up to two tiles
  ahead of issue).
* issue: reads staging, forms one beat per cycle for every cell (``MXDotUnit``).
* store: writes each finished R x C tile back as R masked word writes, through a 2-deep
  result FIFO so the array only stalls if stores fall two tiles behind.
"""

from __future__ import annotations

from amaranth import Cat, Module, Mux, Signal, unsigned
from amaranth.lib import fifo, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import exact_log2

from rtl.mxdot import MXDotUnit
from rtl.tile.tsram import WORD_BITS, tsram_port
from spec.formats import FORMATS
from spec.tile import TileConfig

__all__ = ["TTU", "ttu_command"]

E2 = FORMATS["e2m1"].code


def ttu_command(addr_width: int) -> dict:
    """MATMUL operands as the TTU takes them (word addresses)."""
    return {"a": addr_width, "sa": addr_width, "b": addr_width, "sb": addr_width,
            "c": addr_width, "M": 16, "N": 16, "K": 16, "fa": 2, "fb": 2, "acc": 1}


class TTU(wiring.Component):
    """Tile tensor unit.

    Ports: ``start`` (pulse, with the ``cmd_*`` operands valid), ``busy``, ``done`` (pulse
    when the last C word is written); TSRAM lanes ``ld0..ld{window-1}`` (loader) and ``st``
    (store); statistics ``beat`` (a beat entered the array), ``beat_macs`` (its MACs),
    ``fill`` / ``issue`` / ``stall`` (cycle classes for the counters).

    Throughput: one beat per cycle while the loader keeps ahead (a tile needs max(beats,
    loader windows) cycles); latency of a tile's result: beats + 4 cycles + R store cycles.
    """

    def __init__(self, cfg: TileConfig, addr_width: int):
        self._cfg = cfg
        self._aw = addr_width
        ports = {"start": In(1), "busy": Out(1), "done": Out(1),
                 "beat": Out(1), "beat_macs": Out(16), "fill": Out(1), "issue": Out(1),
                 "stall": Out(1), "st": Out(tsram_port(addr_width))}
        for k, w in ttu_command(addr_width).items():
            ports[f"cmd_{k}"] = In(w)
        for i in range(cfg.window):
            ports[f"ld{i}"] = Out(tsram_port(addr_width))
        super().__init__(ports)

    def elaborate(self, platform):
        m = Module()
        cfg = self._cfg
        R, C, P = cfg.rows, cfg.cols, cfg.window
        pb = exact_log2(P)
        maxw = cfg.max_k // 32                  # words of a row at most (FP8)
        ALINES = -(-maxw // P)                  # staging lines per half
        SWMAX = -(-(cfg.max_k // 32) // 32)     # scale words per row at most
        AW = self._aw
        lds = [getattr(self, f"ld{i}") for i in range(P)]

        # ---------------- command registers and derived sizes ----------------
        cmd = {k: Signal(w, name=f"r_{k}") for k, w in ttu_command(AW).items()}
        nb = Signal(9)
        dual = Signal()
        beats = Signal(9)
        aw = Signal(9)
        bw = Signal(9)
        sw = Signal(5)
        cp = Signal(14)
        busy = Signal()
        m.d.comb += self.busy.eq(busy)
        m.d.comb += [nb.eq(cmd["K"][5:]), dual.eq((cmd["fa"] == E2) & (cmd["fb"] == E2)),
                     beats.eq(Mux(dual, (nb + 1) >> 1, nb)),
                     aw.eq(Mux(cmd["fa"] == E2, (nb + 1) >> 1, nb)),
                     bw.eq(Mux(cmd["fb"] == E2, (nb + 1) >> 1, nb)),
                     sw.eq((nb + 31) >> 5), cp.eq((cmd["N"] + 7) >> 3)]
        with m.If(self.start & ~busy):
            m.d.sync += [cmd[k].eq(getattr(self, f"cmd_{k}")) for k in cmd]

        # ---------------- staging memories ----------------
        # A (per row panel) is double buffered; B, B scales and old C (per tile) have three
        # slots so the loader can run up to two tiles ahead of issue.
        def stage_mem(name, slots):
            mem = m.submodules[name] = Memory(shape=unsigned(P * WORD_BITS),
                                              depth=slots * ALINES, init=[])
            return mem.read_port(), mem.write_port(granularity=WORD_BITS)

        def scale_mem(name, slots):
            mem = m.submodules[name] = Memory(shape=unsigned(WORD_BITS), depth=slots * SWMAX,
                                              init=[])
            return mem.read_port(), mem.write_port()

        A = [stage_mem(f"a_stage{r}", 2) for r in range(R)]
        B = [stage_mem(f"b_stage{c}", 3) for c in range(C)]
        SA = [scale_mem(f"sa_stage{r}", 2) for r in range(R)]
        SB = [scale_mem(f"sb_stage{c}", 3) for c in range(C)]
        accw = [[Signal(WORD_BITS, name=f"accw{h}_{r}") for r in range(R)] for h in range(3)]

        loaded = Signal(16)     # tiles whose operands are in staging
        issued = Signal(16)     # tiles whose beats have all been read from staging

        # ---------------- loader ----------------
        PH_A, PH_SA, PH_B, PH_SB, PH_ACC, PH_NEXT, PH_DONE = range(7)
        ph = Signal(3, init=PH_DONE)
        l_m0 = Signal(16)
        l_n0 = Signal(16)
        l_t = Signal(16)        # tile index being loaded
        l_panel = Signal()      # A half
        l_slot = Signal(2)      # B / acc slot (tile index mod 3)
        l_idx = Signal(range(max(R, C) + 1))   # row / column within the tile
        l_i = Signal(9)         # word offset (codes) or scale word index
        done_mask = Signal(P)
        m.d.comb += self.fill.eq(0)

        lane_valid = Signal(P)
        lane_addr = [Signal(AW, name=f"ld_addr{k}") for k in range(P)]
        row = Signal(17)
        col = Signal(17)
        m.d.comb += [row.eq(l_m0 + l_idx), col.eq(l_n0 + l_idx)]
        can_load = Signal()
        a_phase = (ph == PH_A) | (ph == PH_SA)
        m.d.comb += can_load.eq(busy & (l_t < issued + Mux(a_phase, 2, 3)))
        count = Signal(9)       # words / entries of the current transfer
        with m.Switch(ph):
            with m.Case(PH_A):
                m.d.comb += count.eq(aw)
                for k in range(P):
                    m.d.comb += [lane_addr[k].eq(cmd["a"] + row * aw + l_i + k),
                                 lane_valid[k].eq((row < cmd["M"]) & (l_i + k < aw))]
            with m.Case(PH_B):
                m.d.comb += count.eq(bw)
                for k in range(P):
                    m.d.comb += [lane_addr[k].eq(cmd["b"] + col * bw + l_i + k),
                                 lane_valid[k].eq((col < cmd["N"]) & (l_i + k < bw))]
            with m.Case(PH_SA):
                for k in range(P):
                    if k < R:
                        m.d.comb += [lane_addr[k].eq(cmd["sa"] + (l_m0 + k) * sw + l_i),
                                     lane_valid[k].eq(l_m0 + k < cmd["M"])]
            with m.Case(PH_SB):
                for k in range(P):
                    if k < C:
                        m.d.comb += [lane_addr[k].eq(cmd["sb"] + (l_n0 + k) * sw + l_i),
                                     lane_valid[k].eq(l_n0 + k < cmd["N"])]
            with m.Case(PH_ACC):
                for k in range(P):
                    if k < R:
                        m.d.comb += [lane_addr[k].eq(cmd["c"] + (l_m0 + k) * cp + (l_n0 >> 3)),
                                     lane_valid[k].eq(l_m0 + k < cmd["M"])]
        active_ph = (ph != PH_NEXT) & (ph != PH_DONE)
        want = Signal(P)
        m.d.comb += want.eq(Mux(can_load & active_ph, lane_valid & ~done_mask, 0))
        grant = Signal(P)
        for k, ln in enumerate(lds):
            m.d.comb += [ln.valid.eq(want[k]), ln.addr.eq(lane_addr[k]), ln.we.eq(0),
                         grant[k].eq(ln.ready & want[k])]
        win_done = Signal()
        m.d.comb += win_done.eq(can_load & active_ph & ((want & ~grant) == 0))

        # response bookkeeping (data arrives the cycle after the grant)
        r_ph = Signal(3)
        r_idx = Signal.like(l_idx)
        r_line = Signal(range(3 * ALINES + 1))
        r_sline = Signal(range(3 * SWMAX + 1))
        r_half = Signal(2)
        r_tile_end = Signal()
        m.d.sync += [r_ph.eq(ph), r_idx.eq(l_idx), r_half.eq(l_slot),
                     r_line.eq(Mux(ph == PH_A, l_panel, l_slot) * ALINES + (l_i >> pb)),
                     r_sline.eq(Mux(ph == PH_SA, l_panel, l_slot) * SWMAX + l_i),
                     r_tile_end.eq(0)]
        rv = Cat(*[ln.rvalid for ln in lds])
        for r in range(R):
            rd, wr = A[r]
            m.d.comb += [wr.addr.eq(r_line), wr.data.eq(Cat(*[ln.rdata for ln in lds]))]
            with m.If((r_ph == PH_A) & (r_idx == r)):
                m.d.comb += wr.en.eq(rv)
            srd, swr = SA[r]
            m.d.comb += [swr.addr.eq(r_sline), swr.data.eq(lds[r].rdata),
                         swr.en.eq((r_ph == PH_SA) & lds[r].rvalid)]
            with m.If((r_ph == PH_ACC) & lds[r].rvalid):
                for h in range(3):
                    with m.If(r_half == h):
                        m.d.sync += accw[h][r].eq(lds[r].rdata)
        for c in range(C):
            rd, wr = B[c]
            m.d.comb += [wr.addr.eq(r_line), wr.data.eq(Cat(*[ln.rdata for ln in lds]))]
            with m.If((r_ph == PH_B) & (r_idx == c)):
                m.d.comb += wr.en.eq(rv)
            srd, swr = SB[c]
            m.d.comb += [swr.addr.eq(r_sline), swr.data.eq(lds[c].rdata),
                         swr.en.eq((r_ph == PH_SB) & lds[c].rvalid)]
        with m.If(r_tile_end):
            m.d.sync += loaded.eq(loaded + 1)

        # loader sequencing
        with m.If(win_done):
            m.d.sync += done_mask.eq(0)
        with m.Elif(can_load & active_ph):
            m.d.sync += done_mask.eq(done_mask | grant)

        def next_tile():
            """Tile done: move on to the next tile (row panels outer), no bubble."""
            m.d.sync += [l_t.eq(l_t + 1), l_i.eq(0), l_idx.eq(0), r_tile_end.eq(1),
                         l_slot.eq(Mux(l_slot == 2, 0, l_slot + 1))]
            with m.If(l_n0 + C < cmd["N"]):
                m.d.sync += [l_n0.eq(l_n0 + C), ph.eq(PH_B)]
            with m.Elif(l_m0 + R < cmd["M"]):
                m.d.sync += [l_n0.eq(0), l_m0.eq(l_m0 + R), l_panel.eq(~l_panel),
                             ph.eq(PH_A)]
            with m.Else():
                m.d.sync += ph.eq(PH_DONE)

        def next_phase(cur):
            """Go to the phase after ``cur`` for this tile."""
            if cur == PH_A:
                m.d.sync += [ph.eq(PH_SA), l_i.eq(0), l_idx.eq(0)]
            elif cur == PH_SA:
                m.d.sync += [ph.eq(PH_B), l_i.eq(0), l_idx.eq(0)]
            elif cur == PH_B:
                m.d.sync += [ph.eq(PH_SB), l_i.eq(0), l_idx.eq(0)]
            elif cur == PH_SB:
                with m.If(cmd["acc"]):
                    m.d.sync += [ph.eq(PH_ACC), l_i.eq(0), l_idx.eq(0)]
                with m.Else():
                    next_tile()
            elif cur == PH_ACC:
                next_tile()

        with m.If(win_done):
            with m.Switch(ph):
                for cur, n_idx in ((PH_A, R), (PH_B, C)):
                    with m.Case(cur):
                        with m.If(l_i + P < count):
                            m.d.sync += l_i.eq(l_i + P)
                        with m.Elif(l_idx + 1 < n_idx):
                            m.d.sync += [l_i.eq(0), l_idx.eq(l_idx + 1)]
                        with m.Else():
                            next_phase(cur)
                for cur in (PH_SA, PH_SB):
                    with m.Case(cur):
                        with m.If(l_i + 1 < sw):
                            m.d.sync += l_i.eq(l_i + 1)
                        with m.Else():
                            next_phase(cur)
                with m.Case(PH_ACC):
                    next_phase(PH_ACC)

        # ---------------- array ----------------
        cells = [[MXDotUnit() for _ in range(C)] for _ in range(R)]
        for r in range(R):
            for c in range(C):
                m.submodules[f"cell{r}_{c}"] = cells[r][c]
        c00 = cells[0][0]
        advance = Signal()
        m.d.comb += advance.eq(c00.i.ready)

        # ---------------- issue ----------------
        i_m0 = Signal(16)
        i_n0 = Signal(16)
        i_t = Signal(16)
        i_panel = Signal()
        i_slot = Signal(2)
        i_b = Signal(9)
        i_run = Signal()     # issuing beats of tile i_t
        i_started = Signal()  # first beat of this command issued
        i_over = Signal()    # all beats issued
        go = Signal()
        m.d.comb += go.eq(busy & ~i_over & (loaded > i_t) & advance)
        s1 = {n: Signal(w, name=f"s1_{n}") for n, w in (
            ("valid", 1), ("first", 1), ("last", 1), ("aslot", pb or 1), ("bslot", pb or 1),
            ("ahalf", 1), ("bhalf", 1), ("sbyte", 5), ("second", 1), ("acch", 2),
            ("lane0", 3), ("rv", 5), ("cv", 4))}
        wa = Signal(9)
        wb = Signal(9)
        blk0 = Signal(9)
        m.d.comb += [blk0.eq(Mux(dual, i_b << 1, i_b)),
                     wa.eq(Mux((cmd["fa"] == E2) & ~dual, i_b >> 1, i_b)),
                     wb.eq(Mux((cmd["fb"] == E2) & ~dual, i_b >> 1, i_b))]
        rows_left = Signal(17)
        cols_left = Signal(17)
        m.d.comb += [rows_left.eq(cmd["M"] - i_m0), cols_left.eq(cmd["N"] - i_n0)]
        for r in range(R):
            rd = A[r][0]
            m.d.comb += [rd.addr.eq(i_panel * ALINES + (wa >> pb)), rd.en.eq(advance)]
            srd = SA[r][0]
            m.d.comb += [srd.addr.eq(i_panel * SWMAX + (blk0 >> 5)), srd.en.eq(advance)]
        for c in range(C):
            rd = B[c][0]
            m.d.comb += [rd.addr.eq(i_slot * ALINES + (wb >> pb)), rd.en.eq(advance)]
            srd = SB[c][0]
            m.d.comb += [srd.addr.eq(i_slot * SWMAX + (blk0 >> 5)), srd.en.eq(advance)]
        with m.If(advance):
            m.d.sync += [
                s1["valid"].eq(go), s1["first"].eq(i_b == 0), s1["last"].eq(i_b + 1 == beats),
                s1["aslot"].eq(wa[:pb] if pb else 0), s1["bslot"].eq(wb[:pb] if pb else 0),
                s1["ahalf"].eq(i_b[0]), s1["bhalf"].eq(i_b[0]), s1["sbyte"].eq(blk0[:5]),
                s1["second"].eq(dual & (blk0 + 1 < nb)), s1["acch"].eq(i_slot),
                s1["lane0"].eq(i_n0[:3]),
                s1["rv"].eq(Mux(rows_left > R, R, rows_left)),
                s1["cv"].eq(Mux(cols_left > C, C, cols_left)),
            ]
        with m.If(go):
            with m.If(i_b + 1 < beats):
                m.d.sync += i_b.eq(i_b + 1)
            with m.Else():
                m.d.sync += [i_b.eq(0), i_t.eq(i_t + 1), issued.eq(issued + 1),
                             i_slot.eq(Mux(i_slot == 2, 0, i_slot + 1))]
                with m.If(i_n0 + C < cmd["N"]):
                    m.d.sync += i_n0.eq(i_n0 + C)
                with m.Elif(i_m0 + R < cmd["M"]):
                    m.d.sync += [i_n0.eq(0), i_m0.eq(i_m0 + R), i_panel.eq(~i_panel)]
                with m.Else():
                    m.d.sync += i_over.eq(1)
            m.d.sync += i_started.eq(1)
        m.d.comb += i_run.eq(i_started & ~i_over)

        def pick(word_bits, slot, nslots, width):
            """Select entry ``slot`` of ``nslots`` equal fields of ``width`` bits."""
            out = Signal(width)
            with m.Switch(slot):
                for s in range(nslots):
                    with m.Case(s):
                        m.d.comb += out.eq(word_bits[s * width:(s + 1) * width])
            return out

        def operand(line, slot, half, fmt):
            word = pick(line, slot, P, WORD_BITS) if P > 1 else line
            halfsel = Mux(half, word[128:], word[:128])
            op = Signal(WORD_BITS)
            with m.If(dual):
                m.d.comb += op.eq(Mux(s1["second"], word, word[:128]))
            with m.Elif(fmt == E2):
                m.d.comb += op.eq(halfsel)
            with m.Else():
                m.d.comb += op.eq(word)
            return op

        def scales(sword):
            s0 = pick(sword, s1["sbyte"], 32, 8)
            s1b = pick(sword, s1["sbyte"] + 1, 32, 8)
            return s0, Mux(s1["second"], s1b, 0)

        a_ops = [operand(A[r][0].data, s1["aslot"], s1["ahalf"], cmd["fa"]) for r in range(R)]
        b_ops = [operand(B[c][0].data, s1["bslot"], s1["bhalf"], cmd["fb"]) for c in range(C)]
        a_sc = [scales(SA[r][0].data) for r in range(R)]
        b_sc = [scales(SB[c][0].data) for c in range(C)]
        for r in range(R):
            accword = Mux(s1["acch"] == 2, accw[2][r], Mux(s1["acch"][0], accw[1][r], accw[0][r]))
            for c in range(C):
                cell = cells[r][c]
                p = cell.i.payload
                accv = pick(accword, s1["lane0"] + c, 8, 32)
                m.d.comb += [cell.i.valid.eq(s1["valid"]),
                             p.a.eq(a_ops[r]), p.b.eq(b_ops[c]),
                             p.a_scale[0].eq(a_sc[r][0]), p.a_scale[1].eq(a_sc[r][1]),
                             p.b_scale[0].eq(b_sc[c][0]), p.b_scale[1].eq(b_sc[c][1]),
                             p.a_fmt.eq(cmd["fa"]), p.b_fmt.eq(cmd["fb"]),
                             p.acc.eq(Mux(cmd["acc"], accv, 0)),
                             p.first.eq(s1["first"]), p.last.eq(s1["last"])]
        beat = Signal()
        m.d.comb += [beat.eq(s1["valid"] & advance), self.beat.eq(beat),
                     self.beat_macs.eq(Mux(beat, s1["rv"] * s1["cv"]
                                           * Mux(s1["second"], 64, 32), 0))]

        # ---------------- results and store ----------------
        rf = m.submodules.results = fifo.SyncFIFO(width=R * C * 32, depth=2)
        m.d.comb += [rf.w_en.eq(c00.o.valid),
                     rf.w_data.eq(Cat(*[cells[r][c].o.payload.result
                                        for r in range(R) for c in range(C)]))]
        for r in range(R):
            for c in range(C):
                m.d.comb += cells[r][c].o.ready.eq(rf.w_rdy)
        s_m0 = Signal(16)
        s_n0 = Signal(16)
        s_r = Signal(range(R + 1))
        s_over = Signal()
        srow = Signal(17)
        m.d.comb += srow.eq(s_m0 + s_r)
        st = self.st
        lane0 = s_n0[:3]
        seg = Signal(WORD_BITS)
        mask = Signal(32)
        res_row = Signal(C * 32)
        with m.Switch(s_r):
            for r in range(R):
                with m.Case(r):
                    m.d.comb += res_row.eq(rf.r_data[r * C * 32:(r + 1) * C * 32])
        colmask = Signal(C * 4)
        for c in range(C):
            m.d.comb += colmask[4 * c:4 * c + 4].eq(Mux(s_n0 + c < cmd["N"], 0xF, 0))
        m.d.comb += [seg.eq(res_row << (lane0 * 32)), mask.eq(colmask << (lane0 * 4))]
        row_ok = srow < cmd["M"]
        m.d.comb += [st.valid.eq(rf.r_rdy & row_ok & busy), st.we.eq(1), st.wdata.eq(seg),
                     st.wmask.eq(mask), st.addr.eq(cmd["c"] + srow * cp + (s_n0 >> 3))]
        row_step = rf.r_rdy & busy & (~row_ok | st.ready)
        m.d.comb += self.done.eq(0)
        with m.If(row_step):
            with m.If(s_r + 1 < R):
                m.d.sync += s_r.eq(s_r + 1)
            with m.Else():
                m.d.comb += rf.r_en.eq(1)
                m.d.sync += s_r.eq(0)
                with m.If(s_n0 + C < cmd["N"]):
                    m.d.sync += s_n0.eq(s_n0 + C)
                with m.Elif(s_m0 + R < cmd["M"]):
                    m.d.sync += [s_n0.eq(0), s_m0.eq(s_m0 + R)]
                with m.Else():
                    m.d.sync += [s_over.eq(1), busy.eq(0)]
                    m.d.comb += self.done.eq(1)

        # ---------------- start / statistics ----------------
        with m.If(self.start & ~busy):
            m.d.sync += [busy.eq(1), ph.eq(PH_A), l_m0.eq(0), l_n0.eq(0), l_t.eq(0),
                         l_panel.eq(0), l_slot.eq(0), l_idx.eq(0), l_i.eq(0), done_mask.eq(0),
                         loaded.eq(0), issued.eq(0),
                         i_m0.eq(0), i_n0.eq(0), i_t.eq(0), i_panel.eq(0), i_slot.eq(0), i_b.eq(0),
                         i_started.eq(0), i_over.eq(0),
                         s_m0.eq(0), s_n0.eq(0), s_r.eq(0), s_over.eq(0)]
        m.d.comb += [self.fill.eq(busy & ~i_started & ~go),
                     self.issue.eq(busy & (i_started | go) & ~i_over),
                     self.stall.eq(busy & i_started & ~i_over & ~go)]
        return m
