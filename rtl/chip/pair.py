"""Two chips side by side in one Verilog design (the two-chip co-simulation, docs/chip.md
"NIC ports")."""

from __future__ import annotations

from amaranth import Module
from amaranth.lib import wiring

from rtl import hier
from rtl.chip.top import Chip
from spec import chip as C

__all__ = ["ChipPair"]


class ChipPair(wiring.Component):
    """Verilog top ``chip_pair``: chips ``a`` and ``b`` of one configuration (with NIC
    ports), every port of chip a as ``a_<port>`` and of chip b as ``b_<port>`` (so
    ``a_s_axil__*``, ``a_hbm0__*``, ``a_nic0_wire_tx__*``, ...). The NIC wires are not joined
    inside: the cocotb bench joins ``a_nic{p}_wire_tx`` to ``b_nic{p}_wire_rx`` and back
    through its link model, so it sees every frame and can inject faults. Both chips share
    the clock and reset; everything else is separate (two HBMs, two host interfaces)."""

    def __init__(self, cfg: C.ChipConfig):
        if not isinstance(cfg, C.ChipConfig):
            raise TypeError(f"cfg: must be a spec.chip.ChipConfig, got {type(cfg).__name__}")
        if cfg.nic_ports < 1:
            raise ValueError(f"cfg: a chip pair needs NIC ports, {cfg.name!r} has none")
        self._cfg = cfg
        self._chips = {"a": Chip(cfg), "b": Chip(cfg)}
        sig = {}
        for n, chip in self._chips.items():
            for name, member in chip.signature.members.items():
                sig[f"{n}_{name}"] = member
        super().__init__(sig)

    cfg = property(lambda self: self._cfg)

    def elaborate(self, platform):
        m = Module()
        for n, chip in self._chips.items():
            m.submodules[f"chip_{n}"] = chip
            for name, member in chip.signature.members.items():
                hier.forward_member(m, member, getattr(self, f"{n}_{name}"),
                                    getattr(chip, name))
        return m
