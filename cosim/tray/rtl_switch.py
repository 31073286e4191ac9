"""The Ethernet switch between the uplinks of two RTL trays (docs/tray.md "Two trays in RTL",
issue #8's second tier): store-and-forward by destination MAC, one FIFO per output port with
a byte limit (tail drop), frames with a bad FCS dropped and counted. Forwarding is either by
a static table (switch port k <- the MAC of the uplink on port k; an unknown destination is
dropped and counted) or, with ``learning=True``, like an unmanaged L2 switch: the source MAC
of every good frame is learned on its ingress port, a known unicast destination goes to its
port, an unknown one and every group (broadcast/multicast) address is flooded to every other
port, entries move when a MAC shows up on another port and, with ``ageing``, expire.

:class:`SwitchModel` is the switch itself, plain Python (no simulator; unit-tested in
tests/test_tray_switch.py). :func:`run_switch` is the cocotb coroutine of the two-tray bench
(cosim/tray/rtl_bench.py): it moves frames from every uplink's ``wire_tx`` sink (through an
optional seeded ``golden.nic.LossyLink`` per ingress: drop, duplicate, reorder, corrupt)
into the model, and from each output FIFO to that uplink's ``wire_rx`` source, one frame in
the source at a time, so the queueing happens in the model's FIFOs. A port's wires can be
cut (:meth:`SwitchModel.set_cut`: every frame on the chip -> switch wire, the switch -> chip
wire, or both, lost), for the whole run or for a window of cycles.

Differences from the transport model's ``cosim.tray.net.Switch`` (its reference for
learning and flooding): the static table is an option (and the default of the RTL runner),
group addresses are always flooded, entries can age out, and there is no modelled latency or
port rate (the RTL wires set the pace).
"""

from __future__ import annotations

from collections import deque

from golden import nic as G
from spec import nic as S

__all__ = ["SwitchModel", "COUNTERS", "run_switch"]

FCS_RESIDUE = 0x2144DF1C        # CRC-32 of a frame followed by its own FCS
# the first six are the static switch's (their order is the bench's output order); then:
# flooded     frames flooded (learning: unknown unicast or group destination)
# flood_copies  copies of flooded frames queued (one per other port that took it)
# learned     table entries created by learning
# moved       learned entries whose port changed (a MAC seen on another port)
# aged        learned entries expired (``ageing``)
# cut_drop    frames lost on a cut wire (ingress: before the switch; egress: not sent)
COUNTERS = ("rx_frames", "fcs_err", "unknown_dst", "same_port", "tail_drop", "tx_frames",
            "flooded", "flood_copies", "learned", "moved", "aged", "cut_drop")


def _is_int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


