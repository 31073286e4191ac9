"""The Ethernet switch of the two-tray RTL co-simulation (cosim/tray/rtl_switch.py, docs/tray.md
"Two trays in RTL"): static and learning forwarding, flooding, the counters, cut wires; and 8
RTL chips (`rtl_tray.run2`) behind it: uplink WRITEs from a cold (learning) table, and a cut
uplink that ends its queue pairs' WRITEs RETRY_EXCEEDED while the rest of the system works.

The default run is the switch model and the runner's argument checks (no simulator). The RTL
runs are slow (Verilator, the `tray2_bench_tiny_tray4` build of tests/test_tray_rtl.py,
about 5 minutes cold, cached under build/sim)."""

from __future__ import annotations

import numpy as np
import pytest

from cosim.sim import default_sims
from cosim.tray import rtl_tray
from cosim.tray.rtl_switch import COUNTERS, SwitchModel
from cosim.tray.scenario import (
    UP_DST,
    UP_SRC,
    tray_local_all_reduce,
    uplink_write_images,
    word_diff,
)
from golden import nic as GN
from golden import tray as GT
from spec import chip as C
from spec import nic as S
from spec import tray as T

CFG2 = rtl_tray.CFG2
P2 = T.chip_params(CFG2, 2)
RANKS2 = tuple(range(2 * T.CHIPS_PER_TRAY))
N_PORTS = len(RANKS2)
# collective buffers (binary32 at SRC), uplink WRITE buffers; all below RING2 (0xB8000)
SRC, DST, SCRATCH = 0x10000, 0x30000, 0x50000
# uplink WRITE buffers and UP_WRITES: cosim.tray.scenario
EXTRA_DST = 0x4000      # the cut rank's extra WRITEs land at UP_DST + EXTRA_DST + ...
needs_verilator = pytest.mark.skipif("verilator" not in default_sims(),
                                     reason="MAIA_SIM excludes verilator")
FAULTS = dict(drop=0.04, dup=0.02, reorder=0.02, corrupt=0.02)


def mac(r: int) -> int:
    return T.port_mac(r, T.UPLINK)


def frame(dst: int, src: int, payload: bytes = b"") -> bytes:
    """An Ethernet frame with a valid FCS (golden.nic.crc32), padded to the minimum size."""
    body = dst.to_bytes(6, "big") + src.to_bytes(6, "big") + b"\x88\xb5" + payload
    body += bytes(max(0, S.ETH_MIN_FRAME - 4 - len(body)))
    return body + GN.crc32(body).to_bytes(4, "little")


def static_switch(buffer=64 * 1024) -> SwitchModel:
    return SwitchModel({mac(r): r for r in RANKS2}, N_PORTS, buffer=buffer)


def counters(**nonzero) -> dict:
    out = dict.fromkeys(COUNTERS, 0)
    out.update(nonzero)
    return out


def drain(sw: SwitchModel) -> dict:
    """port -> frames popped from its FIFO, for every port with any."""
    out = {}
    for k in range(sw.n_ports):
        while (f := sw.pop(k)) is not None:
            out.setdefault(k, []).append(f)
    return out


# --- static table (the runner's default) -------------------------------------------------

def test_static_switch_forwards_by_destination_mac_in_order():
    sw = static_switch()
    frames = [frame(mac(5), mac(1), bytes([i]) * 40) for i in range(3)]
    other = frame(mac(2), mac(6), b"\x77" * 40)
    assert [sw.receive(1, f) for f in frames] == [[5], [5], [5]]
    assert sw.receive(6, other) == [2]
    assert [sw.pop(5) for _ in range(4)] == [*frames, None], "port 5: FIFO order"
    assert sw.pop(2) == other and sw.pop(2) is None
    assert all(sw.pop(k) is None for k in RANKS2)
    assert sw.empty()
    assert sw.counters == counters(rx_frames=4, tx_frames=4)
    assert sw.table_rows() == sorted((mac(r), r) for r in RANKS2)


def test_static_switch_queues_per_output_port_and_tail_drops():
    f = frame(mac(0), mac(4), b"\x01" * 200)        # 218 bytes
    sw = static_switch(buffer=3 * len(f) + 10)
    # four frames from four ingresses to one output: three fit, the fourth is dropped
    assert [sw.receive(k, f) for k in (4, 5, 6, 7)] == [[0], [0], [0], []]
    # another output has its own FIFO
    assert sw.receive(4, frame(mac(1), mac(4))) == [1]
    assert sw.counters["tail_drop"] == 1
    assert sw.max_qframes[0] == 3 and sw.max_qbytes[0] == 3 * len(f)
    assert sw.pop(0) == f
    assert sw.receive(7, f) == [0], "room again after one frame left"
    assert sw.qbytes[0] == 3 * len(f)


def test_static_switch_drops_and_counts_unknown_mac_bad_fcs_runt_hairpin_broadcast():
    sw = static_switch()
    unknown = frame(T.port_mac(3, 0), mac(0))       # a mesh port's MAC: not on the switch
    assert sw.receive(0, unknown) == []
    assert sw.receive(0, frame(S.BROADCAST_MAC, mac(0))) == [], "static: no flooding"
    bad = bytearray(frame(mac(4), mac(0), b"\x55" * 40))
    bad[20] ^= 0x10
    assert sw.receive(0, bytes(bad)) == []
    assert sw.receive(0, frame(mac(4), mac(0))[:40]) == [], "runt"
    assert sw.receive(3, frame(mac(3), mac(0))) == [], "to its own ingress"
    assert sw.empty()
    assert sw.counters == counters(rx_frames=5, fcs_err=2, unknown_dst=2, same_port=1)
    assert sw.learn_log == [] and sw.flood_log == []


