"""Tile DMA unit: the project's DMA engine (rtl.dma.DMAEngine) wired into the tile.

Inside: a one-channel ``DMAEngine`` (256-bit AXI4, spec.tile.DMA_MAX_BURST-beat bursts, two
windows), an ``AxiDecoder`` that sends its bursts either to the TSRAM (through an
``AxiSram`` onto two TSRAM lanes, ``wr`` and ``rd``) or to the tile's external AXI4 port
``m_axi``, and a small AXI4-Lite sequencer that plays the control processor for the engine:

* after reset it programs window 0 = TSRAM ``[0, tsram_bytes)`` and window 1 = external
  memory ``[DMA_EXT_BASE, DMA_EXT_BASE + ext_bytes)`` (busy meanwhile);
* ``start`` (with ``head``, the TSRAM byte address of the first DMA descriptor): write HEAD,
  ring the DOORBELL, poll STATUS until DONE or ERROR, read ERROR (on ERROR) and BYTES,
  then pulse ``done`` with ``err`` (spec.dma error code, 0 = success) and ``nbytes``.

Latency: about 16 cycles of CSR traffic around the engine's own time (docs/dma.md
"Latency and throughput"), plus the STATUS poll granularity (one read every ~3 cycles).
"""

from __future__ import annotations

from amaranth import Array, Const, Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from rtl.axi import AXI4Signature
from rtl.dma import DMAEngine
from rtl.tile.tsram import WORD_BITS, tsram_port
from spec import dma as D
from spec import tile as T

__all__ = ["TileDMA"]


