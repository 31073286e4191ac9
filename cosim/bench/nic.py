"""NIC benchmarks (`make bench BENCH=nic`).

Measured on RTL (Verilator):
* ``mac_goodput_4k_write``: the frames of one 4 KiB RDMA WRITE (MTU 1024, built by the golden
  twin) sent back to back through the RTL MAC transmit path; payload bytes over the wire
  time (first beat to last beat plus the inter-frame gap, 8 bytes per cycle), as a fraction
  of the header/preamble/IFG limit ``spec.nic.goodput_limit``.
* ``mac_rx_latency_*``: store-and-forward latency of the MAC receive path at zero load,
  cycles from the last wire beat in to the first beat out.

Measured on the RTL transport (two RTL NICs back to back, Verilator, the test configuration
``rtl.nic.PAIR_PARAMS``: MTU 256, window 8; host memory = cocotbext-axi AxiRam):
* ``rtl_goodput_4k_write_loss{0,1,10}pct``: eight 4 KiB RDMA WRITEs posted at once on one
  queue pair; payload bytes carried by the frames A sent after its first frame, over the
  cycles between the first and the last frame (8 bytes per cycle is the raw rate), as a
  fraction of ``spec.nic.goodput_limit(4096, 256)``. Under loss the numerator counts only
  the message payload (retransmissions are overhead); loss = drop probability per frame,
  both directions, plus half that probability of duplicates and of reordering.
* ``rtl_write_latency_64B``: zero load, one signaled 64-byte WRITE: cycles from the end of
  the doorbell CSR write to the AXI4 write response of its CQE at the requester.
* ``rtl_goodput_4k_read_loss{0,1,10}pct``: eight 4 KiB RDMA READs posted at once on one queue
  pair (A reads B's window); payload bytes carried by the READ response frames B sent after
  its first one, over the cycles between B's first and last frame, as a fraction of
  ``spec.nic.read_goodput_limit(4096, 256)`` (response headers, AETH, ICRC, FCS, preamble,
  IFG). Loss as for the WRITE figures.
* ``rtl_read_latency_64B``: zero load, one signaled 64-byte READ: cycles from the end of the
  doorbell CSR write to the AXI4 write response of its CQE at the requester (request out,
  response back, payload written, CQE written).

Estimated by the golden transport twin (tick model, one MTU-sized frame slot per tick):
goodput of 4 KiB WRITEs at 0%, 1%, 10% loss with MTU 1024, as a fraction of the limit.
"""

from __future__ import annotations

import math

from cosim.nic import run_mac, scenario
from golden import nic as G
from spec import nic as S

MTU = 1024
MSG = 4096


