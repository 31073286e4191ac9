"""Wormhole virtual-channel router for a 2D mesh (5 ports: N, E, S, W, local)."""

from __future__ import annotations

from amaranth.hdl import Array, Cat, Const, Module, Signal
from amaranth.lib import data, fifo, wiring
from amaranth.lib.wiring import In, Out

from spec import noc as spec

from .arbiter import CreditCounter, RoundRobinArbiter, one_hot_index

__all__ = ["flit_layout", "LinkSignature", "Router", "check_router_params"]


def flit_layout(flit_width: int) -> data.StructLayout:
    """A flit: ``kind`` (spec.KIND_*) and ``data`` (head fields per spec.HEAD_FIELDS)."""
    return data.StructLayout({"kind": spec.KIND_WIDTH, "data": flit_width})


class LinkSignature(wiring.Signature):
    """One direction of a router-to-router (or router-to-endpoint) channel, sender view.

    ``valid``/``vc``/``flit`` carry at most one flit per cycle, no ready: the sender only
    sends on VC ``v`` while it holds a credit for it. ``credit[v]`` (receiver -> sender)
    pulses for one cycle per flit that left the receiver's buffer of VC ``v``.
    """

    def __init__(self, flit_width: int, n_vcs: int):
        self._flit_width, self._n_vcs = flit_width, n_vcs
        super().__init__({"valid": Out(1), "vc": Out(range(n_vcs)),
                          "flit": Out(flit_layout(flit_width)), "credit": In(n_vcs)})

    flit_width = property(lambda self: self._flit_width)
    n_vcs = property(lambda self: self._n_vcs)

    def __eq__(self, other):
        return (isinstance(other, LinkSignature) and self.flit_width == other.flit_width
                and self.n_vcs == other.n_vcs)

    def __hash__(self):
        return hash((LinkSignature, self.flit_width, self.n_vcs))

    def __repr__(self):
        return f"LinkSignature(flit_width={self.flit_width}, n_vcs={self.n_vcs})"


def _or_all(values, width):
    acc = Const(0, width)
    for v in values:
        acc = acc | v
    return acc


def check_router_params(flit_width, vcs_per_class, depth):
    if not isinstance(flit_width, int) or flit_width < spec.ROUTE_MIN_FLIT_WIDTH:
        raise ValueError(f"flit_width must be an int >= {spec.ROUTE_MIN_FLIT_WIDTH}, "
                         f"not {flit_width!r}")
    if not isinstance(vcs_per_class, int) or not 1 <= vcs_per_class <= 4:
        raise ValueError(f"vcs_per_class must be an int in [1, 4], not {vcs_per_class!r}")
    if not isinstance(depth, int) or not 2 <= depth <= 64:
        raise ValueError(f"depth must be an int in [2, 64], not {depth!r}")


def xy_route(m: Module, x: int, y: int, kx: int, ky: int, dst_x, dst_y, name="route"):
    """Dimension-ordered (X then Y) output port for a head flit at router (x, y).

    A destination outside the mesh is clamped: X moves stop at the east/west edge, Y moves
    at the north/south edge, and the packet leaves through the local port of the nearest
    node, whose endpoint reports it (DECERR for requests, an error count for traffic)."""
    route = Signal(range(spec.N_PORTS), name=name)
    moves = [(spec.PORT_E, x < kx - 1, lambda: dst_x > x), (spec.PORT_W, x > 0, lambda: dst_x < x),
             (spec.PORT_S, y < ky - 1, lambda: dst_y > y), (spec.PORT_N, y > 0, lambda: dst_y < y)]
    # a chain of If/Elif over the directions that exist at this router, local otherwise
    m.d.comb += route.eq(spec.PORT_L)
    for port, exists, cond in reversed(moves):
        if exists:
            with m.If(cond()):
                m.d.comb += route.eq(port)
    return route