def _uplink_nic_with_write(rank: int, peer: int):
    rng = np.random.default_rng(3)
    img = rng.integers(0, 256, CFG2.hbm_window, dtype=np.uint8)
    img[P2.ring_base:] = 0
    nic = rtl_tray.uplink_nic(CFG2, rank, img)
    nic.post(T.route(rank, peer, 8).qp, S.WR_WRITE, local_addr=UP_SRC, length=64,
             remote_addr=UP_DST, rkey=T.RKEY, wr_id=7)
    return nic


@pytest.mark.parametrize("learning", [False, True], ids=["static", "learning"])
def test_switch_forwards_golden_nic_frames_of_the_uplink_set_up(learning):
    """A WRITE posted on rank 1's uplink queue pair towards rank 5 (golden NIC frame, real
    FCS) goes to switch port 5 only (learning: once port 5's MAC was learned from a frame
    rank 5 sent; before that it is flooded to the 7 other ports)."""
    f = _uplink_nic_with_write(1, 5).transmit()
    assert f is not None and f[0:6] == mac(5).to_bytes(6, "big")
    if not learning:
        sw = static_switch()
    else:
        sw = SwitchModel({}, N_PORTS, learning=True)
        assert sw.receive(1, f) == [0, 2, 3, 4, 5, 6, 7], "cold table: flooded"
        drain(sw)
        back = _uplink_nic_with_write(5, 1).transmit()
        assert sw.receive(5, back) == [1], "rank 1's MAC was learned from its first frame"
        drain(sw)
    assert sw.receive(1, f) == [5]
    assert sw.pop(5) == f and sw.empty()


# --- learning and flooding ---------------------------------------------------------------

def test_learning_switch_floods_unknown_unicast_then_forwards_learned():
    sw = SwitchModel({}, N_PORTS, learning=True)
    a = frame(mac(5), mac(1), b"\xa1" * 30)
    assert sw.receive(1, a) == [0, 2, 3, 4, 5, 6, 7], "unknown: every port but the ingress"
    assert {k: v for k, v in drain(sw).items()} == {k: [a] for k in (0, 2, 3, 4, 5, 6, 7)}
    assert sw.table_rows() == [(mac(1), 1)]
    b = frame(mac(1), mac(5), b"\xb2" * 30)
    assert sw.receive(5, b) == [1], "mac(1) learned on port 1"
    assert sw.receive(1, a) == [5], "mac(5) learned on port 5: no more flooding"
    assert drain(sw) == {1: [b], 5: [a]}
    assert sw.counters == counters(rx_frames=3, tx_frames=9, flooded=1, flood_copies=7,
                                   learned=2)
    assert sw.flood_log == [(0, mac(5))]
    assert sw.learn_log == [(0, mac(1), 1), (1, mac(5), 5)]


def test_learning_switch_never_sends_back_to_the_ingress_port():
    """Flooding skips the ingress; a destination learned on the ingress port itself (two
    hosts behind one port) is filtered (``same_port``), not reflected."""
    sw = SwitchModel({}, 4, learning=True)
    x, y = 0x02AA00000001, 0x02AA00000002
    assert sw.receive(2, frame(S.BROADCAST_MAC, x)) == [0, 1, 3]
    assert sw.receive(2, frame(x, y)) == [], "x sits behind port 2 too"
    assert sw.counters["same_port"] == 1 and sw.counters["flooded"] == 1
    for k, frames in drain(sw).items():
        assert k != 2 and len(frames) == 1


def test_learning_switch_floods_group_addresses_and_does_not_learn_them():
    sw = SwitchModel({}, 4, learning=True)
    assert sw.receive(0, frame(mac(1), mac(0))) == [1, 2, 3]
    assert sw.receive(1, frame(mac(0), mac(1))) == [0]
    # broadcast and multicast destinations: always flooded, even with a full table
    assert sw.receive(1, frame(S.BROADCAST_MAC, mac(1))) == [0, 2, 3]
    assert sw.receive(3, frame(0x01005E000001, mac(3))) == [0, 1, 2]
    # a group source address is never learned
    assert sw.receive(2, frame(mac(0), 0x01005E000001)) == [0]
    assert 0x01005E000001 not in dict(sw.table_rows())
    assert sw.counters["flooded"] == 3 and sw.counters["learned"] == 3


def test_learning_switch_updates_the_table_when_a_mac_moves():
    sw = SwitchModel({}, N_PORTS, learning=True)
    sw.receive(3, frame(mac(0), mac(6)))            # mac(6) learned on port 3
    sw.receive(0, frame(mac(1), mac(0)))
    drain(sw)
    assert sw.receive(0, frame(mac(6), mac(0))) == [3]
    sw.receive(6, frame(mac(0), mac(6)))            # mac(6) now shows up on port 6
    assert sw.receive(0, frame(mac(6), mac(0))) == [6]
    assert sw.counters["moved"] == 1 and sw.counters["learned"] == 2
    assert sw.learn_log[-1] == (3, mac(6), 6)
    assert dict(sw.table_rows())[mac(6)] == 6


