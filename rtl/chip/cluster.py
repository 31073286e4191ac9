"""Cluster: N tiles + multi-banked CSRAM + a cluster DMA engine + cluster semaphores."""

from __future__ import annotations

from amaranth import Cat, Const, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.fifo import SyncFIFO
from amaranth.lib.wiring import In, Out

from rtl import hier
from rtl.axi import AXI4Signature
from rtl.axi_sram import AxiDecoder, AxiSram, PortMerge
from rtl.chip.cp import ClusterLinkSignature
from rtl.dma import DMAEngine
from rtl.tile import Tile
from rtl.tile.tsram import TSRAM, WORD_BITS
from spec import chip as C
from spec import dma as D
from spec import tile as T

__all__ = ["Cluster", "AxiIdMerge", "csram_config", "cluster_id_width", "or_tree"]


def csram_config(cfg: C.ChipConfig) -> T.TileConfig:
    """The banked-SRAM geometry of the CSRAM, expressed as the TSRAM parameters that
    rtl.tile.tsram.TSRAM takes (same word-interleaved lib.memory banks)."""
    return T.TileConfig(rows=1, cols=1, banks=cfg.csram_banks, tsram_bytes=cfg.csram_bytes,
                        window=1, max_k=64, n_sems=1)


def or_tree(values):
    """OR of an iterable of values as a balanced tree (no deep expression chains)."""
    vals = list(values)
    if not vals:
        return Const(0)
    while len(vals) > 1:
        vals = [vals[i] | vals[i + 1] if i + 1 < len(vals) else vals[i]
                for i in range(0, len(vals), 2)]
    return vals[0]


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
    cluster_id : In, this cluster's index.
    cp : In(rtl.chip.cp.ClusterLinkSignature(cfg)), the command processor's link, shared by
        every cluster (docs/chip.md "CP and clusters"). The cluster answers only for its
        own units and drives zeros on every answer otherwise, so the chip top ORs the
        clusters' answers together:

        * ``dma``: the DMA engine's AXI4-Lite CSRs (spec.dma CSR map) when the address bits
          above the CSR address equal ``cluster_id`` (AW/W by awaddr, AR by araddr); B and
          R come only from the engine that took the request.
        * ``tile_start``/``tile_sel``/``tile_cmd``: starts its tile ``t`` when ``tile_sel``
          is ``cluster_id * tiles + t``.
        * ``st_sel`` -> ``st_status``/``st_macs``/``st_ttu_busy`` of that tile (same cycle).
        * ``sem_sel``/``hsem_sel`` -> ``sem_value``/``hsem_value``: cluster semaphore ``s``
          for index ``cluster_id * n_sems + s`` (same cycle). A cluster-DMA descriptor with
          the ``sem`` flag adds 1 to semaphore ``sem_id % n_sems`` when it completes;
          ``take`` (pulse) subtracts ``take_count`` from semaphore ``sem_sel`` (modulo 256).
    """

    def __init__(self, cfg: C.ChipConfig):
        if not isinstance(cfg, C.ChipConfig):
            raise TypeError(f"cfg: must be a spec.chip.ChipConfig, got {type(cfg).__name__}")
        self._cfg = cfg
        self._idw = max(1, (cfg.dma_channels - 1).bit_length())
        ports = {
            "m_axi": Out(AXI4Signature(addr_width=32, data_width=WORD_BITS,
                                       id_width=cluster_id_width(cfg))),
            "cp": In(ClusterLinkSignature(cfg)),
        }
        ports["cluster_id"] = In(range(max(2, cfg.clusters)))
        super().__init__(ports)

    cfg = property(lambda self: self._cfg)
    id_width = property(lambda self: self._idw)

    def elaborate(self, platform):
        m = Module()
        cfg = self._cfg
        dma = m.submodules.dma = DMAEngine(channels=cfg.dma_channels, data_width=WORD_BITS,
                                           max_burst=cfg.dma_max_burst,
                                           windows=2 + cfg.tiles)
        self._csr_bus(m, dma)
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

        answers = []
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
            # the CP's broadcast start and the selected-status answer (zero unless selected)
            me = self.cp.tile_sel == self.cluster_id * cfg.tiles + t
            shown = self.cp.st_sel == self.cluster_id * cfg.tiles + t
            m.d.comb += [tile.start.eq(self.cp.tile_start & me),
                         tile.cmd_addr.eq(self.cp.tile_cmd)]
            answers.append((shown, tile))

        st = self.cp
        m.d.comb += [st.st_status.eq(or_tree(Mux(h, tl.status, 0) for h, tl in answers)),
                     st.st_macs.eq(or_tree(Mux(h, Cat(tl.cnt_macs_lo, tl.cnt_macs_hi), 0)
                                           for h, tl in answers)),
                     st.st_ttu_busy.eq(or_tree(Mux(h, tl.cnt_ttu_busy, 0)
                                               for h, tl in answers))]

        # cluster semaphores (global index cluster_id * n_sems + s on the CP link)
        ns = cfg.n_sems
        sems = []
        for s in range(ns):
            sem = Signal(8, name=f"sem{s}")
            inc = Signal(name=f"sem{s}_inc")
            dec_ = Signal(8, name=f"sem{s}_dec")
            mine = self.cluster_id * ns + s
            m.d.comb += inc.eq(dma.sem_valid & ((dma.sem_id & (ns - 1)) == s))
            with m.If(self.cp.take & (self.cp.sem_sel == mine)):
                m.d.comb += dec_.eq(self.cp.take_count)
            m.d.sync += sem.eq(sem + inc - dec_)
            sems.append((mine, sem))
        m.d.comb += [
            self.cp.sem_value.eq(or_tree(Mux(self.cp.sem_sel == i, v, 0) for i, v in sems)),
            self.cp.hsem_value.eq(or_tree(Mux(self.cp.hsem_sel == i, v, 0) for i, v in sems))]
        return m

    def _csr_bus(self, m, dma):
        """The DMA engine's CSRs on the CP's shared AXI4-Lite bus: requests reach the
        engine only when the cluster-index bits of their address are ``cluster_id``;
        ready and response signals are zero unless this cluster is addressed or answering."""
        bus, s = self.cp.dma, dma.s_axil
        aw = D.CSR_ADDR_WIDTH
        w_hit = bus.awaddr[aw:] == self.cluster_id
        r_hit = bus.araddr[aw:] == self.cluster_id
        m.d.comb += [s.awaddr.eq(bus.awaddr[:aw]), s.awprot.eq(bus.awprot),
                     s.awvalid.eq(bus.awvalid & w_hit), bus.awready.eq(s.awready & w_hit),
                     s.wdata.eq(bus.wdata), s.wstrb.eq(bus.wstrb),
                     s.wvalid.eq(bus.wvalid & w_hit), bus.wready.eq(s.wready & w_hit),
                     bus.bvalid.eq(s.bvalid), bus.bresp.eq(Mux(s.bvalid, s.bresp, 0)),
                     s.bready.eq(bus.bready),
                     s.araddr.eq(bus.araddr[:aw]), s.arprot.eq(bus.arprot),
                     s.arvalid.eq(bus.arvalid & r_hit), bus.arready.eq(s.arready & r_hit),
                     bus.rvalid.eq(s.rvalid), bus.rdata.eq(Mux(s.rvalid, s.rdata, 0)),
                     bus.rresp.eq(Mux(s.rvalid, s.rresp, 0)), s.rready.eq(bus.rready)]
