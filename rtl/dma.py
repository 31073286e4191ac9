"""Multichannel DMA engine: 1D/2D/3D strided copies and descriptor chains over AXI4.

The contract (descriptor format, CSR map, errors, ordering, performance) is docs/dma.md;
the layouts and codes come from spec/dma.py.
"""

from __future__ import annotations

from amaranth import Array, Cat, Const, Elaboratable, Module, Mux, Signal
from amaranth.lib import data, fifo, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from rtl.axi import BURST_INCR, AXI4LiteSignature, AXI4Signature
from spec import dma as S

__all__ = ["DMAEngine", "VERILOG_TOPS"]

_RESP_SLVERR = 2


def _min(a, b):
    return Mux(a < b, a, b)


class _Walker(Elaboratable):
    """Walks the start addresses of a descriptor's runs (i0 fastest, then i1, then i2).

    ``load`` starts at ``base``; ``advance`` moves to the next run (the new address shows
    the next cycle). In row mode (``elem`` low) a run is a whole row and i0 stays 0.
    ``width`` may be narrower than an address (the low bits of an address walk alike)."""

    def __init__(self, width: int):
        self.width = width
        self.base = Signal(width)
        self.strides = [Signal(width, name=f"stride{k}") for k in range(3)]
        self.counts = [Signal(S.COUNT_BITS, name=f"count{k}") for k in range(3)]
        self.elem = Signal()
        self.load = Signal()
        self.advance = Signal()
        self.cur = Signal(width)
        self.last = Signal()

    def elaborate(self, platform):
        m = Module()
        w = self.width
        i = [Signal(S.COUNT_BITS, name=f"i{k}") for k in range(3)]
        b1, b2 = Signal(w), Signal(w)
        last0 = ~self.elem | (i[0] == (self.counts[0] - 1)[:S.COUNT_BITS])
        last1 = i[1] == (self.counts[1] - 1)[:S.COUNT_BITS]
        last2 = i[2] == (self.counts[2] - 1)[:S.COUNT_BITS]
        m.d.comb += self.last.eq(last0 & last1 & last2)
        nb1 = (b1 + self.strides[1])[:w]
        nb2 = (b2 + self.strides[2])[:w]
        with m.If(self.load):
            m.d.sync += [i[0].eq(0), i[1].eq(0), i[2].eq(0), self.cur.eq(self.base),
                         b1.eq(self.base), b2.eq(self.base)]
        with m.Elif(self.advance):
            with m.If(~last0):
                m.d.sync += [i[0].eq(i[0] + 1), self.cur.eq(self.cur + self.strides[0])]
            with m.Elif(~last1):
                m.d.sync += [i[0].eq(0), i[1].eq(i[1] + 1), b1.eq(nb1), self.cur.eq(nb1)]
            with m.Elif(~last2):
                m.d.sync += [i[0].eq(0), i[1].eq(0), i[2].eq(i[2] + 1), b2.eq(nb2),
                             b1.eq(nb2), self.cur.eq(nb2)]
        return m


