"""Pieces shared by the cocotb benches whose NIC wires meet in Python (the NIC pair, the chip
pair, the chip against a Python peer, the 4-chip tray, the NIC against cocotbext-eth):
the clock period, the cycle counter, quieting cocotbext-axi's per-transaction logging, and
the lossy link that moves frames from one wire's AXI-Stream sink to another's source through
a ``golden.nic.LossyLink`` (drop, duplicate, reorder, corrupt)."""

from __future__ import annotations

import logging

from cocotb.triggers import ClockCycles
from cocotb.utils import get_sim_time
from cocotbext.axi import AxiStreamFrame

PERIOD_NS = 10          # every bench's clock: 100 MHz in simulated time, one cycle = 10 ns
LINK_POLL = 4           # the link looks at its sink every 4 cycles
FLUSH_AFTER = 64        # a frame held back for reordering is let go after 64 idle polls


def cycle() -> int:
    """The current simulated time in clock cycles."""
    return int(get_sim_time("ns")) // PERIOD_NS


def quiet(obj) -> None:
    """Silence a cocotbext-axi model's per-transaction INFO logging (it dominates run time
    on long benches); warnings still show."""
    for ch in ("write_if", "read_if"):
        x = getattr(obj, ch, None)
        if x is not None:
            x.log.setLevel(logging.WARNING)
    if hasattr(obj, "log"):
        obj.log.setLevel(logging.WARNING)


async def lossy_link(clk, sink, source, lossy, sent: list, state: dict, key, tag=()) -> None:
    """Forever: frames the transmitter's ``sink`` (cocotbext-axi AxiStreamSink) collected go
    through ``lossy.fate`` to the receiver's ``source`` (AxiStreamSource); each sent frame is
    logged in ``sent`` as ``(cycle, *tag, frame)``. ``state[key]`` is True while the link
    holds nothing (sink and source empty and idle, no frame held back)."""
    idle_polls = 0
    while True:
        await ClockCycles(clk, LINK_POLL)
        if not sink.empty():
            frame = bytes(sink.recv_nowait().tdata)
            sent.append((cycle(), *tag, frame))
            for g in lossy.fate(frame):
                await source.send(AxiStreamFrame(g))
            idle_polls = 0
        else:
            idle_polls += 1
            if lossy.held is not None and idle_polls > FLUSH_AFTER:
                for g in lossy.flush():
                    await source.send(AxiStreamFrame(g))
        state[key] = sink.empty() and source.empty() and source.idle() and lossy.held is None
