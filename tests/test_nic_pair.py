"""Two RTL NICs back to back (cosim/nic/pair_bench.py) against the golden twin: frames byte
for byte, memory images (payloads, receive rings, CQEs), counters; loss recovery."""

from __future__ import annotations

import numpy as np
import pytest

from cosim.nic import check, pcap, scenario
from cosim.nic.pair import run_pair_rtl
from cosim.sim import default_sims
from golden import nic as G
from spec import nic as S

PARAMS = S.NicParams(n_qps=2, n_windows=2, mtu=256, window=8, max_msg=4096)

# The loss and error-path runs need the Verilator model (Icarus would take hours); they are
# skipped when MAIA_SIM selects Icarus only.
needs_verilator = pytest.mark.skipif("verilator" not in default_sims(),
                                     reason="MAIA_SIM excludes verilator")


def _setup(seed, *, qps=(0, 1), n_msgs=4, max_len=1024, kinds=(S.WR_WRITE, S.WR_SEND)):
    a, b = scenario.pair(PARAMS, qps=qps)
    scenario.fill(a, seed)
    scenario.fill(b, seed + 1)
    posted = scenario.post_mix(a, seed, qps=qps, n_msgs=n_msgs, max_len=max_len, kinds=kinds)
    return a, b, posted


def _by_qp(frames):
    """Frames grouped by (opcode class, source QP): the per-QP order is timing independent."""
    out: dict[int, list[bytes]] = {}
    for f in frames:
        qp = int.from_bytes(f[34:36], "big") & 0x3FFF
        out.setdefault(qp, []).append(f)
    return out


def _mem_diff(name, want, got):
    if np.array_equal(want, got):
        return None
    idx = np.flatnonzero(want != got)
    k = int(idx[0])
    return (f"{name}: {len(idx)} bytes differ, first at {k:#x}: expected "
            f"{bytes(want[k:k + 16]).hex()} got {bytes(got[k:k + 16]).hex()}")


def run_both(a, b, link=(1, 2, 0.0, 0.0, 0.0, 0.0), sim="verilator", **kw):
    mem0 = (a.mem.copy(), b.mem.copy())
    rtl = run_pair_rtl(a, b, link=link, sim=sim, **kw)
    ga, gb = (G.LossyLink(int(link[0]), drop=link[2], dup=link[3], reorder=link[4],
                          corrupt=link[5]),
              G.LossyLink(int(link[1]), drop=link[2], dup=link[3], reorder=link[4],
                          corrupt=link[5]))
    sa, sb, _ = G.run_pair(a, b, ga, gb)
    return rtl, (sa, sb), mem0


@pytest.mark.sim
@pytest.mark.parametrize("sim", default_sims())
def test_pair_write_send_frames_memory_counters_match_golden(sim, tmp_path):
    seed = 5
    print(f"seed={seed}")
    if sim == "icarus":
        a, b, posted = _setup(seed, qps=(0,), n_msgs=2, max_len=64)
    else:
        a, b, posted = _setup(seed)
    rtl, (sa, sb), _ = run_both(a, b, sim=sim, tag=f"ws-{sim}")
    for name, want, got in (("A", sa, rtl["tx_a"]), ("B", sb, rtl["tx_b"])):
        w, g = _by_qp(want), _by_qp(got)
        assert sorted(w) == sorted(g), f"NIC {name}: source QPs {sorted(w)} vs {sorted(g)}"
        for q in w:
            check.assert_frames_equal(w[q], g[q], f"NIC {name} QP {q} frame")
        check.assert_frames_valid(got, f"NIC {name} frame")
    errs = [e for e in (_mem_diff("A memory", a.mem, rtl["mem_a"]),
                        _mem_diff("B memory", b.mem, rtl["mem_b"])) if e]
    assert not errs, errs
    for name, g, r in (("A", a.counters, rtl["counters_a"]), ("B", b.counters, rtl["counters_b"])):
        diff = {k: (g[k], r[k]) for k in S.COUNTERS if g[k] != r[k]}
        assert not diff, f"NIC {name} counters (golden, rtl): {diff}"
    assert rtl["counters_a"]["wqe_done"] == len(posted)
    _pcap_check(rtl, tmp_path / f"pair-{sim}.pcap")


