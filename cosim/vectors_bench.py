"""Generic cocotb bench: apply one row of input values per clock cycle, record the outputs.

Params (cosim.sim.bench_params): ``inputs`` and ``outputs``, lists of top-level port names.
Inputs (cosim.sim.bench_inputs): ``stim`` int64 [cycles, len(inputs)]. After reset (two
cycles) each row is driven on a falling edge and the outputs are sampled just before the
next rising edge. Outputs (cosim.sim.bench_outputs): ``out`` int64 [cycles, len(outputs)].
Used by small tests of the runner itself (tests/test_hier.py), where a block-specific
bench would be overkill."""

from __future__ import annotations

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, ReadOnly, RisingEdge

from cosim.sim import bench_inputs, bench_outputs, bench_params


@cocotb.test()
async def apply_vectors(dut):
    p = bench_params()
    stim = bench_inputs()["stim"]
    ins = [getattr(dut, n) for n in p["inputs"]]
    outs = [getattr(dut, n) for n in p["outputs"]]
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    dut.rst.value = 1
    for s in ins:
        s.value = 0
    for _ in range(2):
        await RisingEdge(dut.clk)
    await FallingEdge(dut.clk)
    dut.rst.value = 0
    got = np.zeros((len(stim), len(outs)), np.int64)
    for i, row in enumerate(stim):
        for s, v in zip(ins, row):
            s.value = int(v)
        await RisingEdge(dut.clk)
        await ReadOnly()
        got[i] = [int(s.value) for s in outs]
        await FallingEdge(dut.clk)
    bench_outputs(out=got)
