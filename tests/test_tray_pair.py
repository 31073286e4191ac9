"""Collectives on two RTL chips (tiny_nic, ranks 0 and 1 of a tray joined by mesh port 0):
the collective engine in each chip runs the direct algorithm over its NIC (docs/tray.md
"Collective engine in the chip"); results against golden/tray.py, bit for bit.

Slow: the chip_pair Verilator build takes 5-9 minutes on the shared 2-core machine."""

from __future__ import annotations

import numpy as np
import pytest

from cosim.sim import default_sims
from cosim.tray import pair
from cosim.tray.scenario import fp32_values
from golden import tray as GT
from spec import chip as C
from spec import nic as S
from spec import tray as T

CFG = C.TINY_NIC
P = T.chip_params(CFG)
SRC, DST, SCRATCH, SRC_S, DST_S = 0x10000, 0x30000, 0x50000, 0x70000, 0x71000


def images(seed: int, count: int):
    rng = np.random.default_rng(seed)
    out = {}
    for r in (0, 1):
        img = np.full(CFG.hbm_window, 0x5A, np.uint8)
        img[SRC:SRC + 4 * count] = fp32_values(rng, count).view(np.uint8)
        img[SRC_S:SRC_S + 0x200] = rng.integers(100, 150, 0x200, dtype=np.uint8)
        out[r] = img
    return out


def compare(want: dict, got: dict, entries) -> list[str]:
    """Every byte below ring_base outside the scratch buffers (not part of the contract)."""
    skip = np.zeros(CFG.hbm_window, bool)
    skip[P.ring_base:] = True
    for e in entries:
        d, _ = T.decode(e)
        a, nb = d.extents().get("scratch", (0, 0))
        skip[a:a + nb] = True
    errs = []
    for r in (0, 1):
        bad = np.flatnonzero((want[r] != got[r]["hbm"]) & ~skip)
        if bad.size:
            i = int(bad[0])
            w4 = int.from_bytes(bytes(want[r][i & ~3:(i & ~3) + 4]), "little")
            g4 = int.from_bytes(bytes(got[r]["hbm"][i & ~3:(i & ~3) + 4]), "little")
            errs.append(f"rank {r}: {bad.size} bytes differ from golden, first at {i:#x}: "
                        f"word expected {w4:#010x} got {g4:#010x}")
    return errs


def expected(imgs: dict, entries) -> dict:
    """Golden HBM images after ``entries`` (the rings zeroed, the queue ring holding the
    entries), each entry asserted to end ERR_NONE on both ranks."""
    want = {}
    for r in (0, 1):
        want[r] = imgs[r].copy()
        want[r][P.ring_base:] = 0
        for i, e in enumerate(entries):
            want[r][pair.RING + 32 * i:pair.RING + 32 * i + 32] = np.frombuffer(e, np.uint8)
    for e in entries:
        assert GT.run(want, e, P) == {0: (C.ERR_NONE, 0), 1: (C.ERR_NONE, 0)}
    return want


def queue_errors(res: dict, n_entries: int) -> list[str]:
    """Queue 0 of both ranks: no error, ``n_entries`` done."""
    errs = []
    for r in (0, 1):
        q = res[r]["queues"][0]
        if (q["ERROR"], q["ERR_COUNT"], q["DONE_COUNT"]) != (0, 0, n_entries):
            errs.append(f"rank {r} queue 0: ERROR {q['ERROR']} ERR_DETAIL {q['ERR_DETAIL']:#x} "
                        f"ERR_SEQ {q['ERR_SEQ']} ERR_COUNT {q['ERR_COUNT']} "
                        f"DONE_COUNT {q['DONE_COUNT']}")
    return errs


@pytest.mark.slow
@pytest.mark.sim
@pytest.mark.skipif("verilator" not in default_sims(), reason="MAIA_SIM excludes verilator")
def test_rtl_pair_all_reduce_and_all_gather_match_golden():
    """All-reduce binary32 (chunks of 8 KiB: two WRITEs each), reduce-scatter, all-gather
    of MX e4m3 codes and scales (32-byte scale chunks), back to back on both chips; HBM
    images equal golden.tray.run's, queues without errors."""
    seed, count = 31, 4096
    print(f"seed={seed}")
    g = (0, 1)
    entries = [
        T.entry_collective(T.KIND_ALL_REDUCE, T.FMT_FP32, src=SRC, dst=DST, count=count,
                           group=g, scratch=SCRATCH),
        T.entry_collective(T.KIND_REDUCE_SCATTER, T.FMT_FP32, src=SRC, dst=DST + 0x8000,
                           count=1024, group=g, scratch=SCRATCH),
        T.entry_collective(T.KIND_ALL_GATHER, T.FMT_MX_E4M3, src=SRC, dst=DST + 0xC000,
                           count=2048, group=g, src_scales=SRC_S, dst_scales=DST_S),
    ]
    imgs = images(seed, count)
    want = expected(imgs, entries)
    res = pair.run(CFG, imgs, {0: entries, 1: entries}, tag="coll-pair")
    print(f"cycles {res['cycles']}")
    errs = compare(want, res, entries) + queue_errors(res, len(entries))
    assert not errs, "RTL pair vs golden:\n" + "\n".join(errs)


