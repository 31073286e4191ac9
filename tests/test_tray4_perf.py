"""tray4_perf (spec.chip.TRAY4_PERF): the chip of the 8-chip RTL busbw benchmark
(cosim/bench/tray.py, docs/tray.md "Figures"). No simulator: the configuration's parameters,
its two-tray TrayParams, the bench's buffer layout and its argument checks."""

from __future__ import annotations

import numpy as np
import pytest

from spec import chip as C
from spec import tray as T

CFG = C.TRAY4_PERF


def test_tray4_perf_is_tiny_tray4_with_mtu_1024_4mib_hbm_and_nic_hbm():
    assert C.config("tray4_perf") is CFG and C.config("tiny_tray4") is C.TINY_TRAY4
    base = C.TINY_TRAY4
    assert (CFG.nic_mtu, CFG.hbm_window, CFG.hbm_capacity) == (1024, 4 << 20, 4 << 20)
    assert CFG.nic_hbm and not base.nic_hbm
    assert (CFG.nic_ports, CFG.nic_qps) == (base.nic_ports, base.nic_qps) == (4, 4)
    # the same MTU, HBM and nic_hbm as the 4-chip tray_perf chip; one more NIC port
    assert (CFG.nic_mtu, CFG.hbm_window, CFG.nic_hbm) == (
        C.TRAY_PERF.nic_mtu, C.TRAY_PERF.hbm_window, C.TRAY_PERF.nic_hbm)
    # NoC port + one per NIC port (3 mesh + uplink) + the collective engine
    assert CFG.top_hbm_ports == 1 + 4 + 1
    assert C.TINY_TRAY4.top_hbm_ports == 1


def test_tray4_perf_two_tray_params_and_bench_layout_fit():
    p = T.chip_params(CFG, 2)
    assert p.trays == 2 and p.n_ranks == 8 and p.mem_bytes == 4 << 20
    # NIC rings of 4 ports x 4 queue pairs at the top of the 4 MiB HBM
    assert p.ring_base == (4 << 20) - T.PORTS * 4 * T.RING_STRIDE
    assert p.nic.mtu == 1024 and p.wqe_max == CFG.nic_max_msg
    # the bench's 1 MiB all-reduce: src, dst, scratch disjoint and below the host ring,
    # which sits 32 KiB below ring_base (cosim.tray.rtl_tray.run2)
    count = (1 << 20) // 4
    raw = T.entry_collective(T.KIND_ALL_REDUCE, T.FMT_FP32, src=0, dst=0x100000,
                             count=count, group=tuple(range(8)), scratch=0x200000)
    for rank in range(8):
        assert T.check_chip(raw, rank, CFG, trays=2) == C.ERR_NONE, rank
    d, _ = T.decode(raw)
    spans = sorted(d.extents().values())
    assert len(spans) == 3
    for (a, n), (b, _) in zip(spans, spans[1:]):
        assert a + n <= b, (hex(a), n, hex(b))
    assert spans[-1][0] + spans[-1][1] <= p.ring_base - 0x8000
    # the same scratch moved up to end 8 bytes into the NIC rings is rejected (the checker
    # sees the layout's limit)
    over = T.entry_collective(T.KIND_ALL_REDUCE, T.FMT_FP32, src=0, dst=0x100000,
                              count=count, group=tuple(range(8)),
                              scratch=p.ring_base - (1 << 20) + T.BUF_ALIGN)
    assert T.check_chip(over, 0, CFG, trays=2) == C.ERR_BAD_ADDRESS

def test_run2_wants_cfg_and_make_together():
    from cosim.bench.tray import TRAY8_CFGS, tray2_bench_perf
    from cosim.tray import rtl_tray as RT

    assert TRAY8_CFGS == ("tiny_tray4", "tray4_perf")
    hbm = {r: np.zeros(CFG.hbm_window, np.uint8) for r in range(8)}
    with pytest.raises(ValueError, match="cfg, make"):
        RT.run2(hbm, cfg=CFG)
    with pytest.raises(ValueError, match="cfg, make"):
        RT.run2(hbm, make=tray2_bench_perf)
    # a 1 MiB image is not a tray4_perf image
    small = {r: np.zeros(C.TINY_TRAY4.hbm_window, np.uint8) for r in range(8)}
    with pytest.raises(ValueError, match="hbm: rank 0"):
        RT.run2(small, cfg=CFG, make=tray2_bench_perf)