def _pcap_check(rtl, path):
    """Write every RTL frame (both directions, in time order) to a pcap file, read it back,
    and let tshark dissect it as RoCE where tshark is installed. MAIA_PCAP=<dir> keeps it."""
    frames = sorted([(t, f) for t, f in zip(rtl["tx_a_t"], rtl["tx_a"])]
                    + [(t, f) for t, f in zip(rtl["tx_b_t"], rtl["tx_b"])], key=lambda x: x[0])
    if pcap.pcap_dir() is not None:
        path = pcap.pcap_dir() / path.name
    pcap.write_pcap(path, [(10.0 * t, f) for t, f in frames])
    assert pcap.read_pcap(path) == [f for _, f in frames]
    if pcap.tshark() is not None:
        problems = pcap.check_pcap_tshark(path)
        assert not problems, problems[:10]


def _check_final_state(a, b, rtl, posted, mem0):
    """Memory images (payloads, receive rings, CQE rings) and the delivery counters equal
    golden's; delivery is exactly once and in order."""
    errs = [e for e in (_mem_diff("A memory", a.mem, rtl["mem_a"]),
                        _mem_diff("B memory", b.mem, rtl["mem_b"])) if e]
    for k in ("wqe_done", "recv_done"):
        if a.counters[k] + b.counters[k] != rtl["counters_a"][k] + rtl["counters_b"][k]:
            errs.append(f"{k}: golden {a.counters[k]}+{b.counters[k]} rtl "
                        f"{rtl['counters_a'][k]}+{rtl['counters_b'][k]}")
    errs += scenario.check_delivery(a, b, posted, *mem0)
    assert not errs, "\n".join(errs)


def _loss_run(loss, seed, n_msgs=5):
    print(f"seed={seed} loss={loss}")
    a, b, posted = _setup(seed, n_msgs=n_msgs)
    link = (seed, seed + 7, loss, loss / 2, loss / 2, loss / 4)
    rtl, _, mem0 = run_both(a, b, link=link, tag=f"loss{seed}", timeout_cycles=3000)
    _check_final_state(a, b, rtl, posted, mem0)
    check.assert_frames_valid(rtl["tx_a"] + rtl["tx_b"], "RTL frame")
    return rtl


@pytest.mark.sim
@needs_verilator
@pytest.mark.parametrize("loss,seed", [(0.0, 10), (0.01, 11), (0.10, 12), (0.10, 13)])
def test_pair_exactly_once_under_loss(loss, seed):
    """Seeded drop + duplicate + reorder + corrupt on both directions (Verilator only)."""
    rtl = _loss_run(loss, seed)
    if loss >= 0.1:
        r = rtl["counters_a"]
        assert r["retransmits"] > 0, r
        assert rtl["counters_b"]["rx_dup"] + rtl["counters_b"]["rx_seq_err"] > 0, rtl["counters_b"]


@pytest.mark.sim
@pytest.mark.slow
@needs_verilator
@pytest.mark.parametrize("loss", [0.01, 0.05, 0.10, 0.20])
@pytest.mark.parametrize("seed", range(100, 106))
def test_pair_exactly_once_under_loss_regression(loss, seed):
    """Longer seeded regression (make test-long): 8 messages per queue pair."""
    _loss_run(loss, seed, n_msgs=8)


@pytest.mark.sim
@needs_verilator
@pytest.mark.parametrize("case", ["bad_key", "below_window", "past_window_end", "bad_wqe",
                                  "send_too_large"])