class SwitchModel:
    """``table``: destination MAC (48-bit int) -> output port, the static entries;
    ``n_ports`` ports; ``buffer``: bytes each output FIFO may hold (a frame, or a flooded
    copy, that would exceed it is dropped, ``tail_drop``). ``learning``: False (default) =
    static forwarding only (an unknown destination is dropped, ``unknown_dst``); True = learn
    source MACs, flood unknown unicast and group destinations to every other port (static
    entries, if any, take precedence and never move). ``ageing``: with learning, a learned
    entry not refreshed by a frame from that MAC for ``ageing`` time units (the ``now`` of
    :meth:`receive`, cycles in the bench) is forgotten; None = never.

    :meth:`receive` takes one whole frame (with its FCS) arriving on a port; :meth:`pop`
    hands out the next frame of an output FIFO; :meth:`set_cut` cuts a port's wires."""

    def __init__(self, table: dict, n_ports: int, *, buffer: int = 64 * 1024,
                 learning: bool = False, ageing: int | None = None):
        if not _is_int(n_ports) or n_ports < 1:
            raise ValueError(f"n_ports: must be an int >= 1, got {n_ports!r}")
        if not _is_int(buffer) or buffer < S.ETH_MIN_FRAME:
            raise ValueError(f"buffer: must be an int >= {S.ETH_MIN_FRAME} bytes, got {buffer!r}")
        if not isinstance(table, dict):
            raise ValueError(f"table: must be a dict MAC -> port, got {type(table).__name__}")
        for mac, port in table.items():
            if not _is_int(mac) or not 0 <= mac < 1 << 48:
                raise ValueError(f"table: MAC must be a 48-bit int, got {mac!r}")
            if not _is_int(port) or not 0 <= port < n_ports:
                raise ValueError(f"table: port of MAC {mac:#014x} must be in 0..{n_ports - 1}, "
                                 f"got {port!r}")
        if not isinstance(learning, bool):
            raise ValueError(f"learning: must be True or False, got {learning!r}")
        if ageing is not None and (not _is_int(ageing) or ageing < 1):
            raise ValueError(f"ageing: must be None or an int >= 1, got {ageing!r}")
        if ageing is not None and not learning:
            raise ValueError("ageing: only with learning=True (static entries never age)")
        self.table = dict(table)                # static entries
        self.learned: dict[int, list] = {}      # MAC -> [port, last time seen]
        self.learning, self.ageing = learning, ageing
        self.n_ports, self.buffer = n_ports, buffer
        self.queues: list[deque] = [deque() for _ in range(n_ports)]
        self.qbytes = [0] * n_ports
        self.max_qbytes = [0] * n_ports        # high-water mark of each output FIFO
        self.max_qframes = [0] * n_ports
        self.cut_in = [False] * n_ports        # chip -> switch wire of the port loses frames
        self.cut_out = [False] * n_ports       # switch -> chip wire of the port loses frames
        self.counters = dict.fromkeys(COUNTERS, 0)
        self.flood_log: list[tuple[int, int]] = []   # (rx_frames index, destination MAC)
        self.learn_log: list[tuple[int, int, int]] = []  # (rx_frames index, MAC, port)

    def _port(self, port) -> int:
        if not _is_int(port) or not 0 <= port < self.n_ports:
            raise ValueError(f"port: must be in 0..{self.n_ports - 1}, got {port!r}")
        return port

    def lookup(self, mac: int, now: int = 0) -> int | None:
        """The output port of destination ``mac`` (static entry first, then a learned one
        that has not aged out at time ``now``), or None."""
        if mac in self.table:
            return self.table[mac]
        e = self.learned.get(mac)
        if e is None:
            return None
        if self.ageing is not None and now - e[1] >= self.ageing:
            del self.learned[mac]
            self.counters["aged"] += 1
            return None
        return e[0]

    def _learn(self, port: int, mac: int, now: int, seq: int) -> None:
        if mac >> 40 & 1 or mac in self.table:      # group address, or static: not learned
            return
        e = self.learned.get(mac)
        if e is not None and self.ageing is not None and now - e[1] >= self.ageing:
            del self.learned[mac]               # expired before this frame refreshed it
            self.counters["aged"] += 1
            e = None
        if e is None:
            self.counters["learned"] += 1
        elif e[0] != port:
            self.counters["moved"] += 1
        if e is None or e[0] != port:
            self.learn_log.append((seq, mac, port))
        self.learned[mac] = [port, now]

    def _enqueue(self, out: int, frame: bytes) -> bool:
        if self.cut_out[out]:
            self.counters["cut_drop"] += 1
            return False
        if self.qbytes[out] + len(frame) > self.buffer:
            self.counters["tail_drop"] += 1
            return False
        self.queues[out].append(frame)
        self.qbytes[out] += len(frame)
        self.max_qbytes[out] = max(self.max_qbytes[out], self.qbytes[out])
        self.max_qframes[out] = max(self.max_qframes[out], len(self.queues[out]))
        return True

    def receive(self, port: int, frame: bytes, now: int = 0) -> list[int]:
        """One frame in on ``port`` at time ``now``: the output ports it was queued on, in
        ascending order (empty: dropped; more than one: flooded)."""
        self._port(port)
        if not isinstance(frame, (bytes, bytearray)):
            raise ValueError(f"frame: must be bytes, got {type(frame).__name__}")
        if self.cut_in[port]:
            self.counters["cut_drop"] += 1
            return []
        seq = self.counters["rx_frames"]
        self.counters["rx_frames"] += 1
        if len(frame) < S.ETH_MIN_FRAME or G.crc32(bytes(frame)) != FCS_RESIDUE:
            self.counters["fcs_err"] += 1
            return []
        frame = bytes(frame)
        dst = int.from_bytes(frame[0:6], "big")
        if self.learning:
            self._learn(port, int.from_bytes(frame[6:12], "big"), now, seq)
        out = None if dst >> 40 & 1 and self.learning else self.lookup(dst, now)
        if out is None:
            if not self.learning:
                self.counters["unknown_dst"] += 1
                return []
            self.counters["flooded"] += 1
            self.flood_log.append((seq, dst))
            taken = [q for q in range(self.n_ports) if q != port and self._enqueue(q, frame)]
            self.counters["flood_copies"] += len(taken)
            return taken
        if out == port:
            self.counters["same_port"] += 1
            return []
        return [out] if self._enqueue(out, frame) else []

    def pop(self, port: int) -> bytes | None:
        """The oldest frame queued for output ``port`` (None when its FIFO is empty)."""
        q = self.queues[self._port(port)]
        if not q:
            return None
        f = q.popleft()
        self.qbytes[port] -= len(f)
        self.counters["tx_frames"] += 1
        return f

    def set_cut(self, port: int, *, ingress: bool, egress: bool) -> None:
        """Cut (True) or mend (False) the wires of ``port``: ``ingress`` the chip -> switch
        wire (its frames never reach the switch: nothing learned from them), ``egress`` the
        switch -> chip wire (frames for the port are lost: counted ``cut_drop``, the FIFO's
        queued frames too when the cut begins). The switch sees no link state: its table
        keeps every entry."""
        self._port(port)
        if not isinstance(ingress, bool) or not isinstance(egress, bool):
            raise ValueError(f"ingress, egress: must be True or False, got {ingress!r}, "
                             f"{egress!r}")
        self.cut_in[port] = ingress
        if egress and not self.cut_out[port]:
            self.counters["cut_drop"] += len(self.queues[port])
            self.queues[port].clear()
            self.qbytes[port] = 0
        self.cut_out[port] = egress

    def table_rows(self) -> list[tuple[int, int]]:
        """(MAC, port) of every entry, static and learned, sorted by MAC."""
        rows = dict(self.table)
        rows.update({m: e[0] for m, e in self.learned.items() if m not in self.table})
        return sorted(rows.items())

    def empty(self) -> bool:
        return not any(self.queues)


