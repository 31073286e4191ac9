"""A tray of 4 chips in a full mesh of direct NIC links (docs/chip.md "NIC ports", issue #8's
first RTL step; docs/tray.md is the tray's contract)."""

from __future__ import annotations

from amaranth import Module
from amaranth.lib import wiring

from rtl import hier
from rtl.chip.top import Chip
from spec import chip as C
from spec import tray as TR

__all__ = ["Tray", "mesh_link", "tray_bench_tiny", "tray2_bench_tiny4"]


def mesh_link(chip: int, port: int) -> tuple[int, int]:
    """(peer chip, peer port) at the other end of mesh port ``port`` of ``chip``: ports
    0..2 of chip c lead to the other chips of the tray in ascending order
    (spec.tray.mesh_peers), so the link c <-> d is port mesh_peers(c).index(d) on c and
    mesh_peers(d).index(c) on d."""
    peers = TR.mesh_peers(chip)
    if not isinstance(port, int) or not 0 <= port < len(peers):
        raise ValueError(f"port: mesh port index must be in 0..{len(peers) - 1}, got {port!r}")
    peer = peers[port]
    return peer, TR.mesh_peers(peer).index(chip)


class Tray(wiring.Component):
    """Verilog top ``tray``: ``spec.tray.CHIPS_PER_TRAY`` chips of configuration ``cfg``
    (at least ``MESH_PORTS`` = 3 NIC ports each) whose mesh ports are wired to each other
    inside (port k of chip c's ``wire_tx`` drives the ``wire_rx`` of the peer's port, see
    :func:`mesh_link`); a chip's NIC ports beyond the mesh ports (the uplink) stay top-level
    ports. Every other chip port appears as ``c{i}_<port>`` (host AXI4-Lite, HBM AXI4
    managers, irq). Links are ideal wires here (no faults); the co-simulation's fault
    injection needs the wires as ports: ``open_mesh=True``.

    ``open_mesh=True`` (the co-simulation top ``tray_bench``, cosim/tray/rtl_tray.py): the
    mesh wires are not joined inside; every chip's ``nic{p}_wire_tx`` / ``nic{p}_wire_rx``
    is a top port ``c{i}_nic{p}_wire_tx`` / ``..._rx`` like its other ports, so the cocotb
    bench joins them through its link layer (sees every frame, injects faults).

    ``trays=2``: two trays in one top (8 chips ``c0`` .. ``c7``, rank = chip index: chips
    4 t .. 4 t + 3 form tray t, meshed among themselves); the uplinks (port
    ``spec.tray.UPLINK`` of a 4-port chip) are top ports, joined by the co-simulation's
    switch (cosim/tray/rtl_switch.py)."""

    def __init__(self, cfg: C.ChipConfig, *, open_mesh: bool = False, trays: int = 1):
        if isinstance(trays, bool) or trays not in (1, 2):
            raise ValueError(f"trays: must be 1 or 2, got {trays!r}")
        self._trays = trays
        self._n_chips = trays * TR.CHIPS_PER_TRAY
        if not isinstance(open_mesh, bool):
            raise TypeError(f"open_mesh: must be a bool, got {type(open_mesh).__name__}")
        if not isinstance(cfg, C.ChipConfig):
            raise TypeError(f"cfg: must be a spec.chip.ChipConfig, got {type(cfg).__name__}")
        if cfg.nic_ports < TR.MESH_PORTS:
            raise ValueError(f"cfg: a tray chip needs at least {TR.MESH_PORTS} NIC ports, "
                             f"{cfg.name!r} has {cfg.nic_ports}")
        self._cfg = cfg
        # the chips are built in elaborate() through rtl.hier.instance (under hierarchical
        # generation, `make verilog-large`, one chip module instantiated four times); this
        # one only lends its signature
        template = Chip(cfg)
        template._MustUse__used = True      # never elaborated on purpose
        self._chip_members = dict(template.signature.members)
        self._open_mesh = open_mesh
        internal = (set() if open_mesh else
                    {f"nic{p}_wire_{d}" for p in range(TR.MESH_PORTS) for d in ("tx", "rx")})
        sig = {}
        for i in range(self._n_chips):
            for name, member in self._chip_members.items():
                if name not in internal:
                    sig[f"c{i}_{name}"] = member
        self._internal = internal
        super().__init__(sig)

    cfg = property(lambda self: self._cfg)
    open_mesh = property(lambda self: self._open_mesh)
    trays = property(lambda self: self._trays)

    def elaborate(self, platform):
        m = Module()
        chips = [hier.instance(Chip, self._cfg) for _ in range(self._n_chips)]
        for i, chip in enumerate(chips):
            m.submodules[f"chip{i}"] = chip
            for name, member in self._chip_members.items():
                if name in self._internal:
                    continue
                hier.forward_member(m, member, getattr(self, f"c{i}_{name}"),
                                    getattr(chip, name))
        for c, chip in enumerate(chips):
            if self._open_mesh:
                break
            base = c - TR.chip_of(c)
            for p in range(TR.MESH_PORTS):
                peer, pp = mesh_link(TR.chip_of(c), p)
                wiring.connect(m, getattr(chip, f"nic{p}_wire_tx"),
                               getattr(chips[base + peer], f"nic{pp}_wire_rx"))
        return m


def tray_bench_tiny() -> Tray:
    """The co-simulation top ``tray_bench``: 4 ``tiny_tray`` chips, mesh wires as ports
    (a module-level factory so the build cache depends on the RTL sources only)."""
    return Tray(C.TINY_TRAY, open_mesh=True)


def tray2_bench_tiny4() -> Tray:
    """The co-simulation top ``tray_bench`` of two trays: 8 ``tiny_tray4`` chips (4 NIC
    ports: the mesh and the uplink, 4 queue pairs each), every NIC wire a top port."""
    return Tray(C.TINY_TRAY4, open_mesh=True, trays=2)
