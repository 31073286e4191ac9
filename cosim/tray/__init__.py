"""Transport-level co-simulation of the tray (no RTL yet; docs/tray.md).

``Tray(params, seed=..., faults=..., cut=...)`` builds the network of cosim/tray/net.py
(golden NICs per chip port, seeded lossy wires, the switch between two trays' uplinks);
``Tray.collective(entry)`` runs one COLLECTIVE command on every rank of its group with the
engine of cosim/tray/engine.py, moving real RoCEv2 frames, and returns a
:class:`CollectiveResult`. Load inputs with ``tray.mems[rank][addr:...] = ...``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cosim.tray.engine import Engine
from cosim.tray.net import Network
from spec import chip as C
from spec import tray as T

__all__ = ["Tray", "CollectiveResult", "TrayHang"]


class TrayHang(RuntimeError):
    """The model ran past ``max_cycles`` without every engine finishing (a model bug: the
    engines' timeouts exist so that this never happens)."""


@dataclass
class CollectiveResult:
    status: dict                 # rank -> (queue error code, detail)
    cycles: float                # start -> the last rank's engine finished
    done_at: dict                # rank -> cycle its engine finished
    retransmits: int             # request packets the NICs sent again
    timeouts: int                # NIC retransmission timer expiries
    faults: dict                 # fate -> frames, over every wire
    counters: dict = field(default_factory=dict)   # summed NIC counters
    switch: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return all(e == C.ERR_NONE for e, _ in self.status.values())


class Tray:
    def __init__(self, params: T.TrayParams | None = None, *, seed: int = 0,
                 faults: dict | None = None, cut=()):
        self.p = params or T.TrayParams()
        self.engines: dict = {}
        self.net = Network(self.p, seed=seed, faults=faults, cut=cut, on_rx=self._on_rx)
        self.mems = self.net.mems
        self.seq = 0

    def _on_rx(self, rank: int) -> None:
        e = self.engines.get(rank)
        if e is not None:
            e.poll()

    def _tick(self) -> None:
        self.net.tick()
        for e in self.engines.values():
            e.poll()
            e.check_timeout()
        if not self._finished():
            self.net.sim.at(self.net.sim.t + self.p.tick_cycles, self._tick)

    def _finished(self) -> bool:
        return all(e.status is not None for e in self.engines.values()) and self.net.quiet()

    def collective(self, entry: bytes, *, max_cycles: float = 5e7) -> CollectiveResult:
        """Submit ``entry`` to every rank of its group (as each chip's host would) and run
        until every engine finished and the network is quiet."""
        if not isinstance(entry, (bytes, bytearray)) or len(entry) != C.ENTRY_BYTES:
            raise ValueError(f"entry: must be {C.ENTRY_BYTES} bytes")
        d, _ = T.decode(bytes(entry))
        before = {k: self.net.counters(k) for k in ("retransmits", "timeouts")}
        faults0 = self.net.fault_log()
        status = {}
        self.engines = {}
        t0 = self.net.sim.t
        for r in d.group:
            if r >= self.p.n_ranks:
                continue
            err = T.check(bytes(entry), r, self.p)
            if err != C.ERR_NONE:
                status[r] = (err, 0)
            else:
                self.engines[r] = Engine(self.net, r, d, self.seq)
        self.seq += 1
        for e in self.engines.values():
            e.start()
        self.net.sim.at(t0 + self.p.tick_cycles, self._tick)
        while not self._finished():
            if not self.net.sim.step():
                break
            if self.net.sim.t - t0 > max_cycles:
                raise TrayHang(f"collective still running after {max_cycles:.0f} cycles: "
                               f"engines {[(r, e.k, e.status) for r, e in self.engines.items()]}")
        # drain stale events (the tick chain) so the next command starts clean
        while self.net.sim.pending():
            self.net.sim.step()
        for r, e in self.engines.items():
            status[r] = e.status
        done_at = {r: e.t_done - t0 for r, e in self.engines.items()}
        faults1 = self.net.fault_log()
        return CollectiveResult(
            status=status, cycles=max(done_at.values(), default=0.0), done_at=done_at,
            retransmits=self.net.counters("retransmits") - before["retransmits"],
            timeouts=self.net.counters("timeouts") - before["timeouts"],
            faults={k: faults1.get(k, 0) - faults0.get(k, 0) for k in faults1},
            counters={k: self.net.counters(k) for k in ("tx_frames", "rx_frames", "rx_fcs_err",
                                                        "rx_dup", "rx_seq_err", "rx_foreign",
                                                        "tx_nak_seq", "wqe_done")},
            switch=dict(self.net.switch.counters))
