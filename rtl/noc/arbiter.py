"""Small allocation primitives of the NoC router: a round-robin arbiter and a credit counter."""

from __future__ import annotations

from amaranth.hdl import Const, Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = ["RoundRobinArbiter", "CreditCounter", "one_hot_index"]


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
