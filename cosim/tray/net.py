"""Transport-level model of a tray system: golden NICs per chip port, seeded lossy wires,
a store-and-forward Ethernet switch, in continuous time (cycles of the NIC clock).

Every chip has ``spec.tray.PORTS`` port NICs (``golden.nic.Nic``); they share the chip's HBM
image (the same numpy array), as the NIC ports of one chip share its memory system. A wire
is one direction of a link: ``golden.nic.LossyLink`` decides each frame's fate (drop,
duplicate, reorder, corrupt) from its own seed, then the frame arrives ``link_latency``
cycles after its last byte left. A transmitter sends one frame at a time; a frame of L bytes
occupies it (L + preamble/SFD + IFG) / link_bytes_per_cycle cycles. The NICs' retransmission
timers tick every ``tick_cycles``.
"""

from __future__ import annotations

import heapq
from collections import deque

import numpy as np

from golden import nic as G
from spec import nic as S
from spec import tray as T


class Sim:
    """A minimal discrete-event scheduler (time in cycles, float)."""

    def __init__(self):
        self.t = 0.0
        self._q: list = []
        self._seq = 0

    def at(self, t: float, fn, *args) -> None:
        self._seq += 1
        heapq.heappush(self._q, (t, self._seq, fn, args))

    def step(self) -> bool:
        if not self._q:
            return False
        t, _, fn, args = heapq.heappop(self._q)
        self.t = t
        fn(*args)
        return True

    def pending(self) -> int:
        return len(self._q)


class Wire:
    """One direction of a link: the seeded fault model, then a fixed latency."""

    def __init__(self, sim: Sim, name: str, link: G.LossyLink, latency: int):
        self.sim, self.name, self.link, self.latency = sim, name, link, latency
        self.dst = None        # endpoint with .receive(frame)
        self.in_flight = 0

    def send(self, frame: bytes, t_end: float) -> None:
        for g in self.link.fate(frame):
            self._arrive_at(t_end + self.latency, g)

    def flush(self) -> None:
        for g in self.link.flush():
            self._arrive_at(self.sim.t + self.latency, g)

    def _arrive_at(self, t: float, frame: bytes) -> None:
        self.in_flight += 1
        self.sim.at(t, self._arrive, frame)

    def _arrive(self, frame: bytes) -> None:
        self.in_flight -= 1
        self.dst.receive(frame)


def wire_cycles(frame: bytes, rate: int) -> float:
    return (len(frame) + S.ETH_OVERHEAD_WIRE) / rate


class NicPort:
    """A chip port: a golden NIC whose transmitter drives ``out``."""

    def __init__(self, sim: Sim, rank: int, port: int, nic: G.Nic, rate: int, on_rx):
        self.sim, self.rank, self.port, self.nic, self.rate = sim, rank, port, nic, rate
        self.out: Wire | None = None
        self.tx_busy = False
        self.on_rx = on_rx

    def kick(self) -> None:
        if self.tx_busy or self.out is None:
            return
        f = self.nic.transmit()
        if f is None:
            self.out.flush()               # a held (reordered) frame leaves when idle
            return
        self.tx_busy = True
        t_end = self.sim.t + wire_cycles(f, self.rate)
        self.out.send(f, t_end)
        self.sim.at(t_end, self._tx_done)

    def _tx_done(self) -> None:
        self.tx_busy = False
        self.kick()

    def receive(self, frame: bytes) -> None:
        self.nic.receive(frame)
        self.kick()
        self.on_rx(self.rank)