async def run_switch(clk, model: SwitchModel, sinks: list, sources: list, lossy: list,
                     sent: list, state: dict, key, cuts=(), t0: dict | None = None,
                     egress: list | None = None) -> None:
    """Forever, every ``cosim.linkbench.LINK_POLL`` cycles: a frame that switch port k's
    ``sinks[k]`` (cocotbext-axi AxiStreamSink on the uplink's ``wire_tx``) collected goes
    through ``lossy[k]`` (golden.nic.LossyLink) into ``model.receive(k, ..., now=cycle)``
    and is logged in ``sent`` as ``(cycle, k, frame)``; an output port whose ``sources[k]``
    is empty and idle gets the next frame of its FIFO. ``state[key]`` is True while the
    switch holds nothing (sinks, FIFOs and sources empty, no frame held back for
    reordering). ``cuts``: (port, ingress, egress, start, end) rows: from ``start`` to
    ``end`` cycles after ``t0["t"]`` (the doorbells; end < 0: to the end of the run) the
    port's wires are cut as :meth:`SwitchModel.set_cut` says, mended afterwards; nothing is
    cut before ``t0["t"]`` is set. ``egress``: if given, every frame an output port starts
    sending is logged there as ``(cycle, k, frame)``."""
    from cocotb.triggers import ClockCycles
    from cocotbext.axi import AxiStreamFrame

    from cosim.linkbench import FLUSH_AFTER, LINK_POLL, cycle

    idle = [0] * len(sinks)
    t0 = {} if t0 is None else t0
    cut_now = [(False, False)] * len(sinks)
    while True:
        await ClockCycles(clk, LINK_POLL)
        if cuts and "t" in t0:
            want = [(False, False)] * len(sinks)
            now = cycle() - t0["t"]
            for port, ing, egr, start, end in cuts:
                if now >= start and (end < 0 or now < end):
                    want[port] = (want[port][0] or bool(ing), want[port][1] or bool(egr))
            for k, (ing, egr) in enumerate(want):
                if (ing, egr) != cut_now[k]:
                    model.set_cut(k, ingress=ing, egress=egr)
            cut_now = want
        for k, sink in enumerate(sinks):
            if not sink.empty():
                frame = bytes(sink.recv_nowait().tdata)
                sent.append((cycle(), k, frame))
                for g in lossy[k].fate(frame):
                    model.receive(k, g, cycle())
                idle[k] = 0
            else:
                idle[k] += 1
                if lossy[k].held is not None and idle[k] > FLUSH_AFTER:
                    for g in lossy[k].flush():
                        model.receive(k, g, cycle())
        for k, src in enumerate(sources):
            if src.empty() and src.idle():
                f = model.pop(k)
                if f is not None:
                    src.send_nowait(AxiStreamFrame(f))
                    if egress is not None:
                        egress.append((cycle(), k, f))
        state[key] = (model.empty() and all(s.empty() for s in sinks)
                      and all(s.empty() and s.idle() for s in sources)
                      and all(lk.held is None for lk in lossy))
