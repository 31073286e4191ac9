"""Amaranth-simulator unit test of the DMA run walker against the golden transfer plan."""

from __future__ import annotations

import random

import pytest
from amaranth.sim import Simulator

from golden.dma import transfer_plan
from rtl.dma import _Walker


def _walk(base, strides, counts, elem, width=32):
    dut = _Walker(width)
    got = []

    async def tb(ctx):
        ctx.set(dut.base, base)
        ctx.set(dut.elem, elem)
        for k in range(3):
            ctx.set(dut.strides[k], strides[k])
            ctx.set(dut.counts[k], counts[k])
        ctx.set(dut.load, 1)
        await ctx.tick()
        ctx.set(dut.load, 0)
        for _ in range(10_000):
            got.append(ctx.get(dut.cur))
            if ctx.get(dut.last):
                return
            ctx.set(dut.advance, 1)
            await ctx.tick()
            ctx.set(dut.advance, 0)
        raise AssertionError("walker never reached its last run")

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(tb)
    sim.run()
    return got


@pytest.mark.parametrize("seed", range(6))
def test_walker_visits_the_golden_runs_in_order(seed):
    rng = random.Random(seed)
    e = 1 << rng.randrange(4)
    counts = (rng.randint(1, 5), rng.randint(1, 4), rng.randint(1, 3))
    ss = (e * rng.randint(1, 3), e * rng.randint(0, 40), e * rng.randint(0, 200))
    ds = (e * rng.randint(1, 3), e * rng.randint(0, 40), e * rng.randint(0, 200))
    src, dst = e * rng.randrange(1000), e * rng.randrange(1000)
    if seed % 2 == 0:  # row mode: contiguous rows, same offsets in the bus word
        ss, ds, dst = (e, ss[1], ss[2]), (e, ss[1], ss[2]), src + 8 * rng.randrange(100)
    d = {"src": src, "dst": dst, "esize_bytes": e, "counts": counts, "ss": ss, "ds": ds}
    print(f"seed {seed}: {d}")
    runs, mode = transfer_plan(d, 8)
    assert mode == ("row" if seed % 2 == 0 else "element")
    got = _walk(d["src"], ss, counts, elem=(mode == "element"))
    assert got == [s for s, _, _ in runs], f"{d} mode={mode}"
