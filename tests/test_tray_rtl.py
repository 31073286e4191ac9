"""Collectives on the 4-chip RTL tray (rtl.chip.tray.Tray of tiny_tray chips, mesh wires as
top ports joined by the bench's seeded fault-injecting link layer: cosim/tray/rtl_tray.py):
the collective engine in every chip runs the direct algorithm over its three mesh NICs
(docs/tray.md "RTL tray"); results against golden/tray.py, bit for bit.

The default run checks the set-up (wiring, fault table, arguments, the checker) without a
simulator. The RTL runs are slow: the tray_bench Verilator build (hierarchical: the chip
compiled once) takes about 8 minutes on the loaded shared 2-core machine (cached under
build/sim afterwards), the 8 runs about 12 minutes (two of them wait out the 147,456-cycle
engine timeout)."""

from __future__ import annotations

import numpy as np
import pytest

from cosim.sim import default_sims
from cosim.tray import rtl_tray
from cosim.tray.scenario import (
    UP_DST,
    UP_SRC,
    UP_WRITES,
    fp32_values,
    post_uplink_writes,
    tray_local_all_reduce,
    uplink_write_images,
    word_diff,
)
from golden import tray as GT
from spec import chip as C
from spec import nic as S
from spec import tray as T

CFG = rtl_tray.CFG
P = T.chip_params(CFG)
RANKS = tuple(range(T.CHIPS_PER_TRAY))
# buffers below the host queue ring (rtl_tray.RING = 0xD8000) and ring_base (0xE0000)
SRC, DST, SCRATCH, SRC_S, DST_S = 0x10000, 0x30000, 0x50000, 0x70000, 0x71000

needs_verilator = pytest.mark.skipif("verilator" not in default_sims(),
                                     reason="MAIA_SIM excludes verilator")
# the fault mix of the RTL fault tests, on every wire: enough to force retransmissions
FAULTS = dict(drop=0.04, dup=0.02, reorder=0.02, corrupt=0.02)


def images(seed: int, count: int) -> dict:
    """Per rank: 0x5A everywhere, seeded binary32 values (with specials) at SRC, seeded
    e8m0 scale bytes at SRC_S."""
    rng = np.random.default_rng(seed)
    out = {}
    for r in RANKS:
        img = np.full(CFG.hbm_window, 0x5A, np.uint8)
        img[SRC:SRC + 4 * count] = fp32_values(rng, count).view(np.uint8)
        img[SRC_S:SRC_S + 0x200] = rng.integers(100, 150, 0x200, dtype=np.uint8)
        out[r] = img
    return out


def expected(imgs: dict, entries_of: dict) -> dict:
    """golden.tray.run of every rank's entries in order, on images prepared like the runner
    prepares them (rings zeroed, entries in the host ring). The entries of one index must be
    the same on every member of its group (the contract)."""
    want = {}
    for r in RANKS:
        want[r] = imgs[r].copy()
        want[r][P.ring_base:] = 0
        for i, e in enumerate(entries_of[r]):
            want[r][rtl_tray.RING + 32 * i:rtl_tray.RING + 32 * i + 32] = np.frombuffer(e, np.uint8)
    done = set()
    for r in RANKS:
        for e in entries_of[r]:
            d, _ = T.decode(e)
            key = (e, d.group)
            if key in done:
                continue
            done.add(key)
            st = GT.run(want, e, P)
            assert all(v == (C.ERR_NONE, 0) for v in st.values()), st
    return want


def compare(want: dict, got: dict, entries_of: dict, ranks=RANKS) -> list[str]:
    """Every byte below ring_base outside the scratch buffers (not part of the contract);
    the message shows the first differing word (hex), expected and got."""
    errs = []
    for r in ranks:
        skip = np.zeros(CFG.hbm_window, bool)
        skip[P.ring_base:] = True
        for e in entries_of[r]:
            d, _ = T.decode(e)
            a, nb = d.extents().get("scratch", (0, 0))
            skip[a:a + nb] = True
        bad = np.flatnonzero((want[r] != got[r]["hbm"]) & ~skip)
        if bad.size:
            i = int(bad[0])
            w4 = int.from_bytes(bytes(want[r][i & ~3:(i & ~3) + 4]), "little")
            g4 = int.from_bytes(bytes(got[r]["hbm"][i & ~3:(i & ~3) + 4]), "little")
            errs.append(f"rank {r}: {bad.size} bytes differ from golden, first at {i:#x}: "
                        f"word expected {w4:#010x} got {g4:#010x}")
    return errs


def queue_errors(res: dict, n_entries: dict) -> list[str]:
    errs = []
    for r in RANKS:
        q = res[r]["queues"][0]
        if (q["ERROR"], q["ERR_COUNT"], q["DONE_COUNT"]) != (0, 0, n_entries[r]):
            errs.append(f"rank {r} queue 0: ERROR {q['ERROR']} ERR_DETAIL {q['ERR_DETAIL']:#x} "
                        f"ERR_SEQ {q['ERR_SEQ']} ERR_COUNT {q['ERR_COUNT']} "
                        f"DONE_COUNT {q['DONE_COUNT']} (want {n_entries[r]})")
    return errs


def ar_entry(count: int, group=RANKS) -> bytes:
    return T.entry_collective(T.KIND_ALL_REDUCE, T.FMT_FP32, src=SRC, dst=DST, count=count,
                              group=group, scratch=SCRATCH)


# --- set-up checks (no simulator) --------------------------------------------------------

def test_wires_are_the_full_mesh_both_ways():
    """12 directed wires, every ordered pair of chips once, each the reverse of another,
    and the same ports as the tray top's internal wiring (rtl.chip.tray.mesh_link) and the
    route of spec.tray (the port a rank uses towards its peer)."""
    from rtl.chip.tray import mesh_link

    ws = rtl_tray.wires()
    assert len(ws) == 12
    assert {(c, d) for c, _, d, _ in ws} == {(c, d) for c in RANKS for d in RANKS if c != d}
    for c, p, d, dp in ws:
        assert (d, dp, c, p) in ws
        assert mesh_link(c, p) == (d, dp)
        rt = T.route(c, d, P.n_ranks)
        assert (rt.port, rt.peer_port) == (p, dp)


def test_fault_table_seeds_and_cut():
    f = rtl_tray._fates(dict(drop=0.1, corrupt=0.05), seed=7, cut=[(1, 3)])
    assert f.shape == (12, 5)
    assert f[:, 0].tolist() == [7000 + w for w in range(12)]
    for w, (c, _p, d, _dp) in enumerate(rtl_tray.wires()):
        if {c, d} == {1, 3}:
            assert f[w, 1:].tolist() == [1.0, 0.0, 0.0, 0.0], (w, c, d)
        else:
            assert f[w, 1:].tolist() == [0.1, 0.0, 0.0, 0.05], (w, c, d)


def test_open_mesh_tray_exposes_the_wires():
    from rtl.chip.tray import Tray

    closed = Tray(CFG)
    opened = Tray(CFG, open_mesh=True)
    wire_ports = {f"c{i}_nic{p}_wire_{d}" for i in RANKS for p in range(3) for d in ("tx", "rx")}
    assert not wire_ports & set(closed.signature.members)
    assert wire_ports <= set(opened.signature.members)
    assert set(closed.signature.members) | wire_ports == set(opened.signature.members)
    with pytest.raises(TypeError, match="open_mesh"):
        Tray(CFG, open_mesh=1)


def test_uplink_ports_are_top_ports_of_both_tray_tops():
    """With a fourth NIC port (the uplink, spec.tray.UPLINK) every chip's uplink wires are
    top ports of the tray, closed or open mesh: where a switch model would attach."""
    from rtl.chip.tray import Tray

    cfg = C.TINY.with_(name="tiny_tray_uplink", nic_ports=T.MESH_PORTS + 1)
    up = {f"c{i}_nic{T.UPLINK}_wire_{d}" for i in RANKS for d in ("tx", "rx")}
    for top in (Tray(cfg), Tray(cfg, open_mesh=True)):
        assert up <= set(top.signature.members)


@pytest.mark.parametrize("kw, arg", [
    (dict(faults=dict(drop=1.5)), "faults"),
    (dict(faults=dict(loss=0.1)), "faults"),
    (dict(faults=dict(drop=0.6, dup=0.6)), "faults"),
    (dict(cut=[(0, 0)]), "cut"),
    (dict(cut=[(0, 4)]), "cut"),
    (dict(seed=-1), "seed"),
])
def test_run_rejects_bad_arguments(kw, arg):
    imgs = {r: np.zeros(CFG.hbm_window, np.uint8) for r in RANKS}
    ents = {r: [ar_entry(64)] for r in RANKS}
    with pytest.raises(ValueError, match=arg):
        rtl_tray.run(imgs, ents, **kw)


def test_run_rejects_missing_ranks_and_bad_images():
    imgs = {r: np.zeros(CFG.hbm_window, np.uint8) for r in RANKS}
    ents = {r: [ar_entry(64)] for r in RANKS}
    with pytest.raises(ValueError, match="hbm, entries"):
        rtl_tray.run({0: imgs[0]}, ents)
    with pytest.raises(ValueError, match="hbm"):
        rtl_tray.run({**imgs, 2: np.zeros(16, np.uint8)}, ents)
    with pytest.raises(ValueError, match="entries"):
        rtl_tray.run(imgs, {**ents, 3: []})


