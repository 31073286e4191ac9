"""Wormhole virtual-channel router for a 2D mesh (5 ports: N, E, S, W, local)."""

from __future__ import annotations

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal
from amaranth.lib import data, fifo, wiring
from amaranth.lib.wiring import In, Out

from spec import noc as spec

from .arbiter import CreditCounter, RoundRobinArbiter, SwitchAllocator, one_hot_index

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


def xy_route(m: Module, x, y, kx: int, ky: int, dst_x, dst_y, name="route"):
    """Dimension-ordered (X then Y) output port for a head flit at router (x, y)
    (spec.xy_port in hardware). ``x``/``y`` are ints or Values (a router whose position is
    an input port).

    A destination outside the mesh is clamped: X moves stop at the east/west edge, Y moves
    at the north/south edge, and the packet leaves through the local port of the nearest
    node, whose endpoint reports it (DECERR for requests, an error count for traffic)."""
    route = Signal(range(spec.N_PORTS), name=name)
    moves = []
    # a position known at elaboration (int or Const) decides which moves exist; a mesh one
    # node wide has no moves in that dimension (no compares against 0: lint UNSIGNED)
    for pos, k, dst, inc, dec in ((x, kx, dst_x, spec.PORT_E, spec.PORT_W),
                                  (y, ky, dst_y, spec.PORT_S, spec.PORT_N)):
        if k == 1:
            continue
        fixed = pos.value if isinstance(pos, Const) else pos if isinstance(pos, int) else None
        if fixed is None:
            # dst < pos as a signed difference: a flat mesh drives pos from a constant, and
            # Amaranth folds it into the compare (dst < 0 would trip lint UNSIGNED)
            below = (Cat(pos, Const(0, 1)).as_signed() - Cat(dst, Const(0, 1)).as_signed()) > 0
            moves += [(inc, pos < k - 1, dst > pos), (dec, pos > 0, below)]
        else:
            moves += [(inc, fixed < k - 1, dst > fixed), (dec, fixed > 0, dst < fixed)]
    # a chain of If/Elif over the directions, local otherwise (first match wins)
    m.d.comb += route.eq(spec.PORT_L)
    for port, exists, cond in reversed(moves):
        if isinstance(exists, bool):
            if exists:
                with m.If(cond):
                    m.d.comb += route.eq(port)
        else:
            with m.If(exists & cond):
                m.d.comb += route.eq(port)
    return route


def sub_of_port(m: Module, port, vcs_per_class: int, name="sub"):
    """spec.VC_SUB[vcs_per_class][port] in hardware."""
    sub = Signal(range(max(vcs_per_class, 2)), name=name)
    table = spec.VC_SUB[vcs_per_class]
    with m.Switch(port):
        for p in range(spec.N_PORTS):
            with m.Case(p):
                m.d.comb += sub.eq(table[p])
    return sub


def lookahead_sub(m: Module, x, y, kx: int, ky: int, in_port: int, route, dst_x, dst_y,
                  vcs_per_class: int, name="la"):
    """Sub-channel of a packet leaving router (x, y) through ``route`` (spec.vc_sub): from
    its output port at the next router, or ``in_port`` mod vcs_per_class when it ejects."""
    sub = Signal(range(max(vcs_per_class, 2)), name=name)
    if vcs_per_class == 1:
        return sub
    nx = Signal(spec.COORD_BITS + 1, name=f"{name}_nx")
    ny = Signal(spec.COORD_BITS + 1, name=f"{name}_ny")
    m.d.comb += [nx.eq(x), ny.eq(y)]
    with m.Switch(route):
        with m.Case(spec.PORT_E):
            m.d.comb += nx.eq(x + 1)
        with m.Case(spec.PORT_W):
            m.d.comb += nx.eq(x - 1)
        with m.Case(spec.PORT_S):
            m.d.comb += ny.eq(y + 1)
        with m.Case(spec.PORT_N):
            m.d.comb += ny.eq(y - 1)
    nxt = xy_route(m, nx, ny, kx, ky, dst_x, dst_y, name=f"{name}_next")
    via = sub_of_port(m, nxt, vcs_per_class, name=f"{name}_tab")
    m.d.comb += sub.eq(Mux(route == spec.PORT_L, in_port % vcs_per_class, via))
    return sub


