"""Mesh generator: ``kx`` x ``ky`` routers with an endpoint port per node."""

from __future__ import annotations

from amaranth.hdl import Array, Cat, Module, Mux, Signal
from amaranth.lib import fifo, stream, wiring
from amaranth.lib.wiring import In, Out

from rtl.hier import instance
from spec import noc as spec

from .arbiter import CreditCounter, RoundRobinArbiter, one_hot_index
from .router import LinkSignature, Router, check_router_params, flit_layout, sub_of_port, xy_route

__all__ = ["LocalPort", "Mesh", "endpoint_stream"]


def endpoint_stream(flit_width: int) -> stream.Signature:
    """Flit stream between an endpoint and the network (one per message class)."""
    return stream.Signature(flit_layout(flit_width))


class LocalPort(wiring.Component):
    """Adapter between an endpoint's per-class flit streams and a router's local port.

    Injection: ``inj[c]`` (valid/ready) carries the flits of class ``c`` packets, head to
    tail; a packet uses the VC of its class whose sub-channel is ``spec.inject_sub``: the
    ``spec.VC_SUB`` entry of the port the packet takes at this node's router (computed from
    ``pos_x``/``pos_y``, this node's position, an input so that all local ports of a mesh
    are one design). The choice depends only on the destination, so a flow always uses
    the same VC and stays in order. When both classes have a flit
    and a credit a round-robin arbiter picks one per cycle (flits of a request and a
    response packet may interleave on the link, each VC stays in order). The link is a
    register: a flit accepted at cycle t is on ``link_out`` at t+1.

    Ejection: flits from the router go into a ``depth``-flit buffer per VC (the credits the
    router holds for its local output); ``ej[c]`` presents one packet of class ``c`` at a
    time, head to tail (packet-locked round-robin over the class's VCs). A flit written at
    cycle t is offered on ``ej[c]`` at t+1. Backpressure on ``ej[c]`` only stops class c.
    """

    def __init__(self, *, kx: int, ky: int, flit_width: int = 64, vcs_per_class: int = 1,
                 depth: int = 4):
        spec.check_mesh(kx, ky)
        check_router_params(flit_width, vcs_per_class, depth)
        self._kx, self._ky = kx, ky
        self._fw, self._vpc, self._depth = flit_width, vcs_per_class, depth
        n_vcs = spec.N_CLASSES * vcs_per_class
        link = LinkSignature(flit_width, n_vcs)
        es = endpoint_stream(flit_width)
        super().__init__({"inj": In(es).array(spec.N_CLASSES), "ej": Out(es).array(spec.N_CLASSES),
                          "link_out": Out(link), "link_in": In(link),
                          "pos_x": In(spec.COORD_BITS), "pos_y": In(spec.COORD_BITS)})

    def elaborate(self, platform):
        m = Module()
        C, vpc, D = spec.N_CLASSES, self._vpc, self._depth
        V = C * vpc
        layout = flit_layout(self._fw)

        # ---- injection ----
        # The VC within the class is a function of the destination and this node's position
        # (latched at the head), so all packets of a flow use the same VC chain: in order.
        arb = RoundRobinArbiter(C)
        m.submodules.inj_arb = arb
        subs = []
        for c in range(C):
            sub = Signal(range(max(vpc, 2)), name=f"inj_sub{c}")
            if vpc > 1:
                cur = Signal(range(vpc), name=f"inj_cur{c}")
                pl = self.inj[c].payload
                rc = xy_route(m, self.pos_x, self.pos_y, self._kx, self._ky, pl.data[0:4],
                              pl.data[4:8], name=f"inj_route{c}")
                pick = sub_of_port(m, rc, vpc, name=f"inj_pick{c}")
                m.d.comb += sub.eq(Mux(pl.kind[0], pick, cur))
                with m.If(arb.grant[c]):
                    m.d.sync += cur.eq(sub)
            subs.append(sub)
            ok = Signal(name=f"inj_ok{c}")
            for i in range(vpc):
                cc = CreditCounter(D)
                m.submodules[f"inj_credit{c * vpc + i}"] = cc
                m.d.comb += [cc.give.eq(self.link_out.credit[c * vpc + i]),
                             cc.take.eq(arb.grant[c] & (sub == i))]
                with m.If(sub == i):
                    m.d.comb += ok.eq(cc.available)
            m.d.comb += [arb.requests[c].eq(self.inj[c].valid & ok),
                         self.inj[c].ready.eq(arb.grant[c])]
        m.d.comb += arb.advance.eq(1)
        gc = one_hot_index(m, arb.grant, C, name="inj_class")
        m.d.sync += [self.link_out.valid.eq(arb.valid),
                     self.link_out.vc.eq(gc * vpc + Array(subs)[gc]),
                     self.link_out.flit.eq(Array(self.inj[c].payload for c in range(C))[gc])]

        # ---- ejection ----
        bufs = []
        for v in range(V):
            f = fifo.SyncFIFO(width=layout.size, depth=D)
            m.submodules[f"ej_buf{v}"] = f
            m.d.comb += [f.w_data.eq(self.link_in.flit.as_value()),
                         f.w_en.eq(self.link_in.valid & (self.link_in.vc == v))]
            bufs.append(f)
        for c in range(C):
            vcs = bufs[c * vpc:(c + 1) * vpc]
            ej = self.ej[c]
            if vpc == 1:
                f = vcs[0]
                m.d.comb += [ej.valid.eq(f.r_rdy), ej.payload.eq(f.r_data),
                             f.r_en.eq(ej.ready & f.r_rdy)]
                continue
            locked = Signal(name=f"ej_locked{c}")
            cur = Signal(range(vpc), name=f"ej_cur{c}")
            sel = Signal(range(vpc), name=f"ej_sel{c}")
            earb = RoundRobinArbiter(vpc)
            m.submodules[f"ej_arb{c}"] = earb
            m.d.comb += earb.requests.eq(Cat(f.r_rdy for f in vcs))
            gi = one_hot_index(m, earb.grant, vpc, name=f"ej_gnt{c}")
            m.d.comb += sel.eq(gi)
            with m.If(locked):
                m.d.comb += sel.eq(cur)
            rdy = Array(f.r_rdy for f in vcs)[sel]
            data = Array(f.r_data for f in vcs)[sel]
            m.d.comb += [ej.valid.eq(rdy), ej.payload.eq(data)]
            fire = ej.valid & ej.ready
            for i, f in enumerate(vcs):
                m.d.comb += f.r_en.eq(fire & (sel == i))
            kind = layout(data).kind
            m.d.comb += earb.advance.eq(fire & ~locked)
            with m.If(fire):
                m.d.sync += [locked.eq(~kind[1]), cur.eq(sel)]
        m.d.sync += self.link_in.credit.eq(Cat(f.r_en for f in bufs))
        return m