def test_learning_switch_ages_entries_out():
    sw = SwitchModel({}, 4, learning=True, ageing=100)
    sw.receive(1, frame(mac(0), mac(1)), now=0)
    drain(sw)
    assert sw.receive(0, frame(mac(1), mac(0)), now=60) == [1], "fresh at 60"
    sw.receive(1, frame(mac(0), mac(1)), now=60)    # refreshed at 60
    drain(sw)
    assert sw.receive(2, frame(mac(1), mac(2)), now=159) == [1], "99 after the refresh"
    assert sw.counters["aged"] == 0
    assert sw.receive(2, frame(mac(1), mac(2)), now=160) == [0, 1, 3], "aged out: flooded"
    assert sw.counters["aged"] == 1 and mac(1) not in dict(sw.table_rows())
    assert sw.receive(1, frame(mac(2), mac(1)), now=170) == [2], "learned again"
    assert sw.counters["learned"] == 4, "mac(1), mac(0), mac(2), mac(1) again"
    # at 400 mac(0)'s entry (60) expired unseen: its frame counts it aged and learned
    # again; mac(1)'s (170) expired too: aged on the lookup, the frame flooded
    assert sw.receive(0, frame(mac(1), mac(0)), now=400) == [1, 2, 3]
    assert sw.counters["aged"] == 3 and sw.counters["learned"] == 5
    assert sw.receive(1, frame(mac(0), mac(1)), now=450) == [0]
    assert sw.counters["learned"] == 6 and sw.counters["flooded"] == 3


def test_static_entries_take_precedence_over_learning():
    sw = SwitchModel({mac(5): 5}, N_PORTS, learning=True)
    assert sw.receive(1, frame(mac(5), mac(1))) == [5], "static entry: no flood"
    sw.receive(2, frame(mac(1), mac(5)))            # mac(5) seen on port 2: not learned
    assert sw.receive(1, frame(mac(5), mac(1))) == [5]
    assert sw.counters["moved"] == 0 and dict(sw.table_rows())[mac(5)] == 5


def test_flooding_tail_drops_per_output_copy():
    f = frame(mac(7), mac(0), b"\x01" * 200)        # 218 bytes
    sw = SwitchModel({}, 4, learning=True, buffer=300)
    sw.receive(1, frame(mac(2), mac(1), b"\x02" * 200))   # fills port 2's FIFO (flood)
    assert sw.qbytes[2] == len(f)
    assert sw.pop(0) is not None and sw.pop(3) is not None
    assert sw.receive(0, f) == [1, 3], "port 2 full: its copy is dropped, the others go"
    assert sw.counters["tail_drop"] == 1 and sw.counters["flood_copies"] == 5


def test_learning_switch_decides_like_the_transport_model_switch():
    """Reference: cosim.tray.net.Switch (the transport model's learning switch). 400 seeded
    frames between 10 unicast MACs, each entering on a random port (MACs move now and then):
    the set of output ports of every frame is the same in both."""
    from cosim.tray import net

    seed = 5
    print(f"seed {seed}")
    rng = np.random.default_rng(seed)
    macs = [0x02BB00000000 + i for i in range(10)]
    home = {m: int(rng.integers(0, N_PORTS)) for m in macs}

    class Tap:
        def __init__(self):
            self.got = []

        def send(self, f, t):
            self.got.append(f)

        def flush(self):
            pass

    ref = net.Switch(net.Sim(), N_PORTS, rate=1, latency=0, buffer=1 << 30)
    taps = [Tap() for _ in range(N_PORTS)]
    ref.out = list(taps)
    sw = SwitchModel({}, N_PORTS, learning=True, buffer=1 << 30)
    flooded = 0
    for i in range(400):
        src, dst = (macs[int(j)] for j in rng.choice(len(macs), 2, replace=False))
        if rng.random() < 0.05:
            home[src] = int(rng.integers(0, N_PORTS))
        f = frame(dst, src, i.to_bytes(4, "big"))
        for t in taps:
            t.got.clear()
        ref._receive(home[src], f)
        while ref.sim.step():
            pass
        want = [k for k, t in enumerate(taps) if f in t.got]
        got = sw.receive(home[src], f)
        assert got == want, (f"frame {i} {src:#014x} -> {dst:#014x} on port {home[src]}: "
                             f"transport Switch {want}, SwitchModel {got}")
        flooded += len(got) > 1
        drain(sw)
    assert sw.counters["flooded"] == ref.counters["flooded"] == flooded > 0
    assert sw.counters["moved"] > 0


# --- cut wires ---------------------------------------------------------------------------

