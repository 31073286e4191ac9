"""Amaranth-simulator unit tests of the NIC-port glue (rtl/chip/nic_port.py): the 64 -> 256
bit AXI4 upsizer against a byte-array memory (every lane alignment, 1..128-beat bursts),
the upsizer + merge keeping several reads / write responses in flight against pipelined
memories, the upsizer never holding the wide R channel and sending its W beats back to back,
and the AXI4-Lite host decoder. The chip-level co-simulations are in
tests/test_chip_nic.py."""

from __future__ import annotations

import numpy as np
import pytest
from amaranth.sim import Simulator

from rtl.chip.nic_port import AxiUpsizer

MEM = 8192


async def _wide_memory(ctx, port, mem: bytearray, log: list, latency: int = 2):
    """AXI4 subordinate (256-bit) on ``port`` over ``mem``: one burst at a time, reads with
    ``latency`` idle cycles, writes honouring strobes. Logs (kind, addr, len)."""
    while True:
        await ctx.tick()
        if ctx.get(port.arvalid):
            addr, n = ctx.get(port.araddr), ctx.get(port.arlen) + 1
            log.append(("r", addr, n))
            ctx.set(port.arready, 1)
            await ctx.tick()
            ctx.set(port.arready, 0)
            for _ in range(latency):
                await ctx.tick()
            for k in range(n):
                a = addr + 32 * k
                ctx.set(port.rdata, int.from_bytes(mem[a:a + 32], "little"))
                ctx.set(port.rlast, k == n - 1)
                ctx.set(port.rvalid, 1)
                await ctx.tick().until(port.rready)
            ctx.set(port.rvalid, 0)
            ctx.set(port.rlast, 0)
        elif ctx.get(port.awvalid):
            addr, n = ctx.get(port.awaddr), ctx.get(port.awlen) + 1
            log.append(("w", addr, n))
            ctx.set(port.awready, 1)
            await ctx.tick()
            ctx.set(port.awready, 0)
            ctx.set(port.wready, 1)
            for k in range(n):
                data, strb, last = await ctx.tick().sample(
                    port.wdata, port.wstrb, port.wlast).until(port.wvalid)
                assert last == (k == n - 1), f"wlast {last} on beat {k} of {n}"
                a = addr + 32 * k
                for b in range(32):
                    if strb >> b & 1:
                        mem[a + b] = (data >> (8 * b)) & 0xFF
            ctx.set(port.wready, 0)
            ctx.set(port.bvalid, 1)
            await ctx.tick().until(port.bready)
            ctx.set(port.bvalid, 0)


CASES = [(0, 1), (8, 1), (24, 2), (16, 4), (8, 7), (24, 128), (0, 128), (4056, 5)]


