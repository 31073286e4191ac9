"""Network interface: AXI4 memory transactions <-> request/response packets (spec/noc.py)."""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, Value
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from rtl.axi import RESP_DECERR, RESP_OKAY, AXI4Signature
from spec import noc as spec

from .mesh import Mesh, endpoint_stream

__all__ = ["NetworkInterface", "AxiMeshBench"]


def _f(word, name):
    lo, hi = spec.ALL_FIELDS[name]
    return word[lo:hi]


class NetworkInterface(wiring.Component):
    """AXI4 network interface of the endpoint at (x, y).

    Initiator side (``s_axi``, a subordinate port for the endpoint's AXI master): an AW+W
    burst becomes a write-request packet (head, offset flit, ``awlen + 1`` data flits),
    an AR a read-request packet (head, offset flit), sent on the request class to the node
    that the address map (``regions``, spec.Region) assigns to the address. Responses come
    back on the response class and are replayed as B and R beats (same ID, ``rresp`` per
    beat). An address outside every region is answered locally with DECERR (B, or
    ``arlen + 1`` R beats with ``rlast``); nothing enters the network.

    Target side (``m_axi``, a manager port toward the endpoint's memory): a request packet
    is replayed as one AXI burst at the packet's offset (region base removed), and the
    response packet (write: one flit with ``bresp``; read: head + one flit per R beat) goes
    back to the source. A request that arrives at the wrong node (its destination is
    outside the mesh, so XY routing clamped it to this edge node) or with a bad opcode is
    answered with DECERR without touching memory.

    Concurrency: one outstanding write and one outstanding read on the initiator side, one
    request at a time on the target side (AXI ordering is then trivially kept).
    Deadlock freedom: the target only waits for the response class, responses are always
    consumed by the initiator (it accepts B/R at the AXI master's pace), and the two classes
    use separate VCs (see docs/noc.md).

    Counters: ``wr_reqs``, ``rd_reqs`` (requests sent), ``served`` (requests executed on
    ``m_axi``), ``decerr_local`` (unmapped addresses), ``decerr_remote`` (requests refused
    at this target), ``bad_flits`` (response flits that were not expected, dropped).
    """

    def __init__(self, *, x: int, y: int, kx: int, ky: int, regions=None,
                 flit_width: int = 64, addr_width: int = 32, data_width: int = 32,
                 id_width: int = 4):
        spec.check_mesh(kx, ky)
        self._axi = AXI4Signature(addr_width=addr_width, data_width=data_width,
                                  id_width=id_width)
        need = max(spec.HEAD_MIN_FLIT_WIDTH, data_width + data_width // 8, addr_width)
        if flit_width < need:
            raise ValueError(f"flit_width must be >= {need} for data_width={data_width}, "
                             f"addr_width={addr_width}, not {flit_width!r}")
        if id_width > 8:
            raise ValueError(f"id_width must be <= 8 (axid field), not {id_width!r}")
        self._regions = tuple(spec.default_address_map(kx, ky) if regions is None else regions)
        for r in self._regions:
            if not isinstance(r, spec.Region):
                raise TypeError(f"regions must be spec.noc.Region objects, not {r!r}")
            if r.base + r.size > (1 << addr_width):
                raise ValueError(f"region {r} does not fit in {addr_width} address bits")
        self._x, self._y, self._kx, self._ky, self._fw = x, y, kx, ky, flit_width
        es = endpoint_stream(flit_width)
        super().__init__({"s_axi": In(self._axi), "m_axi": Out(self._axi),
                          "inj": Out(es).array(spec.N_CLASSES),
                          "ej": In(es).array(spec.N_CLASSES),
                          "wr_reqs": Out(32), "rd_reqs": Out(32), "served": Out(32),
                          "decerr_local": Out(32), "decerr_remote": Out(32),
                          "bad_flits": Out(32)})

    regions = property(lambda self: self._regions)

    def _decode(self, m, addr, name):
        """(hit, dst_x, dst_y, offset) for ``addr`` from the region table."""
        hit = Signal(name=f"{name}_hit")
        dx, dy = Signal(4, name=f"{name}_dx"), Signal(4, name=f"{name}_dy")
        off = Signal(len(addr), name=f"{name}_off")
        for r in reversed(self._regions):       # first match wins
            sh = r.size.bit_length() - 1         # aligned power-of-two region
            with m.If((addr >> sh) == (r.base >> sh)):
                m.d.comb += [hit.eq(1), dx.eq(r.x), dy.eq(r.y), off.eq(addr & (r.size - 1))]
        return hit, dx, dy, off

    def elaborate(self, platform):
        m = Module()
        s, mm = self.s_axi, self.m_axi
        DW = self._axi.data_width
        SW = DW // 8
        x, y = self._x, self._y
        req, rsp = self.inj[spec.CLASS_REQ], self.inj[spec.CLASS_RSP]
        ej_req, ej_rsp = self.ej[spec.CLASS_REQ], self.ej[spec.CLASS_RSP]

        def fit(v, w):
            v = Value.cast(v)
            return v[:w] if len(v) >= w else Cat(v, Const(0, w - len(v)))

        def head(dx, dy, op, length, axid, size=0, burst=0, axlen=0, resp=0):
            return Cat(fit(dx, 4), fit(dy, 4), Const(x, 4), Const(y, 4), Const(op, 3),
                       Const(0, 1), fit(length, 8), fit(axid, 8), fit(size, 3), fit(burst, 2),
                       fit(axlen, 8), fit(resp, 2))

        def one(v, w=8):
            return Const(v, w)

        # request stream shared by the write and read senders: whole packets, write first
        w_send, r_send = Signal(), Signal()

        # ---------------- initiator: writes ----------------
        aw = {k: Signal(len(getattr(s, k)), name=f"aw_{k}") for k in
              ("awid", "awaddr", "awlen", "awsize", "awburst")}
        whit, wdx, wdy, woff = self._decode(m, aw["awaddr"], "wdec")
        wcnt = Signal(8)
        w_claim = Signal()
        with m.FSM(name="wr"):
            with m.State("IDLE"):
                m.d.comb += s.awready.eq(1)
                with m.If(s.awvalid):
                    m.d.sync += [aw[k].eq(getattr(s, k)) for k in aw]
                    m.next = "DECODE"
            with m.State("DECODE"):
                m.d.sync += wcnt.eq(0)
                with m.If(~whit):
                    m.d.sync += self.decerr_local.eq(self.decerr_local + 1)
                    m.next = "DRAIN"
                with m.Elif(~r_send):
                    m.d.comb += w_claim.eq(1)
                    m.d.sync += [self.wr_reqs.eq(self.wr_reqs + 1), w_send.eq(1)]
                    m.next = "HEAD"
            with m.State("HEAD"):
                m.d.comb += [req.valid.eq(1), req.payload.kind.eq(spec.KIND_HEAD),
                             req.payload.data.eq(head(wdx, wdy, spec.OP_WR_REQ,
                                                      aw["awlen"] + 2, aw["awid"],
                                                      aw["awsize"], aw["awburst"],
                                                      aw["awlen"]))]
                with m.If(req.ready):
                    m.next = "ADDR"
            with m.State("ADDR"):
                m.d.comb += [req.valid.eq(1), req.payload.kind.eq(spec.KIND_BODY),
                             req.payload.data.eq(woff)]
                with m.If(req.ready):
                    m.next = "DATA"
            with m.State("DATA"):
                last = wcnt == aw["awlen"]
                m.d.comb += [req.valid.eq(s.wvalid), s.wready.eq(req.ready),
                             req.payload.kind.eq(Mux(last, spec.KIND_TAIL, spec.KIND_BODY)),
                             req.payload.data.eq(Cat(s.wdata, s.wstrb))]
                with m.If(s.wvalid & req.ready):
                    m.d.sync += wcnt.eq(wcnt + 1)
                    with m.If(last):
                        m.d.sync += w_send.eq(0)
                        m.next = "WAIT"
            with m.State("DRAIN"):
                m.d.comb += s.wready.eq(1)
                with m.If(s.wvalid & s.wlast):
                    m.next = "ERRB"
            with m.State("ERRB"):
                m.d.comb += [s.bvalid.eq(1), s.bid.eq(aw["awid"]), s.bresp.eq(RESP_DECERR)]
                with m.If(s.bready):
                    m.next = "IDLE"
            with m.State("WAIT"):       # B comes from the response demultiplexer
                with m.If(s.bvalid & s.bready):
                    m.next = "IDLE"

        # ---------------- initiator: reads ----------------
        ar = {k: Signal(len(getattr(s, k)), name=f"ar_{k}") for k in
              ("arid", "araddr", "arlen", "arsize", "arburst")}
        rhit, rdx, rdy, roff = self._decode(m, ar["araddr"], "rdec")
        rcnt = Signal(8)
        err_r = Signal()
        with m.FSM(name="rd"):
            with m.State("IDLE"):
                m.d.comb += s.arready.eq(1)
                with m.If(s.arvalid):
                    m.d.sync += [ar[k].eq(getattr(s, k)) for k in ar]
                    m.next = "DECODE"
            with m.State("DECODE"):
                m.d.sync += rcnt.eq(0)
                with m.If(~rhit):
                    m.d.sync += self.decerr_local.eq(self.decerr_local + 1)
                    m.next = "ERRR"
                with m.Elif(~w_send & ~w_claim):
                    m.d.sync += [self.rd_reqs.eq(self.rd_reqs + 1), r_send.eq(1)]
                    m.next = "HEAD"
            with m.State("HEAD"):
                m.d.comb += [req.valid.eq(1), req.payload.kind.eq(spec.KIND_HEAD),
                             req.payload.data.eq(head(rdx, rdy, spec.OP_RD_REQ, one(1),
                                                      ar["arid"], ar["arsize"],
                                                      ar["arburst"], ar["arlen"]))]
                with m.If(req.ready):
                    m.next = "ADDR"
            with m.State("ADDR"):
                m.d.comb += [req.valid.eq(1), req.payload.kind.eq(spec.KIND_TAIL),
                             req.payload.data.eq(roff)]
                with m.If(req.ready):
                    m.d.sync += r_send.eq(0)
                    m.next = "WAIT"
            with m.State("ERRR"):
                m.d.comb += err_r.eq(1)
                with m.If(s.rready):
                    m.d.sync += rcnt.eq(rcnt + 1)
                    with m.If(rcnt == ar["arlen"]):
                        m.next = "IDLE"
            with m.State("WAIT"):       # R comes from the response demultiplexer
                with m.If(s.rvalid & s.rready & s.rlast):
                    m.next = "IDLE"

        # ---------------- initiator: response demultiplexer ----------------
        hop = _f(ej_rsp.payload.data, "op")
        with m.FSM(name="rsp"):
            with m.State("HEAD"):
                with m.If(err_r):
                    m.d.comb += [s.rvalid.eq(1), s.rid.eq(ar["arid"]),
                                 s.rresp.eq(RESP_DECERR), s.rlast.eq(rcnt == ar["arlen"])]
                with m.If(ej_rsp.valid):
                    with m.If(~ej_rsp.payload.kind[0]):
                        m.d.comb += ej_rsp.ready.eq(1)          # stray flit
                        m.d.sync += self.bad_flits.eq(self.bad_flits + 1)
                    with m.Elif(hop == spec.OP_WR_RSP):
                        m.d.comb += [s.bvalid.eq(1), s.bid.eq(_f(ej_rsp.payload.data, "axid")),
                                     s.bresp.eq(_f(ej_rsp.payload.data, "resp")),
                                     ej_rsp.ready.eq(s.bready)]
                    with m.Elif((hop == spec.OP_RD_RSP) & ~err_r):
                        m.d.comb += ej_rsp.ready.eq(1)
                        with m.If(~ej_rsp.payload.kind[1]):
                            m.next = "DATA"
                    with m.Elif(hop != spec.OP_RD_RSP):
                        m.d.comb += ej_rsp.ready.eq(1)
                        m.d.sync += self.bad_flits.eq(self.bad_flits + 1)
            with m.State("DATA"):
                m.d.comb += [s.rvalid.eq(ej_rsp.valid), s.rid.eq(ar["arid"]),
                             s.rdata.eq(ej_rsp.payload.data[:DW]),
                             s.rresp.eq(ej_rsp.payload.data[DW:DW + 2]),
                             s.rlast.eq(ej_rsp.payload.kind[1]),
                             ej_rsp.ready.eq(s.rready)]
                with m.If(ej_rsp.valid & s.rready & ej_rsp.payload.kind[1]):
                    m.next = "HEAD"

        # ---------------- target ----------------
        t_src = Signal(8)
        t_op = Signal(3)
        t = {k: Signal(hi - lo, name=f"t_{k}") for k, (lo, hi) in spec.AXI_FIELDS.items()}
        t_bad = Signal()
        t_off = Signal(len(mm.awaddr))
        t_resp = Signal(2)
        t_cnt = Signal(8)
        tq = ej_req.payload
        with m.FSM(name="tgt"):
            with m.State("HEAD"):
                m.d.comb += ej_req.ready.eq(1)
                with m.If(ej_req.valid):
                    with m.If(~tq.kind[0]):
                        m.d.sync += self.bad_flits.eq(self.bad_flits + 1)
                    with m.Else():
                        op = _f(tq.data, "op")
                        m.d.sync += [t_src.eq(Cat(_f(tq.data, "src_x"), _f(tq.data, "src_y"))),
                                     t_op.eq(op), t_cnt.eq(0),
                                     t_bad.eq((_f(tq.data, "dst_x") != x) |
                                              (_f(tq.data, "dst_y") != y) |
                                              ((op != spec.OP_RD_REQ) & (op != spec.OP_WR_REQ)))]
                        m.d.sync += [t[k].eq(_f(tq.data, k)) for k in t]
                        with m.If(tq.kind[1]):
                            m.d.sync += [t_bad.eq(1),
                                         self.decerr_remote.eq(self.decerr_remote + 1)]
                            m.next = "RESPOND"
                        with m.Else():
                            m.next = "ADDR"
            with m.State("ADDR"):
                m.d.comb += ej_req.ready.eq(1)
                with m.If(ej_req.valid):
                    m.d.sync += t_off.eq(tq.data[:len(t_off)])
                    with m.If(t_bad):
                        m.d.sync += self.decerr_remote.eq(self.decerr_remote + 1)
                        with m.If(tq.kind[1]):
                            m.next = "RESPOND"
                        with m.Else():
                            m.next = "SKIP"
                    with m.Elif(t_op == spec.OP_WR_REQ):
                        m.d.sync += self.served.eq(self.served + 1)
                        m.next = "AW"
                    with m.Else():
                        m.d.sync += self.served.eq(self.served + 1)
                        m.next = "AR"
            with m.State("SKIP"):           # refused request: swallow its data flits
                m.d.comb += ej_req.ready.eq(1)
                with m.If(ej_req.valid & tq.kind[1]):
                    m.next = "RESPOND"
            with m.State("RESPOND"):         # refused request: answer DECERR
                with m.If(t_op == spec.OP_RD_REQ):
                    m.d.sync += t_resp.eq(RESP_DECERR)
                    m.next = "RHEAD"
                with m.Else():
                    m.d.sync += t_resp.eq(RESP_DECERR)
                    m.next = "WRSP"
            with m.State("AW"):
                m.d.comb += [mm.awvalid.eq(1), mm.awaddr.eq(t_off), mm.awlen.eq(t["axlen"]),
                             mm.awsize.eq(t["size"]), mm.awburst.eq(t["burst"]),
                             mm.awid.eq(t["axid"])]
                with m.If(mm.awready):
                    m.next = "W"
            with m.State("W"):
                m.d.comb += [mm.wvalid.eq(ej_req.valid), mm.wdata.eq(tq.data[:DW]),
                             mm.wstrb.eq(tq.data[DW:DW + SW]), mm.wlast.eq(tq.kind[1]),
                             ej_req.ready.eq(mm.wready)]
                with m.If(ej_req.valid & mm.wready & tq.kind[1]):
                    m.next = "B"
            with m.State("B"):
                m.d.comb += mm.bready.eq(1)
                with m.If(mm.bvalid):
                    m.d.sync += t_resp.eq(mm.bresp)
                    m.next = "WRSP"
            with m.State("WRSP"):
                m.d.comb += [rsp.valid.eq(1), rsp.payload.kind.eq(spec.KIND_HEADTAIL),
                             rsp.payload.data.eq(head(t_src[0:4], t_src[4:8], spec.OP_WR_RSP,
                                                      one(0), t["axid"], resp=t_resp))]
                with m.If(rsp.ready):
                    m.next = "HEAD"
            with m.State("AR"):
                m.d.comb += [mm.arvalid.eq(1), mm.araddr.eq(t_off), mm.arlen.eq(t["axlen"]),
                             mm.arsize.eq(t["size"]), mm.arburst.eq(t["burst"]),
                             mm.arid.eq(t["axid"])]
                with m.If(mm.arready):
                    m.d.sync += t_resp.eq(RESP_OKAY)
                    m.next = "RHEAD"
            with m.State("RHEAD"):
                m.d.comb += [rsp.valid.eq(1), rsp.payload.kind.eq(spec.KIND_HEAD),
                             rsp.payload.data.eq(head(t_src[0:4], t_src[4:8], spec.OP_RD_RSP,
                                                      t["axlen"] + 1, t["axid"],
                                                      t["size"], t["burst"], t["axlen"],
                                                      t_resp))]
                with m.If(rsp.ready):
                    with m.If(t_resp == RESP_DECERR):
                        m.next = "RERR"
                    with m.Else():
                        m.next = "R"
            with m.State("R"):
                m.d.comb += [rsp.valid.eq(mm.rvalid), mm.rready.eq(rsp.ready),
                             rsp.payload.data.eq(Cat(mm.rdata, mm.rresp)),
                             rsp.payload.kind.eq(Mux(mm.rlast, spec.KIND_TAIL, spec.KIND_BODY))]
                with m.If(mm.rvalid & rsp.ready & mm.rlast):
                    m.next = "HEAD"
            with m.State("RERR"):
                last = t_cnt == t["axlen"]
                m.d.comb += [rsp.valid.eq(1),
                             rsp.payload.data.eq(Cat(Const(0, DW), Const(RESP_DECERR, 2))),
                             rsp.payload.kind.eq(Mux(last, spec.KIND_TAIL, spec.KIND_BODY))]
                with m.If(rsp.ready):
                    m.d.sync += t_cnt.eq(t_cnt + 1)
                    with m.If(last):
                        m.next = "HEAD"
        return m


class AxiMeshBench(wiring.Component):
    """Bench top: a :class:`Mesh` with a :class:`NetworkInterface` at every node. Node ``i``
    in ``masters`` exposes ``n<i>_s_axi`` (drive it with an AXI master model), node ``i``
    in ``memories`` exposes ``n<i>_m_axi`` (attach a memory model). Other AXI ports are
    tied off. ``regions`` defaults to one 1 MiB region per memory node (spec.REGION_SHIFT
    windows of the default map). ``decerr`` and ``bad_flits`` sum the NIs' counters."""

    def __init__(self, *, kx: int = 2, ky: int = 2, masters=(0,), memories=(3,), regions=None,
                 flit_width: int = 64, data_width: int = 32, addr_width: int = 32,
                 id_width: int = 4, vcs_per_class: int = 1, depth: int = 4):
        spec.check_mesh(kx, ky)
        n = kx * ky
        for name, lst in (("masters", masters), ("memories", memories)):
            if any(not 0 <= i < n for i in lst):
                raise ValueError(f"{name} must be node indices in [0, {n}), not {lst!r}")
        if regions is None:
            full = spec.default_address_map(kx, ky)
            regions = tuple(full[i] for i in memories)
        self._kx, self._ky = kx, ky
        self._masters, self._memories, self._regions = tuple(masters), tuple(memories), regions
        self._kw = dict(flit_width=flit_width, vcs_per_class=vcs_per_class, depth=depth)
        self._ni_kw = dict(flit_width=flit_width, data_width=data_width,
                           addr_width=addr_width, id_width=id_width)
        sig = AXI4Signature(addr_width=addr_width, data_width=data_width, id_width=id_width)
        ports = {f"n{i}_s_axi": In(sig) for i in masters}
        ports.update({f"n{i}_m_axi": Out(sig) for i in memories})
        ports.update({"decerr": Out(32), "bad_flits": Out(32), "served": Out(32),
                      "net_errors": Out(32)})
        super().__init__(ports)

    def elaborate(self, platform):
        m = Module()
        kx, ky = self._kx, self._ky
        m.submodules.mesh = mesh = Mesh(kx=kx, ky=ky, **self._kw)
        nis = []
        for y in range(ky):
            for x in range(kx):
                i = y * kx + x
                ni = NetworkInterface(x=x, y=y, kx=kx, ky=ky, regions=self._regions,
                                      **self._ni_kw)
                m.submodules[f"ni_{x}_{y}"] = ni
                nis.append(ni)
                for c in range(spec.N_CLASSES):
                    wiring.connect(m, ni.inj[c], mesh.inj[i][c])
                    wiring.connect(m, mesh.ej[i][c], ni.ej[c])
                if i in self._masters:
                    wiring.connect(m, wiring.flipped(getattr(self, f"n{i}_s_axi")), ni.s_axi)
                else:
                    m.d.comb += [ni.s_axi.awvalid.eq(0), ni.s_axi.wvalid.eq(0),
                                 ni.s_axi.arvalid.eq(0), ni.s_axi.bready.eq(1),
                                 ni.s_axi.rready.eq(1)]
                if i in self._memories:
                    wiring.connect(m, ni.m_axi, wiring.flipped(getattr(self, f"n{i}_m_axi")))
                else:   # no memory: never addressed by the map; accept and answer SLVERR
                    m.d.comb += [ni.m_axi.awready.eq(1), ni.m_axi.wready.eq(1),
                                 ni.m_axi.bvalid.eq(1), ni.m_axi.bresp.eq(2),
                                 ni.m_axi.arready.eq(1), ni.m_axi.rvalid.eq(1),
                                 ni.m_axi.rlast.eq(1), ni.m_axi.rresp.eq(2)]
        m.d.comb += [
            self.decerr.eq(sum((ni.decerr_local + ni.decerr_remote for ni in nis), Const(0, 32))),
            self.bad_flits.eq(sum((ni.bad_flits for ni in nis), Const(0, 32))),
            self.served.eq(sum((ni.served for ni in nis), Const(0, 32))),
            self.net_errors.eq(sum((e for e in mesh.errors), Const(0, 32))),
        ]
        return m