def test_cut_wires_lose_frames_and_mending_restores_forwarding():
    sw = SwitchModel({}, 4, learning=True)
    sw.receive(1, frame(mac(0), mac(1)))
    sw.receive(0, frame(mac(1), mac(0)))
    drain(sw)
    queued = frame(mac(1), mac(2))
    assert sw.receive(2, queued) == [1]
    sw.set_cut(1, ingress=True, egress=True)        # the queued frame is lost with the wire
    assert sw.pop(1) is None and sw.counters["cut_drop"] == 1
    assert sw.receive(1, frame(mac(0), mac(1))) == [], "ingress cut: never reaches the switch"
    assert sw.receive(0, frame(mac(1), mac(0))) == [], "egress cut: lost"
    assert sw.counters["cut_drop"] == 3
    assert sw.counters["rx_frames"] == 4, "a frame lost on the ingress wire is not received"
    sw.set_cut(1, ingress=True, egress=False)       # one way: chip 1 -> switch still cut
    assert sw.receive(0, frame(mac(1), mac(0))) == [1]
    assert sw.receive(1, frame(mac(0), mac(1))) == []
    sw.set_cut(1, ingress=False, egress=False)
    assert sw.receive(1, frame(mac(0), mac(1))) == [0]
    assert sw.counters["cut_drop"] == 4
    # a cut ingress learns nothing: a new MAC behind a cut port stays unknown
    sw.set_cut(3, ingress=True, egress=False)
    sw.receive(3, frame(mac(0), mac(3)))
    assert mac(3) not in dict(sw.table_rows())
    assert sw.receive(0, frame(mac(3), mac(0))) == [1, 2, 3], "flooded, port 3 included"


# --- arguments ---------------------------------------------------------------------------

@pytest.mark.parametrize("kw, arg", [
    (dict(table={1 << 48: 0}, n_ports=2), "table"),
    (dict(table={5: 2}, n_ports=2), "table"),
    (dict(table={}, n_ports=0), "n_ports"),
    (dict(table={}, n_ports=2, buffer=10), "buffer"),
    (dict(table=[(1, 0)], n_ports=2), "table"),
    (dict(table={}, n_ports=2, learning=1), "learning"),
    (dict(table={}, n_ports=2, learning=True, ageing=0), "ageing"),
    (dict(table={}, n_ports=2, ageing=10), "ageing"),
])
def test_switch_rejects_bad_arguments(kw, arg):
    with pytest.raises(ValueError, match=f"^{arg}"):
        SwitchModel(**kw)


def test_switch_rejects_bad_ports_frames_and_cuts():
    sw = static_switch()
    with pytest.raises(ValueError, match="^port"):
        sw.receive(8, frame(mac(1), mac(2)))
    with pytest.raises(ValueError, match="^port"):
        sw.pop(-1)
    with pytest.raises(ValueError, match="^frame"):
        sw.receive(0, "not bytes")
    with pytest.raises(ValueError, match="^port"):
        sw.set_cut(True, ingress=True, egress=True)
    with pytest.raises(ValueError, match="^ingress, egress"):
        sw.set_cut(1, ingress=1, egress=True)


def _zero_images():
    return {r: np.zeros(CFG2.hbm_window, np.uint8) for r in RANKS2}


@pytest.mark.parametrize("kw, arg", [
    (dict(switch_learning=1), "switch_learning"),
    (dict(switch_ageing=100), "switch_ageing"),
    (dict(switch_learning=True, switch_ageing=0), "switch_ageing"),
    (dict(uplink_cut={8: "both"}), "uplink_cut"),
    (dict(uplink_cut={1: "up"}), "uplink_cut"),
    (dict(uplink_cut={1: ("both", 500, 100)}), "uplink_cut"),
    (dict(uplink_cut={1: ("both", -1, 100)}), "uplink_cut"),
    (dict(uplink_cut={1: ("tx", 0)}), "uplink_cut"),
])
def test_run2_rejects_bad_switch_arguments(kw, arg):
    with pytest.raises(ValueError, match=f"^{arg}"):
        rtl_tray.run2(_zero_images(), **kw)


def test_run2_uplink_cut_rows():
    """rank -> switch port; "tx" (the chip's uplink transmit wire) is the switch ingress."""
    rows = rtl_tray._up_cuts({1: "both", 2: "tx", 3: "rx", 6: ("both", 100, 3000),
                              7: ("rx", 5, -1)})
    assert rows.tolist() == [[1, 1, 1, 0, -1], [2, 1, 0, 0, -1], [3, 0, 1, 0, -1],
                             [6, 1, 1, 100, 3000], [7, 0, 1, 5, -1]]
    assert rtl_tray._up_cuts(None).shape == (0, 5)


# --- the checkers of the RTL tests, and their golden reference ---------------------------

def golden_switched(nics: dict, lost_tx=(), lost_rx=(), max_ticks: int = 400_000) -> None:
    """Reference for golden uplink NICs (rank -> NIC) behind an ideal switch: every tick
    each NIC's transmitted frame is delivered (next tick) to the NIC owning its destination
    MAC, except frames sent by a rank in ``lost_tx`` or addressed to one in ``lost_rx``."""
    by_mac = {n.mac: r for r, n in nics.items()}
    wire = []
    for _ in range(max_ticks):
        for r, f in wire:
            nics[r].receive(f)
        wire = []
        for r, n in nics.items():
            f = n.transmit()
            if f is not None and r not in lost_tx:
                d = by_mac[int.from_bytes(f[0:6], "big")]
                if d not in lost_rx:
                    wire.append((d, f))
            n.tick()
        if not wire and not any(n.busy() for n in nics.values()):
            return
    raise RuntimeError("golden NICs still busy")


def uplink_cqes(img: np.ndarray, qp: int) -> list[dict]:
    """The valid (first-pass) completion entries of uplink queue pair ``qp`` in ``img``."""
    base = T.ring_addr(P2, T.UPLINK, qp) + T.CQ_OFF
    out = []
    for i in range(1 << T.CQ_LOG2):
        a = base + i * S.CQE_BYTES
        e = S.unpack_fields(S.CQE_FIELDS, bytes(img[a:a + S.CQE_BYTES]))
        if e["valid"] != 1:
            break
        out.append(e)
    return out


