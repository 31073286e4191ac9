"""AXI4 and AXI4-Lite interface signatures, shared by every block with a memory or CSR port.

Signals are named as in the AMBA AXI specification, seen from the manager (master): members
driven by the manager are ``Out``, by the subordinate ``In``. A subordinate port is
``In(AXI4Signature(...))`` (i.e. the flipped signature).

In generated Verilog a port named ``m_axi`` becomes ``m_axi__awaddr``, ``m_axi__awvalid``...;
cocotbext-axi finds them with ``AxiBus.from_prefix(dut, "m_axi_")`` (the prefix plus its own
``_`` gives the double underscore).

Only the signals the project uses are present: AXI4 has no region/qos/user signals; burst
type is INCR or FIXED; lock/cache/prot are present so real interconnects can be attached.
"""

from __future__ import annotations

from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = ["AXI4Signature", "AXI4LiteSignature", "RESP_OKAY", "RESP_EXOKAY", "RESP_SLVERR",
           "RESP_DECERR", "BURST_FIXED", "BURST_INCR"]

RESP_OKAY, RESP_EXOKAY, RESP_SLVERR, RESP_DECERR = 0, 1, 2, 3
BURST_FIXED, BURST_INCR, BURST_WRAP = 0, 1, 2


def _check(name: str, value: int, allowed) -> int:
    if not isinstance(value, int) or value not in allowed:
        raise ValueError(f"{name} must be one of {sorted(allowed)}, not {value!r}")
    return value


class AXI4Signature(wiring.Signature):
    """Full AXI4 (manager view). Parameters: addr_width, data_width (8..1024, power of two),
    id_width (>= 1)."""

    def __init__(self, *, addr_width: int = 32, data_width: int = 64, id_width: int = 4):
        _check("addr_width", addr_width, range(12, 65))
        _check("data_width", data_width, {8, 16, 32, 64, 128, 256, 512, 1024})
        _check("id_width", id_width, range(1, 17))
        self._addr_width, self._data_width, self._id_width = addr_width, data_width, id_width
        strb = data_width // 8
        super().__init__({
            "awid": Out(id_width), "awaddr": Out(addr_width), "awlen": Out(8),
            "awsize": Out(3), "awburst": Out(2), "awlock": Out(1), "awcache": Out(4),
            "awprot": Out(3), "awvalid": Out(1), "awready": In(1),
            "wdata": Out(data_width), "wstrb": Out(strb), "wlast": Out(1),
            "wvalid": Out(1), "wready": In(1),
            "bid": In(id_width), "bresp": In(2), "bvalid": In(1), "bready": Out(1),
            "arid": Out(id_width), "araddr": Out(addr_width), "arlen": Out(8),
            "arsize": Out(3), "arburst": Out(2), "arlock": Out(1), "arcache": Out(4),
            "arprot": Out(3), "arvalid": Out(1), "arready": In(1),
            "rid": In(id_width), "rdata": In(data_width), "rresp": In(2), "rlast": In(1),
            "rvalid": In(1), "rready": Out(1),
        })

    addr_width = property(lambda self: self._addr_width)
    data_width = property(lambda self: self._data_width)
    id_width = property(lambda self: self._id_width)

    def __eq__(self, other):
        return (isinstance(other, AXI4Signature) and self.addr_width == other.addr_width
                and self.data_width == other.data_width and self.id_width == other.id_width)

    def __hash__(self):
        return hash((AXI4Signature, self.addr_width, self.data_width, self.id_width))

    def __repr__(self):
        return (f"AXI4Signature(addr_width={self.addr_width}, data_width={self.data_width}, "
                f"id_width={self.id_width})")


class AXI4LiteSignature(wiring.Signature):
    """AXI4-Lite (manager view). Parameters: addr_width, data_width (32 or 64)."""

    def __init__(self, *, addr_width: int = 16, data_width: int = 32):
        _check("addr_width", addr_width, range(4, 65))
        _check("data_width", data_width, {32, 64})
        self._addr_width, self._data_width = addr_width, data_width
        super().__init__({
            "awaddr": Out(addr_width), "awprot": Out(3), "awvalid": Out(1), "awready": In(1),
            "wdata": Out(data_width), "wstrb": Out(data_width // 8), "wvalid": Out(1),
            "wready": In(1),
            "bresp": In(2), "bvalid": In(1), "bready": Out(1),
            "araddr": Out(addr_width), "arprot": Out(3), "arvalid": Out(1), "arready": In(1),
            "rdata": In(data_width), "rresp": In(2), "rvalid": In(1), "rready": Out(1),
        })

    addr_width = property(lambda self: self._addr_width)
    data_width = property(lambda self: self._data_width)

    def __eq__(self, other):
        return (isinstance(other, AXI4LiteSignature) and self.addr_width == other.addr_width
                and self.data_width == other.data_width)

    def __hash__(self):
        return hash((AXI4LiteSignature, self.addr_width, self.data_width))

    def __repr__(self):
        return f"AXI4LiteSignature(addr_width={self.addr_width}, data_width={self.data_width})"
