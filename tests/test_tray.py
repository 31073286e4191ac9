"""Tray contract (spec/tray.py) and golden collectives (golden/tray.py) against references
written here: numpy float32 sums in ascending rank order, concatenations and copies."""

from __future__ import annotations

import numpy as np
import pytest

from cosim.tray import scenario as SC
from golden import tray as GT
from spec import chip as C
from spec import nic as N
from spec import tray as T

CANON_NAN = 0x7FC00000


def ref_sum(xs) -> np.ndarray:
    """((x0 + x1) + x2) + ... in numpy float32, NaN results as the canonical quiet NaN."""
    acc = np.asarray(xs[0], np.uint32).view(np.float32).copy()
    with np.errstate(all="ignore"):
        for x in xs[1:]:
            acc = (acc + np.asarray(x, np.uint32).view(np.float32)).astype(np.float32)
    bits = acc.view(np.uint32).copy()
    bits[np.isnan(acc)] = CANON_NAN
    return bits


def assert_bits_equal(what: str, exp, got, inputs=None) -> None:
    """Integer comparison; the message shows the first mismatches with every rank's input."""
    exp, got = np.asarray(exp), np.asarray(got)
    assert exp.shape == got.shape, f"{what}: shape {got.shape} != expected {exp.shape}"
    bad = np.flatnonzero(exp != got)
    if bad.size:
        lines = []
        for i in bad[:4]:
            ins = (" inputs " + " ".join(f"{int(np.asarray(x)[i]):#010x}" for x in inputs)
                   if inputs is not None and i < len(inputs[0]) else "")
            lines.append(f"  [{i}] expected {int(exp[i]):#x} got {int(got[i]):#x}{ins}")
        raise AssertionError(f"{what}: {bad.size} of {exp.size} elements differ\n"
                             + "\n".join(lines))


def test_checker_catches_a_corrupted_result():
    xs = [np.array([0x3F800000, 0x40000000], np.uint32)] * 3
    good = GT.all_reduce(xs)[0]
    bad = good.copy()
    bad[1] ^= 1
    with pytest.raises(AssertionError, match=r"\[1\] expected 0x40c00000 got 0x40c00001 "
                                             r"inputs 0x40000000 0x40000000 0x40000000"):
        assert_bits_equal("all_reduce", ref_sum(xs), bad, xs)


@pytest.mark.parametrize("n", [2, 4, 8])
def test_array_collectives_match_reference(n):
    seed = 100 + n
    print(f"seed {seed}")
    rng = np.random.default_rng(seed)
    xs = [SC.fp32_values(rng, 8 * n) for _ in range(n)]
    s = ref_sum(xs)
    for k, got in enumerate(GT.all_reduce(xs)):
        assert_bits_equal(f"all_reduce rank {k}", s, got, xs)
    c = len(s) // n
    for k, got in enumerate(GT.reduce_scatter(xs)):
        assert_bits_equal(f"reduce_scatter rank {k}", s[k * c:(k + 1) * c], got,
                          [x[k * c:(k + 1) * c] for x in xs])
    codes = [rng.integers(0, 256, 16, dtype=np.uint8) for _ in range(n)]
    for got in GT.all_gather(codes):
        assert_bits_equal("all_gather", np.concatenate(codes), got)
    for root in (0, n - 1):
        for got in GT.broadcast(xs, root):
            assert_bits_equal("broadcast", xs[root], got)


def test_sum_order_is_fixed_by_rank():
    # (1e8 + -1e8) + 1 = 1 but 1e8 + (-1e8 + 1) = 0 in binary32: the order is observable
    a, b, c = (np.array([v], np.float32).view(np.uint32) for v in (1e8, -1e8, 1.0))
    got = GT.all_reduce([a, b, c])[0]
    assert int(got[0]) == 0x3F800000
    assert int(ref_sum([c, b, a])[0]) != int(got[0]), "the check must detect another order"


def test_specials_nan_inf_subnormal():
    inf, ninf, nan, sub = 0x7F800000, 0xFF800000, 0x7FA00001, 0x00000001
    xs = [np.array([inf, inf, nan, sub, 0x80000000], np.uint32),
          np.array([ninf, 0x3F800000, 0x3F800000, sub, 0x80000000], np.uint32)]
    got = GT.all_reduce(xs)[0]
    assert got.tolist() == [CANON_NAN, inf, CANON_NAN, 0x00000002, 0x80000000]


