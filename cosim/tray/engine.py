"""The collective engine of each chip, at transaction level, driving the port NICs of
cosim/tray/net.py with real work requests (docs/tray.md "Collective engine").

Per phase of spec.tray.plan, a rank: makes its local copies; for every destination posts
unsignaled RDMA WRITEs (at most ``wqe_max`` bytes each) of its transfers on the queue pair
that reaches that destination, then one signaled 8-byte SEND, the notification; waits until
every notification SEND it posted has completed (RC: the WRITEs before it are then
acknowledged too) and a notification of this phase has arrived from every rank that sends
to it; then runs its reductions (binary32, fixed rank order, golden.tvp add) and moves on.
A completion with an error status ends the command with ERR_COLLECTIVE (cause NIC); no
progress for ``engine_timeout`` cycles ends it with cause TIMEOUT. Notifications of an
earlier command (another sequence number) are ignored.
"""

from __future__ import annotations

import struct

import numpy as np

from golden import tvp
from spec import chip as C
from spec import nic as S
from spec import tile as TL
from spec import tray as T


class Engine:
    def __init__(self, net, rank: int, desc: T.Collective, seq: int):
        self.net, self.rank, self.d, self.seq = net, rank, desc, seq & 0xFFFF
        self.p = net.p
        self.mem = net.mems[rank]
        self.phases = T.plan(desc)
        self.k = -1
        self.status: tuple | None = None     # (error, detail) once finished
        self.t_done = None
        self.pending: dict = {}              # (port, qp) -> notification SENDs in flight
        self.got: dict = {}                  # phase -> set of source ranks notified
        self.expect: list = []
        for ph in self.phases:
            self.expect.append({t.src for t in ph.transfers if t.dst == rank})
        self.last_progress = 0.0
        self.rx_seen = 0
        self.cq_seen: dict = {}
        for port in range(T.PORTS):
            nic = net.nic(rank, port)
            for qp, q in enumerate(nic.qps):
                if q.ready:
                    self.cq_seen[(port, qp)] = q.cq_prod
        self.peer_of = {}
        for s in range(self.p.n_ranks):
            if s != rank:
                rt = T.route(rank, s, self.p.n_ranks)
                self.peer_of[(rt.port, rt.qp)] = s
        self.waiting_reduce = False
        self.stale_notes = 0

    # -- life cycle --
    def start(self) -> None:
        self.last_progress = self.net.sim.t
        self._begin(0)

    def _finish(self, status) -> None:
        if self.status is None:
            self.status = status
            self.t_done = self.net.sim.t

    def _fail(self, cause: int, peer: int, cq_status: int = 0) -> None:
        self._finish((T.ERR_COLLECTIVE, T.detail(cause, peer, cq_status)))

    def _begin(self, k: int) -> None:
        if self.status is not None:
            return
        if k == len(self.phases):
            self._finish((C.ERR_NONE, 0))
            return
        self.k = k
        ph = self.phases[k]
        for c in ph.copies:
            if c.rank == self.rank:
                self.mem[c.dst:c.dst + c.nbytes] = self.mem[c.src:c.src + c.nbytes].copy()
        by_dst: dict = {}
        for t in ph.transfers:
            if t.src == self.rank:
                by_dst.setdefault(t.dst, []).append(t)
        for dst in sorted(by_dst):
            rt = T.route(self.rank, dst, self.p.n_ranks)
            nic = self.net.nic(self.rank, rt.port)
            for t in by_dst[dst]:
                off = 0
                while off < t.nbytes:
                    n = min(self.p.wqe_max, t.nbytes - off)
                    nic.post(rt.qp, S.WR_WRITE, local_addr=t.src_addr + off, length=n,
                             remote_addr=t.dst_addr + off, rkey=T.RKEY,
                             wr_id=(k << 24) | (dst << 16) | (off // 8 & 0xFFFF),
                             signaled=False)
                    off += n
            note = T.ring_addr(self.p, rt.port, rt.qp) + T.RQ_OFF + 0x100
            self.mem[note:note + T.NOTE_BYTES] = np.frombuffer(
                struct.pack("<BBHI", k, self.rank, self.seq, T.NOTE_MAGIC), np.uint8)
            nic.post(rt.qp, S.WR_SEND, local_addr=note, length=T.NOTE_BYTES,
                     wr_id=(k << 24) | (dst << 16) | 0xFFFF, signaled=True)
            key = (rt.port, rt.qp)
            self.pending[key] = self.pending.get(key, 0) + 1
            self.net.ports[(self.rank, rt.port)].kick()
        self._check_phase()

    # -- completions --
    def poll(self) -> None:
        if self.status is not None:
            return
        rx = sum(self.net.nic(self.rank, port).counters["rx_frames"] for port in range(T.PORTS))
        if rx != self.rx_seen:
            self.rx_seen = rx
            self.last_progress = self.net.sim.t
        for (port, qp), seen in list(self.cq_seen.items()):
            nic = self.net.nic(self.rank, port)
            q = nic.qps[qp]
            while seen < q.cq_prod:
                a = q.cq_base + (seen % (1 << q.cq_log2)) * S.CQE_BYTES
                e = S.unpack_fields(S.CQE_FIELDS, self.mem[a:a + S.CQE_BYTES].tobytes())
                seen += 1
                self.cq_seen[(port, qp)] = seen
                self._cqe(port, qp, e)
                if self.status is not None:
                    return
        self._check_phase()

    def _cqe(self, port: int, qp: int, e: dict) -> None:
        peer = self.peer_of[(port, qp)]
        if e["status"] != S.CQ_OK:
            self._fail(T.CAUSE_NIC, peer, e["status"])
            return
        self.last_progress = self.net.sim.t
        if e["opcode"] == S.CQE_RECV:
            q = self.net.nic(self.rank, port).qps[qp]
            a = q.rq_base + e["wr_id"] * (1 << q.rq_slot_log2)
            ph, src, seq, magic = struct.unpack("<BBHI", self.mem[a:a + T.NOTE_BYTES].tobytes())
            if magic == T.NOTE_MAGIC and src == peer and seq != self.seq:
                self.stale_notes += 1          # left over from an earlier, failed command
                return
            if magic != T.NOTE_MAGIC or src != peer:
                raise RuntimeError(f"rank {self.rank}: unexpected notification from port "
                                   f"{port} qp {qp}: phase {ph} src {src} seq {seq:#x} "
                                   f"magic {magic:#x} (expected src {peer} seq {self.seq:#x})")
            self.got.setdefault(ph, set()).add(src)
        else:
            self.pending[(port, qp)] -= 1

    def _check_phase(self) -> None:
        if self.status is not None or self.waiting_reduce or self.k < 0:
            return
        k = self.k
        if any(self.pending.values()) or not self.expect[k] <= self.got.get(k, set()):
            return
        elements = 0
        for r in self.phases[k].reduces:
            if r.rank != self.rank:
                continue
            nb = r.elements * 4
            acc = self.mem[r.inputs[0]:r.inputs[0] + nb].copy().view("<u4")
            for a in r.inputs[1:]:
                acc = tvp.binary(TL.TVP_ADD, acc, self.mem[a:a + nb].view("<u4"))
            self.mem[r.out:r.out + nb] = np.asarray(acc, "<u4").view(np.uint8)
            elements += r.elements * (len(r.inputs) - 1)
        self.waiting_reduce = True
        delay = self.p.phase_overhead + elements * 4 / self.p.reduce_bytes_per_cycle
        self.net.sim.at(self.net.sim.t + delay, self._next)

    def _next(self) -> None:
        self.waiting_reduce = False
        self.last_progress = self.net.sim.t
        self._begin(self.k + 1)

    def check_timeout(self) -> None:
        if self.status is not None or self.waiting_reduce:
            return
        if self.net.sim.t - self.last_progress < self.p.engine_timeout_cycles:
            return
        k = max(self.k, 0)
        missing = sorted(self.expect[k] - self.got.get(k, set()))
        stuck = sorted(self.peer_of[key] for key, v in self.pending.items() if v)
        peer = (missing or stuck or [self.rank])[0]
        self._fail(T.CAUSE_TIMEOUT, peer)
