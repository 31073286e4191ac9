"""AXI4 subordinate in front of a word-wide SRAM (CSRAM banks, a tile's TSRAM ``ext`` port),
and the 1-to-N AXI4 address decoder that joins a DMA engine to its memories. Shared by the
tile (its DMA unit) and the chip (clusters)."""

from __future__ import annotations

from amaranth import Module, Mux, Signal, Value
from amaranth.lib import data, fifo, wiring
from amaranth.lib.wiring import In, Out

from rtl.axi import RESP_OKAY, RESP_SLVERR, AXI4Signature
from rtl.tile.tsram import WORD_BITS, tsram_port
from spec.tile import WORD_BYTES

__all__ = ["AxiSram", "PortMerge", "AxiDecoder"]

WORD_SHIFT = (WORD_BYTES - 1).bit_length()   # 5


class AxiSram(wiring.Component):
    """AXI4 subordinate (``data_width`` = one 32-byte SRAM word) onto two SRAM requester
    ports (``rd``, ``wr``, :func:`rtl.tile.tsram.tsram_port`), for a memory of ``words``
    words.

    Bursts are INCR with full-width beats (what the DMA engine issues; ``*size`` and
    ``*burst`` are not checked). Addresses are taken modulo ``span`` (the power-of-two
    aligned region the decoder routes here). A beat whose word index is >= ``words`` is answered
    SLVERR: reads return 0, writes are dropped (the burst still completes).

    Latency: read data two cycles after the grant of its word (SRAM + response FIFO);
    throughput one read beat and one write beat per cycle when the ports are granted and
    ``rready`` is high. A new AR is accepted as soon as every word of the previous read
    burst was requested; a write burst costs its beats + 2 cycles (AW, B).
    """

    def __init__(self, *, words: int, addr_width: int, id_width: int, span: int = 1 << 32):
        if not isinstance(words, int) or words < 1:
            raise ValueError(f"words: must be a positive int, got {words!r}")
        if span & (span - 1) or span < words * WORD_BYTES:
            raise ValueError(f"span: must be a power of two >= {words * WORD_BYTES}, "
                             f"got {span!r}")
        self._span_bits = (span - 1).bit_length()
        if (words - 1).bit_length() > addr_width:
            raise ValueError(f"addr_width: {addr_width} bits cannot address {words} words")
        self._words, self._aw, self._idw = words, addr_width, id_width
        super().__init__({
            "s_axi": In(AXI4Signature(addr_width=32, data_width=WORD_BITS, id_width=id_width)),
            "rd": Out(tsram_port(addr_width)),
            "wr": Out(tsram_port(addr_width)),
        })

    def elaborate(self, platform):
        m = Module()
        s, rd, wr = self.s_axi, self.rd, self.wr
        idw = self._idw
        words = self._words

        # ---------------- reads ----------------
        beat = data.StructLayout({"data": WORD_BITS, "id": idw, "last": 1, "resp": 2})
        depth = 8
        m.submodules.rfifo = rf = fifo.SyncFIFOBuffered(width=beat.size, depth=depth)
        busy = Signal()
        raddr = Signal(32 - WORD_SHIFT)
        rleft = Signal(8)
        rid = Signal(idw)
        # one-cycle pipeline stage: a word requested (or refused) last cycle
        p_valid, p_err, p_last, p_id = Signal(), Signal(), Signal(), Signal(idw)
        inrange = raddr < words
        space = (rf.w_level + p_valid) < depth - 1
        issue = Signal()
        m.d.comb += s.arready.eq(~busy)
        with m.If(s.arvalid & ~busy):
            m.d.sync += [busy.eq(1), raddr.eq(s.araddr[WORD_SHIFT:self._span_bits]), rleft.eq(s.arlen),
                         rid.eq(s.arid)]
        m.d.comb += [rd.valid.eq(busy & space & inrange), rd.addr.eq(raddr[:self._aw]),
                     rd.we.eq(0), rd.wmask.eq(0), rd.wdata.eq(0)]
        m.d.comb += issue.eq(busy & space & (rd.ready | ~inrange))
        m.d.sync += p_valid.eq(issue)
        with m.If(issue):
            m.d.sync += [p_err.eq(~inrange), p_last.eq(rleft == 0), p_id.eq(rid),
                         raddr.eq(raddr + 1), rleft.eq(rleft - 1)]
            with m.If(rleft == 0):
                m.d.sync += busy.eq(0)
        w_in = data.View(beat, rf.w_data)
        m.d.comb += [rf.w_en.eq(p_valid), w_in.data.eq(Mux(p_err, 0, rd.rdata)),
                     w_in.id.eq(p_id), w_in.last.eq(p_last),
                     w_in.resp.eq(Mux(p_err, RESP_SLVERR, RESP_OKAY))]
        r_out = data.View(beat, rf.r_data)
        m.d.comb += [s.rvalid.eq(rf.r_rdy), s.rdata.eq(r_out.data), s.rid.eq(r_out.id),
                     s.rlast.eq(r_out.last), s.rresp.eq(r_out.resp), rf.r_en.eq(s.rready)]

        # ---------------- writes ----------------
        waddr = Signal(32 - WORD_SHIFT)
        wid = Signal(idw)
        werr = Signal()
        winr = waddr < words
        m.d.comb += [wr.addr.eq(waddr[:self._aw]), wr.we.eq(1), wr.wdata.eq(s.wdata),
                     wr.wmask.eq(s.wstrb)]
        with m.FSM(name="wr"):
            with m.State("IDLE"):
                m.d.comb += s.awready.eq(1)
                with m.If(s.awvalid):
                    m.d.sync += [waddr.eq(s.awaddr[WORD_SHIFT:self._span_bits]), wid.eq(s.awid), werr.eq(0)]
                    m.next = "DATA"
            with m.State("DATA"):
                m.d.comb += [wr.valid.eq(s.wvalid & winr),
                             s.wready.eq(Mux(winr, wr.ready, 1))]
                with m.If(s.wvalid & s.wready):
                    m.d.sync += waddr.eq(waddr + 1)
                    with m.If(~winr):
                        m.d.sync += werr.eq(1)
                    with m.If(s.wlast):
                        m.next = "RESP"
            with m.State("RESP"):
                m.d.comb += [s.bvalid.eq(1), s.bid.eq(wid),
                             s.bresp.eq(Mux(werr, RESP_SLVERR, RESP_OKAY))]
                with m.If(s.bready):
                    m.next = "IDLE"
        return m


