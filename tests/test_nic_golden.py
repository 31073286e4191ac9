"""Golden NIC twin against independent references (scapy, a bit-serial CRC) and the
transport contract: exactly-once delivery under loss, every NAK path, memory protection."""

from __future__ import annotations

import numpy as np
import pytest

from cosim.nic import check, pcap, scenario
from golden import nic as G
from spec import nic as S

A = dict(src_mac=scenario.MAC_A, dst_mac=scenario.MAC_B, src_ip=scenario.IP_A,
         dst_ip=scenario.IP_B, src_qpn=1, dst_qpn=S.QPN_BASE + 3)


def every_opcode_frames(payload=bytes(range(64))):
    out = []
    for op in S.OPCODE_NAMES:
        reth = (0x1122334455667788, 0xDEADBEEF, 4096) if op in S.OPS_WITH_RETH else None
        aeth = (S.AETH_ACK, 7) if op in S.OPS_WITH_AETH else None
        pl = b"" if op in (S.OP_ACK, S.OP_READ_REQUEST) else payload
        out.append(G.build_frame(opcode=op, psn=0xABCDEF, ackreq=True, reth=reth, aeth=aeth,
                                 payload=pl, **A))
    return out


def test_frames_parse_with_scapy_every_opcode():
    frames = every_opcode_frames()
    check.assert_frames_valid(frames)
    for f in frames:
        p = G.parse_frame(f)
        assert p.psn == 0xABCDEF and p.dst_qpn == S.QPN_BASE + 3 and p.src_qpn == 1


def test_frame_sizes_follow_spec():
    for op in S.OPCODE_NAMES:
        pl = b"" if op in (S.OP_ACK, S.OP_READ_REQUEST) else bytes(256)
        f = G.build_frame(opcode=op, psn=1, payload=pl,
                          reth=(0, 0, 8) if op in S.OPS_WITH_RETH else None,
                          aeth=(S.AETH_ACK, 0) if op in S.OPS_WITH_AETH else None, **A)
        assert len(f) == S.frame_len(op, len(pl)), S.OPCODE_NAMES[op]


def test_checker_catches_corruption():
    f = bytearray(every_opcode_frames()[0])
    f[60] ^= 1                                  # payload bit: both ICRC and FCS break
    probs = check.frame_problems(bytes(f))
    assert any("ICRC" in p for p in probs) and any("FCS" in p for p in probs), probs
    with pytest.raises(AssertionError, match="invalid"):
        check.assert_frames_valid([bytes(f)])
    with pytest.raises(AssertionError, match="first difference at byte 60"):
        check.assert_frames_equal([every_opcode_frames()[0]], [bytes(f)])


def test_mac_rx_checks():
    good = every_opcode_frames()[0]
    mx = S.NicParams().max_frame
    assert G.mac_rx_check(good, scenario.MAC_B, mx) is None
    assert G.mac_rx_check(good, scenario.MAC_A, mx) == "rx_foreign"
    bad = bytearray(good)
    bad[-1] ^= 0x80
    assert G.mac_rx_check(bytes(bad), scenario.MAC_B, mx) == "rx_fcs_err"
    runt = G.mac_tx(b"\xff" * 6 + bytes(8))[:60]
    assert G.mac_rx_check(runt, scenario.MAC_B, mx) == "rx_runt"
    big = G.mac_tx(scenario.MAC_B.to_bytes(6, "big") + bytes(mx))
    assert G.mac_rx_check(big, scenario.MAC_B, mx) == "rx_oversize"
    bcast = G.mac_tx(b"\xff" * 6 + bytes(50))
    assert len(bcast) == 64 and bcast[56:60] == bytes(4)   # padded with zeros to 60 + FCS
    assert G.mac_rx_check(bcast, scenario.MAC_B, mx) is None


