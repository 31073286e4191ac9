"""Cluster: N tiles + multi-banked CSRAM + a cluster DMA engine + cluster semaphores."""

from __future__ import annotations

from amaranth import Cat, Const, Module, Signal
from amaranth.lib import wiring
from amaranth.lib.fifo import SyncFIFO
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

__all__ = ["Cluster", "AxiIdMerge", "csram_config", "cluster_id_width"]


def csram_config(cfg: C.ChipConfig) -> T.TileConfig:
    """The banked-SRAM geometry of the CSRAM, expressed as the TSRAM parameters that
    rtl.tile.tsram.TSRAM takes (same word-interleaved lib.memory banks)."""
    return T.TileConfig(rows=1, cols=1, banks=cfg.csram_banks, tsram_bytes=cfg.csram_bytes,
                        window=1, max_k=64, n_sems=1)


def cluster_id_width(cfg: C.ChipConfig) -> int:
    """AXI ID bits of a cluster's ``m_axi``: the cluster DMA's channel ID (or a tile DMA's
    1-bit ID) plus the source tag of the AxiIdMerge (0 = cluster DMA, 1 + t = tile t)."""
    dma = max(1, (cfg.dma_channels - 1).bit_length())
    return max(dma, 1) + cfg.tiles.bit_length()