def test_checker_catches_a_flipped_byte():
    """The comparison used by the RTL tests reports a result byte that differs from golden
    (with the word in hex), and ignores the scratch buffer."""
    count = 256
    e = ar_entry(count)
    ents = {r: [e] for r in RANKS}
    imgs = images(3, count)
    want = expected(imgs, ents)
    got = {r: {"hbm": want[r].copy()} for r in RANKS}
    assert compare(want, got, ents) == []
    got[2]["hbm"][SCRATCH + 5] ^= 0xFF              # scratch: not part of the contract
    assert compare(want, got, ents) == []
    got[2]["hbm"][DST + 4 * 17 + 1] ^= 0x04
    errs = compare(want, got, ents)
    assert len(errs) == 1 and errs[0].startswith(f"rank 2: 1 bytes differ from golden, "
                                                 f"first at {DST + 4 * 17 + 1:#x}"), errs
    w4 = int.from_bytes(bytes(want[2][DST + 68:DST + 72]), "little")
    assert f"expected {w4:#010x} got {w4 ^ 0x400:#010x}" in errs[0]


# --- RTL tray (Verilator, slow) ----------------------------------------------------------

@pytest.mark.slow
@pytest.mark.sim
@needs_verilator
def test_rtl_tray_collectives_match_golden():
    """All-reduce binary32 (4096 elements: 4 KiB chunks, one WRITE per member), reduce-
    scatter binary32 and all-gather of MX e4m3 codes and scales (1 KiB code chunks, 32-byte
    scale chunks), back to back on the 4 RTL chips: HBM images equal golden.tray.run's
    outside the rings and scratch, no queue error."""
    seed, count = 61, 4096
    print(f"seed={seed}")
    entries = [
        ar_entry(count),
        T.entry_collective(T.KIND_REDUCE_SCATTER, T.FMT_FP32, src=SRC, dst=DST + 0x8000,
                           count=2048, group=RANKS, scratch=SCRATCH),
        T.entry_collective(T.KIND_ALL_GATHER, T.FMT_MX_E4M3, src=SRC, dst=DST + 0xC000,
                           count=4096, group=RANKS, src_scales=SRC_S, dst_scales=DST_S),
    ]
    ents = {r: entries for r in RANKS}
    imgs = images(seed, count)
    want = expected(imgs, ents)
    res = rtl_tray.run(imgs, ents, tag="tray-golden")
    print(f"cycles {res['cycles']} done {[res[r]['done'] for r in RANKS]}")
    errs = compare(want, res, ents) + queue_errors(res, {r: 3 for r in RANKS})
    assert not errs, "RTL tray vs golden:\n" + "\n".join(errs)
    assert res["fates"][:, :4].sum() == 0          # a lossless run: nothing injected


@pytest.mark.slow
@pytest.mark.sim
@needs_verilator
def test_rtl_tray_subgroups_and_e2m1_match_golden():
    """Subgroups and more formats, back to back (every rank runs the same sequence of
    multi-rank entries up to its last one, as the engine's sequence numbers require):
    all-reduce over ranks (0, 1) and at the same time over (2, 3) (two disjoint pairs), a
    4-rank reduce-scatter, a 4-rank all-gather of MX e2m1 codes (half a byte per element)
    and scales, then an all-reduce over the three ranks (0, 2, 3) (rank 1 is done). HBM
    images equal golden.tray.run's; no queue error."""
    seed = 62
    print(f"seed={seed}")
    pairs = {r: T.entry_collective(T.KIND_ALL_REDUCE, T.FMT_FP32, src=SRC, dst=DST,
                                   count=4096, group=(0, 1) if r < 2 else (2, 3),
                                   scratch=SCRATCH) for r in RANKS}
    rs = T.entry_collective(T.KIND_REDUCE_SCATTER, T.FMT_FP32, src=SRC, dst=DST + 0x8000,
                            count=4096, group=RANKS, scratch=SCRATCH)
    ag = T.entry_collective(T.KIND_ALL_GATHER, T.FMT_MX_E2M1, src=SRC + 0x1000,
                            dst=DST + 0xC000, count=4096, group=RANKS, src_scales=SRC_S,
                            dst_scales=DST_S)
    ar3 = T.entry_collective(T.KIND_ALL_REDUCE, T.FMT_FP32, src=SRC, dst=DST + 0x10000,
                             count=1536, group=(0, 2, 3), scratch=SCRATCH)
    ents = {r: [pairs[r], rs, ag] + ([ar3] if r != 1 else []) for r in RANKS}
    imgs = images(seed, 4096)
    want = expected(imgs, ents)
    res = rtl_tray.run(imgs, ents, tag="tray-subgroups")
    print(f"cycles {res['cycles']} done {[res[r]['done'] for r in RANKS]}")
    errs = compare(want, res, ents) + queue_errors(res, {r: len(ents[r]) for r in RANKS})
    assert not errs, "RTL tray subgroups vs golden:\n" + "\n".join(errs)


@pytest.mark.slow
@pytest.mark.sim
@needs_verilator
def test_rtl_tray_broadcast_matches_golden():
    """BROADCAST on the 4 RTL chips, back to back: binary32 from root 2 (4096 elements), MX
    e4m3 codes and scales from root 1 (4096), then binary32 from root 3 over the three
    ranks (0, 1, 3) (rank 2 is done; 1536 elements: 2 KiB chunks). HBM images equal
    golden.tray.run's; no queue error."""
    seed = 63
    print(f"seed={seed}")
    b4 = T.entry_collective(T.KIND_BROADCAST, T.FMT_FP32, src=SRC, dst=DST, count=4096,
                            group=RANKS, root=2)
    bmx = T.entry_collective(T.KIND_BROADCAST, T.FMT_MX_E4M3, src=SRC + 0x2000,
                             dst=DST + 0x8000, count=4096, group=RANKS, root=1,
                             src_scales=SRC_S, dst_scales=DST_S)
    b3 = T.entry_collective(T.KIND_BROADCAST, T.FMT_FP32, src=SRC, dst=DST + 0x10000,
                            count=1536, group=(0, 1, 3), root=3)
    ents = {r: [b4, bmx] + ([b3] if r != 2 else []) for r in RANKS}
    imgs = images(seed, 4096)
    want = expected(imgs, ents)
    res = rtl_tray.run(imgs, ents, tag="tray-broadcast")
    print(f"cycles {res['cycles']} done {[res[r]['done'] for r in RANKS]}")
    errs = compare(want, res, ents) + queue_errors(res, {r: len(ents[r]) for r in RANKS})
    assert not errs, "RTL tray broadcast vs golden:\n" + "\n".join(errs)


@pytest.mark.slow
@pytest.mark.sim
@needs_verilator
@pytest.mark.parametrize("seed", [71, 72])
def test_rtl_tray_all_reduce_under_link_faults_is_exact(seed):
    """4% drop, 2% duplicate, 2% reorder, 2% corrupt on all 12 wires: the NICs retransmit
    (asserted) and every chip's result still equals golden bit for bit."""
    faults = FAULTS
    count = 4096
    print(f"seed={seed} faults={faults}")
    e = ar_entry(count)
    ents = {r: [e] for r in RANKS}
    imgs = images(seed, count)
    want = expected(imgs, ents)
    res = rtl_tray.run(imgs, ents, faults=faults, seed=seed, timeout_cycles=3000,
                       tag=f"tray-loss{seed}")
    errs = compare(want, res, ents) + queue_errors(res, {r: 1 for r in RANKS})
    assert not errs, f"RTL tray under faults (seed {seed}) vs golden:\n" + "\n".join(errs)
    fates = res["fates"].sum(axis=0)
    rtx = sum(c["retransmits"] for r in RANKS for c in res[r]["counters"])
    print(f"cycles {res['cycles']} injected drop/dup/reorder/corrupt {fates[:4].tolist()} "
          f"retransmits {rtx}")
    assert fates[0] > 0 and fates[1] > 0 and fates[2] > 0 and fates[3] > 0, fates
    assert rtx > 0, "the fault rate should force retransmissions"


def rs_ag_entries():
    return [
        T.entry_collective(T.KIND_REDUCE_SCATTER, T.FMT_FP32, src=SRC, dst=DST + 0x8000,
                           count=4096, group=RANKS, scratch=SCRATCH),
        T.entry_collective(T.KIND_ALL_GATHER, T.FMT_MX_E4M3, src=SRC, dst=DST + 0xC000,
                           count=4096, group=RANKS, src_scales=SRC_S, dst_scales=DST_S),
    ]


def _faulty_run(entries, seed: int, tag: str):
    ents = {r: entries for r in RANKS}
    imgs = images(seed, 4096)
    want = expected(imgs, ents)
    res = rtl_tray.run(imgs, ents, faults=FAULTS, seed=seed, timeout_cycles=3000, tag=tag)
    rtx = sum(c["retransmits"] for r in RANKS for c in res[r]["counters"])
    print(f"cycles {res['cycles']} done {[res[r]['done'] for r in RANKS]} injected "
          f"{res['fates'].sum(axis=0)[:4].tolist()} retransmits {rtx}")
    errs = compare(want, res, ents) + queue_errors(res, {r: len(entries) for r in RANKS})
    return errs, rtx


@pytest.mark.slow
@pytest.mark.sim
@needs_verilator
@pytest.mark.parametrize("which", [0, 1, 2], ids=["reduce_scatter", "mx_all_gather",
                                                   "broadcast"])