def test_pair_error_paths_match_golden(case):
    """Remote access NAK (bad key, outside the window) writes nothing; a bad WQE completes
    BAD_WQE and the QP keeps working; a SEND larger than the receive slot gets NAK invalid
    request. Memory images (CQEs included) and all counters equal golden's."""
    a, b = scenario.pair(PARAMS)
    scenario.fill(a, 5)
    scenario.fill(b, 6)
    rkey, remote, length, op = scenario.WIN_KEY, scenario.WIN_BASE, 256, S.WR_WRITE
    if case == "bad_key":
        rkey ^= 1
    elif case == "below_window":
        remote -= 8
    elif case == "past_window_end":
        remote = scenario.WIN_BASE + scenario.WIN_LEN - 128
    elif case == "send_too_large":
        op, length = S.WR_SEND, (1 << scenario.RQ_SLOT_LOG2) + 256
    if case == "bad_wqe":
        a.post(0, S.WR_WRITE, local_addr=scenario.SRC_BASE, length=12, remote_addr=remote,
               rkey=rkey, wr_id=0x77, check=False)
    else:
        a.post(0, op, local_addr=scenario.SRC_BASE, length=length, remote_addr=remote,
               rkey=rkey, wr_id=0x77)
    a.post(0, S.WR_WRITE, local_addr=scenario.SRC_BASE, length=64,
           remote_addr=scenario.WIN_BASE, rkey=scenario.WIN_KEY, wr_id=0x78)
    b_before = b.mem.copy()
    rtl, (sa, sb), _ = run_both(a, b, tag=f"err-{case}")
    errs = [e for e in (_mem_diff("A memory", a.mem, rtl["mem_a"]),
                        _mem_diff("B memory", b.mem, rtl["mem_b"])) if e]
    assert not errs, errs
    for name, g, r in (("A", a.counters, rtl["counters_a"]), ("B", b.counters, rtl["counters_b"])):
        diff = {k: (g[k], r[k]) for k in S.COUNTERS if g[k] != r[k]}
        assert not diff, f"NIC {name} counters (golden, rtl): {diff}"
    cq = a.cqes(0)
    want = {"bad_key": S.CQ_REMOTE_ACCESS_ERR, "below_window": S.CQ_REMOTE_ACCESS_ERR,
            "past_window_end": S.CQ_REMOTE_ACCESS_ERR, "bad_wqe": S.CQ_BAD_WQE,
            "send_too_large": S.CQ_REMOTE_INVALID_REQ}[case]
    assert cq[0]["status"] == want, cq
    if case != "bad_wqe":
        assert cq[1]["status"] == S.CQ_FLUSHED, cq
        # nothing written by the failed request or the flushed one
        changed = np.flatnonzero(rtl["mem_b"] != b_before)
        win = (changed >= scenario.WIN_BASE) & (changed < scenario.WIN_BASE + scenario.WIN_LEN)
        assert not win.any(), f"window bytes written at {changed[win][:8]}"
    else:
        assert cq[1]["status"] == S.CQ_OK, cq


@pytest.mark.sim
@needs_verilator
def test_pair_retry_exceeded_when_peer_is_gone():
    """Every frame lost: after retry_limit + 1 timer expiries the oldest WQE completes
    RETRY_EXCEEDED and the next one FLUSHED; memory images and all counters equal golden's."""
    a, b = scenario.pair(PARAMS, timeout=8)
    a.retry_limit = 3
    for wr_id in (1, 2):
        a.post(0, S.WR_WRITE, local_addr=scenario.SRC_BASE, length=64,
               remote_addr=scenario.WIN_BASE, rkey=scenario.WIN_KEY, wr_id=wr_id)
    rtl, _, _ = run_both(a, b, link=(1, 2, 1.0, 0.0, 0.0, 0.0), tag="retry",
                         timeout_cycles=300, retry_limit=3)
    errs = [e for e in (_mem_diff("A memory", a.mem, rtl["mem_a"]),
                        _mem_diff("B memory", b.mem, rtl["mem_b"])) if e]
    assert not errs, errs
    for name, g, r in (("A", a.counters, rtl["counters_a"]), ("B", b.counters, rtl["counters_b"])):
        diff = {k: (g[k], r[k]) for k in S.COUNTERS if g[k] != r[k]}
        assert not diff, f"NIC {name} counters (golden, rtl): {diff}"
    assert [(c["wr_id"], c["status"]) for c in a.cqes(0)] == [
        (1, S.CQ_RETRY_EXCEEDED), (2, S.CQ_FLUSHED)]
    assert rtl["counters_a"]["timeouts"] == 4


def test_memory_compare_catches_a_corrupted_image():
    a = np.arange(64, dtype=np.uint8)
    b = a.copy()
    b[17] ^= 4
    msg = _mem_diff("B memory", a, b)
    assert msg is not None and "first at 0x11" in msg
    assert _mem_diff("B memory", a, a.copy()) is None
