"""The chip's collective engine (docs/tray.md "Collective engine in the chip"): the unit
behind the command processor that takes COLLECTIVE (opcode 0x10) queue entries.

* :class:`CollectiveCheck`: the static checks of ``spec.tray.check_chip`` on one 32-byte
  entry, combinational (the command processor reports its code like any static error).
* :class:`ReduceUnit`: binary32 sums in fixed input order and copies over HBM, several
  bursts in flight.
* :class:`CollectiveEngine`: takes a checked entry from the command processor and executes
  it through its own AXI4 manager to HBM and the send-queue doorbells of the NIC ports:
  one-rank groups (copies), and ALL_REDUCE, REDUCE_SCATTER, ALL_GATHER and BROADCAST over
  ranks of the chip's own tray with the protocol of cosim/tray/engine.py (chunks at any
  8-byte offset: the ReduceUnit rotates lanes); on chips with the uplink port and 4 queue
  pairs per port (``tiny_tray4``) also groups spanning two trays, over the uplink queue
  pairs (the two-tier plan for all 8 ranks, :func:`two_tier`). Other chips end such groups
  with ERR_COLLECTIVE, cause ``spec.tray.CAUSE_UNSUPPORTED``.
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
BURST = 64                # longest ReduceUnit burst in beats (each of its two buffers: 64 x 256 bits)
MAX_INPUTS = T.MAX_RANKS  # inputs of one reduction (one per rank)

# a job of the ReduceUnit: out = ((in[0] + in[1]) + ...) + in[n_inputs - 1], binary32
# lanes, ``nbytes`` bytes; n_inputs = 1 is a copy. Addresses and nbytes multiples of 8.
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
    "Reduction order"), through one AXI4 manager, with several bursts in flight.

    Ports
    -----
    job : In(stream.Signature(REDUCE_JOB)), taken when the unit is idle (``ready``).
        Every address 8-byte aligned, ``nbytes`` a multiple of 8.
    busy : Out(1), from the cycle after a job is taken until its last write response.
    m_axi : AXI4 manager, 256-bit data, 32-byte aligned bursts that never cross 4 KiB; one
        ID (0), so the subordinate answers the reads in order.

    A job is done in bursts of up to ``burst_beats`` x 32 bytes of the job (default 8
    beats, 256 bytes; at most 64), cut where ``out`` reaches a 4 KiB boundary. Short bursts
    keep the NIC's packet reads, which share the chip's HBM path, from waiting behind long
    ones (64-beat bursts halved a NIC's send rate while the unit ran; docs/tray.md
    "Figures" has the 2-chip all-reduce with 64, 16, 8 and 4 beats: 8 was fastest). Two 64 x 256-bit
    buffers take turns: while one burst's result is
    written, the next burst's inputs are read into the other. Per burst the read requests
    of all inputs are issued back to back (an input's read split in two where it crosses
    4 KiB; up to two bursts' reads outstanding). An input that does not start on a 32-byte
    boundary of the burst is read from the aligned address below it, one beat more, and
    its beats are rotated by its 8-byte lane offset (lane rotation); input 0's rotated
    beats are stored, each further input's are added into the buffer lane by lane (8
    ``rtl.fp32.AddFP32`` lanes: buffer = buffer + input, so the sum is ((in0 + in1) + in2)
    + ..., each add RNE with subnormals kept and NaN results 0x7FC00000, equal to
    ``golden.tvp``'s add). The buffer is written rotated to ``out``'s lane offset with the
    strobes of the job's bytes only (bytes around them untouched), without waiting for the
    previous write's response; the responses are counted and the job ends when all
    arrived. ``n_inputs`` = 1 copies (no addition: bit patterns kept).

    Throughput: one read beat per cycle while the memory keeps up, so an m-input job of B
    bytes takes about m B / 32 cycles (plus one beat per input and burst when misaligned)
    plus one read latency; writes overlap the next burst's reads. Read or write error
    responses are not reported (the engine's checks keep every address inside HBM).
    """

    def __init__(self, axi: AXI4Signature, burst_beats: int = 8):
        if not isinstance(axi, AXI4Signature) or axi.data_width != 8 * WORD_BYTES:
            raise ValueError(f"axi: must be a 256-bit AXI4Signature, got {axi!r}")
        if isinstance(burst_beats, bool) or not isinstance(burst_beats, int) \
                or not 1 <= burst_beats <= BURST:
            raise ValueError(f"burst_beats: must be an int in 1..{BURST}, got {burst_beats!r}")
        self._bb = burst_beats * WORD_BYTES
        super().__init__({"job": In(stream.Signature(REDUCE_JOB)), "busy": Out(1),
                          "m_axi": Out(axi)})

    def elaborate(self, platform):  # noqa: C901 - three cooperating request/data sides
        m = Module()
        ax = self.m_axi
        m.d.comb += [ax.awid.eq(0), ax.arid.eq(0), ax.awsize.eq(5), ax.arsize.eq(5),
                     ax.awburst.eq(BURST_INCR), ax.arburst.eq(BURST_INCR),
                     ax.awcache.eq(0b0011), ax.arcache.eq(0b0011), ax.awlock.eq(0),
                     ax.arlock.eq(0), ax.awprot.eq(0), ax.arprot.eq(0)]
        job = Signal(REDUCE_JOB)
        inputs = Array(job.inputs[k] for k in range(MAX_INPUTS))
        run = Signal()                          # a job is being done
        # bursts counted modulo 4: requested (every input's AR sent), received (every
        # input's beats in the buffer), written (every W beat sent); buffer = bit 0
        ar_b, r_b, w_b = Signal(2), Signal(2), Signal(2)
        off = Signal(32)                        # bytes of the job requested
        left = Signal(32)                       # bytes of the job not yet requested
        k_ar = Signal(range(MAX_INPUTS + 1))    # input whose AR is next
        part = Signal()                         # its second AR (after a 4 KiB boundary)
        k_r = Signal(range(MAX_INPUTS + 1))     # input whose beats arrive
        c = Signal(7)                           # its beats arrived in this burst
        jt = Signal(6)                          # buffer words it has produced
        hold = Signal(8 * WORD_BYTES)           # its previous beat
        t = Signal(7)                           # output beat being written
        prev = Signal(8 * WORD_BYTES)           # the buffer word before it
        bcnt = Signal(range(8))                 # write responses awaited
        b_off = Array(Signal(32, name=f"b_off{i}") for i in range(2))
        b_len = Array(Signal(12, name=f"b_len{i}") for i in range(2))

        buf = m.submodules.buf = Memory(shape=8 * WORD_BYTES, depth=2 * BURST, init=[])
        wp = buf.write_port()
        rp = buf.read_port(transparent_for=(wp,))   # the adders' operand
        wr = buf.read_port()                         # the write data

        def lanes_of(addr, name):
            """8-byte lane offset of an address in its 32-byte word"""
            s = Signal(2, name=name)
            m.d.comb += s.eq(addr[3:5])
            return s

        def rotate(lo, hi, sh):
            """bytes 8 sh .. 8 sh + 31 of the 64 bytes ``lo``, ``hi`` (sh in 0..3)"""
            both = Cat(lo, hi)
            return Array(both[64 * i:64 * i + 256] for i in range(4))[sh]

        # ---- burst size: min(2 KiB, left, bytes to out's next 4 KiB boundary) ----
        out_room = Signal(13)
        m.d.comb += out_room.eq(4096 - (job.out + off)[:12])
        bb0, bb = Signal(12), Signal(12)
        m.d.comb += [bb0.eq(Mux(left < self._bb, left, self._bb)),
                     bb.eq(Mux(out_room < bb0, out_room, bb0))]

        m.d.comb += [self.busy.eq(run), self.job.ready.eq(~run)]
        with m.If(self.job.valid & ~run):
            p = self.job.payload
            m.d.sync += [job.eq(p), off.eq(0), run.eq(1), left.eq(p.nbytes), ar_b.eq(0),
                         r_b.eq(0), w_b.eq(0), k_ar.eq(0), part.eq(0), k_r.eq(0), c.eq(0),
                         jt.eq(0)]

        # ---- read requests: every input of a burst, while a buffer is free ----
        a_in = Signal(32)
        m.d.comb += a_in.eq(inputs[k_ar] + off)
        a_al = Cat(Const(0, 5), a_in[5:])
        ib_ar = Signal(7)                       # beats of this input in the burst
        m.d.comb += ib_ar.eq((a_in[:5] + bb + 31) >> 5)
        room = Signal(8)                        # beats to its next 4 KiB boundary
        m.d.comb += room.eq((4096 - a_al[:12]) >> 5)
        len1 = Signal(7)
        m.d.comb += len1.eq(Mux(room < ib_ar, room, ib_ar))
        free = (ar_b - w_b)[:2] < 2
        m.d.comb += [ax.arvalid.eq(run & (left != 0) & ((k_ar != 0) | part | free)),
                     ax.araddr.eq(Mux(part, a_al + (len1 << 5), a_al)),
                     ax.arlen.eq(Mux(part, ib_ar - len1, len1) - 1)]
        with m.If(ax.arvalid & ax.arready):
            m.d.sync += [b_off[ar_b[0]].eq(off), b_len[ar_b[0]].eq(bb)]
            with m.If(~part & (ib_ar > len1)):
                m.d.sync += part.eq(1)
            with m.Elif(k_ar + 1 == job.n_inputs):
                m.d.sync += [part.eq(0), k_ar.eq(0), ar_b.eq(ar_b + 1), off.eq(off + bb),
                             left.eq(left - bb)]
            with m.Else():
                m.d.sync += [part.eq(0), k_ar.eq(k_ar + 1)]

        # ---- read data: rotated to the burst's start; input 0 stored, the others added ----
        rs = r_b[0]
        r_len = b_len[rs]
        sh_r = lanes_of(inputs[k_r] + b_off[rs], "sh_r")
        words = Signal(7)                       # buffer words of the burst
        m.d.comb += words.eq((r_len + 31) >> 5)
        ib = Signal(7)
        m.d.comb += ib.eq((Cat(Const(0, 3), sh_r) + r_len + 31) >> 5)
        fire = ax.rvalid & ax.rready
        flush = Signal()                        # the last word from the held beat alone
        m.d.comb += [ax.rready.eq(run & (c < ib)),
                     flush.eq(run & (sh_r != 0) & (c == ib) & (jt != words))]
        jbeat = Signal(8 * WORD_BYTES)
        m.d.comb += jbeat.eq(Mux(sh_r == 0, ax.rdata, rotate(hold, ax.rdata, sh_r)))
        emit = Signal()
        m.d.comb += emit.eq((fire & ((sh_r == 0) | (c != 0))) | flush)
        last_emit = emit & (jt + 1 == words)
        sums = []
        for lane in range(8):
            add = m.submodules[f"add{lane}"] = AddFP32()
            m.d.comb += [add.a.eq(rp.data[32 * lane:32 * lane + 32]),
                         add.b.eq(jbeat[32 * lane:32 * lane + 32])]
            sums.append(add.result)
        njt = Signal(6)
        m.d.comb += [njt.eq(Mux(emit, Mux(last_emit, 0, jt + 1), jt)),
                     rp.addr.eq(Cat(njt, rs)), wp.addr.eq(Cat(jt, rs)), wp.en.eq(emit),
                     wp.data.eq(Mux(k_r == 0, jbeat, Cat(*sums)))]
        with m.If(fire):
            m.d.sync += [hold.eq(ax.rdata), c.eq(c + 1)]
        with m.If(emit):
            m.d.sync += jt.eq(njt)
        with m.If(last_emit):
            m.d.sync += c.eq(0)
            with m.If(k_r + 1 == job.n_inputs):
                m.d.sync += [k_r.eq(0), r_b.eq(r_b + 1)]
            with m.Else():
                m.d.sync += k_r.eq(k_r + 1)

        # ---- writes: the buffer rotated to out's lanes, responses counted ----
        slot = w_b[0]
        w_len = b_len[slot]
        o_addr = Signal(32)
        m.d.comb += o_addr.eq(job.out + b_off[slot])
        sh_o = lanes_of(o_addr, "sh_o")
        ob = Signal(7)                          # output beats of the burst
        m.d.comb += ob.eq((Cat(Const(0, 3), sh_o) + w_len + 31) >> 5)
        wdone = Signal()
        with m.FSM(name="write"):
            with m.State("IDLE"):
                m.d.comb += wr.addr.eq(Cat(Const(0, 6), slot))
                with m.If(run & (w_b != r_b)):
                    m.next = "AW"
            with m.State("AW"):
                m.d.comb += [ax.awvalid.eq(1), ax.awaddr.eq(Cat(Const(0, 5), o_addr[5:])),
                             ax.awlen.eq(ob - 1), wr.addr.eq(Cat(Const(0, 6), slot))]
                m.d.sync += t.eq(0)
                with m.If(ax.awready):
                    m.next = "W"
            with m.State("W"):
                wfire = ax.wvalid & ax.wready
                final = t == ob - 1
                lo = Signal(6)
                hi = Signal(6)
                m.d.comb += [lo.eq(Mux(t == 0, Cat(Const(0, 3), sh_o), 0)),
                             hi.eq(Mux(final, Cat(Const(0, 3), sh_o) + w_len - (t << 5), 32))]
                strb = Signal(WORD_BYTES)
                m.d.comb += strb.eq(((Const(1, 33) << hi) - 1) & ~((Const(1, 33) << lo) - 1))
                # output byte p of beat t is burst byte 32 t + p - 8 sh_o
                osh = Signal(2)
                m.d.comb += osh.eq(4 - sh_o)
                odata = rotate(prev, wr.data, osh)
                nt = Signal(6)
                m.d.comb += [ax.wvalid.eq(1), ax.wstrb.eq(strb), ax.wlast.eq(final),
                             ax.wdata.eq(Mux(sh_o == 0, wr.data, odata)),
                             nt.eq(t + wfire), wr.addr.eq(Cat(nt, slot))]
                with m.If(wfire):
                    m.d.sync += [t.eq(t + 1), prev.eq(wr.data)]
                    with m.If(final):
                        m.d.comb += wdone.eq(1)
                        m.d.sync += w_b.eq(w_b + 1)
                        m.next = "IDLE"
        m.d.comb += ax.bready.eq(1)
        m.d.sync += bcnt.eq(bcnt + wdone - (ax.bvalid & (bcnt != 0)))
        with m.If(run & (left == 0) & (k_ar == 0) & ~part & (w_b == ar_b) & ~wdone
                  & (bcnt == 0)):
            m.d.sync += run.eq(0)
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