def test_rtl_tray_reduce_scatter_and_mx_all_gather_under_link_faults_are_exact(which):
    """The fault mix of the all-reduce test on all 12 wires during a 4-rank reduce-scatter
    (binary32), an all-gather of MX e4m3 codes and scales, or a BROADCAST of binary32 from
    root 2 (one command per run): equal to golden, retransmissions asserted."""
    seed = 73
    print(f"seed={seed} faults={FAULTS}")
    bcast = T.entry_collective(T.KIND_BROADCAST, T.FMT_FP32, src=SRC, dst=DST, count=4096,
                               group=RANKS, root=2)
    errs, rtx = _faulty_run([(rs_ag_entries() + [bcast])[which]], seed,
                            f"tray-loss-{which}-{seed}")
    assert not errs, f"RTL tray under faults (seed {seed}) vs golden:\n" + "\n".join(errs)
    assert rtx > 0, "the fault rate should force retransmissions"


@pytest.mark.slow
@pytest.mark.sim
@needs_verilator
def test_rtl_tray_back_to_back_commands_under_link_faults_are_exact():
    """Reduce-scatter then MX all-gather back to back under the fault mix (seed 73): the
    ranks finish the reduce-scatter at different times (retransmissions), so a faster
    rank's all-gather notification can reach a rank still in the reduce-scatter, which must
    keep it for the next command. Equal to golden, no queue error. (The engine of ac91eb5
    dropped such notifications: ranks 0 and 3 ended the all-gather ERR_COLLECTIVE TIMEOUT,
    peer 1; docs/tray.md "RTL tray".)"""
    seed = 73
    print(f"seed={seed} faults={FAULTS}")
    errs, _ = _faulty_run(rs_ag_entries(), seed, f"tray-loss-b2b-{seed}")
    assert not errs, f"RTL tray back to back under faults (seed {seed}):\n" + "\n".join(errs)


@pytest.mark.slow
@pytest.mark.sim
@needs_verilator
def test_rtl_tray_cut_link_ends_in_collective_error_and_work_goes_on():
    """The link between chips 0 and 1 loses every frame. All-reduce over the 4 ranks:
    ranks 0 and 1 exhaust the NIC retries towards each other and end ERR_COLLECTIVE, cause
    NIC, RETRY_EXCEEDED, peer = the other; ranks 2 and 3 finish phase 0 but wait for the
    phase-1 chunks of ranks 0 and 1 and end ERR_COLLECTIVE, cause TIMEOUT, after the
    engine timeout (no hang). Then every rank's next entry (a one-rank all-gather: a copy
    by the engine) completes and equals golden.

    (The later entry is one-rank on purpose: ranks 2 and 3 time out a few hundred cycles
    apart, and the RTL engine drops a notification of the next command that arrives while
    it still waits in the failed one, so a later multi-rank entry between them would race;
    docs/tray.md "RTL tray".)"""
    count = 64
    e = ar_entry(count)
    local = {r: T.entry_collective(T.KIND_ALL_GATHER, T.FMT_FP32, src=SRC, dst=DST + 0xC000,
                                   count=count, group=(r,)) for r in RANKS}
    ents = {r: [e, local[r]] for r in RANKS}
    imgs = images(43, count)
    # golden of the entries that complete (the failed all-reduce writes no defined result)
    want = expected(imgs, {r: [local[r]] for r in RANKS})
    print(f"seed=43 cut=(0, 1) engine timeout {P.engine_timeout_cycles}")
    res = rtl_tray.run(imgs, ents, cut=[(0, 1)], timeout_cycles=2000, retry_limit=4,
                       max_cycles=4 * P.engine_timeout_cycles, tag="tray-cut")
    print(f"cycles {res['cycles']} done {[res[r]['done'] for r in RANKS]}")
    for r in RANKS:
        q = res[r]["queues"][0]
        assert (q["ERROR"], q["ERR_SEQ"], q["ERR_COUNT"], q["DONE_COUNT"]) == \
            (C.ERR_COLLECTIVE, 0, 1, 2), (r, q)
        cause, peer, status = T.split_detail(q["ERR_DETAIL"])
        if r in (0, 1):
            assert (cause, peer, status) == (T.CAUSE_NIC, 1 - r, S.CQ_RETRY_EXCEEDED), \
                (r, hex(q["ERR_DETAIL"]))
        else:
            assert cause == T.CAUSE_TIMEOUT and peer in (0, 1), (r, hex(q["ERR_DETAIL"]))
    # bounded: the engine timeouts end the run well within two of them
    assert res["cycles"] < 2 * P.engine_timeout_cycles, res["cycles"]
    for r in RANKS:
        d, _ = T.decode(local[r])
        a, nb = d.extents()["dst"]
        got = res[r]["hbm"][a:a + nb]
        if not np.array_equal(got, want[r][a:a + nb]):
            i = int(np.flatnonzero(got != want[r][a:a + nb])[0])
            raise AssertionError(f"rank {r}: later entry's dst differs from golden at "
                                 f"{a + i:#x}: expected {int(want[r][a + i]):#04x} got "
                                 f"{int(got[i]):#04x}")


@pytest.mark.slow
@pytest.mark.sim
@needs_verilator
def test_rtl_tray_perf_1mib_all_reduce_under_1pct_drop_is_exact():
    """Regression of the tray_perf bug (docs/tray.md "Figures"): all-reduce of 1 MiB of
    binary32 per chip on 4 ``tray_perf`` chips (MTU 1024), 1% drop on every wire, seed 1, the
    bench's inputs. Before the fix of rtl/nic/mac.py every rank ended with the same 442 wrong
    words in chunk 2 and no error: two phase-0 frames from rank 1 waited in rank 2's MAC
    receive buffer while later frames overwrote them (the buffer's occupancy read negative
    once its write pointer had wrapped, so it never looked full). Since tray_perf has
    ``nic_hbm`` (NIC ports on HBM ports of their own) the run no longer fills that buffer
    (rx_overflow 0): tests/test_nic_macrx_overflow.py is the regression that always reaches
    it; this one keeps the whole 1 MiB lossy run exact. About 4 minutes of simulation plus
    the tray_perf build."""
    from cosim.bench.tray import tray_bench_perf

    cfg, count = C.TRAY_PERF, 262144
    p = T.chip_params(cfg)
    src, dst, scratch = 0x000000, 0x100000, 0x200000
    e = T.entry_collective(T.KIND_ALL_REDUCE, T.FMT_FP32, src=src, dst=dst, count=count,
                           group=RANKS, scratch=scratch)
    rng = np.random.default_rng(9)
    imgs = {}
    for r in RANKS:
        imgs[r] = np.zeros(cfg.hbm_window, np.uint8)
        imgs[r][src:src + 4 * count] = fp32_values(rng, count).view(np.uint8)
    want = {r: imgs[r].copy() for r in RANKS}
    assert all(v == (C.ERR_NONE, 0) for v in GT.run(want, e, p).values())
    res = rtl_tray.run(imgs, {r: [e] for r in RANKS}, faults=dict(drop=0.01), seed=1, poll=64,
                       cfg=cfg, make=tray_bench_perf, tag="tray-perf-1pct")
    errs = queue_errors(res, {r: 1 for r in RANKS})
    for r in RANKS:
        got = res[r]["hbm"][dst:dst + 4 * count].view(np.uint32)
        exp = want[r][dst:dst + 4 * count].view(np.uint32)
        bad = np.flatnonzero(got != exp)
        if bad.size:
            i = int(bad[0])
            errs.append(f"rank {r}: {bad.size} binary32 words of dst differ from golden, first "
                        f"at dst+{4 * i:#x}: expected {int(exp[i]):#010x} got {int(got[i]):#010x}")
    rtx = sum(c["retransmits"] for r in RANKS for c in res[r]["counters"])
    ovf = [sum(c["rx_overflow"] for c in res[r]["counters"]) for r in RANKS]
    print(f"retransmits {rtx}, rx_overflow per rank {ovf}, dropped frames "
          f"{int(res['fates'][:, 0].sum())}")
    assert not errs, "tray_perf 1 MiB all-reduce, 1% drop, seed 1, vs golden:\n" + "\n".join(errs)
    assert rtx > 0, "1% drop should force retransmissions"


# --- two trays: 8 RTL chips, uplinks through the switch (cosim/tray/rtl_switch.py) ----------

CFG2 = rtl_tray.CFG2
P2 = T.chip_params(CFG2, 2)
RANKS2 = tuple(range(2 * T.CHIPS_PER_TRAY))
# uplink WRITE buffers (UP_SRC, UP_DST) and UP_WRITES: cosim.tray.scenario


def _uplink_images(seed: int, nics: bool):
    rng = np.random.default_rng(seed)
    imgs = {r: rng.integers(0, 256, CFG2.hbm_window, dtype=np.uint8) for r in RANKS2}
    for img in imgs.values():
        img[P2.ring_base:] = 0
    if not nics:
        return imgs
    out = {r: rtl_tray.uplink_nic(CFG2, r, imgs[r]) for r in RANKS2}
    post_uplink_writes(out)
    return imgs, out


UPLINK_FAULTS = dict(drop=0.05, dup=0.03, reorder=0.03, corrupt=0.03)