@pytest.mark.parametrize("max_burst", [128, 8])
def test_upsizer_reads_and_writes_every_lane_alignment(max_burst):
    """max_burst=8: the bursts longer than the buffers take the narrow-rate path."""
    rng = np.random.default_rng(11)
    mem = bytearray(rng.integers(0, 256, MEM, dtype=np.uint8).tobytes())
    ref = bytearray(mem)
    dut = AxiUpsizer(addr_width=32, narrow=64, wide=256, narrow_id_width=4, wide_id_width=1,
                     max_burst=max_burst)
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    log: list = []
    got_reads: list = []
    s = dut.s_axi
    print("seed=11")

    async def serve(ctx):
        await _wide_memory(ctx, dut.m_axi, mem, log)

    async def bench(ctx):
        for i, (addr, n) in enumerate(CASES):
            # read n beats at addr (expected: the memory as the bench has written it so far)
            exp = [int.from_bytes(ref[addr + 8 * k:addr + 8 * k + 8], "little") for k in range(n)]
            ctx.set(s.araddr, addr)
            ctx.set(s.arlen, n - 1)
            ctx.set(s.arid, i & 15)
            ctx.set(s.arvalid, 1)
            await ctx.tick().until(s.arready)
            ctx.set(s.arvalid, 0)
            ctx.set(s.rready, 1)
            beats = []
            while len(beats) < n:
                _, _, rvalid, rdata, rlast, rid = await ctx.tick().sample(
                    s.rvalid, s.rdata, s.rlast, s.rid)
                if rvalid:
                    assert rid == i & 15
                    assert rlast == (len(beats) == n - 1), (addr, n, len(beats))
                    beats.append(rdata)
            ctx.set(s.rready, 0)
            got_reads.append((addr, n, beats, exp))
            # write n beats of new data at addr + 1024 (every lane's strobe pattern)
            waddr = addr + 1024 if addr + 1024 + 8 * n <= MEM else addr
            data = [int(x) for x in rng.integers(0, 2**63, n, dtype=np.int64)]
            for k, d in enumerate(data):
                ref[waddr + 8 * k:waddr + 8 * k + 8] = d.to_bytes(8, "little")
            await _write_burst(ctx, s, waddr, data, 3)
            ctx.set(s.bready, 1)
            while True:
                _, _, bvalid, bid = await ctx.tick().sample(s.bvalid, s.bid)
                if bvalid:
                    assert bid == 3
                    break
            ctx.set(s.bready, 0)

    sim.add_testbench(serve, background=True)
    sim.add_testbench(bench)
    sim.run_until(2e-4)
    assert len(got_reads) == len(CASES), f"only {len(got_reads)} of {len(CASES)} reads done"
    for addr, n, beats, want in got_reads:
        for k, (w, g) in enumerate(zip(want, beats)):
            assert g == w, f"read {addr:#x}+{n}: beat {k} expected {w:#018x} got {g:#018x}"
    bad = [i for i in range(MEM) if mem[i] != ref[i]]
    assert not bad, (f"{len(bad)} bytes differ, first at {bad[0]:#x}: expected "
                     f"{ref[bad[0]]:#04x} got {mem[bad[0]]:#04x}")
    for (kind, addr, n), (a, nb) in zip(log[0::2], CASES):
        first, last = a // 32, (a + 8 * nb - 1) // 32
        assert (kind, addr, n) == ("r", 32 * first, last - first + 1)


def test_host_decoder_routes_blocks_and_answers_decerr_elsewhere():
    """AXI4-Lite decoder of a chip with 2 NIC ports (14-bit host addresses, blocks 0..2
    mapped, block 3 not): each access reaches only its block with the 12-bit offset; the
    unmapped block answers DECERR (reads 0) and later accesses still work."""
    from rtl.axi import RESP_DECERR, RESP_OKAY
    from rtl.chip.nic_port import AxiLiteDecoder

    dut = AxiLiteDecoder(addr_width=14, n=3, block_bits=12)
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    seen: list = []

    def sub_model(i):
        port = getattr(dut, f"m{i}")

        async def serve(ctx):
            while True:
                await ctx.tick()
                if ctx.get(port.awvalid) and ctx.get(port.wvalid):
                    seen.append((i, "w", ctx.get(port.awaddr), ctx.get(port.wdata)))
                    ctx.set(port.awready, 1)
                    ctx.set(port.wready, 1)
                    await ctx.tick()
                    ctx.set(port.awready, 0)
                    ctx.set(port.wready, 0)
                    ctx.set(port.bvalid, 1)
                    ctx.set(port.bresp, RESP_OKAY)
                    await ctx.tick().until(port.bready)
                    ctx.set(port.bvalid, 0)
                elif ctx.get(port.arvalid):
                    addr = ctx.get(port.araddr)
                    seen.append((i, "r", addr, None))
                    ctx.set(port.arready, 1)
                    await ctx.tick()
                    ctx.set(port.arready, 0)
                    ctx.set(port.rdata, i << 16 | addr)
                    ctx.set(port.rvalid, 1)
                    await ctx.tick().until(port.rready)
                    ctx.set(port.rvalid, 0)
        return serve

    for i in range(3):
        sim.add_testbench(sub_model(i), background=True)
    results = []
    s = dut.s_axil

    async def bench(ctx):
        async def write(addr, data):
            ctx.set(s.awaddr, addr)
            ctx.set(s.wdata, data)
            ctx.set(s.wstrb, 0xF)
            ctx.set(s.awvalid, 1)
            ctx.set(s.wvalid, 1)
            await ctx.tick().until(s.awready)
            ctx.set(s.awvalid, 0)
            ctx.set(s.wvalid, 0)
            ctx.set(s.bready, 1)
            (resp,) = await ctx.tick().sample(s.bresp).until(s.bvalid)
            ctx.set(s.bready, 0)
            results.append(("w", addr, resp, None))

        async def read(addr):
            ctx.set(s.araddr, addr)
            ctx.set(s.arvalid, 1)
            await ctx.tick().until(s.arready)
            ctx.set(s.arvalid, 0)
            ctx.set(s.rready, 1)
            resp, data = await ctx.tick().sample(s.rresp, s.rdata).until(s.rvalid)
            ctx.set(s.rready, 0)
            results.append(("r", addr, resp, data))

        await write(0x0010, 0x11)
        await write(0x2008, 0x22)
        await write(0x3000, 0x33)          # unmapped block
        await read(0x1ABC)
        await read(0x3004)                 # unmapped block
        await read(0x0FFC)

    sim.add_testbench(bench)
    sim.run_until(2e-5)
    assert results == [("w", 0x0010, RESP_OKAY, None), ("w", 0x2008, RESP_OKAY, None),
                       ("w", 0x3000, RESP_DECERR, None),
                       ("r", 0x1ABC, RESP_OKAY, 1 << 16 | 0xABC),
                       ("r", 0x3004, RESP_DECERR, 0), ("r", 0x0FFC, RESP_OKAY, 0xFFC)], results
    assert seen == [(0, "w", 0x010, 0x11), (2, "w", 0x008, 0x22), (1, "r", 0xABC, None),
                    (0, "r", 0xFFC, None)], seen


