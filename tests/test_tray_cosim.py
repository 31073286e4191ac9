"""Transport-level co-simulation of the tray (cosim/tray): real RoCEv2 frames between golden
NICs over seeded lossy wires and the switch; results bit for bit equal to the references of
tests/test_tray.py and to golden/tray.py's memory images, with and without faults; a cut
link ends in a reported error."""

from __future__ import annotations

import numpy as np
import pytest
from test_tray import CASES, _mem_reference, assert_bits_equal

from cosim.tray import Tray
from cosim.tray import scenario as SC
from golden import tray as GT
from spec import chip as C
from spec import nic as N
from spec import tray as T

FAULTS = dict(drop=0.03, dup=0.02, reorder=0.02, corrupt=0.02)


def run_case(n, kind, fmt, *, seed, faults=None, cut=(), count_mult=2, count=None, p=None,
             root=None):
    p = p or SC.params_for(n)
    g = SC.group_for(n)
    count = count or T.count_multiple(fmt, n) * count_mult
    raw = SC.entry(kind, fmt, g, count, root=n - 1 if root is None else root)
    tray = Tray(p, seed=seed, faults=faults, cut=cut)
    ins = SC.fill(tray.mems, raw, seed)
    gold = {r: m.copy() for r, m in tray.mems.items()}
    res = tray.collective(raw)
    return tray, raw, ins, gold, res


def check_against_golden(tray, raw, ins, gold, res):
    p = tray.p
    d, _ = T.decode(raw)
    st = GT.run(gold, raw, p)
    assert res.status == st, f"status {res.status} != golden {st}"
    for r, regions in _mem_reference(d, ins).items():
        for addr, exp in regions.items():
            assert_bits_equal(f"rank {r} @{addr:#x}", exp, tray.mems[r][addr:addr + len(exp)])
    keep = np.ones(p.ring_base, bool)
    if "scratch" in d.extents():
        a, nb = d.extents()["scratch"]
        keep[a:a + nb] = False
    for r in range(p.n_ranks):
        # every byte outside the NIC rings and the scratch area equals golden's image
        assert_bits_equal(f"rank {r} HBM image", gold[r][:p.ring_base][keep],
                          tray.mems[r][:p.ring_base][keep])


@pytest.mark.parametrize("n", [2, 4, 8])
@pytest.mark.parametrize("kind,fmt", CASES)
def test_collective_matches_golden_no_faults(n, kind, fmt):
    seed = 7000 + 100 * n + 10 * kind + fmt
    print(f"seed {seed}")
    tray, raw, ins, gold, res = run_case(n, kind, fmt, seed=seed)
    assert res.ok, res.status
    assert res.retransmits == 0 and res.faults.get("ok", 0) > 0
    check_against_golden(tray, raw, ins, gold, res)


@pytest.mark.parametrize("n", [2, 4, 8])
@pytest.mark.parametrize("kind,fmt", [(T.KIND_ALL_REDUCE, T.FMT_FP32),
                                      (T.KIND_REDUCE_SCATTER, T.FMT_FP32),
                                      (T.KIND_ALL_GATHER, T.FMT_MX_E4M3),
                                      (T.KIND_BROADCAST, T.FMT_FP32)])
def test_collective_matches_golden_under_faults(n, kind, fmt):
    """3% drop, 2% duplicate, 2% reorder, 2% corrupt on every wire: retransmissions happen,
    the result is still golden's, bit for bit."""
    seed = 9000 + 100 * n + 10 * kind + fmt
    print(f"seed {seed} faults {FAULTS}")
    tray, raw, ins, gold, res = run_case(n, kind, fmt, seed=seed, faults=FAULTS, count=32768)
    assert res.ok, res.status
    assert res.faults.get("drop", 0) > 0 and res.faults.get("corrupt", 0) > 0
    assert res.retransmits > 0, "the fault rate must force retransmissions"
    assert res.counters["rx_fcs_err"] > 0 or res.switch["rx_fcs_err"] > 0
    check_against_golden(tray, raw, ins, gold, res)


def test_result_does_not_depend_on_arrival_order():
    """The same all-reduce under three fault seeds (different loss, arrival and retry
    patterns) and without faults: identical destination bytes on every rank."""
    outs = []
    for seed, faults in ((1, None), (2, FAULTS), (3, FAULTS), (4, dict(reorder=0.3, dup=0.1))):
        print(f"seed {seed} faults {faults}")
        p = SC.params_for(4)
        raw = SC.entry(T.KIND_ALL_REDUCE, T.FMT_FP32, (0, 1, 2, 3), 512)
        tray = Tray(p, seed=seed, faults=faults)
        SC.fill(tray.mems, raw, 42)          # same inputs every time
        res = tray.collective(raw)
        assert res.ok
        outs.append([tray.mems[r][SC.DST:SC.DST + 2048].copy() for r in range(4)])
    for o in outs[1:]:
        for r in range(4):
            assert_bits_equal(f"rank {r}", outs[0][r], o[r])