def image_errors(want: dict, res: dict, ranks=RANKS2, uplink_rings=True) -> list[str]:
    """Every byte of every rank's image except the mesh NICs' rings (the engines') and the
    scratch; the message shows the first differing word in hex, expected and got. The uplink
    rings (WQEs, CQEs) are compared too, FLUSHED completions' ``psn`` field (0, docs/nic.md)
    included. ``uplink_rings=False`` leaves the
    uplink rings out as well (a collective's engine uses them: not part of its contract)."""
    up_lo = T.ring_addr(P2, T.UPLINK, 0) if uplink_rings else CFG2.hbm_window
    errs = []
    for r in ranks:
        check = np.ones(CFG2.hbm_window, bool)
        check[P2.ring_base:up_lo] = False
        check[SCRATCH:SCRATCH + 0x20000] = False
        errs += word_diff(f"rank {r}", want[r], res[r]["hbm"], ~check)
    return errs


def system_images(seed: int, count: int, extra_rank: int | None = None):
    """scenario.uplink_write_images (binary32 at SRC for the tray-local all-reduce, every
    rank's UP_WRITES on its uplink); ``extra_rank`` also posts a 64-byte WRITE on each of its
    other uplink queue pairs (so all four of its uplink queue pairs carry work). Returns
    (images, uplink NICs)."""
    imgs, nics = uplink_write_images(seed, count, SRC)
    if extra_rank is not None:
        other = 1 - T.tray_of(extra_rank)
        for chip in range(T.CHIPS_PER_TRAY):
            peer = T.rank_of(other, chip)
            if peer != (extra_rank + T.CHIPS_PER_TRAY) % N_PORTS:
                nics[extra_rank].post(T.route(extra_rank, peer, 8).qp, S.WR_WRITE,
                                      local_addr=UP_SRC + 0x2000, length=64,
                                      remote_addr=UP_DST + EXTRA_DST + 64 * extra_rank,
                                      rkey=T.RKEY, wr_id=0x400 + chip)
    return imgs, nics


def golden_collectives(want: dict, entries_of: dict) -> None:
    for r in RANKS2:
        for i, e in enumerate(entries_of[r]):
            want[r][rtl_tray.RING2 + 32 * i:rtl_tray.RING2 + 32 * i + 32] = np.frombuffer(
                e, np.uint8)
    done = set()
    for r in RANKS2:
        for e in entries_of[r]:
            if e not in done:           # one golden run per collective (its group's entry)
                done.add(e)
                st = GT.run(want, e, P2)
                assert all(v == (C.ERR_NONE, 0) for v in st.values()), st


def test_checkers_catch_a_corrupted_image_and_cqe():
    """The image comparison of the RTL tests reports a flipped payload byte and a changed
    CQE status and a FLUSHED CQE's psn (word in hex, expected and got), ignores the scratch
    only, and the golden reference ends a cut queue pair RETRY_EXCEEDED then FLUSHED."""
    imgs, nics = system_images(9, 64, extra_rank=1)
    golden_switched(nics, lost_tx={1}, lost_rx={1})
    res = {r: {"hbm": imgs[r].copy()} for r in RANKS2}
    assert image_errors(imgs, res) == []
    qp5 = T.route(1, 5, 8).qp
    cq = uplink_cqes(imgs[1], qp5)
    assert [e["status"] for e in cq] == [S.CQ_RETRY_EXCEEDED, S.CQ_FLUSHED, S.CQ_FLUSHED]
    assert [e["wr_id"] for e in cq] == [0x100, 0x100 + 4096, 0x100 + 6144]
    for qp in range(4):
        if qp != qp5:
            assert [e["status"] for e in uplink_cqes(imgs[1], qp)] == [S.CQ_RETRY_EXCEEDED]
    cq_addr = T.ring_addr(P2, T.UPLINK, qp5) + T.CQ_OFF
    res[1]["hbm"][SCRATCH + 9] ^= 0x01                        # scratch: not compared
    assert image_errors(imgs, res) == []
    res[1]["hbm"][cq_addr + S.CQE_BYTES + 12] ^= 0x33        # FLUSHED CQE's psn
    assert len(image_errors(imgs, res)) == 1, "FLUSHED psn compared"
    res[1]["hbm"][cq_addr + S.CQE_BYTES + 12] ^= 0x33        # restored
    res[1]["hbm"][cq_addr + 4] = S.CQ_OK                      # first CQE's status
    res[6]["hbm"][UP_DST + 8192 + 3] ^= 0x80                  # a payload byte
    errs = image_errors(imgs, res)
    assert len(errs) == 2, errs
    assert errs[0].startswith(f"rank 1: 1 bytes differ, first word at {cq_addr + 4:#x}")
    w = int.from_bytes(bytes(imgs[6][UP_DST + 8192:UP_DST + 8196]), "little")
    assert errs[1].endswith(f"expected {w:#010x} got {w ^ 0x80000000:#010x}"), errs[1]


# --- 8 RTL chips behind the switch (Verilator, slow) ---------------------------------------

