"""Chip NIC port benchmark (`make bench BENCH=chip_nic`): two `tiny_nic` chips joined by
their NIC ports (Verilog top chip_pair, Verilator), the NIC's memory traffic going through
the chip's upsizer, merge with the command processor and NoC to the chip's HBM.

* ``write_goodput_4k``: eight 4 KiB RDMA WRITEs (MTU 256) posted at once on chip a's queue
  pair 0 (unsignaled, one signaled last): payload bytes carried by the frames chip a sent
  after its first frame, over the cycles between its first and last frame (8 bytes per
  cycle is the raw link rate), as a fraction of ``spec.nic.goodput_limit(4096, 256)``. The
  same figure for two RTL NICs on AxiRam host memory (no chip) is in docs/nic.md (0.9763).
* ``mismatches``: frames, both HBM images, NIC counters and completions against
  golden.chip.run_pair (must be 0).
* ``cycles``: first doorbell to the end of the run (both chips idle).
"""

from __future__ import annotations

import numpy as np

from spec import nic as S

N_MSGS = 8
MSG = 4096


def _stream_scenario():
    from cosim.chip.program import ChipProgram
    from cosim.chippair import scenario as sc
    from golden import chip as G

    cfg = sc.CFG
    progs = {x: ChipProgram(cfg, ring_slots=64) for x in "ab"}
    nics, rings = {}, {}
    for x, mac, ip in (("a", sc.MAC_A, sc.IP_A), ("b", sc.MAC_B, sc.IP_B)):
        p = progs[x]
        nics[x] = G.chip_nic(cfg, p.hbm, mac=mac, ip=ip)
        rings[x] = dict(sq=p.alloc(16 * S.WQE_BYTES), cq=p.alloc(64 * S.CQE_BYTES),
                        rq=p.alloc(4 << 10, align=1024), win=p.alloc(N_MSGS * MSG, align=4096))
    for me, other in (("a", "b"), ("b", "a")):
        r = rings[me]
        nics[me].setup_qp(0, dest_qpn=S.QPN_BASE, dest_mac=nics[other].mac,
                          dest_ip=nics[other].ip, sq_base=r["sq"], sq_log2=4, cq_base=r["cq"],
                          cq_log2=6, rq_base=r["rq"], rq_log2=2, rq_slot_log2=10,
                          sq_psn=sc.PSN0, rq_psn=sc.PSN0)
        nics[me].set_window(0, base=r["win"], length=N_MSGS * MSG, key=sc.KEY,
                            perm=S.PERM_VALID | S.PERM_REMOTE_WRITE)
    rng = np.random.default_rng(1)
    src = progs["a"].put(rng.integers(0, 256, N_MSGS * MSG, dtype=np.uint8), align=4096)
    for i in range(N_MSGS):
        nics["a"].post(0, S.WR_WRITE, local_addr=src + i * MSG, length=MSG,
                       remote_addr=rings["b"]["win"] + i * MSG, rkey=sc.KEY, wr_id=i,
                       signaled=i == N_MSGS - 1)
    out = {"nics": nics}
    for x in "ab":
        out[f"img_{x}"], out[f"q{x}"] = progs[x].image()
    return out


def run() -> dict:
    from cosim import chippair
    from cosim.chippair import scenario as sc

    want = sc.golden_run(_stream_scenario())
    s = _stream_scenario()
    res = chippair.run(sc.CFG, chippair.Side(s["img_a"], s["qa"], [s["nics"]["a"]]),
                       chippair.Side(s["img_b"], s["qb"], [s["nics"]["b"]]), sim="verilator",
                       tag="bench-chip-nic")
    errs = sc.mismatches(want, res)
    frames, t = res["a"]["frames"][0], res["a"]["frame_cycles"][0]
    payload = sum(len(f) - S.header_len(f[42]) - S.ICRC_LEN - S.ETH_FCS for f in frames[1:])
    span = t[-1] - t[0]
    limit = S.goodput_limit(MSG, sc.CFG.nic_mtu)
    goodput = payload / (8 * span) if span else 0.0
    return {
        "write_goodput_4k": {"value": round(goodput / limit, 4), "unit": "of limit",
                             "target": ">= 0.9"},
        "write_goodput_4k_raw": {"value": round(goodput, 4), "unit": "of 8 B/cycle"},
        "mismatches": {"value": len(errs), "unit": "", "target": "== 0"},
        "cycles": {"value": res["cycles"], "unit": "cycles"},
        "frames_a": {"value": len(frames), "unit": "frames"},
        "errors": errs[:5],
    }