async def _write_burst(ctx, s, addr: int, data, awid: int, gap: bool = False):
    """Drive one AXI4 write burst (8-byte beats, all strobes) on the narrow port ``s``:
    address, then the W beats (``gap``: W idle one cycle after every beat)."""
    ctx.set(s.awaddr, addr)
    ctx.set(s.awlen, len(data) - 1)
    ctx.set(s.awid, awid)
    ctx.set(s.awvalid, 1)
    await ctx.tick().until(s.awready)
    ctx.set(s.awvalid, 0)
    for k, v in enumerate(data):
        ctx.set(s.wdata, v)
        ctx.set(s.wstrb, 0xFF)
        ctx.set(s.wlast, k == len(data) - 1)
        ctx.set(s.wvalid, 1)
        await ctx.tick().until(s.wready)
        if gap:
            ctx.set(s.wvalid, 0)
            await ctx.tick()
    ctx.set(s.wvalid, 0)


async def _pipelined_memory(ctx, port, mem: bytearray, stats: dict, latency: int = 6):
    """AXI4 read subordinate (256-bit) that accepts every AR at once and answers the bursts
    in order, each ``latency`` cycles after its AR at the earliest (so several are in flight
    when the manager issues them back to back). stats["max_out"]: most bursts in flight."""
    from collections import deque

    ctx.set(port.arready, 1)
    q, t, beat = deque(), 0, 0
    while True:
        if q and q[0][2] <= t:
            addr, n, _, rid = q[0]
            a = addr + 32 * beat
            ctx.set(port.rdata, int.from_bytes(mem[a:a + 32], "little"))
            ctx.set(port.rlast, beat == n - 1)
            ctx.set(port.rid, rid)
            ctx.set(port.rvalid, 1)
        else:
            ctx.set(port.rvalid, 0)
        _, _, arv, ara, arl, arid, rv, rr = await ctx.tick().sample(
            port.arvalid, port.araddr, port.arlen, port.arid, port.rvalid, port.rready)
        t += 1
        if rv and rr:
            beat += 1
            if beat == q[0][1]:
                q.popleft()
                beat = 0
        if arv:
            q.append((ara, arl + 1, t + latency, arid))
        stats["max_out"] = max(stats.get("max_out", 0), len(q))


async def _reader(ctx, port, reads, got: list, rid: int = 0):
    """Issue every (addr, beats) AR back to back, then collect the R beats (rready held)."""
    async def collect(ctx):
        ctx.set(port.rready, 1)
        while sum(len(b) for b in got) < sum(n for _, n in reads):
            _, _, rv, rd, rl, i = await ctx.tick().sample(port.rvalid, port.rdata, port.rlast,
                                                          port.rid)
            if rv:
                cur = got[-1] if got and len(got[-1]) < reads[len(got) - 1][1] else None
                if cur is None:
                    got.append([])
                    cur = got[-1]
                cur.append(rd)
                k = len(got) - 1
                assert i == rid, f"read {k}: rid {i} expected {rid}"
                assert rl == (len(cur) == reads[k][1]), f"read {k}: rlast on beat {len(cur)}"
    return collect


