"""The COLLECTIVE command in the chip (docs/tray.md "Collective engine in the chip"):
spec.chip lists it, golden/chip.py and the command processor RTL check it with
spec.tray.check_chip, and the engine executes one-rank groups locally (dst = src).

Golden tests run here without a simulator; the RTL tests run the `tiny_nic` chip (one NIC
port, the collective engine behind the command processor) through cosim.tray.chip, a
cocotb bench that also writes REG_TRAY_RANK."""

from __future__ import annotations

import numpy as np
import pytest

from cosim.sim import default_sims
from golden import chip as G
from golden import tray as GT
from spec import chip as C
from spec import nic as S
from spec import tray as T

CFG = C.TINY_NIC
P = T.chip_params(CFG)
RING = 0x80000            # host queue ring
SRC, DST, SCRATCH = 0x10000, 0x20000, 0x30000
SRC_S, DST_S = 0x40000, 0x40800
QSIZE = 32


def coll(kind, fmt, group, count, **kw) -> bytes:
    mx = fmt != T.FMT_FP32
    red = kind in (T.KIND_ALL_REDUCE, T.KIND_REDUCE_SCATTER)
    args = dict(src=SRC, dst=DST, count=count, group=group,
                src_scales=SRC_S if mx else 0, dst_scales=DST_S if mx else 0,
                scratch=SCRATCH if red else 0)
    args.update(kw)
    return T.entry_collective(kind, fmt, **args)


def image(entries, seed: int):
    """HBM image with seeded src bytes (and scales), a 0x5A background elsewhere, and the
    entries in the ring at RING."""
    rng = np.random.default_rng(seed)
    hbm = np.full(CFG.hbm_window, 0x5A, np.uint8)
    hbm[SRC:SRC + 0x8000] = rng.integers(0, 256, 0x8000, dtype=np.uint8)
    hbm[SRC:SRC + 16] = np.frombuffer(np.array([0x7FC12345, 0xFF800001, 0x00000001, 0x80000000],
                                               "<u4").tobytes(), np.uint8)  # NaN payloads
    hbm[SRC_S:SRC_S + 0x400] = rng.integers(0, 256, 0x400, dtype=np.uint8)
    for i, e in enumerate(entries):
        hbm[RING + 32 * i:RING + 32 * i + 32] = np.frombuffer(e, np.uint8)
    return hbm


def golden_chip(hbm, n_entries, rank=0):
    mem = np.zeros(CFG.address_space, np.uint8)
    mem[:CFG.hbm_window] = hbm
    return G.GoldenChip(CFG, rank=rank).run(mem, [G.Queue(RING, QSIZE, n_entries)])


