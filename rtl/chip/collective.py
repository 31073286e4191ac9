"""The chip's collective engine (docs/tray.md "Collective engine in the chip"): the unit
behind the command processor that takes COLLECTIVE (opcode 0x10) queue entries.

* :class:`CollectiveCheck`: the static checks of ``spec.tray.check_chip`` on one 32-byte
  entry, combinational (the command processor reports its code like any static error).
* :class:`CollectiveEngine`: takes a checked entry from the command processor and executes
  it through its own AXI4 manager to HBM. This build executes one-rank groups (the result of
  every kind is a copy of src to dst, codes and MX scales); an entry whose group has other
  ranks ends at once with ERR_COLLECTIVE, cause ``spec.tray.CAUSE_UNSUPPORTED`` (the
  multi-chip protocol of cosim/tray/engine.py is not in RTL yet).
"""

from __future__ import annotations

from amaranth import Cat, Const, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from rtl.axi import BURST_INCR, AXI4Signature
from spec import chip as C
from spec import tray as T

__all__ = ["CollectiveCheck", "CollectiveEngine"]

ENTRY_BITS = 8 * C.ENTRY_BYTES
WORD_BYTES = 32           # one 256-bit HBM beat
BURST = 16                # beats per copy burst (the engine's buffer)


def _field(v, fld):
    return v[fld[0]:fld[0] + fld[1]]