def _write_frames():
    p = S.NicParams(mtu=MTU)
    a, b = scenario.pair(p)
    scenario.fill(a, 1)
    a.post(0, S.WR_WRITE, local_addr=scenario.SRC_BASE, length=MSG,
           remote_addr=scenario.WIN_BASE, rkey=scenario.WIN_KEY)
    return [a.transmit() for _ in range(MSG // MTU)]


def _golden_goodput(loss: float, seeds=range(4), n_msgs: int = 8) -> float:
    """Payload over tick-slots in the golden twin: each tick carries at most one frame of
    the largest size, so the ratio is a fraction of the raw rate at full-size framing."""
    p = S.NicParams(mtu=MTU, max_msg=MSG)
    slot = S.frame_len(S.OP_WRITE_FIRST, MTU) + S.ETH_OVERHEAD_WIRE
    total_payload = total_bytes = 0
    for seed in seeds:
        a, b = scenario.pair(p, timeout=16)
        scenario.fill(a, seed)
        for i in range(n_msgs):
            a.post(0, S.WR_WRITE, local_addr=scenario.SRC_BASE, length=MSG,
                   remote_addr=scenario.WIN_BASE + (i % 4) * MSG, rkey=scenario.WIN_KEY,
                   signaled=False)
        link = G.LossyLink(seed, drop=loss)
        _, _, ticks = G.run_pair(a, b, link, G.LossyLink(seed + 99, drop=loss))
        total_payload += n_msgs * MSG
        total_bytes += ticks * slot
    return total_payload / total_bytes


def _rtl_goodput(loss: float, n_msgs: int = 8, seed: int = 3) -> float:
    from cosim.nic.pair import run_pair_rtl
    from rtl.nic import PAIR_PARAMS

    p = PAIR_PARAMS
    a, b = scenario.pair(p)
    scenario.fill(a, seed)
    for i in range(n_msgs):
        a.post(0, S.WR_WRITE, local_addr=scenario.SRC_BASE + (i % 2) * MSG, length=MSG,
               remote_addr=scenario.WIN_BASE + (i % 4) * MSG, rkey=scenario.WIN_KEY,
               signaled=i == n_msgs - 1)
    link = (seed, seed + 7, loss, loss / 2, loss / 2, 0.0)
    out = run_pair_rtl(a, b, link=link, timeout_cycles=2000, tag=f"bench{int(loss * 100)}")
    t = out["tx_a_t"]
    frames = out["tx_a"]
    span = t[-1] - t[0]
    payload = n_msgs * MSG - (len(frames[0]) - S.frame_len(S.OP_WRITE_FIRST, 0))
    return payload / (span * 8) / S.goodput_limit(MSG, p.mtu)


def _rtl_read_goodput(loss: float, n_msgs: int = 8, seed: int = 3) -> float:
    from cosim.nic.pair import run_pair_rtl
    from rtl.nic import PAIR_PARAMS

    p = PAIR_PARAMS
    a, b = scenario.pair(p)
    scenario.fill(b, seed)
    for i in range(n_msgs):
        a.post(0, S.WR_READ, local_addr=scenario.DST_BASE + (i % 2) * MSG, length=MSG,
               remote_addr=scenario.WIN_BASE + (i % 4) * MSG, rkey=scenario.WIN_KEY,
               signaled=i == n_msgs - 1)
    link = (seed, seed + 7, loss, loss / 2, loss / 2, 0.0)
    out = run_pair_rtl(a, b, link=link, timeout_cycles=2000, tag=f"benchrd{int(loss * 100)}")
    assert out["counters_a"]["wqe_done"] == 1, out["counters_a"]
    t = out["tx_b_t"]
    frames = out["tx_b"]
    span = t[-1] - t[0]
    payload = n_msgs * MSG - (len(frames[0]) - S.frame_len(S.OP_READ_RESP_FIRST, 0))
    return payload / (span * 8) / S.read_goodput_limit(MSG, p.mtu)


def _rtl_latency(op: int = S.WR_WRITE) -> int:
    from cosim.nic.pair import run_pair_rtl
    from rtl.nic import PAIR_PARAMS

    a, b = scenario.pair(PAIR_PARAMS)
    scenario.fill(a, 1)
    scenario.fill(b, 2)
    a.post(0, op, local_addr=scenario.DST_BASE if op == S.WR_READ else scenario.SRC_BASE,
           length=64, remote_addr=scenario.WIN_BASE, rkey=scenario.WIN_KEY)
    out = run_pair_rtl(a, b, tag="bench-lat", watch_b=True)
    return int(out["a_bresp_t"][-1] - out["bell_done"])


def run() -> dict:
    frames = _write_frames()
    ack = G.build_frame(opcode=S.OP_ACK, src_mac=scenario.MAC_A, dst_mac=scenario.MAC_B,
                        src_ip=scenario.IP_A, dst_ip=scenario.IP_B, src_qpn=0, dst_qpn=S.QPN_BASE,
                        psn=1, aeth=(S.AETH_ACK, 0))
    big = G.mac_tx(scenario.MAC_B.to_bytes(6, "big") + bytes(S.NicParams().max_frame - 10))
    out = run_mac([f[:-4] for f in frames], [ack, big], mac_addr=scenario.MAC_B, rx_expect=2,
                  sim="verilator", tag="bench")
    assert out["wire"] == frames, "RTL MAC frames differ from the golden frames"
    t = out["wire_times"]
    cycles = int(t[-1, 1] - t[0, 0] + 1) + S.MAC_IFG_BEATS
    goodput = MSG / (cycles * 8)
    limit = S.goodput_limit(MSG, MTU)
    lat = out["rx_out_times"][:, 0] - out["rx_in_times"][:, 1]
    res = {
        "mac_goodput_4k_write": {"value": round(goodput / limit, 4), "unit": "of limit",
                                 "target": ">= 0.9"},
        "mac_goodput_4k_write_raw": {"value": round(goodput, 4), "unit": "of raw rate"},
        "goodput_limit_4k_write": {"value": round(limit, 4), "unit": "of raw rate"},
        "mac_tx_cycles_4k_write": {"value": cycles, "unit": "cycles"},
        "mac_rx_latency_66B": {"value": int(lat[0]), "unit": "cycles"},
        "mac_rx_latency_max_frame": {"value": int(lat[1]), "unit": "cycles"},
    }
    from rtl.nic import PAIR_PARAMS

    for loss in (0.0, 0.01, 0.10):
        res[f"rtl_goodput_4k_write_loss{int(loss * 100)}pct"] = {
            "value": round(_rtl_goodput(loss), 4),
            "unit": f"of limit (MTU {PAIR_PARAMS.mtu}, limit "
                    f"{S.goodput_limit(MSG, PAIR_PARAMS.mtu):.4f} of raw)",
            "target": ">= 0.9" if loss == 0 else None}
    res["rtl_write_latency_64B"] = {"value": _rtl_latency(), "unit": "cycles",
                                    "target": None}
    for loss in (0.0, 0.01, 0.10):
        res[f"rtl_goodput_4k_read_loss{int(loss * 100)}pct"] = {
            "value": round(_rtl_read_goodput(loss), 4),
            "unit": f"of limit (MTU {PAIR_PARAMS.mtu}, limit "
                    f"{S.read_goodput_limit(MSG, PAIR_PARAMS.mtu):.4f} of raw)",
            "target": ">= 0.9" if loss == 0 else None}
    res["rtl_read_latency_64B"] = {"value": _rtl_latency(S.WR_READ), "unit": "cycles",
                                   "target": None}
    for loss in (0.0, 0.01, 0.10):
        g = _golden_goodput(loss)
        res[f"golden_goodput_4k_write_loss{int(loss * 100)}pct"] = {
            "value": round(g / limit, 4), "unit": "of limit (golden est.)",
            "target": ">= 0.9" if loss == 0 else None}
    res["notes"] = ("mac_* and rtl_* figures measured on RTL (Verilator); golden_* figures "
                    "from the golden transport tick model")
    res["frame_bytes_4k_write"] = [len(f) for f in frames]
    res["wire_beats_per_frame"] = [math.ceil(len(f) / 8) for f in frames]
    return res
