"""Small allocation primitives of the NoC router: a round-robin arbiter and a credit counter."""

from __future__ import annotations

from amaranth.hdl import Array, Cat, Const, Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = ["RoundRobinArbiter", "CreditCounter", "SwitchAllocator", "one_hot_index"]


def one_hot_index(m: Module, onehot, n: int, name: str = "idx") -> Signal:
    """Index of the set bit of a one-hot (or zero) vector, as an OR of masked indices."""
    idx = Signal(range(max(n, 2)), name=name)
    acc = Const(0, idx.shape())
    for i in range(n):
        acc = acc | (onehot[i].replicate(len(idx)) & Const(i, idx.shape()))
    m.d.comb += idx.eq(acc)
    return idx


class RoundRobinArbiter(wiring.Component):
    """Combinational round-robin arbiter over ``n`` requesters.

    Ports
    -----
    requests : In(n)      one bit per requester.
    grant    : Out(n)     one-hot: the first requester after the last one served (cyclic),
                          zero when nobody requests. Combinational (same cycle).
    valid    : Out(1)     some requester is granted.
    advance  : In(1)      the grant was used: the requester just granted becomes the lowest
                          priority from the next cycle on. Without ``advance`` the priority
                          order stays (a grant that lost in a later stage is offered again).

    Latency 0 (grant is a function of ``requests`` and the pointer register); one grant per
    cycle; starvation-free: a requester that keeps requesting is granted within ``n``
    advances.
    """

    def __init__(self, n: int):
        if not isinstance(n, int) or n < 1:
            raise ValueError(f"n must be a positive int, not {n!r}")
        self._n = n
        super().__init__({"requests": In(n), "grant": Out(n), "valid": Out(1),
                          "advance": In(1)})

    n = property(lambda self: self._n)

    def elaborate(self, platform):
        m = Module()
        n = self._n
        full = (1 << n) - 1
        # Requesters strictly above the last granted one have priority this cycle.
        above = Signal(n, init=full)   # after reset requester 0 has priority
        hi = Signal(n)
        pick_from = Signal(n)
        m.d.comb += [
            hi.eq(self.requests & above),
            pick_from.eq(hi.any().replicate(n) & hi | ~hi.any().replicate(n) & self.requests),
            # lowest set bit: x & -x
            self.grant.eq(pick_from & (~pick_from + 1)[:n]),
            self.valid.eq(self.requests.any()),
        ]
        with m.If(self.advance & self.valid):
            # bits strictly above the grant: ~(g | (g - 1))
            m.d.sync += above.eq(~(self.grant | (self.grant - 1)[:n]) & full)
        return m


class CreditCounter(wiring.Component):
    """Credits for one downstream virtual-channel buffer of ``depth`` flits.

    ``take`` spends a credit (a flit was sent), ``give`` returns one (the downstream buffer
    freed a slot); both in the same cycle cancel. ``available`` is high while ``count > 0``.
    Counting past ``depth`` (a credit returned that was never taken) or below zero (a flit
    sent without credit) is a protocol error: the count saturates and ``error`` pulses.
    """

    def __init__(self, depth: int):
        if not isinstance(depth, int) or depth < 1:
            raise ValueError(f"depth must be a positive int, not {depth!r}")
        self._depth = depth
        super().__init__({"take": In(1), "give": In(1), "available": Out(1),
                          "count": Out(range(depth + 1), init=depth), "error": Out(1)})

    depth = property(lambda self: self._depth)

    def elaborate(self, platform):
        m = Module()
        m.d.comb += self.available.eq(self.count != 0)
        with m.If(self.take & ~self.give):
            with m.If(self.count == 0):
                m.d.comb += self.error.eq(1)
            with m.Else():
                m.d.sync += self.count.eq(self.count - 1)
        with m.Elif(self.give & ~self.take):
            with m.If(self.count == self._depth):
                m.d.comb += self.error.eq(1)
            with m.Else():
                m.d.sync += self.count.eq(self.count + 1)
        return m


