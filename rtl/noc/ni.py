"""Network interface: AXI4 memory transactions <-> request/response packets (spec/noc.py)."""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, Value
from amaranth.lib import data, fifo, wiring
from amaranth.lib.wiring import In, Out

from rtl.axi import RESP_DECERR, RESP_OKAY, RESP_SLVERR, AXI4Signature
from spec import noc as spec

from .mesh import Mesh, endpoint_stream

__all__ = ["NetworkInterface", "CopyMaster", "AxiMeshBench"]


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
    ``arlen + 1`` R beats with ``rlast``); nothing enters the network. A burst longer than
    ``max_burst`` beats is answered locally with SLVERR.

    Target side (``m_axi``, a manager port toward the endpoint's memory): a request packet
    is replayed as one AXI burst at the packet's offset (region base removed), always with
    ID 0 (so the memory answers in issue order), and the response packet (write: one flit
    with ``bresp``; read: head + one flit per R beat) goes back to the source with the
    request's ID. A request that arrives at the wrong node (its destination is outside the
    mesh, so XY routing clamped it to this edge node) or with a bad opcode is answered with
    DECERR without touching memory.

    Concurrency and ordering: up to ``outstanding`` writes and ``outstanding`` reads in
    flight per initiator, all to one destination node at a time (a request to another node
    waits until the earlier ones are answered): a flow (source, destination, class) is
    delivered in order and a target answers in request order, so responses come back in
    request order with no reorder buffer. The target issues up to ``outstanding`` reads
    and ``outstanding`` writes to its memory before the first is answered.

    Deadlock freedom (docs/noc.md): a write packet is injected only once all its W beats
    are buffered (store-and-forward, ``max_burst``-beat buffer), so a packet in the network
    never waits for an AXI master; a read request is injected only into reserved space of
    the ``max_burst``-beat read-data buffer and a write only into a free B slot, so
    responses always drain regardless of ``rready``/``bready``; the target only waits for
    the response class and for its memory. Reads and writes use separate queues: a write
    whose data depends on an earlier read of the same master never blocks that read.

    Latency (zero load, in-mesh): write: last W beat accepted -> head offered on ``inj`` 2
    cycles; read: AR accepted -> head offered 2 cycles; a response head accepted on ``ej``
    -> first R beat / B offered 2 cycles. Throughput: one flit per cycle per class.

    Counters: ``wr_reqs``, ``rd_reqs`` (requests sent), ``served`` (requests executed on
    ``m_axi``), ``decerr_local`` (unmapped addresses and over-long bursts),
    ``decerr_remote`` (requests refused at this target), ``bad_flits`` (flits that were not
    expected, dropped).
    """

    def __init__(self, *, x: int, y: int, kx: int, ky: int, regions=None,
                 flit_width: int = 64, addr_width: int = 32, data_width: int = 32,
                 id_width: int = 4, outstanding: int = 4, max_burst: int = 256):
        spec.check_mesh(kx, ky)
        self._axi = AXI4Signature(addr_width=addr_width, data_width=data_width,
                                  id_width=id_width)
        need = max(spec.HEAD_MIN_FLIT_WIDTH, data_width + data_width // 8, addr_width)
        if flit_width < need:
            raise ValueError(f"flit_width must be >= {need} for data_width={data_width}, "
                             f"addr_width={addr_width}, not {flit_width!r}")
        if id_width > 8:
            raise ValueError(f"id_width must be <= 8 (axid field), not {id_width!r}")
        if not isinstance(outstanding, int) or not 1 <= outstanding <= 64:
            raise ValueError(f"outstanding must be an int in [1, 64], not {outstanding!r}")
        if not isinstance(max_burst, int) or not 1 <= max_burst <= 256:
            raise ValueError(f"max_burst must be an int in [1, 256], not {max_burst!r}")
        self._regions = tuple(spec.default_address_map(kx, ky) if regions is None else regions)
        for r in self._regions:
            if not isinstance(r, spec.Region):
                raise TypeError(f"regions must be spec.noc.Region objects, not {r!r}")
            if r.base + r.size > (1 << addr_width):
                raise ValueError(f"region {r} does not fit in {addr_width} address bits")
        self._x, self._y, self._kx, self._ky, self._fw = x, y, kx, ky, flit_width
        self._outstanding, self._max_burst = outstanding, max_burst
        es = endpoint_stream(flit_width)
        super().__init__({"s_axi": In(self._axi), "m_axi": Out(self._axi),
                          "inj": Out(es).array(spec.N_CLASSES),
                          "ej": In(es).array(spec.N_CLASSES),
                          "wr_reqs": Out(32), "rd_reqs": Out(32), "served": Out(32),
                          "decerr_local": Out(32), "decerr_remote": Out(32),
                          "bad_flits": Out(32)})

    regions = property(lambda self: self._regions)
    outstanding = property(lambda self: self._outstanding)
    max_burst = property(lambda self: self._max_burst)

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
        IW = len(s.awid)
        AW_ = len(s.awaddr)
        NOUT, MB = self._outstanding, self._max_burst
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

        def bump(ctr):
            m.d.sync += ctr.eq(ctr + 1)

        # ================= initiator =================
        # --- write intake: AW, then its W beats into the store-and-forward buffer; the AW
        # entry is queued once its last beat is in, so a queued write is always complete.
        aw_l = data.StructLayout({"id": IW, "addr": AW_, "len": 8, "size": 3, "burst": 2,
                                  "long": 1})
        awq = m.submodules.awq = fifo.SyncFIFO(width=aw_l.size, depth=NOUT)
        wbuf = m.submodules.wbuf = fifo.SyncFIFO(width=DW + SW, depth=MB)
        aw_cur = Signal(aw_l)
        wcnt = Signal(8)
        with m.FSM(name="wr_in"):
            with m.State("AW"):
                m.d.comb += s.awready.eq(1)
                with m.If(s.awvalid):
                    m.d.sync += [aw_cur.id.eq(s.awid), aw_cur.addr.eq(s.awaddr),
                                 aw_cur.len.eq(s.awlen), aw_cur.size.eq(s.awsize),
                                 aw_cur.burst.eq(s.awburst),
                                 aw_cur.long.eq(s.awlen >= MB), wcnt.eq(0)]
                    m.next = "W"
            with m.State("W"):
                last = wcnt == aw_cur.len
                room = (wbuf.w_rdy | aw_cur.long) & (~last | awq.w_rdy)
                m.d.comb += [s.wready.eq(room), wbuf.w_data.eq(Cat(s.wdata, s.wstrb)),
                             wbuf.w_en.eq(s.wvalid & room & ~aw_cur.long),
                             awq.w_data.eq(aw_cur), awq.w_en.eq(s.wvalid & room & last)]
                with m.If(s.wvalid & room):
                    m.d.sync += wcnt.eq(wcnt + 1)
                    with m.If(last):
                        m.next = "AW"

        # --- read intake
        ar_l = data.StructLayout({"id": IW, "addr": AW_, "len": 8, "size": 3, "burst": 2})
        arq = m.submodules.arq = fifo.SyncFIFO(width=ar_l.size, depth=NOUT)
        m.d.comb += [s.arready.eq(arq.w_rdy), arq.w_en.eq(s.arvalid),
                     arq.w_data.eq(Cat(s.arid, s.araddr, s.arlen, s.arsize, s.arburst))]

        # --- response landing buffers (B slots and R beats are reserved before a request
        # leaves, so the response class never waits for the AXI master)
        b_l = data.StructLayout({"id": IW, "resp": 2})
        r_l = data.StructLayout({"data": DW, "resp": 2, "last": 1, "id": IW})
        bq = m.submodules.bq = fifo.SyncFIFO(width=b_l.size, depth=NOUT)
        rbuf = m.submodules.rbuf = fifo.SyncFIFO(width=r_l.size, depth=MB)
        bq_out, r_out = b_l(bq.r_data), r_l(rbuf.r_data)
        m.d.comb += [s.bvalid.eq(bq.r_rdy), s.bid.eq(bq_out.id), s.bresp.eq(bq_out.resp),
                     bq.r_en.eq(s.bready),
                     s.rvalid.eq(rbuf.r_rdy), s.rid.eq(r_out.id), s.rdata.eq(r_out.data),
                     s.rresp.eq(r_out.resp), s.rlast.eq(r_out.last), rbuf.r_en.eq(s.rready)]
        b_done = s.bvalid & s.bready
        r_beat = s.rvalid & s.rready
        wr_pend = Signal(range(NOUT + 1))          # writes sent, B not yet given to the master
        rd_pend = Signal(range(NOUT + 1))          # reads sent, rlast not yet given
        r_res = Signal(10)                         # R beats reserved or buffered
        wr_dst, rd_dst = Signal(8), Signal(8)
        wr_inc, rd_inc, res_add = Signal(), Signal(), Signal(9)
        m.d.sync += [wr_pend.eq(wr_pend + wr_inc - b_done),
                     rd_pend.eq(rd_pend + rd_inc - (r_beat & s.rlast)),
                     r_res.eq(r_res + res_add - r_beat)]

        # --- request sender: whole packets, writes and reads alternating when both wait
        aw_h, ar_h = aw_l(awq.r_data), ar_l(arq.r_data)
        whit, wdx, wdy, woff = self._decode(m, aw_h.addr, "wdec")
        rhit, rdx, rdy, roff = self._decode(m, ar_h.addr, "rdec")
        w_ok = awq.r_rdy & (wr_pend < NOUT) & ((wr_pend == 0) | (wr_dst == Cat(wdx, wdy)))
        r_ok = arq.r_rdy & (rd_pend < NOUT) & ((rd_pend == 0) | (rd_dst == Cat(rdx, rdy))) & \
            (r_res + ar_h.len + 1 <= MB)
        w_bad = ~whit | aw_h.long
        r_bad = ~rhit | (ar_h.len >= MB)
        w_err_ok = awq.r_rdy & (wr_pend == 0)       # local error answers keep B order
        r_err_ok = arq.r_rdy & (rd_pend == 0) & (r_res == 0)
        prefer_r = Signal()
        cnt = Signal(8)
        err_resp = Signal(2)
        # the landing buffers have two writers: the response demultiplexer (network) and the
        # local error answers; these only run with nothing outstanding, so never together
        b_err, b_net, r_err, r_net = Signal(), Signal(), Signal(), Signal()
        b_net_data, r_net_data = Signal(b_l.size), Signal(r_l.size)
        m.d.comb += [bq.w_en.eq(b_err | b_net),
                     bq.w_data.eq(Mux(b_err, Cat(aw_h.id, err_resp), b_net_data)),
                     rbuf.w_en.eq(r_err | r_net),
                     rbuf.w_data.eq(Mux(r_err, Cat(Const(0, DW), err_resp, cnt == ar_h.len,
                                                   ar_h.id), r_net_data))]
        with m.FSM(name="req"):
            with m.State("IDLE"):
                go_w = Mux(w_bad, w_err_ok, w_ok)
                go_r = Mux(r_bad, r_err_ok, r_ok)
                with m.If(go_w & (~go_r | ~prefer_r)):
                    m.d.sync += [prefer_r.eq(1), cnt.eq(0),
                                 err_resp.eq(Mux(whit, RESP_SLVERR, RESP_DECERR))]
                    with m.If(w_bad):
                        bump(self.decerr_local)
                        m.next = "WERR"
                    with m.Else():
                        bump(self.wr_reqs)
                        m.d.comb += wr_inc.eq(1)
                        m.d.sync += wr_dst.eq(Cat(wdx, wdy))
                        m.next = "WHEAD"
                with m.Elif(go_r):
                    m.d.sync += [prefer_r.eq(0), cnt.eq(0),
                                 err_resp.eq(Mux(rhit, RESP_SLVERR, RESP_DECERR))]
                    with m.If(r_bad):
                        bump(self.decerr_local)
                        m.d.comb += [rd_inc.eq(1), res_add.eq(ar_h.len + 1)]
                        m.next = "RERR"
                    with m.Else():
                        bump(self.rd_reqs)
                        m.d.comb += [rd_inc.eq(1), res_add.eq(ar_h.len + 1)]
                        m.d.sync += rd_dst.eq(Cat(rdx, rdy))
                        m.next = "RHEAD"
            with m.State("WHEAD"):
                m.d.comb += [req.valid.eq(1), req.payload.kind.eq(spec.KIND_HEAD),
                             req.payload.data.eq(head(wdx, wdy, spec.OP_WR_REQ, aw_h.len + 2,
                                                      aw_h.id, aw_h.size, aw_h.burst,
                                                      aw_h.len))]
                with m.If(req.ready):
                    m.next = "WADDR"
            with m.State("WADDR"):
                m.d.comb += [req.valid.eq(1), req.payload.kind.eq(spec.KIND_BODY),
                             req.payload.data.eq(woff)]
                with m.If(req.ready):
                    m.next = "WDATA"
            with m.State("WDATA"):
                last = cnt == aw_h.len
                m.d.comb += [req.valid.eq(1), req.payload.data.eq(wbuf.r_data),
                             req.payload.kind.eq(Mux(last, spec.KIND_TAIL, spec.KIND_BODY)),
                             wbuf.r_en.eq(req.ready)]
                with m.If(req.ready):
                    m.d.sync += cnt.eq(cnt + 1)
                    with m.If(last):
                        m.d.comb += awq.r_en.eq(1)
                        m.next = "IDLE"
            with m.State("WERR"):       # drop the buffered beats, then queue the error B
                with m.If(~aw_h.long & (cnt <= aw_h.len)):
                    m.d.comb += wbuf.r_en.eq(1)
                    m.d.sync += cnt.eq(cnt + 1)
                with m.Else():
                    m.d.comb += [b_err.eq(1), awq.r_en.eq(1), wr_inc.eq(1)]
                    m.next = "IDLE"
            with m.State("RHEAD"):
                m.d.comb += [req.valid.eq(1), req.payload.kind.eq(spec.KIND_HEAD),
                             req.payload.data.eq(head(rdx, rdy, spec.OP_RD_REQ, Const(1, 8),
                                                      ar_h.id, ar_h.size, ar_h.burst,
                                                      ar_h.len))]
                with m.If(req.ready):
                    m.next = "RADDR"
            with m.State("RADDR"):
                m.d.comb += [req.valid.eq(1), req.payload.kind.eq(spec.KIND_TAIL),
                             req.payload.data.eq(roff)]
                with m.If(req.ready):
                    m.d.comb += arq.r_en.eq(1)
                    m.next = "IDLE"
            with m.State("RERR"):       # arlen + 1 error beats through the read buffer
                last = cnt == ar_h.len
                with m.If(rbuf.w_rdy):  # (an over-long burst does not fit at once)
                    m.d.comb += r_err.eq(1)
                    m.d.sync += cnt.eq(cnt + 1)
                    with m.If(last):
                        m.d.comb += arq.r_en.eq(1)
                        m.next = "IDLE"

        # --- response demultiplexer: network -> landing buffers
        hop = _f(ej_rsp.payload.data, "op")
        rid = Signal(IW)
        with m.FSM(name="rsp"):
            with m.State("HEAD"):
                with m.If(~ej_rsp.payload.kind[0]):
                    m.d.comb += ej_rsp.ready.eq(1)           # stray flit
                    with m.If(ej_rsp.valid):
                        bump(self.bad_flits)
                with m.Elif((hop == spec.OP_WR_RSP) & ej_rsp.payload.kind[1]):
                    m.d.comb += [b_net_data.eq(Cat(_f(ej_rsp.payload.data, "axid")[:IW],
                                                   _f(ej_rsp.payload.data, "resp"))),
                                 b_net.eq(ej_rsp.valid), ej_rsp.ready.eq(bq.w_rdy)]
                with m.Elif((hop == spec.OP_RD_RSP) & ~ej_rsp.payload.kind[1]):
                    m.d.comb += ej_rsp.ready.eq(1)
                    with m.If(ej_rsp.valid):
                        m.d.sync += rid.eq(_f(ej_rsp.payload.data, "axid")[:IW])
                        m.next = "DATA"
                with m.Else():
                    m.d.comb += ej_rsp.ready.eq(1)
                    with m.If(ej_rsp.valid):
                        bump(self.bad_flits)
                        with m.If(~ej_rsp.payload.kind[1]):
                            m.next = "SKIP"
            with m.State("DATA"):
                pl = ej_rsp.payload
                m.d.comb += [r_net_data.eq(Cat(pl.data[:DW], pl.data[DW:DW + 2], pl.kind[1],
                                               rid)),
                             r_net.eq(ej_rsp.valid), ej_rsp.ready.eq(rbuf.w_rdy)]
                with m.If(ej_rsp.valid & rbuf.w_rdy & pl.kind[1]):
                    m.next = "HEAD"
            with m.State("SKIP"):
                m.d.comb += ej_rsp.ready.eq(1)
                with m.If(ej_rsp.valid & ej_rsp.payload.kind[1]):
                    m.next = "HEAD"

        # ================= target =================
        # request side: packets -> AW/W/AR on m_axi (ID 0); each issued (or refused) request
        # leaves an entry in the write or read pending queue, answered in order.
        pw_l = data.StructLayout({"src": 8, "axid": 8, "err": 1})
        pr_l = data.StructLayout({"src": 8, "axid": 8, "axlen": 8, "size": 3, "burst": 2,
                                  "err": 1})
        pwq = m.submodules.pwq = fifo.SyncFIFO(width=pw_l.size, depth=NOUT)
        prq = m.submodules.prq = fifo.SyncFIFO(width=pr_l.size, depth=NOUT)
        t_src = Signal(8)
        t_op = Signal(3)
        t = {k: Signal(hi - lo, name=f"t_{k}") for k, (lo, hi) in spec.AXI_FIELDS.items()}
        t_bad = Signal()
        t_off = Signal(len(mm.awaddr))
        tq = ej_req.payload
        pw_in = Cat(t_src, t["axid"], t_bad)
        pr_in = Cat(t_src, t["axid"], t["axlen"], t["size"], t["burst"], t_bad)
        m.d.comb += [pwq.w_data.eq(pw_in), prq.w_data.eq(pr_in)]
        with m.FSM(name="tgt"):
            with m.State("HEAD"):
                m.d.comb += ej_req.ready.eq(1)
                with m.If(ej_req.valid):
                    with m.If(~tq.kind[0]):
                        bump(self.bad_flits)
                    with m.Else():
                        op = _f(tq.data, "op")
                        m.d.sync += [t_src.eq(Cat(_f(tq.data, "src_x"), _f(tq.data, "src_y"))),
                                     t_op.eq(op),
                                     t_bad.eq((_f(tq.data, "dst_x") != x) |
                                              (_f(tq.data, "dst_y") != y) |
                                              ((op != spec.OP_RD_REQ) & (op != spec.OP_WR_REQ)))]
                        m.d.sync += [t[k].eq(_f(tq.data, k)) for k in t]
                        with m.If(tq.kind[1]):
                            m.d.sync += t_bad.eq(1)
                            bump(self.decerr_remote)
                            m.next = "REFUSE"
                        with m.Else():
                            m.next = "ADDR"
            with m.State("ADDR"):
                m.d.comb += ej_req.ready.eq(1)
                with m.If(ej_req.valid):
                    m.d.sync += t_off.eq(tq.data[:len(t_off)])
                    with m.If(t_bad):
                        bump(self.decerr_remote)
                        with m.If(tq.kind[1]):
                            m.next = "REFUSE"
                        with m.Else():
                            m.next = "SKIP"
                    with m.Elif(t_op == spec.OP_WR_REQ):
                        bump(self.served)
                        m.next = "AW"
                    with m.Else():
                        bump(self.served)
                        m.next = "AR"
            with m.State("SKIP"):           # refused request: swallow its data flits
                m.d.comb += ej_req.ready.eq(1)
                with m.If(ej_req.valid & tq.kind[1]):
                    m.next = "REFUSE"
            with m.State("REFUSE"):         # refused request: queue a DECERR answer
                with m.If(t_op == spec.OP_RD_REQ):
                    m.d.comb += prq.w_en.eq(1)
                    with m.If(prq.w_rdy):
                        m.next = "HEAD"
                with m.Else():
                    m.d.comb += pwq.w_en.eq(1)
                    with m.If(pwq.w_rdy):
                        m.next = "HEAD"
            with m.State("AW"):
                m.d.comb += [mm.awvalid.eq(pwq.w_rdy), mm.awaddr.eq(t_off),
                             mm.awlen.eq(t["axlen"]), mm.awsize.eq(t["size"]),
                             mm.awburst.eq(t["burst"]), mm.awid.eq(0),
                             pwq.w_en.eq(pwq.w_rdy & mm.awready)]
                with m.If(pwq.w_rdy & mm.awready):
                    m.next = "W"
            with m.State("W"):
                m.d.comb += [mm.wvalid.eq(ej_req.valid), mm.wdata.eq(tq.data[:DW]),
                             mm.wstrb.eq(tq.data[DW:DW + SW]), mm.wlast.eq(tq.kind[1]),
                             ej_req.ready.eq(mm.wready)]
                with m.If(ej_req.valid & mm.wready & tq.kind[1]):
                    m.next = "HEAD"
            with m.State("AR"):
                m.d.comb += [mm.arvalid.eq(prq.w_rdy), mm.araddr.eq(t_off),
                             mm.arlen.eq(t["axlen"]), mm.arsize.eq(t["size"]),
                             mm.arburst.eq(t["burst"]), mm.arid.eq(0),
                             prq.w_en.eq(prq.w_rdy & mm.arready)]
                with m.If(prq.w_rdy & mm.arready):
                    m.next = "HEAD"

        # response side: pending queues -> response packets (B first when both are ready)
        pw, pr = pw_l(pwq.r_data), pr_l(prq.r_data)
        t_cnt = Signal(8)
        with m.FSM(name="tgt_rsp"):
            with m.State("IDLE"):
                w_rdy = pwq.r_rdy & (pw.err | mm.bvalid)
                r_rdy = prq.r_rdy & (pr.err | mm.rvalid)
                with m.If(w_rdy):
                    resp = Mux(pw.err, RESP_DECERR, mm.bresp)
                    m.d.comb += [rsp.valid.eq(1), rsp.payload.kind.eq(spec.KIND_HEADTAIL),
                                 rsp.payload.data.eq(head(pw.src[0:4], pw.src[4:8],
                                                          spec.OP_WR_RSP, Const(0, 8),
                                                          pw.axid, resp=resp))]
                    with m.If(rsp.ready):
                        m.d.comb += [pwq.r_en.eq(1), mm.bready.eq(~pw.err)]
                with m.Elif(r_rdy):
                    resp = Mux(pr.err, RESP_DECERR, RESP_OKAY)
                    m.d.comb += [rsp.valid.eq(1), rsp.payload.kind.eq(spec.KIND_HEAD),
                                 rsp.payload.data.eq(head(pr.src[0:4], pr.src[4:8],
                                                          spec.OP_RD_RSP, pr.axlen + 1,
                                                          pr.axid, pr.size, pr.burst,
                                                          pr.axlen, resp))]
                    with m.If(rsp.ready):
                        m.d.sync += t_cnt.eq(0)
                        with m.If(pr.err):
                            m.next = "RERR"
                        with m.Else():
                            m.next = "R"
            with m.State("R"):
                m.d.comb += [rsp.valid.eq(mm.rvalid), mm.rready.eq(rsp.ready),
                             rsp.payload.data.eq(Cat(mm.rdata, mm.rresp)),
                             rsp.payload.kind.eq(Mux(mm.rlast, spec.KIND_TAIL, spec.KIND_BODY))]
                with m.If(mm.rvalid & rsp.ready & mm.rlast):
                    m.d.comb += prq.r_en.eq(1)
                    m.next = "IDLE"
            with m.State("RERR"):
                last = t_cnt == pr.axlen
                m.d.comb += [rsp.valid.eq(1),
                             rsp.payload.data.eq(Cat(Const(0, DW), Const(RESP_DECERR, 2))),
                             rsp.payload.kind.eq(Mux(last, spec.KIND_TAIL, spec.KIND_BODY))]
                with m.If(rsp.ready):
                    m.d.sync += t_cnt.eq(t_cnt + 1)
                    with m.If(last):
                        m.d.comb += prq.r_en.eq(1)
                        m.next = "IDLE"
        return m


class CopyMaster(wiring.Component):
    """Bench initiator that copies like a streaming DMA, the access pattern that can
    deadlock a network whose interfaces forward writes before their data exists.

    For each of ``count`` copies it issues AR (``src``, ``beats`` beats, ID 0), then AW
    (``dst``, ID 1) *before* any read data has returned, then forwards every R beat as a W
    beat (``rready = wready``: it never buffers), then waits for B. ``errors`` counts
    non-OKAY R/B responses, ``copies`` completed copies; ``done`` rises after the last B.
    Data width 32 bits, INCR bursts of 4-byte beats."""

    def __init__(self, sig):
        self._sig = sig
        super().__init__({"m_axi": Out(sig), "src": In(32), "dst": In(32), "beats": In(9),
                          "count": In(16), "start": In(1), "done": Out(1),
                          "copies": Out(16), "errors": Out(16)})

    def elaborate(self, platform):
        m = Module()
        a = self.m_axi
        n = Mux(self.beats == 0, 1, self.beats) - 1
        m.d.comb += [a.arid.eq(0), a.araddr.eq(self.src), a.arlen.eq(n), a.arsize.eq(2),
                     a.arburst.eq(1), a.awid.eq(1), a.awaddr.eq(self.dst), a.awlen.eq(n),
                     a.awsize.eq(2), a.awburst.eq(1)]
        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += [self.copies.eq(0), self.errors.eq(0)]
                    m.next = "AR"
            with m.State("AR"):
                m.d.comb += a.arvalid.eq(1)
                with m.If(a.arready):
                    m.next = "AW"
            with m.State("AW"):
                m.d.comb += a.awvalid.eq(1)
                with m.If(a.awready):
                    m.next = "DATA"
            with m.State("DATA"):
                m.d.comb += [a.wvalid.eq(a.rvalid), a.wdata.eq(a.rdata), a.wstrb.eq(0xF),
                             a.wlast.eq(a.rlast), a.rready.eq(a.wready)]
                with m.If(a.rvalid & a.wready):
                    with m.If(a.rresp != 0):
                        m.d.sync += self.errors.eq(self.errors + 1)
                    with m.If(a.rlast):
                        m.next = "B"
            with m.State("B"):
                m.d.comb += a.bready.eq(1)
                with m.If(a.bvalid):
                    m.d.sync += [self.copies.eq(self.copies + 1),
                                 self.errors.eq(self.errors + (a.bresp != 0))]
                    with m.If(self.copies + 1 >= self.count):
                        m.next = "DONE"
                    with m.Else():
                        m.next = "AR"
            with m.State("DONE"):
                m.d.comb += self.done.eq(1)
                with m.If(self.start):
                    m.d.sync += [self.copies.eq(0), self.errors.eq(0)]
                    m.next = "AR"
        return m


class AxiMeshBench(wiring.Component):
    """Bench top: a :class:`Mesh` with a :class:`NetworkInterface` at every node. Node ``i``
    in ``masters`` exposes ``n<i>_s_axi`` (drive it with an AXI master model), node ``i``
    in ``memories`` exposes ``n<i>_m_axi`` (attach a memory model). Other AXI ports are
    tied off. ``regions`` defaults to one 1 MiB region per memory node (spec.REGION_SHIFT
    windows of the default map). ``decerr`` and ``bad_flits`` sum the NIs' counters."""

    def __init__(self, *, kx: int = 2, ky: int = 2, masters=(0,), memories=(3,), regions=None,
                 flit_width: int = 64, data_width: int = 32, addr_width: int = 32,
                 id_width: int = 4, vcs_per_class: int = 1, depth: int = 4, copiers=(),
                 outstanding: int = 4, max_burst: int = 256):
        spec.check_mesh(kx, ky)
        n = kx * ky
        if set(copiers) & set(masters):
            raise ValueError(f"copiers {copiers!r} and masters {masters!r} must be disjoint")
        for name, lst in (("masters", masters), ("memories", memories),
                          ("copiers", copiers)):
            if any(not 0 <= i < n for i in lst):
                raise ValueError(f"{name} must be node indices in [0, {n}), not {lst!r}")
        if regions is None:
            full = spec.default_address_map(kx, ky)
            regions = tuple(full[i] for i in memories)
        self._kx, self._ky = kx, ky
        self._masters, self._memories, self._regions = tuple(masters), tuple(memories), regions
        self._kw = dict(flit_width=flit_width, vcs_per_class=vcs_per_class, depth=depth)
        self._ni_kw = dict(flit_width=flit_width, data_width=data_width,
                           addr_width=addr_width, id_width=id_width, outstanding=outstanding,
                           max_burst=max_burst)
        self._copiers = tuple(copiers)
        if copiers and data_width != 32:
            raise ValueError(f"copiers need data_width=32, not {data_width!r}")
        sig = AXI4Signature(addr_width=addr_width, data_width=data_width, id_width=id_width)
        self._sig = sig
        ports = {f"n{i}_s_axi": In(sig) for i in masters}
        for i in copiers:
            ports.update({f"n{i}_src": In(32), f"n{i}_dst": In(32), f"n{i}_beats": In(9),
                          f"n{i}_count": In(16), f"n{i}_start": In(1), f"n{i}_done": Out(1),
                          f"n{i}_copies": Out(16), f"n{i}_errors": Out(16)})
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
                elif i in self._copiers:
                    cm = CopyMaster(self._sig)
                    m.submodules[f"copy_{x}_{y}"] = cm
                    wiring.connect(m, cm.m_axi, ni.s_axi)
                    for k in ("src", "dst", "beats", "count", "start"):
                        m.d.comb += getattr(cm, k).eq(getattr(self, f"n{i}_{k}"))
                    for k in ("done", "copies", "errors"):
                        m.d.comb += getattr(self, f"n{i}_{k}").eq(getattr(cm, k))
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
