"""NoC contract tests that need no simulator: packet format, address map, golden model,
scoreboard (including proof that it catches corrupted, lost, duplicated and reordered
packets)."""

from __future__ import annotations

import random

import pytest

from cosim.noc.scoreboard import Scoreboard
from golden import noc as g
from spec import noc as spec


def test_head_fields_round_trip_and_do_not_overlap():
    spans = sorted(list(spec.HEAD_FIELDS.values()) + list(spec.AXI_FIELDS.values()))
    for (_, hi), (lo, _) in zip(spans, spans[1:]):
        assert hi <= lo, spans
    word = spec.make_head(dst_x=3, dst_y=2, src_x=1, src_y=15, op=spec.OP_WR_REQ, len=200,
                          axid=0xA5, size=2, burst=1, axlen=199, resp=3)
    f = spec.parse_head(word)
    assert (f["dst_x"], f["dst_y"], f["src_x"], f["src_y"]) == (3, 2, 1, 15)
    assert (f["op"], f["len"], f["axid"], f["axlen"], f["resp"]) == (spec.OP_WR_REQ, 200,
                                                                      0xA5, 199, 3)
    assert word < 1 << 64


def test_head_field_range_errors_name_the_field():
    with pytest.raises(ValueError, match="dst_x"):
        spec.make_head(dst_x=16)
    with pytest.raises(ValueError, match="unknown head field"):
        spec.make_head(color=1)


def test_traffic_payload_is_sensitive_to_every_input():
    base = spec.traffic_payload(0x12, 0x34, 77, 3, 64)
    for args in ((0x13, 0x34, 77, 3), (0x12, 0x35, 77, 3), (0x12, 0x34, 78, 3),
                 (0x12, 0x34, 77, 4)):
        assert spec.traffic_payload(*args, 64) != base, args
    assert base < 1 << 64


def test_lfsr_is_maximal_length():
    s, seen = 1, set()
    while s not in seen:
        seen.add(s)
        s = spec.lfsr_next(s)
    assert len(seen) == 65535


def test_address_map_and_regions():
    amap = spec.default_address_map(3, 2)
    assert len(amap) == 6
    r, off = spec.decode_address(amap, (4 << 20) + 0x123)
    assert (r.x, r.y, off) == (1, 1, 0x123)
    assert spec.decode_address(amap, 6 << 20) is None
    with pytest.raises(ValueError, match="size"):
        spec.Region(base=0, size=3000, x=0, y=0)
    with pytest.raises(ValueError, match="base"):
        spec.Region(base=0x800, size=0x1000, x=0, y=0)
    with pytest.raises(ValueError, match="x"):
        spec.Region(base=0, size=0x1000, x=16, y=0)


def test_patterns():
    assert spec.pattern_dest(spec.PAT_TRANSPOSE, 1, 2, 4, 4, 0) == (2, 1)
    assert spec.pattern_dest(spec.PAT_TRANSPOSE, 2, 2, 4, 4, 0) is None
    assert spec.pattern_dest(spec.PAT_BITCOMP, 0, 1, 4, 4, 0) == (3, 2)
    assert spec.pattern_dest(spec.PAT_ALL_TO_ONE, 0, 0, 4, 4, 0, target=0x21) == (1, 2)
    hits = {spec.pattern_dest(spec.PAT_UNIFORM, 0, 0, 3, 3, r) for r in range(0, 65536, 7)}
    assert hits == {(x, y) for x in range(3) for y in range(3)}
    with pytest.raises(ValueError, match="pattern"):
        spec.pattern_dest(9, 0, 0, 2, 2, 0)


def test_xy_path_goes_x_first_and_clamps():
    assert g.xy_path((0, 0), (2, 1), 3, 3) == [(0, 0), (1, 0), (2, 0), (2, 1)]
    assert g.xy_path((2, 2), (0, 0), 3, 3) == [(2, 2), (1, 2), (0, 2), (0, 1), (0, 0)]
    assert g.xy_path((0, 0), (9, 1), 3, 3)[-1] == (2, 1)
    assert g.hops((1, 1), (1, 1), 3, 3) == 0


def test_spec_xy_port_walks_the_golden_xy_path():
    kx, ky = 4, 3
    dsts = [(x, y) for x in range(kx) for y in range(ky)] + [(9, 1), (2, 7), (15, 15)]
    for sx in range(kx):
        for sy in range(ky):
            for d in dsts:
                x, y, walk = sx, sy, [(sx, sy)]
                while (p := spec.xy_port(x, y, *d, kx, ky)) != spec.PORT_L:
                    dx, dy = spec.NEIGHBOUR[p]
                    x, y = x + dx, y + dy
                    walk.append((x, y))
                    assert len(walk) <= kx + ky, (sx, sy, d)
                assert walk == g.xy_path((sx, sy), d, kx, ky), ((sx, sy), d, walk)


def test_lookahead_vc_choice_separates_next_ports():
    """spec.VC_SUB: with 2 VCs per class, a packet moving in Y gets one sub-channel when it
    continues and the other when it ejects at the next router; X-moving packets that turn
    get a different one from those that continue. Every entry lies inside the class."""
    for vpc, table in spec.VC_SUB.items():
        assert len(table) == spec.N_PORTS and all(0 <= s < vpc for s in table), vpc
    t = spec.VC_SUB[2]
    assert t[spec.PORT_S] != t[spec.PORT_L] and t[spec.PORT_N] != t[spec.PORT_L]
    assert t[spec.PORT_E] != t[spec.PORT_N] and t[spec.PORT_E] != t[spec.PORT_S]
    # the sub-channel is a function of (position, in port, destination): one VC chain per flow
    kx = ky = 4
    assert spec.vc_sub(1, 1, spec.PORT_W, 3, 2, kx, ky, 2) == t[spec.PORT_E]   # (2,1) -> E
    assert spec.vc_sub(2, 1, spec.PORT_W, 3, 2, kx, ky, 2) == t[spec.PORT_S]   # (3,1) -> S
    assert spec.vc_sub(3, 1, spec.PORT_W, 3, 2, kx, ky, 2) == t[spec.PORT_L]   # (3,2) ejects
    assert spec.vc_sub(3, 2, spec.PORT_N, 3, 2, kx, ky, 2) == spec.PORT_N % 2  # local output
    assert spec.inject_sub(0, 0, 0, 0, kx, ky, 2) == t[spec.PORT_L]


