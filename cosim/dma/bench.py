"""cocotb bench of the DMA engine: AxiRam (with fault ranges and pause generators) on m_axi,
AxiLiteMaster on s_axil. Runs a batch of scenarios, resetting the DUT between them.

Inputs (cosim.sim.bench_inputs; S scenarios, N channels, M bytes of memory):
    mem        (S, M) uint8       initial memory image (AxiRam, addresses modulo M)
    heads      (S, N) int64       HEAD per channel, -1 = channel not started
    windows    (S, K, 2) int64    (base, size) per window
    bad_read   (S, R, 2) int64    [lo, hi) ranges answering SLVERR on reads (lo == hi: none)
    bad_write  (S, R, 2) int64    same for writes (the bytes are not written)
    cfg        (S, 5) int64       seed, pause percent (0 = zero-wait memory), watch sem, probe,
                                  runs (ring every started channel's doorbell this many times,
                                  each time after all of them finished)
Outputs (cosim.sim.bench_outputs):
    mem        (S, M) uint8       final memory image
    regs       (S, N, len(CH_REGS)) int64   every channel register, in spec.dma.CH_REGS order
    irq        (S, N) int64       irq pins after the run
    sems       (S, E, 2) int64    (channel, sem_id) strobes in order, padded with -1
    probe      (S, P) int64       CSR probe responses (see _probe), when cfg[3] is set
    cycles     (S,) int64         clock cycles from the first doorbell to the last idle channel
"""

from __future__ import annotations

import itertools
import random

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, RisingEdge, Timer
from cocotb.utils import get_sim_time
from cocotbext.axi import AxiBus, AxiLiteBus, AxiLiteMaster
from cocotbext.axi.axi_ram import AxiRam, AxiRamRead, AxiRamWrite

from cosim.sim import bench_inputs, bench_outputs
from spec import dma as S

PERIOD_NS = 10
MAX_SEMS = 256
PROBE_LEN = 8


class _Faults:
    """Address ranges where the memory answers SLVERR (shared by the read and write sides)."""

    def __init__(self):
        self.read: list[tuple[int, int]] = []
        self.write: list[tuple[int, int]] = []

    @staticmethod
    def hit(ranges, lo, hi):
        return any(lo < b and a < hi for a, b in ranges)


class _FaultyRamRead(AxiRamRead):
    faults: _Faults

    async def _read(self, address, length):
        if _Faults.hit(self.faults.read, address, address + length):
            raise OSError(f"injected read fault at {address:#x}")
        return await super()._read(address, length)


class _FaultyRamWrite(AxiRamWrite):
    faults: _Faults

    async def _write(self, address, data):
        if _Faults.hit(self.faults.write, address, address + len(data)):
            raise OSError(f"injected write fault at {address:#x}")
        await super()._write(address, data)


class FaultyAxiRam(AxiRam):
    """cocotbext-axi AxiRam whose read/write sides raise (-> SLVERR) on fault ranges."""

    def __init__(self, bus, clock, reset, size, faults: _Faults):
        self.write_if = self.read_if = None
        super(AxiRam, self).__init__(size)  # Memory.__init__: allocate the array
        self.write_if = _FaultyRamWrite(bus.write, clock, reset, mem=self.mem)
        self.read_if = _FaultyRamRead(bus.read, clock, reset, mem=self.mem)
        self.write_if.faults = self.read_if.faults = faults


def _pauses(rng: random.Random, pct: int):
    if pct <= 0:
        return None
    return itertools.cycle([rng.randrange(100) < pct for _ in range(997)])


class _Harness:
    def __init__(self, dut, mem_size):
        self.dut = dut
        self.faults = _Faults()
        self.ram = FaultyAxiRam(AxiBus.from_prefix(dut, "m_axi_"), dut.clk, dut.rst, mem_size,
                                self.faults)
        self.csr = AxiLiteMaster(AxiLiteBus.from_prefix(dut, "s_axil_"), dut.clk, dut.rst)
        self.sems: list[tuple[int, int]] = []

    async def reset(self):
        self.dut.rst.value = 1
        await ClockCycles(self.dut.clk, 4)
        self.dut.rst.value = 0
        await ClockCycles(self.dut.clk, 2)

    async def rd(self, addr) -> tuple[int, int]:
        r = await self.csr.read(addr, 4)
        return int.from_bytes(r.data, "little"), int(r.resp)

    async def wr(self, addr, value, nbytes=4) -> int:
        r = await self.csr.write(addr, int(value).to_bytes(4, "little")[:nbytes])
        return int(r.resp)

    def set_pauses(self, rng, pct):
        for ch in (self.ram.write_if.aw_channel, self.ram.write_if.w_channel,
                   self.ram.write_if.b_channel, self.ram.read_if.ar_channel,
                   self.ram.read_if.r_channel):
            gen = _pauses(rng, pct)
            if gen is None:
                ch.clear_pause_generator()
                ch.pause = False  # a killed generator may have left the channel paused
            else:
                ch.set_pause_generator(gen)

    async def watch_sems(self):
        dut = self.dut
        while True:
            await RisingEdge(dut.clk)
            if int(dut.sem_valid.value):
                self.sems.append((int(dut.sem_channel.value), int(dut.sem_id.value)))