def test_upsizer_and_merge_keep_several_reads_in_flight():
    """Back-to-back narrow reads through AxiUpsizer -> AxiMerge (second manager also reading)
    -> a pipelined memory: more than one burst is in flight at the memory, and every
    manager gets its own bytes, in order, with its ID and rlast on the last beat."""
    from amaranth import Module
    from amaranth.lib import wiring

    from rtl.axi import AXI4Signature
    from rtl.chip.nic_port import AxiMerge

    rng = np.random.default_rng(12)
    print("seed=12")
    mem = bytearray(rng.integers(0, 256, MEM, dtype=np.uint8).tobytes())
    sig = AXI4Signature(addr_width=32, data_width=256, id_width=1)
    m = Module()
    m.submodules.up = up = AxiUpsizer(addr_width=32, narrow=64, wide=256, narrow_id_width=4,
                                      wide_id_width=1)
    m.submodules.merge = merge = AxiMerge(2, sig)
    wiring.connect(m, up.m_axi, merge.s1)
    stats, got_n, got_w = {}, [], []
    narrow_reads = [(8, 32), (264, 32), (520, 31), (4040, 6)]
    wide_reads = [(2048, 4), (3072, 2)]
    sim = Simulator(m)
    sim.add_clock(1e-8)

    async def serve(ctx):
        await _pipelined_memory(ctx, merge.m_axi, mem, stats)

    async def issue(ctx, port, reads, rid):
        for addr, n in reads:
            ctx.set(port.araddr, addr)
            ctx.set(port.arlen, n - 1)
            ctx.set(port.arid, rid)
            ctx.set(port.arvalid, 1)
            await ctx.tick().until(port.arready)
        ctx.set(port.arvalid, 0)

    async def narrow(ctx):
        await issue(ctx, up.s_axi, narrow_reads, 5)

    async def wide(ctx):
        await issue(ctx, merge.s0, wide_reads, 0)

    sim.add_testbench(serve, background=True)
    sim.add_testbench(narrow)
    sim.add_testbench(wide)
    sim.add_testbench(_reader_tb(up.s_axi, narrow_reads, got_n, 5))
    sim.add_testbench(_reader_tb(merge.s0, wide_reads, got_w, 0))
    sim.run_until(2e-5)
    assert stats["max_out"] >= 2, f"at most {stats['max_out']} burst(s) in flight"
    for what, reads, got, size in (("narrow", narrow_reads, got_n, 8),
                                   ("wide", wide_reads, got_w, 32)):
        assert len(got) == len(reads), f"{what}: {len(got)} of {len(reads)} reads returned"
        for (addr, n), beats in zip(reads, got):
            want = [int.from_bytes(mem[addr + size * k:addr + size * (k + 1)], "little")
                    for k in range(n)]
            assert beats == want, (f"{what} read {addr:#x}+{n}: first bad beat "
                                   f"{next(k for k in range(n) if beats[k] != want[k])}")


def _reader_tb(port, reads, got, rid):
    async def tb(ctx):
        collect = await _reader(ctx, port, reads, got, rid)
        await collect(ctx)
    return tb


async def _pipelined_write_memory(ctx, port, mem: bytearray, stats: dict, latency: int = 8):
    """AXI4 write subordinate (256-bit): takes AW and W at once (strobes honoured) and
    answers each burst's B ``latency`` cycles after its last W beat, in order."""
    from collections import deque

    ctx.set(port.awready, 1)
    ctx.set(port.wready, 1)
    bursts, bq, t = deque(), deque(), 0
    while True:
        ctx.set(port.bvalid, bool(bq) and bq[0][0] <= t)
        if bq:
            ctx.set(port.bid, bq[0][1])
        (_, _, awv, awa, awl, awid, wv, wd, ws, wl, bv, br) = await ctx.tick().sample(
            port.awvalid, port.awaddr, port.awlen, port.awid, port.wvalid, port.wdata,
            port.wstrb, port.wlast, port.bvalid, port.bready)
        t += 1
        if bv and br:
            bq.popleft()
        if awv:
            bursts.append([awa, awl + 1, 0, awid])
        if wv:
            b = bursts[0]
            a = b[0] + 32 * b[2]
            for k in range(32):
                if ws >> k & 1:
                    mem[a + k] = (wd >> (8 * k)) & 0xFF
            b[2] += 1
            assert wl == (b[2] == b[1]), f"wlast on beat {b[2]} of {b[1]}"
            if wl:
                bursts.popleft()
                bq.append((t + latency, b[3]))
        stats["max_b"] = max(stats.get("max_b", 0), len(bq))