def test_bad_arguments_raise_valueerror_naming_them():
    with pytest.raises(ValueError, match="xs"):
        GT.all_reduce([np.zeros(4, np.uint32)])
    with pytest.raises(ValueError, match="xs"):
        GT.all_reduce([np.zeros(4, np.uint32), np.zeros(4, np.float32)])
    with pytest.raises(ValueError, match="parts"):
        GT.reduce_fixed([np.zeros(4, np.uint32), np.zeros(3, np.uint32)])
    with pytest.raises(ValueError, match="xs"):
        GT.reduce_scatter([np.zeros(5, np.uint32)] * 2)
    with pytest.raises(ValueError, match="root"):
        GT.broadcast([np.zeros(4, np.uint8)] * 2, 2)
    with pytest.raises(ValueError, match="kind"):
        T.entry_collective(16, 0, src=0, dst=0, count=8, group=(0, 1))
    with pytest.raises(ValueError, match="group"):
        T.entry_collective(0, 0, src=0, dst=0, count=8, group=(0, 9))
    with pytest.raises(ValueError, match="src"):
        T.entry_collective(0, 0, src=-1, dst=0, count=8, group=(0, 1))
    with pytest.raises(ValueError, match="trays"):
        T.TrayParams(trays=3)
    with pytest.raises(ValueError, match="peer"):
        T.route(0, 0, 4)
    with pytest.raises(ValueError, match="entry"):
        GT.run({}, b"\x00" * 8)
    with pytest.raises(ValueError, match="mems"):
        GT.run({0: np.zeros(8, np.uint8)}, SC.entry(0, 0, (0, 1), 64))
    with pytest.raises(ValueError, match="entry_or_desc"):
        GT.estimate(SC.entry(0, 1, (0, 1), 64))           # MX all-reduce fails check()
    with pytest.raises(ValueError, match="kind"):
        T.bus_factor(7, 4)


def test_topology_full_mesh_and_uplinks():
    for r in range(8):
        ports = set()
        for s in range(8):
            if s == r:
                continue
            rt = T.route(r, s, 8)
            back = T.route(s, r, 8)
            assert (back.port, back.qp, back.peer_port, back.peer_qp) == \
                (rt.peer_port, rt.peer_qp, rt.port, rt.qp)
            if r // 4 == s // 4:
                assert not rt.via_switch and rt.port < 3
                ports.add(rt.port)
            else:
                assert rt.via_switch and rt.port == T.UPLINK and rt.qp == s % 4
        assert ports == {0, 1, 2}, "3 direct links to the 3 other chips of the tray"
    macs = {T.port_mac(r, p) for r in range(8) for p in range(4)}
    assert len(macs) == 32


def test_entry_roundtrip_and_field_layout():
    raw = T.entry_collective(T.KIND_BROADCAST, T.FMT_MX_E2M1, src=0x100, dst=0x200,
                             count=4096, group=(0, 2, 5), root=5, src_scales=0x300,
                             dst_scales=0x400, irq=True)
    w = np.frombuffer(raw, "<u4")
    assert int(w[0]) == T.OP_COLLECTIVE | 1 << 20
    assert int(w[1]) == T.KIND_BROADCAST | T.FMT_MX_E2M1 << 4 | 5 << 8 | 0b100101 << 16
    assert w[2:].tolist() == [0x100, 0x200, 4096, 0x300, 0x400, 0]
    d, _ = T.decode(raw)
    assert (d.kind, d.fmt, d.group, d.root, d.irq) == (3, 3, (0, 2, 5), 5, True)
    assert C.OPCODE_NAMES[T.OP_COLLECTIVE] == "COLLECTIVE", "listed once, by spec.chip"
    assert list(C.OPCODES.values()).count(T.OP_COLLECTIVE) == 1


def _raw(words):
    return C.entry_raw(words)