def test_parse_frame_errors():
    f = every_opcode_frames()[0]
    bad = bytearray(f)
    bad[70] ^= 0xFF
    with pytest.raises(G.FrameError, match="rx_icrc_err"):
        G.parse_frame(G.mac_tx(bytes(bad[:-4])))
    notroce = bytearray(f)
    notroce[37] = 0x00                          # UDP dport 4791 -> other
    with pytest.raises(G.FrameError, match="rx_not_roce"):
        G.parse_frame(G.mac_tx(bytes(notroce[:-4])))


@pytest.mark.parametrize("kw,match", [
    (dict(opcode=0x42), "opcode"), (dict(payload=b"123"), "multiple of 8"),
    (dict(psn=1 << 24), "psn"), (dict(opcode=S.OP_WRITE_ONLY), "reth"),
    (dict(opcode=S.OP_ACK), "aeth")])
def test_build_frame_rejects_bad_arguments(kw, match):
    args = dict(opcode=S.OP_SEND_ONLY, psn=0, payload=b"")
    args.update(kw)
    with pytest.raises(ValueError, match=match):
        G.build_frame(**args, **A)


def test_post_rejects_bad_arguments():
    a, _ = scenario.pair()
    with pytest.raises(ValueError, match="length"):
        a.post(0, S.WR_WRITE, local_addr=0x8000, length=12)
    with pytest.raises(ValueError, match="local_addr"):
        a.post(0, S.WR_WRITE, local_addr=0x8004, length=8)
    with pytest.raises(ValueError, match="opcode"):
        a.post(0, 9, local_addr=0x8000, length=8)
    with pytest.raises(ValueError, match="qpn"):
        a.post(7, S.WR_WRITE, local_addr=0x8000, length=8)
    with pytest.raises(ValueError, match="drop"):
        G.LossyLink(drop=1.5)


def _run(seed, loss, *, qps=(0,), n_msgs=6, params=None, dup=None, reorder=None):
    a, b = scenario.pair(params, qps=qps)
    scenario.fill(a, seed)
    scenario.fill(b, seed + 1)
    posted = scenario.post_mix(a, seed, qps=qps, n_msgs=n_msgs)
    a0, b0 = a.mem.copy(), b.mem.copy()
    dup = loss / 2 if dup is None else dup
    reorder = loss / 2 if reorder is None else reorder
    ab = G.LossyLink(seed, drop=loss, dup=dup, reorder=reorder, corrupt=loss / 4)
    ba = G.LossyLink(seed + 7, drop=loss, dup=dup, reorder=reorder, corrupt=loss / 4)
    sa, sb, ticks = G.run_pair(a, b, ab, ba)
    return a, b, posted, a0, b0, sa, sb


@pytest.mark.parametrize("loss", [0.0, 0.01, 0.10])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_exactly_once_in_order_under_loss(loss, seed, tmp_path):
    print(f"seed={seed} loss={loss}")
    a, b, posted, a0, b0, sa, sb = _run(seed, loss, qps=(0, 1, 2, 3), n_msgs=6)
    errs = scenario.check_delivery(a, b, posted, a0, b0)
    assert not errs, "\n".join(errs)
    check.assert_frames_valid(sa + sb)
    path = pcap.write_pcap(tmp_path / "pair.pcap", sa + sb)
    assert pcap.read_pcap(path) == sa + sb
    if loss == 0.0:
        for k in ("retransmits", "timeouts", "rx_nak"):
            assert a.counters[k] == 0, (k, a.counters)
        assert b.counters["rx_dup"] == 0 and b.counters["tx_nak_seq"] == 0


def test_loss_exercises_recovery_paths():
    """10% loss with duplicates and reordering hits go-back-N, duplicate re-ACKs, PSN
    sequence NAKs and the timer (for these seeds; seeds printed)."""
    tot = dict.fromkeys(("retransmits", "timeouts", "rx_nak", "rx_dup", "tx_nak_seq",
                         "rx_fcs_err"), 0)
    for seed in range(4):
        a, b, posted, a0, b0, *_ = _run(100 + seed, 0.10, qps=(0, 1), n_msgs=8)
        assert not scenario.check_delivery(a, b, posted, a0, b0), f"seed {100 + seed}"
        for k in tot:
            tot[k] += a.counters[k] + b.counters[k]
    print(tot)
    assert all(v > 0 for v in tot.values()), tot


