"""Chip NIC port benchmark (`make bench BENCH=chip_nic`): the NIC's memory traffic going
through the chip's upsizer, merge with the command processor and NoC to the chip's HBM.

One `tiny_nic` chip (Verilog top chip, Verilator) whose NIC port faces a golden NIC in Python
(cosim/chippair/peer_bench.py; the peer answers at once, so the figures are the chip's):

* ``write_goodput_4k``: eight 4 KiB RDMA WRITEs (MTU 256) posted at once on the chip's
  queue pair 0 (unsignaled, one signaled last): payload bytes carried by the frames the chip
  sent after its first frame, over the cycles between its first and last frame (8 bytes per
  cycle is the raw link rate), as a fraction of ``spec.nic.goodput_limit(4096, 256)``.
* ``read_resp_goodput_4k``: the peer RDMA READs 8 x 4 KiB of the chip's HBM: the chip's READ
  response frames the same way, over ``spec.nic.read_goodput_limit``.
* ``read_goodput_4k``: the chip RDMA READs 8 x 4 KiB from the peer: the peer's response
  frames (sent as fast as the bench's wire allows) the same way; shows whether the chip's
  receive path (NIC -> upsizer -> merge -> NoC writes) keeps up.
* ``*_mismatches``: frames (requests and responses), chip HBM, peer memory, NIC counters and
  completions against golden (golden.chip.run_pair), must be 0.

With ``CHIP_NIC_BENCH_PAIR=1`` also the two-chip figures (Verilog top chip_pair, a 5-9 minute
Verilator build), both chips' RTL: ``pair_write_goodput_4k`` (chip a WRITEs 8 x 4 KiB to
chip b: chip a's frames) and ``pair_read_goodput_4k`` (chip a READs 8 x 4 KiB from chip b:
chip b's response frames, over ``read_goodput_limit``).
"""

from __future__ import annotations

import os

import numpy as np

from spec import nic as S

N_MSGS = 8
MSG = 4096


def _peer_stream(kind: str) -> dict:
    """kind "write": the chip WRITEs to the peer; "read": the chip READs from the peer;
    "read_resp": the peer READs from the chip."""
    from cosim.chip.program import ChipProgram
    from cosim.chippair import peer as P
    from golden import chip as G

    cfg = P.CFG
    progs = {x: ChipProgram(cfg, ring_slots=64) for x in "ab"}
    nics, rings = {}, {}
    rng = np.random.default_rng(1)
    for x, mac, ip in (("a", P.MAC_A, P.IP_A), ("b", P.MAC_B, P.IP_B)):
        p = progs[x]
        nics[x] = G.chip_nic(cfg, p.hbm, mac=mac, ip=ip)
        rings[x] = dict(sq=p.alloc(16 * S.WQE_BYTES), cq=p.alloc(64 * S.CQE_BYTES),
                        rq=p.alloc(4 << 10, align=1024), win=p.alloc(N_MSGS * MSG, align=4096),
                        buf=p.alloc(N_MSGS * MSG, align=4096))
        w = rings[x]["win"]
        p.hbm[w:w + N_MSGS * MSG] = rng.integers(0, 256, N_MSGS * MSG, dtype=np.uint8)
        b = rings[x]["buf"]
        p.hbm[b:b + N_MSGS * MSG] = rng.integers(0, 256, N_MSGS * MSG, dtype=np.uint8)
    for me, other in (("a", "b"), ("b", "a")):
        r = rings[me]
        nics[me].setup_qp(0, dest_qpn=S.QPN_BASE, dest_mac=nics[other].mac,
                          dest_ip=nics[other].ip, sq_base=r["sq"], sq_log2=4, cq_base=r["cq"],
                          cq_log2=6, rq_base=r["rq"], rq_log2=2, rq_slot_log2=10,
                          sq_psn=P.PSN0, rq_psn=P.PSN0)
        nics[me].set_window(0, base=r["win"], length=N_MSGS * MSG, key=P.KEY_A,
                            perm=S.PERM_VALID | S.PERM_REMOTE_WRITE | S.PERM_REMOTE_READ)
    me, other = ("b", "a") if kind == "read_resp" else ("a", "b")
    op = S.WR_WRITE if kind == "write" else S.WR_READ
    for i in range(N_MSGS):
        nics[me].post(0, op, local_addr=rings[me]["buf"] + i * MSG, length=MSG,
                      remote_addr=rings[other]["win"] + i * MSG, rkey=P.KEY_A, wr_id=i,
                      signaled=i == N_MSGS - 1)
    img_a, qa = progs["a"].image()
    return dict(img_a=img_a, qa=qa, img_b=progs["b"].hbm.copy(), nics=nics)