@pytest.mark.parametrize("case,code", [
    ("bad opcode", C.ERR_BAD_OPCODE),
    ("w0 reserved", C.ERR_BAD_ENTRY),
    ("w1 reserved", C.ERR_BAD_ENTRY),
    ("bad kind", C.ERR_BAD_ENTRY),
    ("bad format", C.ERR_BAD_ENTRY),
    ("MX all-reduce", C.ERR_BAD_ENTRY),
    ("scales on binary32", C.ERR_BAD_ENTRY),
    ("scratch on all-gather", C.ERR_BAD_ENTRY),
    ("root on all-reduce", C.ERR_BAD_ENTRY),
    ("count not a multiple", C.ERR_BAD_ENTRY),
    ("count 0", C.ERR_BAD_ENTRY),
    ("cluster set", C.ERR_BAD_UNIT),
    ("empty group", C.ERR_BAD_UNIT),
    ("rank not in group", C.ERR_BAD_UNIT),
    ("rank beyond the tray", C.ERR_BAD_UNIT),
    ("root not in group", C.ERR_BAD_UNIT),
    ("misaligned src", C.ERR_BAD_ADDRESS),
    ("dst over the NIC rings", C.ERR_BAD_ADDRESS),
    ("overlapping buffers", C.ERR_BAD_ADDRESS),
    ("good", C.ERR_NONE),
])
def test_static_checks(case, code):
    p = T.TrayParams()
    good = SC.entry(T.KIND_ALL_REDUCE, T.FMT_FP32, (0, 1, 2, 3), 1024)
    w = list(np.frombuffer(good, "<u4").astype(int))
    w1 = w[1]
    mod = {
        "bad opcode": lambda: w.__setitem__(0, 6),
        "w0 reserved": lambda: w.__setitem__(0, w[0] | 1 << 25),
        "w1 reserved": lambda: w.__setitem__(1, w1 | 1 << 12),
        "bad kind": lambda: w.__setitem__(1, (w1 & ~0xF) | 4),
        "bad format": lambda: w.__setitem__(1, w1 | 4 << 4),
        "MX all-reduce": lambda: w.__setitem__(1, w1 | 1 << 4),
        "scales on binary32": lambda: w.__setitem__(5, 0x600000),
        "scratch on all-gather": lambda: w.__setitem__(1, (w1 & ~0xF) | T.KIND_ALL_GATHER),
        "root on all-reduce": lambda: w.__setitem__(1, w1 | 1 << 8),
        "count not a multiple": lambda: w.__setitem__(4, 1026),
        "count 0": lambda: w.__setitem__(4, 0),
        "cluster set": lambda: w.__setitem__(0, w[0] | 1 << 8),
        "empty group": lambda: w.__setitem__(1, w1 & ~0xFF0000),
        "rank not in group": lambda: w.__setitem__(1, (w1 & ~0xFF0000) | 0b1110 << 16),
        "rank beyond the tray": lambda: w.__setitem__(1, w1 | 1 << 20),
        "misaligned src": lambda: w.__setitem__(2, 8),
        "dst over the NIC rings": lambda: w.__setitem__(3, p.ring_base - 64),
        "overlapping buffers": lambda: w.__setitem__(7, SC.DST + 32),
        "good": lambda: None,
    }
    if case == "root not in group":
        w[1] = (w1 & ~0xF & ~(7 << 8) & ~0xFF0000) | T.KIND_BROADCAST | 5 << 8 | 0b1111 << 16
        w[7] = 0
    else:
        mod[case]()
    raw = _raw([int(x) for x in w])
    assert T.check(raw, 0, p) == code, case
    if case in ("rank not in group", "empty group"):
        return                      # golden runs the group's members only
    # golden: the same code on every member and nothing written
    mems = {r: np.full(p.mem_bytes, 0xA5, np.uint8) for r in range(p.n_ranks)}
    for r in range(p.n_ranks):
        mems[r][SC.SRC:SC.SRC + 4096] = r
    before = {r: m.copy() for r, m in mems.items()}
    st = GT.run(mems, raw, p)
    if code != C.ERR_NONE:
        assert st and all(v == (code, 0) for v in st.values()), st
        assert all(np.array_equal(before[r], mems[r]) for r in mems), "nothing is written"


def _mem_reference(d: T.Collective, ins: dict) -> dict:
    """rank -> {address: expected bytes} from the inputs, written independently of golden."""
    g = d.group
    out = {}
    if d.kind in (T.KIND_ALL_REDUCE, T.KIND_REDUCE_SCATTER):
        s = ref_sum([ins[r]["src"] for r in g])
        c = d.chunk
        for k, r in enumerate(g):
            res = s if d.kind == T.KIND_ALL_REDUCE else s[k * c:(k + 1) * c]
            out[r] = {d.dst: res.astype("<u4").view(np.uint8)}
    elif d.kind == T.KIND_ALL_GATHER:
        for r in g:
            if d.mx:
                out[r] = {d.dst: np.concatenate([ins[s]["codes"] for s in g]),
                          d.dst_scales: np.concatenate([ins[s]["scales"] for s in g])}
            else:
                out[r] = {d.dst: np.concatenate([ins[s]["src"] for s in g]).view(np.uint8)}
    else:
        for r in g:
            if d.mx:
                out[r] = {d.dst: ins[d.root]["codes"], d.dst_scales: ins[d.root]["scales"]}
            else:
                out[r] = {d.dst: ins[d.root]["src"].view(np.uint8)}
    return out