async def _probe(h: _Harness, nch: int) -> list[int]:
    """CSR error paths: [ID, CONFIG, resp(read unmapped), resp(write unmapped),
    resp(write RO STATUS), resp(partial-strobe HEAD write), HEAD after it,
    resp(doorbell while BUSY)]. Channel 0 must have been started on a long chain."""
    out = [(await h.rd(S.REG_ID))[0], (await h.rd(S.REG_CONFIG))[0]]
    out.append((await h.rd(0x0FC))[1])
    out.append(await h.wr(0x0FC, 1))
    out.append(await h.wr(S.ch_reg(0, S.CH_STATUS), 0))
    head_before = (await h.rd(S.ch_reg(0, S.CH_HEAD)))[0]
    out.append(await h.wr(S.ch_reg(0, S.CH_HEAD), 0x40, nbytes=2))
    out.append((await h.rd(S.ch_reg(0, S.CH_HEAD)))[0] - head_before)
    out.append(await h.wr(S.ch_reg(0, S.CH_DOORBELL), 1))
    assert len(out) == PROBE_LEN
    return out


@cocotb.test()
async def dma_batch(dut):
    vin = bench_inputs()
    mem, heads, windows = vin["mem"], vin["heads"], vin["windows"]
    bad_r, bad_w, cfg = vin["bad_read"], vin["bad_write"], vin["cfg"]
    nsc, msize = mem.shape
    nch = heads.shape[1]
    reg_names = list(S.CH_REGS)

    cocotb.start_soon(Clock(dut.clk, PERIOD_NS, unit="ns").start())
    h = _Harness(dut, msize)
    out_mem = np.zeros_like(mem)
    out_regs = np.zeros((nsc, nch, len(reg_names)), dtype=np.int64)
    out_irq = np.zeros((nsc, nch), dtype=np.int64)
    out_sems = np.full((nsc, MAX_SEMS, 2), -1, dtype=np.int64)
    out_probe = np.zeros((nsc, PROBE_LEN), dtype=np.int64)
    out_cycles = np.zeros(nsc, dtype=np.int64)

    for s in range(nsc):
        seed, pct, watch, probe, runs = (int(x) for x in cfg[s])
        dut._log.info("scenario %d: seed %d pause %d%% heads %s", s, seed, pct,
                      [hex(int(x)) for x in heads[s]])
        rng = random.Random(seed)
        h.faults.read = [(int(a), int(b)) for a, b in bad_r[s] if b > a]
        h.faults.write = [(int(a), int(b)) for a, b in bad_w[s] if b > a]
        h.ram.write(0, bytes(mem[s]))
        h.set_pauses(rng, pct)
        h.sems = []
        await h.reset()
        watcher = cocotb.start_soon(h.watch_sems()) if watch else None

        for k, (base, size) in enumerate(windows[s]):
            assert await h.wr(S.win_base_reg(k), int(base)) == 0
            assert await h.wr(S.win_size_reg(k), int(size)) == 0
        for c in range(nch):
            assert await h.wr(S.ch_reg(c, S.CH_IRQ_ENABLE), S.IRQ_DONE | S.IRQ_ERROR) == 0
            if heads[s, c] >= 0:
                assert await h.wr(S.ch_reg(c, S.CH_HEAD), int(heads[s, c])) == 0
        started = [c for c in range(nch) if heads[s, c] >= 0]
        t0 = get_sim_time("ns")
        for run_no in range(runs):
            for c in started:
                assert await h.wr(S.ch_reg(c, S.CH_DOORBELL), 1) == 0
            if probe and run_no == 0:
                out_probe[s] = await _probe(h, nch)
            # wait for every started channel to leave BUSY (poll over the CSR port, no
            # per-cycle Python in this loop)
            poll_ns = 200 * PERIOD_NS
            for _ in range(200_000):
                states = [(await h.rd(S.ch_reg(c, S.CH_STATUS)))[0] for c in started]
                if all(st != S.ST_BUSY for st in states):
                    break
                await Timer(poll_ns, unit="ns")
            else:
                raise AssertionError(f"scenario {s}: channels still busy: {states}")
        out_cycles[s] = int((get_sim_time("ns") - t0) // PERIOD_NS)
        await ClockCycles(dut.clk, 4)
        if watcher is not None:
            watcher.cancel()

        for c in range(nch):
            for i, name in enumerate(reg_names):
                value, resp = await h.rd(S.ch_reg(c, S.CH_REGS[name][0]))
                assert resp == 0, f"CSR {name} of channel {c}: resp {resp}"
                out_regs[s, c, i] = value
        out_irq[s] = [(int(dut.irq.value) >> c) & 1 for c in range(nch)]
        out_mem[s] = np.frombuffer(h.ram.read(0, msize), dtype=np.uint8)
        for i, ev in enumerate(h.sems[:MAX_SEMS]):
            out_sems[s, i] = ev

    bench_outputs(mem=out_mem, regs=out_regs, irq=out_irq, sems=out_sems, probe=out_probe,
                  cycles=out_cycles)