@pytest.mark.slow
@pytest.mark.sim
@pytest.mark.skipif("verilator" not in default_sims(), reason="MAIA_SIM excludes verilator")
def test_rtl_pair_broadcast_matches_golden():
    """BROADCAST (the plan of spec.tray.plan: the root copies its src into its dst and
    writes both chunks into the other member's dst): binary32 from rank 1 (8 KiB chunks,
    two WRITEs each), then MX e4m3 codes and scales from rank 0, back to back; HBM images
    equal golden.tray.run's, no queue error."""
    seed, count = 37, 4096
    print(f"seed={seed}")
    g = (0, 1)
    entries = [
        T.entry_collective(T.KIND_BROADCAST, T.FMT_FP32, src=SRC, dst=DST, count=count,
                           group=g, root=1),
        T.entry_collective(T.KIND_BROADCAST, T.FMT_MX_E4M3, src=SRC + 0x8000, dst=DST + 0x8000,
                           count=2048, group=g, root=0, src_scales=SRC_S, dst_scales=DST_S),
    ]
    imgs = images(seed, count)
    rng = np.random.default_rng(seed + 1)
    for r in (0, 1):
        imgs[r][SRC + 0x8000:SRC + 0x8800] = rng.integers(0, 256, 0x800, dtype=np.uint8)
    want = expected(imgs, entries)
    # the roots' vectors really arrive (golden is not a no-op here)
    assert np.array_equal(want[0][DST:DST + 4 * count], imgs[1][SRC:SRC + 4 * count])
    assert np.array_equal(want[1][DST_S:DST_S + 64], imgs[0][SRC_S:SRC_S + 64])
    res = pair.run(CFG, imgs, {0: entries, 1: entries}, tag="coll-bcast")
    print(f"cycles {res['cycles']}")
    errs = compare(want, res, entries) + queue_errors(res, len(entries))
    assert not errs, "RTL pair broadcast vs golden:\n" + "\n".join(errs)