CASES = [(k, f) for k in (T.KIND_ALL_REDUCE, T.KIND_REDUCE_SCATTER)
         for f in (T.FMT_FP32,)] + [(k, f) for k in (T.KIND_ALL_GATHER, T.KIND_BROADCAST)
                                    for f in (T.FMT_FP32, T.FMT_MX_E4M3, T.FMT_MX_E2M1)]


@pytest.mark.parametrize("n", [2, 4, 8])
@pytest.mark.parametrize("kind,fmt", CASES)
def test_golden_memory_collectives_match_reference(n, kind, fmt):
    seed = 1000 * n + 10 * kind + fmt
    print(f"seed {seed}")
    p = SC.params_for(n)
    g = SC.group_for(n)
    count = T.count_multiple(fmt, n) * 2
    raw = SC.entry(kind, fmt, g, count, root=n - 1)
    mems = {r: np.zeros(p.mem_bytes, np.uint8) for r in range(p.n_ranks)}
    ins = SC.fill(mems, raw, seed)
    st = GT.run(mems, raw, p)
    assert st == {r: (C.ERR_NONE, 0) for r in g}
    d, _ = T.decode(raw)
    for r, regions in _mem_reference(d, ins).items():
        for addr, exp in regions.items():
            assert_bits_equal(f"rank {r} @{addr:#x} {T.KIND_NAMES[kind]} {T.FORMAT_NAMES[fmt]}",
                              exp, mems[r][addr:addr + len(exp)])


def test_bus_factor_is_nccls():
    assert T.bus_factor(T.KIND_ALL_REDUCE, 4) == 1.5
    assert T.bus_factor(T.KIND_ALL_REDUCE, 8) == 1.75
    assert T.bus_factor(T.KIND_REDUCE_SCATTER, 4) == 0.75
    assert T.bus_factor(T.KIND_ALL_GATHER, 2) == 0.5
    assert T.bus_factor(T.KIND_BROADCAST, 8) == 1.0


def test_estimate_framing_arithmetic():
    # one 1024-byte WRITE at MTU 1024: one WRITE_ONLY frame (54+16+1024+4+4) + 20 on the wire
    req, ack = T.wire_bytes_message(1024, 1024)
    assert req == 54 + 16 + 1024 + 8 + 20
    assert ack == N.ETH_MIN_FRAME + 2 + 20        # ACK: 54 + AETH 4 + ICRC 4 + FCS 4 = 66
    p = T.TrayParams()
    assert GT.link_limit(p) == pytest.approx(8 * N.goodput_limit(p.wqe_max, p.nic.mtu))
    e = GT.estimate(SC.entry(T.KIND_ALL_REDUCE, T.FMT_FP32, (0, 1), 1 << 16), p)
    # two chips, one link: the ideal busbw is the link limit itself
    assert e["ideal_busbw"] == pytest.approx(GT.link_limit(p))
    assert 0.5 < e["efficiency"] < 1.0


def test_algorithm_selection_and_bounds():
    p = T.TrayParams(trays=2)
    for n, kind, algo, bound in ((4, T.KIND_ALL_REDUCE, T.ALGO_DIRECT, 3.0),
                                 (2, T.KIND_ALL_REDUCE, T.ALGO_DIRECT, 1.0),
                                 (8, T.KIND_ALL_REDUCE, T.ALGO_TWO_TIER, None),
                                 (8, T.KIND_BROADCAST, T.ALGO_DIRECT, None)):
        raw = SC.entry(kind, T.FMT_FP32, SC.group_for(n), 1 << 14, root=0)
        d, _ = T.decode(raw)
        assert T.algorithm(d) == algo
        if bound is not None:
            e = GT.estimate(raw, p)
            assert e["ideal_busbw"] == pytest.approx(bound * e["link_limit"])
    # a group spanning both trays but not all 8 ranks uses the direct algorithm
    d, _ = T.decode(SC.entry(T.KIND_ALL_REDUCE, T.FMT_FP32, (0, 1, 4, 5), 1 << 10))
    assert T.algorithm(d) == T.ALGO_DIRECT
    assert T.pipeline_pieces(1 << 16) == 4 and T.pipeline_pieces(4096) == 1