def test_high_fault_rate_still_exact():
    """10% drop plus 5% each of duplicates, reordering and corruption on every wire of 8
    chips (cross-tray paths cross two wires each way), NIC retry limit 16."""
    seed = 31337
    faults = dict(drop=0.1, dup=0.05, reorder=0.05, corrupt=0.05)
    print(f"seed {seed} faults {faults}")
    tray, raw, ins, gold, res = run_case(8, T.KIND_ALL_REDUCE, T.FMT_FP32, seed=seed,
                                         faults=faults, count=4096,
                                         p=SC.params_for(8, retry_limit=16))
    assert res.ok, res.status
    assert res.retransmits > 50 and res.timeouts > 0 and res.counters["rx_dup"] > 0
    check_against_golden(tray, raw, ins, gold, res)


def test_mesh_link_cut_reports_retry_exceeded_not_a_hang():
    seed = 5
    print(f"seed {seed}")
    tray, raw, ins, gold, res = run_case(4, T.KIND_ALL_REDUCE, T.FMT_FP32, seed=seed,
                                         cut=[(0, 1)])
    p = tray.p
    assert not res.ok
    for r, peer in ((0, 1), (1, 0)):
        err, det = res.status[r]
        assert err == T.ERR_COLLECTIVE
        assert T.split_detail(det) == (T.CAUSE_NIC, peer, N.CQ_RETRY_EXCEEDED), hex(det)
    for r in (2, 3):                        # they wait for ranks 0/1, which never send
        err, det = res.status[r]
        cause, peer, _ = T.split_detail(det)
        assert err == T.ERR_COLLECTIVE and cause == T.CAUSE_TIMEOUT and peer in (0, 1)
    # bounded: retry exhaustion, then the engines' timeout
    assert res.cycles < 2 * (p.engine_timeout_cycles + (p.retry_limit + 2) * p.timeout_cycles)
    assert tray.net.quiet()
    # the tray keeps working on the other links: all-gather among ranks 0, 2, 3
    raw2 = T.entry_collective(T.KIND_ALL_GATHER, T.FMT_FP32, src=SC.SRC, dst=SC.DST,
                              count=96, group=(0, 2, 3))
    res2 = tray.collective(raw2)
    assert res2.ok, res2.status


def test_uplink_cut_8_chips_reports_error():
    seed = 6
    print(f"seed {seed}")
    tray, raw, ins, gold, res = run_case(8, T.KIND_ALL_GATHER, T.FMT_FP32, seed=seed,
                                         cut=[("uplink", 5)])
    cause, peer, cq = T.split_detail(res.status[5][1])
    assert res.status[5][0] == T.ERR_COLLECTIVE and cause == T.CAUSE_NIC
    assert cq == N.CQ_RETRY_EXCEEDED and peer < 4
    # tray 0 needs rank 5's chunk, which only the cut uplink carries (two-tier: rank 5's
    # partner, rank 1, forwards it in tray 0); a rank that finishes must be right
    assert all(res.status[r][0] == T.ERR_COLLECTIVE for r in range(4))
    d, _ = T.decode(raw)
    ref = _mem_reference(d, ins)
    for r, (err, det) in res.status.items():
        if err == C.ERR_NONE:
            for addr, exp in ref[r].items():
                assert_bits_equal(f"rank {r}", exp, tray.mems[r][addr:addr + len(exp)])
        else:
            assert err == T.ERR_COLLECTIVE and T.split_detail(det)[0] in T.CAUSE_NAMES
    assert tray.net.quiet()


def test_bad_command_reports_static_error_and_sends_nothing():
    p = SC.params_for(4)
    tray = Tray(p)
    raw = T.entry_collective(T.KIND_ALL_REDUCE, T.FMT_MX_E4M3, src=0, dst=SC.DST, count=2048,
                             group=(0, 1, 2, 3), scratch=SC.SCRATCH)
    res = tray.collective(raw)
    assert res.status == {r: (C.ERR_BAD_ENTRY, 0) for r in range(4)}
    assert res.counters["tx_frames"] == 0


def test_back_to_back_collectives_and_subgroups():
    """Several commands on one tray system: PSNs and completion rings carry over."""
    p = SC.params_for(8)
    tray = Tray(p, seed=11, faults=dict(drop=0.02))
    for i, (kind, g) in enumerate([(T.KIND_ALL_REDUCE, (0, 1, 2, 3, 4, 5, 6, 7)),
                                   (T.KIND_REDUCE_SCATTER, (1, 2, 5)),
                                   (T.KIND_BROADCAST, (3, 4)),
                                   (T.KIND_ALL_GATHER, (0, 3, 6, 7))]):
        n = len(g)
        raw = T.entry_collective(kind, T.FMT_FP32, src=SC.SRC, dst=SC.DST, count=32 * n,
                                 group=g, root=g[-1] if kind == T.KIND_BROADCAST else 0,
                                 scratch=SC.SCRATCH if kind < 2 else 0)
        ins = SC.fill(tray.mems, raw, 500 + i)
        gold = {r: m.copy() for r, m in tray.mems.items()}
        res = tray.collective(raw)
        assert res.ok, (i, res.status)
        check_against_golden(tray, raw, ins, gold, res)