class Switch:
    """Store-and-forward Ethernet switch: a frame is forwarded after it has been received
    whole (bad FCS: dropped), ``latency`` cycles later, to the egress port its destination
    MAC was learned on (unknown: flooded to every other port); each egress port sends one
    frame at a time from a FIFO of at most ``buffer`` bytes (tail drop beyond)."""

    def __init__(self, sim: Sim, n_ports: int, rate: int, latency: int, buffer: int):
        self.sim, self.rate, self.latency, self.buffer = sim, rate, latency, buffer
        self.table: dict[int, int] = {}
        self.out: list[Wire | None] = [None] * n_ports
        self.queues = [deque() for _ in range(n_ports)]
        self.qbytes = [0] * n_ports
        self.busy = [False] * n_ports
        self.counters = dict(rx_frames=0, rx_fcs_err=0, flooded=0, tail_drop=0, tx_frames=0)

    def ingress(self, port: int):
        sw = self

        class _In:
            def receive(self, frame: bytes) -> None:
                sw._receive(port, frame)
        return _In()

    def _receive(self, port: int, frame: bytes) -> None:
        self.counters["rx_frames"] += 1
        if len(frame) < S.ETH_MIN_FRAME or G.crc32(frame) != 0x2144DF1C:
            self.counters["rx_fcs_err"] += 1
            return
        self.table[int.from_bytes(frame[6:12], "big")] = port
        dst = self.table.get(int.from_bytes(frame[0:6], "big"))
        if dst is None:
            self.counters["flooded"] += 1
            outs = [q for q in range(len(self.out)) if q != port and self.out[q] is not None]
        else:
            outs = [dst] if dst != port else []
        for q in outs:
            self.sim.at(self.sim.t + self.latency, self._enqueue, q, frame)

    def _enqueue(self, q: int, frame: bytes) -> None:
        if self.qbytes[q] + len(frame) > self.buffer:
            self.counters["tail_drop"] += 1
            return
        self.queues[q].append(frame)
        self.qbytes[q] += len(frame)
        self._kick(q)

    def _kick(self, q: int) -> None:
        if self.busy[q] or not self.queues[q]:
            if not self.busy[q] and self.out[q] is not None:
                self.out[q].flush()
            return
        f = self.queues[q].popleft()
        self.qbytes[q] -= len(f)
        self.busy[q] = True
        self.counters["tx_frames"] += 1
        t_end = self.sim.t + wire_cycles(f, self.rate)
        self.out[q].send(f, t_end)
        self.sim.at(t_end, self._done, q)

    def _done(self, q: int) -> None:
        self.busy[q] = False
        self._kick(q)

    def idle(self) -> bool:
        return not any(self.queues) and not any(self.busy)


def _psn(src: int, dst: int) -> int:
    """Initial PSN of the connection src -> dst: near the 24-bit wrap, so long runs wrap."""
    return (0xFFFF00 + 16 * src + dst) & S.PSN_MASK


