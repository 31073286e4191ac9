"""Network-on-chip: routers, mesh generator, network interfaces (AXI4), traffic benches.

See docs/noc.md; the packet format and address map live in spec/noc.py."""

from .arbiter import CreditCounter, RoundRobinArbiter, SwitchAllocator
from .mesh import LocalPort, Mesh
from .router import LinkSignature, Router, flit_layout

__all__ = ["CreditCounter", "RoundRobinArbiter", "SwitchAllocator", "LinkSignature", "Router", "flit_layout",
           "LocalPort", "Mesh"]

def _ni():
    from .ni import NetworkInterface

    return NetworkInterface(x=0, y=0, kx=2, ky=2)


VERILOG_TOPS = {
    "noc_router": lambda: Router(x=1, y=1, kx=3, ky=3),
    "noc_mesh_2x2": lambda: Mesh(kx=2, ky=2),
    "noc_ni": _ni,
}
