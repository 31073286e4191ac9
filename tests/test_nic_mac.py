"""MAC RTL: CRC equations, padding/FCS generation and receive drops, RTL vs golden."""

from __future__ import annotations

import zlib

import numpy as np
import pytest

from cosim.nic import check, run_mac, scenario
from cosim.sim import default_sims
from golden import nic as G
from rtl.nic import crc
from spec import nic as S

MAC = scenario.MAC_B


def test_crc_equations_match_zlib():
    rng = np.random.default_rng(11)
    for n in (1, 7, 64, 333):
        data = rng.integers(0, 256, n, dtype=np.uint8).tobytes()
        assert crc.crc_register_after(data) ^ 0xFFFFFFFF == zlib.crc32(data), n
    assert crc.crc_register_after(b"123456789") ^ 0xFFFFFFFF == 0xCBF43926   # CRC-32 check value


def _tx_cases(seed):
    rng = np.random.default_rng(seed)
    frames = [scenario.MAC_A.to_bytes(6, "big") + bytes(rng.integers(0, 256, n, dtype=np.uint8))
              for n in (8, 40, 45, 46, 47, 48, 49, 50, 51, 52, 53, 54, 55, 56, 57, 58, 100, 101,
                        102, 103, 104, 105, 106, 107, 300)]
    a, b = scenario.pair()
    scenario.fill(a, seed)
    scenario.post_mix(a, seed, n_msgs=3)
    sa, sb, _ = G.run_pair(a, b)
    roce = sa + sb
    return frames + [f[:-4] for f in roce], [G.mac_tx(f) for f in frames] + roce


def _rx_cases(seed):
    rng = np.random.default_rng(seed)
    good = [G.mac_tx(MAC.to_bytes(6, "big") + bytes(rng.integers(0, 256, n, dtype=np.uint8)))
            for n in (50, 51, 60, 61, 200, 203)]
    bcast = G.mac_tx(b"\xff" * 6 + bytes(100))
    foreign = G.mac_tx(scenario.MAC_A.to_bytes(6, "big") + bytes(80))
    badfcs = bytearray(good[2])
    badfcs[30] ^= 0x10
    runt = G.mac_tx(MAC.to_bytes(6, "big") + bytes(60))[:63]
    runt = runt[:-4] + zlib.crc32(runt[:-4]).to_bytes(4, "little")   # valid FCS but 63 bytes
    mx = S.NicParams().max_frame
    over = G.mac_tx(MAC.to_bytes(6, "big") + bytes(mx - 6 - 4 + 1))
    exact = G.mac_tx(MAC.to_bytes(6, "big") + bytes(mx - 6 - 4))
    frames = [good[0], foreign, good[1], bytes(badfcs), good[2], runt, good[3], over, bcast,
              good[4], exact, good[5]]
    return frames


@pytest.mark.sim
@pytest.mark.parametrize("sim", default_sims())
def test_mac_rtl_matches_golden(sim, tmp_path):
    seed = 21
    print(f"seed={seed}")
    tx_in, tx_want = _tx_cases(seed)
    rx_in = _rx_cases(seed)
    verdicts = [G.mac_rx_check(f, MAC, S.NicParams().max_frame) for f in rx_in]
    rx_want = [f[:-4] for f, v in zip(rx_in, verdicts) if v is None]
    out = run_mac(tx_in, rx_in, mac_addr=MAC, rx_expect=len(rx_want), sim=sim, tag="mac-" + sim)
    check.assert_frames_equal(tx_want, out["wire"], "wire frame")
    check.assert_frames_valid([f for f in out["wire"] if f[12:14] == b"\x08\x00"], "RoCE frame")
    check.assert_frames_equal(rx_want, out["rx"], "received frame")
    want = dict.fromkeys(S.COUNTERS, 0)
    for f, v in zip(rx_in, verdicts):
        if v is None:
            want["rx_frames"] += 1
            want["rx_bytes"] += len(f)
        else:
            want[v] += 1
    want["tx_frames"] = len(tx_want)
    want["tx_bytes"] = sum(len(f) for f in tx_want)
    assert out["counters"] == want, {k: (want[k], out["counters"][k]) for k in want
                                     if want[k] != out["counters"][k]}
    for k in ("rx_foreign", "rx_fcs_err", "rx_runt", "rx_oversize"):
        assert want[k] >= 1, k
    # back-to-back frames leave with exactly MAC_IFG_BEATS idle beats between them
    t = out["wire_times"]
    gaps = t[1:, 0] - t[:-1, 1] - 1
    assert gaps.min() >= S.MAC_IFG_BEATS, gaps


def test_frame_compare_catches_a_corrupted_rtl_frame():
    _, want = _tx_cases(3)
    got = [bytearray(f) for f in want]
    got[5][-1] ^= 1
    with pytest.raises(AssertionError, match="wire frame 5"):
        check.assert_frames_equal(want, [bytes(g) for g in got], "wire frame")