@pytest.mark.slow
@pytest.mark.sim
@needs_verilator
def test_rtl_learning_switch_from_a_cold_table_carries_uplink_writes_exactly():
    """8 RTL chips, the switch learning from an empty table: every rank's host posts 3
    WRITEs on its uplink towards the same chip of the other tray. The first frames towards
    a MAC not yet seen are flooded (the other uplink NICs drop those copies as foreign:
    rx_foreign = 6 per flooded frame); once every uplink has sent, nothing is flooded and
    the table holds each uplink MAC on its own port. Every HBM image equals the golden NICs'
    (payloads, CQEs)."""
    seed = 91
    print(f"seed {seed}")
    imgs, nics = system_images(seed, 64)
    want, want_nics = system_images(seed, 64)
    golden_switched(want_nics)
    res = rtl_tray.run2(imgs, uplinks=nics, switch_learning=True, seed=seed,
                        timeout_cycles=2000, tag="switch_learn")
    sw, flood, learn = res["switch"], res["switch_flood"], res["switch_learn"]
    foreign = [res[r]["counters"][T.UPLINK]["rx_foreign"] for r in RANKS2]
    print("cycles", res["cycles"], "switch", sw, "flooded (rx index, dst)",
          [(i, hex(m)) for i, m in flood], "learned", [(i, hex(m), k) for i, m, k in learn],
          "rx_foreign per uplink", foreign)
    errs = image_errors(want, res)
    assert not errs, "\n".join(errs)
    assert res["switch_table"] == {mac(r): r for r in RANKS2}, res["switch_table"]
    assert sw["learned"] == N_PORTS and sw["moved"] == sw["aged"] == 0, sw
    assert sw["flooded"] > 0, "a cold table floods"
    learned_at = {m: i for i, m, _k in learn}
    for i, m in flood:
        assert i < learned_at[m], f"frame {i} to {m:#x} flooded after it was learned at " \
                                  f"{learned_at[m]}"
    assert max(i for i, _ in flood) <= max(learned_at.values()), "flooding after full table"
    assert sw["rx_frames"] > 4 * sw["flooded"], "later frames are not flooded"
    assert sw["flood_copies"] == (N_PORTS - 1) * sw["flooded"], sw
    assert sum(foreign) == (N_PORTS - 2) * sw["flooded"], foreign
    assert sw["tx_frames"] == sw["rx_frames"] - sw["flooded"] + sw["flood_copies"], sw
    assert sw["unknown_dst"] == sw["tail_drop"] == sw["same_port"] == sw["cut_drop"] == 0, sw
    retx = sum(res[r]["counters"][T.UPLINK]["retransmits"] for r in RANKS2)
    assert retx == 0, retx


CUT_RANK, BOUNCE_RANK = 1, 2
BOUNCE = (0, 3000)       # BOUNCE_RANK's switch port down (both ways) for these cycles


def _all_reduce_run_errors(want: dict, res: dict):
    """Print a two-tray run's cycles, switch counters and uplink retransmissions; return
    (the image differences against ``want`` and every rank whose queue 0, the tray-local
    all-reduce, did not end with one command done and no error; rank -> uplink counters)."""
    up = {r: res[r]["counters"][T.UPLINK] for r in RANKS2}
    print("cycles", res["cycles"], "done", [res[r]["done"] for r in RANKS2], "switch",
          res["switch"])
    print("uplink retransmits", [up[r]["retransmits"] for r in RANKS2], "timeouts",
          [up[r]["timeouts"] for r in RANKS2], "flooded to",
          sorted({hex(m) for _, m in res.get("switch_flood", ())}))
    errs = image_errors(want, res)
    for r in RANKS2:
        q = res[r]["queues"][0]
        if (q["ERROR"], q["ERR_COUNT"], q["DONE_COUNT"]) != (0, 0, 1):
            errs.append(f"rank {r} queue 0 (all-reduce): ERROR {q['ERROR']} ERR_DETAIL "
                        f"{q['ERR_DETAIL']:#x} DONE_COUNT {q['DONE_COUNT']}")
    return errs, up