class PortMerge(wiring.Component):
    """Two SRAM requester ports (``wr`` first, then ``rd``) onto one (``o``)."""

    def __init__(self, addr_width: int):
        super().__init__({"wr": In(tsram_port(addr_width)), "rd": In(tsram_port(addr_width)),
                          "o": Out(tsram_port(addr_width))})

    def elaborate(self, platform):
        m = Module()
        o, wr, rd = self.o, self.wr, self.rd
        with m.If(wr.valid):
            m.d.comb += [o.valid.eq(1), o.addr.eq(wr.addr), o.we.eq(wr.we),
                         o.wdata.eq(wr.wdata), o.wmask.eq(wr.wmask), wr.ready.eq(o.ready)]
        with m.Else():
            m.d.comb += [o.valid.eq(rd.valid), o.addr.eq(rd.addr), o.we.eq(rd.we),
                         o.wdata.eq(rd.wdata), o.wmask.eq(rd.wmask), rd.ready.eq(o.ready)]
        m.d.comb += [rd.rdata.eq(o.rdata), rd.rvalid.eq(o.rvalid),
                     wr.rdata.eq(o.rdata), wr.rvalid.eq(0)]
        return m


class AxiDecoder(wiring.Component):
    """One AXI4 manager (``s_axi``) to ``len(regions)`` subordinates (``m{i}``) by address.

    ``regions`` is a list of (base, size); an address outside every region goes to
    subordinate 0 (the HBM port). A base may be an Amaranth value (a cluster whose index is
    an input port computes its apertures' bases from it). Reads and writes are routed
    independently. A burst to a
    different subordinate than the outstanding ones waits until those have completed (last
    R beat / B response), so responses never need reordering; bursts to the same
    subordinate stream back to back. W beats follow their AW (all outstanding writes target
    one subordinate). Adds no latency (combinational routing).
    """

    def __init__(self, *, regions, id_width: int, data_width: int = WORD_BITS):
        self._regions = [(b if isinstance(b, Value) else int(b), int(s)) for b, s in regions]
        self._sig = AXI4Signature(addr_width=32, data_width=data_width, id_width=id_width)
        ports = {"s_axi": In(self._sig)}
        for i in range(len(self._regions)):
            ports[f"m{i}"] = Out(self._sig)
        super().__init__(ports)

    def _decode(self, m, addr, name):
        t = Signal(range(max(2, len(self._regions))), name=name)
        for i, (b, sz) in enumerate(self._regions):
            if i == 0:
                continue
            if isinstance(b, int) and b == 0:
                inside = addr < b + sz
            else:
                inside = (addr >= b) & (addr < b + sz)
            with m.If(inside):  # (no addr >= 0 compare: lint UNSIGNED)
                m.d.comb += t.eq(i)
        return t

    def elaborate(self, platform):
        m = Module()
        s = self.s_axi
        subs = [getattr(self, f"m{i}") for i in range(len(self._regions))]

        # ---- read side ----
        rt = self._decode(m, s.araddr, "ar_target")
        rcur = Signal.like(rt, name="r_cur")
        rout = Signal(8)
        ar_ok = (rout == 0) | (rt == rcur)
        r_done = s.rvalid & s.rready & s.rlast
        ar_fire = s.arvalid & s.arready
        for i, sub in enumerate(subs):
            here = rt == i
            m.d.comb += [sub.arvalid.eq(s.arvalid & ar_ok & here), sub.arid.eq(s.arid),
                         sub.araddr.eq(s.araddr), sub.arlen.eq(s.arlen),
                         sub.arsize.eq(s.arsize), sub.arburst.eq(s.arburst),
                         sub.arlock.eq(s.arlock), sub.arcache.eq(s.arcache),
                         sub.arprot.eq(s.arprot)]
            with m.If(here):
                m.d.comb += s.arready.eq(ar_ok & sub.arready)
            with m.If(rcur == i):
                m.d.comb += [s.rvalid.eq(sub.rvalid), s.rdata.eq(sub.rdata),
                             s.rid.eq(sub.rid), s.rresp.eq(sub.rresp), s.rlast.eq(sub.rlast),
                             sub.rready.eq(s.rready)]
        with m.If(ar_fire):
            m.d.sync += rcur.eq(rt)
        m.d.sync += rout.eq(rout + ar_fire - r_done)

        # ---- write side ----
        wt = self._decode(m, s.awaddr, "aw_target")
        wcur = Signal.like(wt, name="w_cur")
        wout = Signal(8)    # AWs accepted, B not yet returned
        wowe = Signal(8)    # AWs accepted whose last W beat has not passed
        aw_ok = (wout == 0) | (wt == wcur)
        aw_fire = s.awvalid & s.awready
        w_fire_last = s.wvalid & s.wready & s.wlast
        b_done = s.bvalid & s.bready
        for i, sub in enumerate(subs):
            here = wt == i
            m.d.comb += [sub.awvalid.eq(s.awvalid & aw_ok & here), sub.awid.eq(s.awid),
                         sub.awaddr.eq(s.awaddr), sub.awlen.eq(s.awlen),
                         sub.awsize.eq(s.awsize), sub.awburst.eq(s.awburst),
                         sub.awlock.eq(s.awlock), sub.awcache.eq(s.awcache),
                         sub.awprot.eq(s.awprot),
                         sub.wdata.eq(s.wdata), sub.wstrb.eq(s.wstrb), sub.wlast.eq(s.wlast)]
            with m.If(here):
                m.d.comb += s.awready.eq(aw_ok & sub.awready)
            with m.If(wcur == i):
                m.d.comb += [sub.wvalid.eq(s.wvalid & (wowe != 0)),
                             s.wready.eq(sub.wready & (wowe != 0)),
                             s.bvalid.eq(sub.bvalid), s.bid.eq(sub.bid), s.bresp.eq(sub.bresp),
                             sub.bready.eq(s.bready)]
        with m.If(aw_fire):
            m.d.sync += wcur.eq(wt)
        m.d.sync += [wout.eq(wout + aw_fire - b_done), wowe.eq(wowe + aw_fire - w_fire_last)]
        return m