def test_upsizer_and_merge_keep_several_writes_awaiting_b():
    """Back-to-back narrow write bursts (every lane alignment) through AxiUpsizer ->
    AxiMerge -> a memory answering B late: more than one B is awaited at once, the bytes
    equal the reference and every B reaches the manager with its ID."""
    from amaranth import Module
    from amaranth.lib import wiring

    from rtl.axi import AXI4Signature
    from rtl.chip.nic_port import AxiMerge

    rng = np.random.default_rng(13)
    print("seed=13")
    mem = bytearray(MEM)
    ref = bytearray(MEM)
    sig = AXI4Signature(addr_width=32, data_width=256, id_width=1)
    m = Module()
    m.submodules.up = up = AxiUpsizer(addr_width=32, narrow=64, wide=256, narrow_id_width=4,
                                      wide_id_width=1)
    m.submodules.merge = merge = AxiMerge(2, sig)
    wiring.connect(m, up.m_axi, merge.s1)
    writes = [(8, 5), (1032, 32), (2064, 7), (4056, 5), (3000 - 3000 % 8, 16)]
    data = [[int(x) for x in rng.integers(0, 2**63, n, dtype=np.int64)] for _, n in writes]
    for (a, _n), d in zip(writes, data):
        for k, v in enumerate(d):
            ref[a + 8 * k:a + 8 * k + 8] = v.to_bytes(8, "little")
    stats, bids = {}, []
    s = up.s_axi
    sim = Simulator(m)
    sim.add_clock(1e-8)

    async def serve(ctx):
        await _pipelined_write_memory(ctx, merge.m_axi, mem, stats)

    async def bench(ctx):
        ctx.set(merge.s0.bready, 1)
        for i, ((a, _), d) in enumerate(zip(writes, data)):
            await _write_burst(ctx, s, a, d, i)

    async def responses(ctx):
        ctx.set(s.bready, 1)
        while len(bids) < len(writes):
            _, _, bv, bid = await ctx.tick().sample(s.bvalid, s.bid)
            if bv:
                bids.append(bid)

    sim.add_testbench(serve, background=True)
    sim.add_testbench(bench)
    sim.add_testbench(responses)
    sim.run_until(2e-5)
    assert bids == list(range(len(writes))), f"B IDs {bids}"
    assert stats["max_b"] >= 2, f"at most {stats['max_b']} B response(s) awaited"
    bad = [i for i in range(MEM) if mem[i] != ref[i]]
    assert not bad, (f"{len(bad)} bytes differ, first at {bad[0]:#x}: expected "
                     f"{ref[bad[0]]:#04x} got {mem[bad[0]]:#04x}")