class Mesh(wiring.Component):
    """A ``kx`` x ``ky`` mesh of :class:`Router` with a :class:`LocalPort` per node.

    Node ``n = y * kx + x`` (row 0 north, column 0 west). Ports per node ``n`` and class
    ``c`` (spec.CLASS_REQ = 0, spec.CLASS_RSP = 1): ``inj[n][c]`` (endpoint -> network) and
    ``ej[n][c]`` (network -> endpoint), valid/ready flit streams; ``errors[n]``: the
    router's dropped-flit count. Edge ports are tied off (XY routing never uses them).

    Zero-load latency, from the cycle the head flit is accepted on ``inj`` to the cycle the
    tail flit is offered on ``ej``, for a packet of ``L`` flits over ``H`` hops (Manhattan
    distance): ``T0 = 2 * H + 4 + (L - 1)`` cycles: 1 (injection register) + 2 per router
    (buffer + output register; H + 1 routers) + 1 (ejection buffer) + serialization.
    See golden.noc.zero_load_latency.
    """

    def __init__(self, *, kx: int = 4, ky: int = 4, flit_width: int = 64,
                 vcs_per_class: int = 1, depth: int = 4):
        spec.check_mesh(kx, ky)
        check_router_params(flit_width, vcs_per_class, depth)
        self._kx, self._ky = kx, ky
        self._fw, self._vpc, self._depth = flit_width, vcs_per_class, depth
        n = kx * ky
        es = endpoint_stream(flit_width)
        super().__init__({"inj": In(es).array(n, spec.N_CLASSES),
                          "ej": Out(es).array(n, spec.N_CLASSES),
                          "errors": Out(16).array(n)})

    kx = property(lambda self: self._kx)
    ky = property(lambda self: self._ky)
    n_nodes = property(lambda self: self._kx * self._ky)
    flit_width = property(lambda self: self._fw)

    def elaborate(self, platform):
        m = Module()
        kx, ky = self._kx, self._ky
        kw = dict(flit_width=self._fw, vcs_per_class=self._vpc, depth=self._depth)
        routers = {}
        for y in range(ky):
            for x in range(kx):
                # position as constant inputs: one router / local-port design for the whole
                # mesh, generated once under rtl.hier.generate_hierarchical
                r = instance(Router, kx=kx, ky=ky, **kw)
                m.submodules[f"router_{x}_{y}"] = routers[x, y] = r
                lp = instance(LocalPort, kx=kx, ky=ky, **kw)
                m.submodules[f"local_{x}_{y}"] = lp
                m.d.comb += [r.pos_x.eq(x), r.pos_y.eq(y), lp.pos_x.eq(x), lp.pos_y.eq(y)]
                n = y * kx + x
                for c in range(spec.N_CLASSES):
                    wiring.connect(m, wiring.flipped(self.inj[n][c]), lp.inj[c])
                    wiring.connect(m, lp.ej[c], wiring.flipped(self.ej[n][c]))
                wiring.connect(m, lp.link_out, r.i[spec.PORT_L])
                wiring.connect(m, r.o[spec.PORT_L], lp.link_in)
                m.d.comb += self.errors[n].eq(r.errors)
        for y in range(ky):
            for x in range(kx):
                r = routers[x, y]
                if x + 1 < kx:
                    wiring.connect(m, r.o[spec.PORT_E], routers[x + 1, y].i[spec.PORT_W])
                    wiring.connect(m, routers[x + 1, y].o[spec.PORT_W], r.i[spec.PORT_E])
                if y + 1 < ky:
                    wiring.connect(m, r.o[spec.PORT_S], routers[x, y + 1].i[spec.PORT_N])
                    wiring.connect(m, routers[x, y + 1].o[spec.PORT_N], r.i[spec.PORT_S])
        # edge ports: nothing arrives, no credits return
        for (x, y), r in routers.items():
            for p, edge in ((spec.PORT_N, y == 0), (spec.PORT_S, y == ky - 1),
                            (spec.PORT_W, x == 0), (spec.PORT_E, x == kx - 1)):
                if edge:
                    m.d.comb += [r.i[p].valid.eq(0), r.o[p].credit.eq(0)]
        return m
