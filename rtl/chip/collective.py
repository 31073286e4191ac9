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

from amaranth import Array, Cat, Const, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from rtl.axi import BURST_INCR, AXI4LiteSignature, AXI4Signature
from rtl.chip.nic_port import AxiMerge
from rtl.fp32 import AddFP32
from spec import chip as C
from spec import nic as S
from spec import tray as T

__all__ = ["CollectiveCheck", "ReduceUnit", "CollectiveEngine", "AxiLiteWriteJoin",
           "REDUCE_JOB"]

ENTRY_BITS = 8 * C.ENTRY_BYTES
WORD_BYTES = 32           # one 256-bit HBM beat
BURST = 64                # beats per burst (the ReduceUnit buffer: 64 x 256 bits, 2 KiB)
MAX_INPUTS = T.MAX_RANKS  # inputs of one reduction (one per rank)

# a job of the ReduceUnit: out = ((in[0] + in[1]) + ...) + in[n_inputs - 1], binary32
# lanes, ``nbytes`` bytes (a multiple of 8); n_inputs = 1 is a copy (any bytes)
REDUCE_JOB = data.StructLayout({"n_inputs": 4, "inputs": data.ArrayLayout(32, MAX_INPUTS),
                                "out": 32, "nbytes": 32})


def _field(v, fld):
    return v[fld[0]:fld[0] + fld[1]]