def local_reference(hbm, raw):
    """Independent of golden: dst (and dst scales) = src bytes, the rest unchanged."""
    d, _ = T.decode(raw)
    out = hbm.copy()
    nb = d.count * T.CODE_BITS[d.fmt] // 8
    out[d.dst:d.dst + nb] = hbm[d.src:d.src + nb]
    if d.mx:
        out[d.dst_scales:d.dst_scales + d.count // 32] = hbm[d.src_scales:d.src_scales
                                                               + d.count // 32]
    return out


def hbm_mismatch(what, exp, got) -> str | None:
    bad = np.flatnonzero(np.asarray(exp) != np.asarray(got))
    if not bad.size:
        return None
    i = int(bad[0])
    return (f"{what}: {bad.size} bytes differ, first at {i:#x}: expected {int(exp[i]):#04x} "
            f"got {int(got[i]):#04x}")


LOCAL_CASES = [(T.KIND_ALL_REDUCE, T.FMT_FP32, 64), (T.KIND_REDUCE_SCATTER, T.FMT_FP32, 6),
               (T.KIND_ALL_GATHER, T.FMT_MX_E4M3, 256), (T.KIND_BROADCAST, T.FMT_MX_E2M1, 512),
               (T.KIND_ALL_GATHER, T.FMT_FP32, 2)]

# statically bad COLLECTIVE entries on tiny_nic, rank 0 (one NIC port: ranks 0 and 1 only)
BAD_CASES = {
    "w1 reserved": (lambda: _words(coll(0, 0, (0, 1), 64), 1, 1 << 12), C.ERR_BAD_ENTRY),
    "MX all-reduce": (lambda: coll(0, 1, (0, 1), 512, scratch=SCRATCH), C.ERR_BAD_ENTRY),
    "count not a multiple": (lambda: coll(0, 0, (0, 1), 66 + 1), C.ERR_BAD_ENTRY),
    "unit set": (lambda: _words(coll(0, 0, (0,), 64), 0, 1 << 16), C.ERR_BAD_UNIT),
    "rank not in group": (lambda: coll(2, 0, (1,), 64), C.ERR_BAD_UNIT),
    "peer without a port": (lambda: coll(0, 0, (0, 2), 64), C.ERR_BAD_UNIT),
    "misaligned dst": (lambda: coll(2, 0, (0,), 64, dst=DST + 8), C.ERR_BAD_ADDRESS),
    "src over the rings": (lambda: coll(3, 0, (0,), 64, src=P.ring_base - 128),
                           C.ERR_BAD_ADDRESS),
    "overlap": (lambda: coll(0, 0, (0,), 64, scratch=DST + 0x80), C.ERR_BAD_ADDRESS),
}


def _words(raw, i, bits):
    w = list(np.frombuffer(raw, "<u4").astype(int))
    w[i] |= bits
    return C.entry_raw([int(x) for x in w])


def bad_program():
    """Every bad entry, each followed by a one-rank all-reduce that must still complete."""
    entries, codes = [], []
    for make, code in BAD_CASES.values():
        assert T.check_chip(make(), 0, CFG) == code
        entries.append(make())
        codes.append(code)
    entries.append(coll(0, 0, (0,), 64))
    return entries, codes


# ---------------------------------------------------------------- golden / spec ---------------

def test_spec_lists_collective_and_chip_params():
    assert C.OPCODES["COLLECTIVE"] == T.OP_COLLECTIVE == 0x10
    assert C.ERRORS["COLLECTIVE"] == T.ERR_COLLECTIVE == 8
    assert P.ring_base == CFG.hbm_window - T.PORTS * CFG.nic_qps * T.RING_STRIDE
    assert P.mem_bytes == CFG.hbm_window and P.nic == CFG.nic_params
    raw = coll(0, 0, (0,), 64)
    # without NIC ports there is no engine: the opcode is unknown
    assert C.check_entry(C.Entry.decode(raw), C.TINY) == C.ERR_BAD_OPCODE
    assert C.check_entry(C.Entry.decode(raw), CFG) == C.ERR_NONE
    # rank 1 of a pair reaches rank 0 through its port 0; rank 3 is not in the group
    assert C.check_entry(C.Entry.decode(coll(0, 0, (0, 1), 64)), CFG, rank=1) == C.ERR_NONE
    assert C.check_entry(C.Entry.decode(raw), CFG, rank=3) == C.ERR_BAD_UNIT
    # with 3 ports every chip of the tray is reachable, the other tray needs the uplink
    assert T.check_chip(coll(0, 0, (0, 3), 64), 0, C.TINY_TRAY) == C.ERR_NONE
    assert T.check_chip(coll(0, 0, (0, 4), 64), 0, C.TINY_TRAY, trays=2) == C.ERR_BAD_UNIT


def test_api_rejects_bad_arguments_naming_them():
    with pytest.raises(ValueError, match="cfg"):
        T.chip_params(C.TINY)
    with pytest.raises(ValueError, match="trays"):
        T.chip_params(CFG, trays=3)
    with pytest.raises(ValueError, match="rank"):
        T.check_chip(coll(0, 0, (0,), 64), 8, CFG)
    with pytest.raises(ValueError, match="rank"):
        G.GoldenChip(CFG, rank=9)
    with pytest.raises(ValueError, match="trays"):
        G.GoldenChip(CFG, trays=0)
    with pytest.raises(ValueError, match="d"):
        T.local_jobs(T.decode(coll(0, 0, (0, 1), 64))[0])
    hbm = image([coll(0, 0, (0, 1), 64)], 1)
    with pytest.raises(ValueError, match="queues"):
        golden_chip(hbm, 1)


@pytest.mark.parametrize("kind,fmt,count", LOCAL_CASES)
def test_golden_one_rank_group_copies_src(kind, fmt, count):
    raw = coll(kind, fmt, (0,), count)
    hbm = image([raw], seed=count)
    res = golden_chip(hbm, 1)
    q = res.queues[0]
    assert (q.error, q.done_count, q.err_count) == (C.ERR_NONE, 1, 0)
    err = hbm_mismatch(f"{T.KIND_NAMES[kind]} {T.FORMAT_NAMES[fmt]} x{count}",
                       local_reference(hbm, raw), res.mem[:CFG.hbm_window])
    assert err is None, err
    # golden.tray agrees on the HBM image (no addition: NaN payloads are kept)
    mems = {0: hbm[:P.mem_bytes].copy()}
    assert GT.run(mems, raw, P) == {0: (C.ERR_NONE, 0)}
    assert np.array_equal(mems[0], res.mem[:CFG.hbm_window])
    if fmt == T.FMT_FP32:
        assert res.mem[DST:DST + 4].view("<u4")[0] == 0x7FC12345


def test_golden_bad_entries_report_and_later_work_completes():
    entries, codes = bad_program()
    hbm = image(entries, 3)
    res = golden_chip(hbm, len(entries))
    q = res.queues[0]
    assert [o for _, o in q.log] == [C.ERROR_NAMES[c] for c in codes] + ["ok"]
    assert (q.error, q.err_seq, q.err_detail) == (codes[0], 0, 0)
    assert (q.err_count, q.done_count, q.head) == (len(codes), len(entries), len(entries))
    err = hbm_mismatch("after bad entries", local_reference(hbm, entries[-1]),
                       res.mem[:CFG.hbm_window])
    assert err is None, err


def test_checker_catches_a_corrupted_result():
    raw = coll(0, 0, (0,), 64)
    hbm = image([raw], 5)
    good = golden_chip(hbm, 1).mem[:CFG.hbm_window].copy()
    bad = good.copy()
    bad[DST + 13] ^= 0x04
    msg = hbm_mismatch("corrupted", local_reference(hbm, raw), bad)
    assert msg is not None and f"{DST + 13:#x}" in msg, msg
    print(msg)


# ---------------------------------------------------------------- RTL ------------------------

@pytest.mark.sim
@pytest.mark.parametrize("sim", default_sims())
def test_rtl_collective_entries_match_golden(sim):
    """On the tiny_nic chip: the statically bad entries report their codes (ERR_SEQ of the
    first, ERR_COUNT of all), one-rank groups of every kind copy src to dst, and the queue
    registers equal golden's."""
    from cosim.tray import chip as tc

    entries, codes = bad_program()
    cases = LOCAL_CASES if sim == "verilator" else LOCAL_CASES[:2]
    entries += [coll(k, f, (0,), n, dst=DST + 0x1000 * i,
                     **({"dst_scales": DST_S + 0x100 * i} if f != T.FMT_FP32 else {}))
                for i, (k, f, n) in enumerate(cases)]
    # 4800 bytes from 0x1E0 below a 4 KiB boundary: bursts split at 4 KiB on both sides
    entries.append(coll(0, 0, (0,), 1200, src=SRC + 0xE0, dst=DST + 0x6020,
                        scratch=SCRATCH))
    hbm = image(entries, 11)
    print(f"sim={sim} seed=11 entries={len(entries)}")
    want = golden_chip(hbm, len(entries))
    got = tc.run(CFG, hbm, [G.Queue(RING, QSIZE, len(entries))], rank=0, sim=sim)
    errs = []
    m = hbm_mismatch("HBM", want.mem[:CFG.hbm_window], got["hbm"])
    if m:
        errs.append(m)
    for n in C.Q_EXACT_REGS:
        w, g = want.queues[0].regs()[n], got["queues"][0][n]
        if w != g:
            errs.append(f"queue 0 {n}: golden {w:#x} rtl {g:#x}")
    assert not errs, f"RTL ({sim}) vs golden:\n" + "\n".join(errs)


@pytest.mark.sim
@pytest.mark.skipif("verilator" not in default_sims(), reason="MAIA_SIM excludes verilator")
def test_rtl_lone_chip_collectives_end_in_timeouts_and_reset_indices():
    """Rank 1 of a pair (REG_TRAY_RANK = 1) whose peer never answers (no NIC set-up, idle
    wire), one queue. (1) A two-rank BROADCAST from rank 1 itself: the root copies its src
    into its dst, posts its WRITEs and notification, no SEND ever completes, and it ends
    with ERR_COLLECTIVE cause TIMEOUT, peer 0, after the engine timeout instead of
    hanging. (2) A one-rank all-reduce completes. (3) A two-rank ALL_REDUCE: nothing ever
    arrives, cause TIMEOUT, peer 0. After each failure the engine forgets its queue-pair
    indices (docs/tray.md "After an error"): (3)'s WQEs are in the send ring from slot 0,
    over (1)'s."""
    from cosim.tray import chip as tc

    bcast = coll(T.KIND_BROADCAST, 0, (0, 1), 64, root=1)
    one = coll(0, 0, (1,), 64)
    two = coll(0, 0, (0, 1), 64, dst=DST + 0x1000, scratch=SCRATCH + 0x1000)
    for e in (bcast, one, two):
        assert T.check_chip(e, 1, CFG) == C.ERR_NONE
    hbm = image([bcast, one, two], 13)
    got = tc.run(CFG, hbm, [G.Queue(RING, QSIZE, 3)], rank=1, sim="verilator")
    assert got["tray_rank"] == 1
    # REG_TRAY_RESYNC read back: engine idle, sequence number 2 (two multi-rank commands,
    # failed ones count: docs/tray.md "After an error")
    assert got["resync_reg"] == 2 << 16, f"REG_TRAY_RESYNC {got['resync_reg']:#x}, want 0x20000"
    q = got["queues"][0]
    have = (q["ERROR"], q["ERR_SEQ"], q["ERR_DETAIL"], q["ERR_COUNT"], q["DONE_COUNT"])
    want = (C.ERR_COLLECTIVE, 0, T.detail(T.CAUSE_TIMEOUT, 0), 2, 3)
    assert have == want, f"queue 0: (ERROR, ERR_SEQ, ERR_DETAIL, ERR_COUNT, DONE_COUNT) " \
                         f"= {have}, expected {want} (details {have[2]:#x} / {want[2]:#x})"
    # the root's local copy and the one-rank copy (same bytes); the failed all-reduce
    # writes nothing below the rings
    exp = local_reference(hbm, one)
    err = hbm_mismatch("HBM below the rings", exp[:P.ring_base], got["hbm"][:P.ring_base])
    assert err is None, err
    sq = T.ring_addr(P, 0, T.QP_MESH) + T.SQ_OFF
    wqes = [S.unpack_fields(S.WQE_FIELDS, bytes(got["hbm"][sq + 32 * i:sq + 32 * i + 32]))
            for i in range(4)]
    seen = [(w["opcode"], hex(w["local_addr"]), hex(w["remote_addr"])) for w in wqes]
    # (3), rank 1 = member 1: chunk 0 of src into the peer's scratch slot 1, its SEND
    assert seen[0] == (S.WR_WRITE, hex(SRC), hex(SCRATCH + 0x1000 + 128)), seen
    assert seen[1][0] == S.WR_SEND, seen
    # (1): chunks 0 and 1 to the peer's dst, its SEND: slot 2 is (1)'s SEND
    assert seen[2][0] == S.WR_SEND and seen[3] != seen[0], seen
    print(f"cycles {got['cycles']} (engine timeout {P.engine_timeout_cycles})")


MUTATIONS = ("none", "w0 reserved", "w1 reserved", "kind", "fmt", "mx reduce", "scales",
             "scratch", "root", "unit", "add rank", "drop self", "root out", "count 0",
             "count odd", "misalign", "end at rings", "over rings", "overlap", "adjacent",
             "huge count")


def _check_case(rng, cfg, rank: int, trays: int):
    """A valid entry for (rank, trays) on ``cfg`` with at most one thing made wrong."""
    n_ranks = 4 * trays
    reach = [r for r in range(n_ranks) if r != rank and
             T.check_chip(T.entry_collective(2, 0, src=0, dst=0x1000, count=4,
                                             group=sorted({rank, r})), rank, cfg, trays) == 0]
    others = [r for r in reach if rng.random() < 0.5]
    group = sorted({rank, *others})
    kind = int(rng.integers(0, 4))
    fmt = 0 if kind < 2 else int(rng.integers(0, 4))
    n = len(group)
    count = T.count_multiple(fmt, n) * int(rng.choice([1, 2, 3, 5]))
    bpe = T.CODE_BITS[fmt] / 8
    size = int(count * bpe) + 64
    size = -(-size // 32) * 32
    base = [0x1000 + i * size for i in range(5)]
    rng.shuffle(base)
    root = int(rng.choice(group)) if kind == T.KIND_BROADCAST else 0
    w = [T.OP_COLLECTIVE, kind | fmt << 4 | root << 8 | T.group_mask(group) << 16,
         base[0], base[1], count, base[2] if fmt else 0, base[3] if fmt else 0,
         base[4] if kind < 2 else 0]
    mut = str(rng.choice(MUTATIONS))
    pb = T.chip_params(cfg, trays).ring_base
    if mut == "w0 reserved":
        w[0] |= 1 << int(rng.integers(21, 32))
    elif mut == "w1 reserved":
        w[1] |= 1 << int(rng.choice([11, 12, 15, 24, 31]))
    elif mut == "kind":
        w[1] = (w[1] & ~0xF) | int(rng.integers(4, 16))
    elif mut == "fmt":
        w[1] = (w[1] & ~0xF0) | int(rng.integers(4, 16)) << 4
    elif mut == "mx reduce":
        w[1] = (w[1] & ~0xFF) | int(rng.integers(0, 2)) | int(rng.integers(1, 4)) << 4
        w[5], w[6] = base[2], base[3]
    elif mut == "scales":
        w[5 + int(rng.integers(0, 2))] = 0x7000
    elif mut == "scratch":
        w[7] = 0x7000
    elif mut == "root":
        w[1] |= int(rng.integers(1, 8)) << 8
    elif mut == "unit":
        w[0] |= 1 << int(rng.integers(8, 20))
    elif mut == "add rank":
        w[1] |= 1 << (16 + int(rng.integers(0, 8)))
    elif mut == "drop self":
        w[1] &= ~(1 << (16 + rank))
    elif mut == "root out":
        w[1] = (w[1] & ~0x70F) | T.KIND_BROADCAST | int(rng.integers(0, 8)) << 8
        w[7] = 0
    elif mut == "count 0":
        w[4] = 0
    elif mut == "count odd":
        w[4] = count + int(rng.choice([1, 2, 8, 32]))
    elif mut == "misalign":
        w[int(rng.choice([2, 3, 5, 6, 7]))] += int(rng.choice([8, 16, 24]))
    elif mut in ("end at rings", "over rings"):
        i = int(rng.choice([2, 3]))
        d, _ = T.decode(C.entry_raw(w))
        nb = d.extents()["src" if i == 2 else "dst"][1]
        w[i] = (pb - nb) // 32 * 32 + (32 if mut == "over rings" else 0)
    elif mut in ("overlap", "adjacent"):
        d, _ = T.decode(C.entry_raw(w))
        nb = d.extents()["src"][1]
        w[3] = w[2] + (-(-nb // 32) * 32 if mut == "adjacent" else nb - 8 - (nb - 8) % 32)
    elif mut == "huge count":
        w[4] = (0xFFFFFF00 // T.count_multiple(fmt, n)) * T.count_multiple(fmt, n)
    return C.entry_raw([x & 0xFFFFFFFF for x in w])


@pytest.mark.parametrize("cfg", [C.TINY_NIC, C.TINY_TRAY], ids=lambda c: c.name)
def test_rtl_static_check_equals_spec(cfg):
    """rtl.chip.collective.CollectiveCheck (Amaranth simulator) against
    spec.tray.check_chip on seeded edge-case entries, every rank, one and two trays."""
    from amaranth.sim import Simulator

    from rtl.chip.collective import CollectiveCheck

    seed = 17 + cfg.nic_ports
    print(f"seed={seed}")
    rng = np.random.default_rng(seed)
    cases = [(_check_case(rng, cfg, i % 8 % (4 * (1 + (i // 8) % 2)), 1 + (i // 8) % 2),
              i % 8 % (4 * (1 + (i // 8) % 2)), 1 + (i // 8) % 2) for i in range(600)]
    dut = CollectiveCheck(cfg)
    bad, seen = [], set()

    async def tb(ctx):
        for raw, rank, trays in cases:
            want = T.check_chip(raw, rank, cfg, trays)
            seen.add(want)
            ctx.set(dut.entry, int.from_bytes(raw, "little"))
            ctx.set(dut.rank, rank)
            ctx.set(dut.two_trays, trays - 1)
            got = ctx.get(dut.code)
            if got != want:
                bad.append(f"entry {raw.hex()} rank {rank} trays {trays}: spec {want} rtl {got}")

    sim = Simulator(dut)
    sim.add_testbench(tb)
    sim.run()
    assert not bad, f"{len(bad)} of {len(cases)} differ:\n" + "\n".join(bad[:10])
    assert seen >= {C.ERR_NONE, C.ERR_BAD_ENTRY, C.ERR_BAD_UNIT, C.ERR_BAD_ADDRESS}, seen
    print({C.ERROR_NAMES[k]: sum(T.check_chip(r, k2, cfg, t) == k for r, k2, t in cases)
           for k in sorted(seen)})


def _ref_sum(parts) -> np.ndarray:
    """((p0 + p1) + p2) + ... in numpy float32, NaN results as the canonical 0x7FC00000."""
    acc = parts[0].view(np.float32).copy()
    with np.errstate(all="ignore"):
        for x in parts[1:]:
            acc = (acc + x.view(np.float32)).astype(np.float32)
    bits = acc.view(np.uint32).copy()
    bits[np.isnan(acc)] = 0x7FC00000
    return bits


def _write_server(ax, mem, accept=None, on_aw=None, on_beat=None):
    """An AXI4 write subordinate over ``mem`` for Amaranth testbenches (32-byte beats with
    strobes, bursts in order, AW always ready, one B per burst, WLAST checked): returns
    the background testbench. ``accept()`` (default: always) sets WREADY each cycle;
    ``on_aw(address, beats)`` sees every accepted AW, ``on_beat()`` every W beat."""
    async def writes(ctx):
        aws, bq = [], 0
        while True:
            wr = True if accept is None else accept()
            ctx.set(ax.awready, 1)
            ctx.set(ax.wready, wr)
            ctx.set(ax.bvalid, bq > 0)
            _, _, awv, awa, awl, wv, wd, ws, wl, br = await ctx.tick().sample(
                ax.awvalid, ax.awaddr, ax.awlen, ax.wvalid, ax.wdata, ax.wstrb, ax.wlast,
                ax.bready)
            if bq and br:
                bq -= 1
            if wv and wr:
                assert aws, "W beat before its AW"
                a, n = aws[0]
                data = wd.to_bytes(32, "little")
                for i in range(32):
                    if ws >> i & 1:
                        mem[a + i] = data[i]
                assert bool(wl) == (n == 1), f"wlast {wl} with {n} beats left"
                if on_beat is not None:
                    on_beat()
                aws[0] = [a + 32, n - 1]
                if n == 1:
                    aws.pop(0)
                    bq += 1
            if awv:
                aws.append([awa, awl + 1])
                if on_aw is not None:
                    on_aw(awa, awl + 1)
    return writes


def _read_server(ax, mem, offer=None, on_ar=None):
    """An AXI4 read subordinate over ``mem`` for Amaranth testbenches (32-byte beats, bursts
    answered in order, AR always ready): returns the background testbench. ``offer()``
    (default: always) says whether an R beat is offered in a cycle with one pending;
    ``on_ar(address, beats, bursts queued)`` sees every accepted AR."""
    async def reads(ctx):
        queue = []
        while True:
            go = bool(queue) and (offer is None or offer())
            if go:
                a, n = queue[0]
                ctx.set(ax.rdata, int.from_bytes(mem[a:a + 32], "little"))
                ctx.set(ax.rlast, n == 1)
            ctx.set(ax.rvalid, go)
            ctx.set(ax.arready, 1)
            _, _, arv, ara, arl, rr = await ctx.tick().sample(ax.arvalid, ax.araddr, ax.arlen,
                                                               ax.rready)
            if go and rr:
                a, n = queue[0]
                queue[0] = (a + 32, n - 1)
                if n == 1:
                    queue.pop(0)
            if arv:
                queue.append((ara, arl + 1))
                if on_ar is not None:
                    on_ar(ara, arl + 1, len(queue))
    return reads


def _reduce_unit_sim(jobs, mem: bytearray, rng, unit_cls=None):
    """Run ``jobs`` (n_inputs, inputs, out, nbytes) one after the other on a ReduceUnit
    (Amaranth simulator) over ``mem`` (changed in place) behind a memory model that stalls
    at random; returns (bursts across 4 KiB, stats)."""
    from amaranth.sim import Simulator

    from rtl.axi import AXI4Signature
    from rtl.chip.collective import ReduceUnit

    axi = AXI4Signature(addr_width=32, data_width=256, id_width=1)
    dut = (unit_cls or ReduceUnit)(axi)
    ax = dut.m_axi
    crossings, stats = [], {"beats": 0, "max_reads": 0}

    def on_ar(ara, n, queued):
        assert ara % 32 == 0, f"AR address {ara:#x} not 32-byte aligned"
        stats["max_reads"] = max(stats["max_reads"], queued)
        if ara // 4096 != (ara + 32 * n - 1) // 4096:
            crossings.append(("AR", hex(ara), n))

    reads = _read_server(ax, mem, offer=lambda: rng.random() < 0.8, on_ar=on_ar)

    def on_aw(awa, n):
        assert awa % 32 == 0, f"AW address {awa:#x} not 32-byte aligned"
        if awa // 4096 != (awa + 32 * n - 1) // 4096:
            crossings.append(("AW", hex(awa), n))

    def on_beat():
        stats["beats"] += 1

    writes = _write_server(ax, mem, accept=lambda: rng.random() < 0.8, on_aw=on_aw,
                           on_beat=on_beat)

    async def bench(ctx):
        p = dut.job.payload
        for n_in, ins, out, nbytes in jobs:
            ctx.set(p.n_inputs, n_in)
            for i, a in enumerate(ins):
                ctx.set(p.inputs[i], a)
            ctx.set(p.out, out)
            ctx.set(p.nbytes, nbytes)
            ctx.set(dut.job.valid, 1)
            await ctx.tick().until(dut.job.ready)
            ctx.set(dut.job.valid, 0)
            await ctx.tick()
            await ctx.tick().until(~dut.busy)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(reads, background=True)
    sim.add_testbench(writes, background=True)
    sim.add_testbench(bench)
    sim.run()
    return crossings, stats


def _check_reduce_jobs(jobs, before: bytes, mem: bytearray) -> None:
    """The memory after the jobs against a numpy reference: every job's out bytes are the
    sum (or copy) of its inputs as they were before, every other byte unchanged."""
    exp = bytearray(before)
    for n_in, ins, out, nbytes in jobs:
        parts = [np.frombuffer(before[a:a + nbytes], "<u4") for a in ins]
        res = parts[0] if n_in == 1 else _ref_sum(parts)
        exp[out:out + nbytes] = np.asarray(res, "<u4").tobytes()
    got = np.frombuffer(bytes(mem), np.uint8)
    want = np.frombuffer(bytes(exp), np.uint8)
    bad = np.flatnonzero(got != want)
    if bad.size:
        i = int(bad[0]) & ~3
        job = next((j for j in jobs if j[2] - 32 <= i < j[2] + j[3] + 32), None)
        k = i - job[2] if job else 0
        ins = " ".join(f"{int.from_bytes(before[a + k:a + k + 4], 'little'):#010x}"
                       for a in job[1]) if job else "-"
        raise AssertionError(f"{bad.size} bytes differ, first word at {i:#x} (job "
                             f"{job and (job[0], [hex(a) for a in job[1]], hex(job[2]), job[3])}"
                             f"): inputs {ins} expected "
                             f"{int.from_bytes(exp[i:i + 4], 'little'):#010x} got "
                             f"{int.from_bytes(mem[i:i + 4], 'little'):#010x}")


def test_rtl_reduce_unit_sums_in_input_order_bit_exact():
    """rtl.chip.collective.ReduceUnit (Amaranth simulator, a stalling AXI memory model
    here): copies and 2..8-input binary32 sums with specials and subnormals, unaligned to
    4 KiB, partial last words; results against a numpy float32 reference; no burst crosses
    4 KiB; bytes after a job's end untouched; several read bursts in flight."""
    from cosim.tray.scenario import fp32_values

    seed = 23
    rng = np.random.default_rng(seed)
    print(f"seed={seed}")
    mem = bytearray(rng.integers(0, 256, 64 * 1024, dtype=np.uint8).tobytes())
    jobs = []        # (n_inputs, inputs, out, nbytes)
    out = 0xD1E0                      # outputs one after the other, across 0xE000, 0xF000
    for n_in, nbytes, base in ((1, 200, 0x0FA0), (2, 1016, 0x1F80), (3, 72, 0x3000),
                               (8, 264, 0x4FE0), (1, 8, 0x7000), (5, 520, 0x8F40),
                               (2, 2600, 0x3100)):       # 82 beats: full 64-beat bursts
        ins = [base + i * 0x1000 for i in range(n_in)]
        for a in ins:
            mem[a:a + nbytes] = fp32_values(rng, nbytes // 4).tobytes()
        jobs.append((n_in, ins, out, nbytes))
        out += -(-nbytes // 32) * 32 + 32
    before = bytes(mem)
    crossings, stats = _reduce_unit_sim(jobs, mem, rng)
    assert not crossings, f"bursts across 4 KiB: {crossings}"
    # the unit keeps several read bursts in flight (every input of a burst, two buffers)
    assert stats["max_reads"] >= 3, f"at most {stats['max_reads']} reads in flight"
    _check_reduce_jobs(jobs, before, mem)
    assert stats["beats"] == sum(-(-j[3] // 32) for j in jobs)


def test_rtl_reduce_unit_lane_rotation_bit_exact():
    """Inputs and outputs at any 8-byte offset (lane rotation, docs/tray.md): every
    combination of the four lane offsets of input 0, input 1 and out, inputs and outputs
    across 4 KiB boundaries, single words, copies and 3-input sums; results against the
    numpy reference, the bytes just before and after every out untouched, aligned bursts
    that never cross 4 KiB."""
    from cosim.tray.scenario import fp32_values

    seed = 29
    rng = np.random.default_rng(seed)
    print(f"seed={seed}")
    mem = bytearray(rng.integers(0, 256, 256 * 1024, dtype=np.uint8).tobytes())
    jobs = []
    out = 0x30000 + 0xFC8             # outputs one after the other, 8-byte gaps between
    src = 0x1000
    cases = [(n_in, nbytes, s0, s1, so) for s0 in range(4) for s1 in range(4)
             for so in range(4) for n_in, nbytes in ((2, 72),)]
    cases += [(1, 8, 1, 0, 3), (1, 2600, 3, 0, 1), (3, 2400, 1, 2, 3), (2, 4104, 2, 3, 1),
              (1, 24, 3, 0, 0), (2, 40, 0, 0, 2)]
    for n_in, nbytes, s0, s1, so in cases:
        shifts = [s0, s1, (s0 + s1 + 1) % 4][:n_in]
        ins = []
        for sh in shifts:
            a = src + 8 * sh
            mem[a:a + nbytes] = fp32_values(rng, nbytes // 4).tobytes()
            ins.append(a)
            src = -(-(a + nbytes + 40) // 32) * 32 + 0x160   # inputs also across 4 KiB
        out = -(-out // 32) * 32 + 8 * so
        jobs.append((n_in, ins, out, nbytes))
        out += nbytes + 8
    assert src < 0x30000 and out < len(mem)
    before = bytes(mem)
    crossings, _ = _reduce_unit_sim(jobs, mem, rng)
    assert not crossings, f"bursts across 4 KiB: {crossings}"
    _check_reduce_jobs(jobs, before, mem)


# a made-up chip: the uplink port but 2 queue pairs per port (no configuration of spec.chip
# has one): groups spanning the trays pass the static check where route() fits in 2 queue
# pairs, and the engine ends them UNSUPPORTED (docs/tray.md "Errors")
CFG_UP2 = C.TINY.with_(name="tiny_up2", nic_ports=4, nic_qps=2)


def test_rtl_engine_reports_unsupported_exactly_where_the_spec_says():
    """rtl.chip.collective.CollectiveEngine of CFG_UP2 (Amaranth simulator, reset before
    each entry, AXI never answering): for seeded entries of every rank of two trays, its
    ``check`` equals spec.tray.check_chip, and an accepted entry ends at once with
    ERR_COLLECTIVE and spec.tray.unsupported_detail (cause UNSUPPORTED, peer = the lowest
    other member) exactly where that is non-zero; every other accepted entry is still
    running (busy, no error) when the UNSUPPORTED ones have long ended."""
    from amaranth import Module, Signal
    from amaranth.hdl import ResetInserter
    from amaranth.sim import Simulator

    from rtl.axi import AXI4Signature
    from rtl.chip.collective import CollectiveEngine

    seed = 29
    print(f"seed={seed}")
    rng = np.random.default_rng(seed)
    cases, n_ok = [], 0
    while len(cases) < 160:
        rank = int(rng.integers(0, 8))
        raw = _check_case(rng, CFG_UP2, rank, 2)
        ok = T.check_chip(raw, rank, CFG_UP2, 2) == C.ERR_NONE
        if ok or n_ok > 2 * (len(cases) - n_ok):     # about 2/3 accepted entries
            cases.append((raw, rank))
            n_ok += ok
    eng = CollectiveEngine(CFG_UP2, AXI4Signature(addr_width=32, data_width=256, id_width=1))
    rst = Signal()
    top = Module()
    top.submodules.eng = ResetInserter(rst)(eng)
    bad, kinds = [], {"unsupported": 0, "running": 0, "refused": 0}

    async def tb(ctx):
        for raw, rank in cases:
            ctx.set(rst, 1)
            await ctx.tick()
            ctx.set(rst, 0)
            ctx.set(eng.entry, int.from_bytes(raw, "little"))
            ctx.set(eng.rank, rank)
            ctx.set(eng.two_trays, 1)
            code, want = T.check_chip(raw, rank, CFG_UP2, 2), \
                T.unsupported_detail(raw, rank, CFG_UP2, 2)
            if ctx.get(eng.check) != code:
                bad.append(f"entry {raw.hex()} rank {rank}: check spec {code} rtl "
                           f"{ctx.get(eng.check)}")
                continue
            if code != C.ERR_NONE:
                kinds["refused"] += 1
                continue
            ctx.set(eng.start, 1)
            await ctx.tick()
            ctx.set(eng.start, 0)
            for _ in range(6):
                await ctx.tick()
            got = (ctx.get(eng.busy), ctx.get(eng.err), ctx.get(eng.detail))
            exp = (0, C.ERR_COLLECTIVE, want) if want else (1, 0, 0)
            kinds["unsupported" if want else "running"] += 1
            if got != exp:
                bad.append(f"entry {raw.hex()} rank {rank}: (busy, err, detail) expected "
                           f"({exp[0]}, {exp[1]}, {exp[2]:#x}) got ({got[0]}, {got[1]}, "
                           f"{got[2]:#x})")

    sim = Simulator(top)
    sim.add_clock(1e-8)
    sim.add_testbench(tb)
    sim.run()
    print(kinds)
    assert not bad, f"{len(bad)} of {len(cases)} differ:\n" + "\n".join(bad[:10])
    assert min(kinds.values()) >= 10, kinds       # every outcome seen


def _engine_resync_sim(cfg, raw: bytes, rank: int, script, timeout: int, init=None):
    """CollectiveEngine of ``cfg`` (Amaranth simulator) behind an AXI memory model over a
    bytearray of the chip's HBM and NIC CSR ports that accept every doorbell. ``script(
    ctx, eng, run, resync)`` drives it: ``await run(pulse_at=None, with_start=False)`` starts
    ``raw`` (rank ``rank``), optionally pulses REG_TRAY_RESYNC ``pulse_at`` cycles after
    the start (or in the start cycle itself), waits until it ends and returns (err,
    detail, WQE slots written, doorbell values, resync_ok seen at the pulse);
    ``await resync(word)`` writes the register while idle and returns resync_ok.
    ``init(mem)`` fills the memory first. Returns the memory."""
    from amaranth.sim import Simulator

    from rtl.axi import AXI4Signature
    from rtl.chip.collective import CollectiveEngine

    p = T.chip_params(cfg)
    mem = bytearray(cfg.hbm_window)
    if init is not None:
        init(mem)
    eng = CollectiveEngine(cfg, AXI4Signature(addr_width=32, data_width=256, id_width=1),
                           timeout=timeout)
    ax = eng.m_axi
    log = {"aw": [], "bells": []}

    reads = _read_server(ax, mem)

    writes = _write_server(ax, mem, on_aw=lambda awa, n: log["aw"].append(awa))

    def nic_port(q):
        n = getattr(eng, f"nic{q}")

        async def lite(ctx):
            b = False
            while True:
                ctx.set(n.awready, 1)
                ctx.set(n.wready, 1)
                ctx.set(n.bvalid, b)
                _, _, awv, wv, wd, br = await ctx.tick().sample(n.awvalid, n.wvalid, n.wdata,
                                                                n.bready)
                if b and br:
                    b = False
                if awv and wv:      # the engine presents both together
                    log["bells"].append((q, wd))
                    b = True
        return lite

    sq = T.ring_addr(p, 0, T.QP_MESH) + T.SQ_OFF

    def present(ctx, word):
        """Present a REG_TRAY_RESYNC write of ``word`` this cycle; returns resync_ok."""
        ctx.set(eng.resync_mask, word & 0xFF)
        ctx.set(eng.resync_seq, word >> 8 & 1)
        ctx.set(eng.resync, 1)
        return ctx.get(eng.resync_ok)

    async def run(ctx, pulse_at=None, with_start=False, word=0x1FF):
        n_aw, n_bells = len(log["aw"]), len(log["bells"])
        ctx.set(eng.entry, int.from_bytes(raw, "little"))
        ctx.set(eng.rank, rank)
        ctx.set(eng.start, 1)
        ok = None
        if with_start:
            ok = present(ctx, word)
        await ctx.tick()
        ctx.set(eng.start, 0)
        ctx.set(eng.resync, 0)
        for i in range(10 * timeout):
            if pulse_at is not None and i == pulse_at:
                assert ctx.get(eng.busy)
                ok = present(ctx, word)
                await ctx.tick()
                ctx.set(eng.resync, 0)
                continue
            if not ctx.get(eng.busy):
                break
            await ctx.tick()
        assert not ctx.get(eng.busy), "the engine never ended"
        slots = sorted({(a - sq) // 32 for a in log["aw"][n_aw:] if sq <= a < sq + 0x2000})
        return (ctx.get(eng.err), ctx.get(eng.detail), slots,
                [v for _, v in log["bells"][n_bells:]], ok)

    async def resync(ctx, word):
        ok = present(ctx, word)
        await ctx.tick()
        ctx.set(eng.resync, 0)
        return ok

    async def tb(ctx):
        await script(ctx, eng, lambda **kw: run(ctx, **kw), lambda w: resync(ctx, w))

    sim = Simulator(eng)
    sim.add_clock(1e-8)
    sim.add_testbench(reads, background=True)
    sim.add_testbench(writes, background=True)
    for q in range(cfg.nic_ports):
        sim.add_testbench(nic_port(q), background=True)
    sim.add_testbench(tb)
    sim.run()
    return mem


def test_rtl_engine_resync_register_zeroes_named_channels_and_is_refused_while_busy():
    """REG_TRAY_RESYNC in rtl.chip.collective.CollectiveEngine of tiny_tray (Amaranth
    simulator; docs/tray.md "After an error"). Rank 0, a two-rank ALL_GATHER with rank 1 on
    mesh port 0; the CQ of that channel holds, from the start, a SEND completion and a
    receive completion of rank 1's notification for sequence number 1 (phase 0), nothing
    after them. So a command completes exactly when the engine starts at CQ slot 0 with
    sequence number 1, and otherwise ends TIMEOUT. (A) from reset: completes, WQEs in
    send-queue slots 0, 1, doorbells 1, 2. (B) after a write naming channels 1 and 2 only,
    plus the sequence bit: channel 0 keeps its indices (slots 2, 3, doorbells 3, 4; CQ
    slot 2 empty: TIMEOUT peer 1). (C) the failure zeroed the indices but counted in the
    sequence number (2): rank 1's note of number 1 does not count, TIMEOUT. (D) after a
    sequence-only write: completes from slot 0. (E) a write pulsed while the command runs
    is refused (resync_ok 0): the doorbells go on at 3, 4 and the sequence number stays.
    (F) a write in the cycle of ``start`` is refused too: the command is number 3, TIMEOUT.
    (G) a write of channel 0 and the sequence bit while idle: completes from slot 0."""
    cfg = C.TINY_TRAY
    p = T.chip_params(cfg)
    timeout = 300
    raw = T.entry_collective(T.KIND_ALL_GATHER, T.FMT_FP32, src=0x1000, dst=0x2000, count=16,
                             group=(0, 1))
    assert T.check_chip(raw, 0, cfg) == C.ERR_NONE
    assert T.engine_channels(cfg) == [(0, 0), (1, 0), (2, 0)]
    ring = T.ring_addr(p, 0, T.QP_MESH)
    chan0 = T.resync_word(cfg, [(0, T.QP_MESH)])
    assert chan0 == 1 and T.resync_word(cfg, seq=True) == C.TRAY_RESYNC_SEQ == 0x100
    tmo = (C.ERR_COLLECTIVE, T.detail(T.CAUSE_TIMEOUT, 1))
    results = {}

    async def script(ctx, eng, run, resync):
        results["A"] = await run()
        results["A seq"] = ctx.get(eng.seq)
        results["B ok"] = await resync(T.resync_word(cfg, [(1, 0), (2, 0)], seq=True))
        results["B seq"] = ctx.get(eng.seq)
        results["B"] = await run()
        results["C"] = await run()
        results["C seq"] = ctx.get(eng.seq)
        results["D ok"] = await resync(T.resync_word(cfg, seq=True))
        results["D"] = await run()
        results["E"] = await run(pulse_at=3)
        results["E seq"] = ctx.get(eng.seq)
        results["F"] = await run(with_start=True, word=chan0 | C.TRAY_RESYNC_SEQ)
        results["F seq"] = ctx.get(eng.seq)
        results["G ok"] = await resync(chan0 | C.TRAY_RESYNC_SEQ)
        results["G"] = await run()
        results["G seq"] = ctx.get(eng.seq)

    def cq_image(mem):
        cqes = [S.pack_fields(S.CQE_FIELDS, S.CQE_BYTES, dict(
                    wr_id=0xFFFF0000, status=S.CQ_OK, opcode=S.WR_SEND, valid=1, byte_len=8)),
                S.pack_fields(S.CQE_FIELDS, S.CQE_BYTES, dict(
                    wr_id=0, status=S.CQ_OK, opcode=S.CQE_RECV, valid=1, byte_len=8))]
        mem[ring + T.CQ_OFF:ring + T.CQ_OFF + 32] = b"".join(cqes)
        note = bytes([0, 1]) + (1).to_bytes(2, "little") + T.NOTE_MAGIC.to_bytes(4, "little")
        mem[ring + T.RQ_OFF:ring + T.RQ_OFF + 8] = note

    _engine_resync_sim(cfg, raw, 0, script, timeout, init=cq_image)
    print({k: v for k, v in results.items()})
    ok = (C.ERR_NONE, 0)
    want = {
        "A": (*ok, [0, 1], [1, 2], None), "A seq": 1, "B ok": 1, "B seq": 0,
        "B": (*tmo, [2, 3], [3, 4], None), "C": (*tmo, [0, 1], [1, 2], None), "C seq": 2,
        "D ok": 1, "D": (*ok, [0, 1], [1, 2], None), "E": (*tmo, [2, 3], [3, 4], 0),
        "E seq": 2, "F": (*tmo, [0, 1], [1, 2], 0), "F seq": 3, "G ok": 1,
        "G": (*ok, [0, 1], [1, 2], None), "G seq": 1}
    bad = [f"{k}: expected {want[k]} got {results.get(k)} (detail {results[k][1]:#x})"
           if isinstance(want[k], tuple) and k in results else
           f"{k}: expected {want[k]} got {results.get(k)}"
           for k in want if results.get(k) != want[k]]
    assert not bad, "\n".join(bad)


def test_spec_engine_channels_and_resync_word():
    """spec.tray.engine_channels: one channel per port (queue pair QP_MESH), or with the
    two-tier engine the 3 mesh ports then the uplink's queue pairs 0..3 (bit c of
    REG_TRAY_RESYNC); resync_word sets those bits and bit 8 for the sequence number;
    ValueError naming the argument otherwise."""
    assert T.engine_channels(C.TINY_NIC) == [(0, 0)]
    assert T.engine_channels(C.TINY_TRAY) == [(0, 0), (1, 0), (2, 0)]
    assert T.engine_channels(C.TINY_TRAY4) == [(0, 0), (1, 0), (2, 0), (3, 0), (3, 1), (3, 2),
                                               (3, 3)]
    assert T.engine_channels(CFG_UP2) == [(0, 0), (1, 0), (2, 0), (3, 0)]
    assert T.resync_word(C.TINY_TRAY4, [(3, 2), (1, 0)], seq=True) == 0x100 | 1 << 5 | 1 << 1
    assert T.resync_word(C.TINY_TRAY4, [(0, 0)]) == 1
    assert C.REG_TRAY_RESYNC == 0x03C and C.TRAY_RESYNC_SEQ == 0x100
    with pytest.raises(ValueError, match="queue_pairs"):
        T.resync_word(C.TINY_TRAY, [(0, 1)])         # queue pair 1 of a mesh port: not a channel
    with pytest.raises(ValueError, match="queue_pairs"):
        T.resync_word(C.TINY_TRAY, [(3, 0)])         # no uplink
    with pytest.raises(ValueError, match="seq"):
        T.resync_word(C.TINY_TRAY, seq=1)
    with pytest.raises(ValueError, match="cfg"):
        T.engine_channels(C.TINY)


def test_rtl_cp_decodes_tray_resync_and_answers_slverr_while_the_engine_runs():
    """rtl.chip.cp.CommandProcessor of tiny_tray (Amaranth simulator, the engine's side
    driven by the test): an AXI-Lite write of REG_TRAY_RESYNC pulses ``coll_resync`` for
    one cycle with ``[7:0]`` as the mask and ``[8]`` as the sequence bit, and answers OKAY
    when the engine says ``coll_resync_ok``, SLVERR when it does not; a read gives
    ``coll_busy`` in bit 0 and ``coll_seq`` in [31:16]."""
    from amaranth.sim import Simulator

    from rtl.axi import RESP_OKAY, RESP_SLVERR
    from rtl.chip.cp import CommandProcessor

    cp = CommandProcessor(C.TINY_TRAY)
    s = cp.s_axil
    seen = {}

    async def write(ctx, addr, value):
        ctx.set(s.awaddr, addr)
        ctx.set(s.wdata, value)
        ctx.set(s.wstrb, 0xF)
        ctx.set(s.awvalid, 1)
        ctx.set(s.wvalid, 1)
        ctx.set(s.bready, 1)
        pulses = []
        for _ in range(20):
            pulses.append((ctx.get(cp.coll_resync), ctx.get(cp.coll_resync_mask),
                           ctx.get(cp.coll_resync_seq)))
            acc = ctx.get(s.awready) and ctx.get(s.wready)
            await ctx.tick()
            if acc:
                ctx.set(s.awvalid, 0)
                ctx.set(s.wvalid, 0)
                break
        for _ in range(20):
            pulses.append((ctx.get(cp.coll_resync), 0, 0))
            if ctx.get(s.bvalid):
                resp = ctx.get(s.bresp)
                await ctx.tick()
                return resp, [p for p in pulses if p[0]]
            await ctx.tick()
        raise AssertionError("no write response")

    async def read(ctx, addr):
        ctx.set(s.araddr, addr)
        ctx.set(s.arvalid, 1)
        ctx.set(s.rready, 1)
        for _ in range(20):
            acc = ctx.get(s.arready)
            await ctx.tick()
            if acc:
                ctx.set(s.arvalid, 0)
                break
        for _ in range(20):
            if ctx.get(s.rvalid):
                v = (ctx.get(s.rdata), ctx.get(s.rresp))
                await ctx.tick()
                return v
            await ctx.tick()
        raise AssertionError("no read response")

    async def tb(ctx):
        ctx.set(cp.coll_resync_ok, 1)
        seen["ok"] = await write(ctx, C.REG_TRAY_RESYNC, 0x1A5)
        ctx.set(cp.coll_resync_ok, 0)
        seen["busy"] = await write(ctx, C.REG_TRAY_RESYNC, 0x003)
        ctx.set(cp.coll_busy, 1)
        ctx.set(cp.coll_seq, 0xBEEF)
        seen["read busy"] = await read(ctx, C.REG_TRAY_RESYNC)
        ctx.set(cp.coll_busy, 0)
        ctx.set(cp.coll_seq, 7)
        seen["read idle"] = await read(ctx, C.REG_TRAY_RESYNC)
        ctx.set(cp.coll_resync_ok, 1)
        seen["other reg"] = await write(ctx, C.REG_TRAY_RANK, 2)

    sim = Simulator(cp)
    sim.add_clock(1e-8)
    sim.add_testbench(tb)
    sim.run()
    want = {"ok": (RESP_OKAY, [(1, 0xA5, 1)]), "busy": (RESP_SLVERR, [(1, 0x03, 0)]),
            "read busy": (0xBEEF0001, RESP_OKAY), "read idle": (0x70000, RESP_OKAY),
            "other reg": (RESP_OKAY, [])}
    bad = [f"{k}: expected {want[k]} got {seen.get(k)}" for k in want if seen.get(k) != want[k]]
    assert not bad, "\n".join(bad)
