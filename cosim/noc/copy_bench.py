"""cocotb bench: streaming copies through the network interfaces (rtl.noc.ni.AxiMeshBench
with ``copiers``): the DMA-like pattern (AR, then AW before the read data, then R beats
forwarded as W beats) that deadlocks interfaces which forward a write before its data.

Inputs: ``copies`` int64 [n, 5] rows (copier node, src address, dst address, beats, count),
``seed`` (AxiRam preload), ``max_cycles``. Every copier starts at once; the bench waits for
all ``done`` or ``max_cycles``. Outputs: ``done``, ``copies``, ``errors`` per row, ``cycles``,
``mem_before``/``mem_after`` [n_memories, DUMP] (the first DUMP bytes of each memory),
counters (decerr, bad_flits, served, net_errors)."""

from __future__ import annotations

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import RisingEdge
from cocotbext.axi import AxiBus, AxiRam

from cosim.sim import bench_inputs, bench_outputs, bench_params

DUMP = 1 << 14


@cocotb.test()
async def copies(dut):
    params = bench_params()
    inputs = bench_inputs()
    rows = [[int(v) for v in r] for r in inputs["copies"]]
    max_cycles = int(inputs["max_cycles"])
    rng = np.random.default_rng(int(inputs["seed"]))
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    dut.rst.value = 1
    mems = list(params["memories"])
    rams = [AxiRam(AxiBus.from_prefix(dut, f"n{j}_m_axi_"), dut.clk, dut.rst,
                   size=1 << params["region_shift"]) for j in mems]
    before = np.zeros((len(mems), DUMP), dtype=np.uint8)
    for k, ram in enumerate(rams):
        before[k] = rng.integers(0, 256, DUMP, dtype=np.uint8)
        ram.write(0, before[k].tobytes())
    for node, src, dst, beats, count in rows:
        getattr(dut, f"n{node}_src").value = src
        getattr(dut, f"n{node}_dst").value = dst
        getattr(dut, f"n{node}_beats").value = beats
        getattr(dut, f"n{node}_count").value = count
        getattr(dut, f"n{node}_start").value = 0
    for _ in range(3):
        await RisingEdge(dut.clk)
    dut.rst.value = 0
    await RisingEdge(dut.clk)
    for node, *_ in rows:
        getattr(dut, f"n{node}_start").value = 1
    await RisingEdge(dut.clk)
    for node, *_ in rows:
        getattr(dut, f"n{node}_start").value = 0
    cycles = 0
    while cycles < max_cycles:      # poll every 64 cycles: little Python per cycle
        for _ in range(64):
            await RisingEdge(dut.clk)
        cycles += 64
        if all(int(getattr(dut, f"n{node}_done").value) for node, *_ in rows):
            break
    after = np.stack([np.frombuffer(ram.read(0, DUMP), dtype=np.uint8) for ram in rams])
    bench_outputs(
        done=np.array([int(getattr(dut, f"n{r[0]}_done").value) for r in rows]),
        copies=np.array([int(getattr(dut, f"n{r[0]}_copies").value) for r in rows]),
        errors=np.array([int(getattr(dut, f"n{r[0]}_errors").value) for r in rows]),
        cycles=np.array(cycles), mem_before=before, mem_after=after,
        counters=np.array([int(dut.decerr.value), int(dut.bad_flits.value),
                           int(dut.served.value), int(dut.net_errors.value)]))