class AxiIdMerge(wiring.Component):
    """``len(id_widths)`` AXI4 managers ``s{i}`` (32-bit address, 256-bit data, ID width
    ``id_widths[i]``) onto one manager port ``m_axi`` whose ID is the source's ID
    (zero-extended to ``max(id_widths)`` bits) with the source index above it, so every
    response goes back to its source by its ID alone (any order, any number outstanding).

    ``masks[i]`` (default all ones) is ANDed into source i's AW/AR addresses: the cluster
    clears the tile-DMA external-window bit (spec.tile.DMA_EXT_BASE) with it.

    AR and AW: round-robin among the valid sources, no bubble; a presented request is
    held (address, ID and source) until it is accepted. W: beats pass from the source of
    the oldest accepted AW whose last beat has not passed (a 4-deep FIFO of sources, so
    up to 4 AWs may be ahead of their data; W beats start the cycle after their AW). R
    and B pass combinationally to the source named by the ID's top bits.
    """

    def __init__(self, id_widths, masks=None):
        id_widths = [int(w) for w in id_widths]
        if not id_widths or any(w < 1 for w in id_widths):
            raise ValueError(f"id_widths: one positive width per source, got {id_widths!r}")
        masks = [0xFFFF_FFFF] * len(id_widths) if masks is None else [int(x) for x in masks]
        if len(masks) != len(id_widths):
            raise ValueError(f"masks: one per source ({len(id_widths)}), got {len(masks)}")
        self._iw, self._masks = id_widths, masks
        self._base = max(id_widths)
        self._tag = max(1, (len(id_widths) - 1).bit_length())
        ports = {f"s{i}": In(AXI4Signature(addr_width=32, data_width=WORD_BITS, id_width=w))
                 for i, w in enumerate(id_widths)}
        ports["m_axi"] = Out(AXI4Signature(addr_width=32, data_width=WORD_BITS,
                                           id_width=self._base + self._tag))
        super().__init__(ports)

    def elaborate(self, platform):
        m = Module()
        n = len(self._iw)
        srcs = [getattr(self, f"s{i}") for i in range(n)]
        o = self.m_axi
        B = self._base

        def arbiter(ch):
            """Round-robin source choice for channel ``ch`` ("ar"/"aw"), held while the
            presented request waits for ready."""
            last = Signal(range(max(2, n)), name=f"{ch}_last")
            held = Signal(range(max(2, n)), name=f"{ch}_held")
            locked = Signal(name=f"{ch}_locked")
            pick = Signal(range(max(2, n)), name=f"{ch}_pick")
            valids = [getattr(s, f"{ch}valid") for s in srcs]
            for off in reversed(range(1, n + 1)):     # the last assignment wins
                for cur in range(n):
                    idx = (cur + off) % n
                    with m.If((last == cur) & valids[idx]):
                        m.d.comb += pick.eq(idx)
            sel = Signal(range(max(2, n)), name=f"{ch}_sel")
            m.d.comb += sel.eq(pick)
            with m.If(locked):
                m.d.comb += sel.eq(held)
            return sel, last, held, locked

        def request(ch, sel, gate):
            for i, s in enumerate(srcs):
                with m.If(sel == i):
                    m.d.comb += [getattr(o, f"{ch}id").eq(Cat(getattr(s, f"{ch}id"),
                                                              Const(0, B - self._iw[i]),
                                                              Const(i, self._tag))),
                                 getattr(o, f"{ch}addr").eq(getattr(s, f"{ch}addr")
                                                            & self._masks[i]),
                                 getattr(o, f"{ch}valid").eq(getattr(s, f"{ch}valid") & gate),
                                 getattr(s, f"{ch}ready").eq(getattr(o, f"{ch}ready") & gate)]
                    for f in ("len", "size", "burst", "lock", "cache", "prot"):
                        m.d.comb += getattr(o, f"{ch}{f}").eq(getattr(s, f"{ch}{f}"))
            fire = getattr(o, f"{ch}valid") & getattr(o, f"{ch}ready")
            return fire

        # ---- reads ----
        rsel, rlast_, rheld, rlocked = arbiter("ar")
        ar_fire = request("ar", rsel, Const(1))
        m.d.sync += [rheld.eq(rsel), rlocked.eq(o.arvalid & ~o.arready)]
        with m.If(ar_fire):
            m.d.sync += rlast_.eq(rsel)
        rtag = o.rid[B:]
        for i, s in enumerate(srcs):
            m.d.comb += [s.rid.eq(o.rid[:self._iw[i]]), s.rdata.eq(o.rdata),
                         s.rresp.eq(o.rresp), s.rlast.eq(o.rlast),
                         s.rvalid.eq(o.rvalid & (rtag == i))]
            with m.If(rtag == i):
                m.d.comb += o.rready.eq(s.rready)

        # ---- writes ----
        order = m.submodules.w_order = SyncFIFO(width=self._tag, depth=4)
        wsel, wlast_, wheld, wlocked = arbiter("aw")
        aw_fire = request("aw", wsel, order.w_rdy)
        m.d.sync += [wheld.eq(wsel), wlocked.eq(o.awvalid & ~o.awready)]
        m.d.comb += [order.w_en.eq(aw_fire), order.w_data.eq(wsel)]
        with m.If(aw_fire):
            m.d.sync += wlast_.eq(wsel)
        head = order.r_data
        for i, s in enumerate(srcs):
            with m.If(head == i):
                m.d.comb += [o.wdata.eq(s.wdata), o.wstrb.eq(s.wstrb), o.wlast.eq(s.wlast),
                             o.wvalid.eq(order.r_rdy & s.wvalid),
                             s.wready.eq(order.r_rdy & o.wready)]
        m.d.comb += order.r_en.eq(o.wvalid & o.wready & o.wlast)
        btag = o.bid[B:]
        for i, s in enumerate(srcs):
            m.d.comb += [s.bid.eq(o.bid[:self._iw[i]]), s.bresp.eq(o.bresp),
                         s.bvalid.eq(o.bvalid & (btag == i))]
            with m.If(btag == i):
                m.d.comb += o.bready.eq(s.bready)
        return m