class Router(wiring.Component):
    """Input-queued wormhole router with virtual channels and credit flow control.

    Parameters
    ----------
    x, y, kx, ky : position of this router in a ``kx`` x ``ky`` mesh (row 0 = north).
    flit_width : data bits per flit (>= 8; 64 for traffic/AXI packets).
    vcs_per_class : VCs per message class (``n_vcs = 2 * vcs_per_class`` per port).
    depth : flits of buffer per input VC (= credits per output VC downstream).

    Ports
    -----
    i[p] : In(LinkSignature)   input link of port p (spec.PORT_N/E/S/W/L).
    o[p] : Out(LinkSignature)  output link of port p (a register: the link stage).
    flits[p] : Out(32)         flits sent through output port p (wraps).
    errors : Out(16)           cycles with a protocol error: a flit arriving at a full buffer
                               (dropped; a credit violation upstream), a body/tail flit with
                               no packet open on its VC (dropped), or a credit returned that
                               was never taken; saturating. The router keeps working.

    Pipeline (zero load): a flit written into an input buffer at cycle t is at the buffer
    head at t+1, where route computation (XY, from the head flit), VC allocation and switch
    allocation all happen in the same cycle; the winner is in the output register at t+2,
    which is the input of the next router's buffer. So one hop = 1 router cycle + 1 link
    cycle = 2 cycles per hop; body flits follow at one flit per cycle.

    Allocation (separable, round-robin): VC allocation: each head flit waiting at input VC
    ``v`` requests VC ``v`` of its output port (a packet keeps its VC number end to end;
    the endpoint chooses it from the destination, so every flow uses one VC chain and stays
    in order), and a round-robin arbiter per output VC grants one of the requesters. Switch allocation: a
    round-robin arbiter per input port picks one VC among those holding an output VC with a
    credit downstream, then a round-robin arbiter per output port picks one input port.
    An output VC stays owned by a packet from its head until its tail (wormhole).

    Throughput: one flit per output port per cycle; a single VC needs ``depth >= 4`` to
    stream at full rate (credit round trip: 4 cycles).
    """

    def __init__(self, *, x: int, y: int, kx: int, ky: int, flit_width: int = 64,
                 vcs_per_class: int = 1, depth: int = 4):
        spec.check_mesh(kx, ky)
        if not (isinstance(x, int) and isinstance(y, int) and 0 <= x < kx and 0 <= y < ky):
            raise ValueError(f"(x, y) must lie inside the {kx}x{ky} mesh, not ({x!r}, {y!r})")
        check_router_params(flit_width, vcs_per_class, depth)
        self._x, self._y, self._kx, self._ky = x, y, kx, ky
        self._flit_width, self._vpc, self._depth = flit_width, vcs_per_class, depth
        self._n_vcs = spec.N_CLASSES * vcs_per_class
        link = LinkSignature(flit_width, self._n_vcs)
        super().__init__({"i": In(link).array(spec.N_PORTS), "o": Out(link).array(spec.N_PORTS),
                          "flits": Out(32).array(spec.N_PORTS), "errors": Out(16)})

    x = property(lambda self: self._x)
    y = property(lambda self: self._y)
    flit_width = property(lambda self: self._flit_width)
    vcs_per_class = property(lambda self: self._vpc)
    n_vcs = property(lambda self: self._n_vcs)
    depth = property(lambda self: self._depth)

    def elaborate(self, platform):
        m = Module()
        P, V, W, D = spec.N_PORTS, self._n_vcs, self._flit_width, self._depth
        vpc = self._vpc
        layout = flit_layout(W)
        fw = layout.size

        # ---- input buffers and per-input-VC state -----------------------------------------
        heads, r_rdy, pops, drops = {}, {}, {}, {}
        alloc, oport, ovc, route = {}, {}, {}, {}
        dropped = []
        for p in range(P):
            for v in range(V):
                f = fifo.SyncFIFO(width=fw, depth=D)
                m.submodules[f"buf_{spec.PORT_NAMES[p]}{v}"] = f
                w_en = self.i[p].valid & (self.i[p].vc == v)
                m.d.comb += [f.w_data.eq(self.i[p].flit.as_value()), f.w_en.eq(w_en)]
                dropped.append(w_en & ~f.w_rdy)
                head = layout(f.r_data)
                heads[p, v], r_rdy[p, v] = head, f.r_rdy
                pops[p, v] = f.r_en
                alloc[p, v] = Signal(name=f"alloc_{p}_{v}")
                oport[p, v] = Signal(range(P), name=f"oport_{p}_{v}")
                ovc[p, v] = Signal(range(V), name=f"ovc_{p}_{v}")
                rc = xy_route(m, self._x, self._y, self._kx, self._ky, head.data[0:4],
                              head.data[4:8], name=f"rc_{p}_{v}")
                route[p, v] = Signal(range(P), name=f"route_{p}_{v}")
                with m.If(alloc[p, v]):
                    m.d.comb += route[p, v].eq(oport[p, v])
                with m.Else():
                    m.d.comb += route[p, v].eq(rc)
                drops[p, v] = Signal(name=f"stray_{p}_{v}")
                m.d.comb += drops[p, v].eq(f.r_rdy & ~head.kind[0] & ~alloc[p, v])

        # ---- output VC state: busy flags and credit counters ------------------------------
        busy, credits = {}, {}
        avail = Signal(P * V)
        for o in range(P):
            for w in range(V):
                busy[o, w] = Signal(name=f"busy_{o}_{w}")
                cc = CreditCounter(D)
                m.submodules[f"credit_{spec.PORT_NAMES[o]}{w}"] = cc
                credits[o, w] = cc
                m.d.comb += [cc.give.eq(self.o[o].credit[w]), avail[o * V + w].eq(cc.available)]
                dropped.append(cc.error)

        # ---- VC allocation, stage 1: a waiting head asks for the same-numbered VC at its
        # output port (a flow keeps its VC end to end, so packets of a flow stay in order
        # even with several VCs per class; the endpoint picks the VC from the destination)
        va_pick = {}   # (p, v, w) -> request to output VC w at its routed port
        for p in range(P):
            for v in range(V):
                want = r_rdy[p, v] & heads[p, v].kind[0] & ~alloc[p, v]
                c = v // vpc
                for w in range(c * vpc, (c + 1) * vpc):
                    va_pick[p, v, w] = Signal(name=f"vapick_{p}_{v}_{w}")
                    if w == v:
                        free_w = ~Array(busy[o, w] for o in range(P))[route[p, v]]
                        m.d.comb += va_pick[p, v, w].eq(want & free_w)
        # ---- VC allocation, stage 2: a round-robin arbiter per output VC -------------------
        va_gnt = {(p, v): Signal(name=f"vagnt_{p}_{v}") for p in range(P) for v in range(V)}
        va_w = {(p, v): Signal(range(V), name=f"vaw_{p}_{v}") for p in range(P) for v in range(V)}
        va_set = {}
        gnt_terms = {k: [] for k in va_gnt}
        w_terms = {k: [] for k in va_gnt}
        for o in range(P):
            for w in range(V):
                c = w // vpc
                reqs = [(p, v) for p in range(P) for v in range(c * vpc, (c + 1) * vpc)]
                arb = RoundRobinArbiter(len(reqs))
                m.submodules[f"va_{spec.PORT_NAMES[o]}{w}"] = arb
                for j, (p, v) in enumerate(reqs):
                    m.d.comb += arb.requests[j].eq(va_pick[p, v, w] & (route[p, v] == o))
                    gnt_terms[p, v].append(arb.grant[j])
                    w_terms[p, v].append(arb.grant[j].replicate(len(va_w[p, v])) & w)
                m.d.comb += arb.advance.eq(1)
                va_set[o, w] = arb.valid
        for k in va_gnt:            # at most one output VC grants a given input VC
            m.d.comb += [va_gnt[k].eq(Cat(*gnt_terms[k]).any()),
                         va_w[k].eq(_or_all(w_terms[k], len(va_w[k])))]

        # ---- switch allocation ----------------------------------------------------------
        eff_vc = {}
        in_arb, win_v, win_route, win_vc, win_flit = [], [], [], [], []
        for p in range(P):
            arb = RoundRobinArbiter(V)
            m.submodules[f"sa_in_{spec.PORT_NAMES[p]}"] = arb
            in_arb.append(arb)
            for v in range(V):
                eff_vc[p, v] = Signal(range(V), name=f"effvc_{p}_{v}")
                m.d.comb += eff_vc[p, v].eq(ovc[p, v])
                with m.If(~alloc[p, v]):
                    m.d.comb += eff_vc[p, v].eq(va_w[p, v])
                has_vc = alloc[p, v] | va_gnt[p, v]
                cred = avail.bit_select(route[p, v] * V + eff_vc[p, v], 1)
                m.d.comb += arb.requests[v].eq(r_rdy[p, v] & has_vc & cred)
            wv = one_hot_index(m, arb.grant, V, name=f"winv_{p}")
            win_v.append(wv)
            win_route.append(Array(route[p, v] for v in range(V))[wv])
            win_vc.append(Array(eff_vc[p, v] for v in range(V))[wv])
            win_flit.append(Array(heads[p, v].as_value() for v in range(V))[wv])

        granted_in = [Signal(name=f"sa_gnt_{p}") for p in range(P)]
        gin_terms = [[] for _ in range(P)]
        out_fire, out_vc, out_flit = [], [], []
        for o in range(P):
            arb = RoundRobinArbiter(P)
            m.submodules[f"sa_out_{spec.PORT_NAMES[o]}"] = arb
            for p in range(P):
                m.d.comb += arb.requests[p].eq(in_arb[p].valid & (win_route[p] == o))
                gin_terms[p].append(arb.grant[p])
            m.d.comb += arb.advance.eq(1)
            wp = one_hot_index(m, arb.grant, P, name=f"winp_{o}")
            fire = Signal(name=f"fire_{o}")
            vc = Signal(range(V), name=f"ovc_next_{o}")
            flit = Signal(layout, name=f"oflit_next_{o}")
            m.d.comb += [fire.eq(arb.valid), vc.eq(Array(win_vc)[wp]),
                         flit.eq(Array(win_flit)[wp])]
            out_fire.append(fire)
            out_vc.append(vc)
            out_flit.append(flit)
            m.d.sync += [self.o[o].valid.eq(fire), self.o[o].vc.eq(vc),
                         self.o[o].flit.eq(flit)]
            with m.If(fire):
                m.d.sync += self.flits[o].eq(self.flits[o] + 1)
            for w in range(V):
                m.d.comb += credits[o, w].take.eq(fire & (vc == w))
                release = fire & (vc == w) & flit.kind[1]
                with m.If(release):
                    m.d.sync += busy[o, w].eq(0)
                with m.Elif(va_set[o, w]):
                    m.d.sync += busy[o, w].eq(1)

        for p in range(P):
            m.d.comb += [granted_in[p].eq(Cat(*gin_terms[p]).any()),
                         in_arb[p].advance.eq(granted_in[p])]
            credit_bits = []
            for v in range(V):
                fwd = granted_in[p] & in_arb[p].grant[v]
                m.d.comb += pops[p, v].eq(fwd | drops[p, v])
                credit_bits.append(pops[p, v])
                with m.If(fwd & heads[p, v].kind[1]):
                    m.d.sync += alloc[p, v].eq(0)
                with m.Elif(va_gnt[p, v]):
                    m.d.sync += [alloc[p, v].eq(1), oport[p, v].eq(route[p, v]),
                                 ovc[p, v].eq(va_w[p, v])]
            m.d.sync += self.i[p].credit.eq(Cat(*credit_bits))

        n_err = sum((d.as_unsigned() for d in dropped), Const(0, 4)) + \
            sum((drops[k].as_unsigned() for k in drops), Const(0, 4))
        with m.If((n_err != 0) & (self.errors != 0xFFFF)):
            m.d.sync += self.errors.eq(self.errors + 1)
        return m