class CollectiveCheck(wiring.Component):
    """``spec.tray.check_chip(entry, rank, cfg, trays)`` in logic (combinational).

    Ports: ``entry`` In(256) (word 0 in bits [31:0]), ``rank`` In(3), ``two_trays`` In(1)
    -> ``code`` Out(8) (spec.chip error code, 0 = accepted), and the decoded fields the
    engine uses: ``n`` (group size), ``mx``, ``code_bytes`` / ``scale_bytes`` (code and MX
    scale bytes of the whole vector), ``chunk_code_bytes`` / ``chunk_scale_bytes`` (of one
    member's chunk).
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
                          "scale_bytes": Out(36), "chunk_code_bytes": Out(36),
                          "chunk_scale_bytes": Out(36)})

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
            # (constant comparisons left out: Verilator lint flags them)
            below = (rank[:2] < chip_r) if chip_r > 0 else Const(0)
            above = (rank[:2] > chip_r) if chip_r < T.CHIPS_PER_TRAY - 1 else Const(0)
            port = Mux(same, chip_r - below, T.UPLINK)
            qp_hi = Mux(same, 0, Mux(above, rank[:2], chip_r))
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
                     self.scale_bytes.eq(count >> 5),
                     self.chunk_code_bytes.eq(code_bytes(chunk)),
                     self.chunk_scale_bytes.eq(chunk >> 5)]
        return m


class ReduceUnit(wiring.Component):
    """Binary32 reductions and copies over HBM in fixed input order (docs/tray.md
    "Reduction order"), through one AXI4 manager.

    Ports
    -----
    job : In(stream.Signature(REDUCE_JOB)), taken when the unit is idle (``ready``).
    busy : Out(1), from the cycle after a job is taken until its last write response.
    m_axi : AXI4 manager, 256-bit data; every address 32-byte aligned.

    A job is done in bursts of up to 64 beats that never cross a 4 KiB boundary of any of
    its addresses: input 0's burst is read into a 64 x 256-bit buffer, each further input's
    burst is added into it lane by lane (8 ``rtl.fp32.AddFP32`` lanes: buffer = buffer +
    input, so the sum is ((in0 + in1) + in2) + ..., each add RNE with subnormals kept and
    NaN results 0x7FC00000, equal to ``golden.tvp``'s add), then the buffer is written to
    ``out``; the last beat of the job carries the strobes of its 8, 16, 24 or 32 bytes.
    ``n_inputs`` = 1 copies (no addition: bit patterns kept). Throughput: one beat per cycle
    on each read and write when the memory keeps up; per burst the read latency of every
    input and one write round trip. Read or write error responses are not reported (the
    engine's checks keep every address inside HBM).
    """

    def __init__(self, axi: AXI4Signature):
        if not isinstance(axi, AXI4Signature) or axi.data_width != 8 * WORD_BYTES:
            raise ValueError(f"axi: must be a 256-bit AXI4Signature, got {axi!r}")
        super().__init__({"job": In(stream.Signature(REDUCE_JOB)), "busy": Out(1),
                          "m_axi": Out(axi)})

    def elaborate(self, platform):  # noqa: C901 - one FSM
        m = Module()
        ax = self.m_axi
        m.d.comb += [ax.awid.eq(0), ax.arid.eq(0), ax.awsize.eq(5), ax.arsize.eq(5),
                     ax.awburst.eq(BURST_INCR), ax.arburst.eq(BURST_INCR),
                     ax.awcache.eq(0b0011), ax.arcache.eq(0b0011), ax.awlock.eq(0),
                     ax.arlock.eq(0), ax.awprot.eq(0), ax.arprot.eq(0)]
        job = Signal(REDUCE_JOB)
        inputs = Array(job.inputs[k] for k in range(MAX_INPUTS))
        off = Signal(32)                        # bytes of the job done
        left = Signal(32)                       # beats left in the job
        last_bytes = Signal(6)                  # 8, 16, 24 or 32
        k = Signal(range(MAX_INPUTS + 1))       # input being read
        beats = Signal(range(BURST + 1))        # beats of the current burst
        idx = Signal(range(BURST + 1))
        buf = m.submodules.buf = Memory(shape=8 * WORD_BYTES, depth=BURST, init=[])
        wp = buf.write_port()
        rp = buf.read_port(transparent_for=())

        # beats of the next burst: min(BURST, left, beats to the next 4 KiB of every address)
        lims = [Mux(left < BURST, left, BURST)]
        for i, a in enumerate([job.out] + [job.inputs[j] for j in range(MAX_INPUTS)]):
            cur = Signal(12, name=f"lo12_{i}")
            m.d.comb += cur.eq(a[:12] + off[:12])
            room = Signal(8, name=f"room_{i}")
            m.d.comb += room.eq((4096 - cur) >> 5)
            used = Const(1) if i == 0 else (job.n_inputs > i - 1)
            nxt = Signal(range(BURST + 1), name=f"nb_{i}")
            m.d.comb += nxt.eq(Mux(used & (room < lims[-1]), room, lims[-1]))
            lims.append(nxt)
        nb = lims[-1]

        # the adder lanes: buffer word (read port) + incoming beat
        sums = []
        for lane in range(8):
            add = m.submodules[f"add{lane}"] = AddFP32()
            m.d.comb += [add.a.eq(rp.data[32 * lane:32 * lane + 32]),
                         add.b.eq(ax.rdata[32 * lane:32 * lane + 32])]
            sums.append(add.result)

        with m.FSM(name="reduce"):
            with m.State("IDLE"):
                m.d.comb += self.job.ready.eq(1)
                with m.If(self.job.valid):
                    p = self.job.payload
                    m.d.sync += [job.eq(p), off.eq(0),
                                 left.eq((p.nbytes + WORD_BYTES - 1) >> 5),
                                 last_bytes.eq(Mux(p.nbytes[:5] == 0, 32, p.nbytes[:5]))]
                    m.next = "NEXT"
            with m.State("NEXT"):
                m.d.comb += self.busy.eq(1)
                with m.If(left != 0):
                    m.d.sync += [beats.eq(nb), k.eq(0)]
                    m.next = "AR"
                with m.Else():
                    m.next = "IDLE"
            with m.State("AR"):
                m.d.comb += [self.busy.eq(1), ax.arvalid.eq(1), ax.araddr.eq(inputs[k] + off),
                             ax.arlen.eq(beats - 1), rp.addr.eq(0)]
                m.d.sync += idx.eq(0)
                with m.If(ax.arready):
                    m.next = "R"
            with m.State("R"):
                fire = ax.rvalid
                m.d.comb += [self.busy.eq(1), ax.rready.eq(1), rp.addr.eq(idx + fire),
                             wp.addr.eq(idx), wp.en.eq(fire),
                             wp.data.eq(Mux(k == 0, ax.rdata, Cat(*sums)))]
                with m.If(fire):
                    m.d.sync += idx.eq(idx + 1)
                    with m.If(ax.rlast):
                        with m.If(k + 1 == job.n_inputs):
                            m.next = "AW"
                        with m.Else():
                            m.d.sync += k.eq(k + 1)
                            m.next = "AR"
            with m.State("AW"):
                m.d.comb += [self.busy.eq(1), ax.awvalid.eq(1), ax.awaddr.eq(job.out + off),
                             ax.awlen.eq(beats - 1), rp.addr.eq(0)]
                m.d.sync += idx.eq(0)
                with m.If(ax.awready):
                    m.next = "W"
            with m.State("W"):
                fire = ax.wvalid & ax.wready
                final = idx == beats - 1
                strb = Signal(WORD_BYTES)
                m.d.comb += strb.eq(~0)
                with m.If(final & (left == beats)):
                    m.d.comb += strb.eq((Const(1, 33) << last_bytes) - 1)
                m.d.comb += [self.busy.eq(1), ax.wvalid.eq(1), ax.wdata.eq(rp.data),
                             ax.wstrb.eq(strb), ax.wlast.eq(final), rp.addr.eq(idx + fire)]
                with m.If(fire):
                    m.d.sync += idx.eq(idx + 1)
                    with m.If(final):
                        m.next = "B"
            with m.State("B"):
                m.d.comb += [self.busy.eq(1), ax.bready.eq(1)]
                with m.If(ax.bvalid):
                    m.d.sync += [off.eq(off + (beats << 5)), left.eq(left - beats)]
                    m.next = "NEXT"
        return m


class AxiLiteWriteJoin(wiring.Component):
    """Two AXI4-Lite managers onto one subordinate: reads pass from ``s0`` only (``s1``
    never reads); writes are granted one at a time, ``s0`` first, from the grant through
    AW, W and the B response. Used in front of each NIC port's CSRs: ``s0`` the host,
    ``s1`` the collective engine (its doorbells)."""

    def __init__(self, addr_width: int = C.CSR_ADDR_WIDTH):
        sig = AXI4LiteSignature(addr_width=addr_width, data_width=32)
        super().__init__({"s0": In(sig), "s1": In(sig), "m": Out(sig)})

    def elaborate(self, platform):
        m = Module()
        s0, s1, o = self.s0, self.s1, self.m
        for n in ("araddr", "arprot", "arvalid", "rready"):
            m.d.comb += getattr(o, n).eq(getattr(s0, n))
        for n in ("arready", "rdata", "rresp", "rvalid"):
            m.d.comb += getattr(s0, n).eq(getattr(o, n))
        m.d.comb += [s1.arready.eq(0), s1.rvalid.eq(0)]
        own = Signal()
        with m.FSM(name="wjoin"):
            with m.State("IDLE"):
                with m.If(s0.awvalid | s0.wvalid):
                    m.d.sync += own.eq(0)
                    m.next = "BUSY"
                with m.Elif(s1.awvalid | s1.wvalid):
                    m.d.sync += own.eq(1)
                    m.next = "BUSY"
            with m.State("BUSY"):
                for i, sub in enumerate((s0, s1)):
                    with m.If(own == i):
                        for n in ("awaddr", "awprot", "awvalid", "wdata", "wstrb", "wvalid",
                                  "bready"):
                            m.d.comb += getattr(o, n).eq(getattr(sub, n))
                        for n in ("awready", "wready", "bresp", "bvalid"):
                            m.d.comb += getattr(sub, n).eq(getattr(o, n))
                with m.If(o.bvalid & o.bready):
                    m.next = "IDLE"
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
    m_axi : AXI4 manager to HBM (256-bit data), merged with the command processor's: the
        :class:`ReduceUnit`'s and the protocol's (WQEs, notifications, CQ polling).
    nic{p} : AXI4-Lite manager to NIC port p's CSRs (send-queue doorbells only).

    Behaviour (docs/tray.md "Collective engine in the chip"): a one-rank group is copied by
    the :class:`ReduceUnit`. ALL_REDUCE, REDUCE_SCATTER and ALL_GATHER over ranks of this
    chip's tray run the direct algorithm of spec.tray.plan with the protocol of
    cosim/tray/engine.py on queue pair QP_MESH of the mesh ports: per phase, local copies;
    per destination (ascending rank) unsignaled WRITE WQEs of at most ``nic_max_msg``
    bytes, the 8-byte notification and its signaled SEND WQE, the doorbell; then CQ
    polling until every SEND completed and every member's notification of the phase
    arrived; then the reduction (rank order) by the ReduceUnit. A CQE with an error status
    ends the command with ERR_COLLECTIVE cause NIC; ``timeout`` cycles without a CQE while
    waiting, cause TIMEOUT. BROADCAST, groups spanning two trays, and chunks whose code (or
    MX scale) bytes are not a multiple of 32 (the ReduceUnit moves whole 32-byte beats from
    32-byte aligned addresses) end at once with cause UNSUPPORTED (peer = the lowest other
    member).
    """

    def __init__(self, cfg: C.ChipConfig, axi: AXI4Signature, timeout: int | None = None):
        self._unit = ReduceUnit(axi)
        self._chk = CollectiveCheck(cfg)
        self._cfg = cfg
        self._axi = axi
        self._p = T.chip_params(cfg)
        self._timeout = self._p.engine_timeout_cycles if timeout is None else timeout
        if not isinstance(self._timeout, int) or not 1 <= self._timeout < 1 << 32:
            raise ValueError(f"timeout: must be an int in 1..2^32-1, got {timeout!r}")
        ports = {"entry": In(ENTRY_BITS), "rank": In(3), "two_trays": In(1),
                 "check": Out(8), "start": In(1), "busy": Out(1), "err": Out(8),
                 "detail": Out(32), "m_axi": Out(axi)}
        for q in range(cfg.nic_ports):
            ports[f"nic{q}"] = Out(AXI4LiteSignature(addr_width=C.CSR_ADDR_WIDTH,
                                                     data_width=32))
        super().__init__(ports)

    def elaborate(self, platform):  # noqa: C901 - the protocol, one FSM
        m = Module()
        cfg, P = self._cfg, self._p
        NP = cfg.nic_ports
        chk = m.submodules.check = self._chk
        unit = m.submodules.reduce = self._unit
        merge = m.submodules.merge = AxiMerge(2, self._axi)
        m.d.comb += [chk.entry.eq(self.entry), chk.rank.eq(self.rank),
                     chk.two_trays.eq(self.two_trays), self.check.eq(chk.code)]
        wiring.connect(m, unit.m_axi, merge.s0)
        wiring.connect(m, merge.m_axi, wiring.flipped(self.m_axi))
        ax = merge.s1                        # the protocol's HBM accesses
        m.d.comb += [ax.awid.eq(0), ax.arid.eq(0), ax.awsize.eq(5), ax.arsize.eq(5),
                     ax.awburst.eq(BURST_INCR), ax.arburst.eq(BURST_INCR),
                     ax.awcache.eq(0b0011), ax.arcache.eq(0b0011), ax.awlen.eq(0),
                     ax.arlen.eq(0), ax.wlast.eq(1)]
        nics = [getattr(self, f"nic{q}") for q in range(NP)]
        for n in nics:
            m.d.comb += [n.wstrb.eq(0xF), n.awaddr.eq(S.qp_reg(T.QP_MESH, "sq_prod")),
                         n.arvalid.eq(0), n.rready.eq(1)]

        ent = Signal(ENTRY_BITS)
        w = [ent[32 * i:32 * i + 32] for i in range(8)]
        kind, gmask = _field(w[1], T.W1_KIND), _field(w[1], T.W1_GROUP)
        src, dst, src_s, dst_s, scratch = w[2], w[3], w[5], w[6], w[7]
        code_len, scale_len, cb, sb = (Signal(36, name=n) for n in
                                       ("code_len", "scale_len", "cb", "sb"))
        mx, n_members = Signal(), Signal(4)
        rank = Signal(3)
        err, detail = Signal(8), Signal(32)
        m.d.comb += [self.err.eq(err), self.detail.eq(detail)]
        others = Signal(8)
        m.d.comb += others.eq(gmask & ~(Const(1, 8) << rank)[:8])
        lowest_other = Signal(3)
        for r in reversed(range(T.MAX_RANKS)):
            with m.If(others[r]):
                m.d.comb += lowest_other.eq(r)
        me = Signal(3)                       # my position in the group
        m.d.comb += me.eq(sum((gmask[r] & (rank > r)) for r in range(T.MAX_RANKS - 1)))
        tray_me, chip_me = rank[2], rank[:2]
        other_tray = Mux(tray_me, gmask[:4], gmask[4:]) != 0

        # ports: peer rank of mesh port q, whether a member is there
        def peer_of(q):
            c = Signal(2, name=f"peer_chip{q}")
            m.d.comb += c.eq(Mux(chip_me > q, q, q + 1))
            return Cat(c, tray_me)
        peers = [peer_of(q) for q in range(NP)]
        used = Signal(max(1, NP))            # ports beyond the mesh ports are never used
        for q in range(min(NP, T.MESH_PORTS)):
            m.d.comb += used[q].eq((others >> peers[q])[0])

        def ring(q):
            return T.ring_addr(P, q, T.QP_MESH)

        # protocol state
        seq = Signal(16)
        ph, nph = Signal(), Signal(2)
        j = Signal(range(T.MAX_RANKS + 1))   # destination rank being served
        port = Signal(range(max(2, NP)))     # its port
        piece = Signal()
        woff = Signal(32)
        prod = Array(Signal(32, name=f"sq_prod{q}") for q in range(NP))
        cons = Array(Signal(32, name=f"cq_cons{q}") for q in range(NP))
        pend = Array(Signal(8, name=f"pend{q}") for q in range(NP))
        got = Array(Signal(8, name=f"got{i}") for i in range(2))
        pp = Signal(range(max(2, NP)))       # port polled
        tmo = Signal(32)
        cqe = Signal(128)
        bell_aw, bell_w = Signal(), Signal()
        ring_a = Array(Const(ring(q), 32) for q in range(NP))
        peers_a = Array(peers)
        used_a = Array(used[q] for q in range(NP))

        # the current destination j: its position k, port, the piece to send
        k = Signal(3)
        m.d.comb += k.eq(sum((gmask[r] & (j > r)) for r in range(T.MAX_RANKS)))
        jport = Signal(range(max(2, NP)))
        m.d.comb += jport.eq(j[:2] - (chip_me < j[:2]))
        reduce_kind = (kind == T.KIND_ALL_REDUCE) | (kind == T.KIND_REDUCE_SCATTER)
        pc_src, pc_dst, pc_len = Signal(32), Signal(32), Signal(32)
        with m.If(reduce_kind & (ph == 0)):
            m.d.comb += [pc_src.eq(src + k * cb), pc_dst.eq(scratch + me * cb), pc_len.eq(cb)]
        with m.Elif(reduce_kind):              # ALL_REDUCE phase 1: my finished chunk
            m.d.comb += [pc_src.eq(dst + me * cb), pc_dst.eq(dst + me * cb), pc_len.eq(cb)]
        with m.Elif(piece == 0):               # ALL_GATHER: my chunk, then (MX) its scales
            m.d.comb += [pc_src.eq(src), pc_dst.eq(dst + me * cb), pc_len.eq(cb)]
        with m.Else():
            m.d.comb += [pc_src.eq(src_s), pc_dst.eq(dst_s + me * sb), pc_len.eq(sb)]
        wlen = Signal(32)
        m.d.comb += wlen.eq(Mux(pc_len - woff > P.wqe_max, P.wqe_max, pc_len - woff))

        def u32(v, name):
            sig = Signal(32, name=name)
            m.d.comb += sig.eq(v)
            return sig

        def wqe(tag, opcode, flags, wr_id, local, remote, length):
            """spec.nic.WQE_FIELDS: opcode, flags, wr_id, local/remote (64-bit), length, rkey"""
            return Cat(Const(opcode, 8), Const(flags, 8), Const(0, 16), u32(wr_id, f"{tag}_id"),
                       u32(local, f"{tag}_local"), Const(0, 32), u32(remote, f"{tag}_remote"),
                       Const(0, 32), u32(length, f"{tag}_len"), Const(T.RKEY, 32))

        note_addr = Signal(32)
        m.d.comb += note_addr.eq(ring_a[port] + T.RQ_OFF + 0x100)
        note = Cat(ph, Const(0, 7), rank, Const(0, 5), seq,
                   Const(T.NOTE_MAGIC, 32))
        sq_addr = ring_a[port] + T.SQ_OFF + (prod[port][:T.SQ_LOG2] << 5)
        cq_addr = ring_a[pp] + T.CQ_OFF + (cons[pp][1:T.CQ_LOG2] << 5)
        cqe_valid = Signal(8)
        cqe_status, cqe_op, cqe_id = cqe[32:40], cqe[40:48], cqe[0:32]
        m.d.comb += cqe_valid.eq(cqe[56:64])
        rq_addr = ring_a[pp] + T.RQ_OFF + (cqe_id[2:T.RQ_LOG2] << 5)
        jp = unit.job.payload

        def fail(cause, peer, status=None):
            status = Const(0, 8) if status is None else status
            m.d.sync += [err.eq(C.ERR_COLLECTIVE),
                         detail.eq(Cat(peer, Const(0, 5), Const(cause, 4), status))]
            m.next = "IDLE"

        missing = Signal(8)
        m.d.comb += missing.eq(others & ~got[ph])
        stuck = Signal(3)          # a peer to blame on timeout
        m.d.comb += stuck.eq(rank)
        for q in reversed(range(NP)):
            with m.If(used[q] & (pend[q] != 0)):
                m.d.comb += stuck.eq(peers[q])
        for r in reversed(range(T.MAX_RANKS)):
            with m.If(missing[r]):
                m.d.comb += stuck.eq(r)
        all_sent = Const(1)
        for q in range(NP):
            all_sent = all_sent & (pend[q] == 0)

        with m.FSM(name="coll"):
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += [ent.eq(self.entry), rank.eq(self.rank), err.eq(0),
                                 detail.eq(0), code_len.eq(chk.code_bytes),
                                 scale_len.eq(chk.scale_bytes), mx.eq(chk.mx),
                                 cb.eq(chk.chunk_code_bytes), sb.eq(chk.chunk_scale_bytes),
                                 n_members.eq(chk.n)]
                    m.next = "DECIDE"
            with m.State("DECIDE"):
                m.d.comb += self.busy.eq(1)
                with m.If(others == 0):
                    m.next = "CODES"
                with m.Elif((kind == T.KIND_BROADCAST) | other_tray
                            | (cb[:5] != 0) | (mx & (sb[:5] != 0))):
                    fail(T.CAUSE_UNSUPPORTED, lowest_other)
                with m.Else():
                    m.d.sync += [seq.eq(seq + 1), ph.eq(0), got[0].eq(0), got[1].eq(0),
                                 *[pend[q].eq(0) for q in range(NP)],
                                 nph.eq(Mux(kind == T.KIND_ALL_REDUCE, 2, 1)), tmo.eq(0)]
                    m.next = "PH_COPY"

            # ---- one-rank group: dst = src ----
            with m.State("CODES"):
                m.d.comb += [self.busy.eq(1), unit.job.valid.eq(1), jp.n_inputs.eq(1),
                             jp.inputs[0].eq(src), jp.out.eq(dst), jp.nbytes.eq(code_len)]
                with m.If(unit.job.ready):
                    m.next = "SCALES"
            with m.State("SCALES"):
                m.d.comb += [self.busy.eq(1), unit.job.valid.eq(mx & ~unit.busy),
                             jp.n_inputs.eq(1), jp.inputs[0].eq(src_s), jp.out.eq(dst_s),
                             jp.nbytes.eq(scale_len)]
                with m.If(~mx | (unit.job.ready & ~unit.busy)):
                    m.next = "DRAIN"
            with m.State("DRAIN"):
                m.d.comb += self.busy.eq(1)
                with m.If(~unit.busy & unit.job.ready):
                    m.next = "IDLE"

            # ---- multi-rank: the phases ----
            with m.State("PH_COPY"):          # ALL_GATHER: my own chunk into dst
                m.d.comb += [self.busy.eq(1), jp.n_inputs.eq(1), jp.inputs[0].eq(src),
                             jp.out.eq(dst + me * cb), jp.nbytes.eq(cb)]
                with m.If(kind == T.KIND_ALL_GATHER):
                    m.d.comb += unit.job.valid.eq(1)
                    with m.If(unit.job.ready):
                        m.next = "PH_COPY_S"
                with m.Else():
                    m.d.sync += j.eq(0)
                    m.next = "PH_SEND"
            with m.State("PH_COPY_S"):
                m.d.comb += [self.busy.eq(1), unit.job.valid.eq(mx & ~unit.busy),
                             jp.n_inputs.eq(1), jp.inputs[0].eq(src_s),
                             jp.out.eq(dst_s + me * sb), jp.nbytes.eq(sb)]
                with m.If((~mx | unit.job.ready) & ~unit.busy):
                    m.d.sync += j.eq(0)
                    m.next = "PH_SEND"
            with m.State("PH_SEND"):           # next destination, ascending rank
                m.d.comb += self.busy.eq(1)
                with m.If(j == T.MAX_RANKS):
                    m.next = "PH_WAIT"
                with m.Elif(~(others >> j)[0]):
                    m.d.sync += j.eq(j + 1)
                with m.Else():
                    m.d.sync += [port.eq(jport), piece.eq(0), woff.eq(0)]
                    m.next = "WQE_AW"
            with m.State("WQE_AW"):            # one unsignaled WRITE of <= wqe_max bytes
                m.d.comb += [self.busy.eq(1), ax.awvalid.eq(1), ax.awaddr.eq(sq_addr)]
                with m.If(ax.awready):
                    m.next = "WQE_W"
            with m.State("WQE_W"):
                m.d.comb += [self.busy.eq(1), ax.wvalid.eq(1), ax.wstrb.eq(~0),
                             ax.wdata.eq(wqe("write", S.WR_WRITE, 0, Cat(woff[3:19], j, ph),
                                             pc_src + woff, pc_dst + woff, wlen))]
                with m.If(ax.wready):
                    m.next = "WQE_B"
            with m.State("WQE_B"):
                m.d.comb += [self.busy.eq(1), ax.bready.eq(1)]
                with m.If(ax.bvalid):
                    m.d.sync += prod[port].eq(prod[port] + 1)
                    with m.If(woff + wlen < pc_len):
                        m.d.sync += woff.eq(woff + wlen)
                        m.next = "WQE_AW"
                    with m.Elif((kind == T.KIND_ALL_GATHER) & mx & (piece == 0)):
                        m.d.sync += [piece.eq(1), woff.eq(0)]
                        m.next = "WQE_AW"
                    with m.Else():
                        m.next = "NOTE_AW"
            with m.State("NOTE_AW"):           # the notification bytes
                m.d.comb += [self.busy.eq(1), ax.awvalid.eq(1), ax.awaddr.eq(note_addr)]
                with m.If(ax.awready):
                    m.next = "NOTE_W"
            with m.State("NOTE_W"):
                m.d.comb += [self.busy.eq(1), ax.wvalid.eq(1), ax.wstrb.eq(0xFF),
                             ax.wdata.eq(note)]
                with m.If(ax.wready):
                    m.next = "NOTE_B"
            with m.State("NOTE_B"):
                m.d.comb += [self.busy.eq(1), ax.bready.eq(1)]
                with m.If(ax.bvalid):
                    m.next = "SEND_AW"
            with m.State("SEND_AW"):           # its signaled SEND
                m.d.comb += [self.busy.eq(1), ax.awvalid.eq(1), ax.awaddr.eq(sq_addr)]
                with m.If(ax.awready):
                    m.next = "SEND_W"
            with m.State("SEND_W"):
                m.d.comb += [self.busy.eq(1), ax.wvalid.eq(1), ax.wstrb.eq(~0),
                             ax.wdata.eq(wqe("send", S.WR_SEND, S.WQE_FLAG_SIGNALED,
                                             Cat(Const(0xFFFF, 16), j, ph), note_addr,
                                             Const(0, 32), Const(T.NOTE_BYTES, 32)))]
                with m.If(ax.wready):
                    m.next = "SEND_B"
            with m.State("SEND_B"):
                m.d.comb += [self.busy.eq(1), ax.bready.eq(1)]
                with m.If(ax.bvalid):
                    m.d.sync += [prod[port].eq(prod[port] + 1), pend[port].eq(pend[port] + 1),
                                 bell_aw.eq(0), bell_w.eq(0)]
                    m.next = "BELL"
            with m.State("BELL"):              # sq_prod doorbell of the port
                m.d.comb += self.busy.eq(1)
                for q, n in enumerate(nics):
                    with m.If(port == q):
                        m.d.comb += [n.awvalid.eq(~bell_aw), n.wvalid.eq(~bell_w),
                                     n.wdata.eq(prod[q]), n.bready.eq(1)]
                        with m.If(n.awvalid & n.awready):
                            m.d.sync += bell_aw.eq(1)
                        with m.If(n.wvalid & n.wready):
                            m.d.sync += bell_w.eq(1)
                        with m.If(n.bvalid):
                            m.d.sync += j.eq(j + 1)
                            m.next = "PH_SEND"

            with m.State("PH_WAIT"):           # every SEND completed, every note arrived
                m.d.comb += self.busy.eq(1)
                m.d.sync += tmo.eq(tmo + 1)
                with m.If(all_sent & (missing == 0)):
                    m.d.sync += tmo.eq(0)
                    m.next = "PH_REDUCE"
                with m.Elif(tmo >= self._timeout):
                    fail(T.CAUSE_TIMEOUT, stuck)
                with m.Elif(used_a[pp]):
                    m.next = "CQ_AR"
                with m.Else():
                    m.d.sync += pp.eq(Mux(pp == NP - 1, 0, pp + 1))
            with m.State("CQ_AR"):
                m.d.comb += [self.busy.eq(1), ax.arvalid.eq(1), ax.araddr.eq(cq_addr)]
                m.d.sync += tmo.eq(tmo + 1)
                with m.If(ax.arready):
                    m.next = "CQ_R"
            with m.State("CQ_R"):
                m.d.comb += [self.busy.eq(1), ax.rready.eq(1)]
                m.d.sync += tmo.eq(tmo + 1)
                with m.If(ax.rvalid):
                    m.d.sync += cqe.eq(Mux(cons[pp][0], ax.rdata[128:], ax.rdata[:128]))
                    m.next = "CQ_CHECK"
            with m.State("CQ_CHECK"):
                m.d.comb += self.busy.eq(1)
                with m.If(cqe_valid != Mux(cons[pp][T.CQ_LOG2], 0, 1)):
                    m.d.sync += pp.eq(Mux(pp == NP - 1, 0, pp + 1))   # nothing new here
                    m.next = "PH_WAIT"
                with m.Elif(cqe_status != S.CQ_OK):
                    fail(T.CAUSE_NIC, peers_a[pp], cqe_status)
                with m.Elif(cqe_op == S.CQE_RECV):
                    m.d.sync += [cons[pp].eq(cons[pp] + 1), tmo.eq(0)]
                    m.next = "RQ_AR"
                with m.Else():
                    m.d.sync += [cons[pp].eq(cons[pp] + 1), tmo.eq(0),
                                 pend[pp].eq(pend[pp] - 1)]
                    m.next = "PH_WAIT"
            with m.State("RQ_AR"):             # the notification in the receive slot
                m.d.comb += [self.busy.eq(1), ax.arvalid.eq(1), ax.araddr.eq(rq_addr)]
                with m.If(ax.arready):
                    m.next = "RQ_R"
            with m.State("RQ_R"):
                m.d.comb += [self.busy.eq(1), ax.rready.eq(1)]
                lanes = Array(ax.rdata[64 * i:64 * i + 64] for i in range(4))
                nt = lanes[cqe_id[:2]]
                n_ph, n_src, n_seq, n_magic = nt[0:8], nt[8:16], nt[16:32], nt[32:64]
                with m.If(ax.rvalid):
                    with m.If((n_magic == T.NOTE_MAGIC) & (n_seq == seq) & (n_ph < 2)
                              & (n_src == peers_a[pp])):
                        m.d.sync += got[n_ph[0]].eq(got[n_ph[0]] | (Const(1, 8) << n_src[:3]))
                    m.next = "PH_WAIT"

            with m.State("PH_REDUCE"):         # ALL_REDUCE / REDUCE_SCATTER after phase 0
                m.d.comb += [self.busy.eq(1), jp.n_inputs.eq(n_members), jp.nbytes.eq(cb),
                             jp.out.eq(Mux(kind == T.KIND_ALL_REDUCE, dst + me * cb, dst))]
                for i in range(T.MAX_RANKS):
                    m.d.comb += jp.inputs[i].eq(Mux(me == i, src + me * cb, scratch + i * cb))
                with m.If(reduce_kind & (ph == 0)):
                    m.d.comb += unit.job.valid.eq(~unit.busy)
                    with m.If(unit.job.ready & ~unit.busy):
                        m.next = "PH_NEXT"
                with m.Else():
                    m.next = "PH_NEXT"
            with m.State("PH_NEXT"):
                m.d.comb += self.busy.eq(1)
                with m.If(~unit.busy & unit.job.ready):
                    with m.If(ph + 1 == nph):
                        m.next = "IDLE"
                    with m.Else():
                        m.d.sync += [ph.eq(1), j.eq(0)]
                        m.next = "PH_SEND"
        return m
