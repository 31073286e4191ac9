"""The whole chip (docs/chip.md): clusters (tiles + CSRAM + cluster DMA + semaphores), the
command processor with the host interface, and the chip top with HBM ports at the edge.

Verilog tops: ``chip`` (default configuration, 2x2 clusters x 2 tiles), ``chip_tiny``
(1 cluster, one 1x1-cell tile: the Icarus configuration). The ``maia200`` configuration is
far too large to emit whole; ``chip_maia200_cluster`` emits one of its clusters for
inspection (see docs/chip.md for its generation time).
"""

from __future__ import annotations

from rtl.chip.axi_sram import AxiDecoder, AxiSram, PortMerge
from rtl.chip.cluster import Cluster
from rtl.chip.cp import CommandProcessor
from rtl.chip.top import Chip
from spec import chip as C

__all__ = ["Chip", "Cluster", "CommandProcessor", "AxiSram", "AxiDecoder", "PortMerge",
           "VERILOG_TOPS"]

VERILOG_TOPS = {
    "chip": lambda: Chip(C.DEFAULT),
    "chip_tiny": lambda: Chip(C.TINY),
    "chip_maia200_cluster": lambda: Cluster(C.MAIA200, 0),
}
