"""MAC receive in RoCE mode (MacRx(roce=True)) in Amaranth's simulator: RoCE header and ICRC
checks against golden frames (good frames pass byte for byte; bad ICRC and non-RoCE frames
are dropped with the right strobe)."""

from amaranth.sim import Simulator

from cosim.nic import scenario
from cosim.nic.frames import Reassembler, beats
from golden import nic as G
from rtl.nic.mac import MacRx


def test_macrx_roce_checks_match_golden():
    a, b = scenario.pair()
    scenario.fill(a, 1)
    scenario.post_mix(a, 1, n_msgs=3, max_len=256)
    sa, sb, _ = G.run_pair(a, b)
    frames = list(sa[:3])
    bad = bytearray(frames[1])
    bad[60] ^= 1
    bad = G.mac_tx(bytes(bad[:-4]))          # FCS fixed, ICRC wrong
    notroce = G.mac_tx(scenario.MAC_B.to_bytes(6, "big") + bytes(100))
    inputs = [frames[0], bad, notroce, frames[2]]
    dut = MacRx(roce=True)
    events, got = [], Reassembler()

    async def tb(ctx):
        ctx.set(dut.mac_addr, scenario.MAC_B)
        ctx.set(dut.o.ready, 1)
        for f in inputs:
            for beat in beats(f):
                ctx.set(dut.i.payload, beat)
                ctx.set(dut.i.valid, 1)
                await ctx.tick()
            ctx.set(dut.i.valid, 0)
            for _ in range(3):
                await ctx.tick()
        for _ in range(200):
            await ctx.tick()

    async def mon(ctx):
        async for _, _, ok, nr, ic, v, p in ctx.tick().sample(
                dut.ok, dut.drop_not_roce, dut.drop_icrc, dut.o.valid, dut.o.payload):
            if ok or nr or ic:
                events.append((ok, nr, ic))
            if v:
                got.add(p)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(tb)
    sim.add_testbench(mon, background=True)
    sim.run()
    verdicts = []
    for f in inputs:
        try:
            G.parse_frame(f)
            verdicts.append((1, 0, 0))
        except G.FrameError as e:
            verdicts.append((1, int(str(e) == "rx_not_roce"), int(str(e) == "rx_icrc_err")))
    assert events == verdicts, f"(ok, not_roce, icrc) strobes {events} != golden {verdicts}"
    want = [f[:-4] for f, v in zip(inputs, verdicts) if v == (1, 0, 0)]
    out = got.frames
    assert out == want, [(w[:16].hex(), o[:16].hex()) for w, o in zip(want, out)]
