"""One chip whose NIC port 0 faces a peer modelled in Python (docs/chip.md "NIC ports"):
driver of cosim/chippair/peer_bench.py, its golden expectation and a both-ways scenario.

    sc = peer_scenario(seed=1, small=False)
    want = golden_peer_run(peer_scenario(1, False))      # golden chip + golden peer
    got = run_peer(CFG, Side(sc["img_a"], sc["qa"], [sc["nics"]["a"]]), sc["nics"]["b"])
    errs = peer_mismatches(want, got) + peer_independent_checks(sc, got)

The peer is a golden.nic.Nic (not an RTL NIC), so the chip's NIC path is covered by a build
of one chip instead of two (the chip-pair tests stay in the slow set).
"""

from __future__ import annotations

import os
import pickle
import time

import numpy as np

from cosim.chip.program import ChipProgram
from cosim.chippair import Side, nic_writes
from cosim.nic import check
from cosim.nic.frames import split
from golden import chip as G
from golden import mx
from golden import nic as GN
from spec import chip as C
from spec import nic as S

__all__ = ["run_peer", "peer_scenario", "golden_peer_run", "peer_mismatches",
           "peer_independent_checks", "split_streams"]

CFG = C.TINY_NIC
BENCH_MODULE = "cosim.chippair.peer_bench"
MAC_A, MAC_B = 0x02_4D_41_00_00_0A, 0x02_4D_41_00_00_0B
IP_A, IP_B = 0x0A_00_00_0A, 0x0A_00_00_0B
KEY_A, KEY_B = 0x5EED_000A, 0x5EED_000B
PSN0 = 0x00FFF0


def run_peer(cfg: C.ChipConfig, side: Side, peer: GN.Nic, *, sim: str = "verilator",
             max_cycles: int = 400_000, poll: int = 64, tick_cycles: int = 4096,
             timeout_cycles: int = 4000, retry_limit: int = 16, tag: str = "peer") -> dict:
    """Run one chip (``side``: HBM image, queue submissions, one golden NIC for port 0 that
    describes the RTL NIC's configuration and posted work) against the Python ``peer``
    (configured and posted, not yet run). Returns {"a": {hbm, queues, regs, sems, irq,
    counters [dict], qpregs [[(sq_cons, cq_prod)]], frames [[bytes]], frame_cycles}, "peer":
    {mem, counters, frames, frame_cycles}, "cycles"}."""
    from cosim.sim import BUILD, run_bench
    from rtl.chip import Chip

    if not isinstance(cfg, C.ChipConfig) or cfg.nic_ports < 1:
        raise ValueError("cfg: must be a spec.chip.ChipConfig with NIC ports")
    if not isinstance(peer, GN.Nic):
        raise ValueError(f"peer: must be a golden.nic.Nic, got {type(peer).__name__}")
    if len(side.nics) != 1:
        raise ValueError(f"side.nics: exactly one NIC (port 0) faces the peer, got "
                         f"{len(side.nics)}")
    img = np.asarray(side.hbm)
    if img.dtype != np.uint8 or img.shape != (cfg.hbm_window,):
        raise ValueError(f"side.hbm: expected uint8 [{cfg.hbm_window}], got {img.dtype} "
                         f"{img.shape}")
    rows = [(q, s.ring, s.size, s.tail) for q, s in enumerate(side.queues) if s is not None]
    conf, bells = nic_writes(cfg, 0, side.nics[0], timeout_cycles=timeout_cycles,
                             retry_limit=retry_limit)
    pdir = BUILD / "sim" / "peer"
    pdir.mkdir(parents=True, exist_ok=True)
    pfile = pdir / f"{tag}-{os.getpid()}-{time.monotonic_ns()}.pkl"
    pfile.write_bytes(pickle.dumps(peer))
    try:
        out = run_bench(
            name=f"chip_{cfg.name}", toplevel="chip", make=lambda: Chip(cfg),
            params=cfg.asdict(), test_module=BENCH_MODULE, sim=sim, tag=tag,
            extra_env={"MAIA_PEER_PICKLE": str(pfile)},
            inputs={"hbm": img.copy(), "queues": np.array(rows, np.int64).reshape(-1, 4),
                    "nic": conf, "bell": bells, "max_cycles": np.int64(max_cycles),
                    "poll": np.int64(poll), "tick_cycles": np.int64(tick_cycles)})
    finally:
        pfile.unlink(missing_ok=True)
    return {
        "cycles": int(out["cycles"]),
        "a": {"hbm": out["hbm"],
              "queues": [{n: int(v) for n, v in zip(C.Q_REGS, r)} for r in out["qregs"]],
              "regs": {n: int(v) for n, v in zip(C.GLOBAL_REGS, out["gregs"])},
              "sems": out["sems"].astype(np.uint8).reshape(cfg.clusters, cfg.n_sems),
              "irq": int(out["irq"]),
              "counters": [dict(zip(S.COUNTERS, out["counters"].tolist()))],
              "qpregs": [[tuple(r) for r in out["qpregs"].tolist()]],
              "frames": [split(out["tx"], out["tx_len"])],
              "frame_cycles": [out["tx_t"].tolist()]},
        "peer": {"mem": out["peer_mem"],
                 "counters": dict(zip(S.COUNTERS, out["peer_counters"].tolist())),
                 "frames": split(out["ptx"], out["ptx_len"]),
                 "frame_cycles": out["ptx_t"].tolist()},
    }