@pytest.mark.slow
@pytest.mark.sim
@needs_verilator
@pytest.mark.parametrize("faulty", [False, True], ids=["clean", "uplink_faults"])
def test_rtl_two_trays_uplink_writes_through_the_switch_equal_golden_nic(faulty):
    """8 RTL chips: the host of every rank posts 3 RDMA WRITEs on its uplink queue pair
    towards the same chip of the other tray (route(): port 3, queue pair = chip index); the
    frames cross the switch; every HBM image (payloads, CQEs, everything) equals the golden
    NIC model's (golden.nic.run_pair per pair of uplinks, no faults). ``uplink_faults``: drop,
    duplicate, reorder and corrupt on every switch ingress (retransmissions asserted)."""
    from golden import nic as GN

    seed = 83 if faulty else 81
    print(f"seed {seed}")
    imgs, nics = _uplink_images(seed, True)
    want_imgs, want_nics = _uplink_images(seed, True)
    for r in range(T.CHIPS_PER_TRAY):
        GN.run_pair(want_nics[r], want_nics[r + T.CHIPS_PER_TRAY])
    res = rtl_tray.run2(imgs, uplinks=nics, uplink_faults=UPLINK_FAULTS if faulty else None,
                        seed=seed, timeout_cycles=2000, tag="rtltray2_up")
    print("cycles", res["cycles"], "switch", res["switch"], "up_stats", res["up_stats"],
          "fates", res["up_fates"].sum(axis=0).tolist())
    errs = []
    for r in RANKS2:
        errs += word_diff(f"rank {r}", want_imgs[r], res[r]["hbm"])
    assert not errs, "\n".join(errs)
    # the payloads really moved (the images differ from the inputs at every destination)
    for r in RANKS2:
        peer = (r + T.CHIPS_PER_TRAY) % len(RANKS2)
        assert np.array_equal(res[peer]["hbm"][UP_DST:UP_DST + 4096],
                              imgs[r][UP_SRC:UP_SRC + 4096]), f"rank {r} -> {peer}: payload"
    sw = res["switch"]
    sent = sum(n for n, _ in res["up_stats"])
    assert sent > 0 and all(n > 0 for n, _ in res["up_stats"]), res["up_stats"]
    drop, dup, _reo, corrupt, _ok = res["up_fates"].sum(axis=0).tolist()
    assert sw["rx_frames"] == sent - drop + dup, (sw, res["up_fates"])
    assert sw["fcs_err"] == corrupt, (sw, res["up_fates"])
    assert sw["tx_frames"] == sw["rx_frames"] - corrupt, sw
    assert sw["unknown_dst"] == sw["tail_drop"] == sw["same_port"] == 0, sw
    retx = sum(res[r]["counters"][T.UPLINK]["retransmits"] for r in RANKS2)
    if faulty:
        assert drop > 0 and dup > 0 and corrupt > 0 and retx > 0, (res["up_fates"], retx)
    else:
        assert drop == dup == corrupt == 0 and retx == 0, (res["up_fates"], retx)
    # no mesh traffic: only uplinks carried frames
    for r in RANKS2:
        assert res[r]["frames"][:T.MESH_PORTS] == [0, 0, 0], (r, res[r]["frames"])


def test_two_tray_top_has_eight_chips_with_uplinks_and_the_wires():
    from rtl.chip.tray import Tray, tray2_bench_tiny4

    top = tray2_bench_tiny4()
    names = set(top.signature.members)
    for c in RANKS2:
        for p in range(CFG2.nic_ports):
            assert f"c{c}_nic{p}_wire_tx" in names and f"c{c}_nic{p}_wire_rx" in names
    assert "c8_s_axil" not in names
    closed = Tray(CFG2, trays=2)
    missing = names - set(closed.signature.members)
    assert missing == {f"c{c}_nic{p}_wire_{d}" for c in RANKS2 for p in range(T.MESH_PORTS)
                       for d in ("tx", "rx")}
    with pytest.raises(ValueError, match="^trays"):
        Tray(CFG2, trays=3)


def test_two_tray_wires_and_uplink_nic_follow_route():
    w = rtl_tray.wires2()
    assert len(w) == 24 and len(set(w)) == 24
    for c, p, d, dp in w:
        assert T.tray_of(c) == T.tray_of(d)
        rt = T.route(c, d, 8)
        assert (rt.port, rt.peer_port) == (p, dp)
    nic = rtl_tray.uplink_nic(CFG2, 6, np.zeros(CFG2.hbm_window, np.uint8))
    assert nic.mac == T.port_mac(6, T.UPLINK)
    for j in range(T.CHIPS_PER_TRAY):
        q = nic.qps[j]
        assert q.dest_mac == T.port_mac(j, T.UPLINK) and q.dest_qpn == S.QPN_BASE + 2
    assert rtl_tray.RING2 + 64 * 32 <= P2.ring_base


def _expected2(imgs: dict, entries_of: dict) -> dict:
    """golden.tray.run (8 ranks, chip_params(tiny_tray4, 2)) of every rank's entries, on
    images prepared like rtl_tray.run2 prepares them."""
    want = {}
    for r in RANKS2:
        want[r] = imgs[r].copy()
        want[r][P2.ring_base:] = 0
        for i, e in enumerate(entries_of.get(r, [])):
            want[r][rtl_tray.RING2 + 32 * i:rtl_tray.RING2 + 32 * i + 32] = np.frombuffer(
                e, np.uint8)
    done = set()
    for r in RANKS2:
        for e in entries_of.get(r, []):
            key = (e, T.decode(e)[0].group)
            if key not in done:
                done.add(key)
                st = GT.run(want, e, P2)
                assert all(v == (C.ERR_NONE, 0) for v in st.values()), st
    return want


@pytest.mark.slow
@pytest.mark.sim
@needs_verilator
def test_rtl_two_trays_run_collectives_concurrently_equal_golden():
    """8 RTL chips (ranks 0..7): an ALL_REDUCE over tray 0 (ranks 0..3) and at the same time
    one over tray 1 (ranks 4..7), then a REDUCE_SCATTER on each tray: every HBM image equals
    golden.tray.run's for 8 ranks (below ring_base, outside the scratch buffers)."""
    seed = 82
    print(f"seed {seed}")
    rng = np.random.default_rng(seed)
    count = 2048
    imgs = {}
    for r in RANKS2:
        img = np.full(CFG2.hbm_window, 0x5A, np.uint8)
        img[SRC:SRC + 4 * count] = fp32_values(rng, count).view(np.uint8)
        imgs[r] = img
    entries_of = {}
    for t in range(2):
        group = tuple(T.rank_of(t, c) for c in range(T.CHIPS_PER_TRAY))
        ents = [T.entry_collective(T.KIND_ALL_REDUCE, T.FMT_FP32, src=SRC, dst=DST,
                                   count=count, group=group, scratch=SCRATCH),
                T.entry_collective(T.KIND_REDUCE_SCATTER, T.FMT_FP32, src=SRC, dst=DST + 0x8000,
                                   count=count, group=group, scratch=SCRATCH)]
        for r in group:
            entries_of[r] = ents
    want = _expected2(imgs, entries_of)
    res = rtl_tray.run2(imgs, entries_of, tag="rtltray2_coll")
    print("cycles", res["cycles"], "done", [res[r]["done"] for r in RANKS2])
    errs = []
    for r in RANKS2:
        q = res[r]["queues"][0]
        if (q["ERROR"], q["ERR_COUNT"], q["DONE_COUNT"]) != (0, 0, 2):
            errs.append(f"rank {r} queue 0: ERROR {q['ERROR']} ERR_DETAIL {q['ERR_DETAIL']:#x} "
                        f"DONE_COUNT {q['DONE_COUNT']}")
        skip = np.zeros(CFG2.hbm_window, bool)
        skip[P2.ring_base:] = True
        skip[SCRATCH:SCRATCH + 0x20000] = True
        errs += word_diff(f"rank {r}", want[r], res[r]["hbm"], skip)
    assert not errs, "\n".join(errs)
    # both trays really ran at once: each tray's chips sent mesh frames, nothing crossed
    for r in RANKS2:
        assert sum(res[r]["frames"][:T.MESH_PORTS]) > 0, (r, res[r]["frames"])
    assert res["switch"]["rx_frames"] == 0, res["switch"]
    # the two trays' mesh traffic overlaps in time (wire_stats: frames, bytes, first, last)
    ws = res["wires"].tolist()
    t0, t1 = ws[:12], ws[12:]
    assert min(w[2] for w in t1) < max(w[3] for w in t0), ws
    assert min(w[2] for w in t0) < max(w[3] for w in t1), ws


def _golden_switched(nics: list, max_ticks: int = 400_000) -> None:
    """Reference for several golden NICs behind an ideal switch: every tick each NIC's
    transmitted frame is delivered (next tick) to the NIC owning its destination MAC."""
    by_mac = {n.mac: n for n in nics}
    wire = []
    for _ in range(max_ticks):
        for dst, f in wire:
            dst.receive(f)
        wire = []
        for n in nics:
            f = n.transmit()
            if f is not None:
                wire.append((by_mac[int.from_bytes(f[0:6], "big")], f))
            n.tick()
        if not wire and not any(n.busy() for n in nics):
            return
    raise RuntimeError("golden NICs still busy")


def _incast_images(seed: int):
    """Every rank of tray 0 WRITEs to rank 4 and every rank of tray 1 to rank 0 (4 senders
    into one switch output each), to distinct 16 KiB areas (sender's chip index)."""
    rng = np.random.default_rng(seed)
    imgs = {r: rng.integers(0, 256, CFG2.hbm_window, dtype=np.uint8) for r in RANKS2}
    nics = {}
    for r in RANKS2:
        imgs[r][P2.ring_base:] = 0
        nics[r] = rtl_tray.uplink_nic(CFG2, r, imgs[r])
    for r in RANKS2:
        target = T.rank_of(1 - T.tray_of(r), 0)
        for loc, n, rem in UP_WRITES:
            nics[r].post(T.route(r, target, 8).qp, S.WR_WRITE, local_addr=UP_SRC + loc,
                         length=n, remote_addr=UP_DST + 0x4000 * T.chip_of(r) + rem,
                         rkey=T.RKEY, wr_id=0x200 + loc)
    return imgs, nics


