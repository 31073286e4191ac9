"""cocotb bench for rtl.mxdot.MXDotUnit: drives encoded beats, collects results.

Inputs (cosim.sim.bench_inputs): ``beats`` uint8 [n_beats, nbytes] (payload, little-endian),
``n_out`` number of results expected, ``knobs`` [ready_prob, valid_prob, seed] for random
output backpressure and input bubbles. Outputs: ``out`` uint32, ``error`` uint8, ``cycles``
(from first accepted beat to last result), ``accept_cycles`` (first to last accepted beat),
``blocks`` (the unit's stat_blocks counter), ``wall_s`` (simulation wall time of the run).
"""

from __future__ import annotations

import random
import time

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, ReadOnly, RisingEdge

from cosim.sim import bench_inputs, bench_outputs


@cocotb.test()
async def run_beats(dut):
    inp = bench_inputs()
    beats = [int.from_bytes(row.tobytes(), "little") for row in inp["beats"]]
    n_out = int(inp["n_out"])
    ready_prob, valid_prob, seed = (float(x) for x in inp["knobs"])
    rng = random.Random(int(seed))
    dut._log.info("mxdot bench: %d beats, %d results, ready_prob=%.2f valid_prob=%.2f seed=%d",
                  len(beats), n_out, ready_prob, valid_prob, int(seed))

    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    dut.rst.value = 1
    dut.i__valid.value = 0
    dut.i__payload.value = 0
    dut.o__ready.value = 0
    for _ in range(2):
        await RisingEdge(dut.clk)
    dut.rst.value = 0

    results, errors = [], []
    idx = 0
    cycle = 0
    first_accept = last_accept = last_out = None
    timeout = 50 * (len(beats) + 10) + 1000
    t0 = time.perf_counter()
    while len(results) < n_out:
        await FallingEdge(dut.clk)
        cycle += 1
        if cycle > timeout:
            raise AssertionError(f"timeout: {len(results)}/{n_out} results after {cycle} cycles")
        o_ready = 1 if ready_prob >= 1.0 else int(rng.random() < ready_prob)
        dut.o__ready.value = o_ready
        offer = idx < len(beats) and (valid_prob >= 1.0 or rng.random() < valid_prob)
        dut.i__valid.value = int(offer)
        if offer:
            dut.i__payload.value = beats[idx]
        await ReadOnly()
        if offer and int(dut.i__ready.value):
            if first_accept is None:
                first_accept = cycle
            last_accept = cycle
            idx += 1
        if o_ready and int(dut.o__valid.value):
            pl = dut.o__payload.value.to_unsigned()
            results.append(pl & 0xFFFFFFFF)
            errors.append((pl >> 32) & 1)
            last_out = cycle
    wall = time.perf_counter() - t0
    if idx != len(beats):
        raise AssertionError(f"{len(beats) - idx} beats not accepted but all results seen")
    await FallingEdge(dut.clk)
    blocks = dut.stat_blocks.value.to_unsigned()
    bench_outputs(out=np.array(results, dtype=np.uint32), error=np.array(errors, dtype=np.uint8),
                  cycles=np.array(last_out - first_accept + 1),
                  accept_cycles=np.array(last_accept - first_accept + 1),
                  total_cycles=np.array(cycle), blocks=np.array(blocks),
                  wall_s=np.array(wall))