class SwitchAllocator(wiring.Component):
    """Separable input-first switch allocator with ``iterations`` rounds (1 or 2) and an
    input speedup of 1 or 2.

    Ports
    -----
    req[p]       : In(n_vcs)            VCs of input port p with a flit that may move now.
    port[p][v]   : In(range(n_out))     output port wanted by input p's VC v.
    in_grant[p]  : Out(n_vcs)           the VCs of input p that move this cycle (at most
                                        ``speedup`` bits set; 0: none).
    out_grant[o] : Out(n_in)            one-hot: the input port that output o takes (0: none).
    out_vc[o]    : Out(range(n_vcs))    the VC of that input (valid with out_grant[o]).

    Round 1: a round-robin arbiter per input port picks one requesting VC; a round-robin
    arbiter per output port picks one of the inputs whose pick wants it. Round 2 (if
    ``iterations == 2``): the inputs (with ``speedup == 2``: every input, else only those
    left unmatched) pick again, with a second set of round-robin arbiters, among their
    VCs that want an output left unmatched, and those outputs arbitrate again. So every
    output takes at most one flit, every VC moves at most one, and with ``speedup == 2``
    an input port may send two flits (from two VCs, to two outputs) in a cycle (its VC
    buffers have a read port each). Combinational (latency 0). Round-robin pointers
    advance on matches only (a pick that lost is offered again), output pointers on every
    grant, so a VC that keeps requesting is served.
    """

    def __init__(self, n_in: int, n_vcs: int, n_out: int, iterations: int = 2,
                 speedup: int = 1):
        for name, v in (("n_in", n_in), ("n_vcs", n_vcs), ("n_out", n_out)):
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive int, not {v!r}")
        if iterations not in (1, 2):
            raise ValueError(f"iterations must be 1 or 2, not {iterations!r}")
        if speedup not in (1, 2) or speedup > iterations:
            raise ValueError(f"speedup must be 1 or 2 (and <= iterations), not {speedup!r}")
        self._n_in, self._n_vcs, self._n_out = n_in, n_vcs, n_out
        self._it, self._speedup = iterations, speedup
        super().__init__({"req": In(n_vcs).array(n_in),
                          "port": In(range(n_out)).array(n_in, n_vcs),
                          "in_grant": Out(n_vcs).array(n_in),
                          "out_grant": Out(n_in).array(n_out),
                          "out_vc": Out(range(n_vcs)).array(n_out)})

    iterations = property(lambda self: self._it)
    speedup = property(lambda self: self._speedup)

    def elaborate(self, platform):
        m = Module()
        P, V, O = self._n_in, self._n_vcs, self._n_out
        out_taken = in_taken = None       # outputs / inputs matched by earlier rounds
        in_g = [Const(0, V) for _ in range(P)]
        out_g = [Const(0, P) for _ in range(O)]
        out_v = [Const(0, range(V)) for _ in range(O)]
        for r in range(self._it):
            reqs = []
            for p in range(P):
                if r == 0:
                    reqs.append(self.req[p])
                else:
                    # VCs granted in round 1 want a taken output: they drop out here
                    free = Cat(~Array(out_taken)[self.port[p][v]] for v in range(V))
                    rq = Signal(V, name=f"req{r}_{p}")
                    gate = Const(1, 1) if self._speedup == 2 else ~in_taken[p]
                    m.d.comb += rq.eq(self.req[p] & free & gate.replicate(V))
                    reqs.append(rq)
            in_arb, target, pick = [], [], []
            for p in range(P):
                arb = RoundRobinArbiter(V)
                m.submodules[f"in{r}_{p}"] = arb
                m.d.comb += arb.requests.eq(reqs[p])
                idx = one_hot_index(m, arb.grant, V, name=f"pick{r}_{p}")
                t = Signal(range(O), name=f"target{r}_{p}")
                m.d.comb += t.eq(Array(self.port[p])[idx])
                in_arb.append(arb)
                target.append(t)
                pick.append(idx)
            won = [[] for _ in range(P)]
            taken = []
            for o in range(O):
                arb = RoundRobinArbiter(P)
                m.submodules[f"out{r}_{o}"] = arb
                m.d.comb += [arb.requests.eq(Cat(in_arb[p].valid & (target[p] == o)
                                                 for p in range(P))),
                             arb.advance.eq(1)]
                for p in range(P):
                    won[p].append(arb.grant[p])
                wp = one_hot_index(m, arb.grant, P, name=f"winp{r}_{o}")
                out_g[o] = out_g[o] | arb.grant
                out_v[o] = out_v[o] | (Array(pick)[wp] & arb.valid.replicate(len(pick[0])))
                taken.append(arb.valid)
            matched = []
            for p in range(P):
                mp = Signal(name=f"match{r}_{p}")
                m.d.comb += [mp.eq(Cat(*won[p]).any()), in_arb[p].advance.eq(mp)]
                in_g[p] = in_g[p] | (in_arb[p].grant & mp.replicate(V))
                matched.append(mp)
            if r + 1 < self._it:
                nxt_out, nxt_in = Signal(O, name=f"out_taken{r}"), Signal(P, name=f"in_taken{r}")
                m.d.comb += [nxt_out.eq(Cat(*taken)), nxt_in.eq(Cat(*matched))]
                out_taken, in_taken = nxt_out, nxt_in
        for p in range(P):
            m.d.comb += self.in_grant[p].eq(in_g[p])
        for o in range(O):
            m.d.comb += [self.out_grant[o].eq(out_g[o]), self.out_vc[o].eq(out_v[o])]
        return m