# ------------------------------------------------------------------------- scenario ----------

def peer_scenario(seed: int, small: bool) -> dict:
    """Chip a (tiny_nic): a GEMM (``small``: a DMA copy) through its command processor while
    its NIC port 0 RDMA WRITEs, SENDs and READs to / from the peer b; the peer RDMA WRITEs
    into chip a's window and READs another part of it. Every NIC area is apart from the
    queue work's bytes."""
    rng = np.random.default_rng(seed)
    pa, pb = ChipProgram(CFG, ring_slots=64), ChipProgram(CFG, ring_slots=64)
    gemm = ref = copy = None
    if small:
        data = rng.integers(0, 256, 128, dtype=np.uint8)
        src, dst = pa.put(data), pa.alloc(128)
        pa.dma(0, [pa.copy(src, dst, 128)])
        pa.wait(0, 0, False)
        copy = (dst, data)
    else:
        M, N, K = 32, 32, 128
        a, sa = mx.quantize(rng.standard_normal((M, K)).astype(np.float32), "e4m3")
        bt, sbt = mx.quantize(rng.standard_normal((N, K)).astype(np.float32), "e4m3")
        gemm = pa.gemm(a, sa, "e4m3", bt.T, sbt.T, "e4m3")
        ref = mx.matmul(a, sa, "e4m3", bt.T, sbt.T, "e4m3")
    nics, rings = {}, {}
    for name, p, mac, ip in (("a", pa, MAC_A, IP_A), ("b", pb, MAC_B, IP_B)):
        nics[name] = G.chip_nic(CFG, p.hbm, mac=mac, ip=ip)
        rings[name] = dict(sq=p.alloc(16 * S.WQE_BYTES), cq=p.alloc(64 * S.CQE_BYTES),
                           rq=p.alloc(4 << 10, align=1024), win=p.alloc(4096, align=4096))
        p.hbm[rings[name]["win"] + 2048:rings[name]["win"] + 4096] = rng.integers(
            0, 256, 2048, dtype=np.uint8)
    keys = {"a": KEY_A, "b": KEY_B}
    for me, other in (("a", "b"), ("b", "a")):
        r = rings[me]
        nics[me].setup_qp(0, dest_qpn=S.QPN_BASE, dest_mac=nics[other].mac,
                          dest_ip=nics[other].ip, sq_base=r["sq"], sq_log2=4, cq_base=r["cq"],
                          cq_log2=6, rq_base=r["rq"], rq_log2=2, rq_slot_log2=10,
                          sq_psn=PSN0, rq_psn=PSN0)
        nics[me].set_window(0, base=r["win"], length=4096, key=keys[me],
                            perm=S.PERM_VALID | S.PERM_REMOTE_WRITE | S.PERM_REMOTE_READ)
    # (kind, length, remote offset in the other's window) per side
    plan = {"a": [(S.WR_WRITE, 64 if small else 600, 0), (S.WR_SEND, 64 if small else 256, 0),
                  (S.WR_READ, 64 if small else 512, 2048)],
            "b": [(S.WR_WRITE, 64 if small else 384, 1024),
                  (S.WR_READ, 64 if small else 256, 3072)]}
    posted = []
    for me, other, p in (("a", "b", pa), ("b", "a", pb)):
        for i, (kind, n, off) in enumerate(plan[me]):
            local = p.alloc(n)
            if kind != S.WR_READ:
                p.hbm[local:local + n] = rng.integers(0, 256, n, dtype=np.uint8)
            remote = rings[other]["win"] + off
            wr_id = (0x100 if me == "a" else 0x200) + i
            # the peer's own WQEs are unsignaled: its CQ then holds only the receive CQE of
            # chip a's SEND (send and receive CQEs share a ring; their order is timing's)
            nics[me].post(0, kind, local_addr=local, length=n, remote_addr=remote,
                          rkey=keys[other], wr_id=wr_id, signaled=me == "a")
            posted.append(dict(side=me, kind=kind, local=local, len=n, remote=remote,
                               wr_id=wr_id))
    img_a, qa = pa.image()
    return dict(img_a=img_a, qa=qa, img_b=pb.hbm.copy(), nics=nics, rings=rings,
                posted=posted, gemm=gemm, ref=ref, copy=copy)


