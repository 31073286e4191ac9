"""cocotb bench of the traffic top (rtl.noc.traffic.TrafficBench).

Inputs (cosim.sim.bench_inputs): ``points`` (int64 [n, len(POINT_FIELDS)]), one row per run,
and ``scoreboard`` (0/1). For each point the bench resets the design, writes the
configuration, pulses ``start`` and waits for ``done`` (no per-cycle Python unless the
scoreboard is on), then reads the counters. Outputs: ``results`` [n, len(RESULT_FIELDS)] and,
with the scoreboard, ``sb_delivered``, ``sb_injected`` and ``sb_errors`` (count)."""

from __future__ import annotations

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, RisingEdge, with_timeout

from cosim.noc.scoreboard import Scoreboard
from cosim.sim import bench_inputs, bench_outputs, bench_params
from rtl.noc.traffic import TrafficConfig

POINT_FIELDS = ("rate", "pattern", "length", "target", "hot_thresh", "cls_mode", "bp",
                "corrupt", "warmup", "measure", "drain_max")
RESULT_FIELDS = ("cycles", "timed_out", "created", "created_marked", "throttled", "packets",
                 "flits", "flits_window", "marked", "lat_sum", "lat_max", "err_route",
                 "err_seq", "err_payload", "err_frame", "err_router")


def pack_config(pt: dict) -> int:
    """The TrafficConfig struct as one integer (struct ports are flat vectors in Verilog)."""
    word = 0
    for name, fld in TrafficConfig:
        word |= (pt[name] & ((1 << fld.width) - 1)) << fld.offset
    return word


async def reset(dut):
    dut.rst.value = 1
    dut.start.value = 0
    for _ in range(2):
        await RisingEdge(dut.clk)
    dut.rst.value = 0
    await RisingEdge(dut.clk)


async def monitor(dut, sb: Scoreboard, n: int, stop: list):
    C = 2
    cycle = 0
    while not stop:
        await FallingEdge(dut.clk)
        cycle += 1
        fi = int(dut.mon_inj_fire.value)
        fe = int(dut.mon_ej_fire.value)
        for k in range(n * C):
            if fi >> k & 1:
                v = int(getattr(dut, f"mon_inj_flit__{k}").value)
                sb.on_inject(k // C, k % C, v & 3, v >> 2, cycle)
            if fe >> k & 1:
                v = int(getattr(dut, f"mon_ej_flit__{k}").value)
                sb.on_eject(k // C, k % C, v & 3, v >> 2, cycle)


@cocotb.test()
async def traffic_run(dut):
    params = bench_params()
    inputs = bench_inputs()
    points = inputs["points"]
    use_sb = bool(int(inputs.get("scoreboard", np.array(0))))
    kx, ky = int(params["kx"]), int(params["ky"])
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    results = np.zeros((len(points), len(RESULT_FIELDS)), dtype=np.int64)
    sb_errors, sb_deliv, sb_inj = [], [], []
    for i, row in enumerate(points):
        pt = dict(zip(POINT_FIELDS, (int(v) for v in row)))
        await reset(dut)
        dut.cfg.value = pack_config(pt)
        dut.warmup.value = pt["warmup"]
        dut.measure.value = pt["measure"]
        dut.drain_max.value = pt["drain_max"]
        sb, stop = None, []
        if use_sb:
            sb = Scoreboard(kx, ky)
            mon = cocotb.start_soon(monitor(dut, sb, kx * ky, stop))
        dut.start.value = 1
        await RisingEdge(dut.clk)
        dut.start.value = 0
        budget = pt["warmup"] + pt["measure"] + 2 * pt["drain_max"] + 100
        await with_timeout(RisingEdge(dut.done), budget * 10 + 1000, "ns")
        await FallingEdge(dut.clk)
        if sb is not None:
            await FallingEdge(dut.clk)
            stop.append(1)
            await mon
        vals = {"cycles": int(dut.now.value),
                "timed_out": int(dut.timed_out.value),
                "lat_sum": int(dut.tot_lat_sum.value),
                "lat_max": int(dut.tot_lat_max.value)}
        for k in RESULT_FIELDS:
            if k not in vals:
                vals[k] = int(getattr(dut, f"tot_{k}").value)
        results[i] = [vals[k] for k in RESULT_FIELDS]
        if sb is not None:
            errs = sb.finish(drained=not vals["timed_out"])
            for e in errs[:10]:
                dut._log.error("scoreboard: %s", e)
            sb_errors.append(len(errs))
            sb_deliv.append(sb.delivered)
            sb_inj.append(sb.injected)
        dut._log.info("point %d %s -> %s", i, pt, vals)
    out = {"results": results}
    if use_sb:
        out.update(sb_errors=np.array(sb_errors), sb_delivered=np.array(sb_deliv),
                   sb_injected=np.array(sb_inj))
    bench_outputs(**out)
