"""Cluster: N tiles + multi-banked CSRAM + a cluster DMA engine + cluster semaphores."""

from __future__ import annotations

from amaranth import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from rtl import hier
from rtl.axi import AXI4LiteSignature, AXI4Signature
from rtl.axi_sram import AxiDecoder, AxiSram, PortMerge
from rtl.dma import DMAEngine
from rtl.tile import Tile
from rtl.tile.tsram import TSRAM, WORD_BITS
from spec import chip as C
from spec import dma as D
from spec import tile as T

__all__ = ["Cluster", "csram_config"]


def csram_config(cfg: C.ChipConfig) -> T.TileConfig:
    """The banked-SRAM geometry of the CSRAM, expressed as the TSRAM parameters that
    rtl.tile.tsram.TSRAM takes (same word-interleaved lib.memory banks)."""
    return T.TileConfig(rows=1, cols=1, banks=cfg.csram_banks, tsram_bytes=cfg.csram_bytes,
                        window=1, max_k=64, n_sems=1)


class Cluster(wiring.Component):
    """Cluster ``index`` of a chip configured by ``cfg`` (spec.chip.ChipConfig).

    Inside: ``cfg.tiles`` tiles (rtl.tile.Tile), the CSRAM (``csram_banks`` word-interleaved
    lib.memory banks; its AXI side writes and reads in the same cycle when they hit different
    banks), the cluster DMA (rtl.dma.DMAEngine, ``dma_channels`` channels, 256-bit data, one
    window per memory) and an AXI4 address decoder that sends the DMA's bursts to HBM
    (``m_axi``), the CSRAM or a tile's TSRAM ``ext`` port (cluster aperture of
    docs/chip.md). So one DMA descriptor moves data HBM <-> CSRAM <-> TSRAM in any
    direction.

    Ports
    -----
    m_axi : AXI4 manager, 256-bit, to HBM (ID = DMA channel).
    s_axil : the DMA engine's AXI4-Lite CSRs (spec.dma CSR map).
    tile{t}_start, tile{t}_cmd, tile{t}_status, tile{t}_macs_lo/hi, tile{t}_ttu_busy:
        start pulse, command-list address, status word and counters of tile t.
    sem{s} : Out(8), cluster semaphore s. A cluster-DMA descriptor with the ``sem`` flag
        adds 1 to semaphore ``sem_id % n_sems`` when it completes; ``take`` (pulse) with
        ``take_sem``/``take_count`` subtracts (modulo 256).
    """

    def __init__(self, cfg: C.ChipConfig, index: int = 0):
        if not isinstance(cfg, C.ChipConfig):
            raise TypeError(f"cfg: must be a spec.chip.ChipConfig, got {type(cfg).__name__}")
        cfg.cluster_base(index)   # validates index
        self._cfg, self._index = cfg, index
        self._idw = max(1, (cfg.dma_channels - 1).bit_length())
        ports = {
            "m_axi": Out(AXI4Signature(addr_width=32, data_width=WORD_BITS,
                                       id_width=self._idw)),
            "s_axil": In(AXI4LiteSignature(addr_width=D.CSR_ADDR_WIDTH,
                                           data_width=D.CSR_DATA_WIDTH)),
            "take": In(1), "take_sem": In(range(max(2, cfg.n_sems))), "take_count": In(8),
        }
        for t in range(cfg.tiles):
            ports.update({f"tile{t}_start": In(1), f"tile{t}_cmd": In(32),
                          f"tile{t}_status": Out(32), f"tile{t}_macs_lo": Out(32),
                          f"tile{t}_macs_hi": Out(32), f"tile{t}_ttu_busy": Out(32)})
        for s in range(cfg.n_sems):
            ports[f"sem{s}"] = Out(8)
        super().__init__(ports)

    cfg = property(lambda self: self._cfg)
    index = property(lambda self: self._index)
    id_width = property(lambda self: self._idw)

    def elaborate(self, platform):
        m = Module()
        cfg, c = self._cfg, self._index
        dma = m.submodules.dma = DMAEngine(channels=cfg.dma_channels, data_width=WORD_BITS,
                                           max_burst=cfg.dma_max_burst,
                                           windows=2 + cfg.tiles)
        wiring.connect(m, wiring.flipped(self.s_axil), dma.s_axil)
        regions = [(0, cfg.hbm_window), (cfg.csram_base(c), cfg.slot)]
        regions += [(cfg.tsram_base(c, t), cfg.slot) for t in range(cfg.tiles)]
        dec = m.submodules.dec = AxiDecoder(regions=regions, id_width=self._idw)
        wiring.connect(m, dma.m_axi, dec.s_axi)
        wiring.connect(m, dec.m0, wiring.flipped(self.m_axi))

        # CSRAM: banked SRAM, lane 0 = AXI writes, lane 1 = AXI reads
        ccfg = csram_config(cfg)
        cs = m.submodules.csram = TSRAM(ccfg, 2)
        cs_axi = m.submodules.csram_axi = AxiSram(words=ccfg.words, addr_width=cs.addr_width,
                                                  id_width=self._idw, span=cfg.slot)
        wiring.connect(m, dec.m1, cs_axi.s_axi)
        wiring.connect(m, cs_axi.wr, cs.lane(0))
        wiring.connect(m, cs_axi.rd, cs.lane(1))

        for t in range(cfg.tiles):
            # one Verilog module for all tiles under hierarchical generation (rtl.hier)
            tile = m.submodules[f"tile{t}"] = hier.instance(Tile, cfg.tile)
            ax = m.submodules[f"tile{t}_axi"] = AxiSram(words=cfg.tile.words,
                                                         addr_width=tile.addr_width,
                                                         id_width=self._idw,
                                                         span=cfg.slot)
            mg = m.submodules[f"tile{t}_merge"] = PortMerge(tile.addr_width)
            wiring.connect(m, getattr(dec, f"m{2 + t}"), ax.s_axi)
            wiring.connect(m, ax.wr, mg.wr)
            wiring.connect(m, ax.rd, mg.rd)
            wiring.connect(m, mg.o, tile.ext)
            m.d.comb += [tile.start.eq(getattr(self, f"tile{t}_start")),
                         tile.cmd_addr.eq(getattr(self, f"tile{t}_cmd")),
                         getattr(self, f"tile{t}_status").eq(tile.status),
                         getattr(self, f"tile{t}_macs_lo").eq(tile.cnt_macs_lo),
                         getattr(self, f"tile{t}_macs_hi").eq(tile.cnt_macs_hi),
                         getattr(self, f"tile{t}_ttu_busy").eq(tile.cnt_ttu_busy)]

        # cluster semaphores
        ns = cfg.n_sems
        for s in range(ns):
            sem = getattr(self, f"sem{s}")
            inc = Signal(name=f"sem{s}_inc")
            dec_ = Signal(8, name=f"sem{s}_dec")
            m.d.comb += inc.eq(dma.sem_valid & ((dma.sem_id & (ns - 1)) == s))
            with m.If(self.take & (self.take_sem == s)):
                m.d.comb += dec_.eq(self.take_count)
            m.d.sync += sem.eq(sem + inc - dec_)
        return m