def golden_peer_run(sc) -> dict:
    """Golden chip a (golden.chip.run_pair, the peer as a chip with no queue work) in the
    form run_peer returns."""
    full = []
    for x in "ab":
        mem = np.zeros(CFG.address_space, dtype=np.uint8)
        mem[:CFG.hbm_window] = sc[f"img_{x}"]
        full.append(mem)
    g = G.run_pair(CFG, (full[0], sc["qa"], [sc["nics"]["a"]]), (full[1], [], [sc["nics"]["b"]]))
    na, nb = sc["nics"]["a"], sc["nics"]["b"]
    return {"a": {"hbm": g.a.mem[:CFG.hbm_window], "queues": [q.regs() for q in g.a.queues],
                  "regs": dict(g.a.regs), "sems": g.a.sems, "frames": g.frames_a,
                  "counters": [dict(na.counters)],
                  "qpregs": [[(q.sq_cons, q.cq_prod) for q in na.qps]]},
            "peer": {"mem": g.b.mem[:CFG.hbm_window], "counters": dict(nb.counters),
                     "frames": g.frames_b[0]}}


def split_streams(frames) -> tuple[list[bytes], list[bytes]]:
    """(request frames, response frames) in order. A NIC sends each stream in an order that
    does not depend on timing; how the two interleave does (the peer answers as frames
    arrive), so the two streams are compared separately."""
    req = [f for f in frames if f[42] in S.OPS_REQUEST]
    return req, [f for f in frames if f[42] not in S.OPS_REQUEST]


def peer_mismatches(want: dict, got: dict) -> list[str]:
    """Every difference between two single-chip-with-peer results (golden vs RTL)."""
    errs = []
    w, g = want["a"], got["a"]
    for what, mw, mg in (("chip a HBM", w["hbm"], g["hbm"]),
                         ("peer memory", want["peer"]["mem"], got["peer"]["mem"])):
        bad = np.flatnonzero(mw != mg)
        if bad.size:
            i = int(bad[0])
            errs.append(f"{what}: {bad.size} bytes differ, first at {i:#x}: expected "
                        f"{bytes(mw[i:i + 16]).hex()} got {bytes(mg[i:i + 16]).hex()}")
    for q, (qw, qg) in enumerate(zip(w["queues"], g["queues"])):
        for n in C.Q_EXACT_REGS:
            if qw[n] != qg[n]:
                errs.append(f"chip a queue {q} {n}: expected {qw[n]:#x} got {qg[n]:#x}")
    for n in (*C.EXACT_GLOBAL_REGS, "IRQ_STATUS"):
        if w["regs"][n] != g["regs"][n]:
            errs.append(f"chip a {n}: expected {w['regs'][n]:#x} got {g['regs'][n]:#x}")
    if not np.array_equal(w["sems"], g["sems"]):
        errs.append(f"chip a semaphores: expected {w['sems'].tolist()} got {g['sems'].tolist()}")
    for who, fw, fg in (("chip a", w["frames"][0], g["frames"][0]),
                        ("peer", want["peer"]["frames"], got["peer"]["frames"])):
        for stream, sw, sg in zip(("request", "response"), split_streams(fw),
                                  split_streams(fg)):
            try:
                check.assert_frames_equal(sw, sg, f"{who} {stream} frame")
            except AssertionError as e:
                errs.append(str(e))
    for who, cw, cg in (("chip a NIC", w["counters"][0], g["counters"][0]),
                        ("peer", want["peer"]["counters"], got["peer"]["counters"])):
        diff = {k: (cw[k], cg[k]) for k in S.COUNTERS if cw[k] != cg[k]}
        if diff:
            errs.append(f"{who} counters (expected, got): {diff}")
    if [tuple(r) for r in w["qpregs"][0]] != [tuple(r) for r in g["qpregs"][0]]:
        errs.append(f"chip a NIC (sq_cons, cq_prod): expected {w['qpregs'][0]} got "
                    f"{g['qpregs'][0]}")
    return errs


