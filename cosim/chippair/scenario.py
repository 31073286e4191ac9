"""Shared scenarios of the two-chip NIC co-simulation: a deterministic two-chip program
(queue work on both chips plus RDMA WRITE/SEND from chip a to chip b), its golden run
(golden.chip.run_pair) in the form cosim.chippair.run returns, and the checkers used by
tests/test_chip_nic.py and cosim/bench/chip_nic.py."""

from __future__ import annotations

import numpy as np

from cosim.chip.program import ChipProgram
from cosim.nic import check
from golden import chip as G
from golden import mx
from spec import chip as C
from spec import nic as S

CFG = C.TINY_NIC
MAC_A, MAC_B = 0x02_4D_41_00_00_0A, 0x02_4D_41_00_00_0B
IP_A, IP_B = 0x0A_00_00_0A, 0x0A_00_00_0B
KEY = 0x5EED_0001
PSN0 = 0x00FFF0              # initial PSN near the 24-bit wrap


# ------------------------------------------------------------------------- scenario ----------

def scenario(seed: int, small: bool, read: bool = False) -> dict:
    """Deterministic two-chip program. Chip a: a GEMM through its command processor; NIC
    port 0 posts RDMA WRITEs into chip b's window and a SEND into chip b's receive ring.
    Chip b: a DMA copy through its command processor; its NIC answers. Every NIC area (rings,
    buffers, window) is allocated apart from the queue work's bytes (the contract requires
    disjoint bytes). ``read``: chip a also RDMA READs 512 bytes of chip b's window (filled
    with random bytes) into its HBM."""
    rng = np.random.default_rng(seed)
    pa, pb = ChipProgram(CFG, ring_slots=64), ChipProgram(CFG, ring_slots=64)
    M, N, K = (16, 16, 64) if small else (32, 32, 128)
    a, sa = mx.quantize(rng.standard_normal((M, K)).astype(np.float32), "e4m3")
    bt, sbt = mx.quantize(rng.standard_normal((N, K)).astype(np.float32), "e4m3")
    gemm = pa.gemm(a, sa, "e4m3", bt.T, sbt.T, "e4m3")
    ref = mx.matmul(a, sa, "e4m3", bt.T, sbt.T, "e4m3")
    copy_data = rng.integers(0, 256, 256, dtype=np.uint8)
    src = pb.put(copy_data)
    copy_dst = pb.alloc(256)
    pb.dma(0, [pb.copy(src + 8, copy_dst, 192)])
    pb.wait(0, 0, False)

    nics, rings = {}, {}
    for name, p, mac, ip in (("a", pa, MAC_A, IP_A), ("b", pb, MAC_B, IP_B)):
        nics[name] = G.chip_nic(CFG, p.hbm, mac=mac, ip=ip)
        rings[name] = dict(sq=p.alloc(16 * S.WQE_BYTES), cq=p.alloc(64 * S.CQE_BYTES),
                           rq=p.alloc(4 << 10, align=1024), win=p.alloc(4096, align=4096))
    for me, other in (("a", "b"), ("b", "a")):
        r = rings[me]
        nics[me].setup_qp(0, dest_qpn=S.QPN_BASE, dest_mac=nics[other].mac,
                          dest_ip=nics[other].ip, sq_base=r["sq"], sq_log2=4, cq_base=r["cq"],
                          cq_log2=6, rq_base=r["rq"], rq_log2=2, rq_slot_log2=10,
                          sq_psn=PSN0, rq_psn=PSN0)
        nics[me].set_window(0, base=r["win"], length=4096, key=KEY,
                            perm=S.PERM_VALID | S.PERM_REMOTE_WRITE
                            | (S.PERM_REMOTE_READ if read else 0))
    lens = [128, 64] if small else [600, 256, 64]
    payload = rng.integers(0, 256, sum(lens), dtype=np.uint8)
    buf = pa.put(payload)
    posted, off = [], 0
    for i, n in enumerate(lens):
        kind = S.WR_SEND if i == 1 else S.WR_WRITE
        remote = rings["b"]["win"] + off
        nics["a"].post(0, kind, local_addr=buf + off, length=n, remote_addr=remote, rkey=KEY,
                       wr_id=0x100 + i)
        posted.append(dict(kind=kind, src=buf + off, len=n, remote=remote, wr_id=0x100 + i))
        off += n
    if read:
        n, wr_id = 512, 0x100 + len(lens)
        remote = rings["b"]["win"] + 2048
        pb.hbm[remote:remote + n] = rng.integers(0, 256, n, dtype=np.uint8)
        dst = pa.alloc(n)
        nics["a"].post(0, S.WR_READ, local_addr=dst, length=n, remote_addr=remote, rkey=KEY,
                       wr_id=wr_id)
        posted.append(dict(kind=S.WR_READ, src=remote, dst=dst, len=n, remote=remote,
                           wr_id=wr_id))
    img_a, qa = pa.image()
    img_b, qb = pb.image()
    return dict(img_a=img_a, qa=qa, img_b=img_b, qb=qb, nics=nics, rings=rings, gemm=gemm,
                ref=ref, copy=(copy_dst, copy_data[8:200]), posted=posted, payload=payload)