@pytest.mark.slow
@pytest.mark.sim
@pytest.mark.skipif("verilator" not in default_sims(), reason="MAIA_SIM excludes verilator")
def test_rtl_pair_chunks_off_32_byte_boundaries_match_golden():
    """Chunks whose bytes are not a multiple of 32 (member 1's chunk 8-byte aligned only:
    the ReduceUnit's lane rotation): ALL_REDUCE binary32 of 4100 elements (8200-byte
    chunks, offset 8), REDUCE_SCATTER of 1004 (2008-byte chunks, offset 24), ALL_GATHER of
    MX e4m3 with 1536 elements (24-byte scale chunks) and BROADCAST of 1028 binary32 from
    rank 1, back to back; HBM images equal golden.tray.run's, no queue error."""
    seed = 53
    print(f"seed={seed}")
    g = (0, 1)
    entries = [
        T.entry_collective(T.KIND_ALL_REDUCE, T.FMT_FP32, src=SRC, dst=DST, count=4100,
                           group=g, scratch=SCRATCH),
        T.entry_collective(T.KIND_REDUCE_SCATTER, T.FMT_FP32, src=SRC + 0x5000,
                           dst=DST + 0x5000, count=1004, group=g, scratch=SCRATCH + 0x5000),
        T.entry_collective(T.KIND_ALL_GATHER, T.FMT_MX_E4M3, src=SRC + 0x6000,
                           dst=DST + 0x6000, count=1536, group=g, src_scales=SRC_S,
                           dst_scales=DST_S),
        T.entry_collective(T.KIND_BROADCAST, T.FMT_FP32, src=SRC + 0x7000, dst=DST + 0x7000,
                           count=1028, group=g, root=1),
    ]
    for e in entries:
        d, _ = T.decode(e)
        assert d.code_bytes(d.chunk) % 32 or d.scale_bytes(d.chunk) % 32, d
    imgs = images(seed, 0x9000 // 4)
    want = expected(imgs, entries)
    res = pair.run(CFG, imgs, {0: entries, 1: entries}, tag="coll-lanes")
    print(f"cycles {res['cycles']}")
    errs = compare(want, res, entries) + queue_errors(res, len(entries))
    assert not errs, "RTL pair (chunks off 32-byte boundaries) vs golden:\n" + "\n".join(errs)


@pytest.mark.slow
@pytest.mark.sim
@pytest.mark.skipif("verilator" not in default_sims(), reason="MAIA_SIM excludes verilator")
@pytest.mark.parametrize("seed", [61, 62, 63])
def test_rtl_pair_back_to_back_under_link_faults_is_exact(seed):
    """Four multi-rank entries back to back (ALL_REDUCE, REDUCE_SCATTER, ALL_GATHER of MX
    e4m3, BROADCAST from rank 1) under 5% drop, 2% duplicate, 2% reorder, 1% corrupt: a
    rank that finishes an entry early posts the next one's notification while the other
    still waits in the previous entry (retransmissions); the engine keeps it for the next
    entry, so every entry completes and every result equals golden bit for bit."""
    loss = (0.05, 0.02, 0.02, 0.01)
    print(f"seed={seed} drop/dup/reorder/corrupt={loss}")
    g = (0, 1)
    entries = [
        T.entry_collective(T.KIND_ALL_REDUCE, T.FMT_FP32, src=SRC, dst=DST, count=2048,
                           group=g, scratch=SCRATCH),
        T.entry_collective(T.KIND_REDUCE_SCATTER, T.FMT_FP32, src=SRC + 0x2000,
                           dst=DST + 0x2000, count=1024, group=g, scratch=SCRATCH + 0x2000),
        T.entry_collective(T.KIND_ALL_GATHER, T.FMT_MX_E4M3, src=SRC + 0x3000,
                           dst=DST + 0x3000, count=2048, group=g, src_scales=SRC_S,
                           dst_scales=DST_S),
        T.entry_collective(T.KIND_BROADCAST, T.FMT_FP32, src=SRC + 0x4000, dst=DST + 0x4000,
                           count=1024, group=g, root=1),
    ]
    imgs = images(seed, 0x5000 // 4)
    want = expected(imgs, entries)
    res = pair.run(CFG, imgs, {0: entries, 1: entries}, link=(seed, seed + 7, *loss),
                   timeout_cycles=3000, tag=f"coll-b2b{seed}")
    errs = compare(want, res, entries) + queue_errors(res, len(entries))
    rtx = sum(res[r]["counters"][0]["retransmits"] for r in (0, 1))
    print(f"cycles {res['cycles']} retransmits {rtx}")
    assert not errs, "RTL pair back to back under faults vs golden:\n" + "\n".join(errs)
    assert rtx > 0, "the fault rate should force retransmissions"


def _ar_case(seed: int, count: int = 2048):
    g = (0, 1)
    e = T.entry_collective(T.KIND_ALL_REDUCE, T.FMT_FP32, src=SRC, dst=DST, count=count,
                           group=g, scratch=SCRATCH)
    imgs = images(seed, count)
    return e, imgs, expected(imgs, [e])


@pytest.mark.slow
@pytest.mark.sim
@pytest.mark.skipif("verilator" not in default_sims(), reason="MAIA_SIM excludes verilator")
@pytest.mark.parametrize("seed", [41, 42])
def test_rtl_pair_all_reduce_under_link_faults_is_exact(seed):
    """5% drop, 2% duplicate, 2% reorder, 1% corrupt on both directions: the NICs
    retransmit (asserted) and both chips' results still equal golden bit for bit."""
    loss = (0.05, 0.02, 0.02, 0.01)
    print(f"seed={seed} drop/dup/reorder/corrupt={loss}")
    e, imgs, want = _ar_case(seed)
    res = pair.run(CFG, imgs, {0: [e], 1: [e]}, link=(seed, seed + 7, *loss),
                   timeout_cycles=3000, tag=f"coll-loss{seed}")
    errs = compare(want, res, [e]) + queue_errors(res, 1)
    assert not errs, "RTL pair under faults vs golden:\n" + "\n".join(errs)
    rtx = sum(res[r]["counters"][0]["retransmits"] for r in (0, 1))
    print(f"cycles {res['cycles']} retransmits {rtx}")
    assert rtx > 0, "the fault rate should force retransmissions"


@pytest.mark.slow
@pytest.mark.sim
@pytest.mark.skipif("verilator" not in default_sims(), reason="MAIA_SIM excludes verilator")
def test_rtl_pair_cut_link_ends_in_collective_error():
    """Every frame lost: each chip's NIC exhausts its retries on the notification/WRITEs
    (CQ status RETRY_EXCEEDED) and its engine ends the all-reduce with ERR_COLLECTIVE,
    cause NIC, peer = the other rank; the run ends (no hang)."""
    e, imgs, _ = _ar_case(43, count=64)
    res = pair.run(CFG, imgs, {0: [e], 1: [e]}, link=(1, 2, 1.0, 0.0, 0.0, 0.0),
                   timeout_cycles=2000, retry_limit=4, tag="coll-cut")
    print(f"cycles {res['cycles']}")
    for r in (0, 1):
        q = res[r]["queues"][0]
        assert q["ERROR"] == C.ERR_COLLECTIVE and q["DONE_COUNT"] == 1, (r, q)
        cause, peer, status = T.split_detail(q["ERR_DETAIL"])
        assert (cause, peer, status) == (T.CAUSE_NIC, 1 - r, S.CQ_RETRY_EXCEEDED), \
            (r, hex(q["ERR_DETAIL"]))
