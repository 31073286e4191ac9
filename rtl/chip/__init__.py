"""The whole chip (docs/chip.md): clusters (tiles + CSRAM + cluster DMA + semaphores), the
command processor with the host interface, and the chip top with HBM ports at the edge.

Verilog tops: ``chip_tiny`` (1 cluster, one 1x1-cell tile, 1x2 NoC mesh; 90k lines, ~32 s). The default
chip and one ``maia200`` cluster are in ``LARGE_VERILOG_TOPS`` (slow to generate, see below).
"""

from __future__ import annotations

from rtl.chip.axi_sram import AxiDecoder, AxiSram, PortMerge
from rtl.chip.cluster import Cluster
from rtl.chip.cp import CommandProcessor
from rtl.chip.top import Chip
from spec import chip as C

__all__ = ["Chip", "Cluster", "CommandProcessor", "AxiSram", "AxiDecoder", "PortMerge",
           "VERILOG_TOPS", "LARGE_VERILOG_TOPS"]

VERILOG_TOPS = {
    "chip_tiny": lambda: Chip(C.TINY),
}

# Not discovered by `make verilog` / `make lint` yet: generating the default chip took more
# than 7 minutes on the shared 2-core machine (not finished), and the maia200 cluster is
# larger still. Emit them by hand, e.g.
#   python -c "from rtl.chip import LARGE_VERILOG_TOPS as T; from cosim.sim import to_verilog;
#              open('chip.v', 'w').write(to_verilog(T['chip'](), 'chip'))"
LARGE_VERILOG_TOPS = {
    "chip": lambda: Chip(C.DEFAULT),
    "chip_maia200_cluster": lambda: Cluster(C.MAIA200, 0),
}