class DMAEngine(wiring.Component):
    """Multichannel descriptor-chained DMA engine (AXI4 manager, AXI4-Lite CSRs).

    Parameters
    ----------
    channels : int
        Number of independent channels (1..60). Each has its own descriptor chain, CSRs,
        read-data FIFO and AXI ID (the channel number).
    data_width : int
        AXI4 data width in bits (32, 64, 128, 256 or 512).
    max_burst : int
        Longest AXI burst in beats (1..256). Bursts never cross a 4 KiB boundary.
    fifo_depth : int
        Read-data FIFO depth per channel in beats (>= max_burst; default 2 * max_burst).
        Reads are only issued into reserved FIFO space, so ``rready`` is always high and up
        to ``fifo_depth`` read beats per channel are outstanding.
    windows : int
        Number of address windows (CSR-programmed base/size; 1..8). Every descriptor
        fetch, source range and destination range must lie inside one enabled window.

    Ports
    -----
    m_axi : AXI4 manager (32-bit addresses, ``data_width`` data, ID = channel number).
    s_axil : AXI4-Lite subordinate, 12-bit addresses, 32-bit data (CSR map: docs/dma.md).
    irq : Out(channels), level: ``IRQ_STATUS & IRQ_ENABLE != 0`` per channel.
    sem_valid, sem_channel, sem_id : one-cycle strobe per completed descriptor that has the
        ``sem`` flag; at most one per cycle (lowest channel first when several are ready).

    Latency and throughput (zero-wait memory): a descriptor costs about 9 cycles plus
    ``64 / (data_width / 8)`` fetch beats before its first data read; row transfers then move
    one beat per cycle on R and W concurrently (bursts back to back, no bubble between write
    bursts); element-mode transfers (scatter/gather by stride) move one element per beat.
    Channels share AR and AW by round-robin per burst; W follows AW order.

    Errors: a channel stops its chain with an error code and the failing descriptor's
    address (spec.dma ERR_*); other channels are not affected. Bus errors on data reads are
    contained: the affected beat is written with no byte strobes.
    """

    def __init__(self, *, channels: int = 2, data_width: int = 64, max_burst: int = 256,
                 fifo_depth: int | None = None, windows: int = 2):
        for name, v in (("channels", channels), ("data_width", data_width),
                        ("max_burst", max_burst), ("windows", windows)):
            if isinstance(v, bool) or not isinstance(v, int):
                raise TypeError(f"{name} must be an int, not {type(v).__name__}")
        if not 1 <= channels <= S.MAX_CHANNELS:
            raise ValueError(f"channels must be in 1..{S.MAX_CHANNELS}, not {channels}")
        if data_width not in (32, 64, 128, 256, 512):
            raise ValueError(f"data_width must be 32, 64, 128, 256 or 512, not {data_width}")
        if not 1 <= max_burst <= 256:
            raise ValueError(f"max_burst must be in 1..256, not {max_burst}")
        if not 1 <= windows <= S.MAX_WINDOWS:
            raise ValueError(f"windows must be in 1..{S.MAX_WINDOWS}, not {windows}")
        if fifo_depth is None:
            fifo_depth = 2 * max_burst
        if isinstance(fifo_depth, bool) or not isinstance(fifo_depth, int):
            raise TypeError(f"fifo_depth must be an int, not {type(fifo_depth).__name__}")
        if not max_burst <= fifo_depth <= 4096:
            raise ValueError(f"fifo_depth must be in max_burst..4096 ({max_burst}..4096), "
                             f"not {fifo_depth}")
        self._channels, self._data_width = channels, data_width
        self._max_burst, self._fifo_depth, self._windows = max_burst, fifo_depth, windows
        self._id_width = max(1, ceil_log2(channels))
        super().__init__({
            "m_axi": Out(AXI4Signature(addr_width=S.ADDR_BITS, data_width=data_width,
                                       id_width=self._id_width)),
            "s_axil": In(AXI4LiteSignature(addr_width=S.CSR_ADDR_WIDTH,
                                           data_width=S.CSR_DATA_WIDTH)),
            "irq": Out(channels),
            "sem_valid": Out(1),
            "sem_channel": Out(self._id_width),
            "sem_id": Out(S.CTRL_SEM_ID_BITS),
        })

    channels = property(lambda self: self._channels)
    data_width = property(lambda self: self._data_width)
    max_burst = property(lambda self: self._max_burst)
    fifo_depth = property(lambda self: self._fifo_depth)
    windows = property(lambda self: self._windows)
    id_width = property(lambda self: self._id_width)

    # ------------------------------------------------------------------------------------
    def elaborate(self, platform):
        m = Module()
        n = self._channels
        wb = self._data_width // 8
        lw = ceil_log2(wb)
        dbits = self._data_width
        desc_beats = S.DESC_BYTES // wb
        axi = self.m_axi

        # --- address windows (CSR) -------------------------------------------------------
        win_base = [Signal(32, name=f"win{k}_base") for k in range(self._windows)]
        win_size = [Signal(32, name=f"win{k}_size") for k in range(self._windows)]

        def inside(lo, length):
            ok = Const(0)
            for k in range(self._windows):
                ok = ok | ((win_size[k] != 0) & (lo >= win_base[k])
                           & (lo + length <= win_base[k] + win_size[k]))
            return ok

        # --- shared bus-side state ---------------------------------------------------------
        # write queue: one entry per issued AW, consumed by the W engine in AW order
        wq_layout = data.StructLayout({"ch": self._id_width, "len": 8, "first": wb, "last": wb,
                                       "rot": max(1, lw)})
        m.submodules.wq = wq = fifo.SyncFIFOBuffered(width=wq_layout.size, depth=16)
        wq_in = data.View(wq_layout, wq.w_data)

        chs = []
        for c in range(n):
            chs.append(self._channel(m, c, inside, wb, lw, desc_beats))

        # --- AR arbiter (round-robin per burst) ----------------------------------------
        ar_last = Signal(range(max(2, n)), name="ar_rr_last")  # (1 bit even for 1 channel)
        ar_free = ~axi.arvalid | axi.arready
        ar_grant = self._rr(m, [ch["ar_req"] & ar_free for ch in chs], ar_last, "ar")
        with m.If(axi.arvalid & axi.arready):
            m.d.sync += axi.arvalid.eq(0)
        for c, ch in enumerate(chs):
            m.d.comb += ch["ar_grant"].eq(ar_grant[c])
            with m.If(ar_grant[c]):
                m.d.sync += [axi.arvalid.eq(1), axi.araddr.eq(ch["ar_addr"]),
                             axi.arlen.eq(ch["ar_len"]), axi.arid.eq(c), ar_last.eq(c)]
        m.d.comb += [axi.arsize.eq(lw), axi.arburst.eq(BURST_INCR), axi.arcache.eq(0b0011),
                     axi.arlock.eq(0), axi.arprot.eq(0)]

        # --- AW arbiter (round-robin per burst) ----------------------------------------
        aw_last = Signal(range(max(2, n)), name="aw_rr_last")
        aw_free = (~axi.awvalid | axi.awready) & wq.w_rdy
        aw_grant = self._rr(m, [ch["aw_req"] & aw_free for ch in chs], aw_last, "aw")
        with m.If(axi.awvalid & axi.awready):
            m.d.sync += axi.awvalid.eq(0)
        for c, ch in enumerate(chs):
            m.d.comb += ch["aw_grant"].eq(aw_grant[c])
            with m.If(aw_grant[c]):
                m.d.sync += [axi.awvalid.eq(1), axi.awaddr.eq(ch["aw_addr"]),
                             axi.awlen.eq(ch["aw_len"]), axi.awid.eq(c), aw_last.eq(c)]
                m.d.comb += [wq.w_en.eq(1), wq_in.ch.eq(c), wq_in.len.eq(ch["aw_len"]),
                             wq_in.first.eq(ch["aw_first"]), wq_in.last.eq(ch["aw_last"]),
                             wq_in.rot.eq(ch["aw_rot"])]
        m.d.comb += [axi.awsize.eq(lw), axi.awburst.eq(BURST_INCR), axi.awcache.eq(0b0011),
                     axi.awlock.eq(0), axi.awprot.eq(0)]

        # --- W engine: streams the head write-queue entry from its channel's FIFO ---------
        head = data.View(wq_layout, wq.r_data)
        beat = Signal(8, name="w_beat")
        fifo_rdy = Array([ch["fifo"].r_rdy for ch in chs])[head.ch]
        fifo_data = Array([ch["fifo"].r_data for ch in chs])[head.ch]
        payload, poison = fifo_data[:dbits], fifo_data[dbits]
        rot_bits = Cat(Const(0, 3), head.rot) if lw else Const(0, 1)
        doubled = Cat(payload, payload)
        rotated = (doubled << rot_bits)[dbits:2 * dbits]
        strb = Signal(wb, name="w_strb_calc")
        m.d.comb += strb.eq(Mux(beat == 0, head.first, (1 << wb) - 1)
                            & Mux(beat == head.len, head.last, (1 << wb) - 1)
                            & Mux(poison, 0, (1 << wb) - 1))
        w_fire = axi.wvalid & axi.wready
        m.d.comb += [axi.wvalid.eq(wq.r_rdy & fifo_rdy), axi.wdata.eq(rotated),
                     axi.wstrb.eq(strb), axi.wlast.eq(beat == head.len)]
        with m.If(w_fire):
            m.d.sync += beat.eq(beat + 1)
            with m.If(axi.wlast):
                m.d.sync += beat.eq(0)
                m.d.comb += wq.r_en.eq(1)
        for c, ch in enumerate(chs):
            m.d.comb += ch["pop"].eq(w_fire & (head.ch == c))

        # --- R and B routing by ID -------------------------------------------------------
        m.d.comb += [axi.rready.eq(1), axi.bready.eq(1)]
        for c, ch in enumerate(chs):
            m.d.comb += [ch["r_beat"].eq(axi.rvalid & (axi.rid == c)),
                         ch["b_beat"].eq(axi.bvalid & (axi.bid == c))]

        # --- semaphore strobe (fixed priority: lowest channel first) ------------------------
        m.d.sync += self.sem_valid.eq(0)
        taken = Const(0)
        for c, ch in enumerate(chs):
            g = ch["sem_req"] & ~taken
            taken = taken | ch["sem_req"]
            m.d.comb += ch["sem_grant"].eq(g)
            with m.If(g):
                m.d.sync += [self.sem_valid.eq(1), self.sem_channel.eq(c),
                             self.sem_id.eq(ch["sem_id"])]

        # --- IRQ lines ----------------------------------------------------------------
        m.d.comb += self.irq.eq(Cat(*[(ch["irq_status"] & ch["irq_enable"]) != 0
                                      for ch in chs]))

        self._csr(m, chs, win_base, win_size, lw)
        return m

    # ------------------------------------------------------------------------------------
    @staticmethod
    def _rr(m, reqs, last, name):
        """Round-robin grant: priority starts after the last granted index."""
        n = len(reqs)
        grant = [Signal(name=f"{name}_grant{i}") for i in range(n)]
        with m.Switch(last):
            for lst in range(n):
                with m.Case(lst):
                    taken = Const(0)
                    for k in range(1, n + 1):
                        i = (lst + k) % n
                        m.d.comb += grant[i].eq(reqs[i] & ~taken)
                        taken = taken | reqs[i]
        return grant

    def _burst(self, m, walker, consumed, run_len, lw, wb, prefix):
        """Next burst of the current run: address, beats, bytes and edge strobes."""
        addr = Signal(32, name=f"{prefix}_addr")
        rem = Signal(24, name=f"{prefix}_rem")
        beats = Signal(range(257), name=f"{prefix}_beats")
        nbytes = Signal(24, name=f"{prefix}_bytes")
        off = Signal(max(1, lw), name=f"{prefix}_off")
        last_off = Signal(max(1, lw), name=f"{prefix}_last_off")
        m.d.comb += [addr.eq(walker.cur + consumed), rem.eq(run_len - consumed),
                     off.eq(addr[:lw] if lw else 0)]
        to_end = (off + rem + (wb - 1)) >> lw
        to_4k = (4096 >> lw) - addr[lw:12]
        m.d.comb += beats.eq(_min(_min(to_end, to_4k), self._max_burst))
        span = (beats << lw) - off
        m.d.comb += [nbytes.eq(_min(rem, span)), last_off.eq(off + nbytes - 1)]
        # lane i is enabled from `off` (first beat) up to `last_off` (last beat)
        first = Cat(*[(off <= i) if i < wb - 1 else Const(1) for i in range(wb)])
        last = Cat(*[(last_off >= i) if i > 0 else Const(1) for i in range(wb)])
        return {"addr": addr, "rem": rem, "beats": beats, "bytes": nbytes,
                "first": first, "last": last}

    def _channel(self, m, c, inside, wb, lw, desc_beats):
        """One channel: CSR state, descriptor fetch/validate FSM, read and write walkers."""
        p = f"ch{c}"
        dbits = self._data_width
        depth = self._fifo_depth

        def sig(name, width=32, **kw):
            return Signal(width, name=f"{p}_{name}", **kw)

        ch = {
            "ar_req": sig("ar_req", 1), "ar_grant": sig("ar_grant", 1),
            "ar_addr": sig("ar_addr"), "ar_len": sig("ar_len", 8),
            "aw_req": sig("aw_req", 1), "aw_grant": sig("aw_grant", 1),
            "aw_addr": sig("aw_addr"), "aw_len": sig("aw_len", 8),
            "aw_first": sig("aw_first", wb), "aw_last": sig("aw_last", wb),
            "aw_rot": sig("aw_rot", max(1, lw)),
            "pop": sig("pop", 1), "r_beat": sig("r_beat", 1), "b_beat": sig("b_beat", 1),
            "sem_req": sig("sem_req", 1), "sem_grant": sig("sem_grant", 1),
            "sem_id": sig("sem_id_out", 8),
            # CSR-visible
            "head": sig("head"), "state": sig("status", 2), "error": sig("error", S.ERROR_BITS),
            "err_desc": sig("err_desc"), "cur_desc": sig("cur_desc"),
            "irq_status": sig("irq_status", 2), "irq_enable": sig("irq_enable", 2),
            "desc_count": sig("desc_count"), "rd_beats": sig("rd_beats"),
            "wr_beats": sig("wr_beats"), "bytes": sig("bytes"), "busy": sig("busy_cycles"),
            "sem_count": sig("sem_count"),
            "doorbell": sig("doorbell", 1), "w1c": sig("w1c", 2),
        }
        ch["fifo"] = f = fifo.SyncFIFOBuffered(width=dbits + 1, depth=depth)
        m.submodules[f"{p}_fifo"] = f

        # descriptor register, filled by shifting fetch beats in from the top
        raw = sig("desc", S.DESC_BYTES * 8)

        def word(i):
            return raw.word_select(i, 32)

        src, dst, nxt, ctrl = word(S.W_SRC), word(S.W_DST), word(S.W_NEXT), word(S.W_CTRL)
        counts = [word(S.W_COUNT01)[:16], word(S.W_COUNT01)[16:], word(S.W_COUNT2)[:16]]
        ss = [word(i) for i in S.W_SRC_STRIDE]
        ds = [word(i) for i in S.W_DST_STRIDE]
        esize = ctrl[:S.CTRL_ESIZE_BITS]
        m.d.comb += ch["sem_id"].eq(ctrl[S.CTRL_SEM_ID_SHIFT:S.CTRL_SEM_ID_SHIFT + 8])

        # validation results (VAL1)
        v_bad, v_zero, v_mis, v_row = sig("v_bad", 1), sig("v_zero", 1), sig("v_mis", 1), \
            sig("v_row", 1)
        ext_s, ext_d = sig("ext_s", 52), sig("ext_d", 52)
        run_len, total = sig("run_len", 24), sig("total", 32)
        ebytes = Signal(8, name=f"{p}_ebytes")
        m.d.comb += ebytes.eq(Const(1, 8) << esize)
        emask = ebytes - 1

        def extent(strides):
            return ebytes + sum((counts[k] - 1)[:16] * strides[k] for k in range(3))

        def low(x):
            return x[:lw] if lw else Const(0, 1)

        # walkers: read side (src), write side (dst) and the src offset seen by the write side
        rdw = _Walker(32)
        wrw = _Walker(32)
        rotw = _Walker(max(1, lw))
        m.submodules[f"{p}_rd_walk"] = rdw
        m.submodules[f"{p}_wr_walk"] = wrw
        m.submodules[f"{p}_rot_walk"] = rotw
        for w, base, strides in ((rdw, src, ss), (wrw, dst, ds), (rotw, src, ss)):
            m.d.comb += [w.base.eq(base), w.elem.eq(~v_row)]
            for k in range(3):
                m.d.comb += [w.strides[k].eq(strides[k]), w.counts[k].eq(counts[k])]

        rd_cons, wr_cons = sig("rd_cons", 24), sig("wr_cons", 24)
        rd_done, wr_done = sig("rd_done", 1), sig("wr_done", 1)
        rd_err, wr_err = sig("rd_err", 1), sig("wr_err", 1)
        inflight = sig("inflight", 16)   # read beats requested, not yet popped by W
        credit = sig("credit", 16)       # read beats requested, not yet claimed by an AW
        out_b = sig("out_b", 16)         # write bursts awaiting B
        fetch_err = sig("fetch_err", 1)

        rb = self._burst(m, rdw, rd_cons, run_len, lw, wb, f"{p}_rd")
        wbst = self._burst(m, wrw, wr_cons, run_len, lw, wb, f"{p}_wr")

        xfer = Signal(name=f"{p}_xfer")
        fetch_req = Signal(name=f"{p}_fetch_req")
        m.d.comb += [
            ch["ar_req"].eq(fetch_req | (xfer & ~rd_done
                                         & (inflight + rb["beats"] <= depth))),
            ch["ar_addr"].eq(Mux(fetch_req, ch["cur_desc"], rb["addr"])),
            ch["ar_len"].eq(Mux(fetch_req, desc_beats - 1, rb["beats"] - 1)),
            ch["aw_req"].eq(xfer & ~wr_done & (credit >= wbst["beats"])),
            ch["aw_addr"].eq(wbst["addr"]),
            ch["aw_len"].eq(wbst["beats"] - 1),
            ch["aw_first"].eq(wbst["first"]),
            ch["aw_last"].eq(wbst["last"]),
            ch["aw_rot"].eq((low(wrw.cur) - rotw.cur)[:max(1, lw)]),
        ]

        # read-data FIFO input (R routing)
        m.d.comb += [f.w_data.eq(Cat(self.m_axi.rdata, self.m_axi.rresp[1])),
                     f.w_en.eq(ch["r_beat"] & xfer), f.r_en.eq(ch["pop"])]

        rd_fire = ch["ar_grant"] & xfer
        wr_fire = ch["aw_grant"]
        m.d.sync += [
            inflight.eq(inflight + Mux(rd_fire, rb["beats"], 0) - ch["pop"]),
            credit.eq(credit + Mux(rd_fire, rb["beats"], 0) - Mux(wr_fire, wbst["beats"], 0)),
            out_b.eq(out_b + wr_fire - ch["b_beat"]),
        ]
        with m.If(ch["r_beat"] & xfer & self.m_axi.rresp[1]):
            m.d.sync += rd_err.eq(1)
        with m.If(ch["b_beat"] & self.m_axi.bresp[1]):
            m.d.sync += wr_err.eq(1)
        with m.If(ch["pop"]):
            m.d.sync += ch["wr_beats"].eq(ch["wr_beats"] + 1)
        with m.If(ch["state"] == S.ST_BUSY):
            m.d.sync += ch["busy"].eq(ch["busy"] + 1)

        # read-side walker
        with m.If(rd_fire):
            m.d.sync += ch["rd_beats"].eq(ch["rd_beats"] + rb["beats"])
            with m.If(rb["bytes"] == rb["rem"]):
                m.d.sync += rd_cons.eq(0)
                with m.If(rdw.last):
                    m.d.sync += rd_done.eq(1)
                with m.Else():
                    m.d.comb += rdw.advance.eq(1)
            with m.Else():
                m.d.sync += rd_cons.eq(rd_cons + rb["bytes"])
        # write-side walker (and the src-offset walker in lock step)
        with m.If(wr_fire):
            with m.If(wbst["bytes"] == wbst["rem"]):
                m.d.sync += wr_cons.eq(0)
                with m.If(wrw.last):
                    m.d.sync += wr_done.eq(1)
                with m.Else():
                    m.d.comb += [wrw.advance.eq(1), rotw.advance.eq(1)]
            with m.Else():
                m.d.sync += wr_cons.eq(wr_cons + wbst["bytes"])

        # IRQ_STATUS: software W1C and same-cycle sets by the channel (a set wins)
        irq_set = sig("irq_set", 2)
        m.d.sync += ch["irq_status"].eq((ch["irq_status"] & ~ch["w1c"]) | irq_set)

        def fail(code):
            m.d.sync += [ch["state"].eq(S.ST_ERROR), ch["error"].eq(code),
                         ch["err_desc"].eq(ch["cur_desc"])]
            m.d.comb += irq_set.eq(S.IRQ_ERROR)
            m.next = "IDLE"

        with m.FSM(name=f"{p}_fsm"):
            with m.State("IDLE"):
                with m.If(ch["doorbell"]):
                    m.d.sync += [ch["state"].eq(S.ST_BUSY), ch["error"].eq(0),
                                 ch["err_desc"].eq(0), ch["cur_desc"].eq(ch["head"]),
                                 ch["desc_count"].eq(0), ch["rd_beats"].eq(0),
                                 ch["wr_beats"].eq(0), ch["bytes"].eq(0), ch["busy"].eq(0),
                                 ch["sem_count"].eq(0)]
                    m.next = "DCHECK"
            with m.State("DCHECK"):
                with m.If(ch["cur_desc"][:6] != 0):
                    fail(S.ERR_DESC_ALIGN)
                with m.Elif(~inside(ch["cur_desc"], S.DESC_BYTES)):
                    fail(S.ERR_DESC_WINDOW)
                with m.Else():
                    m.next = "FETCH_REQ"
            with m.State("FETCH_REQ"):
                m.d.comb += fetch_req.eq(1)
                with m.If(ch["ar_grant"]):
                    m.d.sync += fetch_err.eq(0)
                    m.next = "FETCH"
            with m.State("FETCH"):
                with m.If(ch["r_beat"]):
                    m.d.sync += raw.eq(Cat(raw[dbits:], self.m_axi.rdata))
                    with m.If(self.m_axi.rresp[1]):
                        m.d.sync += fetch_err.eq(1)
                    with m.If(self.m_axi.rlast):
                        m.next = "VAL1"
            with m.State("VAL1"):
                with m.If(fetch_err):
                    fail(S.ERR_DESC_READ)
                with m.Else():
                    m.d.sync += [
                        v_bad.eq(((ctrl & S.CTRL_RESERVED_MASK) != 0)
                                 | ((word(S.W_COUNT2) & S.COUNT2_RESERVED_MASK) != 0)),
                        v_zero.eq((counts[0] == 0) | (counts[1] == 0) | (counts[2] == 0)),
                        v_mis.eq(((src | dst | ss[0] | ss[1] | ss[2] | ds[0] | ds[1] | ds[2])
                                  & emask) != 0),
                        v_row.eq((ss[0] == ebytes) & (ds[0] == ebytes) & (low(src) == low(dst))
                                 & (low(ss[1]) == low(ds[1])) & (low(ss[2]) == low(ds[2]))),
                        ext_s.eq(extent(ss)), ext_d.eq(extent(ds)),
                        total.eq(((counts[0] * counts[1])[:32] * counts[2]) << esize),
                    ]
                    m.next = "VAL2"
            with m.State("VAL2"):
                with m.If(v_bad):
                    fail(S.ERR_BAD_DESC)
                with m.Elif(v_zero):
                    fail(S.ERR_ZERO_COUNT)
                with m.Elif(v_mis):
                    fail(S.ERR_MISALIGNED)
                with m.Elif(~inside(src, ext_s)):
                    fail(S.ERR_SRC_WINDOW)
                with m.Elif(~inside(dst, ext_d)):
                    fail(S.ERR_DST_WINDOW)
                with m.Elif((src < dst + ext_d) & (dst < src + ext_s)):
                    fail(S.ERR_OVERLAP)
                with m.Else():
                    m.d.comb += [rdw.load.eq(1), wrw.load.eq(1), rotw.load.eq(1)]
                    m.d.sync += [run_len.eq(Mux(v_row, counts[0] << esize, ebytes)),
                                 rd_cons.eq(0), wr_cons.eq(0), rd_done.eq(0), wr_done.eq(0),
                                 rd_err.eq(0), wr_err.eq(0)]
                    m.next = "XFER"
            with m.State("XFER"):
                m.d.comb += xfer.eq(1)
                with m.If(rd_done & wr_done & (inflight == 0) & (out_b == 0)):
                    m.next = "FINISH"
            with m.State("FINISH"):
                with m.If(rd_err):
                    fail(S.ERR_READ_RESP)
                with m.Elif(wr_err):
                    fail(S.ERR_WRITE_RESP)
                with m.Else():
                    m.d.sync += [ch["desc_count"].eq(ch["desc_count"] + 1),
                                 ch["bytes"].eq(ch["bytes"] + total)]
                    with m.If(ctrl & S.CTRL_IRQ):
                        m.d.comb += irq_set.eq(S.IRQ_DONE)
                    with m.If(ctrl & S.CTRL_SEM):
                        m.next = "SEM"
                    with m.Else():
                        m.next = "NEXT"
            with m.State("SEM"):
                m.d.comb += ch["sem_req"].eq(1)
                with m.If(ch["sem_grant"]):
                    m.d.sync += ch["sem_count"].eq(ch["sem_count"] + 1)
                    m.next = "NEXT"
            with m.State("NEXT"):
                with m.If(nxt == 0):
                    m.d.sync += ch["state"].eq(S.ST_DONE)
                    m.next = "IDLE"
                with m.Else():
                    m.d.sync += ch["cur_desc"].eq(nxt)
                    m.next = "DCHECK"
        return ch

    # ------------------------------------------------------------------------------------
    def _csr(self, m, chs, win_base, win_size, lw):
        """AXI4-Lite register file (one transaction at a time; SLVERR on bad accesses)."""
        lite = self.s_axil
        config = (self._channels | (lw << 8) | (self._windows << 12)
                  | ((self._max_burst - 1) << 16))
        # readable: addr -> value; writable: addr -> action(data)
        rd = {S.REG_ID: Const(S.ID_MAGIC, 32), S.REG_CONFIG: Const(config, 32)}
        wr = {}
        for k in range(self._windows):
            rd[S.win_base_reg(k)] = win_base[k]
            rd[S.win_size_reg(k)] = win_size[k]
            wr[S.win_base_reg(k)] = (lambda d, k=k: [win_base[k].eq(d)], Const(1))
            wr[S.win_size_reg(k)] = (lambda d, k=k: [win_size[k].eq(d)], Const(1))
        for c, ch in enumerate(chs):
            busy = ch["state"] == S.ST_BUSY
            regs = {"HEAD": ch["head"], "DOORBELL": Const(0, 32), "STATUS": ch["state"],
                    "ERROR": ch["error"], "ERR_DESC": ch["err_desc"],
                    "CUR_DESC": ch["cur_desc"], "IRQ_STATUS": ch["irq_status"],
                    "IRQ_ENABLE": ch["irq_enable"], "DESC_COUNT": ch["desc_count"],
                    "RD_BEATS": ch["rd_beats"], "WR_BEATS": ch["wr_beats"],
                    "BYTES": ch["bytes"], "BUSY_CYCLES": ch["busy"],
                    "SEM_COUNT": ch["sem_count"]}
            for name, (off, _acc) in S.CH_REGS.items():
                rd[S.ch_reg(c, off)] = regs[name]
            wr[S.ch_reg(c, S.CH_HEAD)] = (lambda d, ch=ch: [ch["head"].eq(d)], Const(1))
            wr[S.ch_reg(c, S.CH_IRQ_ENABLE)] = (lambda d, ch=ch: [ch["irq_enable"].eq(d[:2])],
                                                Const(1))
            # IRQ_STATUS W1C is applied below (it races with the channel's own updates)
            wr[S.ch_reg(c, S.CH_IRQ_STATUS)] = (lambda d: [], Const(1))
            wr[S.ch_reg(c, S.CH_DOORBELL)] = (lambda d: [], ~busy)

        # write path: take AW and W together
        bvalid, bresp = lite.bvalid, lite.bresp
        take_w = lite.awvalid & lite.wvalid & ~bvalid
        m.d.comb += [lite.awready.eq(take_w), lite.wready.eq(take_w)]
        with m.If(bvalid & lite.bready):
            m.d.sync += bvalid.eq(0)
        waddr = lite.awaddr
        full = lite.wstrb == 0xF
        with m.If(take_w):
            m.d.sync += [bvalid.eq(1), bresp.eq(_RESP_SLVERR)]
            with m.Switch(waddr):
                for a, (action, allowed) in wr.items():
                    with m.Case(a):
                        with m.If(full & allowed):
                            m.d.sync += [bresp.eq(0), *action(lite.wdata)]
                            for c in range(len(chs)):
                                if a == S.ch_reg(c, S.CH_DOORBELL):
                                    m.d.comb += chs[c]["doorbell"].eq(1)
                                if a == S.ch_reg(c, S.CH_IRQ_STATUS):
                                    m.d.comb += chs[c]["w1c"].eq(lite.wdata[:2])
        # read path
        rvalid = lite.rvalid
        m.d.comb += lite.arready.eq(~rvalid)
        with m.If(rvalid & lite.rready):
            m.d.sync += rvalid.eq(0)
        with m.If(lite.arvalid & ~rvalid):
            m.d.sync += [rvalid.eq(1), lite.rdata.eq(0), lite.rresp.eq(_RESP_SLVERR)]
            with m.Switch(lite.araddr):
                for a, value in rd.items():
                    with m.Case(a):
                        m.d.sync += [lite.rdata.eq(value), lite.rresp.eq(0)]


VERILOG_TOPS = {"dma": lambda: DMAEngine()}