class Network:
    """The tray system's transport: per-chip HBM images, port NICs, wires, the switch.

    ``faults``: drop/dup/reorder/corrupt probabilities applied to every wire, each wire
    seeded from ``seed`` and its index. ``cut``: links that lose every frame, each either
    (rank_a, rank_b) of one tray (the mesh link, both directions) or ("uplink", rank)
    (that chip's uplink, both directions)."""

    def __init__(self, p: T.TrayParams, *, seed: int = 0, faults: dict | None = None,
                 cut=(), on_rx=None):
        if p.trays == 2 and p.nic.n_qps < T.CHIPS_PER_TRAY:
            raise ValueError(f"p: two trays need nic.n_qps >= {T.CHIPS_PER_TRAY} (one uplink "
                             f"queue pair per remote chip), got {p.nic.n_qps}")
        self.p = p
        self.sim = Sim()
        faults = dict(faults or {})
        for k in faults:
            if k not in ("drop", "dup", "reorder", "corrupt"):
                raise ValueError(f"faults: unknown fault {k!r}; use drop, dup, reorder, corrupt")
        cut_set = set()
        for c in cut:
            if (isinstance(c, tuple) and len(c) == 2 and c[0] == "uplink"
                    and isinstance(c[1], int) and 0 <= c[1] < p.n_ranks):
                cut_set.add(("uplink", c[1]))
            elif (isinstance(c, tuple) and len(c) == 2 and all(isinstance(x, int) for x in c)
                  and all(0 <= x < p.n_ranks for x in c) and c[0] != c[1]
                  and T.tray_of(c[0]) == T.tray_of(c[1])):
                cut_set.add(tuple(sorted(c)))
            else:
                raise ValueError(f"cut: {c!r} is neither (rank_a, rank_b) of one tray nor "
                                 f"('uplink', rank)")
        self.on_rx = on_rx or (lambda rank: None)
        self.mems = {r: np.zeros(p.mem_bytes, dtype=np.uint8) for r in range(p.n_ranks)}
        self.ports: dict[tuple, NicPort] = {}
        rate = p.link_bytes_per_cycle
        for r in range(p.n_ranks):
            for port in range(T.PORTS):
                nic = G.Nic(p.nic, mac=T.port_mac(r, port), ip=T.port_ip(r, port), mem_size=8,
                            timeout=p.timeout_ticks, retry_limit=p.retry_limit)
                nic.mem = self.mems[r]          # every port of a chip shares its HBM
                nic.set_window(0, base=0, length=p.ring_base, key=T.RKEY,
                               perm=S.PERM_VALID | S.PERM_REMOTE_WRITE)
                self.ports[(r, port)] = NicPort(self.sim, r, port, nic, rate,
                                                lambda rank: self.on_rx(rank))
        for r in range(p.n_ranks):
            for s in range(p.n_ranks):
                if s == r:
                    continue
                rt = T.route(r, s, p.n_ranks)
                base = T.ring_addr(p, rt.port, rt.qp)
                self.ports[(r, rt.port)].nic.setup_qp(
                    rt.qp, dest_qpn=S.QPN_BASE + rt.peer_qp, dest_mac=T.port_mac(s, rt.peer_port),
                    dest_ip=T.port_ip(s, rt.peer_port), sq_base=base + T.SQ_OFF,
                    sq_log2=T.SQ_LOG2, cq_base=base + T.CQ_OFF, cq_log2=T.CQ_LOG2,
                    rq_base=base + T.RQ_OFF, rq_log2=T.RQ_LOG2, rq_slot_log2=T.RQ_SLOT_LOG2,
                    sq_psn=_psn(r, s), rq_psn=_psn(s, r))
        self.wires: list[Wire] = []

        def wire(name, cut_it):
            f = dict(drop=1.0) if cut_it else faults
            w = Wire(self.sim, name, G.LossyLink(seed * 1000 + len(self.wires), **f),
                     p.link_latency)
            self.wires.append(w)
            return w

        for r in range(p.n_ranks):
            for port, c in enumerate(T.mesh_peers(T.chip_of(r))):
                s = T.rank_of(T.tray_of(r), c)
                w = wire(f"r{r}p{port}->r{s}", tuple(sorted((r, s))) in cut_set)
                w.dst = self.ports[(s, T.mesh_peers(c).index(T.chip_of(r)))]
                self.ports[(r, port)].out = w
        self.switch = Switch(self.sim, p.n_ranks, rate, p.switch_latency, p.switch_buffer)
        if p.trays > 1:
            for r in range(p.n_ranks):
                up = ("uplink", r) in cut_set
                w = wire(f"r{r}up->sw{r}", up)
                w.dst = self.switch.ingress(r)
                self.ports[(r, T.UPLINK)].out = w
                w2 = wire(f"sw{r}->r{r}up", up)
                w2.dst = self.ports[(r, T.UPLINK)]
                self.switch.out[r] = w2

    def nic(self, rank: int, port: int) -> G.Nic:
        return self.ports[(rank, port)].nic

    def kick_all(self) -> None:
        for pt in self.ports.values():
            pt.kick()

    def tick(self) -> None:
        for pt in self.ports.values():
            pt.nic.tick()
        self.kick_all()

    def quiet(self) -> bool:
        """No NIC has work, no frame is on a wire, the switch is empty."""
        return (not any(pt.nic.busy() or pt.tx_busy for pt in self.ports.values())
                and not any(w.in_flight or w.link.held for w in self.wires)
                and self.switch.idle())

    def counters(self, name: str) -> int:
        return sum(pt.nic.counters[name] for pt in self.ports.values())

    def fault_log(self) -> dict:
        out: dict = {}
        for w in self.wires:
            for kind, _ in w.link.log:
                out[kind] = out.get(kind, 0) + 1
        return out