def test_zero_load_latency_formula():
    # documented: T0 = 2 * hops + 4 + (L - 1)
    for h in range(6):
        for L in (1, 4, 9):
            assert g.zero_load_latency(h, L) == 2 * h + 4 + L - 1
    with pytest.raises(ValueError):
        g.zero_load_latency(-1, 1)
    # uniform average on 2x2: hops over all 16 pairs average 1
    assert g.mean_traffic_latency(spec.PAT_UNIFORM, 2, 2, 1) == 1 + 2 * 1 + 4
    assert g.uniform_capacity(8, 8) == 0.5 and g.uniform_capacity(4, 4) == 1.0


def _flow_packets(seed, kx=3, ky=3, n=60):
    rng = random.Random(seed)
    pk = []
    seqs = {}
    for _ in range(n):
        s = (rng.randrange(kx), rng.randrange(ky))
        d = (rng.randrange(kx), rng.randrange(ky))
        c = rng.randrange(2)
        q = seqs.get((s, d, c), 0)
        seqs[s, d, c] = q + 1
        pk.append(g.traffic_packet(s, d, c, q, rng.randrange(1, 6)))
    return pk


def _feed(sb, packets, kx=3):
    for p in packets:
        for k, d in p.flits:
            sb.on_inject(p.src[1] * kx + p.src[0], p.cls, k, d)
    for p in packets:
        dx, dy = g.clamp_dest(*p.dst, 3, 3)
        for k, d in p.flits:
            sb.on_eject(dy * kx + dx, p.cls, k, d)


def test_scoreboard_accepts_a_correct_delivery():
    seed = random.randrange(1 << 30)
    print("seed", seed)
    sb = Scoreboard(3, 3)
    _feed(sb, _flow_packets(seed))
    assert sb.finish() == [] and sb.delivered == 60


@pytest.mark.parametrize("fault", ["flip", "drop", "duplicate", "reorder"])
def test_scoreboard_catches_faults(fault):
    pk = _flow_packets(5)
    # two packets of one flow, for the reorder case
    a = g.traffic_packet((0, 0), (2, 2), 0, 0, 3)
    b = g.traffic_packet((0, 0), (2, 2), 0, 1, 3)
    sb = Scoreboard(3, 3)
    for p in [*pk, a, b]:
        for k, d in p.flits:
            sb.on_inject(p.src[1] * 3 + p.src[0], p.cls, k, d)
    out = [*pk, a, b]
    if fault == "flip":
        p = out[3]
        fl = list(p.flits)
        fl[-1] = (fl[-1][0], fl[-1][1] ^ 1 << 17)
        out[3] = g.Packet(p.src, p.cls, tuple(fl))
    elif fault == "drop":
        del out[7]
    elif fault == "duplicate":
        out.append(out[2])
    else:
        out[-2], out[-1] = out[-1], out[-2]
    for p in out:
        dx, dy = g.clamp_dest(*p.dst, 3, 3)
        for k, d in p.flits:
            sb.on_eject(dy * 3 + dx, p.cls, k, d)
    errs = sb.finish()
    assert errs, f"scoreboard missed a {fault}"
    print(errs[0])


def test_scoreboard_checks_the_generator_contract():
    p = g.traffic_packet((1, 0), (0, 1), 1, 5, 3)
    sb = Scoreboard(2, 2)
    for i, (k, d) in enumerate(p.flits):
        sb.on_inject(1, 1, k, d ^ (1 if i == 2 else 0))
    assert sb.errors and "contract" in sb.errors[0]


def test_memory_system_model():
    ms = g.MemorySystem(2, 2, regions=[*spec.default_address_map(2, 2),
                                       spec.Region(base=0x800000, size=0x1000, x=5, y=0)])
    assert ms.write((3 << 20) + 8, b"\x01\x02\x03") == g.RESP_OKAY
    assert ms.read((3 << 20) + 7, 5) == (b"\x00\x01\x02\x03\x00", g.RESP_OKAY)
    assert ms.read(0x800010, 4) == (bytes(4), g.RESP_DECERR)     # node outside the mesh
    assert ms.write(0x4000000, b"x") == g.RESP_DECERR             # unmapped
    with pytest.raises(ValueError, match="leaves region"):
        ms.read((1 << 20) - 2, 4)


def test_ni_packet_encoding_examples():
    p = g.write_request((0, 0), (1, 1), 0x40, axid=3, wdata=[0xDEADBEEF, 1], wstrb=[0xF, 0x1],
                        size=2)
    assert [k for k, _ in p.flits] == [spec.KIND_HEAD, 0, 0, spec.KIND_TAIL]
    h = p.head
    assert (h["op"], h["len"], h["axid"], h["axlen"], h["size"]) == (spec.OP_WR_REQ, 3, 3, 1, 2)
    assert p.flits[2][1] == 0xDEADBEEF | 0xF << 32
    assert g.check_framing(p.flits) is None
    r = g.read_response((1, 1), (0, 0), 3, [5, 6], [0, 0], 2)
    assert g.check_framing(r.flits) is None and r.cls == spec.CLASS_RSP