def test_transport_time_matches_golden_estimate_at_zero_loss():
    """Two independent computations of the same schedule: the event-driven transport model
    and golden's closed-form estimate agree within 5% on 2 and 4 chips, 12% on 8 chips
    (the switch queues are not in the estimate)."""
    for n, tol, count in ((2, 0.05, 1 << 14), (4, 0.05, 1 << 14), (8, 0.12, 1 << 16)):
        tray, raw, ins, gold, res = run_case(n, T.KIND_ALL_REDUCE, T.FMT_FP32, seed=n,
                                             count=count)
        est = GT.estimate(raw, tray.p)
        assert res.ok
        assert abs(res.cycles - est["cycles"]) <= tol * est["cycles"], (n, res.cycles, est)


def test_checker_catches_a_corrupted_transport_result():
    tray, raw, ins, gold, res = run_case(4, T.KIND_ALL_REDUCE, T.FMT_FP32, seed=77)
    assert res.ok
    tray.mems[2][SC.DST + 4 * 5] ^= 0x01          # one bit of element 5 on rank 2
    with pytest.raises(AssertionError, match=r"rank 2 @0x200000: 1 of \d+ elements differ"):
        check_against_golden(tray, raw, ins, gold, res)


def test_all_gather_of_quantized_mx_tensors():
    """Each rank quantizes its own binary32 activations to MX e2m1 (golden.mx.quantize);
    after the all-gather every rank holds every rank's packed codes and scales, which
    decode to the values each rank quantized."""
    from golden import mx

    seed = 4242
    print(f"seed {seed}")
    rng = np.random.default_rng(seed)
    n, chunk = 4, 512
    p = SC.params_for(n)
    tray = Tray(p, seed=seed, faults=FAULTS)
    raw = SC.entry(T.KIND_ALL_GATHER, T.FMT_MX_E2M1, SC.group_for(n), n * chunk)
    want_codes, want_scales = [], []
    for r in range(n):
        x = (rng.standard_normal(chunk) * 2.0 ** rng.integers(-4, 5)).astype(np.float32)
        codes, scales = mx.quantize(x, "e2m1")
        packed = mx.pack_e2m1(codes)
        tray.mems[r][SC.SRC:SC.SRC + len(packed)] = packed
        tray.mems[r][SC.SRC_SCALES:SC.SRC_SCALES + len(scales)] = scales
        want_codes.append(codes)
        want_scales.append(scales)
    res = tray.collective(raw)
    assert res.ok, res.status
    wc, ws = np.concatenate(want_codes), np.concatenate(want_scales)
    for r in range(n):
        got_c = mx.unpack_e2m1(tray.mems[r][SC.DST:SC.DST + n * chunk // 2])
        got_s = tray.mems[r][SC.DST_SCALES:SC.DST_SCALES + n * chunk // T.MX_BLOCK]
        assert_bits_equal(f"rank {r} codes", wc, got_c)
        assert_bits_equal(f"rank {r} scales", ws, got_s)
        vals = mx.decode(got_c, "e2m1").reshape(-1, T.MX_BLOCK) * \
            mx.decode_scale(got_s)[:, None]
        ref = np.concatenate([mx.decode(c, "e2m1").reshape(-1, T.MX_BLOCK)
                              * mx.decode_scale(s)[:, None]
                              for c, s in zip(want_codes, want_scales)])
        assert np.array_equal(vals, ref)


@pytest.mark.slow
@pytest.mark.parametrize("n", [2, 4, 8])
@pytest.mark.parametrize("loss", [0.01, 0.05, 0.1])
def test_fault_regression_seeds(n, loss):
    """Long regression (make test-long): 6 seeds per case, all-reduce and MX all-gather of
    64 KiB per chip, drop = loss with half as many duplicates and reorderings and a
    quarter as many corruptions on every wire; NIC retry limit 16."""
    faults = dict(drop=loss, dup=loss / 2, reorder=loss / 2, corrupt=loss / 4)
    for seed in range(6):
        for kind, fmt in ((T.KIND_ALL_REDUCE, T.FMT_FP32), (T.KIND_ALL_GATHER, T.FMT_MX_E4M3)):
            print(f"seed {seed} n {n} faults {faults} {T.KIND_NAMES[kind]}")
            tray, raw, ins, gold, res = run_case(n, kind, fmt, seed=seed, faults=faults,
                                                 count=16384,
                                                 p=SC.params_for(n, retry_limit=16))
            assert res.ok, (seed, res.status)
            check_against_golden(tray, raw, ins, gold, res)