@pytest.mark.slow
@pytest.mark.sim
@needs_verilator
@pytest.mark.parametrize("how", ["both", "tx", "rx"])
def test_rtl_cut_uplink_ends_its_writes_retry_exceeded_and_the_rest_completes(how):
    """8 RTL chips, learning switch. Rank 1's uplink wire is cut for the whole run (``both``
    ways, only chip -> switch ``tx``, or only switch -> chip ``rx``); rank 2's switch port
    is down both ways for the first 3,000 cycles, then up. At the same time each tray runs a
    tray-local ALL_REDUCE (2048 binary32) and every host posts 3 WRITEs on its uplink towards
    the same chip of the other tray; rank 1 also one WRITE on each of its 3 other uplink
    queue pairs. NIC timer 2,000 cycles, 4 retries.

    Rank 1's four uplink queue pairs, and rank 5's towards rank 1 (its ACKs or requests are
    lost too), end RETRY_EXCEEDED (first WQE) then FLUSHED, in bounded time; rank 2's and
    6's WRITEs complete after retransmissions; the other WRITEs and both all-reduces
    complete. Every image equals golden (collectives: golden.tray.run; WRITEs: golden NICs
    behind an ideal switch that loses the cut rank's frames the same way), completion
    entries included (FLUSHED ones' psn field: 0, docs/nic.md)."""
    seed, count = 92, 2048
    print(f"seed {seed} cut rank {CUT_RANK} {how}, rank {BOUNCE_RANK} down {BOUNCE}")
    imgs, nics = system_images(seed, count, extra_rank=CUT_RANK)
    want, want_nics = system_images(seed, count, extra_rank=CUT_RANK)
    golden_switched(want_nics, lost_tx={CUT_RANK} if how in ("both", "tx") else (),
                    lost_rx={CUT_RANK} if how in ("both", "rx") else ())
    entries_of = tray_local_all_reduce(count, SRC, DST, SCRATCH)
    golden_collectives(want, entries_of)
    timeout, retries = 2000, 4
    res = rtl_tray.run2(imgs, entries_of, uplinks=nics, switch_learning=True, seed=seed,
                        timeout_cycles=timeout, retry_limit=retries,
                        uplink_cut={CUT_RANK: how, BOUNCE_RANK: ("both", *BOUNCE)},
                        max_cycles=200_000, tag=f"switch_cut_{how}")
    sw = res["switch"]
    errs, up = _all_reduce_run_errors(want, res)
    assert not errs, "\n".join(errs)
    # the outcome itself, read from the RTL's completion rings (not only "equals golden")
    got = {r: res[r]["hbm"] for r in RANKS2}
    qp15 = T.route(CUT_RANK, CUT_RANK + 4, 8).qp
    st = [e["status"] for e in uplink_cqes(got[CUT_RANK], qp15)]
    assert st == [S.CQ_RETRY_EXCEEDED, S.CQ_FLUSHED, S.CQ_FLUSHED], st
    for qp in range(P2.nic.n_qps):
        if qp != qp15:
            st = [e["status"] for e in uplink_cqes(got[CUT_RANK], qp)]
            assert st == [S.CQ_RETRY_EXCEEDED], (qp, st)
    st = [e["status"] for e in uplink_cqes(got[CUT_RANK + 4], T.route(CUT_RANK + 4, CUT_RANK,
                                                                    8).qp)]
    assert st == [S.CQ_RETRY_EXCEEDED, S.CQ_FLUSHED, S.CQ_FLUSHED], st
    for r in RANKS2:
        if r not in (CUT_RANK, CUT_RANK + 4):
            peer = (r + T.CHIPS_PER_TRAY) % N_PORTS
            st = [e["status"] for e in uplink_cqes(got[r], T.route(r, peer, 8).qp)]
            assert st == [S.CQ_OK] * 3, (r, st)
    assert up[CUT_RANK]["timeouts"] >= retries + 1, up[CUT_RANK]
    assert up[BOUNCE_RANK]["retransmits"] > 0 and up[BOUNCE_RANK + 4]["retransmits"] > 0
    assert sw["cut_drop"] > 0, sw
    # rank 1's MAC reaches the switch only when its tx wire works: else frames to it flood
    to_cut = sum(1 for _, m in res["switch_flood"] if m == mac(CUT_RANK))
    if how == "rx":
        assert res["switch_table"].get(mac(CUT_RANK)) == CUT_RANK, res["switch_table"]
    else:
        assert mac(CUT_RANK) not in res["switch_table"] and to_cut > 0, (to_cut, sw)
    # bounded: well within a few retry exhaustions after the doorbells
    assert res["cycles"] < 3 * timeout * (retries + 1) + BOUNCE[1], res["cycles"]


DOWN = (600, 3600)       # BOUNCE_RANK's switch port down (both ways) from the middle on


@pytest.mark.slow
@pytest.mark.sim
@needs_verilator
def test_rtl_switch_port_down_in_the_middle_of_the_run_then_up_recovers():
    """8 RTL chips, static switch table. Each tray runs a tray-local ALL_REDUCE (2048
    binary32) and every host posts 3 WRITEs on its uplink to the same chip of the other
    tray; rank 2's switch port goes down both ways 600 cycles after the doorbells, while
    its WRITEs cross it (frames through the port before the cut, lost during it, and after
    it, read from the frame log), and comes back up at 3,600. NIC timer 2,000 cycles, 4
    retries: ranks 2 and 6 recover by retransmission, every uplink WRITE completes OK and
    every image, uplink CQEs included, equals golden (collectives: golden.tray.run; WRITEs:
    golden NICs behind an ideal switch, nothing lost)."""
    seed, count = 95, 2048
    print(f"seed {seed} rank {BOUNCE_RANK} down {DOWN}")
    imgs, nics = system_images(seed, count)
    want, want_nics = system_images(seed, count)
    golden_switched(want_nics)
    entries_of = tray_local_all_reduce(count, SRC, DST, SCRATCH)
    golden_collectives(want, entries_of)
    res = rtl_tray.run2(imgs, entries_of, uplinks=nics, seed=seed, timeout_cycles=2000,
                        retry_limit=4, uplink_cut={BOUNCE_RANK: ("both", *DOWN)},
                        max_cycles=200_000, tag="switch_down_mid")
    sw = res["switch"]
    errs, up = _all_reduce_run_errors(want, res)
    for r in RANKS2:
        peer = (r + T.CHIPS_PER_TRAY) % N_PORTS
        st = [e["status"] for e in uplink_cqes(res[r]["hbm"], T.route(r, peer, 8).qp)]
        if st != [S.CQ_OK] * 3:
            errs.append(f"rank {r}: uplink completions {st}, want 3 x OK")
    assert not errs, "\n".join(errs)
    # the port went down in the middle of its traffic: rank 2 sent on its uplink before
    # the cut, during it (lost) and after it (retransmissions)
    log = res["frame_log"]
    t2 = log[(log[:, 1] == 0) & (log[:, 2] == BOUNCE_RANK) & (log[:, 3] == T.UPLINK), 0]
    assert (t2 < DOWN[0]).any() and ((t2 >= DOWN[0]) & (t2 < DOWN[1])).any() \
        and (t2 >= DOWN[1]).any(), sorted(t2.tolist())
    assert sw["cut_drop"] > 0, sw
    assert up[BOUNCE_RANK]["retransmits"] > 0 and up[BOUNCE_RANK + 4]["retransmits"] > 0, up