class Cluster(wiring.Component):
    """A cluster of a chip configured by ``cfg`` (spec.chip.ChipConfig).

    The cluster takes its index from the input port ``cluster_id`` (the bases of its CSRAM
    and TSRAM apertures are computed from it): every cluster of a chip is the same module,
    so hierarchical generation (rtl.hier) writes and compiles it once. The chip top drives
    ``cluster_id`` with a constant.

    Inside: ``cfg.tiles`` tiles (rtl.tile.Tile), the CSRAM (``csram_banks`` word-interleaved
    lib.memory banks; its AXI side writes and reads in the same cycle when they hit different
    banks), the cluster DMA (rtl.dma.DMAEngine, ``dma_channels`` channels, 256-bit data, one
    window per memory) and an AXI4 address decoder that sends the DMA's bursts to HBM
    (``m_axi``), the CSRAM or a tile's TSRAM ``ext`` port (cluster aperture of
    docs/chip.md). So one DMA descriptor moves data HBM <-> CSRAM <-> TSRAM in any
    direction.

    Ports
    -----
    m_axi : AXI4 manager, 256-bit, to HBM; ID = source ID + source tag above it
        (``cluster_id_width(cfg)`` bits; AxiIdMerge: tag 0 the cluster DMA, ID = its
        channel; tag 1 + t tile t's DMA, whose external window
        ``[DMA_EXT_BASE, DMA_EXT_BASE + tile.ext_bytes)`` is HBM ``[0, ext_bytes)``).
    s_axil : the DMA engine's AXI4-Lite CSRs (spec.dma CSR map).
    tile{t}_start, tile{t}_cmd, tile{t}_status, tile{t}_macs_lo/hi, tile{t}_ttu_busy:
        start pulse, command-list address, status word and counters of tile t.
    sem{s} : Out(8), cluster semaphore s. A cluster-DMA descriptor with the ``sem`` flag
        adds 1 to semaphore ``sem_id % n_sems`` when it completes; ``take`` (pulse) with
        ``take_sem``/``take_count`` subtracts (modulo 256).
    """

    def __init__(self, cfg: C.ChipConfig):
        if not isinstance(cfg, C.ChipConfig):
            raise TypeError(f"cfg: must be a spec.chip.ChipConfig, got {type(cfg).__name__}")
        self._cfg = cfg
        self._idw = max(1, (cfg.dma_channels - 1).bit_length())
        ports = {
            "m_axi": Out(AXI4Signature(addr_width=32, data_width=WORD_BITS,
                                       id_width=cluster_id_width(cfg))),
            "s_axil": In(AXI4LiteSignature(addr_width=D.CSR_ADDR_WIDTH,
                                           data_width=D.CSR_DATA_WIDTH)),
            "take": In(1), "take_sem": In(range(max(2, cfg.n_sems))), "take_count": In(8),
        }
        ports["cluster_id"] = In(range(max(2, cfg.clusters)))
        for t in range(cfg.tiles):
            ports.update({f"tile{t}_start": In(1), f"tile{t}_cmd": In(32),
                          f"tile{t}_status": Out(32), f"tile{t}_macs_lo": Out(32),
                          f"tile{t}_macs_hi": Out(32), f"tile{t}_ttu_busy": Out(32)})
        for s in range(cfg.n_sems):
            ports[f"sem{s}"] = Out(8)
        super().__init__(ports)

    cfg = property(lambda self: self._cfg)
    id_width = property(lambda self: self._idw)

    def elaborate(self, platform):
        m = Module()
        cfg = self._cfg
        dma = m.submodules.dma = DMAEngine(channels=cfg.dma_channels, data_width=WORD_BITS,
                                           max_burst=cfg.dma_max_burst,
                                           windows=2 + cfg.tiles)
        wiring.connect(m, wiring.flipped(self.s_axil), dma.s_axil)
        # apertures of the cluster named by the cluster_id port (spec.chip address map)
        base = cfg.local_base + self.cluster_id * cfg.cluster_stride
        regions = [(0, cfg.hbm_window), (base, cfg.slot)]
        regions += [(base + (t + 1) * cfg.slot, cfg.slot) for t in range(cfg.tiles)]
        dec = m.submodules.dec = AxiDecoder(regions=regions, id_width=self._idw)
        wiring.connect(m, dma.m_axi, dec.s_axi)
        # HBM-bound bursts: the cluster DMA's (decoder port 0) and every tile DMA's external
        # window (tile address DMA_EXT_BASE + o -> HBM address o: the window bit cleared)
        hbm = m.submodules.hbm_merge = AxiIdMerge(
            [self._idw] + [1] * cfg.tiles,
            masks=[0xFFFF_FFFF] + [0xFFFF_FFFF & ~T.DMA_EXT_BASE] * cfg.tiles)
        wiring.connect(m, dec.m0, hbm.s0)
        wiring.connect(m, hbm.m_axi, wiring.flipped(self.m_axi))

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
            wiring.connect(m, tile.m_axi, getattr(hbm, f"s{1 + t}"))
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