@pytest.mark.slow
@pytest.mark.sim
@needs_verilator
def test_rtl_two_trays_incast_queues_and_tail_drops_in_the_switch_and_recovers():
    """4 uplinks WRITE into one switch output at once (both directions) through 2 KiB
    output FIFOs: frames queue (high-water mark > 1 frame), some are tail-dropped, the
    NICs retransmit, and every image equals the golden NICs' behind an ideal switch."""
    seed = 84
    print(f"seed {seed}")
    imgs, nics = _incast_images(seed)
    want, want_nics = _incast_images(seed)
    _golden_switched([want_nics[r] for r in RANKS2])
    res = rtl_tray.run2(imgs, uplinks=nics, switch_buffer=2048, seed=seed,
                        timeout_cycles=2000, tag="rtltray2_incast")
    sw = res["switch"]
    retx = sum(res[r]["counters"][T.UPLINK]["retransmits"] for r in RANKS2)
    print("cycles", res["cycles"], "switch", sw, "max", res["switch_max"], "retx", retx)
    errs = []
    for r in RANKS2:
        errs += word_diff(f"rank {r}", want[r], res[r]["hbm"])
    assert not errs, "\n".join(errs)
    assert res["switch_max"][0][1] > 1 and res["switch_max"][4][1] > 1, res["switch_max"]
    assert all(b <= 2048 for b, _ in res["switch_max"]), res["switch_max"]
    assert sw["tail_drop"] > 0 and retx > 0, (sw, retx)


def _images2(seed: int, count: int) -> dict:
    """Per rank of two trays: 0x5A everywhere, seeded binary32 (with specials) at SRC,
    seeded e8m0 scale bytes at SRC_S."""
    rng = np.random.default_rng(seed)
    imgs = {}
    for r in RANKS2:
        img = np.full(CFG2.hbm_window, 0x5A, np.uint8)
        img[SRC:SRC + 4 * count] = fp32_values(rng, count).view(np.uint8)
        img[SRC_S:SRC_S + 0x200] = rng.integers(100, 150, 0x200, dtype=np.uint8)
        imgs[r] = img
    return imgs


def _errors2(want: dict, res: dict, entries_of: dict, ranks=RANKS2) -> list[str]:
    """Queue 0 of every rank retired all its entries without error, and every HBM byte
    below ring_base outside the entries' scratch buffers equals golden (first differing
    word in hex, expected and got)."""
    errs = []
    for r in ranks:
        n = len(entries_of.get(r, []))
        q = res[r]["queues"][0]
        if (q["ERROR"], q["ERR_COUNT"], q["DONE_COUNT"]) != (0, 0, n):
            errs.append(f"rank {r} queue 0: ERROR {q['ERROR']} ERR_DETAIL {q['ERR_DETAIL']:#x} "
                        f"ERR_SEQ {q['ERR_SEQ']} DONE_COUNT {q['DONE_COUNT']} (want {n})")
        skip = np.zeros(CFG2.hbm_window, bool)
        skip[P2.ring_base:] = True
        for e in entries_of.get(r, []):
            a, nb = T.decode(e)[0].extents().get("scratch", (0, 0))
            skip[a:a + nb] = True
        errs += word_diff(f"rank {r}", want[r], res[r]["hbm"], skip)
    return errs


