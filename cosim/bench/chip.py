"""Whole-chip benchmarks: end-to-end GEMM efficiency vs the roofline, golden cycle estimate
vs RTL cycles, simulation speed (Verilator, Icarus) beside golden-model speed.
``make bench BENCH=chip`` -> build/bench/chip.json.

GEMM: 512 x 512 x 512 e4m3 on ``tiny_4m`` (one cluster with one 1x1-cell tile, a 4 MiB
HBM window so the operands fit and a 64 KiB TSRAM), so the run fits the bench budget.
BENCH_CHIP_CFG=<name> selects another configuration (``default``: long Verilator build).
Roofline of the simulated configuration: min(peak MACs/cycle, HBM bytes/cycle x MACs per
HBM byte), with HBM bytes counted as A + B + C once each (the minimum traffic).
"""

from __future__ import annotations

import os
import time

from cosim.chip.program import compare, random_gemm
from spec import chip as C


def run() -> dict:
    cfg = C.config(os.environ.get("BENCH_CHIP_CFG", "tiny_4m"))
    M, N, K = 512, 512, 512
    print(f"chip bench: {M}x{N}x{K} e4m3 GEMM on {cfg.name}; golden model, then the RTL on "
          f"Verilator (first run builds the model: minutes)", flush=True)
    p, h, ref = random_gemm(cfg, M, N, K, "e4m3", "e4m3", seed=1, ring_slots=16384)
    t0 = time.perf_counter()
    g = p.run("golden")
    t_golden = time.perf_counter() - t0
    r = p.run("verilator", max_cycles=30_000_000)
    errs = compare(g, r)
    macs = p.macs
    hbm_bytes = M * K + K * N + 4 * M * N
    roof = min(cfg.peak_macs_per_cycle("e4m3"), cfg.hbm_bytes_per_cycle * macs / hbm_bytes)
    eff = macs / r.cycles / roof
    out = {
        "config": cfg.name, "gemm": f"{M}x{N}x{K} e4m3",
        "mismatches": {"value": len(errs) + int((h.read(r) != ref).sum()), "unit": "",
                       "target": "== 0"},
        "gemm_efficiency_vs_roofline": {"value": round(eff, 3), "unit": "",
                                        "target": ">= 0.7"},
        "rtl_cycles": {"value": r.cycles, "unit": "cycles"},
        "golden_estimate_error": {"value": round(abs(g.cycles - r.cycles) / r.cycles, 3),
                                  "unit": "fraction", "target": "<= 0.1"},
        "verilator_cycles_per_s": {"value": round(r.cycles / max(r.wall_s, 1e-9)),
                                   "unit": "cycles/s"},
        "golden_cycles_per_s": {"value": round(g.cycles / max(t_golden, 1e-9)),
                                "unit": "cycles/s"},
    }
    # Icarus: a small GEMM (Icarus is ~1000x slower)
    p2, _, _ = random_gemm(C.TINY, 16, 16, 64, "e4m3", "e4m3", seed=2)
    r2 = p2.run("icarus")
    out["icarus_cycles_per_s"] = {"value": round(r2.cycles / max(r2.wall_s, 1e-9)),
                                  "unit": "cycles/s"}
    return out