def peer_independent_checks(sc, res) -> list[str]:
    """Against references outside golden.chip / golden.nic: the queue work (GEMM against
    golden.mx.matmul, or the DMA copy), every payload against its source bytes, chip a's
    completions."""
    errs = []
    mem = {"a": res["a"]["hbm"], "b": res["peer"]["mem"]}
    init = {"a": sc["img_a"], "b": sc["img_b"]}
    if sc["gemm"] is not None:
        h = sc["gemm"]
        raw = mem["a"][h.addr:h.addr + h.M * h.pitch].reshape(h.M, h.pitch)
        got = raw[:, :4 * h.N].copy().view(np.uint32)
        bad = np.argwhere(got != sc["ref"])
        if bad.size:
            i = tuple(bad[0])
            errs.append(f"GEMM C{i}: expected {sc['ref'][i]:#010x} got {got[i]:#010x}")
    else:
        d, want = sc["copy"]
        if not np.array_equal(mem["a"][d:d + want.size], want):
            errs.append("chip a DMA copy lost")
    for w in sc["posted"]:
        me, other = w["side"], "b" if w["side"] == "a" else "a"
        n = w["len"]
        if w["kind"] == S.WR_READ:
            src = init[other][w["remote"]:w["remote"] + n]
            dst = mem[me][w["local"]:w["local"] + n]
        elif w["kind"] == S.WR_WRITE:
            src = init[me][w["local"]:w["local"] + n]
            dst = mem[other][w["remote"]:w["remote"] + n]
        else:
            s = sc["rings"][other]["rq"]
            src, dst = init[me][w["local"]:w["local"] + n], mem[other][s:s + n]
        if not np.array_equal(src, dst):
            k = int(np.flatnonzero(src != dst)[0])
            errs.append(f"{me} wr {w['wr_id']:#x} ({S.WR_NAMES[w['kind']]}, {n} B) byte {k}: "
                        f"expected {int(src[k]):#04x} got {int(dst[k]):#04x}")
    cq = sc["rings"]["a"]["cq"]
    for i, w in enumerate(x for x in sc["posted"] if x["side"] == "a"):
        cqe = S.unpack_fields(S.CQE_FIELDS, bytes(mem["a"][cq + 16 * i:cq + 16 * i + 16]))
        want_cqe = dict(wr_id=w["wr_id"], status=S.CQ_OK, opcode=w["kind"], qpn=0, valid=1,
                        byte_len=w["len"])
        if any(cqe[k] != v for k, v in want_cqe.items()):
            errs.append(f"chip a CQE {i}: {cqe} expected fields {want_cqe}")
    return errs