def two_tier(m: Module, v: dict) -> dict:
    """The two-tier plan of ``spec.tray._plan_two_tier`` for the engine's current phase
    (``v``: the engine's signals): overrides ``dests``, ``expect`` and the transfer
    (``pc_*``) while ``tt``; returns the sums of the phase: ``seg`` (the segment sums
    the engine's SEG_RED makes before posting each segment: ``seg_n`` inputs,
    ``seg_inputs``, ``seg_out``, each + the segment offset), ``go`` (a sum at the end of
    the phase: ``n`` inputs, ``inputs``, ``out``, ``nbytes``), and at the command's start
    ``start`` (the plan applies), ``lq`` and ``nph``.

    Partners: chip c of tray 0 (rank c, "a") and of tray 1 (rank 4 + c, "b"); slot(c, h)
    = scratch + (2 c + h) chunk bytes. ALL_GATHER: phase 0 partners exchange their chunk
    (codes, scales), phase 1 both chunks to the tray-mates. ALL_REDUCE / REDUCE_SCATTER:
    phase 0 chunks c + 4 h (h = 0, 1) of src to every tray-mate's slot(me, h); phases
    1 .. 2q + 1 (q pieces per chunk): a sums piece j of its tray's 4 in rank order (the
    prefix, into slot(c, h) + off) segment by segment, each segment just before its WRITE
    to b (same address); b adds its tray's 4 in rank order to the piece j - 1 it received
    in the phase before, segment by segment, each just before the segment's WRITE back
    (ALL_REDUCE into dst chunk c + 4 h at both; REDUCE_SCATTER only h = 0, from b's
    slot(c, 0) into a's dst; b sums the pieces of h = 1 into its dst at the end of the
    phase they arrive in); ALL_REDUCE phase 2q + 2: both finished chunks to every
    tray-mate. The sums are those of spec.tray's plan (same inputs in the same order),
    made later: results are identical."""
    kind, ph, rank, tt, lq = v["kind"], v["ph"], v["rank"], v["tt"], v["lq"]
    src, dst, scratch, dst_s = v["src"], v["dst"], v["scratch"], v["dst_s"]
    cb, sb, mx, j, piece = v["cb"], v["sb"], v["mx"], v["j"], v["piece"]
    tray_me, chip_me = rank[2], rank[:2]
    ag = kind == T.KIND_ALL_GATHER
    ar = kind == T.KIND_ALL_REDUCE

    def sig(width, name, value):
        s = Signal(width, name=f"tt_{name}")
        m.d.comb += s.eq(value)
        return s

    mates = sig(8, "mates", Mux(tray_me, 0xF0, 0x0F) & ~(Const(1, 8) << rank)[:8])
    partner = sig(8, "partner", (Const(1, 8) << Cat(chip_me, ~tray_me))[:8])
    pb = sig(36, "pb", cb >> lq)
    n_items = sig(5, "n_items", Const(2, 5) << lq)          # 2 q pipeline items
    jt = sig(4, "jt", ph - 1)                                 # item sent by a this phase
    jb = sig(4, "jb", ph - 2)                                 # item b returns this phase

    def h_of(x):
        return (x >> lq)[0]

    def off_of(x, name):
        return sig(36, name, (x & ((Const(1, 4) << lq) - 1)[:4]) * pb)

    def slot(c, h):
        return scratch + (Cat(h, c)) * cb

    a_sends = sig(1, "a_sends", (ph >= 1) & (jt < n_items))
    b_sends = sig(1, "b_sends", (ph >= 2) & (jb < n_items) & (ar | ~h_of(jb)))
    final = sig(1, "final", ar & (ph == n_items + 2))
    # the last phase in which b returns a piece: a waits for b's notification only there
    # (b's WRITEs and notifications of the phases before reach a before it, one queue pair)
    last_b = sig(4, "last_b", Mux(ar, n_items + 1, (n_items >> 1) + 1))
    off_t, off_b = off_of(jt, "off_t"), off_of(jb, "off_b")
    h_t, h_b = sig(1, "h_t", h_of(jt)), sig(1, "h_b", h_of(jb))
    d = {k: v[k] for k in ("dests", "expect", "pc_src", "pc_dst", "pc_len", "pc_ok")}
    scale_piece = piece[0]
    with m.If(tt):
        with m.If(ag):
            with m.If(ph == 0):         # the partner's exchange: the direct AG's piece 0/1
                m.d.comb += [d["dests"].eq(partner), d["expect"].eq(partner)]
            with m.Else():              # own chunk (piece 0/1), partner's (2/3) to mates
                c = Mux(piece[1], rank ^ 4, rank)
                a = Mux(scale_piece, dst_s + c * sb, dst + c * cb)
                m.d.comb += [d["dests"].eq(mates), d["expect"].eq(mates), d["pc_src"].eq(a),
                             d["pc_dst"].eq(a), d["pc_ok"].eq((piece < 4) & (~scale_piece | mx))]
        with m.Elif(ph == 0):           # chunks c_j + 4 h to mate j's slot(me, h)
            m.d.comb += [d["dests"].eq(mates), d["expect"].eq(mates),
                         d["pc_src"].eq(src + (Cat(j[:2], piece[0])) * cb),
                         d["pc_dst"].eq(slot(chip_me, piece[0])), d["pc_len"].eq(cb),
                         d["pc_ok"].eq(piece < 2)]
        with m.Elif(final):             # both finished chunks to every mate
            a = dst + Cat(chip_me, piece[0]) * cb
            m.d.comb += [d["dests"].eq(mates), d["expect"].eq(mates), d["pc_src"].eq(a),
                         d["pc_dst"].eq(a), d["pc_len"].eq(cb), d["pc_ok"].eq(piece < 2)]
        with m.Elif(~tray_me):          # a: piece jt of the prefix to b
            a = slot(chip_me, h_t) + off_t
            m.d.comb += [d["dests"].eq(Mux(a_sends, partner, 0)),
                         d["expect"].eq(Mux(b_sends & (ph == last_b), partner, 0)),
                         d["pc_src"].eq(a),
                         d["pc_dst"].eq(a), d["pc_len"].eq(pb), d["pc_ok"].eq(piece == 0)]
        with m.Else():                  # b: finished piece jb back to a
            fin = dst + Cat(chip_me, h_b) * cb + off_b
            m.d.comb += [d["dests"].eq(Mux(b_sends, partner, 0)),
                         d["expect"].eq(Mux(a_sends, partner, 0)),
                         d["pc_src"].eq(Mux(ar, fin, slot(chip_me, 0) + off_b)),
                         d["pc_dst"].eq(Mux(ar, fin, dst + off_b)), d["pc_len"].eq(pb),
                         d["pc_ok"].eq(piece == 0)]

    def own(c2, h, off):
        """chip c2's contribution to half h at ``off``: the own src chunk or its slot"""
        return Mux(chip_me == c2, src + Cat(chip_me, h) * cb, slot(Const(c2, 2), h)) + off

    # the sums of the pipeline, segment by segment just before each segment's WRITE is
    # posted (``seg``: the engine's SEG_RED with ``woff`` added to every address), so they
    # overlap the sends of the segments before and the partner's transfer: a the prefix
    # (ranks 0..3 in order) of the piece it sends, b prefix + ranks 4..7 of the piece it
    # returns; REDUCE_SCATTER's pieces b keeps (half 1) are summed at the end of the phase
    # they arrive in (``go``)
    red = {"n": Signal(4, name="tt_n"), "out": Signal(32, name="tt_out"),
           "nbytes": Signal(36, name="tt_nbytes"),
           "inputs": [Signal(32, name=f"tt_in{i}") for i in range(T.MAX_RANKS)],
           "go": Signal(name="tt_go"), "seg": Signal(name="tt_seg"),
           "seg_n": Signal(4, name="tt_seg_n"), "seg_out": Signal(32, name="tt_seg_out"),
           "seg_inputs": [Signal(32, name=f"tt_seg_in{i}") for i in range(T.MAX_RANKS)]}
    with m.If(tt & ~ag & ~final & ~tray_me & a_sends):     # a: the prefix of piece jt
        m.d.comb += [red["seg"].eq(1), red["seg_n"].eq(4),
                     red["seg_out"].eq(slot(chip_me, h_t) + off_t)]
        for c2 in range(T.CHIPS_PER_TRAY):
            m.d.comb += red["seg_inputs"][c2].eq(own(c2, h_t, off_t))
    with m.Elif(tt & ~ag & ~final & tray_me & b_sends):    # b: piece jb, returned
        m.d.comb += [red["seg"].eq(1), red["seg_n"].eq(5),
                     red["seg_out"].eq(Mux(ar, dst + Cat(chip_me, h_b) * cb + off_b,
                                           slot(chip_me, 0) + off_b)),
                     red["seg_inputs"][0].eq(slot(chip_me, h_b) + off_b)]
        for c2 in range(T.CHIPS_PER_TRAY):
            m.d.comb += red["seg_inputs"][1 + c2].eq(own(c2, h_b, off_b))
    with m.If(tt & ~ag & ~ar & a_sends & tray_me & h_t):   # b, REDUCE_SCATTER: piece jt kept
        m.d.comb += [red["go"].eq(1), red["n"].eq(5), red["nbytes"].eq(pb),
                     red["out"].eq(dst + off_t), red["inputs"][0].eq(slot(chip_me, h_t) + off_t)]
        for c2 in range(T.CHIPS_PER_TRAY):
            m.d.comb += red["inputs"][1 + c2].eq(own(c2, h_t, off_t))
    # at DECIDE: the plan applies (spec.tray.algorithm), pieces per chunk (pipeline_pieces)
    q4 = (cb[:5] == 0) & (cb >= 4 * T.PIECE_MIN)
    q2 = (cb[:4] == 0) & (cb >= 2 * T.PIECE_MIN)
    red["lq"] = sig(2, "lq_next", Mux(q4, 2, Mux(q2, 1, 0)))
    red["start"] = sig(1, "start", (v["gmask"] == 0xFF) & (kind != T.KIND_BROADCAST))
    m2 = Const(2, 5) << red["lq"]
    red["nph"] = sig(4, "nph_next", Mux(ag, 2, Mux(ar, m2 + 3, m2 + 2)))
    # pipeline phases before the last one: the engine moves on without waiting for its
    # notification SENDs to complete (the next piece uses other memory); the last pipeline
    # phase waits for every one (the completions are counted per channel throughout)
    red["nowait"] = sig(1, "nowait", tt & ~ag & (ph >= 1) & (ph < n_items + 1))
    return red


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
    resync : In(1), resync_mask : In(8), resync_seq : In(1), a REG_TRAY_RESYNC write: while
        idle (``resync_ok`` = idle and no ``start`` in that cycle) zero the send-queue
        producer / CQ consumer index and pending count of each channel of the mask, drop
        the notifications kept for the next command, and with ``resync_seq`` the sequence
        number; ``seq`` : Out(16), the sequence number (docs/tray.md "After an error").

    Behaviour (docs/tray.md "Collective engine in the chip"): a one-rank group is copied by
    the :class:`ReduceUnit`. ALL_REDUCE, REDUCE_SCATTER, ALL_GATHER and BROADCAST over ranks
    of this chip's tray run the direct / broadcast plans of spec.tray.plan with the
    protocol of cosim/tray/engine.py on queue pair QP_MESH of the mesh ports: per phase,
    local copies (started, running on meanwhile); the phase's transfers in segments of at
    most ``nic_max_msg`` bytes, each segment as one unsignaled WRITE WQE per destination
    (ascending rank) followed by that port's doorbell; then per destination the 8-byte
    notification, its signaled SEND WQE and the doorbell; then CQ polling until every SEND
    completed and every expected notification of the phase arrived. REDUCE_SCATTER then
    reduces (rank order); ALL_REDUCE reduces its chunk segment by segment in phase 1, each
    segment just before its WRITEs are posted, so the sum overlaps the sends. A CQE with
    an error status ends the command with ERR_COLLECTIVE cause NIC; ``timeout`` cycles
    without a CQE while waiting, cause TIMEOUT; after either the engine's queue-pair
    indices are 0 (docs/tray.md "After an error"). Member k's chunk sits at k x chunk
    bytes, 8-byte aligned: the ReduceUnit rotates lanes where it is not 32-byte aligned.
    Groups spanning two trays: on a chip with the uplink port (``nic_ports`` >= 4) and a
    queue pair per chip of the other tray (``nic_qps`` >= 4), the same protocol on the
    uplink queue pair that spec.tray.route names for each peer of the other tray (channels:
    the 3 mesh ports, then the uplink's queue pairs 0..3); all 8 ranks with ALL_REDUCE,
    REDUCE_SCATTER, ALL_GATHER run the two-tier plan (:func:`two_tier`, up to 11 phases),
    other groups the direct / broadcast plans. Other chips end such groups at once with
    cause UNSUPPORTED (peer = the lowest other member); their Verilog is that of the
    tray-local engine.
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
        if self._p.wqe_max % WORD_BYTES:
            raise ValueError(f"cfg: nic_max_msg must be a multiple of {WORD_BYTES} bytes (the "
                             f"engine reduces and sends in segments of it), got "
                             f"{self._p.wqe_max}")
        ports = {"entry": In(ENTRY_BITS), "rank": In(3), "two_trays": In(1),
                 "check": Out(8), "start": In(1), "busy": Out(1), "err": Out(8),
                 "detail": Out(32), "m_axi": Out(axi),
                 "resync": In(1), "resync_mask": In(8), "resync_seq": In(1),
                 "resync_ok": Out(1), "seq": Out(16)}
        for q in range(cfg.nic_ports):
            ports[f"nic{q}"] = Out(AXI4LiteSignature(addr_width=C.CSR_ADDR_WIDTH,
                                                     data_width=32))
        super().__init__(ports)

    def elaborate(self, platform):  # noqa: C901 - the protocol, one FSM
        m = Module()
        cfg, P = self._cfg, self._p
        NP = cfg.nic_ports
        # a chip with the uplink port and a queue pair per chip of the other tray runs groups
        # spanning two trays: channels 0..2 are the mesh ports (queue pair QP_MESH), channel
        # 3 + i the uplink's queue pair i (chip i of the other tray, spec.tray.route); other
        # chips have one channel per port and answer such groups UNSUPPORTED
        up = NP > T.UPLINK and cfg.nic_qps >= T.CHIPS_PER_TRAY
        NCH = T.MESH_PORTS + T.CHIPS_PER_TRAY if up else NP
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

        def nic_of(q):
            """(NIC port, queue pair) of channel q"""
            return (q, T.QP_MESH) if q < T.MESH_PORTS or not up else (T.UPLINK, q - T.MESH_PORTS)

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

        # channels: peer rank of mesh port q (uplink queue pair i: chip i of the other
        # tray), whether a member is there
        def peer_of(q):
            if up and q >= T.MESH_PORTS:
                return Cat(Const(q - T.MESH_PORTS, 2), ~tray_me)
            c = Signal(2, name=f"peer_chip{q}")
            m.d.comb += c.eq(Mux(chip_me > q, q, q + 1))
            return Cat(c, tray_me)
        peers = [peer_of(q) for q in range(NCH)]
        used = Signal(max(1, NCH))           # ports beyond the mesh ports: only with `up`
        for q in range(NCH if up else min(NP, T.MESH_PORTS)):
            m.d.comb += used[q].eq((others >> peers[q])[0])

        def ring(q):
            return T.ring_addr(P, *nic_of(q))

        # protocol state
        seq = Signal(16)
        m.d.comb += self.seq.eq(seq)
        # phases: 2 (direct, broadcast); two-tier up to 2 x 4 + 3 (spec.tray._plan_two_tier)
        NPH = 16 if up else 2
        if up:
            ph, nph = Signal(4), Signal(4)
        else:
            ph, nph = Signal(), Signal(2)
        j = Signal(range(T.MAX_RANKS + 1))   # destination rank being served
        port = Signal(range(max(2, NCH)))    # its channel (port, queue pair)
        piece = Signal(3)                    # the phase's transfer being posted (below)
        woff = Signal(32)                    # offset of the segment in it
        bret = Signal()                      # after the doorbell: 0 next WRITE, 1 next note
        prod = Array(Signal(32, name=f"sq_prod{q}") for q in range(NCH))
        cons = Array(Signal(32, name=f"cq_cons{q}") for q in range(NCH))
        pend = Array(Signal(8, name=f"pend{q}") for q in range(NCH))
        got = Array(Signal(8, name=f"got{i}") for i in range(NPH))
        # notifications of the next command (sequence number + 1) that arrive while this
        # one still polls: a faster member may already be there; kept for it
        got_nx = Array(Signal(8, name=f"got_next{i}") for i in range(NPH))
        pp = Signal(range(max(2, NCH)))      # channel polled
        tmo = Signal(32)
        cqe = Signal(128)
        bell_aw, bell_w = Signal(), Signal()
        ring_a = Array(Const(ring(q), 32) for q in range(NCH))
        peers_a = Array(peers)
        used_a = Array(used[q] for q in range(NCH))

        # the phase: who this rank sends to (dests) and hears from (expect)
        bcast = kind == T.KIND_BROADCAST
        reduce_kind = (kind == T.KIND_ALL_REDUCE) | (kind == T.KIND_REDUCE_SCATTER)
        root = _field(w[1], T.W1_ROOT)
        root_bit = Signal(8)
        m.d.comb += root_bit.eq(Const(1, 8) << root)
        is_root = root == rank
        dests, expect = Signal(8), Signal(8)
        with m.If(~bcast):
            m.d.comb += [dests.eq(others), expect.eq(others)]
        with m.Elif(ph == 0):                  # BROADCAST: the root's chunks
            m.d.comb += [dests.eq(Mux(is_root, others, 0)), expect.eq(Mux(is_root, 0, root_bit))]
        with m.Else():                         # BROADCAST: the others all-gather
            m.d.comb += [dests.eq(Mux(is_root, 0, others & ~root_bit)),
                         expect.eq(Mux(is_root, 0, others & ~root_bit))]

        # the current destination j: its position k, port; the transfer (piece) to send:
        #   ALL_REDUCE/REDUCE_SCATTER phase 0: 0 = chunk k of src -> scratch slot me
        #   ALL_REDUCE phase 1: 0 = finished chunk me of dst (reduced segment by segment)
        #   ALL_GATHER: 0 = src -> dst chunk me, 1 = (MX) its scales
        #   BROADCAST phase 0 (root): 0/1 = chunk k (codes/scales), 2/3 = chunk root
        #   BROADCAST phase 1: 0/1 = chunk me of dst (codes/scales)
        k = Signal(3)
        m.d.comb += k.eq(sum((gmask[r] & (j > r)) for r in range(T.MAX_RANKS)))
        rpos = Signal(3)                     # the root's position in the group
        m.d.comb += rpos.eq(sum((gmask[r] & (root > r)) for r in range(T.MAX_RANKS - 1)))
        jport = Signal(range(max(2, NCH)))
        if up:
            m.d.comb += jport.eq(Mux(j[2] == tray_me, j[:2] - (chip_me < j[:2]),
                                     T.MESH_PORTS + j[:2]))
        else:
            m.d.comb += jport.eq(j[:2] - (chip_me < j[:2]))
        ar_seg = (kind == T.KIND_ALL_REDUCE) & (ph == 1)   # reduce each segment, then send
        tt = Signal()                        # the command runs the two-tier plan
        lq = Signal(2)                       # log2 of its pipeline pieces per chunk
        if up:
            ar_seg = ar_seg & ~tt
        pc_src, pc_dst, pc_len = Signal(32), Signal(32), Signal(32)
        pc_ok = Signal()                     # the piece exists in this phase
        scale_piece = piece[0]
        m.d.comb += pc_len.eq(Mux(scale_piece, sb, cb))
        with m.If(reduce_kind & (ph == 0)):
            m.d.comb += [pc_src.eq(src + k * cb), pc_dst.eq(scratch + me * cb),
                         pc_ok.eq(piece == 0)]
        with m.Elif(reduce_kind):
            m.d.comb += [pc_src.eq(dst + me * cb), pc_dst.eq(dst + me * cb),
                         pc_ok.eq(piece == 0)]
        with m.Elif(~bcast):
            m.d.comb += [pc_src.eq(Mux(scale_piece, src_s, src)),
                         pc_dst.eq(Mux(scale_piece, dst_s + me * sb, dst + me * cb)),
                         pc_ok.eq((piece == 0) | ((piece == 1) & mx))]
        with m.Elif(ph == 0):
            c = Mux(piece[1], rpos, k)
            m.d.comb += [pc_src.eq(Mux(scale_piece, src_s + c * sb, src + c * cb)),
                         pc_dst.eq(Mux(scale_piece, dst_s + c * sb, dst + c * cb)),
                         pc_ok.eq((piece < 4) & (~scale_piece | mx))]
        with m.Else():
            m.d.comb += [pc_src.eq(Mux(scale_piece, dst_s + me * sb, dst + me * cb)),
                         pc_dst.eq(Mux(scale_piece, dst_s + me * sb, dst + me * cb)),
                         pc_ok.eq((piece == 0) | ((piece == 1) & mx))]
        if up:
            tt_red = two_tier(m, locals())
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
        if up:
            # one 32-byte slot per phase: the two-tier pipeline posts the next phase's
            # notification before the NIC has necessarily sent the previous one (``nowait``)
            m.d.comb += note_addr.eq(ring_a[port] + T.RQ_OFF + 0x100 + (ph << 5))
        else:
            m.d.comb += note_addr.eq(ring_a[port] + T.RQ_OFF + 0x100)
        note = Cat(ph, Const(0, 8 - len(ph)), rank, Const(0, 5), seq,
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
            if cause != T.CAUSE_UNSUPPORTED:
                # the command posted work: the engine forgets its queue-pair indices, the
                # host re-initialises the queue pairs (docs/tray.md "After an error")
                m.d.sync += [*[prod[q].eq(0) for q in range(NCH)],
                             *[cons[q].eq(0) for q in range(NCH)],
                             *[got_nx[i].eq(0) for i in range(NPH)]]
            m.next = "IDLE"

        missing = Signal(8)
        m.d.comb += missing.eq(expect & ~got[ph])
        stuck = Signal(3)          # a peer to blame on timeout
        m.d.comb += stuck.eq(rank)
        for q in reversed(range(NCH)):
            with m.If(used[q] & (pend[q] != 0)):
                m.d.comb += stuck.eq(peers[q])
        for r in reversed(range(T.MAX_RANKS)):
            with m.If(missing[r]):
                m.d.comb += stuck.eq(r)
        all_sent = Const(1)
        for q in range(NCH):
            all_sent = all_sent & (pend[q] == 0)

        # local copies of a phase (codes, then MX scales): ALL_GATHER my chunk into dst,
        # BROADCAST (root, phase 0) the whole vector
        cp_c = Signal()
        cp_src, cp_dst, cp_len, cps_dst, cps_len = (Signal(32, name=n) for n in
                                                    ("cp_src", "cp_dst", "cp_len", "cps_dst",
                                                     "cps_len"))
        with m.If(bcast):
            m.d.comb += [cp_c.eq(is_root & (ph == 0)), cp_src.eq(src), cp_dst.eq(dst),
                         cp_len.eq(code_len), cps_dst.eq(dst_s), cps_len.eq(scale_len)]
        with m.Else():
            m.d.comb += [cp_c.eq((kind == T.KIND_ALL_GATHER) & (ph == 0)), cp_src.eq(src),
                         cp_dst.eq(dst + me * cb), cp_len.eq(cb), cps_dst.eq(dst_s + me * sb),
                         cps_len.eq(sb)]

        with m.FSM(name="coll"):
            with m.State("IDLE"):
                m.d.comb += self.resync_ok.eq(~self.start)
                with m.If(self.start):
                    m.d.sync += [ent.eq(self.entry), rank.eq(self.rank), err.eq(0),
                                 detail.eq(0), code_len.eq(chk.code_bytes),
                                 scale_len.eq(chk.scale_bytes), mx.eq(chk.mx),
                                 cb.eq(chk.chunk_code_bytes), sb.eq(chk.chunk_scale_bytes),
                                 n_members.eq(chk.n)]
                    m.next = "DECIDE"
                with m.Elif(self.resync):      # REG_TRAY_RESYNC (docs/tray.md "After an error")
                    for q in range(NCH):
                        with m.If(self.resync_mask[q]):
                            m.d.sync += [prod[q].eq(0), cons[q].eq(0), pend[q].eq(0)]
                    m.d.sync += [got_nx[i].eq(0) for i in range(NPH)]
                    with m.If(self.resync_seq):
                        m.d.sync += seq.eq(0)
            with m.State("DECIDE"):
                m.d.comb += self.busy.eq(1)
                with m.If(others == 0):
                    m.next = "CODES"
                with m.Elif(other_tray if not up else Const(0)):
                    fail(T.CAUSE_UNSUPPORTED, lowest_other)
                with m.Else():
                    m.d.sync += [seq.eq(seq + 1), ph.eq(0),
                                 *[got[i].eq(got_nx[i]) for i in range(NPH)],
                                 *[got_nx[i].eq(0) for i in range(NPH)],
                                 *[pend[q].eq(0) for q in range(NCH)], tmo.eq(0),
                                 nph.eq(Mux((kind == T.KIND_ALL_REDUCE)
                                            | (bcast & (n_members > 2)), 2, 1))]
                    if up:
                        m.d.sync += [tt.eq(tt_red["start"]), lq.eq(tt_red["lq"])]
                        with m.If(tt_red["start"]):
                            m.d.sync += nph.eq(tt_red["nph"])
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
            with m.State("PH_COPY"):          # the phase's local copies (run on meanwhile)
                m.d.comb += [self.busy.eq(1), jp.n_inputs.eq(1), jp.inputs[0].eq(cp_src),
                             jp.out.eq(cp_dst), jp.nbytes.eq(cp_len)]
                m.d.sync += [piece.eq(0), woff.eq(0)]
                with m.If(cp_c):
                    m.d.comb += unit.job.valid.eq(~unit.busy)
                    with m.If(unit.job.ready & ~unit.busy):
                        m.next = "PH_COPY_S"
                with m.Else():
                    m.next = "SEG"
            with m.State("PH_COPY_S"):
                m.d.comb += [self.busy.eq(1), unit.job.valid.eq(mx & ~unit.busy),
                             jp.n_inputs.eq(1), jp.inputs[0].eq(src_s),
                             jp.out.eq(cps_dst), jp.nbytes.eq(cps_len)]
                with m.If(~mx | (unit.job.ready & ~unit.busy)):
                    m.next = "SEG"
            with m.State("SEG"):               # next segment (piece, woff) of the phase
                m.d.comb += self.busy.eq(1)
                m.d.sync += j.eq(0)
                with m.If(dests == 0):
                    m.next = "NOTES"
                with m.Elif(piece == 4):
                    m.next = "NOTES"
                with m.Elif(~pc_ok):
                    m.d.sync += piece.eq(piece + 1)
                with m.Elif((ar_seg | (tt & tt_red["seg"])) if up else ar_seg):
                    m.next = "SEG_RED"
                with m.Else():
                    m.next = "POST"
            with m.State("SEG_RED"):           # ALL_REDUCE: this segment of chunk me's sum
                m.d.comb += [self.busy.eq(1), jp.n_inputs.eq(n_members), jp.nbytes.eq(wlen),
                             jp.out.eq(dst + me * cb + woff),
                             unit.job.valid.eq(~unit.busy)]
                for i in range(T.MAX_RANKS):
                    m.d.comb += jp.inputs[i].eq(
                        Mux(me == i, src + me * cb, scratch + i * cb) + woff)
                if up:
                    with m.If(tt):             # the two-tier pipeline's sums (two_tier)
                        m.d.comb += [jp.n_inputs.eq(tt_red["seg_n"]),
                                     jp.out.eq(tt_red["seg_out"] + woff)]
                        for i in range(T.MAX_RANKS):
                            m.d.comb += jp.inputs[i].eq(tt_red["seg_inputs"][i] + woff)
                with m.If(unit.job.ready & ~unit.busy):
                    m.next = "SEG_RED_WAIT"
            with m.State("SEG_RED_WAIT"):
                m.d.comb += self.busy.eq(1)
                with m.If(~unit.busy):
                    m.next = "POST"
            with m.State("POST"):              # the segment to every destination
                m.d.comb += self.busy.eq(1)
                with m.If(j == T.MAX_RANKS):
                    with m.If(woff + wlen < pc_len):
                        m.d.sync += woff.eq(woff + wlen)
                    with m.Else():
                        m.d.sync += [woff.eq(0), piece.eq(piece + 1)]
                    m.next = "SEG"
                with m.Elif(~(dests >> j)[0]):
                    m.d.sync += j.eq(j + 1)
                with m.Else():
                    m.d.sync += [port.eq(jport), bret.eq(0)]
                    m.next = "WQE_AW"
            with m.State("WQE_AW"):            # one unsignaled WRITE of <= wqe_max bytes
                m.d.comb += [self.busy.eq(1), ax.awvalid.eq(1), ax.awaddr.eq(sq_addr)]
                with m.If(ax.awready):
                    m.next = "WQE_W"
            with m.State("WQE_W"):
                m.d.comb += [self.busy.eq(1), ax.wvalid.eq(1), ax.wstrb.eq(~0),
                             ax.wdata.eq(wqe("write", S.WR_WRITE, 0,
                                             Cat(woff[3:18], piece[1], j, ph),
                                             pc_src + woff, pc_dst + woff, wlen))]
                with m.If(ax.wready):
                    m.next = "WQE_B"
            with m.State("WQE_B"):
                m.d.comb += [self.busy.eq(1), ax.bready.eq(1)]
                with m.If(ax.bvalid):
                    m.d.sync += [prod[port].eq(prod[port] + 1), bell_aw.eq(0), bell_w.eq(0)]
                    m.next = "BELL"
            with m.State("NOTES"):             # every destination: notification + SEND
                m.d.comb += self.busy.eq(1)
                with m.If(j == T.MAX_RANKS):
                    m.next = "PH_WAIT"
                with m.Elif(~(dests >> j)[0]):
                    m.d.sync += j.eq(j + 1)
                with m.Else():
                    m.d.sync += [port.eq(jport), bret.eq(1)]
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
            with m.State("BELL"):              # sq_prod doorbell of the port, every WQE
                m.d.comb += self.busy.eq(1)
                for q in range(NCH):
                    n = nics[nic_of(q)[0]]
                    with m.If(port == q):
                        m.d.comb += [n.awvalid.eq(~bell_aw), n.wvalid.eq(~bell_w),
                                     n.wdata.eq(prod[q]), n.bready.eq(1)]
                        if nic_of(q)[1] != T.QP_MESH:
                            m.d.comb += n.awaddr.eq(S.qp_reg(nic_of(q)[1], "sq_prod"))
                        with m.If(n.awvalid & n.awready):
                            m.d.sync += bell_aw.eq(1)
                        with m.If(n.wvalid & n.wready):
                            m.d.sync += bell_w.eq(1)
                        with m.If(n.bvalid):
                            m.d.sync += j.eq(j + 1)
                            with m.If(bret):
                                m.next = "NOTES"
                            with m.Else():
                                m.next = "POST"

            with m.State("PH_WAIT"):           # every SEND completed, every note arrived
                m.d.comb += self.busy.eq(1)
                m.d.sync += tmo.eq(tmo + 1)
                with m.If(((all_sent | (tt & tt_red["nowait"])) if up else all_sent)
                          & (missing == 0)):
                    m.d.sync += tmo.eq(0)
                    m.next = "PH_REDUCE"
                with m.Elif(tmo >= self._timeout):
                    fail(T.CAUSE_TIMEOUT, stuck)
                with m.Elif(used_a[pp]):
                    m.next = "CQ_AR"
                with m.Else():
                    m.d.sync += pp.eq(Mux(pp == NCH - 1, 0, pp + 1))
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
                    m.d.sync += pp.eq(Mux(pp == NCH - 1, 0, pp + 1))   # nothing new here
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
                ok = (n_magic == T.NOTE_MAGIC) & (n_ph < NPH) & (n_src == peers_a[pp])
                n_i = n_ph[:4] if up else n_ph[0]
                with m.If(ax.rvalid):
                    with m.If(ok & (n_seq == seq)):
                        m.d.sync += got[n_i].eq(got[n_i] | (Const(1, 8) << n_src[:3]))
                    with m.Elif(ok & (n_seq == (seq + 1)[:16])):
                        m.d.sync += got_nx[n_i].eq(got_nx[n_i]
                                                       | (Const(1, 8) << n_src[:3]))
                    m.next = "PH_WAIT"

            with m.State("PH_REDUCE"):         # REDUCE_SCATTER after phase 0 (ALL_REDUCE
                # reduces in phase 1, segment by segment, ahead of its sends)
                m.d.comb += [self.busy.eq(1), jp.n_inputs.eq(n_members), jp.nbytes.eq(cb),
                             jp.out.eq(dst)]
                for i in range(T.MAX_RANKS):
                    m.d.comb += jp.inputs[i].eq(Mux(me == i, src + me * cb, scratch + i * cb))
                go = (kind == T.KIND_REDUCE_SCATTER) & (ph == 0)
                if up:
                    with m.If(tt):
                        m.d.comb += [jp.n_inputs.eq(tt_red["n"]), jp.nbytes.eq(tt_red["nbytes"]),
                                     jp.out.eq(tt_red["out"])]
                        for i in range(T.MAX_RANKS):
                            m.d.comb += jp.inputs[i].eq(tt_red["inputs"][i])
                    go = Mux(tt, tt_red["go"], go)
                with m.If(go):
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
                        m.d.sync += ph.eq(ph + 1 if up else 1)
                        m.next = "PH_COPY"
        return m
