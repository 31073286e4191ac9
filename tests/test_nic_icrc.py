"""The ICRC appender (first transport building block: rtl.nic.mac.CrcAppender configured for
the RoCE ICRC) in Amaranth's simulator, against golden frames byte for byte."""

from __future__ import annotations

from amaranth.sim import Simulator

from cosim.nic import scenario
from cosim.nic.frames import Reassembler, beats
from golden import nic as G
from rtl.nic.crc import crc_register_after
from rtl.nic.mac import CrcAppender
from spec import nic as S


def _icrc_appender():
    return CrcAppender(start=S.ICRC_START, force_ff=S.ICRC_MASK_OFFSETS,
                       init=crc_register_after(b"\xff" * 8))


def _run(dut, frames):
    got = Reassembler()

    async def source(ctx):
        for f in frames:
            for beat in beats(f):
                ctx.set(dut.i.payload, beat)
                ctx.set(dut.i.valid, 1)
                await ctx.tick().until(dut.i.ready)
            ctx.set(dut.i.valid, 0)

    async def sink(ctx):
        ctx.set(dut.o.ready, 1)
        while len(got.frames) < len(frames):
            _, _, valid, p = await ctx.tick().sample(dut.o.valid, dut.o.payload)
            if valid:
                got.add(p)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(source)
    sim.add_testbench(sink, background=True)
    sim.run()
    return got.frames


def test_icrc_appender_matches_golden():
    a, b = scenario.pair()
    scenario.fill(a, 31)
    scenario.fill(b, 32)
    scenario.post_mix(a, 31, n_msgs=3, max_len=64)
    sa, sb, _ = G.run_pair(a, b)
    golden = sa[:4] + sb[:2]
    want = [f[:-S.ETH_FCS] for f in golden]              # packet + ICRC, no FCS
    got = _run(_icrc_appender(), [w[:-S.ICRC_LEN] for w in want])
    for i, (w, g) in enumerate(zip(want, got)):
        assert g == w, (f"frame {i} ({S.OPCODE_NAMES[w[42]]}): expected ICRC {w[-4:].hex()}, "
                        f"got {g[-4:].hex()}; head {w[:64].hex()}")
    assert len(got) == len(want)


def test_icrc_check_fails_without_the_pseudo_header_prefix():
    """Proves the comparison can fail: an appender that omits the 8 x 0xFF prefix."""
    f = G.build_frame(opcode=S.OP_ACK, src_mac=1, dst_mac=2, src_ip=3, dst_ip=4, src_qpn=0,
                      dst_qpn=S.QPN_BASE, psn=9, aeth=(S.AETH_ACK, 1))
    want = f[:-S.ETH_FCS]
    wrong = CrcAppender(start=S.ICRC_START, force_ff=S.ICRC_MASK_OFFSETS)
    got = _run(wrong, [want[:-S.ICRC_LEN]])[0]
    assert got[:-4] == want[:-4] and got[-4:] != want[-4:]