def _single(op, *, rkey=scenario.WIN_KEY, remote=scenario.WIN_BASE, length=256, params=None):
    a, b = scenario.pair(params)
    scenario.fill(a, 5)
    scenario.fill(b, 6)
    local = scenario.DST_BASE if op == S.WR_READ else scenario.SRC_BASE
    a.post(0, op, local_addr=local, length=length, remote_addr=remote, rkey=rkey, wr_id=0x77)
    a.post(0, S.WR_WRITE, local_addr=scenario.SRC_BASE, length=64,
           remote_addr=scenario.WIN_BASE, rkey=scenario.WIN_KEY, wr_id=0x78)
    a0, b0 = a.mem.copy(), b.mem.copy()
    G.run_pair(a, b)
    return a, b, a0, b0


@pytest.mark.parametrize("op", [S.WR_WRITE, S.WR_READ])
@pytest.mark.parametrize("case", ["bad_key", "below_window", "past_window_end"])
def test_protection_naks_and_writes_nothing(op, case):
    rkey, remote = scenario.WIN_KEY, scenario.WIN_BASE
    if case == "bad_key":
        rkey ^= 1
    elif case == "below_window":
        remote -= 8
    else:
        remote += scenario.WIN_LEN - 128          # 256-byte access crosses the end
    a, b, a0, b0 = _single(op, rkey=rkey, remote=remote, length=256 * 3)
    assert np.array_equal(b.mem, b0), "remote memory changed"
    assert np.array_equal(a.mem[scenario.DST_BASE:], a0[scenario.DST_BASE:]) or op == S.WR_WRITE
    cq = [(c["wr_id"], c["status"]) for c in a.cqes(0)]
    assert cq == [(0x77, S.CQ_REMOTE_ACCESS_ERR), (0x78, S.CQ_FLUSHED)], cq
    assert b.counters["tx_nak_access"] >= 1 and a.counters["rx_nak"] >= 1


def test_flushed_completions_carry_psn_and_byte_len_zero():
    """Contract (docs/nic.md "Queue formats"): a FLUSHED completion has psn 0 and byte_len 0,
    also for WQEs whose packets had left before the fatal NAK (here a SEND larger than the
    receive slot, its NAK delayed 20 ticks on the way back, so the two WRITEs after it were
    sent); the failing WQE's completion carries its first PSN."""
    a, b = scenario.pair()
    scenario.fill(a, 5)
    scenario.fill(b, 6)
    a.post(0, S.WR_SEND, local_addr=scenario.SRC_BASE, length=1280, wr_id=0x77)
    for wr in (0x78, 0x79):
        a.post(0, S.WR_WRITE, local_addr=scenario.SRC_BASE, length=64,
               remote_addr=scenario.WIN_BASE, rkey=scenario.WIN_KEY, wr_id=wr)
    sent, _, _ = G.run_pair(a, b, G.LossyLink(1), G.LossyLink(2, delay=20))
    first = G.parse_frame(sent[0]).psn
    psns = {G.parse_frame(f).psn for f in sent}
    assert {(first + k) & S.PSN_MASK for k in range(7)} <= psns, "the WRITEs must have left"
    cq = [(c["wr_id"], c["status"], c["psn"], c["byte_len"]) for c in a.cqes(0)]
    assert cq == [(0x77, S.CQ_REMOTE_INVALID_REQ, first, 0), (0x78, S.CQ_FLUSHED, 0, 0),
                  (0x79, S.CQ_FLUSHED, 0, 0)], [tuple(hex(x) for x in c) for c in cq]


def test_window_permissions():
    a, b = scenario.pair()
    b.set_window(0, base=scenario.WIN_BASE, length=scenario.WIN_LEN, key=scenario.WIN_KEY,
                 perm=S.PERM_VALID | S.PERM_REMOTE_READ)          # read-only window
    a.post(0, S.WR_WRITE, local_addr=scenario.SRC_BASE, length=64,
           remote_addr=scenario.WIN_BASE, rkey=scenario.WIN_KEY, wr_id=1)
    b0 = b.mem.copy()
    G.run_pair(a, b)
    assert np.array_equal(b.mem, b0)
    assert a.cqes(0)[0]["status"] == S.CQ_REMOTE_ACCESS_ERR