def test_upsizer_never_holds_wide_r_and_sends_w_back_to_back():
    """The wide side at full rate whatever the narrow side does: with the narrow manager
    taking R beats only every other cycle (and not at all for the first 40 cycles), the wide
    RREADY is 1 in every cycle RVALID is; with the narrow W beats offered every other cycle,
    each wide W burst goes out in as many cycles as it has beats (AW, then one beat per
    cycle). The bytes read and written are checked too."""
    from amaranth import Module

    rng = np.random.default_rng(14)
    print("seed=14")
    mem = bytearray(rng.integers(0, 256, MEM, dtype=np.uint8).tobytes())
    ref = bytearray(mem)
    m = Module()
    m.submodules.up = up = AxiUpsizer(addr_width=32, narrow=64, wide=256, narrow_id_width=4,
                                      wide_id_width=1)
    s, w = up.s_axi, up.m_axi
    reads = [(8, 32), (264, 32), (520, 31), (1024, 8), (4040, 6)]
    writes = [(2056, 32), (4096 + 24, 17), (6144, 128), (5000 - 5000 % 8, 3)]
    data = [[int(x) for x in rng.integers(0, 2**63, n, dtype=np.int64)] for _, n in writes]
    for (a, _n), d in zip(writes, data):
        for k, v in enumerate(d):
            ref[a + 8 * k:a + 8 * k + 8] = v.to_bytes(8, "little")
    held, w_runs, got = [], [], []
    rstats: dict = {}
    sim = Simulator(m)
    sim.add_clock(1e-8)

    async def serve_reads(ctx):
        await _pipelined_memory(ctx, w, mem, rstats, latency=3)

    async def serve_writes(ctx):
        """Wide write side: AW and W always ready; B one cycle after WLAST. Records, per
        burst, (beats, cycles from its first W beat to WLAST inclusive)."""
        ctx.set(w.awready, 1)
        ctx.set(w.wready, 1)
        t, cur, pend_b = 0, None, 0
        bursts = []
        while True:
            ctx.set(w.bvalid, pend_b > 0)
            (_, _, awv, awa, awl, wv, wd, ws, wl, bv, br, rv, rr) = await ctx.tick().sample(
                w.awvalid, w.awaddr, w.awlen, w.wvalid, w.wdata, w.wstrb, w.wlast,
                w.bvalid, w.bready, w.rvalid, w.rready)
            t += 1
            if rv and not rr:
                held.append(t)
            if bv and br:
                pend_b -= 1
            if awv:
                bursts.append([awa, awl + 1, 0])
            if wv:
                b = bursts[0]
                a = b[0] + 32 * b[2]
                for k in range(32):
                    if ws >> k & 1:
                        mem[a + k] = (wd >> (8 * k)) & 0xFF
                if b[2] == 0:
                    cur = t
                b[2] += 1
                if wl:
                    w_runs.append((b[1], t - cur + 1))
                    bursts.pop(0)
                    pend_b += 1

    async def issue_reads(ctx):
        for addr, n in reads:
            ctx.set(s.araddr, addr)
            ctx.set(s.arlen, n - 1)
            ctx.set(s.arid, 7)
            ctx.set(s.arvalid, 1)
            await ctx.tick().until(s.arready)
        ctx.set(s.arvalid, 0)

    async def slow_reader(ctx):
        await ctx.tick().repeat(40)
        beats, t = [], 0
        while len(beats) < sum(n for _, n in reads):
            ctx.set(s.rready, t % 2)
            _, _, rv, rr, rd = await ctx.tick().sample(s.rvalid, s.rready, s.rdata)
            t += 1
            if rv and rr:
                beats.append(rd)
        ctx.set(s.rready, 0)
        got.append(beats)

    async def slow_writer(ctx):
        ctx.set(s.bready, 1)
        for (a, _), d in zip(writes, data):
            await _write_burst(ctx, s, a, d, 2, gap=True)

    sim.add_testbench(serve_reads, background=True)
    sim.add_testbench(serve_writes, background=True)
    sim.add_testbench(issue_reads)
    sim.add_testbench(slow_reader)
    sim.add_testbench(slow_writer)
    sim.run_until(1e-5)
    assert not held, f"wide RREADY low while RVALID in {len(held)} cycles, first {held[:5]}"
    want = [int.from_bytes(mem[a + 8 * k:a + 8 * k + 8], "little")
            for a, n in reads for k in range(n)]
    assert got, "the narrow reads did not finish"
    bad = [k for k in range(len(want)) if got[0][k] != want[k]]
    assert not bad, (f"read beat {bad[0]}: expected {want[bad[0]]:#018x} "
                     f"got {got[0][bad[0]]:#018x}")
    exp_beats = [(a // 8 % 4 + n + 3) // 4 for a, n in writes]
    assert [b for b, _ in w_runs] == exp_beats, f"wide W bursts {w_runs}, beats {exp_beats}"
    slow = [(b, c) for b, c in w_runs if c != b]
    assert not slow, f"wide W bursts not back to back (beats, cycles): {slow}"
    bad = [i for i in range(MEM) if mem[i] != ref[i]]
    assert not bad, (f"{len(bad)} bytes differ, first at {bad[0]:#x}: expected "
                     f"{ref[bad[0]]:#04x} got {mem[bad[0]]:#04x}")
