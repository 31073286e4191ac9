"""The NIC's statistics counters (spec.nic.COUNTERS): 32-bit, wrapping, one increment port
each (amount, 0 = no event)."""

from __future__ import annotations

from amaranth.hdl import Module, Signal
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from spec import nic as S


class CounterBank(wiring.Component):
    """``inc[k]`` is added to counter k every cycle; ``values`` shows all counters."""

    def __init__(self):
        super().__init__({"inc": In(data.ArrayLayout(16, len(S.COUNTERS))),
                          "values": Out(data.ArrayLayout(32, len(S.COUNTERS)))})

    def elaborate(self, platform):
        m = Module()
        for k in range(len(S.COUNTERS)):
            reg = Signal(32, name=f"cnt_{S.COUNTERS[k]}")
            m.d.sync += reg.eq(reg + self.inc[k])
            m.d.comb += self.values[k].eq(reg)
        return m

    def add(self, m, name: str, amount) -> None:
        m.d.comb += self.inc[S.COUNTER_INDEX[name]].eq(amount)

    def connect_mac(self, m, mtx, mrx) -> None:
        """Wire the MAC's event outputs to their counters."""
        self.add(m, "tx_frames", mtx.frame_done)
        self.add(m, "tx_bytes", mtx.beat_bytes)
        self.add(m, "rx_frames", mrx.ok)
        self.add(m, "rx_bytes", mrx.frame_bytes)
        for name, sig in (("rx_runt", mrx.drop_runt), ("rx_oversize", mrx.drop_oversize),
                          ("rx_fcs_err", mrx.drop_fcs), ("rx_foreign", mrx.drop_foreign),
                          ("rx_overflow", mrx.drop_overflow)):
            self.add(m, name, sig)