def peer_error_scenario(seed: int) -> dict:
    """Error paths at chip level. Chip a posts a good WRITE, a WRITE whose local buffer runs
    past the end of HBM and a READ whose local buffer lies beyond HBM (both CQ_BAD_WQE,
    nothing sent for them, the queue pair keeps working), then a good WRITE. The peer WRITEs
    to chip a's window with a wrong R_Key (chip a answers NAK remote access error and
    writes nothing; the peer's WQE completes REMOTE_ACCESS_ERR). (A second peer WQE would be
    sent or flushed depending on whether the NAK arrives before it: not deterministic.)"""
    rng = np.random.default_rng(seed)
    pa, pb = ChipProgram(CFG, ring_slots=64), ChipProgram(CFG, ring_slots=64)
    data = rng.integers(0, 256, 128, dtype=np.uint8)
    src, dst = pa.put(data), pa.alloc(128)
    pa.dma(0, [pa.copy(src, dst, 128)])
    pa.wait(0, 0, False)
    nics, rings = {}, {}
    for name, p, mac, ip in (("a", pa, MAC_A, IP_A), ("b", pb, MAC_B, IP_B)):
        nics[name] = G.chip_nic(CFG, p.hbm, mac=mac, ip=ip)
        rings[name] = dict(sq=p.alloc(16 * S.WQE_BYTES), cq=p.alloc(64 * S.CQE_BYTES),
                           rq=p.alloc(4 << 10, align=1024), win=p.alloc(4096, align=4096))
        p.hbm[rings[name]["win"]:rings[name]["win"] + 4096] = rng.integers(
            0, 256, 4096, dtype=np.uint8)
    keys = {"a": KEY_A, "b": KEY_B}
    for me, other in (("a", "b"), ("b", "a")):
        r = rings[me]
        nics[me].setup_qp(0, dest_qpn=S.QPN_BASE, dest_mac=nics[other].mac,
                          dest_ip=nics[other].ip, sq_base=r["sq"], sq_log2=4, cq_base=r["cq"],
                          cq_log2=6, rq_base=r["rq"], rq_log2=2, rq_slot_log2=10,
                          sq_psn=PSN0, rq_psn=PSN0)
        nics[me].set_window(0, base=r["win"], length=4096, key=keys[me],
                            perm=S.PERM_VALID | S.PERM_REMOTE_WRITE | S.PERM_REMOTE_READ)
    hbm_end = CFG.hbm_window
    posted = []

    def post(me, p, kind, n, off, wr_id, local=None, rkey=None, status=S.CQ_OK):
        other = "b" if me == "a" else "a"
        if local is None:
            local = p.alloc(n)
            if kind != S.WR_READ:
                p.hbm[local:local + n] = rng.integers(0, 256, n, dtype=np.uint8)
        remote = rings[other]["win"] + off
        nics[me].post(0, kind, local_addr=local, length=n, remote_addr=remote,
                      rkey=keys[other] if rkey is None else rkey, wr_id=wr_id,
                      signaled=me == "a", check=False)
        posted.append(dict(side=me, kind=kind, local=local, len=n, remote=remote, wr_id=wr_id,
                           status=status))

    post("a", pa, S.WR_WRITE, 64, 0, 0x100)
    post("a", pa, S.WR_WRITE, 64, 64, 0x101, local=hbm_end - 32, status=S.CQ_BAD_WQE)
    post("a", pa, S.WR_READ, 64, 2048, 0x102, local=hbm_end + 4096, status=S.CQ_BAD_WQE)
    post("a", pa, S.WR_WRITE, 64, 128, 0x103)   # (no SEND: the peer's CQ order stays fixed)
    post("b", pb, S.WR_WRITE, 64, 512, 0x200, rkey=KEY_A ^ 0x5A5A, status=S.CQ_REMOTE_ACCESS_ERR)
    img_a, qa = pa.image()
    return dict(img_a=img_a, qa=qa, img_b=pb.hbm.copy(), nics=nics, rings=rings,
                posted=posted, gemm=None, ref=None, copy=(dst, data))


def peer_error_checks(sc, res) -> list[str]:
    """Independent checks of the error scenario: chip a's completions carry the expected
    statuses in order, the good transfers landed, nothing of the refused ones did."""
    errs = []
    mem = {"a": res["a"]["hbm"], "b": res["peer"]["mem"]}
    init = {"a": sc["img_a"], "b": sc["img_b"]}
    d, want = sc["copy"]
    if not np.array_equal(mem["a"][d:d + want.size], want):
        errs.append("chip a DMA copy lost")
    cq = sc["rings"]["a"]["cq"]
    mine = [w for w in sc["posted"] if w["side"] == "a"]
    for i, w in enumerate(mine):
        cqe = S.unpack_fields(S.CQE_FIELDS, bytes(mem["a"][cq + 16 * i:cq + 16 * i + 16]))
        if (cqe["wr_id"], cqe["status"], cqe["valid"]) != (w["wr_id"], w["status"], 1):
            errs.append(f"chip a CQE {i}: wr_id {cqe['wr_id']:#x} status {cqe['status']} "
                        f"valid {cqe['valid']}, expected wr_id {w['wr_id']:#x} status "
                        f"{w['status']}")
    for w in sc["posted"]:
        n, me = w["len"], w["side"]
        other = "b" if me == "a" else "a"
        ok = w["status"] == S.CQ_OK
        if w["kind"] == S.WR_WRITE:
            now = mem[other][w["remote"]:w["remote"] + n]
            want = init[me][w["local"]:w["local"] + n] if ok else init[other][
                w["remote"]:w["remote"] + n]
            if not np.array_equal(now, want):
                errs.append(f"{me} wr {w['wr_id']:#x} WRITE ({'landed' if ok else 'refused'}): "
                            f"{other}'s bytes at {w['remote']:#x} are not the "
                            f"{'source' if ok else 'original'} bytes")
    return errs