class CollectiveCheck(wiring.Component):
    """``spec.tray.check_chip(entry, rank, cfg, trays)`` in logic (combinational).

    Ports: ``entry`` In(256) (word 0 in bits [31:0]), ``rank`` In(3), ``two_trays`` In(1)
    -> ``code`` Out(8) (spec.chip error code, 0 = accepted), and the decoded fields the
    engine uses: ``n`` (group size), ``mx``, ``code_bytes`` (code bytes of the whole
    vector) and ``scale_bytes`` (MX scale bytes of the whole vector).
    """

    def __init__(self, cfg: C.ChipConfig):
        if not isinstance(cfg, C.ChipConfig):
            raise TypeError(f"cfg: must be a spec.chip.ChipConfig, got {type(cfg).__name__}")
        if cfg.nic_ports < 1:
            raise ValueError(f"cfg: configuration {cfg.name!r} has no NIC ports (no engine)")
        self._cfg = cfg
        self._p = T.chip_params(cfg)
        super().__init__({"entry": In(ENTRY_BITS), "rank": In(3), "two_trays": In(1),
                          "code": Out(8), "n": Out(4), "mx": Out(1), "code_bytes": Out(36),
                          "scale_bytes": Out(36)})

    def elaborate(self, platform):  # noqa: C901 - the checks of spec.tray.check, in order
        m = Module()
        cfg = self._cfg
        w = [self.entry[32 * i:32 * i + 32] for i in range(8)]
        op = _field(w[0], C.W0_OPCODE)
        kind, fmt = _field(w[1], T.W1_KIND), _field(w[1], T.W1_FORMAT)
        root, gmask = _field(w[1], T.W1_ROOT), _field(w[1], T.W1_GROUP)
        src, dst, count, src_s, dst_s, scratch = w[2], w[3], w[4], w[5], w[6], w[7]
        rank = self.rank

        n = Signal(4)
        m.d.comb += n.eq(sum(gmask[i] for i in range(T.MAX_RANKS)))
        mx = fmt != T.FMT_FP32
        red = (kind == T.KIND_ALL_REDUCE) | (kind == T.KIND_REDUCE_SCATTER)
        bcast = kind == T.KIND_BROADCAST
        gather = kind == T.KIND_ALL_GATHER

        # count must be a multiple of n * (2 binary32, 256 MX)
        low_ok = Mux(mx, count[:8] == 0, count[0] == 0)
        units = Signal(32)
        m.d.comb += units.eq(Mux(mx, count >> 8, count >> 1))
        rem = Signal(4)
        m.d.comb += rem.eq(units % Mux(n == 0, 1, n))
        count_ok = (count != 0) & low_ok & (rem == 0)
        chunk = Signal(32)
        m.d.comb += chunk.eq(count // Mux(n == 0, 1, n))

        def code_bytes(el):
            return Mux(fmt == T.FMT_FP32, el << 2, Mux(fmt == T.FMT_MX_E2M1, el >> 1, el))

        src_el = Mux(gather, chunk, count)
        dst_el = Mux(kind == T.KIND_REDUCE_SCATTER, chunk, count)
        # (address, bytes, present) of every buffer (spec.tray.Collective.extents)
        bufs = []
        for name, addr, nbytes, present in (
                ("src", src, code_bytes(src_el), Const(1)),
                ("dst", dst, code_bytes(dst_el), Const(1)),
                ("src_s", src_s, src_el >> 5, mx),
                ("dst_s", dst_s, dst_el >> 5, mx),
                ("scratch", scratch, code_bytes(count), red)):
            lo, size, hi = Signal(36, name=f"{name}_lo"), Signal(36, name=f"{name}_size"), \
                Signal(36, name=f"{name}_hi")
            m.d.comb += [lo.eq(addr), size.eq(nbytes), hi.eq(lo + size)]
            bufs.append((lo, hi, present))
        addr_bad = Const(0)
        for lo, hi, present in bufs:
            addr_bad = addr_bad | (present & ((lo[:5] != 0) | (hi > self._p.ring_base)))
        for i in range(len(bufs)):
            for j in range(i + 1, len(bufs)):
                (alo, ahi, ap), (blo, bhi, bp) = bufs[i], bufs[j]
                addr_bad = addr_bad | (ap & bp & (alo < bhi) & (blo < ahi))

        # every other member reachable through a port and queue pair of this chip (route())
        unreachable = Const(0)
        for r in range(T.MAX_RANKS):
            chip_r = r % T.CHIPS_PER_TRAY
            same = Const(r // T.CHIPS_PER_TRAY) == rank[2]
            port = Mux(same, chip_r - (rank[:2] < chip_r), T.UPLINK)
            qp_hi = Mux(same, 0, Mux(rank[:2] > chip_r, rank[:2], chip_r))
            unreachable = unreachable | (gmask[r] & (rank != r)
                                         & ((port >= cfg.nic_ports) | (qp_hi >= cfg.nic_qps)))

        beyond = Mux(self.two_trays, 0, gmask[4:] != 0)
        in_group = (gmask >> rank)[0]
        root_in = (gmask >> root)[0]
        code = self.code
        with m.If(op != T.OP_COLLECTIVE):
            m.d.comb += code.eq(C.ERR_BAD_OPCODE)
        with m.Elif(((w[0] & C.W0_RESERVED_MASK) != 0) | ((w[1] & T.W1_RESERVED_MASK) != 0)):
            m.d.comb += code.eq(C.ERR_BAD_ENTRY)
        with m.Elif((kind > T.KIND_BROADCAST) | (fmt > T.FMT_MX_E2M1)):
            m.d.comb += code.eq(C.ERR_BAD_ENTRY)
        with m.Elif(mx & red):
            m.d.comb += code.eq(C.ERR_BAD_ENTRY)
        with m.Elif(~mx & ((src_s != 0) | (dst_s != 0))):
            m.d.comb += code.eq(C.ERR_BAD_ENTRY)
        with m.Elif(~red & (scratch != 0)):
            m.d.comb += code.eq(C.ERR_BAD_ENTRY)
        with m.Elif(~bcast & (root != 0)):
            m.d.comb += code.eq(C.ERR_BAD_ENTRY)
        with m.Elif(w[0][8:20] != 0):
            m.d.comb += code.eq(C.ERR_BAD_UNIT)
        with m.Elif((n == 0) | beyond | ~in_group | (bcast & ~root_in)):
            m.d.comb += code.eq(C.ERR_BAD_UNIT)
        with m.Elif(~count_ok):
            m.d.comb += code.eq(C.ERR_BAD_ENTRY)
        with m.Elif(addr_bad):
            m.d.comb += code.eq(C.ERR_BAD_ADDRESS)
        with m.Elif(unreachable):
            m.d.comb += code.eq(C.ERR_BAD_UNIT)
        m.d.comb += [self.n.eq(n), self.mx.eq(mx), self.code_bytes.eq(code_bytes(count)),
                     self.scale_bytes.eq(count >> 5)]
        return m


class CollectiveEngine(wiring.Component):
    """The collective engine of one chip (docs/tray.md "Collective engine in the chip").

    Ports
    -----
    entry : In(256), the command processor's current entry; ``check`` : Out(8) is
        :class:`CollectiveCheck`'s code for it (combinational).
    rank : In(3), two_trays : In(1), the chip's REG_TRAY_RANK.
    start : In(1), a one-cycle pulse: take ``entry`` (checked, ``check`` == 0) while idle.
    busy : Out(1), high from the cycle after ``start`` until the command ends; then
    err : Out(8) (spec.chip error code, 0 or ERR_COLLECTIVE) and detail : Out(32)
        (spec.tray.detail) describe it, until the next ``start``.
    m_axi : AXI4 manager to HBM (256-bit data), merged with the command processor's.

    Behaviour: a one-rank group copies the code bytes (then, MX, the scale bytes) of src to
    dst in bursts of up to 16 beats (never across a 4 KiB boundary): read burst into a
    buffer, write burst, wait for the write response; the last beat of a copy whose length
    is not a multiple of 32 bytes carries partial strobes (lengths are multiples of 8).
    Throughput about one beat per cycle per direction plus the HBM path's latency per
    burst. A group with other ranks ends the cycle after ``start`` with ERR_COLLECTIVE,
    detail (cause CAUSE_UNSUPPORTED, peer = the lowest other rank).
    """

    def __init__(self, cfg: C.ChipConfig, axi: AXI4Signature):
        if not isinstance(axi, AXI4Signature) or axi.data_width != 8 * WORD_BYTES:
            raise ValueError(f"axi: must be a 256-bit AXI4Signature, got {axi!r}")
        self._chk = CollectiveCheck(cfg)
        self._cfg = cfg
        super().__init__({"entry": In(ENTRY_BITS), "rank": In(3), "two_trays": In(1),
                          "check": Out(8), "start": In(1), "busy": Out(1), "err": Out(8),
                          "detail": Out(32), "m_axi": Out(axi)})

    def elaborate(self, platform):  # noqa: C901 - one FSM
        m = Module()
        chk = m.submodules.check = self._chk
        m.d.comb += [chk.entry.eq(self.entry), chk.rank.eq(self.rank),
                     chk.two_trays.eq(self.two_trays), self.check.eq(chk.code)]
        ax = self.m_axi
        m.d.comb += [ax.awid.eq(0), ax.arid.eq(0), ax.awsize.eq(5), ax.arsize.eq(5),
                     ax.awburst.eq(BURST_INCR), ax.arburst.eq(BURST_INCR),
                     ax.awcache.eq(0b0011), ax.arcache.eq(0b0011), ax.awlock.eq(0),
                     ax.arlock.eq(0), ax.awprot.eq(0), ax.arprot.eq(0)]

        # the latched command
        ent = Signal(ENTRY_BITS)
        w = [ent[32 * i:32 * i + 32] for i in range(8)]
        gmask = _field(w[1], T.W1_GROUP)
        code_len, scale_len, mx = Signal(36), Signal(36), Signal()
        rank = Signal(3)

        # current copy job: src, dst addresses, words left, bytes in the job's last word
        src, dst = Signal(32), Signal(32)
        left = Signal(32)                       # beats left in the job
        last_bytes = Signal(6)                  # 8, 16, 24 or 32
        second = Signal()                       # the scale copy (MX) still to do
        beats = Signal(range(BURST + 1))        # beats of the current burst
        idx = Signal(range(BURST + 1))
        buf = m.submodules.buf = Memory(shape=8 * WORD_BYTES, depth=BURST, init=[])
        wp = buf.write_port()
        rp = buf.read_port(transparent_for=())

        def to4k(a):
            return (4096 - a[:12]) >> 5

        # beats of the next burst: min(BURST, left, beats to the next 4 KiB of src and dst)
        ts, td = Signal(8), Signal(8)
        m.d.comb += [ts.eq(to4k(src)), td.eq(to4k(dst))]
        nb0, nb1, nb = (Signal(range(BURST + 1), name=f"nb{i}") for i in range(3))
        m.d.comb += [nb0.eq(Mux(left < BURST, left, BURST)), nb1.eq(Mux(ts < nb0, ts, nb0)),
                     nb.eq(Mux(td < nb1, td, nb1))]

        def load_job(s, d, nbytes):
            m.d.sync += [src.eq(s), dst.eq(d), left.eq((nbytes + WORD_BYTES - 1) >> 5),
                         last_bytes.eq(Mux(nbytes[:5] == 0, 32, nbytes[:5]))]

        err, detail = Signal(8), Signal(32)
        m.d.comb += [self.err.eq(err), self.detail.eq(detail)]
        lowest_other = Signal(3)
        for r in reversed(range(T.MAX_RANKS)):
            with m.If(gmask[r] & (rank != r)):
                m.d.comb += lowest_other.eq(r)

        with m.FSM(name="coll"):
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += [ent.eq(self.entry), rank.eq(self.rank), err.eq(0),
                                 detail.eq(0), code_len.eq(chk.code_bytes),
                                 scale_len.eq(chk.scale_bytes), mx.eq(chk.mx)]
                    m.next = "DECIDE"
            with m.State("DECIDE"):
                m.d.comb += self.busy.eq(1)
                with m.If(gmask != (Const(1, 8) << rank)[:8]):
                    m.d.sync += [err.eq(C.ERR_COLLECTIVE),
                                 detail.eq(Cat(lowest_other, Const(0, 5),
                                               Const(T.CAUSE_UNSUPPORTED, 4)))]
                    m.next = "IDLE"
                with m.Else():
                    load_job(w[2], w[3], code_len)
                    m.d.sync += second.eq(mx)
                    m.next = "NEXT"
            with m.State("NEXT"):
                m.d.comb += self.busy.eq(1)
                with m.If(left != 0):
                    m.d.sync += [beats.eq(nb), idx.eq(0)]
                    m.next = "AR"
                with m.Elif(second):
                    load_job(w[5], w[6], scale_len)
                    m.d.sync += second.eq(0)
                with m.Else():
                    m.next = "IDLE"
            with m.State("AR"):
                m.d.comb += [self.busy.eq(1), ax.arvalid.eq(1), ax.araddr.eq(src),
                             ax.arlen.eq(beats - 1)]
                with m.If(ax.arready):
                    m.next = "R"
            with m.State("R"):
                m.d.comb += [self.busy.eq(1), ax.rready.eq(1), wp.addr.eq(idx),
                             wp.data.eq(ax.rdata), wp.en.eq(ax.rvalid)]
                with m.If(ax.rvalid):
                    m.d.sync += idx.eq(idx + 1)
                    with m.If(ax.rlast):
                        m.next = "AW"
            with m.State("AW"):
                m.d.comb += [self.busy.eq(1), ax.awvalid.eq(1), ax.awaddr.eq(dst),
                             ax.awlen.eq(beats - 1), rp.addr.eq(0)]
                m.d.sync += idx.eq(0)
                with m.If(ax.awready):
                    m.next = "W"
            with m.State("W"):
                fire = ax.wvalid & ax.wready
                final = idx == beats - 1
                last_of_job = final & (left == beats)
                strb = Signal(WORD_BYTES)
                m.d.comb += strb.eq(~0)
                with m.If(last_of_job):
                    m.d.comb += strb.eq((Const(1, 33) << last_bytes) - 1)
                m.d.comb += [self.busy.eq(1), ax.wvalid.eq(1), ax.wdata.eq(rp.data),
                             ax.wstrb.eq(strb), ax.wlast.eq(final),
                             rp.addr.eq(idx + fire)]
                with m.If(fire):
                    m.d.sync += idx.eq(idx + 1)
                    with m.If(final):
                        m.next = "B"
            with m.State("B"):
                m.d.comb += [self.busy.eq(1), ax.bready.eq(1)]
                with m.If(ax.bvalid):
                    m.d.sync += [src.eq(src + (beats << 5)), dst.eq(dst + (beats << 5)),
                                 left.eq(left - beats)]
                    m.next = "NEXT"
        return m
