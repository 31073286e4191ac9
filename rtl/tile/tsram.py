"""Tile SRAM (TSRAM): word-interleaved banks of ``lib.memory`` with a fixed-priority crossbar.

Word address ``w`` lives in bank ``w % banks`` at row ``w // banks``. Every requester lane
(:func:`tsram_port`) asks for one 32-byte word per cycle; per bank the lowest-numbered
requesting lane wins (lane order = priority, fixed at construction). A lane's ``ready`` is
its grant in the same cycle (combinational); read data arrives on ``rdata`` with ``rvalid``
the next cycle. Writes use a per-byte mask. Lanes that lose retry (hold ``valid``).
"""

from __future__ import annotations

from amaranth import Cat, Module, Signal, unsigned
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import exact_log2

from spec.tile import WORD_BYTES, TileConfig

__all__ = ["tsram_port", "TSRAM", "WORD_BITS"]

WORD_BITS = WORD_BYTES * 8


def tsram_port(addr_width: int) -> wiring.Signature:
    """One requester lane (requester view)."""
    return wiring.Signature({
        "valid": Out(1), "addr": Out(addr_width), "we": Out(1),
        "wdata": Out(WORD_BITS), "wmask": Out(WORD_BYTES),
        "ready": In(1), "rdata": In(WORD_BITS), "rvalid": In(1),
    })


class TSRAM(wiring.Component):
    """Banked TSRAM with ``n_lanes`` requester lanes ``lane{i}`` in priority order (0 first).

    Latency: read data one cycle after the grant. Throughput: one word per bank per cycle.
    """

    def __init__(self, cfg: TileConfig, n_lanes: int):
        if not isinstance(cfg, TileConfig):
            raise TypeError(f"cfg: must be a TileConfig, got {type(cfg).__name__}")
        if not isinstance(n_lanes, int) or n_lanes < 1:
            raise ValueError(f"n_lanes: must be a positive int, got {n_lanes!r}")
        self._cfg, self._n = cfg, n_lanes
        self.addr_width = max(1, (cfg.words - 1).bit_length())
        super().__init__({f"lane{i}": In(tsram_port(self.addr_width)) for i in range(n_lanes)})

    def lane(self, i):
        return getattr(self, f"lane{i}")

    def elaborate(self, platform):
        m = Module()
        cfg = self._cfg
        nb = cfg.banks
        bb = exact_log2(nb)
        lanes = [self.lane(i) for i in range(self._n)]
        bank_of = [ln.addr[:bb] if bb else 0 for ln in lanes]
        row_of = [ln.addr[bb:] for ln in lanes]
        # grant: no higher-priority lane wants the same bank
        for i, ln in enumerate(lanes):
            blocked = Cat(*[lanes[j].valid & (bank_of[j] == bank_of[i]) for j in range(i)]
                          ).any() if i else 0
            m.d.comb += ln.ready.eq(ln.valid & ~blocked)
        rdata = []
        for b in range(nb):
            mem = m.submodules[f"bank{b}"] = Memory(shape=unsigned(WORD_BITS),
                                                    depth=cfg.bank_depth, init=[])
            rd = mem.read_port()
            wr = mem.write_port(granularity=8)
            rdata.append(rd.data)
            first = True
            for i, ln in enumerate(lanes):
                cond = ln.valid & (bank_of[i] == b)
                ctx = m.If(cond) if first else m.Elif(cond)
                first = False
                with ctx:
                    m.d.comb += [rd.addr.eq(row_of[i]), wr.addr.eq(row_of[i]),
                                 wr.data.eq(ln.wdata),
                                 rd.en.eq(~ln.we)]
                    with m.If(ln.we):
                        m.d.comb += wr.en.eq(ln.wmask)
        for i, ln in enumerate(lanes):
            rb = Signal(max(1, bb), name=f"rbank{i}")
            m.d.sync += [ln.rvalid.eq(ln.ready & ~ln.we), rb.eq(bank_of[i] if bb else 0)]
            with m.Switch(rb):
                for b in range(nb):
                    with m.Case(b):
                        m.d.comb += ln.rdata.eq(rdata[b])
        return m
