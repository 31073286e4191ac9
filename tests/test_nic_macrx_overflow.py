"""MAC receive buffer overflow in Amaranth's simulator (docs/nic.md "MAC"): frames that
arrive while the store-and-forward buffer is full are dropped whole (``drop_overflow``), and
the frames already stored leave intact, also when the buffer's write pointer wraps.

Regression of the tray_perf 1 MiB all-reduce bug (docs/tray.md "Figures"): the occupancy
``wr_cur - rd_ptr`` was a signed difference, so once the write pointer had wrapped past the
read pointer's counter value it read as negative, the buffer never looked full, and new
frames overwrote a stored frame that the NIC had not read yet (its payload went to HBM with
another frame's bytes in it, no error anywhere)."""

from __future__ import annotations

import numpy as np
import pytest
from amaranth.sim import Simulator

from cosim.nic.frames import Reassembler, beats
from golden import nic as G
from rtl.nic.mac import MacRx

MAC = 0x02_00_00_00_00_02
DEPTH = 512                 # buffer words (8 bytes each): the smallest power of two allowed
WORDS = 64                  # words per frame (512 bytes with the FCS)
BEFORE = 15                 # frames read out at once first: the write pointer ends at 960
STALLED = 12                # frames sent while the reader is stalled: 8 fit, 4 overflow


def _frames(seed: int, n: int) -> list[bytes]:
    rng = np.random.default_rng(seed)
    head = MAC.to_bytes(6, "big") + (0x02_00_00_00_00_01).to_bytes(6, "big") + b"\x88\xb5"
    return [G.mac_tx(head + rng.integers(0, 256, 8 * WORDS - 4 - len(head), np.uint8).tobytes())
            for _ in range(n)]


def _run(frames: list[bytes], stall_from: int, depth: int = DEPTH):
    """Send ``frames``; the reader takes frames at once up to ``stall_from``, then stalls
    until every frame is in, then drains. Returns (frames out, overflow strobes)."""
    dut = MacRx(max_frame=8 * WORDS + 64, depth=depth)
    got, drops = Reassembler(), []

    async def tb(ctx):
        ctx.set(dut.mac_addr, MAC)
        ctx.set(dut.o.ready, 1)
        for n, f in enumerate(frames):
            if n == stall_from:
                while len(got.frames) < stall_from:        # everything before is read out
                    await ctx.tick()
                ctx.set(dut.o.ready, 0)
            for beat in beats(f):
                ctx.set(dut.i.payload, beat)
                ctx.set(dut.i.valid, 1)
                await ctx.tick()
            ctx.set(dut.i.valid, 0)
            for _ in range(3):
                await ctx.tick()
        ctx.set(dut.o.ready, 1)
        for _ in range(len(frames) * (WORDS + 4) + 100):
            await ctx.tick()

    async def mon(ctx):
        async for _, _, ov, v, r, p in ctx.tick().sample(dut.drop_overflow, dut.o.valid,
                                                         dut.o.ready, dut.o.payload):
            if ov:
                drops.append(len(drops))
            if v and r:
                got.add(p)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(tb)
    sim.add_testbench(mon, background=True)
    sim.run()
    return got.frames, len(drops)


def _check(out, drops, want, want_drops, seed):
    assert drops == want_drops, (f"seed {seed}: {drops} overflow drops, expected {want_drops}")
    assert len(out) == len(want), f"seed {seed}: {len(out)} frames out, expected {len(want)}"
    for k, (o, w) in enumerate(zip(out, want)):
        if o != w:
            bad = next(i for i in range(min(len(o), len(w))) if o[i] != w[i]) \
                if len(o) == len(w) else min(len(o), len(w))
            raise AssertionError(
                f"seed {seed}: frame {k} out differs from frame in at byte {bad}: got "
                f"{o[bad:bad + 16].hex()}, expected {w[bad:bad + 16].hex()} (lengths {len(o)}, "
                f"{len(w)})")


@pytest.mark.parametrize("seed", [1])
def test_macrx_overflow_across_pointer_wrap_drops_whole_frames(seed):
    """The write pointer (960 words after 15 frames) wraps past 2 x depth while the reader
    is stalled: the first 8 stalled frames fill the 512 words exactly and come out intact,
    the next 4 are dropped as overflow."""
    print(f"seed {seed}")
    frames = _frames(seed, BEFORE + STALLED)
    out, drops = _run(frames, BEFORE)
    fit = DEPTH // WORDS
    want = [f[:-4] for f in frames[:BEFORE + fit]]
    _check(out, drops, want, STALLED - fit, seed)


def test_macrx_overflow_check_catches_a_corrupted_frame():
    """The checker fails on a frame with one byte changed (it can fail)."""
    frames = _frames(3, 3)
    out, drops = _run(frames, 3)
    want = [f[:-4] for f in frames]
    _check(out, drops, want, 0, 3)
    bad = list(want)
    bad[1] = bad[1][:100] + bytes([bad[1][100] ^ 1]) + bad[1][101:]
    with pytest.raises(AssertionError, match="frame 1 out differs from frame in at byte 100"):
        _check(out, drops, bad, 0, 3)