class Router(wiring.Component):
    """Input-queued wormhole router with virtual channels and credit flow control.

    Parameters
    ----------
    kx, ky : mesh size (``kx`` x ``ky``, row 0 = north).
    x, y : position of this router, or ``None`` (default): the position is then read from
        the ``pos_x``/``pos_y`` input ports, so every router of a mesh is the same design
        (generated and compiled once, ``rtl.hier.instance``). With ints the ports are
        ignored.
    flit_width : data bits per flit (>= 8; 64 for traffic/AXI packets).
    vcs_per_class : VCs per message class (``n_vcs = 2 * vcs_per_class`` per port).
    depth : flits of buffer per input VC (= credits per output VC downstream).
    sa_iterations : rounds of the separable switch allocator (1 or 2, default 2).
    input_speedup : flits an input port may send per cycle (1 or 2, default 2; at most
        ``sa_iterations``): each input VC buffer has its own read port.

    Ports
    -----
    i[p] : In(LinkSignature)   input link of port p (spec.PORT_N/E/S/W/L).
    o[p] : Out(LinkSignature)  output link of port p (a register: the link stage).
    pos_x, pos_y : In(4)       position (when not given as parameters); constant inputs.
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

    VC allocation (lookahead choice, round-robin): a head flit at input VC ``v`` asks for
    one output VC: the VC of its class whose sub-channel is given by the port the packet
    will take at the *next* router (``spec.VC_SUB``; on the local output: the input port
    mod ``vcs_per_class``; ``spec.vc_sub``). A round-robin arbiter per output VC grants
    one requester. The choice depends only on the destination and the position, so every
    packet of a flow follows the same VC chain (in-order delivery), while each input VC
    holds packets heading the same way at the next router (less head-of-line blocking
    than one VC per destination). Any VC choice inside a class keeps XY routing
    deadlock-free. An output VC stays owned by a packet from its head until its tail.

    Switch allocation: :class:`SwitchAllocator` (separable, input-first, round-robin,
    ``sa_iterations`` rounds, input speedup ``input_speedup``) over the input VCs that
    hold (or are being granted) an output VC with a credit downstream. VA and SA happen in
    the same cycle.

    Throughput: one flit per output port per cycle (an input port may drain up to
    ``input_speedup`` flits per cycle from different VCs); a single VC needs ``depth >= 4``
    to stream at full rate (credit round trip: 4 cycles).
    """

    def __init__(self, *, kx: int, ky: int, x: int | None = None, y: int | None = None,
                 flit_width: int = 64, vcs_per_class: int = 1, depth: int = 4,
                 sa_iterations: int = 2, input_speedup: int = 2):
        spec.check_mesh(kx, ky)
        if (x is None) != (y is None):
            raise ValueError("(x, y) must both be given or both be None")
        if x is not None and not (isinstance(x, int) and isinstance(y, int)
                                  and 0 <= x < kx and 0 <= y < ky):
            raise ValueError(f"(x, y) must lie inside the {kx}x{ky} mesh, not ({x!r}, {y!r})")
        check_router_params(flit_width, vcs_per_class, depth)
        if sa_iterations not in (1, 2):
            raise ValueError(f"sa_iterations must be 1 or 2, not {sa_iterations!r}")
        if input_speedup not in (1, 2) or input_speedup > sa_iterations:
            raise ValueError(f"input_speedup must be 1 or 2 and <= sa_iterations, "
                             f"not {input_speedup!r}")
        self._x, self._y, self._kx, self._ky = x, y, kx, ky
        self._flit_width, self._vpc, self._depth = flit_width, vcs_per_class, depth
        self._sa_it, self._speedup = sa_iterations, input_speedup
        self._n_vcs = spec.N_CLASSES * vcs_per_class
        link = LinkSignature(flit_width, self._n_vcs)
        super().__init__({"i": In(link).array(spec.N_PORTS), "o": Out(link).array(spec.N_PORTS),
                          "pos_x": In(spec.COORD_BITS), "pos_y": In(spec.COORD_BITS),
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
        vpc, kx, ky = self._vpc, self._kx, self._ky
        layout = flit_layout(W)
        fw = layout.size
        px = self.pos_x if self._x is None else self._x
        py = self.pos_y if self._y is None else self._y

        # ---- input buffers and per-input-VC state -----------------------------------------
        heads, r_rdy, pops, drops = {}, {}, {}, {}
        alloc, oport, ovc, route, wreq = {}, {}, {}, {}, {}
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
                dst_x, dst_y = head.data[0:4], head.data[4:8]
                rc = xy_route(m, px, py, kx, ky, dst_x, dst_y, name=f"rc_{p}_{v}")
                route[p, v] = Signal(range(P), name=f"route_{p}_{v}")
                with m.If(alloc[p, v]):
                    m.d.comb += route[p, v].eq(oport[p, v])
                with m.Else():
                    m.d.comb += route[p, v].eq(rc)
                # the output VC this head asks for: its class, lookahead sub-channel
                sub = lookahead_sub(m, px, py, kx, ky, p, rc, dst_x, dst_y, vpc,
                                    name=f"la_{p}_{v}")
                wreq[p, v] = Signal(range(V), name=f"wreq_{p}_{v}")
                m.d.comb += wreq[p, v].eq((v // vpc) * vpc + sub)
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

        # ---- VC allocation: a waiting head asks for output VC wreq at its routed port; a
        # round-robin arbiter per free output VC grants one of its requesters
        want = {k: r_rdy[k] & heads[k].kind[0] & ~alloc[k] for k in heads}
        va_gnt = {k: Signal(name=f"vagnt_{k[0]}_{k[1]}") for k in heads}
        gnt_terms = {k: [] for k in heads}
        va_set = {}
        for o in range(P):
            for w in range(V):
                c = w // vpc
                reqs = [(p, v) for p in range(P) for v in range(c * vpc, (c + 1) * vpc)]
                arb = RoundRobinArbiter(len(reqs))
                m.submodules[f"va_{spec.PORT_NAMES[o]}{w}"] = arb
                for j, k in enumerate(reqs):
                    m.d.comb += arb.requests[j].eq(want[k] & ~busy[o, w] & (route[k] == o)
                                                   & (wreq[k] == w))
                    gnt_terms[k].append(arb.grant[j])
                m.d.comb += arb.advance.eq(1)
                va_set[o, w] = arb.valid
        for k in va_gnt:            # at most one output VC grants a given input VC
            m.d.comb += va_gnt[k].eq(Cat(*gnt_terms[k]).any())

        # ---- switch allocation ----------------------------------------------------------
        sa = SwitchAllocator(P, V, P, iterations=self._sa_it, speedup=self._speedup)
        m.submodules.sa = sa
        eff_vc = {}
        for p in range(P):
            for v in range(V):
                eff_vc[p, v] = Signal(range(V), name=f"effvc_{p}_{v}")
                m.d.comb += eff_vc[p, v].eq(Mux(alloc[p, v], ovc[p, v], wreq[p, v]))
                has_vc = alloc[p, v] | va_gnt[p, v]
                cred = avail.bit_select(route[p, v] * V + eff_vc[p, v], 1)
                m.d.comb += [sa.req[p][v].eq(r_rdy[p, v] & has_vc & cred),
                             sa.port[p][v].eq(route[p, v])]

        for o in range(P):
            wp = one_hot_index(m, sa.out_grant[o], P, name=f"winp_{o}")
            sel = Signal(range(P * V), name=f"sel_{o}")
            fire = Signal(name=f"fire_{o}")
            vc = Signal(range(V), name=f"ovc_next_{o}")
            flit = Signal(layout, name=f"oflit_next_{o}")
            m.d.comb += [sel.eq(wp * V + sa.out_vc[o]), fire.eq(sa.out_grant[o].any()),
                         vc.eq(Array(eff_vc[p, v] for p in range(P) for v in range(V))[sel]),
                         flit.eq(Array(heads[p, v].as_value() for p in range(P)
                                       for v in range(V))[sel])]
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
            credit_bits = []
            for v in range(V):
                fwd = sa.in_grant[p][v]
                m.d.comb += pops[p, v].eq(fwd | drops[p, v])
                credit_bits.append(pops[p, v])
                with m.If(fwd & heads[p, v].kind[1]):
                    m.d.sync += alloc[p, v].eq(0)
                with m.Elif(va_gnt[p, v]):
                    m.d.sync += [alloc[p, v].eq(1), oport[p, v].eq(route[p, v]),
                                 ovc[p, v].eq(wreq[p, v])]
            m.d.sync += self.i[p].credit.eq(Cat(*credit_bits))

        n_err = sum((d.as_unsigned() for d in dropped), Const(0, 4)) + \
            sum((drops[k].as_unsigned() for k in drops), Const(0, 4))
        with m.If((n_err != 0) & (self.errors != 0xFFFF)):
            m.d.sync += self.errors.eq(self.errors + 1)
        return m