class TileDMA(wiring.Component):
    """DMA engine + TSRAM bridge + CSR sequencer (module docstring).

    Ports: ``start`` (pulse, ignored while busy), ``head`` (32), ``busy``, ``done`` (pulse),
    ``err`` (8, valid with ``done``), ``nbytes`` (32, valid with ``done``: BYTES of the
    chain), ``m_axi`` (AXI4 manager, 256-bit, external memory), ``wr`` / ``rd`` (TSRAM
    requester lanes of the bridge).
    """

    def __init__(self, cfg: T.TileConfig, addr_width: int):
        if not isinstance(cfg, T.TileConfig):
            raise TypeError(f"cfg: must be a spec.tile.TileConfig, got {type(cfg).__name__}")
        self._cfg, self._aw = cfg, addr_width
        super().__init__({
            "start": In(1), "head": In(32), "busy": Out(1), "done": Out(1), "err": Out(8),
            "nbytes": Out(32),
            "m_axi": Out(AXI4Signature(addr_width=32, data_width=WORD_BITS, id_width=1)),
            "wr": Out(tsram_port(addr_width)), "rd": Out(tsram_port(addr_width)),
        })

    def elaborate(self, platform):
        # rtl.axi_sram needs rtl.tile.tsram: imported here, once the tile package is loaded
        from rtl.axi_sram import AxiDecoder, AxiSram

        m = Module()
        cfg = self._cfg
        dma = m.submodules.engine = DMAEngine(channels=1, data_width=T.DMA_DATA_WIDTH,
                                              max_burst=T.DMA_MAX_BURST, windows=2)
        span = 1 << max(5, (cfg.tsram_bytes - 1).bit_length())
        dec = m.submodules.dec = AxiDecoder(regions=[(T.DMA_EXT_BASE, cfg.ext_bytes),
                                                     (0, span)], id_width=1)
        br = m.submodules.bridge = AxiSram(words=cfg.words, addr_width=self._aw, id_width=1,
                                           span=span)
        wiring.connect(m, dma.m_axi, dec.s_axi)
        wiring.connect(m, dec.m0, wiring.flipped(self.m_axi))
        wiring.connect(m, dec.m1, br.s_axi)
        wiring.connect(m, br.wr, wiring.flipped(self.wr))
        wiring.connect(m, br.rd, wiring.flipped(self.rd))

        # ---- AXI4-Lite access engine: one CSR read or write at a time ----
        ax = dma.s_axil
        issued, aw_p, w_p, ar_p = Signal(), Signal(), Signal(), Signal()
        a_addr, a_data = Signal(D.CSR_ADDR_WIDTH), Signal(32)
        m.d.comb += [ax.awaddr.eq(a_addr), ax.awvalid.eq(aw_p), ax.awprot.eq(0),
                     ax.wdata.eq(a_data), ax.wstrb.eq(0xF), ax.wvalid.eq(w_p),
                     ax.bready.eq(1), ax.araddr.eq(a_addr), ax.arvalid.eq(ar_p),
                     ax.arprot.eq(0), ax.rready.eq(1)]
        with m.If(aw_p & ax.awready):
            m.d.sync += aw_p.eq(0)
        with m.If(w_p & ax.wready):
            m.d.sync += w_p.eq(0)
        with m.If(ar_p & ax.arready):
            m.d.sync += ar_p.eq(0)

        def csr_write(addr, value):
            """Inside an FSM state: issue the write once; returns its completion (comb)."""
            with m.If(~issued):
                m.d.sync += [issued.eq(1), aw_p.eq(1), w_p.eq(1), a_addr.eq(addr),
                             a_data.eq(value)]
            fin = issued & ax.bvalid
            with m.If(fin):
                m.d.sync += issued.eq(0)
            return fin

        def csr_read(addr):
            with m.If(~issued):
                m.d.sync += [issued.eq(1), ar_p.eq(1), a_addr.eq(addr)]
            fin = issued & ax.rvalid
            with m.If(fin):
                m.d.sync += issued.eq(0)
            return fin

        # ---- sequencer ----
        win = cfg.dma_windows()
        init_regs = Array([Const(D.win_base_reg(0), D.CSR_ADDR_WIDTH),
                           Const(D.win_size_reg(0), D.CSR_ADDR_WIDTH),
                           Const(D.win_base_reg(1), D.CSR_ADDR_WIDTH),
                           Const(D.win_size_reg(1), D.CSR_ADDR_WIDTH)])
        init_vals = Array([Const(win[0][0], 32), Const(win[0][1], 32),
                           Const(win[1][0], 32), Const(win[1][1], 32)])
        step = Signal(2)
        head = Signal(32)
        err = Signal(8)
        nbytes = Signal(32)
        m.d.comb += [self.err.eq(err), self.nbytes.eq(nbytes)]
        with m.FSM(init="INIT", name="dmau"):
            with m.State("INIT"):
                m.d.comb += self.busy.eq(1)
                with m.If(csr_write(init_regs[step], init_vals[step])):
                    m.d.sync += step.eq(step + 1)
                    with m.If(step == 3):
                        m.next = "IDLE"
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += [head.eq(self.head), err.eq(0), nbytes.eq(0)]
                    m.next = "HEAD"
            with m.State("HEAD"):
                m.d.comb += self.busy.eq(1)
                with m.If(csr_write(D.ch_reg(0, D.CH_HEAD), head)):
                    m.next = "DOOR"
            with m.State("DOOR"):
                m.d.comb += self.busy.eq(1)
                with m.If(csr_write(D.ch_reg(0, D.CH_DOORBELL), 1)):
                    m.next = "POLL"
            with m.State("POLL"):
                m.d.comb += self.busy.eq(1)
                with m.If(csr_read(D.ch_reg(0, D.CH_STATUS))):
                    with m.If(ax.rdata[:2] == D.ST_ERROR):
                        m.next = "ERROR"
                    with m.Elif(ax.rdata[:2] == D.ST_DONE):
                        m.next = "BYTES"
            with m.State("ERROR"):
                m.d.comb += self.busy.eq(1)
                with m.If(csr_read(D.ch_reg(0, D.CH_ERROR))):
                    m.d.sync += err.eq(ax.rdata[:8])
                    m.next = "BYTES"
            with m.State("BYTES"):
                m.d.comb += self.busy.eq(1)
                with m.If(csr_read(D.ch_reg(0, D.CH_BYTES))):
                    m.d.sync += nbytes.eq(ax.rdata)
                    m.next = "DONE"
            with m.State("DONE"):
                m.d.comb += [self.busy.eq(1), self.done.eq(1)]
                m.next = "IDLE"
        return m
