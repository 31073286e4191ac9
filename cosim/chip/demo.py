"""Whole-chip demonstration (``cosim.chip.demo.main()``; the lead wires it into `make run`).

Builds the chip, runs a quantized GEMM (an MLP layer's matmul in MXFP8 and MXFP4 x MXFP8)
through the RTL and the golden model, prints mismatches (must be 0), cycles, utilization,
the golden estimate, and the maia200 peak figures and roofline estimate for the same GEMM.
Softmax/attention blocks are not built by the program API yet (docs/chip.md "Status").
"""

from __future__ import annotations

import os
import sys

import numpy as np

from cosim.chip.program import ChipProgram, compare
from golden import mx
from spec import chip as C


def _gemm(cfg, M, N, K, fa, fb, seed):
    rng = np.random.default_rng(seed)
    a, sa = mx.quantize(rng.standard_normal((M, K)).astype(np.float32), fa)
    bt, sbt = mx.quantize(rng.standard_normal((N, K)).astype(np.float32), fb)
    p = ChipProgram(cfg)
    h = p.gemm(a, sa, fa, bt.T, sbt.T, fb)
    return p, h, mx.matmul(a, sa, fa, bt.T, sbt.T, fb)


def maia200_estimate(M: int, N: int, K: int, fmt: str = "e2m1") -> dict:
    cfg = C.MAIA200
    flops = 2 * M * N * K
    bytes_moved = (M * K + K * N) * (0.5 if fmt == "e2m1" else 1) + 4 * M * N
    t_compute = flops / cfg.peak_flops(fmt)
    t_mem = bytes_moved / cfg.hbm_bandwidth
    return {"peak_tflops": cfg.peak_flops(fmt) / 1e12, "roofline_s": max(t_compute, t_mem),
            "bound": "compute" if t_compute >= t_mem else "HBM"}


def main(argv=None) -> int:
    sim = os.environ.get("MAIA_CHIP_SIM", "verilator")
    cfg = C.config(os.environ.get("MAIA_CHIP_CFG", "tiny"))
    print(f"== whole chip: configuration {cfg.name} ({cfg.clusters} clusters x {cfg.tiles} "
          f"tiles of {cfg.tile.rows}x{cfg.tile.cols} MX cells), RTL on {sim} ==")
    fails = 0
    for fa, fb, (M, N, K) in [("e4m3", "e4m3", (64, 64, 128)), ("e2m1", "e4m3", (32, 64, 256))]:
        p, h, ref = _gemm(cfg, M, N, K, fa, fb, seed=7)
        g = p.run("golden")
        r = p.run(sim)
        errs = compare(g, r)
        mism = int(np.count_nonzero(h.read(r) != ref))
        util = p.macs / (cfg.peak_macs_per_cycle("e4m3") * max(1, r.cycles))
        print(f"  GEMM {M}x{N}x{K} {fa} x {fb}: mismatches vs golden {len(errs)}, vs "
              f"golden.mx.matmul {mism}; RTL {r.cycles} cycles, golden estimate {g.cycles} "
              f"({100 * (g.cycles - r.cycles) / r.cycles:+.1f} %), utilization {util:.2f}")
        fails += len(errs) + mism
    e = maia200_estimate(8192, 8192, 8192)
    m2 = C.MAIA200
    print(f"  maia200: FP4 {m2.peak_flops('e2m1') / 1e12:,.0f} TFLOPS, FP8 "
          f"{m2.peak_flops('e4m3') / 1e12:,.0f} TFLOPS at {m2.clock_hz / 1e9:.2f} GHz, SRAM "
          f"{m2.sram_bytes / 1e6:,.0f} MB, HBM {m2.hbm_bandwidth / 1e12:.2f} TB/s; 8192^3 "
          f"MXFP4 GEMM roofline {e['roofline_s'] * 1e6:.0f} us ({e['bound']} bound)")
    print("mismatches:", fails)
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
