"""The per-phase profile of a collective from the RTL bench's frame log (cosim/tray/profile.py;
docs/tray.md "Profiling a collective"). No simulator: frames from golden.nic's builder and
hand-made frame logs with the expected times worked out here."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from cosim.tray import profile as PR
from golden import nic as GN
from spec import chip as C
from spec import nic as S
from spec import tray as T

MAC_A, MAC_B, IP_A, IP_B = 0x024D41000000, 0x024D41000100, 0x0A000001, 0x0A000101


def _frame(opcode, psn, payload=b"", reth=None, aeth=None, dqpn=0x123):
    return GN.build_frame(opcode=opcode, src_mac=MAC_A, dst_mac=MAC_B, src_ip=IP_A, dst_ip=IP_B,
                          src_qpn=5, dst_qpn=dqpn, psn=psn, reth=reth, aeth=aeth,
                          payload=payload)


def test_frame_fields_of_a_notification_a_write_and_an_ack():
    note = _frame(S.OP_SEND_ONLY, 0x0ABCDE, struct.pack("<BBHI", 7, 5, 0x1234, T.NOTE_MAGIC))
    n, op, dqpn, psn, ph, src = PR.frame_fields(note)
    assert (n, op, dqpn, psn, ph, src) == (len(note), S.OP_SEND_ONLY, 0x123, 0x0ABCDE, 7, 5)
    # a SEND whose payload is not a notification (wrong magic) is not one
    other = _frame(S.OP_SEND_ONLY, 3, struct.pack("<BBHI", 7, 5, 0x1234, T.NOTE_MAGIC ^ 1))
    assert PR.frame_fields(other)[4:] == (-1, -1)
    wr = _frame(S.OP_WRITE_ONLY, 9, bytes(64), reth=(0x1000, T.RKEY, 64))
    assert PR.frame_fields(wr) == (len(wr), S.OP_WRITE_ONLY, 0x123, 9, -1, -1)
    ack = _frame(S.OP_ACK, 0xFFFFFF, aeth=(S.AETH_ACK, 1))
    assert PR.frame_fields(ack)[1:4] == (S.OP_ACK, 0x123, 0xFFFFFF)
    assert PR.frame_fields(b"\x00" * 20) == (20, -1, -1, -1, -1, -1)


def _row(t, chip, port, nbytes, opcode, psn, ph=-1, src=-1, kind=PR.TX):
    return (t, kind, chip, port, nbytes, opcode, 0x100, psn, ph, src)


def _log_two_ranks():
    """An ALL_REDUCE over ranks (0, 1) of one tray (direct plan: 2 phases), each rank on
    its mesh port 0 towards the other; notes and ACKs 80 bytes (10 cycles on the wire),
    WRITEs 1000 bytes (125)."""
    W, N, A = S.OP_WRITE_ONLY, S.OP_SEND_ONLY, S.OP_ACK
    return [
        # phase 0
        _row(100, 0, 0, 1000, W, 1), _row(200, 0, 0, 1000, W, 2), _row(300, 0, 0, 80, N, 3, 0, 0),
        _row(120, 1, 0, 1000, W, 11), _row(250, 1, 0, 80, N, 12, 0, 1),
        _row(270, 0, 0, 80, A, 12), _row(320, 1, 0, 80, A, 3),
        # phase 1
        _row(500, 0, 0, 1000, W, 4), _row(600, 0, 0, 80, N, 5, 1, 0),
        _row(450, 1, 0, 1000, W, 13), _row(520, 1, 0, 80, N, 14, 1, 1),
        _row(540, 0, 0, 80, A, 14), _row(620, 1, 0, 80, A, 5),
    ]


def _raw_two_ranks():
    return T.entry_collective(T.KIND_ALL_REDUCE, T.FMT_FP32, src=0, dst=0x1000, count=512,
                              group=(0, 1), scratch=0x2000)


def test_rtl_phases_recover_start_sent_done_and_gap_from_the_frames():
    p = T.chip_params(C.TINY_TRAY)
    assert len(T.plan(T.decode(_raw_two_ranks())[0])) == 2
    res = {"frame_log": np.array(_log_two_ranks(), np.int64), 0: {"done": 640},
           1: {"done": 640}}
    prof = PR.rtl_phases(res, _raw_two_ranks(), p)
    r0, r1 = prof["ranks"][0], prof["ranks"][1]
    # rank 0, phase 0: first WRITE 100, note 300; done = later of rank 1's note arriving
    # (250 + 10) and the ACK of its own note (320 + 10); phase 1 starts at 500
    assert r0[0] == dict(start=100, sent=300, done=330, gap=170), r0[0]
    assert r1[0] == dict(start=120, sent=250, done=310, gap=140), r1[0]
    assert r0[1] == dict(start=500, sent=600, done=630, gap=None), r0[1]
    assert r1[1] == dict(start=450, sent=520, done=610, gap=None), r1[1]
    w = prof["phases"][0]
    assert (w["lo"], w["hi"], w["uplink"]) == (100, 330, False)
    # wire (0, 0): 125 + 125 + 10 + 10 (its ACK at 270); wire (1, 0): 125 + 10 + 10
    assert w["mesh"] == pytest.approx(((270 + 145) / 12 / 230, 270 / 230))
    assert w["up_tx"] == (0.0, 0.0) and w["egress"] == (0.0, 0.0)
    text = PR.table(prof, None, [0, 1])
    assert "rank 0" in text and "rank 1" in text


def test_rtl_phases_without_the_peers_notification_leave_done_unknown():
    rows = [r for r in _log_two_ranks() if not (r[2] == 1 and r[8] == 1)]   # rank 1's note 1
    res = {"frame_log": np.array(rows, np.int64), 0: {"done": 0}, 1: {"done": 0}}
    prof = PR.rtl_phases(res, _raw_two_ranks(), T.chip_params(C.TINY_TRAY))
    # rank 0 still sees the ACK of its own note; rank 1 sent no phase-1 note: its start is
    # its WRITE's, no 'sent'
    assert prof["ranks"][0][1]["done"] == 630
    assert prof["ranks"][1][1]["sent"] is None
    with pytest.raises(ValueError, match="res"):
        PR.rtl_phases({"frame_log": np.zeros((0, len(PR.LOG_FIELDS)), np.int64)},
                      _raw_two_ranks(), T.chip_params(C.TINY_TRAY))


def test_model_phases_are_ordered_and_end_with_the_model_run():
    p = T.TrayParams()
    count = 4 * 2048
    raw = T.entry_collective(T.KIND_ALL_REDUCE, T.FMT_FP32, src=0, dst=0x10000, count=count,
                             group=(0, 1, 2, 3), scratch=0x20000)
    rng = np.random.default_rng(3)
    inputs = {r: (0, rng.integers(0, 1 << 20, count, dtype=np.uint32).view(np.uint8).copy())
              for r in range(4)}
    model, cycles = PR.model_phases(raw, p, inputs)
    n_ph = len(T.plan(T.decode(raw)[0]))
    assert sorted(model) == [0, 1, 2, 3]
    for r, phs in model.items():
        assert len(phs) == n_ph
        prev = 0
        for ph in phs:
            assert prev <= ph["start"] <= ph["complete"] <= ph["end"], (r, phs)
            prev = ph["end"]
        assert phs[-1]["end"] <= cycles
    assert max(phs[-1]["end"] for phs in model.values()) == pytest.approx(cycles, rel=0.05)


def test_rtl_phases_split_one_queue_pair_by_every_earlier_notification():
    """The two-tier all-reduce over 8 ranks (11 phases): rank 0 sends piece k - 1 and its
    phase-k notification on its uplink queue pair in phases 1..8; each phase's data are the
    requests after the notification of the phase before (not the first one)."""
    p = T.chip_params(C.TRAY4_PERF, 2)
    raw = T.entry_collective(T.KIND_ALL_REDUCE, T.FMT_FP32, src=0, dst=0x100000, count=32768,
                             group=tuple(range(8)), scratch=0x200000)
    assert len(T.plan(T.decode(raw)[0])) == 11
    W, N = S.OP_WRITE_ONLY, S.OP_SEND_ONLY
    rows = []
    for k in range(1, 9):
        rows += [_row(1000 * k, 0, T.UPLINK, 1000, W, 2 * k - 1),
                 _row(1000 * k + 500, 0, T.UPLINK, 80, N, 2 * k, k, 0)]
    res = {"frame_log": np.array(rows, np.int64), **{r: {"done": 0} for r in range(8)}}
    prof = PR.rtl_phases(res, raw, p)
    assert [prof["ranks"][0][k]["start"] for k in range(1, 9)] == [1000 * k for k in range(1, 9)]
    assert [prof["ranks"][0][k]["sent"] for k in range(1, 9)] == [1000 * k + 500
                                                                   for k in range(1, 9)]
    assert prof["ranks"][0][0]["start"] is None and prof["ranks"][5][3]["start"] is None
