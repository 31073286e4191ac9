"""Wire-side stream formats of the NIC.

Inside the NIC every frame travels as a ``lib.stream`` of :data:`Beat` (64-bit data, byte
keep, last). Byte ``i`` of a beat is ``data[8*i:8*i+8]`` (AXI-Stream byte order: the first
frame byte is in the low lanes); ``keep`` is contiguous from lane 0 and only the last beat of
a frame may have fewer than 8 bytes. At the block boundary the same beats appear as flat
AXI-Stream ports (``tdata``/``tkeep``/``tlast``/``tvalid``/``tready``) so that cocotbext-axi
AxiStreamSource/Sink and peer NICs attach directly."""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Signal, Value
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

DATA_BYTES = 8
Beat = data.StructLayout({"data": 8 * DATA_BYTES, "keep": DATA_BYTES, "last": 1})
BeatStream = stream.Signature(Beat)


class AXIStreamSignature(wiring.Signature):
    """Flat AXI4-Stream (transmitter view): tdata, tkeep, tlast, tvalid, tready."""

    def __init__(self, data_bytes: int = DATA_BYTES):
        super().__init__({"tdata": Out(8 * data_bytes), "tkeep": Out(data_bytes),
                          "tlast": Out(1), "tvalid": Out(1), "tready": In(1)})


def axis_from_stream(m, axis, s) -> None:
    """Drive the flat AXI-Stream transmitter ``axis`` from the Beat stream ``s``."""
    m.d.comb += [axis.tdata.eq(s.payload.data), axis.tkeep.eq(s.payload.keep),
                 axis.tlast.eq(s.payload.last), axis.tvalid.eq(s.valid), s.ready.eq(axis.tready)]


def stream_from_axis(m, s, axis) -> None:
    """Drive the Beat stream ``s`` from the flat AXI-Stream ``axis`` (a receiver port)."""
    m.d.comb += [s.payload.data.eq(axis.tdata), s.payload.keep.eq(axis.tkeep),
                 s.payload.last.eq(axis.tlast), s.valid.eq(axis.tvalid), axis.tready.eq(s.ready)]


def popcount(m, keep, name: str = "nbytes"):
    """Number of bytes in a contiguous keep mask, as a combinational Signal of ``m``."""
    n = Signal(4, name=name)
    k = Value.cast(keep)
    m.d.comb += n.eq(sum(k[i] for i in range(len(k))))
    return n


def keep_mask(n, width: int = DATA_BYTES):
    """Contiguous keep mask of ``n`` (0..width) bytes."""
    n = Value.cast(n)
    return Cat(*[(n > i) if i < (1 << len(n)) - 1 else Const(0, 1) for i in range(width)])