@pytest.mark.slow
@pytest.mark.sim
@needs_verilator
def test_rtl_learning_switch_with_ageing_under_ingress_faults_is_exact():
    """The cold-table WRITEs of the learning test with 4% drop, 2% duplicate, 2% reorder, 2%
    corrupt on every switch ingress and entries ageing out after 200 cycles without a frame
    from their MAC (shorter than the NICs' pauses): entries expire and are learned again,
    so frames are flooded during the run too, not only at its start; corrupted frames are
    neither forwarded nor learned from. Every image still equals the golden NICs' (no
    faults: the NICs' retransmissions hide them)."""
    seed = 93
    print(f"seed {seed} faults {FAULTS}")
    imgs, nics = system_images(seed, 64)
    want, want_nics = system_images(seed, 64)
    golden_switched(want_nics)
    res = rtl_tray.run2(imgs, uplinks=nics, switch_learning=True, switch_ageing=200,
                        uplink_faults=FAULTS, seed=seed, timeout_cycles=2000,
                        tag="switch_ageing")
    sw = res["switch"]
    retx = sum(res[r]["counters"][T.UPLINK]["retransmits"] for r in RANKS2)
    fates = res["up_fates"].sum(axis=0).tolist()
    print("cycles", res["cycles"], "switch", sw, "retransmits", retx, "ingress fates", fates,
          "flooded at rx index", [i for i, _ in res["switch_flood"]])
    errs = image_errors(want, res)
    assert not errs, "\n".join(errs)
    drop, dup, _reo, corrupt, _ok = fates
    assert drop > 0 and dup > 0 and corrupt > 0 and retx > 0, (fates, retx)
    assert sw["fcs_err"] == corrupt, (sw, fates)
    assert sw["aged"] > 0 and N_PORTS < sw["learned"] <= N_PORTS + sw["aged"], sw
    first = {}
    for i, m, _k in res["switch_learn"]:
        first.setdefault(m, i)
    assert len(first) == N_PORTS, first
    full = max(first.values())          # receive index at which all 8 MACs had been seen
    assert any(i > full for i, _ in res["switch_flood"]), "no flooding after ageing"
    assert res["switch_table"] == {mac(r): r for r in RANKS2}, res["switch_table"]


@pytest.mark.slow
@pytest.mark.sim
@needs_verilator
def test_rtl_eight_rank_all_reduce_through_a_learning_switch_under_faults_equals_golden():
    """An ALL_REDUCE of binary32 over all 8 ranks (the engines' two-tray plan: mesh and
    uplink queue pairs) with the switch learning from an empty table and 4% drop, 2%
    duplicate, 2% reorder, 2% corrupt on every switch ingress: the first uplink frames are
    flooded, the NICs retransmit, and every rank's result equals golden.tray.run's bit for
    bit (every byte below ring_base outside the scratch), no queue error."""
    seed, count = 94, 2048
    print(f"seed {seed} faults on the switch ingresses {FAULTS}")
    imgs, _ = system_images(seed, count)
    e = T.entry_collective(T.KIND_ALL_REDUCE, T.FMT_FP32, src=SRC, dst=DST, count=count,
                           group=RANKS2, scratch=SCRATCH)
    entries_of = {r: [e] for r in RANKS2}
    want = {r: imgs[r].copy() for r in RANKS2}
    golden_collectives(want, entries_of)
    res = rtl_tray.run2(imgs, entries_of, switch_learning=True, uplink_faults=FAULTS,
                        seed=seed, timeout_cycles=2000, tag="switch_ar8")
    sw = res["switch"]
    fates = res["up_fates"].sum(axis=0).tolist()
    retx = [sum(res[r]["counters"][p]["retransmits"] for r in RANKS2) for p in range(4)]
    print("cycles", res["cycles"], "done", [res[r]["done"] for r in RANKS2], "switch", sw,
          "ingress fates", fates, "retransmits per port", retx)
    errs = image_errors(want, res, uplink_rings=False)
    for r in RANKS2:
        q = res[r]["queues"][0]
        if (q["ERROR"], q["ERR_COUNT"], q["DONE_COUNT"]) != (0, 0, 1):
            errs.append(f"rank {r} queue 0: ERROR {q['ERROR']} ERR_DETAIL {q['ERR_DETAIL']:#x} "
                        f"DONE_COUNT {q['DONE_COUNT']}")
    assert not errs, "\n".join(errs)
    drop, dup, _reo, corrupt, _ok = fates
    assert drop > 0 and dup > 0 and corrupt > 0 and retx[T.UPLINK] > 0, (fates, retx)
    assert sw["fcs_err"] == corrupt and sw["flooded"] > 0, sw
    assert res["switch_table"] == {mac(r): r for r in RANKS2}, res["switch_table"]
