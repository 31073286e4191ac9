"""cocotb bench for rtl.tile.Tile: load a TSRAM image, run a command list, dump everything.

Inputs (cosim.sim.bench_inputs): ``image`` uint8 [tsram_bytes], ``cmd_addr`` (one address or
several: the lists run one after the other on the same TSRAM), ``max_cycles``, optional
``ext`` uint8 [ext_bytes]: the external memory of the tile DMA, a cocotbext-axi ``AxiRam``
on ``m_axi`` (addresses modulo its size, so DMA_EXT_BASE + x is byte x); without it the
``m_axi`` inputs are tied to 0 (no Python per cycle for programs without DMA).
The image is loaded through the ``ext`` port (one word per cycle, zero words skipped: TSRAM
starts zeroed), ``start`` is pulsed, the bench waits (polling every ``POLL`` cycles, not
every edge) until the status leaves RUNNING, then reads the counters and dumps TSRAM.
Outputs: ``image``, ``ext`` (when given), ``status`` (one per list), ``counters`` (uint64 [lists, n],
spec.tile.COUNTERS order), ``run_cycles`` (bench cycles from start to the poll that saw the
end, per list), ``wall_s``.
"""

from __future__ import annotations

import time

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, FallingEdge, ReadOnly, RisingEdge
from cocotbext.axi import AxiBus
from cocotbext.axi.axi_ram import AxiRam

from cosim.sim import bench_inputs, bench_outputs
from spec import tile as T

POLL = 64


async def ext_write(dut, image: np.ndarray) -> int:
    words = image.reshape(-1, T.WORD_BYTES)
    nz = np.flatnonzero(words.any(axis=1))
    dut.ext__we.value = 1
    dut.ext__wmask.value = (1 << T.WORD_BYTES) - 1
    for w in nz:
        dut.ext__valid.value = 1
        dut.ext__addr.value = int(w)
        dut.ext__wdata.value = int.from_bytes(words[w].tobytes(), "little")
        await RisingEdge(dut.clk)
    dut.ext__valid.value = 0
    dut.ext__we.value = 0
    return len(nz)


async def ext_dump(dut, nwords: int) -> np.ndarray:
    """Read every TSRAM word through ``ext`` (read data is registered at the granting edge)."""
    out = bytearray(nwords * T.WORD_BYTES)
    dut.ext__we.value = 0
    dut.ext__wmask.value = 0
    for w in range(nwords):
        await FallingEdge(dut.clk)
        dut.ext__valid.value = 1
        dut.ext__addr.value = w
        await RisingEdge(dut.clk)
        await ReadOnly()
        v = dut.ext__rdata.value.to_unsigned()
        out[w * T.WORD_BYTES:(w + 1) * T.WORD_BYTES] = v.to_bytes(T.WORD_BYTES, "little")
    await FallingEdge(dut.clk)
    dut.ext__valid.value = 0
    return np.frombuffer(bytes(out), dtype=np.uint8)


@cocotb.test()
async def run_program(dut):
    inp = bench_inputs()
    image = inp["image"].astype(np.uint8)
    cmd_addrs = [int(a) for a in np.atleast_1d(inp["cmd_addr"])]
    max_cycles = int(inp["max_cycles"])
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    dut.rst.value = 1
    dut.start.value = 0
    dut.cmd_addr.value = 0
    dut.ext__valid.value = 0
    dut.ext__we.value = 0
    dut.ext__addr.value = 0
    dut.ext__wdata.value = 0
    dut.ext__wmask.value = 0
    ram = None
    if "ext" in inp:
        ext = inp["ext"].astype(np.uint8)
        ram = AxiRam(AxiBus.from_prefix(dut, "m_axi_"), dut.clk, dut.rst, size=ext.size)
        ram.write(0, ext.tobytes())
    else:
        for sig in ("awready", "wready", "bvalid", "bid", "bresp", "arready", "rvalid",
                    "rid", "rdata", "rresp", "rlast"):
            getattr(dut, f"m_axi__{sig}").value = 0
    await ClockCycles(dut.clk, 2)
    dut.rst.value = 0
    t0 = time.perf_counter()
    n = await ext_write(dut, image)
    await ClockCycles(dut.clk, 32)    # the tile DMA programs its windows after reset
    t_load = time.perf_counter() - t0
    statuses, counters, run_cycles = [], [], []
    t1 = time.perf_counter()
    for cmd_addr in cmd_addrs:
        dut.cmd_addr.value = int(cmd_addr)
        dut.start.value = 1
        await RisingEdge(dut.clk)
        dut.start.value = 0
        cycles = 0
        while True:
            await ClockCycles(dut.clk, POLL)
            cycles += POLL
            status = dut.status.value.to_unsigned()
            if status & 3 != T.ST_RUNNING:
                break
            if cycles > max_cycles:
                raise AssertionError(f"tile still RUNNING after {cycles} cycles "
                                     f"(status {status:#010x}, list at {int(cmd_addr):#x}): "
                                     "deadlock or max_cycles too small")
        statuses.append(status)
        run_cycles.append(cycles)
        counters.append([int(getattr(dut, f"cnt_{c}").value.to_unsigned())
                         for c in T.COUNTERS])
    t_run = time.perf_counter() - t1
    await RisingEdge(dut.clk)
    t2 = time.perf_counter()
    dump = await ext_dump(dut, image.size // T.WORD_BYTES)
    dut._log.info("tile bench: loaded %d words in %.2f s, ran %d lists (%d cycles) in %.2f s, "
                  "dump %.2f s", n, t_load, len(cmd_addrs), sum(run_cycles), t_run,
                  time.perf_counter() - t2)
    extra = {"ext": np.frombuffer(ram.read(0, ext.size), dtype=np.uint8)} if ram else {}
    bench_outputs(**extra, image=dump, status=np.array(statuses, dtype=np.uint64),
                  counters=np.array(counters, dtype=np.uint64).reshape(-1, len(T.COUNTERS)),
                  run_cycles=np.array(run_cycles), wall_s=np.array(t_run))
