"""The Ethernet switch between the uplinks of two RTL trays (docs/tray.md "RTL tray",
issue #8's second tier): store-and-forward by destination MAC with a static forwarding
table (switch port k <- the MAC of the uplink on port k), one FIFO per output port with a
byte limit (tail drop), frames with a bad FCS or an unknown destination dropped and counted.

:class:`SwitchModel` is the switch itself, plain Python (no simulator; unit-tested in
tests/test_tray_rtl.py). :func:`run_switch` is the cocotb coroutine of the two-tray bench
(cosim/tray/rtl_bench.py): it moves frames from every uplink's ``wire_tx`` sink (through an
optional seeded ``golden.nic.LossyLink`` per ingress: drop, duplicate, reorder, corrupt)
into the model, and from each output FIFO to that uplink's ``wire_rx`` source, one frame in
the source at a time, so the queueing happens in the model's FIFOs.

Differences from the transport model's ``cosim.tray.net.Switch`` (its reference): the table
is static (no learning, no flooding: an unknown destination is dropped and counted), and
there is no modelled latency or port rate (the RTL wires set the pace).
"""

from __future__ import annotations

from collections import deque

from golden import nic as G
from spec import nic as S

__all__ = ["SwitchModel", "COUNTERS", "run_switch"]

FCS_RESIDUE = 0x2144DF1C        # CRC-32 of a frame followed by its own FCS
COUNTERS = ("rx_frames", "fcs_err", "unknown_dst", "same_port", "tail_drop", "tx_frames")


class SwitchModel:
    """``table``: destination MAC (48-bit int) -> output port; ``n_ports`` ports;
    ``buffer``: bytes each output FIFO may hold (a frame that would exceed it is dropped,
    ``tail_drop``). :meth:`receive` takes one whole frame (with its FCS) arriving on a port;
    :meth:`pop` hands out the next frame of an output FIFO."""

    def __init__(self, table: dict, n_ports: int, *, buffer: int = 64 * 1024):
        if isinstance(n_ports, bool) or not isinstance(n_ports, int) or n_ports < 1:
            raise ValueError(f"n_ports: must be an int >= 1, got {n_ports!r}")
        if isinstance(buffer, bool) or not isinstance(buffer, int) or buffer < S.ETH_MIN_FRAME:
            raise ValueError(f"buffer: must be an int >= {S.ETH_MIN_FRAME} bytes, got {buffer!r}")
        if not isinstance(table, dict):
            raise ValueError(f"table: must be a dict MAC -> port, got {type(table).__name__}")
        for mac, port in table.items():
            if isinstance(mac, bool) or not isinstance(mac, int) or not 0 <= mac < 1 << 48:
                raise ValueError(f"table: MAC must be a 48-bit int, got {mac!r}")
            if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port < n_ports:
                raise ValueError(f"table: port of MAC {mac:#014x} must be in 0..{n_ports - 1}, "
                                 f"got {port!r}")
        self.table = dict(table)
        self.n_ports, self.buffer = n_ports, buffer
        self.queues: list[deque] = [deque() for _ in range(n_ports)]
        self.qbytes = [0] * n_ports
        self.max_qbytes = [0] * n_ports        # high-water mark of each output FIFO
        self.max_qframes = [0] * n_ports
        self.counters = dict.fromkeys(COUNTERS, 0)

    def _port(self, port) -> int:
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port < self.n_ports:
            raise ValueError(f"port: must be in 0..{self.n_ports - 1}, got {port!r}")
        return port

    def receive(self, port: int, frame: bytes) -> int | None:
        """One frame in on ``port``: the output port it was queued on, or None (dropped)."""
        self._port(port)
        if not isinstance(frame, (bytes, bytearray)):
            raise ValueError(f"frame: must be bytes, got {type(frame).__name__}")
        self.counters["rx_frames"] += 1
        if len(frame) < S.ETH_MIN_FRAME or G.crc32(bytes(frame)) != FCS_RESIDUE:
            self.counters["fcs_err"] += 1
            return None
        out = self.table.get(int.from_bytes(frame[0:6], "big"))
        if out is None:
            self.counters["unknown_dst"] += 1
            return None
        if out == port:
            self.counters["same_port"] += 1
            return None
        if self.qbytes[out] + len(frame) > self.buffer:
            self.counters["tail_drop"] += 1
            return None
        self.queues[out].append(bytes(frame))
        self.qbytes[out] += len(frame)
        self.max_qbytes[out] = max(self.max_qbytes[out], self.qbytes[out])
        self.max_qframes[out] = max(self.max_qframes[out], len(self.queues[out]))
        return out

    def pop(self, port: int) -> bytes | None:
        """The oldest frame queued for output ``port`` (None when its FIFO is empty)."""
        q = self.queues[self._port(port)]
        if not q:
            return None
        f = q.popleft()
        self.qbytes[port] -= len(f)
        self.counters["tx_frames"] += 1
        return f

    def empty(self) -> bool:
        return not any(self.queues)


async def run_switch(clk, model: SwitchModel, sinks: list, sources: list, lossy: list,
                     sent: list, state: dict, key) -> None:
    """Forever, every ``cosim.linkbench.LINK_POLL`` cycles: a frame that switch port k's
    ``sinks[k]`` (cocotbext-axi AxiStreamSink on the uplink's ``wire_tx``) collected goes
    through ``lossy[k]`` (golden.nic.LossyLink) into ``model.receive(k, ...)`` and is logged
    in ``sent`` as ``(cycle, k, frame)``; an output port whose ``sources[k]`` is empty and
    idle gets the next frame of its FIFO. ``state[key]`` is True while the switch holds
    nothing (sinks, FIFOs and sources empty, no frame held back for reordering)."""
    from cocotb.triggers import ClockCycles
    from cocotbext.axi import AxiStreamFrame

    from cosim.linkbench import FLUSH_AFTER, LINK_POLL, cycle

    idle = [0] * len(sinks)
    while True:
        await ClockCycles(clk, LINK_POLL)
        for k, sink in enumerate(sinks):
            if not sink.empty():
                frame = bytes(sink.recv_nowait().tdata)
                sent.append((cycle(), k, frame))
                for g in lossy[k].fate(frame):
                    model.receive(k, g)
                idle[k] = 0
            else:
                idle[k] += 1
                if lossy[k].held is not None and idle[k] > FLUSH_AFTER:
                    for g in lossy[k].flush():
                        model.receive(k, g)
        for k, src in enumerate(sources):
            if src.empty() and src.idle():
                f = model.pop(k)
                if f is not None:
                    src.send_nowait(AxiStreamFrame(f))
        state[key] = (model.empty() and all(s.empty() for s in sinks)
                      and all(s.empty() and s.idle() for s in sources)
                      and all(lk.held is None for lk in lossy))