def cross_entries(count: int = 2048) -> dict:
    """rank -> entries: over all 8 ranks an ALL_REDUCE and a REDUCE_SCATTER of binary32, an
    ALL_GATHER of MX e4m3 codes and scales, a BROADCAST of binary32 from root 5; then an
    ALL_REDUCE over the subgroup (0, 1, 5, 6) spanning the trays."""
    every = [
        T.entry_collective(T.KIND_ALL_REDUCE, T.FMT_FP32, src=SRC, dst=DST, count=count,
                           group=RANKS2, scratch=SCRATCH),
        T.entry_collective(T.KIND_REDUCE_SCATTER, T.FMT_FP32, src=SRC, dst=DST + 0x8000,
                           count=count, group=RANKS2, scratch=SCRATCH),
        T.entry_collective(T.KIND_ALL_GATHER, T.FMT_MX_E4M3, src=SRC, dst=DST + 0x10000,
                           count=count, group=RANKS2, src_scales=SRC_S, dst_scales=DST_S),
        T.entry_collective(T.KIND_BROADCAST, T.FMT_FP32, src=SRC, dst=DST + 0x18000,
                           count=count, group=RANKS2, root=5)]
    sub = (0, 1, 5, 6)
    part = T.entry_collective(T.KIND_ALL_REDUCE, T.FMT_FP32, src=SRC, dst=DST + 0x1C000,
                              count=count // 2, group=sub, scratch=SCRATCH)
    return {r: every + ([part] if r in sub else []) for r in RANKS2}


def test_cross_tray_groups_need_the_uplink_and_its_queue_pairs():
    """Who runs a group spanning the trays (spec.tray.check_chip, the engine's static check):
    tiny_tray4 chips (uplink port, 4 queue pairs) accept it on every member; tiny_tray
    chips (3 mesh ports, no uplink) refuse it with BAD_UNIT before anything is sent."""
    e = T.entry_collective(T.KIND_ALL_REDUCE, T.FMT_FP32, src=SRC, dst=DST, count=2048,
                           group=(0, 1, 5, 6), scratch=SCRATCH)
    for r in (0, 1, 5, 6):
        assert T.check_chip(e, r, CFG2, 2) == C.ERR_NONE, r
        assert T.check_chip(e, r, C.TINY_TRAY, 2) == C.ERR_BAD_UNIT, r
    assert T.algorithm(T.decode(cross_entries()[0][0])[0]) == T.ALGO_TWO_TIER
    assert T.algorithm(T.decode(cross_entries()[0][4])[0]) == T.ALGO_DIRECT


@pytest.mark.slow
@pytest.mark.sim
@needs_verilator
def test_rtl_two_trays_cross_tray_collectives_equal_golden():
    """8 RTL chips, groups spanning both trays (the engines use the uplink queue pairs
    through the switch): ALL_REDUCE, REDUCE_SCATTER, MX e4m3 ALL_GATHER (codes and scales),
    BROADCAST from rank 5 over all 8 ranks, then an ALL_REDUCE over ranks (0, 1, 5, 6),
    back to back: every image equals golden.tray.run's, no queue error, frames crossed the
    switch."""
    seed = 91
    print(f"seed {seed}")
    imgs = _images2(seed, 2048)
    entries_of = cross_entries()
    want = _expected2(imgs, entries_of)
    res = rtl_tray.run2(imgs, entries_of, tag="rtltray2_cross")
    print("cycles", res["cycles"], "done", [res[r]["done"] for r in RANKS2],
          "switch", res["switch"])
    errs = _errors2(want, res, entries_of)
    assert not errs, "\n".join(errs)
    assert res["switch"]["rx_frames"] > 0, res["switch"]
    for r in RANKS2:
        assert res[r]["counters"][T.UPLINK]["tx_frames"] > 0, (r, res[r]["counters"])


@pytest.mark.slow
@pytest.mark.sim
@needs_verilator
def test_rtl_two_trays_two_tier_pipeline_of_four_pieces_equal_golden():
    """The two-tier pipeline with 4 pieces per chunk (chunks of 16 KiB: spec.tray
    .pipeline_pieces = 4, 11 and 10 phases): an ALL_REDUCE and a REDUCE_SCATTER of 32768
    binary32 (128 KiB per chip) over all 8 ranks, back to back, equal golden."""
    seed, count = 94, 32768
    print(f"seed {seed}")
    assert T.pipeline_pieces(4 * count // 8) == 4
    imgs = _images2(seed, count)
    ents = [T.entry_collective(T.KIND_ALL_REDUCE, T.FMT_FP32, src=SRC, dst=DST, count=count,
                               group=RANKS2, scratch=SCRATCH),
            T.entry_collective(T.KIND_REDUCE_SCATTER, T.FMT_FP32, src=SRC, dst=SRC_S,
                               count=count, group=RANKS2, scratch=SCRATCH)]
    entries_of = {r: ents for r in RANKS2}
    want = _expected2(imgs, entries_of)
    res = rtl_tray.run2(imgs, entries_of, tag="rtltray2_pipe4")
    print("cycles", res["cycles"], "done", [res[r]["done"] for r in RANKS2],
          "switch", res["switch"])
    errs = _errors2(want, res, entries_of)
    assert not errs, "\n".join(errs)


@pytest.mark.slow
@pytest.mark.sim
@needs_verilator
def test_rtl_two_trays_cross_tray_collectives_under_faults_are_exact():
    """8 RTL chips, every kind over all 8 ranks back to back (the two-tier ALL_REDUCE and
    REDUCE_SCATTER of binary32, the MX e4m3 ALL_GATHER, a BROADCAST from root 5), with
    drop/dup/reorder/corrupt on every mesh wire and every switch ingress: results equal
    golden bit for bit, retransmissions on the mesh ports and the uplinks, corrupted frames
    dropped by the switch (FCS)."""
    seed = 92
    print(f"seed {seed}")
    imgs = _images2(seed, 2048)
    entries_of = {r: cross_entries()[r][0:4] for r in RANKS2}
    want = _expected2(imgs, entries_of)
    res = rtl_tray.run2(imgs, entries_of, faults=FAULTS, uplink_faults=FAULTS, seed=seed,
                        timeout_cycles=2000, tag="rtltray2_cross_faults")
    retx = [sum(res[r]["counters"][p]["retransmits"] for r in RANKS2) for p in range(4)]
    print("cycles", res["cycles"], "switch", res["switch"], "retransmits per port", retx,
          "mesh fates", res["fates"].sum(axis=0).tolist(),
          "uplink fates", res["up_fates"].sum(axis=0).tolist())
    errs = _errors2(want, res, entries_of)
    assert not errs, "\n".join(errs)
    assert sum(retx[:T.MESH_PORTS]) > 0 and retx[T.UPLINK] > 0, retx
    assert res["switch"]["fcs_err"] > 0, res["switch"]


@pytest.mark.slow
@pytest.mark.sim
@needs_verilator
def test_rtl_two_trays_cut_uplink_ends_in_collective_error_and_work_goes_on():
    """Rank 5's uplink cut (both wires: every frame to and from it lost): the two-tier
    ALL_GATHER over all 8 ranks ends ERR_COLLECTIVE on every rank in bounded time: ranks 1
    and 5 (partners across the cut) with cause NIC, RETRY_EXCEEDED, peer = the other; the
    tray-mates, who wait for their forwarded chunks, with cause TIMEOUT (peer 1 in tray 0,
    5 in tray 1). Each rank's next entry, a one-rank all-gather (needs no queue-pair
    re-initialisation, docs/tray.md "After an error"), completes and equals golden."""
    seed = 93
    print(f"seed {seed}")
    count = 2048
    imgs = _images2(seed, count)
    ag = T.entry_collective(T.KIND_ALL_GATHER, T.FMT_FP32, src=SRC, dst=DST, count=count,
                            group=RANKS2)
    local = {r: T.entry_collective(T.KIND_ALL_GATHER, T.FMT_FP32, src=SRC, dst=DST + 0x10000,
                                   count=count // 8, group=(r,)) for r in RANKS2}
    entries_of = {r: [ag, local[r]] for r in RANKS2}
    want = _expected2(imgs, {r: [local[r]] for r in RANKS2})
    res = rtl_tray.run2(imgs, entries_of, seed=seed, uplink_cut={5: "both"},
                        timeout_cycles=2000, retry_limit=4, tag="rtltray2_cut")
    print("cycles", res["cycles"], "done", [res[r]["done"] for r in RANKS2],
          "switch", res["switch"])
    tmo = P2.engine_timeout_cycles
    for r in RANKS2:
        q = res[r]["queues"][0]
        cause, peer, st = T.split_detail(q["ERR_DETAIL"])
        print(r, q["ERROR"], T.CAUSE_NAMES.get(cause), peer, st)
        want_cause = T.CAUSE_NIC if r in (1, 5) else T.CAUSE_TIMEOUT
        want_peer = {1: 5, 5: 1}.get(r, 1 if r < 4 else 5)
        assert (q["ERROR"], q["ERR_SEQ"], cause, peer) == (
            C.ERR_COLLECTIVE, 0, want_cause, want_peer), (r, q, cause, peer, st)
        if r in (1, 5):
            assert st == S.CQ_RETRY_EXCEEDED, (r, st)
        assert (q["ERR_COUNT"], q["DONE_COUNT"]) == (1, 2), (r, q)
        assert res[r]["done"] < 2 * tmo, (r, res[r]["done"], tmo)
        # the one-rank entry's result (and everything but the failed AG's dst, the rings
        # and the host ring) equals golden
        skip = np.zeros(CFG2.hbm_window, bool)
        skip[P2.ring_base:] = True
        skip[DST:DST + 4 * count] = True
        skip[rtl_tray.RING2:rtl_tray.RING2 + 64] = True
        bad = np.flatnonzero((want[r] != res[r]["hbm"]) & ~skip)
        assert not bad.size, (f"rank {r}: {bad.size} bytes differ from golden, first at "
                              f"{int(bad[0]):#x}")


@pytest.mark.slow
@pytest.mark.sim
@needs_verilator
def test_rtl_two_trays_collectives_and_uplink_writes_at_once_under_faults():
    """8 RTL chips: a tray-local ALL_REDUCE on each tray (engines, mesh queue pairs) while
    the hosts' WRITEs cross the switch (uplink queue pairs), with drop/dup/reorder/corrupt
    on every mesh wire and switch ingress: every image equals golden (collectives:
    golden.tray.run; WRITEs: golden NICs) below ring_base outside the scratch, and the
    uplink rings (CQEs) exactly."""
    from golden import nic as GN

    seed, count = 86, 2048
    print(f"seed {seed}")
    imgs, nics = uplink_write_images(seed, count, SRC)
    want, want_nics = uplink_write_images(seed, count, SRC)
    for r in range(T.CHIPS_PER_TRAY):
        GN.run_pair(want_nics[r], want_nics[r + T.CHIPS_PER_TRAY])
    entries_of = tray_local_all_reduce(count, SRC, DST, SCRATCH)
    for r in RANKS2:
        want[r][rtl_tray.RING2:rtl_tray.RING2 + 32] = np.frombuffer(entries_of[r][0], np.uint8)
    for t in range(2):
        st = GT.run(want, entries_of[T.rank_of(t, 0)][0], P2)
        assert all(v == (C.ERR_NONE, 0) for v in st.values()), st
    res = rtl_tray.run2(imgs, entries_of, uplinks=nics, faults=FAULTS, uplink_faults=FAULTS,
                        seed=seed, timeout_cycles=2000, tag="rtltray2_mixed")
    retx = [sum(res[r]["counters"][p]["retransmits"] for r in RANKS2) for p in range(4)]
    print("cycles", res["cycles"], "switch", res["switch"], "retransmits per port", retx,
          "mesh fates", res["fates"].sum(axis=0).tolist(),
          "uplink fates", res["up_fates"].sum(axis=0).tolist())
    up_lo = T.ring_addr(P2, T.UPLINK, 0)
    errs = []
    for r in RANKS2:
        q = res[r]["queues"][0]
        if (q["ERROR"], q["ERR_COUNT"], q["DONE_COUNT"]) != (0, 0, 1):
            errs.append(f"rank {r} queue 0: ERROR {q['ERROR']} ERR_DETAIL {q['ERR_DETAIL']:#x}")
        check = np.ones(CFG2.hbm_window, bool)
        check[P2.ring_base:up_lo] = False        # mesh rings: the engine's, not in the contract
        check[SCRATCH:SCRATCH + 0x20000] = False
        errs += word_diff(f"rank {r}", want[r], res[r]["hbm"], ~check)
    assert not errs, "\n".join(errs)
    assert sum(retx[:T.MESH_PORTS]) > 0 and retx[T.UPLINK] > 0, retx
    assert res["switch"]["fcs_err"] > 0, res["switch"]


# --- tray_perf: the NIC ports and the collective engine on HBM ports of their own ----------

def test_nic_hbm_knob_adds_one_edge_port_per_nic_and_one_for_the_engine():
    from rtl.chip.top import Chip

    assert C.TINY_TRAY.nic_hbm and C.TRAY_PERF.nic_hbm and not C.TINY_NIC.nic_hbm
    assert C.TINY_NIC.top_hbm_ports == C.TINY_NIC.edge_hbm_ports == 1
    assert C.TINY_TRAY.with_(nic_hbm=False).top_hbm_ports == 1
    assert C.TRAY_PERF.top_hbm_ports == C.TINY_TRAY.top_hbm_ports == 1 + 3 + 1
    assert C.TINY.with_(nic_hbm=True).top_hbm_ports == 1     # no NIC ports: nothing added
    for cfg, want in ((C.TRAY_PERF, {f"hbm{i}" for i in range(5)}),
                      (C.TINY_TRAY.with_(nic_hbm=False), {"hbm0"})):
        chip = Chip(cfg)
        chip._MustUse__used = True          # only its signature is looked at
        assert {n for n in chip.signature.members if n.startswith("hbm")} == want
    with pytest.raises(ValueError, match="nic_hbm"):
        C.TRAY_PERF.with_(nic_hbm=1)


@pytest.mark.slow
@pytest.mark.sim
def test_rtl_tray_perf_all_reduce_on_own_hbm_ports_is_exact():
    """tray_perf (nic_hbm): a 64 KiB-per-chip all-reduce equals golden (the bench row's
    function checks every rank's dst) and each NIC port's traffic runs on its own HBM port:
    per port exactly its share of the packet reads (3 peers x 16 KiB of chunks in phase 0,
    3 x 16 KiB of sums in phase 1, plus WQE fetches) and received WRITEs; the NoC port
    (hbm0) carries only the command processor's entry fetch."""
    from cosim.bench.tray import _rtl_tray_allreduce
    from cosim.tray import rtl_tray as RT

    got = {}
    orig = RT.run

    def keep(*a, **k):
        got["res"] = orig(*a, **k)
        return got["res"]

    RT.run = keep
    try:
        out = _rtl_tray_allreduce(16384, perf=True)
    finally:
        RT.run = orig
    print(f"cycles {out['cycles']}, busbw / bound {out['frac']:.3f}")
    payload = 2 * 16384 * 4 // 4            # bytes each port sends (and receives)
    for r in RANKS:
        tot = got["res"][r]["hbm_prof"].sum(axis=1)          # [port, (read, written)]
        assert tot.shape == (5, 2), tot.shape
        assert tot[0, 1] == 0 and tot[0, 0] <= 64, f"rank {r}: NoC port carried {tot[0]}"
        for p in range(1, 4):
            assert payload <= tot[p, 0] <= payload + 2048, f"rank {r} port {p}: {tot[p]}"
            assert payload <= tot[p, 1] <= payload + 2048, f"rank {r} port {p}: {tot[p]}"
        assert tot[4, 0] >= 4 * payload // 2, f"rank {r}: engine read {tot[4]}"


@pytest.mark.slow
@pytest.mark.sim
@pytest.mark.parametrize("seed", [71, 72])
def test_rtl_tray_perf_all_reduce_under_link_faults_is_exact(seed):
    """tray_perf (nic_hbm, MTU 1024): a 64 KiB-per-chip all-reduce under 2% drop, 1%
    duplicate, 1% reorder and 1% corrupt on every wire equals golden on every rank (the
    bench function raises on an error status or any differing byte of dst)."""
    from cosim.bench.tray import _rtl_tray_allreduce

    faults = dict(drop=0.02, dup=0.01, reorder=0.01, corrupt=0.01)
    print(f"seed={seed} faults={faults}")
    out = _rtl_tray_allreduce(16384, faults=faults, seed=seed, perf=True)
    print(f"cycles {out['cycles']}, retransmits {out['retransmits']}, "
          f"injected (drop, dup, reorder, corrupt, ok) {out['injected']}")
    assert sum(out["injected"][:4]) > 0, "no fault was injected"


# --- after an error: the hosts re-initialise the queue pairs, multi-rank work goes on -----

def test_reinit_gives_both_ends_of_every_link_of_the_failed_ranks_new_matching_psns():
    """rtl_tray.reinit (docs/tray.md "After an error"): for ranks (0, 1) of a tray, every
    queue pair their engines use (towards the 3 other chips) and the one at the other end
    gets sq_psn / rq_psn of a new generation, equal across the link (the sender's sq_psn is
    the receiver's rq_psn), then ctrl = 1, and its CQ zeroed; the queue pairs between
    ranks 2 and 3 are left alone. Two trays: the uplink queue pairs towards ranks 0 and 1
    (queue pairs 0 and 1 of ranks 4..7) are included, the others not."""
    for cfg, trays, n in ((CFG, 1, 4), (CFG2, 2, 8)):
        p = T.chip_params(cfg, trays)
        csr, zero = rtl_tray.reinit(cfg, (0, 1), trays=trays, gen=2)
        regs = {}                  # (rank, port, qp) -> {name: value}, in write order
        for r in range(n):
            # last: REG_TRAY_RESYNC on every rank: the engine channels of its
            # re-initialised queue pairs (those towards ranks 0 and 1; all for 0 and 1) and
            # the sequence bit
            addr, value = csr[r][-1]
            mine = sorted(T.engine_channels(cfg).index((T.route(r, b, n).port,
                                                        T.route(r, b, n).qp))
                          for b in range(n) if b != r and (r in (0, 1) or b in (0, 1)))
            assert addr == C.REG_TRAY_RESYNC and value == C.TRAY_RESYNC_SEQ | sum(
                1 << c for c in mine), (r, hex(value), mine)
            assert all(a != C.REG_TRAY_RESYNC for a, _ in csr[r][:-1])
        for r, rows in csr.items():
            for addr, value in rows[:-1]:
                port = next(q for q in range(cfg.nic_ports)
                            if 0 <= addr - cfg.nic_csr_base(q) < 0x1000)
                off = addr - cfg.nic_csr_base(port) - S.CSR_QP_BASE
                qp, name = off // S.CSR_QP_STRIDE, {v: k for k, v in S.QP_REGS.items()}[
                    off % S.CSR_QP_STRIDE]
                regs.setdefault((r, port, qp), {})[name] = value
        want_ends = {(a, b) for a in (0, 1) for b in range(n) if b != a}
        want_ends |= {(b, a) for a, b in want_ends}
        keys = set()
        for a, b in want_ends:
            rt = T.route(a, b, n)
            keys.add((a, rt.port, rt.qp))
            mine, theirs = regs[(a, rt.port, rt.qp)], regs[(b, rt.peer_port, rt.peer_qp)]
            assert list(mine) == ["sq_psn", "rq_psn", "ctrl"] and mine["ctrl"] == 1, mine
            assert mine["sq_psn"] == theirs["rq_psn"], (a, b, mine, theirs)
            # a new generation: not the set-up at reset (cosim.tray.pair.port_nic's PSNs)
            assert mine["sq_psn"] not in (0x100 * a + 1, 0x100 * b + 1), mine
            assert (T.ring_addr(p, rt.port, rt.qp) + T.CQ_OFF, S.CQE_BYTES << T.CQ_LOG2) \
                in zero[a]
        assert set(regs) == keys, sorted(set(regs) ^ keys)
        rt23 = T.route(2, 3, n)
        assert (2, rt23.port, rt23.qp) not in regs
    # without the register: only the queue-pair writes
    csr0, _ = rtl_tray.reinit(CFG, (0, 1), resync=False)
    assert all(a != C.REG_TRAY_RESYNC for rows in csr0.values() for a, _ in rows)
    assert set(csr0) == {0, 1, 2, 3}
    with pytest.raises(ValueError, match="gen"):
        rtl_tray.reinit(CFG, (0,), gen=0)
    with pytest.raises(ValueError, match="ranks"):
        rtl_tray.reinit(CFG, (4,))


def test_host_steps_append_entries_and_mend_or_keep_cuts():
    """A HostStep's entries follow the run's in the ring and its queue tail counts them
    all; the mesh wires take the step's faults (the run's cut is mended unless the step
    cuts again); keys must be ranks."""
    fates = lambda f, c: rtl_tray._fates(f, 5, c)             # noqa: E731
    first = {r: [bytes([r]) * 32] for r in RANKS}
    steps = [rtl_tray.HostStep({0: [b"\x10" * 32, b"\x11" * 32], 2: [b"\x12" * 32]}),
             rtl_tray.HostStep({0: [b"\x13" * 32]}, csr={1: [(0x30, 7)]}, cut=[(0, 1)])]
    inp, allents = rtl_tray._steps(steps, RANKS, first, fates)
    assert allents[0] == [b"\x00" * 32, b"\x10" * 32, b"\x11" * 32, b"\x13" * 32]
    assert allents[3] == [b"\x03" * 32]
    assert inp["n_steps"] == 2
    assert inp["step0_tail_0"].tolist() == [[0, 3]] and inp["step1_tail_0"].tolist() == [[0, 4]]
    assert inp["step0_tail_2"].tolist() == [[0, 2]] and inp["step0_tail_3"].size == 0
    assert inp["step1_host_1"].tolist() == [[0x30, 7]] and inp["step1_host_0"].size == 0
    cut01 = [w for w, (c, _p, d, _dp) in enumerate(rtl_tray.wires()) if {c, d} == {0, 1}]
    assert inp["step0_fates"][:, 1].sum() == 0                 # mended
    assert sorted(np.flatnonzero(inp["step1_fates"][:, 1] == 1.0).tolist()) == cut01
    with pytest.raises(ValueError, match="steps"):
        rtl_tray._steps([rtl_tray.HostStep({4: []})], RANKS, first, fates)
    with pytest.raises(ValueError, match="steps"):
        rtl_tray._steps([{0: []}], RANKS, first, fates)
    with pytest.raises(ValueError, match="cut"):
        rtl_tray._fates2(None, 1, [(3, 4)])                     # not one tray


def _step_error(q: dict, r: int, want: tuple) -> list[str]:
    """[] if queue 0's (ERROR, ERR_SEQ, ERR_COUNT, DONE_COUNT) are ``want``, else a message
    with the detail split into cause, peer and NIC status."""
    got = (q["ERROR"], q["ERR_SEQ"], q["ERR_COUNT"], q["DONE_COUNT"])
    if got == want:
        return []
    return [f"rank {r} queue 0: (ERROR, ERR_SEQ, ERR_COUNT, DONE_COUNT) {got}, want {want}; "
            f"ERR_DETAIL {q['ERR_DETAIL']:#x} = (cause, peer, status) "
            f"{T.split_detail(q['ERR_DETAIL'])}"]


def _cut_reinit_run(imgs, first, later, detail, resync: bool = True, **run_kw):
    """4 RTL chips, the link (0, 1) cut: every rank runs its ``first`` entry (one); host
    step with the tray idle: the link mended, rtl_tray.reinit(CFG, (0, 1), resync=resync),
    ``later`` on every rank. Returns (the run's results, errors): ranks 0 and 1 must have
    failed their first entry (ERR_COLLECTIVE, the detail split into (cause, peer, status)
    starting with ``detail(rank)``) and ranks 2 and 3 completed it at the host step, every
    later entry must complete, and every image must equal golden."""
    csr, zero = rtl_tray.reinit(CFG, (0, 1), resync=resync)
    step = rtl_tray.HostStep({r: later for r in RANKS}, csr=csr, zero=zero)
    ents = {r: first[r] + later for r in RANKS}
    want = expected(imgs, ents)
    res = rtl_tray.run(imgs, first, cut=[(0, 1)], timeout_cycles=2000, retry_limit=4,
                       steps=[step], tag="tray-reinit", **run_kw)
    st = res["steps"][0]
    print(f"host step at cycle {st['cycle']}, before it done {[st[r]['done'] for r in RANKS]}; "
          f"cycles {res['cycles']} done {[res[r]['done'] for r in RANKS]}")
    total = 1 + len(later)
    errs = []
    for r in RANKS:
        q0 = st[r]["queues"][0]
        if r < 2:
            errs += _step_error(q0, r, (C.ERR_COLLECTIVE, 0, 1, 1))
            want_detail = detail(r)
            if T.split_detail(q0["ERR_DETAIL"])[:len(want_detail)] != want_detail:
                errs.append(f"rank {r}: detail (cause, peer, status) "
                            f"{T.split_detail(q0['ERR_DETAIL'])}, want {want_detail}")
            errs += _step_error(res[r]["queues"][0], r, (C.ERR_COLLECTIVE, 0, 1, total))
        else:
            errs += _step_error(q0, r, (0, 0, 0, 1))
            errs += _step_error(res[r]["queues"][0], r, (0, 0, 0, total))
    return res, errs + compare(want, res, ents)


@pytest.mark.slow
@pytest.mark.sim
@needs_verilator
def test_rtl_tray_multi_rank_collectives_after_queue_pair_reinit_equal_golden():
    """docs/tray.md "After an error" on 4 RTL chips. The link between chips 0 and 1 is
    cut: an ALL_REDUCE over (0, 1) ends ERR_COLLECTIVE cause NIC, RETRY_EXCEEDED, peer = the
    other, on both (their queue pairs towards each other in the error state), while ranks 2
    and 3 run an ALL_REDUCE over (2, 3) (so every engine has run one multi-rank entry).
    Host step, the tray idle: the link is mended, the hosts re-initialise the queue pairs of
    every port of ranks 0 and 1 and the other ends (new PSNs, ctrl, CQs zeroed:
    rtl_tray.reinit). Then an ALL_REDUCE and a REDUCE_SCATTER over all 4 ranks complete on
    every rank and equal golden."""
    seed, count = 47, 2048
    print(f"seed={seed} cut=(0, 1) until the host step")
    imgs = images(seed, count)
    first = {r: [ar_entry(count, group=(0, 1)) if r < 2 else T.entry_collective(
        T.KIND_ALL_REDUCE, T.FMT_FP32, src=SRC, dst=DST + 0x8000, count=count, group=(2, 3),
        scratch=SCRATCH)] for r in RANKS}
    later = [ar_entry(count),
             T.entry_collective(T.KIND_REDUCE_SCATTER, T.FMT_FP32, src=SRC, dst=DST + 0x10000,
                                count=count, group=RANKS, scratch=SCRATCH)]
    # golden of every entry (expected() takes rank 0's list, then the new ones of rank 2:
    # the (2, 3) all-reduce writes its own dst, so its order against the later ones does
    # not matter); the failed (0, 1) all-reduce's dst is the later all-reduce's
    # (overwritten whole), its scratch not compared
    res, errs = _cut_reinit_run(imgs, first, later,
                                lambda r: (T.CAUSE_NIC, 1 - r, S.CQ_RETRY_EXCEEDED))
    assert not errs, "RTL tray after the queue-pair re-initialisation:\n" + "\n".join(errs)
    assert res["fates"][:, 0].sum() > 0            # the cut dropped frames before the step


def _gather_cut_then_reduce(resync: bool, max_cycles: int = 3_000_000):
    """The 4-chip ALL_GATHER of 2048 binary32 with the link (0, 1) cut (ranks 2 and 3
    complete it, ranks 0 and 1 end ERR_COLLECTIVE cause NIC), the host step of
    rtl_tray.reinit(CFG, (0, 1), resync=resync) with the link mended, then an ALL_REDUCE
    over all 4 ranks. Returns (the errors against golden and the expected queue states,
    the run's results)."""
    seed, count = 49, 2048
    print(f"seed={seed} cut=(0, 1) until the host step, resync={resync}")
    imgs = images(seed, count)
    gather = T.entry_collective(T.KIND_ALL_GATHER, T.FMT_FP32, src=SRC, dst=DST, count=count,
                                group=RANKS)
    first = {r: [gather] for r in RANKS}
    later = [ar_entry(count)]
    # golden in ring order: the all-gather's dst is the all-reduce's (overwritten whole);
    # ranks 2 and 3 complete the all-gather, ranks 0 and 1 end it cause NIC
    res, errs = _cut_reinit_run(imgs, first, later, lambda r: (T.CAUSE_NIC,), resync=resync,
                                max_cycles=max_cycles)
    return errs, res


@pytest.mark.slow
@pytest.mark.sim
@needs_verilator
def test_rtl_tray_all_reduce_after_a_half_failed_all_gather_and_resync_equals_golden():
    """docs/tray.md "After an error", the case the queue-pair re-initialisation alone gets
    wrong: a 4-chip ALL_GATHER with the link (0, 1) cut, which ranks 2 and 3 complete (they
    received every chunk before their peers failed) while ranks 0 and 1 end it
    ERR_COLLECTIVE cause NIC. Host step: link mended, rtl_tray.reinit(CFG, (0, 1)) (every
    queue pair of ranks 0 and 1 and the other ends, then REG_TRAY_RESYNC on every rank:
    those channels and the sequence number). Then an ALL_REDUCE over all 4 ranks completes
    everywhere and equals golden. (Without the register the same run does not: see
    docs/tray.md.)"""
    errs, res = _gather_cut_then_reduce(resync=True)
    assert not errs, "RTL tray after the re-initialisation and resync:\n" + "\n".join(errs)
    assert res["fates"][:, 0].sum() > 0            # the cut dropped frames before the step


@pytest.mark.slow
@pytest.mark.sim
@needs_verilator
def test_rtl_two_trays_multi_rank_collectives_after_queue_pair_reinit_equal_golden():
    """docs/tray.md "After an error" on 8 RTL chips (two trays). The mesh link between
    ranks 0 and 1 is cut: their ALL_REDUCE over (0, 1) ends ERR_COLLECTIVE cause NIC,
    RETRY_EXCEEDED, peer = the other, while ranks 2..7 run an ALL_REDUCE over (2..7) across
    the trays (their uplink queue pairs towards ranks 2 and 3 in use). Host step: the link
    mended, the queue pairs of every port of ranks 0 and 1 and the other ends re-initialised
    (rtl_tray.reinit: the mesh ports, ranks 0 and 1's uplink queue pairs and queue pairs 0
    and 1 of ranks 4..7's uplinks); the queue pairs used in the (2..7) all-reduce are left as
    they are. Then the two-tier ALL_REDUCE and REDUCE_SCATTER over all 8 ranks complete and
    equal golden."""
    seed, count = 48, 2048
    print(f"seed {seed} cut=(0, 1) until the host step")
    imgs = _images2(seed, count)
    six = tuple(range(2, 8))
    first = {r: [T.entry_collective(T.KIND_ALL_REDUCE, T.FMT_FP32, src=SRC,
                                    dst=DST if r < 2 else DST + 0x8000,
                                    count=count if r < 2 else 3072,
                                    group=(0, 1) if r < 2 else six, scratch=SCRATCH)]
             for r in RANKS2}
    later = [T.entry_collective(T.KIND_ALL_REDUCE, T.FMT_FP32, src=SRC, dst=DST, count=count,
                                group=RANKS2, scratch=SCRATCH),
             T.entry_collective(T.KIND_REDUCE_SCATTER, T.FMT_FP32, src=SRC, dst=DST + 0x10000,
                                count=count, group=RANKS2, scratch=SCRATCH)]
    csr, zero = rtl_tray.reinit(CFG2, (0, 1), trays=2)
    step = rtl_tray.HostStep({r: later for r in RANKS2}, csr=csr, zero=zero)
    ents = {r: first[r] + later for r in RANKS2}
    # golden of every entry in ring order: the failed (0, 1) all-reduce's dst is the later
    # all-reduce's (overwritten whole), its scratch not compared
    want = _expected2(imgs, ents)
    res = rtl_tray.run2(imgs, first, cut=[(0, 1)], seed=seed, timeout_cycles=2000,
                        retry_limit=4, steps=[step], tag="rtltray2_reinit")
    st = res["steps"][0]
    print(f"host step at cycle {st['cycle']}, before it done {[st[r]['done'] for r in RANKS2]}; "
          f"cycles {res['cycles']} done {[res[r]['done'] for r in RANKS2]}, switch "
          f"{res['switch']['rx_frames']} frames in")
    errs = _errors2(want, res, ents, ranks=six)
    for r in RANKS2:
        q0 = st[r]["queues"][0]
        if r < 2:
            errs += _step_error(q0, r, (C.ERR_COLLECTIVE, 0, 1, 1))
            if T.split_detail(q0["ERR_DETAIL"]) != (T.CAUSE_NIC, 1 - r, S.CQ_RETRY_EXCEEDED):
                errs.append(f"rank {r}: detail {T.split_detail(q0['ERR_DETAIL'])}, want "
                            f"(NIC, {1 - r}, RETRY_EXCEEDED)")
            errs += _step_error(res[r]["queues"][0], r, (C.ERR_COLLECTIVE, 0, 1, 3))
            skip = np.zeros(CFG2.hbm_window, bool)
            skip[P2.ring_base:] = True
            skip[SCRATCH:SCRATCH + 4 * count] = True     # every entry's scratch here
            errs += word_diff(f"rank {r}", want[r], res[r]["hbm"], skip)
        else:
            errs += _step_error(q0, r, (0, 0, 0, 1))
    assert not errs, "8 RTL chips after the queue-pair re-initialisation:\n" + "\n".join(errs)
    assert res["fates"][:, 0].sum() > 0            # the cut dropped frames before the step