def _goodput(frames, cycles, ops, limit) -> float:
    sel = [(f, t) for f, t in zip(frames, cycles) if f[42] in ops]
    payload = sum(len(f) - S.header_len(f[42]) - S.ICRC_LEN - S.ETH_FCS for f, _ in sel[1:])
    span = sel[-1][1] - sel[0][1]
    return payload / (8 * span) / limit if span else 0.0


def _peer_figures() -> dict:
    from cosim.chippair import Side
    from cosim.chippair import peer as P

    out = {}
    mtu = P.CFG.nic_mtu
    write_ops = {S.OP_WRITE_FIRST, S.OP_WRITE_MIDDLE, S.OP_WRITE_LAST, S.OP_WRITE_ONLY}
    resp_ops = {S.OP_READ_RESP_FIRST, S.OP_READ_RESP_MIDDLE, S.OP_READ_RESP_LAST,
                S.OP_READ_RESP_ONLY}
    for kind in ("write", "read_resp", "read"):
        want = P.golden_peer_run(_peer_stream(kind))
        s = _peer_stream(kind)
        res = P.run_peer(P.CFG, Side(s["img_a"], s["qa"], [s["nics"]["a"]]), s["nics"]["b"],
                         sim="verilator", tag=f"bench-chip-nic-{kind}")
        errs = P.peer_mismatches(want, res)
        if kind == "write":
            g = _goodput(res["a"]["frames"][0], res["a"]["frame_cycles"][0], write_ops,
                         S.goodput_limit(MSG, mtu))
        elif kind == "read_resp":
            g = _goodput(res["a"]["frames"][0], res["a"]["frame_cycles"][0], resp_ops,
                         S.read_goodput_limit(MSG, mtu))
        else:
            g = _goodput(res["peer"]["frames"], res["peer"]["frame_cycles"], resp_ops,
                         S.read_goodput_limit(MSG, mtu))
        out[f"{kind}_goodput_4k"] = {"value": round(g, 4), "unit": "of limit",
                                     "target": ">= 0.9" if kind == "write" else None}
        out[f"{kind}_mismatches"] = {"value": len(errs), "unit": "", "target": "== 0"}
        out[f"{kind}_cycles"] = {"value": res["cycles"], "unit": "cycles"}
        out[f"{kind}_errors"] = errs[:5]
        c = res["a"]["counters"][0]
        out[f"{kind}_retransmits"] = {"value": c["retransmits"] + res["peer"]["counters"][
            "retransmits"], "unit": "frames"}
    return out


def _pair_figures() -> dict:
    from cosim import chippair
    from cosim.chippair import scenario as sc

    out = {}
    write_ops = {S.OP_WRITE_FIRST, S.OP_WRITE_MIDDLE, S.OP_WRITE_LAST, S.OP_WRITE_ONLY}
    resp_ops = {S.OP_READ_RESP_FIRST, S.OP_READ_RESP_MIDDLE, S.OP_READ_RESP_LAST,
                S.OP_READ_RESP_ONLY}
    for kind in ("write", "read"):
        s0 = _peer_stream(kind)
        s0["qb"] = []
        want = sc.golden_run(s0)
        s = _peer_stream(kind)
        res = chippair.run(sc.CFG, chippair.Side(s["img_a"], s["qa"], [s["nics"]["a"]]),
                           chippair.Side(s["img_b"], [], [s["nics"]["b"]]), sim="verilator",
                           tag=f"bench-chip-nic-pair-{kind}")
        errs = sc.mismatches(want, res)
        if kind == "write":     # chip a's WRITE frames
            g = _goodput(res["a"]["frames"][0], res["a"]["frame_cycles"][0], write_ops,
                         S.goodput_limit(MSG, sc.CFG.nic_mtu))
        else:                   # chip a READs chip b: chip b's response frames
            g = _goodput(res["b"]["frames"][0], res["b"]["frame_cycles"][0], resp_ops,
                         S.read_goodput_limit(MSG, sc.CFG.nic_mtu))
        out[f"pair_{kind}_goodput_4k"] = {"value": round(g, 4), "unit": "of limit",
                                          "target": ">= 0.9" if kind == "write" else None}
        out[f"pair_{kind}_mismatches"] = {"value": len(errs), "unit": "", "target": "== 0"}
        out[f"pair_{kind}_cycles"] = {"value": res["cycles"], "unit": "cycles"}
        out[f"pair_{kind}_errors"] = errs[:5]
    return out


def run() -> dict:
    out = _peer_figures()
    if os.environ.get("CHIP_NIC_BENCH_PAIR", "0") not in ("", "0"):
        out.update(_pair_figures())
    return out
