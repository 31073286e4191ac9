"""Whole-chip benchmarks: end-to-end GEMM efficiency vs the roofline, golden cycle estimate
vs RTL cycles, simulation speed (Verilator, Icarus) beside golden-model speed.
``make bench BENCH=chip`` -> build/bench/chip.json.

GEMM: 512 x 512 x 512 e4m3 on ``tiny_4m`` (one cluster with one 1x1-cell tile, a 4 MiB
HBM window so the operands fit and a 64 KiB TSRAM), so the run fits the bench budget.
BENCH_CHIP_CFG=<name> selects another configuration (``default``: long Verilator build).
BENCH_CHIP_DEFAULT=1 adds the ``default`` chip (2 x 2 clusters, 8 tiles of 2 x 2 cells,
generated hierarchically): a 128 x 128 x 256 GEMM on Verilator against golden, its
Verilator build time (the first build takes many minutes) and simulation speed.
Roofline of the simulated configuration: min(peak MACs/cycle, HBM bytes/cycle x MACs per
HBM byte), with HBM bytes counted as A + B + C once each (the minimum traffic).

Golden estimate vs RTL on multi-cluster chips (docs/chip.md "Performance model"): one row
per calibration configuration (``quad``, ``duo_y``; BENCH_CHIP_CALIB=0 skips them), the
largest estimate error over its calibration programs (cosim.chip.calibration: concurrent
cluster-DMA copies, tile-DMA-window traffic, a GEMM over every tile, a random multi-queue
program), each also checked golden == RTL.
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
    if os.environ.get("BENCH_CHIP_CALIB", "1") not in ("", "0"):
        for name in CALIB_CONFIGS:
            out.update(calibration(name))
    if os.environ.get("BENCH_CHIP_DEFAULT", "0") not in ("", "0"):
        out.update(default_chip())
    # Icarus: a small GEMM (Icarus is ~1000x slower)
    p2, _, _ = random_gemm(C.TINY, 16, 16, 64, "e4m3", "e4m3", seed=2)
    r2 = p2.run("icarus")
    out["icarus_cycles_per_s"] = {"value": round(r2.cycles / max(r2.wall_s, 1e-9)),
                                  "unit": "cycles/s"}
    return out


CALIB_CONFIGS = ("quad", "duo_y")
CALIB_PROGRAMS = (("dma", {}), ("dma", {"clusters": (0,)}), ("tile_dma", {}), ("gemm", {}),
                  ("fuzz", {}))


def calibration(name: str, programs=CALIB_PROGRAMS) -> dict:
    """Golden estimate vs RTL (Verilator) on calibration chip ``name``: the largest error
    over ``programs`` (kind, kwargs of cosim.chip.calibration.program), mismatches summed."""
    from cosim.chip import calibration as K

    cfg = C.config(name)
    worst, mism, rows = 0.0, 0, []
    for kind, kw in programs:
        p = K.program(kind, cfg, **kw)
        g, r = p.run("golden"), p.run("verilator")
        mism += len(compare(g, r))
        err = (g.cycles - r.cycles) / r.cycles
        worst = max(worst, abs(err))
        rows.append(f"{kind}{kw or ''}: rtl {r.cycles} est {g.cycles} ({err:+.1%})")
        print(f"chip bench calibration {name}: {rows[-1]}", flush=True)
    return {f"{name}_golden_estimate_error": {"value": round(worst, 3), "unit": "fraction",
                                              "target": "<= 0.1", "note": "; ".join(rows)},
            f"{name}_mismatches": {"value": mism, "unit": "", "target": "== 0"}}


def default_chip(M: int = 128, N: int = 128, K: int = 256) -> dict:
    """The ``default`` chip on Verilator: build time (from the build's stamp: the time the
    first build took, even when it is cached now), GEMM mismatches, cycles and speed."""
    import cosim.chip as drv

    cfg = C.DEFAULT
    t0 = time.perf_counter()
    bdir = drv.build(cfg, "verilator")
    t_here = time.perf_counter() - t0
    p, h, ref = random_gemm(cfg, M, N, K, "e4m3", "e4m3", seed=4, bn=16)
    g = p.run("golden")
    r = p.run("verilator")
    errs = compare(g, r)
    roof = min(cfg.peak_macs_per_cycle("e4m3"),
               cfg.hbm_bytes_per_cycle * p.macs / (M * K + K * N + 4 * M * N))
    return {
        "default_gemm": f"{M}x{N}x{K} e4m3 on default",
        "default_mismatches": {"value": len(errs) + int((h.read(r) != ref).sum()),
                               "unit": "", "target": "== 0"},
        "default_rtl_cycles": {"value": r.cycles, "unit": "cycles"},
        "default_golden_estimate_error": {
            "value": round(abs(g.cycles - r.cycles) / r.cycles, 3), "unit": "fraction",
            "target": "<= 0.1"},
        "default_gemm_efficiency_vs_roofline": {"value": round(p.macs / r.cycles / roof, 3),
                                                "unit": ""},
        "default_verilator_build_s": {
            "value": float((bdir / ".built").read_text().split()[0]), "unit": "s",
            "note": f"recorded when built; {t_here:.0f} s in this run (cached if small)"},
        "default_verilator_cycles_per_s": {"value": round(r.cycles / max(r.wall_s, 1e-9)),
                                           "unit": "cycles/s"},
    }
