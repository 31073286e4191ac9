"""Shared scenarios for the NIC tests and benchmarks: two configured golden NICs and a
seeded message mix, so the golden tests and the RTL benches use the same set-up."""

from __future__ import annotations

import numpy as np

from golden import nic as G
from spec import nic as S

MAC_A, MAC_B = 0x02_00_00_00_00_0A, 0x02_00_00_00_00_0B
IP_A, IP_B = 0x0A_00_00_0A, 0x0A_00_00_0B
SQ_BASE, CQ_BASE, RQ_BASE = 0x0000, 0x1000, 0x2000
RQ_LOG2, RQ_SLOT_LOG2 = 2, 10           # 4 receive slots of 1 KiB per queue pair
SRC_BASE = 0x8000                       # local source buffers
DST_BASE = 0x18000                      # local READ destinations
WIN_BASE, WIN_LEN, WIN_KEY = 0x10000, 0x8000, 0x00C0FFEE
MEM_SIZE = 0x20000


def pair(params: S.NicParams | None = None, *, qps=(0,), timeout: int = 64,
         sq_psn: int = 0x00FFF0) -> tuple[G.Nic, G.Nic]:
    """Two NICs, queue pair q of A connected to queue pair q of B, one RW window on each.
    Queue pair q's rings sit at base + q * 0x400 (send ring 16 WQEs, CQ 64 entries)."""
    params = params or S.NicParams()
    a = G.Nic(params, mac=MAC_A, ip=IP_A, mem_size=MEM_SIZE, timeout=timeout)
    b = G.Nic(params, mac=MAC_B, ip=IP_B, mem_size=MEM_SIZE, timeout=timeout)
    for n, o in ((a, b), (b, a)):
        for q in qps:
            n.setup_qp(q, dest_qpn=S.QPN_BASE + q, dest_mac=o.mac, dest_ip=o.ip,
                       sq_base=SQ_BASE + q * 0x400, sq_log2=4, cq_base=CQ_BASE + q * 0x400,
                       cq_log2=6, rq_base=RQ_BASE + q * 0x1000, rq_log2=RQ_LOG2,
                       rq_slot_log2=RQ_SLOT_LOG2, sq_psn=sq_psn, rq_psn=sq_psn)
        n.set_window(0, base=WIN_BASE, length=WIN_LEN, key=WIN_KEY,
                     perm=S.PERM_VALID | S.PERM_REMOTE_WRITE | S.PERM_REMOTE_READ)
    return a, b


def fill(nic: G.Nic, seed: int) -> None:
    """Random contents for the source buffers and the window (so READs fetch known data)."""
    rng = np.random.default_rng(seed)
    nic.mem[SRC_BASE:WIN_BASE] = rng.integers(0, 256, WIN_BASE - SRC_BASE, dtype=np.uint8)
    nic.mem[WIN_BASE:WIN_BASE + WIN_LEN] = rng.integers(0, 256, WIN_LEN, dtype=np.uint8)


def post_mix(a: G.Nic, seed: int, *, qps=(0,), n_msgs: int = 6, max_len: int = 1024,
             kinds=(S.WR_WRITE, S.WR_SEND, S.WR_READ)) -> list[dict]:
    """Post a seeded mix of WRITE/SEND/READ work requests on ``a``; each message gets its own
    1 KiB region so every effect can be checked. Returns the posted requests."""
    rng = np.random.default_rng(seed)
    posted = []
    region = 0
    for q in qps:
        sends = 0
        for i in range(n_msgs):
            kind = int(rng.choice(kinds))
            if kind == S.WR_SEND and sends == 1 << RQ_LOG2:
                kind = S.WR_WRITE
            length = int(rng.integers(1, max_len // 8 + 1)) * 8
            off = region * 0x400
            region += 1
            if off + 0x400 > WIN_LEN:
                raise ValueError(f"n_msgs * len(qps) must be at most {WIN_LEN // 0x400}")
            wr = dict(qpn=q, opcode=kind, wr_id=(q << 8) | i, length=length,
                      local_addr=(DST_BASE if kind == S.WR_READ else SRC_BASE) + off,
                      remote_addr=WIN_BASE + off, rkey=WIN_KEY, slot=sends)
            sends += kind == S.WR_SEND
            a.post(q, kind, local_addr=wr["local_addr"], length=length,
                   remote_addr=wr["remote_addr"], rkey=WIN_KEY, wr_id=wr["wr_id"])
            posted.append(wr)
    return posted


def check_delivery(a: G.Nic, b: G.Nic, posted: list[dict], a_mem0: np.ndarray,
                   b_mem0: np.ndarray) -> list[str]:
    """Exactly-once, in-order delivery of ``posted`` (from A to B): A's completions are the
    posted wr_ids in order with status OK, B's receive completions are the SENDs in order,
    and every byte landed. ``a_mem0``/``b_mem0`` are the images before the run."""
    errs = []
    for q in sorted({w["qpn"] for w in posted}):
        mine = [w for w in posted if w["qpn"] == q]
        got = [(c["wr_id"], c["status"], c["opcode"], c["byte_len"]) for c in a.cqes(q)]
        want = [(w["wr_id"], S.CQ_OK, w["opcode"], w["length"]) for w in mine]
        if got != want:
            errs.append(f"QP {q}: A completions {got} != expected {want}")
        sends = [w for w in mine if w["opcode"] == S.WR_SEND]
        rgot = [(c["wr_id"], c["status"], c["opcode"], c["byte_len"]) for c in b.cqes(q)]
        rwant = [(w["slot"], S.CQ_OK, S.CQE_RECV, w["length"]) for w in sends]
        if rgot != rwant:
            errs.append(f"QP {q}: B receive completions {rgot} != expected {rwant}")
        for w in mine:
            n = w["length"]
            src = a_mem0[w["local_addr"]:w["local_addr"] + n]
            if w["opcode"] == S.WR_WRITE:
                dst = b.mem[w["remote_addr"]:w["remote_addr"] + n]
            elif w["opcode"] == S.WR_SEND:
                s = RQ_BASE + q * 0x1000 + w["slot"] * (1 << RQ_SLOT_LOG2)
                dst = b.mem[s:s + n]
            else:
                src = b_mem0[w["remote_addr"]:w["remote_addr"] + n]
                dst = a.mem[w["local_addr"]:w["local_addr"] + n]
            if not np.array_equal(src, dst):
                k = int(np.flatnonzero(src != dst)[0])
                errs.append(f"QP {q} wr {w['wr_id']:#x} {S.WR_NAMES[w['opcode']]} len {n}: byte "
                            f"{k} expected {int(src[k]):#04x} got {int(dst[k]):#04x}")
    return errs
