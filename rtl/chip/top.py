"""Chip top: clusters, command processor, HBM AXI4 ports at the edge, host AXI4-Lite, irq."""

from __future__ import annotations

from amaranth import Cat, Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from rtl import hier
from rtl.axi import AXI4LiteSignature, AXI4Signature
from rtl.chip.cluster import Cluster, cluster_id_width, or_tree
from rtl.chip.collective import AxiLiteWriteJoin, CollectiveEngine
from rtl.chip.cp import CommandProcessor
from rtl.chip.nic_port import AxiLiteDecoder, AxiMerge, AxiUpsizer
from rtl.nic.core import NicCore
from rtl.nic.stream import AXIStreamSignature
from rtl.noc.mesh import Mesh
from rtl.noc.ni import NetworkInterface
from rtl.tile.tsram import WORD_BITS
from spec import chip as C
from spec import noc as N

__all__ = ["Chip", "NI_INLINE_MAX_NODES"]

# meshes with more nodes build their network interfaces with rtl.hier.instance
NI_INLINE_MAX_NODES = 64


def _build(factory, *args, **kwargs):
    return factory(*args, **kwargs)


class Chip(wiring.Component):
    """The whole chip for a spec.chip.ChipConfig.

    Ports
    -----
    s_axil : host AXI4-Lite (12-bit addresses, 32-bit data; CSR map in docs/chip.md).
    hbm{i} : AXI4 managers (32-bit address, 256-bit data) at the chip edge,
        ``cfg.top_hbm_ports`` of them. All ports address the same HBM with full addresses
        (address 0 upwards); the co-simulation attaches one memory model to all of them.
        With ``cfg.nic_hbm`` the last ``nic_ports + 1`` are NIC port p's
        (``hbm{edge_hbm_ports + p}``) and the collective engine's, not on the NoC.
    irq : Out(1), level interrupt (IRQ_STATUS & IRQ_ENABLE).
    nic{p}_wire_tx / nic{p}_wire_rx : with ``cfg.nic_ports`` > 0, NIC port p's Ethernet
        side (AXI-Stream, 64-bit beats, frames with FCS, ``wire_rx.tready`` always 1;
        docs/nic.md). Port p is an rtl.nic NicCore (``cfg.nic_params``); its CSR block sits
        at host address ``cfg.nic_csr_base(p)`` (s_axil then has ``cfg.host_addr_width``
        bits), its 64-bit AXI4 master reaches HBM through an AxiUpsizer (to 256 bits) and an
        AxiMerge that shares the command processor's place (NoC node (0, mesh_y), or the
        command processor's direct port without the NoC), or with ``cfg.nic_hbm`` its own
        edge port (as has the collective engine); every CQE it writes sets
        IRQ_STATUS bit IRQ_NIC_BASE + p; STATUS bit 2 = every port idle (docs/chip.md "NIC
        ports").

    With ``cfg.noc`` (default): a (mesh_x) x (mesh_y + 1) NoC mesh (rtl/noc, 288-bit flits:
    256 data + 32 strobe bits). Cluster (x, y) sits at node (x, y); its DMA AXI4 master is
    the initiator side of that node's network interface. The last row y = mesh_y holds the
    HBM nodes: node (k, mesh_y), k < edge_hbm_ports, owns the k-th equal slice of
    hbm_window; its interface's target side replays requests on port ``hbm{k}`` (the slice
    base is put back on the address). The command processor is the initiator at node
    (0, mesh_y). Each interface keeps up to 4 reads and 4 writes outstanding (docs/noc.md).
    Without ``cfg.noc``: cluster i's DMA drives ``hbm{i}`` directly and the command
    processor ``hbm{clusters}``.

    The command processor reaches the clusters through one link of fixed width
    (rtl.chip.cp.ClusterLinkSignature: DMA CSR bus with the cluster index in the address,
    broadcast tile start, selected tile status, selected semaphores): its outputs go to
    every cluster, the clusters' answers (zero unless selected) are ORed here. On meshes
    of more than NI_INLINE_MAX_NODES nodes the network interfaces are built with
    rtl.hier.instance (modules of their own under hierarchical generation).
    """

    def __init__(self, cfg: C.ChipConfig | None = None):
        cfg = cfg or C.DEFAULT
        if not isinstance(cfg, C.ChipConfig):
            raise TypeError(f"cfg: must be a spec.chip.ChipConfig, got {type(cfg).__name__}")
        self._cfg = cfg
        self._idw = cluster_id_width(cfg)    # the clusters' merged AXI IDs (rtl.chip.cluster)
        sig = AXI4Signature(addr_width=32, data_width=WORD_BITS, id_width=self._idw)
        ports = {"s_axil": In(AXI4LiteSignature(addr_width=cfg.host_addr_width, data_width=32)),
                 "irq": Out(1)}
        for i in range(cfg.top_hbm_ports):
            ports[f"hbm{i}"] = Out(sig)
        self._sig = sig
        for p in range(cfg.nic_ports):
            ports[f"nic{p}_wire_tx"] = Out(AXIStreamSignature())
            ports[f"nic{p}_wire_rx"] = In(AXIStreamSignature())
        super().__init__(ports)

    cfg = property(lambda self: self._cfg)

    def elaborate(self, platform):
        m = Module()
        cfg = self._cfg
        # the CP is generated as a module of its own under hierarchical generation
        # (rtl.hier): that splits maia200's top into Yosys runs that fit in memory
        cp = m.submodules.cp = hier.instance(CommandProcessor, cfg, id_width=self._idw)
        if cfg.nic_ports:
            cp_axi = self._nics(m, cp)
        else:
            wiring.connect(m, wiring.flipped(self.s_axil), cp.s_axil)
            cp_axi = cp.m_axi
        m.d.comb += self.irq.eq(cp.irq)
        # every cluster is the same module (its index is the cluster_id input), generated
        # once under hierarchical generation (rtl.hier)
        clusters = [hier.instance(Cluster, cfg) for _ in range(cfg.clusters)]
        if cfg.noc:
            self._noc(m, cp_axi, clusters)
        else:
            wiring.connect(m, cp_axi, wiring.flipped(getattr(self, f"hbm{cfg.clusters}")))
            for c, cl in enumerate(clusters):
                wiring.connect(m, cl.m_axi, wiring.flipped(getattr(self, f"hbm{c}")))
        for c, cl in enumerate(clusters):
            m.submodules[f"cluster{c}"] = cl
            m.d.comb += cl.cluster_id.eq(c)
        # the CP's link (rtl.chip.cp.ClusterLinkSignature): its outputs go to every cluster,
        # the clusters' answers (zero unless selected) are ORed together
        for path, member, value in cp.clusters.signature.flatten(cp.clusters):
            theirs = []
            for cl in clusters:
                v = cl.cp
                for part in path:
                    v = getattr(v, part)
                theirs.append(v)
            if member.flow == wiring.Out:
                m.d.comb += [v.eq(value) for v in theirs]
            else:
                m.d.comb += value.eq(or_tree(theirs))
        return m

    def _nics(self, m, cp):
        """NIC ports: host CSR decoder, NicCores, upsizers and the merge with the command
        processor's HBM manager. Returns the merged manager."""
        cfg = self._cfg
        n = cfg.nic_ports
        m.submodules.host_dec = dec = AxiLiteDecoder(addr_width=cfg.host_addr_width, n=1 + n,
                                                     block_bits=C.CSR_ADDR_WIDTH)
        wiring.connect(m, wiring.flipped(self.s_axil), dec.s_axil)
        wiring.connect(m, dec.m0, cp.s_axil)
        # the HBM managers of the NIC ports and the engine: with cfg.nic_hbm each has an
        # edge port of its own (hbm{edge_hbm_ports + i}); else merged with the CP's
        if cfg.nic_hbm:
            own = cfg.edge_hbm_ports
            hbm_of = [wiring.flipped(getattr(self, f"hbm{own + i}")) for i in range(n + 1)]
        else:
            m.submodules.hbm_merge = merge = AxiMerge(2 + n, self._sig)
            wiring.connect(m, cp.m_axi, merge.s0)
            hbm_of = [getattr(merge, f"s{i + 1}") for i in range(n + 1)]
        # the collective engine (docs/tray.md): behind the CP, its HBM manager merged last
        m.submodules.collective = coll = CollectiveEngine(cfg, self._sig)
        wiring.connect(m, coll.m_axi, hbm_of[n])
        m.d.comb += [coll.entry.eq(cp.coll_entry), coll.rank.eq(cp.coll_rank),
                     coll.two_trays.eq(cp.coll_two_trays), coll.start.eq(cp.coll_start),
                     cp.coll_check.eq(coll.check), cp.coll_busy.eq(coll.busy),
                     cp.coll_err.eq(coll.err), cp.coll_detail.eq(coll.detail),
                     coll.resync.eq(cp.coll_resync), coll.resync_mask.eq(cp.coll_resync_mask),
                     coll.resync_seq.eq(cp.coll_resync_seq),
                     cp.coll_resync_ok.eq(coll.resync_ok), cp.coll_seq.eq(coll.seq)]
        idle, cq = [], []
        for p in range(n):
            nic = NicCore(cfg.nic_params, mem_bytes=cfg.hbm_window)
            m.submodules[f"nic{p}"] = nic
            up = m.submodules[f"nic{p}_up"] = AxiUpsizer(
                addr_width=32, narrow=64, wide=WORD_BITS,
                narrow_id_width=nic.m_axi.signature.id_width, wide_id_width=self._idw)
            # the host (decoder) and the collective engine's doorbells share the NIC's CSRs
            join = m.submodules[f"nic{p}_csr_join"] = AxiLiteWriteJoin()
            wiring.connect(m, getattr(dec, f"m{p + 1}"), join.s0)
            wiring.connect(m, getattr(coll, f"nic{p}"), join.s1)
            wiring.connect(m, join.m, nic.s_axil)
            wiring.connect(m, nic.m_axi, up.s_axi)
            wiring.connect(m, up.m_axi, hbm_of[p])
            wiring.connect(m, nic.wire_tx, wiring.flipped(getattr(self, f"nic{p}_wire_tx")))
            wiring.connect(m, wiring.flipped(getattr(self, f"nic{p}_wire_rx")), nic.wire_rx)
            idle.append(nic.idle)
            cq.append(nic.cq_event)
        m.d.comb += [cp.nic_idle.eq(Cat(*idle)), cp.nic_cq.eq(Cat(*cq))]
        return cp.m_axi if cfg.nic_hbm else merge.m_axi

    def _noc(self, m, cp_axi, clusters):
        cfg = self._cfg
        kx, ky = cfg.mesh_x, cfg.mesh_y + 1
        n_hbm = cfg.edge_hbm_ports
        part = cfg.hbm_window // n_hbm
        regions = tuple(N.Region(base=k * part, size=part, x=k, y=cfg.mesh_y)
                        for k in range(n_hbm))
        fw = WORD_BITS + WORD_BITS // 8
        # on large meshes (maia200: 176 nodes) every network interface is a module of its
        # own under hierarchical generation (rtl.hier): one Yosys run per interface instead
        # of all of them inside the top's run; small chips keep them inline
        make_ni = hier.instance if kx * ky > NI_INLINE_MAX_NODES else _build
        # (not rtl.hier.instance: maia200's mesh has more than the 65,536 output bits
        # Amaranth allows an Instance; its routers are instances of their own)
        m.submodules.noc = mesh = Mesh(kx=kx, ky=ky, flit_width=fw, depth=cfg.noc_depth)
        for y in range(ky):
            for x in range(kx):
                i = y * kx + x
                ni = make_ni(NetworkInterface, x=x, y=y, kx=kx, ky=ky, regions=regions,
                             flit_width=fw, addr_width=32, data_width=WORD_BITS,
                             id_width=self._idw)
                m.submodules[f"ni_{x}_{y}"] = ni
                for c in range(N.N_CLASSES):
                    wiring.connect(m, ni.inj[c], mesh.inj[i][c])
                    wiring.connect(m, mesh.ej[i][c], ni.ej[c])
                if y < cfg.mesh_y:
                    wiring.connect(m, clusters[i].m_axi, ni.s_axi)
                elif x == 0:
                    wiring.connect(m, cp_axi, ni.s_axi)
                else:
                    m.d.comb += [ni.s_axi.awvalid.eq(0), ni.s_axi.wvalid.eq(0),
                                 ni.s_axi.arvalid.eq(0), ni.s_axi.bready.eq(1),
                                 ni.s_axi.rready.eq(1)]
                if y == cfg.mesh_y and x < n_hbm:
                    # the interface strips the slice base; the HBM port carries full addresses
                    port = getattr(self, f"hbm{x}")
                    for name, mem in port.signature.members.items():
                        ours, theirs = getattr(port, name), getattr(ni.m_axi, name)
                        if mem.flow == wiring.Out:
                            if name in ("awaddr", "araddr"):
                                theirs = theirs | (x * part)
                            m.d.comb += ours.eq(theirs)
                        else:
                            m.d.comb += theirs.eq(ours)
                else:   # not a memory node: never addressed by the map; answer SLVERR
                    m.d.comb += [ni.m_axi.awready.eq(1), ni.m_axi.wready.eq(1),
                                 ni.m_axi.bvalid.eq(1), ni.m_axi.bresp.eq(2),
                                 ni.m_axi.arready.eq(1), ni.m_axi.rvalid.eq(1),
                                 ni.m_axi.rlast.eq(1), ni.m_axi.rresp.eq(2)]