def test_nak_invalid_request_send_too_large():
    a, b = scenario.pair()
    big = (1 << scenario.RQ_SLOT_LOG2) + 256
    a.post(0, S.WR_SEND, local_addr=scenario.SRC_BASE, length=big, wr_id=5)
    G.run_pair(a, b)
    assert a.cqes(0)[0]["status"] == S.CQ_REMOTE_INVALID_REQ
    assert b.counters["tx_nak_inv"] == 1 and b.counters["recv_done"] == 0


def test_nak_psn_sequence_error_and_recovery():
    """Drop exactly the first packet: the responder NAKs the second with the expected PSN
    once, the requester goes back and everything arrives."""
    a, b = scenario.pair()
    scenario.fill(a, 9)
    a.post(0, S.WR_WRITE, local_addr=scenario.SRC_BASE, length=1024,
           remote_addr=scenario.WIN_BASE, rkey=scenario.WIN_KEY, wr_id=1)
    a0 = a.mem.copy()

    class DropFirst(G.LossyLink):
        def fate(self, frame):
            self.n = getattr(self, "n", 0) + 1
            return [] if self.n == 1 else [frame]
    G.run_pair(a, b, DropFirst())
    assert b.counters["tx_nak_seq"] == 1 and b.counters["rx_seq_err"] >= 1
    assert a.counters["rx_nak"] == 1 and a.counters["timeouts"] == 0
    assert np.array_equal(b.mem[scenario.WIN_BASE:scenario.WIN_BASE + 1024],
                          a0[scenario.SRC_BASE:scenario.SRC_BASE + 1024])


def test_bad_wqe_reports_error_and_qp_keeps_working():
    a, b = scenario.pair()
    a.post(0, S.WR_WRITE, local_addr=scenario.SRC_BASE, length=12, wr_id=1, check=False)
    a.post(0, 7, local_addr=scenario.SRC_BASE, length=8, wr_id=2, check=False)
    a.post(0, S.WR_WRITE, local_addr=scenario.SRC_BASE, length=64,
           remote_addr=scenario.WIN_BASE, rkey=scenario.WIN_KEY, wr_id=3)
    G.run_pair(a, b)
    assert [(c["wr_id"], c["status"]) for c in a.cqes(0)] == [
        (1, S.CQ_BAD_WQE), (2, S.CQ_BAD_WQE), (3, S.CQ_OK)]


def test_retry_exceeded_when_peer_is_gone():
    a, b = scenario.pair(timeout=8)
    a.retry_limit = 3
    a.post(0, S.WR_WRITE, local_addr=scenario.SRC_BASE, length=64,
           remote_addr=scenario.WIN_BASE, rkey=scenario.WIN_KEY, wr_id=1)
    G.run_pair(a, b, G.LossyLink(drop=1.0))
    assert a.cqes(0)[0]["status"] == S.CQ_RETRY_EXCEEDED and a.counters["timeouts"] == 4


def test_goodput_limit_formula():
    # 4 KiB in 1 KiB packets: first 1024+70+8 B, 3 more 1024+54+8 B, +20 B preamble/IFG each
    want = 4096 / (4 * (1024 + 54 + 8 + 20) + 16)
    assert S.goodput_limit(4096, 1024) == pytest.approx(want)


@pytest.mark.skipif(pcap.tshark() is None, reason="tshark not on PATH (the project bootstrap "
                    "installs it; this check runs where it is present)")
def test_tshark_dissects_frames_as_roce(tmp_path):
    a, b, posted, a0, b0, sa, sb = _run(4, 0.0, qps=(0, 1))
    path = pcap.write_pcap(tmp_path / "golden.pcap", every_opcode_frames() + sa + sb)
    problems = pcap.check_pcap_tshark(path)
    assert not problems, "\n".join(problems[:20])
