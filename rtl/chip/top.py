"""Chip top: clusters, command processor, HBM AXI4 ports at the edge, host AXI4-Lite, irq."""

from __future__ import annotations

from amaranth import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from rtl.axi import AXI4LiteSignature, AXI4Signature
from rtl.chip.cluster import Cluster
from rtl.chip.cp import CommandProcessor
from rtl.tile.tsram import WORD_BITS
from spec import chip as C

__all__ = ["Chip"]


class Chip(wiring.Component):
    """The whole chip for a spec.chip.ChipConfig.

    Ports
    -----
    s_axil : host AXI4-Lite (12-bit addresses, 32-bit data; CSR map in docs/chip.md).
    hbm{i} : AXI4 managers (32-bit address, 256-bit data) at the chip edge. Port i < clusters
        carries cluster i's DMA traffic to HBM; port ``clusters`` carries the command
        processor's queue-entry reads. All ports address the same HBM (address 0 upwards);
        the co-simulation attaches one memory model to all of them.
    irq : Out(1), level interrupt (IRQ_STATUS & IRQ_ENABLE).

    This first cut connects each cluster's DMA straight to its own HBM port; the NoC mesh
    (rtl/noc) that should carry cluster-to-HBM and cluster-to-cluster traffic is not
    inserted yet (docs/chip.md "Status").
    """

    def __init__(self, cfg: C.ChipConfig | None = None):
        cfg = cfg or C.DEFAULT
        if not isinstance(cfg, C.ChipConfig):
            raise TypeError(f"cfg: must be a spec.chip.ChipConfig, got {type(cfg).__name__}")
        self._cfg = cfg
        self._idw = max(1, (cfg.dma_channels - 1).bit_length())
        sig = AXI4Signature(addr_width=32, data_width=WORD_BITS, id_width=self._idw)
        ports = {"s_axil": In(AXI4LiteSignature(addr_width=C.CSR_ADDR_WIDTH, data_width=32)),
                 "irq": Out(1)}
        for i in range(cfg.clusters + 1):
            ports[f"hbm{i}"] = Out(sig)
        super().__init__(ports)

    cfg = property(lambda self: self._cfg)

    def elaborate(self, platform):
        m = Module()
        cfg = self._cfg
        cp = m.submodules.cp = CommandProcessor(cfg, id_width=self._idw)
        wiring.connect(m, wiring.flipped(self.s_axil), cp.s_axil)
        wiring.connect(m, cp.m_axi, wiring.flipped(getattr(self, f"hbm{cfg.clusters}")))
        m.d.comb += self.irq.eq(cp.irq)
        for c in range(cfg.clusters):
            cl = m.submodules[f"cluster{c}"] = Cluster(cfg, c)
            wiring.connect(m, cl.m_axi, wiring.flipped(getattr(self, f"hbm{c}")))
            wiring.connect(m, getattr(cp, f"dma{c}"), cl.s_axil)
            for t in range(cfg.tiles):
                p = f"c{c}_t{t}_"
                m.d.comb += [getattr(cl, f"tile{t}_start").eq(getattr(cp, p + "start")),
                             getattr(cl, f"tile{t}_cmd").eq(getattr(cp, p + "cmd"))]
                for n in ("status", "macs_lo", "macs_hi", "ttu_busy"):
                    m.d.comb += getattr(cp, p + n).eq(getattr(cl, f"tile{t}_{n}"))
            for s in range(cfg.n_sems):
                m.d.comb += getattr(cp, f"c{c}_sem{s}").eq(getattr(cl, f"sem{s}"))
            m.d.comb += [cl.take.eq(getattr(cp, f"c{c}_take")),
                         cl.take_sem.eq(getattr(cp, f"c{c}_take_sem")),
                         cl.take_count.eq(getattr(cp, f"c{c}_take_count"))]
        return m