def golden_run(sc) -> dict:
    """golden.chip.run_pair on the scenario, in the same form as cosim.chippair.run."""
    full = []
    for x in "ab":
        mem = np.zeros(CFG.address_space, dtype=np.uint8)
        mem[:CFG.hbm_window] = sc[f"img_{x}"]
        full.append(mem)
    g = G.run_pair(CFG, (full[0], sc["qa"], [sc["nics"]["a"]]),
                   (full[1], sc["qb"], [sc["nics"]["b"]]))
    out = {}
    for x, r, frames in (("a", g.a, g.frames_a), ("b", g.b, g.frames_b)):
        nic = sc["nics"][x]
        out[x] = {"hbm": r.mem[:CFG.hbm_window], "queues": [q.regs() for q in r.queues],
                  "regs": dict(r.regs), "sems": r.sems, "frames": frames,
                  "counters": [dict(nic.counters)],
                  "qpregs": [[(q.sq_cons, q.cq_prod) for q in nic.qps]]}
    return out


def mismatches(want: dict, got: dict) -> list[str]:
    """Every difference between two chip-pair results (golden vs RTL)."""
    errs = []
    for x in "ab":
        w, g = want[x], got[x]
        bad = np.flatnonzero(w["hbm"] != g["hbm"])
        if bad.size:
            i = int(bad[0])
            errs.append(f"chip {x} HBM: {bad.size} bytes differ, first at {i:#x}: expected "
                        f"{bytes(w['hbm'][i:i + 16]).hex()} got {bytes(g['hbm'][i:i + 16]).hex()}")
        for q, (qw, qg) in enumerate(zip(w["queues"], g["queues"])):
            for n in C.Q_EXACT_REGS:
                if qw[n] != qg[n]:
                    errs.append(f"chip {x} queue {q} {n}: expected {qw[n]:#x} got {qg[n]:#x}")
        for n in (*C.EXACT_GLOBAL_REGS, "IRQ_STATUS"):
            if w["regs"][n] != g["regs"][n]:
                errs.append(f"chip {x} {n}: expected {w['regs'][n]:#x} got {g['regs'][n]:#x}")
        if not np.array_equal(w["sems"], g["sems"]):
            errs.append(f"chip {x} semaphores: expected {w['sems'].tolist()} got "
                        f"{g['sems'].tolist()}")
        for p, (fw, fg) in enumerate(zip(w["frames"], g["frames"])):
            try:
                check.assert_frames_equal(fw, fg, f"chip {x} NIC port {p} frame")
            except AssertionError as e:
                errs.append(str(e))
        for p, (cw, cg) in enumerate(zip(w["counters"], g["counters"])):
            diff = {k: (cw[k], cg[k]) for k in S.COUNTERS if cw[k] != cg[k]}
            if diff:
                errs.append(f"chip {x} NIC port {p} counters (expected, got): {diff}")
        for p, (rw, rg) in enumerate(zip(w["qpregs"], g["qpregs"])):
            if [tuple(r) for r in rw] != [tuple(r) for r in rg]:
                errs.append(f"chip {x} NIC port {p} (sq_cons, cq_prod): expected {rw} got {rg}")
    return errs


def independent_checks(sc, res) -> list[str]:
    """Checks against references outside golden.chip: the GEMM against golden.mx.matmul, the
    DMA copy, every WRITE/SEND payload against the source bytes, the completions."""
    errs = []
    h = sc["gemm"]
    raw = res["a"]["hbm"][h.addr:h.addr + h.M * h.pitch].reshape(h.M, h.pitch)
    got = raw[:, :4 * h.N].copy().view(np.uint32)
    bad = np.argwhere(got != sc["ref"])
    if bad.size:
        i = tuple(bad[0])
        errs.append(f"GEMM C{i}: expected {sc['ref'][i]:#010x} got {got[i]:#010x}")
    d, want = sc["copy"]
    if not np.array_equal(res["b"]["hbm"][d:d + want.size], want):
        errs.append("chip b DMA copy lost")
    slot = 0
    for w in sc["posted"]:
        src = sc["img_a"][w["src"]:w["src"] + w["len"]]
        if w["kind"] == S.WR_READ:
            src = sc["img_b"][w["remote"]:w["remote"] + w["len"]]
            dst = res["a"]["hbm"][w["dst"]:w["dst"] + w["len"]]
        elif w["kind"] == S.WR_WRITE:
            dst = res["b"]["hbm"][w["remote"]:w["remote"] + w["len"]]
        else:
            s = sc["rings"]["b"]["rq"] + slot * 1024
            dst = res["b"]["hbm"][s:s + w["len"]]
            slot += 1
        if not np.array_equal(src, dst):
            k = int(np.flatnonzero(src != dst)[0])
            errs.append(f"wr {w['wr_id']:#x} ({S.WR_NAMES[w['kind']]}, {w['len']} B) byte {k}: "
                        f"expected {int(src[k]):#04x} got {int(dst[k]):#04x}")
    cq = sc["rings"]["a"]["cq"]
    for i, w in enumerate(sc["posted"]):
        cqe = S.unpack_fields(S.CQE_FIELDS, bytes(res["a"]["hbm"][cq + 16 * i:cq + 16 * i + 16]))
        want_cqe = dict(wr_id=w["wr_id"], status=S.CQ_OK, opcode=w["kind"], qpn=0, valid=1,
                        byte_len=w["len"])
        if any(cqe[k] != v for k, v in want_cqe.items()):
            errs.append(f"chip a CQE {i}: {cqe} expected fields {want_cqe}")
    return errs
