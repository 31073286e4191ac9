"""Glue that puts NIC ports into the chip (docs/chip.md "NIC ports").

* :class:`AxiUpsizer`: the NIC's 64-bit AXI4 master onto the chip's 256-bit HBM path.
* :class:`AxiMerge`: several AXI4 managers onto one (the command processor and the NIC ports
  share the command processor's NoC network interface).
* :class:`AxiLiteDecoder`: the host AXI4-Lite interface onto the chip CSR block and the NIC
  ports' CSR blocks, one 4 KiB block each.
"""

from __future__ import annotations

from amaranth import Cat, Const, Module, Mux, Signal
from amaranth.lib import fifo, wiring
from amaranth.lib.wiring import In, Out

from rtl.axi import BURST_INCR, RESP_DECERR, AXI4LiteSignature, AXI4Signature

__all__ = ["AxiUpsizer", "AxiMerge", "AxiLiteDecoder"]


class AxiUpsizer(wiring.Component):
    """AXI4 width converter: a ``narrow``-bit manager (``s_axi``) onto a ``wide``-bit
    subordinate (``m_axi``), same address width, with store-and-forward buffers so that the
    wide side (shared with other managers through an :class:`AxiMerge`) is never slowed to
    the narrow side's rate.

    A narrow INCR burst of full-width beats (``*size`` = log2(narrow/8), what the NIC
    issues) becomes one wide INCR burst over the wide words it touches: the first and last
    wide beats carry only the strobes of the narrow beats inside them. The narrow burst must
    not cross a 4 KiB boundary (then neither does the wide one). IDs are returned unchanged
    to the narrow side; the wide side uses ID 0.

    ``max_burst`` (narrow beats, default 128: the longest burst rtl.nic.NicCore issues) sizes
    both buffers to ``B = max_burst * narrow / wide + 1`` wide beats (the most a burst of
    ``max_burst`` beats can touch at any alignment).

    Reads: up to ``outstanding`` bursts accepted (the subordinate answers them in order:
    the wide side uses one ID). An AR is accepted only while the read buffer has credits for
    every wide beat of the burst (beats of accepted bursts not yet handed out + this one
    <= B), then registered (one cycle) and issued. The wide R beats are taken at full rate
    (``rready`` = 1 whenever data come) into a ``lib.fifo.SyncFIFOBuffered`` of B wide beats
    (and their RRESP), and handed out one narrow beat per cycle. Latency: narrow AR -> wide
    ARVALID 1 cycle; wide R beat -> its first narrow beat 2 cycles (the buffered FIFO).

    Writes: the narrow AW is accepted after the last W beat of the previous burst, up to
    ``outstanding`` B responses awaited. Narrow W beats (one per cycle) are packed into wide
    beats and stored in a write FIFO of B wide beats (data + strobes); when the narrow
    burst's WLAST is taken, its wide AW is queued, and once the wide AW is accepted its W
    beats go out back to back (one per cycle while WREADY), so the wide W channel is held
    only as many cycles as the burst has wide beats. Latency: narrow WLAST -> wide AWVALID
    2 cycles, first wide W beat the cycle after the AW is accepted. The B response is returned to the narrow side unchanged (in order).

    Bursts longer than ``max_burst`` still work, at the narrow rate: a read of more than B
    wide beats is accepted once the read buffer is empty (the wide R channel then waits on
    the narrow side), and the wide AW of such a write is queued when its narrow AW is
    accepted (its W beats follow the narrow ones).

    Resource cost: two FIFOs of B entries, (wide + 2) and (wide + wide/8) bits, (33 x 258
    and 33 x 288 bits for 64 -> 256 with 128-beat bursts), plus per-burst queues of
    ``outstanding`` entries.
    """

    def __init__(self, *, addr_width: int = 32, narrow: int = 64, wide: int = 256,
                 narrow_id_width: int = 4, wide_id_width: int = 1, outstanding: int = 4,
                 max_burst: int = 128):
        if wide % narrow or wide <= narrow:
            raise ValueError(f"wide: must be a multiple of narrow ({narrow}) above it, "
                             f"got {wide}")
        self._aw, self._n, self._w = addr_width, narrow, wide
        self._nidw = narrow_id_width
        if not isinstance(outstanding, int) or outstanding < 1:
            raise ValueError(f"outstanding: must be a positive int, got {outstanding!r}")
        if not isinstance(max_burst, int) or not 1 <= max_burst <= 256:
            raise ValueError(f"max_burst: must be an int in 1..256, got {max_burst!r}")
        self._out = outstanding
        self.max_burst = max_burst
        self.buffer_beats = -(-max_burst * narrow // wide) + 1
        super().__init__({
            "s_axi": In(AXI4Signature(addr_width=addr_width, data_width=narrow,
                                      id_width=narrow_id_width)),
            "m_axi": Out(AXI4Signature(addr_width=addr_width, data_width=wide,
                                       id_width=wide_id_width)),
        })

    def elaborate(self, platform):
        m = Module()
        s, w = self.s_axi, self.m_axi
        ratio = self._w // self._n
        lane_bits = (ratio - 1).bit_length()
        nbyte_bits = (self._n // 8 - 1).bit_length()
        wbyte_bits = (self._w // 8 - 1).bit_length()
        last_lane = ratio - 1
        nbuf = self.buffer_beats

        def wide_len(addr, length):
            lane0 = addr[nbyte_bits:nbyte_bits + lane_bits]
            return ((lane0 + length) >> lane_bits)[:8]

        def wide_addr(addr):
            return Cat(Const(0, wbyte_bits), addr[wbyte_bits:])

        for ch in ("aw", "ar"):
            m.d.comb += [getattr(w, ch + "size").eq(wbyte_bits),
                         getattr(w, ch + "burst").eq(BURST_INCR),
                         getattr(w, ch + "id").eq(0)]

        # ---------------- reads: credits for the read buffer, wide R at full rate --------
        # per accepted narrow burst: (first lane, narrow arlen, ID), in issue order
        m.submodules.rq = rq = fifo.SyncFIFO(width=lane_bits + 8 + self._nidw,
                                             depth=self._out)
        m.submodules.rbuf = rbuf = fifo.SyncFIFOBuffered(width=self._w + 2, depth=nbuf)
        r_res = Signal(range(nbuf + 258))      # wide beats reserved, not yet handed out
        ar_need = Signal(9)
        m.d.comb += ar_need.eq(wide_len(s.araddr, s.arlen) + 1)
        credit = (r_res + ar_need <= nbuf) | (r_res == 0)
        ar_pend = Signal()
        ar_addr, ar_len = Signal(self._aw), Signal(8)
        m.d.comb += [s.arready.eq(~ar_pend & rq.w_rdy & credit),
                     rq.w_data.eq(Cat(s.araddr[nbyte_bits:nbyte_bits + lane_bits], s.arlen,
                                      s.arid)),
                     rq.w_en.eq(s.arvalid & s.arready)]
        with m.If(s.arvalid & s.arready):
            m.d.sync += [ar_pend.eq(1),
                         ar_addr.eq(wide_addr(s.araddr)), ar_len.eq(wide_len(s.araddr, s.arlen)),
                         w.arlock.eq(s.arlock), w.arcache.eq(s.arcache), w.arprot.eq(s.arprot)]
        m.d.comb += [w.arvalid.eq(ar_pend), w.araddr.eq(ar_addr), w.arlen.eq(ar_len)]
        with m.If(w.arvalid & w.arready):
            m.d.sync += ar_pend.eq(0)
        m.d.comb += [w.rready.eq(rbuf.w_rdy), rbuf.w_en.eq(w.rvalid),
                     rbuf.w_data.eq(Cat(w.rdata, w.rresp))]
        h_lane0 = rq.r_data[:lane_bits]
        h_len = rq.r_data[lane_bits:lane_bits + 8]
        h_id = rq.r_data[lane_bits + 8:]
        r_cnt = Signal(8)                      # narrow beats of the head burst delivered
        r_lane = Signal(lane_bits)
        m.d.comb += r_lane.eq(h_lane0 + r_cnt)
        r_last = r_cnt == h_len
        m.d.comb += [s.rvalid.eq(rq.r_rdy & rbuf.r_rdy),
                     s.rdata.eq(rbuf.r_data[:self._w].word_select(r_lane, self._n)),
                     s.rresp.eq(rbuf.r_data[self._w:]), s.rid.eq(h_id), s.rlast.eq(r_last)]
        with m.If(s.rvalid & s.rready):
            m.d.sync += r_cnt.eq(Mux(r_last, 0, r_cnt + 1))
            m.d.comb += [rq.r_en.eq(r_last),
                         rbuf.r_en.eq((r_lane == last_lane) | r_last)]
        m.d.sync += r_res.eq(r_res + Mux(s.arvalid & s.arready, ar_need, 0) - rbuf.r_en)

        # ---------------- writes: store the burst, then AW + back-to-back W beats --------
        m.submodules.bq = bq = fifo.SyncFIFO(width=self._nidw, depth=self._out)
        m.submodules.wbuf = wbuf = fifo.SyncFIFOBuffered(width=self._w + self._w // 8,
                                                         depth=nbuf)
        # queued wide AWs: (address, length, lock, cache, prot)
        m.submodules.awq = awq = fifo.SyncFIFOBuffered(width=self._aw + 8 + 1 + 4 + 3,
                                                       depth=self._out)
        w_busy = Signal()
        w_lane = Signal(lane_bits)
        aw_ent = Signal(self._aw + 16)         # the accepted burst's awq entry
        aw_late = Signal()                     # queue its AW at WLAST (fits the buffer)
        acc_d, acc_s = Signal(self._w), Signal(self._w // 8)
        aw_now = Cat(wide_addr(s.awaddr), wide_len(s.awaddr, s.awlen), s.awlock, s.awcache,
                     s.awprot)
        fits = wide_len(s.awaddr, s.awlen) < nbuf
        m.d.comb += [s.awready.eq(~w_busy & bq.w_rdy & awq.w_rdy), bq.w_data.eq(s.awid),
                     bq.w_en.eq(s.awvalid & s.awready)]
        with m.If(s.awvalid & s.awready):
            m.d.sync += [w_busy.eq(1), aw_ent.eq(aw_now), aw_late.eq(fits),
                         w_lane.eq(s.awaddr[nbyte_bits:nbyte_bits + lane_bits]),
                         acc_d.eq(0), acc_s.eq(0)]
            with m.If(~fits):
                m.d.comb += [awq.w_en.eq(1), awq.w_data.eq(aw_now)]
        complete = (w_lane == last_lane) | s.wlast
        lane_d = Signal(self._w)
        lane_s = Signal(self._w // 8)
        m.d.comb += [lane_d.eq(s.wdata << (w_lane * self._n)),
                     lane_s.eq(s.wstrb << (w_lane * (self._n // 8)))]
        m.d.comb += [wbuf.w_data.eq(Cat(acc_d | lane_d, acc_s | lane_s)),
                     s.wready.eq(w_busy & (~complete | wbuf.w_rdy)),
                     wbuf.w_en.eq(s.wvalid & s.wready & complete)]
        with m.If(s.wvalid & s.wready):
            m.d.sync += w_lane.eq(w_lane + 1)
            with m.If(complete):
                m.d.sync += [acc_d.eq(0), acc_s.eq(0)]
            with m.Else():
                m.d.sync += [acc_d.eq(acc_d | lane_d), acc_s.eq(acc_s | lane_s)]
            with m.If(s.wlast):
                m.d.sync += w_busy.eq(0)
                with m.If(aw_late):
                    m.d.comb += [awq.w_en.eq(1), awq.w_data.eq(aw_ent)]
        # wide side: AW from the queue, then its W beats from the write buffer
        w_act = Signal()
        w_cnt, w_len = Signal(8), Signal(8)
        q = awq.r_data
        m.d.comb += [w.awvalid.eq(awq.r_rdy & ~w_act), w.awaddr.eq(q[:self._aw]),
                     w.awlen.eq(q[self._aw:self._aw + 8]), w.awlock.eq(q[self._aw + 8]),
                     w.awcache.eq(q[self._aw + 9:self._aw + 13]), w.awprot.eq(q[self._aw + 13:]),
                     awq.r_en.eq(w.awvalid & w.awready)]
        with m.If(w.awvalid & w.awready):
            m.d.sync += [w_act.eq(1), w_cnt.eq(0), w_len.eq(q[self._aw:self._aw + 8])]
        m.d.comb += [w.wvalid.eq(w_act & wbuf.r_rdy), w.wdata.eq(wbuf.r_data[:self._w]),
                     w.wstrb.eq(wbuf.r_data[self._w:]), w.wlast.eq(w_cnt == w_len),
                     wbuf.r_en.eq(w.wvalid & w.wready)]
        with m.If(w.wvalid & w.wready):
            m.d.sync += w_cnt.eq(w_cnt + 1)
            with m.If(w.wlast):
                m.d.sync += w_act.eq(0)
        m.d.comb += [s.bvalid.eq(bq.r_rdy & w.bvalid), s.bresp.eq(w.bresp), s.bid.eq(bq.r_data),
                     w.bready.eq(bq.r_rdy & s.bready), bq.r_en.eq(s.bvalid & s.bready)]
        return m


def _rr_pick(m, valids, last, name):
    """Round-robin choice among ``valids`` starting after index ``last``: (any, index)."""
    n = len(valids)
    pick = Signal(range(max(2, n)), name=f"{name}_pick")
    anyv = Signal(name=f"{name}_any")
    m.d.comb += anyv.eq(Cat(*valids).any())
    # lowest priority first, so the last assignment (highest priority) wins
    for off in reversed(range(1, n + 1)):
        for cur in range(n):
            idx = (cur + off) % n
            with m.If((last == cur) & valids[idx]):
                m.d.comb += pick.eq(idx)
    return anyv, pick


class AxiMerge(wiring.Component):
    """``n`` AXI4 managers (``s{i}``) onto one subordinate port (``m_axi``), all of the same
    signature.

    Reads and writes are arbitrated independently, round robin. Reads: up to
    ``outstanding`` bursts in flight (from any managers, all with one ID, so the subordinate
    answers them in order); each manager gets its R beats in the order of its grants.
    Writes: one W burst at a time (AW, then its W beats), up to ``outstanding`` B responses
    awaited (one ID), each returned to its manager. A grant costs one cycle per burst; data
    beats pass combinationally. IDs pass unchanged.
    """

    def __init__(self, n: int, signature: AXI4Signature, outstanding: int = 4):
        if not isinstance(n, int) or n < 1:
            raise ValueError(f"n: must be a positive int, got {n!r}")
        if not isinstance(outstanding, int) or outstanding < 1:
            raise ValueError(f"outstanding: must be a positive int, got {outstanding!r}")
        self._n, self._out = n, outstanding
        ports = {f"s{i}": In(signature) for i in range(n)}
        ports["m_axi"] = Out(signature)
        super().__init__(ports)

    def elaborate(self, platform):
        m = Module()
        n = self._n
        subs = [getattr(self, f"s{i}") for i in range(n)]
        o = self.m_axi
        ar_f = ("arid", "araddr", "arlen", "arsize", "arburst", "arlock", "arcache", "arprot")
        aw_f = ("awid", "awaddr", "awlen", "awsize", "awburst", "awlock", "awcache", "awprot")

        # ---- reads: up to ``outstanding`` bursts in flight, answered in order ----
        # An AR is granted (round robin, one cycle) and passed; its manager's index joins
        # the owner FIFO, whose head receives the R beats up to rlast. A read is passed while
        # others are in flight only with their ID (AXI keeps one ID's reads in order).
        m.submodules.rown = own = fifo.SyncFIFO(width=max(1, (n - 1).bit_length()),
                                                depth=self._out)
        r_own = Signal(range(max(2, n)))
        r_id = Signal.like(o.arid)
        anyr, pickr = _rr_pick(m, [s.arvalid for s in subs], r_own, "ar")
        with m.FSM(name="rd"):
            with m.State("IDLE"):
                with m.If(anyr):
                    m.d.sync += r_own.eq(pickr)
                    m.next = "AR"
            with m.State("AR"):
                for i, s in enumerate(subs):
                    with m.If(r_own == i):
                        ok = own.w_rdy & (~own.r_rdy | (s.arid == r_id))
                        m.d.comb += [getattr(o, f).eq(getattr(s, f)) for f in ar_f]
                        m.d.comb += [o.arvalid.eq(s.arvalid & ok),
                                     s.arready.eq(o.arready & ok)]
                m.d.comb += [own.w_data.eq(r_own), own.w_en.eq(o.arvalid & o.arready)]
                with m.If(o.arvalid & o.arready):
                    m.d.sync += r_id.eq(o.arid)
                    m.next = "IDLE"
        head = own.r_data
        for i, s in enumerate(subs):
            with m.If(own.r_rdy & (head == i)):
                m.d.comb += [s.rvalid.eq(o.rvalid), o.rready.eq(s.rready)]
        m.d.comb += own.r_en.eq(o.rvalid & o.rready & o.rlast)
        for s in subs:
            m.d.comb += [s.rdata.eq(o.rdata), s.rresp.eq(o.rresp), s.rid.eq(o.rid),
                         s.rlast.eq(o.rlast)]

        # ---- writes: one W burst at a time, up to ``outstanding`` B responses awaited ----
        m.submodules.bown = bown = fifo.SyncFIFO(width=max(1, (n - 1).bit_length()),
                                                 depth=self._out)
        w_own = Signal(range(max(2, n)))
        w_id = Signal.like(o.awid)
        anyw, pickw = _rr_pick(m, [s.awvalid for s in subs], w_own, "aw")
        with m.FSM(name="wr"):
            with m.State("IDLE"):
                with m.If(anyw):
                    m.d.sync += w_own.eq(pickw)
                    m.next = "AW"
            with m.State("AW"):
                for i, s in enumerate(subs):
                    with m.If(w_own == i):
                        ok = bown.w_rdy & (~bown.r_rdy | (s.awid == w_id))
                        m.d.comb += [getattr(o, f).eq(getattr(s, f)) for f in aw_f]
                        m.d.comb += [o.awvalid.eq(s.awvalid & ok),
                                     s.awready.eq(o.awready & ok)]
                m.d.comb += [bown.w_data.eq(w_own), bown.w_en.eq(o.awvalid & o.awready)]
                with m.If(o.awvalid & o.awready):
                    m.d.sync += w_id.eq(o.awid)
                    m.next = "W"
            with m.State("W"):
                for i, s in enumerate(subs):
                    with m.If(w_own == i):
                        m.d.comb += [o.wdata.eq(s.wdata), o.wstrb.eq(s.wstrb),
                                     o.wlast.eq(s.wlast), o.wvalid.eq(s.wvalid),
                                     s.wready.eq(o.wready)]
                with m.If(o.wvalid & o.wready & o.wlast):
                    m.next = "IDLE"
        bhead = bown.r_data
        for i, s in enumerate(subs):
            with m.If(bown.r_rdy & (bhead == i)):
                m.d.comb += [s.bvalid.eq(o.bvalid), o.bready.eq(s.bready)]
        m.d.comb += bown.r_en.eq(o.bvalid & o.bready)
        for s in subs:
            m.d.comb += [s.bresp.eq(o.bresp), s.bid.eq(o.bid)]
        return m


class AxiLiteDecoder(wiring.Component):
    """AXI4-Lite subordinate (``s_axil``, ``addr_width`` bits) onto ``n`` managers
    (``m{i}``, ``block_bits``-bit addresses): block i = addresses
    [i << block_bits, (i + 1) << block_bits). Addresses in no block answer DECERR (reads
    return 0).

    One transaction per direction at a time; a write is accepted when AW and W are both
    valid (as the chip's CSR blocks do), then passed on (registered), and its response
    returned. Cost: two cycles more than the block's own latency per access.
    """

    def __init__(self, *, addr_width: int, n: int, block_bits: int = 12):
        if not isinstance(n, int) or not 1 <= n <= 1 << (addr_width - block_bits):
            raise ValueError(f"n: must be in 1..{1 << (addr_width - block_bits)}, got {n!r}")
        self._aw, self._n, self._bb = addr_width, n, block_bits
        ports = {"s_axil": In(AXI4LiteSignature(addr_width=addr_width, data_width=32))}
        for i in range(n):
            ports[f"m{i}"] = Out(AXI4LiteSignature(addr_width=block_bits, data_width=32))
        super().__init__(ports)

    def elaborate(self, platform):
        m = Module()
        s = self.s_axil
        subs = [getattr(self, f"m{i}") for i in range(self._n)]
        bb = self._bb

        # ---- writes ----
        w_tgt = Signal(self._aw - bb)
        w_addr, w_data, w_strb, w_prot = Signal(bb), Signal(32), Signal(4), Signal(3)
        aw_left, w_left = Signal(), Signal()
        sel_awready, sel_wready = Signal(), Signal()
        for i, sub in enumerate(subs):
            with m.If(w_tgt == i):
                m.d.comb += [sel_awready.eq(sub.awready), sel_wready.eq(sub.wready)]
        with m.FSM(name="wr"):
            with m.State("IDLE"):
                with m.If(s.awvalid & s.wvalid):
                    m.d.comb += [s.awready.eq(1), s.wready.eq(1)]
                    m.d.sync += [w_tgt.eq(s.awaddr[bb:]), w_addr.eq(s.awaddr[:bb]),
                                 w_prot.eq(s.awprot), w_data.eq(s.wdata), w_strb.eq(s.wstrb),
                                 aw_left.eq(1), w_left.eq(1)]
                    with m.If(s.awaddr[bb:] < self._n):
                        m.next = "SEND"
                    with m.Else():
                        m.next = "ERR"
            with m.State("SEND"):
                for i, sub in enumerate(subs):
                    with m.If(w_tgt == i):
                        m.d.comb += [sub.awvalid.eq(aw_left), sub.wvalid.eq(w_left)]
                        with m.If(sub.awready):
                            m.d.sync += aw_left.eq(0)
                        with m.If(sub.wready):
                            m.d.sync += w_left.eq(0)
                with m.If((~aw_left | sel_awready) & (~w_left | sel_wready)):
                    m.next = "B"
            with m.State("B"):
                for i, sub in enumerate(subs):
                    with m.If(w_tgt == i):
                        m.d.comb += [s.bvalid.eq(sub.bvalid), s.bresp.eq(sub.bresp),
                                     sub.bready.eq(s.bready)]
                with m.If(s.bvalid & s.bready):
                    m.next = "IDLE"
            with m.State("ERR"):
                m.d.comb += [s.bvalid.eq(1), s.bresp.eq(RESP_DECERR)]
                with m.If(s.bready):
                    m.next = "IDLE"
        for sub in subs:
            m.d.comb += [sub.awaddr.eq(w_addr), sub.awprot.eq(w_prot), sub.wdata.eq(w_data),
                         sub.wstrb.eq(w_strb)]

        # ---- reads ----
        r_tgt = Signal(self._aw - bb)
        r_addr, r_prot = Signal(bb), Signal(3)
        with m.FSM(name="rd"):
            with m.State("IDLE"):
                m.d.comb += s.arready.eq(1)
                with m.If(s.arvalid):
                    m.d.sync += [r_tgt.eq(s.araddr[bb:]), r_addr.eq(s.araddr[:bb]),
                                 r_prot.eq(s.arprot)]
                    with m.If(s.araddr[bb:] < self._n):
                        m.next = "AR"
                    with m.Else():
                        m.next = "ERR"
            with m.State("AR"):
                for i, sub in enumerate(subs):
                    with m.If(r_tgt == i):
                        m.d.comb += sub.arvalid.eq(1)
                        with m.If(sub.arready):
                            m.next = "R"
            with m.State("R"):
                for i, sub in enumerate(subs):
                    with m.If(r_tgt == i):
                        m.d.comb += [s.rvalid.eq(sub.rvalid), s.rdata.eq(sub.rdata),
                                     s.rresp.eq(sub.rresp), sub.rready.eq(s.rready)]
                with m.If(s.rvalid & s.rready):
                    m.next = "IDLE"
            with m.State("ERR"):
                m.d.comb += [s.rvalid.eq(1), s.rresp.eq(RESP_DECERR)]
                with m.If(s.rready):
                    m.next = "IDLE"
        for sub in subs:
            m.d.comb += [sub.araddr.eq(r_addr), sub.arprot.eq(r_prot)]
        return m

