"""Tensor tile: TSRAM + TTU + TVP + TCP, with performance counters (docs/tile.md).

Run a command list: load TSRAM through ``ext`` (the DMA/NoC side port, highest priority),
pulse ``start`` with ``cmd_addr``, wait until ``status`` leaves RUNNING, read counters and
TSRAM back through ``ext``.
"""

from __future__ import annotations

from amaranth import Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from rtl.axi import AXI4Signature
from rtl.tile.dmau import TileDMA
from rtl.tile.tcp import TCP
from rtl.tile.tsram import TSRAM, WORD_BITS, tsram_port
from rtl.tile.ttu import TTU
from rtl.tile.tvp import TVP, MulFP32
from spec import tile as T

__all__ = ["Tile", "TSRAM", "TTU", "TVP", "TCP", "TileDMA", "MulFP32", "VERILOG_TOPS",
           "LANE_ORDER"]

LANE_ORDER = ("ext", "ttu_store", "ttu_load*", "dma_wr", "dma_rd", "tvp",
              "tcp_fetch")  # TSRAM priority


class Tile(wiring.Component):
    """The tensor tile.

    Ports
    -----
    start, cmd_addr : In
        ``start`` (pulse) runs the command list at byte address ``cmd_addr``; ignored while
        RUNNING. Counters and semaphores are cleared.
    status : Out(32)
        spec.tile status word: state [1:0], error [15:8], command index [31:16].
    cnt_<name> : Out(32)
        Performance counters (spec.tile.COUNTERS).
    ext : In(tsram_port)
        TSRAM port for the NoC side (the chip's cluster DMA) and for loading and dumping
        images; highest priority, one word per cycle, read data one cycle after the grant.
    m_axi : Out(AXI4 manager, 32-bit address, 256-bit data, 1-bit ID)
        External memory port of the tile DMA (DMA command): bursts to
        ``[DMA_EXT_BASE, DMA_EXT_BASE + ext_bytes)`` leave here with their address unchanged.
    """

    def __init__(self, cfg: T.TileConfig | None = None):
        cfg = cfg or T.TileConfig()
        if not isinstance(cfg, T.TileConfig):
            raise TypeError(f"cfg: must be a spec.tile.TileConfig, got {type(cfg).__name__}")
        self._cfg = cfg
        self.addr_width = max(1, (cfg.words - 1).bit_length())
        ports = {"start": In(1), "cmd_addr": In(32), "status": Out(32),
                 "ext": In(tsram_port(self.addr_width)),
                 "m_axi": Out(AXI4Signature(addr_width=32, data_width=WORD_BITS, id_width=1))}
        for c in T.COUNTERS:
            ports[f"cnt_{c}"] = Out(32)
        super().__init__(ports)

    cfg = property(lambda self: self._cfg)

    def elaborate(self, platform):
        m = Module()
        cfg = self._cfg
        AW = self.addr_width
        P = cfg.window
        n_lanes = 6 + P
        ram = m.submodules.tsram = TSRAM(cfg, n_lanes)
        ttu = m.submodules.ttu = TTU(cfg, AW)
        tvp = m.submodules.tvp = TVP(cfg, AW)
        tcp = m.submodules.tcp = TCP(cfg, AW)
        dma = m.submodules.dma = TileDMA(cfg, AW)
        wiring.connect(m, wiring.flipped(self.ext), ram.lane(0))
        wiring.connect(m, ttu.st, ram.lane(1))
        for k in range(P):
            wiring.connect(m, getattr(ttu, f"ld{k}"), ram.lane(2 + k))
        wiring.connect(m, dma.wr, ram.lane(2 + P))
        wiring.connect(m, dma.rd, ram.lane(3 + P))
        wiring.connect(m, tvp.mem, ram.lane(4 + P))
        wiring.connect(m, tcp.fetch, ram.lane(5 + P))
        wiring.connect(m, dma.m_axi, wiring.flipped(self.m_axi))
        m.d.comb += [dma.start.eq(tcp.dma_start), dma.head.eq(tcp.dma_desc[32:64]),
                     tcp.dma_busy.eq(dma.busy), tcp.dma_done.eq(dma.done),
                     tcp.dma_err.eq(dma.err)]

        # TCP <-> units
        d = tcp.ttu_desc
        w = [d[32 * i:32 * i + 32] for i in range(8)]
        m.d.comb += [ttu.start.eq(tcp.ttu_start), tcp.ttu_busy.eq(ttu.busy),
                     tcp.ttu_done.eq(ttu.done),
                     ttu.cmd_a.eq(w[1][5:]), ttu.cmd_sa.eq(w[2][5:]), ttu.cmd_b.eq(w[3][5:]),
                     ttu.cmd_sb.eq(w[4][5:]), ttu.cmd_c.eq(w[5][5:]),
                     ttu.cmd_M.eq(w[6][:16]), ttu.cmd_N.eq(w[6][16:]), ttu.cmd_K.eq(w[7][:16]),
                     ttu.cmd_fa.eq(w[7][16:18]), ttu.cmd_fb.eq(w[7][18:20]),
                     ttu.cmd_acc.eq(w[7][20])]
        m.d.comb += [tvp.start.eq(tcp.tvp_start), tvp.desc.eq(tcp.tvp_desc),
                     tcp.tvp_busy.eq(tvp.busy), tcp.tvp_done.eq(tvp.done)]
        m.d.comb += [tcp.start.eq(self.start), tcp.cmd_addr.eq(self.cmd_addr),
                     self.status.eq(tcp.state | (tcp.error << 8) | (tcp.index << 16))]

        # performance counters
        cnt = {c: Signal(32, name=f"c_{c}") for c in T.COUNTERS}
        macs = Signal(64)
        for c in T.COUNTERS:
            if c not in ("macs_lo", "macs_hi"):
                m.d.comb += getattr(self, f"cnt_{c}").eq(cnt[c])
        m.d.comb += [self.cnt_macs_lo.eq(macs[:32]), self.cnt_macs_hi.eq(macs[32:])]
        inc = {"cycles": tcp.running, "cmds_retired": tcp.retired,
               "ttu_busy": ttu.busy, "ttu_fill": ttu.fill, "ttu_issue": ttu.issue,
               "ttu_stall": ttu.stall, "ttu_beats": ttu.beat, "tvp_busy": tvp.busy,
               "tvp_words": tvp.word, "tcp_stall": tcp.stall, "dma_busy": dma.busy,
               "dma_bytes": Mux(dma.done, dma.nbytes, 0)}
        clear = self.start & ~tcp.running
        with m.If(clear):
            m.d.sync += [s.eq(0) for s in cnt.values()]
            m.d.sync += macs.eq(0)
        with m.Else():
            for c, v in inc.items():
                m.d.sync += cnt[c].eq(cnt[c] + v)
            m.d.sync += macs.eq(macs + ttu.beat_macs)
        return m


VERILOG_TOPS = {
    "tile": lambda: Tile(T.TileConfig()),
    "tile_1x1": lambda: Tile(T.TileConfig(rows=1, cols=1, banks=4, tsram_bytes=16384,
                                          window=2, max_k=256, n_sems=4)),
}
