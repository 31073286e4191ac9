"""Whole-chip demonstration (``cosim.chip.demo.main()``, part 2 of `make run`).

Builds the chip (``MAIA_CHIP_CFG``, default ``default``: 4 clusters x 2 tiles on the NoC;
``tiny`` builds in a third of the time) and runs one program through the RTL
(``MAIA_CHIP_SIM``, default Verilator) and the golden chip model: a quantized transformer
block in MXFP8/MXFP4 (an attention head, then a two-layer MLP with MXFP4 weights) and a
GEMM whose K is larger than a tile's MATMUL limit. Prints per layer the mismatches against
the golden chip and against the layer definition (must be 0), the error against float64,
then RTL cycles, the golden estimate, MAC utilization, and the ``maia200`` configuration's
peak figures and roofline estimate.
"""

from __future__ import annotations

import os
import sys
import time

import numpy as np

from cosim.chip.program import ChipProgram, compare
from golden import mx
from spec import chip as C


def maia200_estimate(M: int, N: int, K: int, fmt: str = "e2m1") -> dict:
    cfg = C.MAIA200
    flops = 2 * M * N * K
    bytes_moved = (M * K + K * N) * (0.5 if fmt == "e2m1" else 1) + 4 * M * N
    t_compute = flops / cfg.peak_flops(fmt)
    t_mem = bytes_moved / cfg.hbm_bandwidth
    return {"peak_tflops": cfg.peak_flops(fmt) / 1e12, "roofline_s": max(t_compute, t_mem),
            "bound": "compute" if t_compute >= t_mem else "HBM"}


def build(cfg: C.ChipConfig, seed: int = 7):
    """The demo program: (program, {name: (handle, float64 reference)})."""
    rng = np.random.default_rng(seed)
    L, d, hidden = 16, 32, 64
    x = rng.standard_normal((L, d)).astype(np.float32)
    wq, wk, wv = (rng.standard_normal((d, d)) / np.sqrt(d) for _ in range(3))
    q, k, v = ((x @ w).astype(np.float32) for w in (wq, wk, wv))
    kk = np.concatenate([k, rng.standard_normal((32 - L, d)).astype(np.float32)])
    vv = np.concatenate([v, rng.standard_normal((32 - L, d)).astype(np.float32)])
    w1 = (rng.standard_normal((d, hidden)) / np.sqrt(d)).astype(np.float32)
    w2 = (rng.standard_normal((hidden, d)) / np.sqrt(hidden)).astype(np.float32)
    p = ChipProgram(cfg)
    out = {}
    h = p.attention(q, kk, vv)
    s = q.astype(np.float64) @ kk.T / np.sqrt(d)
    pr = np.exp(s - s.max(1, keepdims=True))
    out["attention MXFP8"] = (h, (pr / pr.sum(1, keepdims=True)) @ vv)
    h = p.mlp(x, w1, w2, w_fmt="e2m1", h_fmt="e4m3")
    out["MLP MXFP8 x MXFP4"] = (h, np.maximum(x.astype(np.float64) @ w1, 0) @ w2)
    K = 2 * cfg.tile.max_k
    a, sa = mx.quantize(rng.standard_normal((16, K)).astype(np.float32), "e4m3")
    bt, sbt = mx.quantize(rng.standard_normal((32, K)).astype(np.float32), "e2m1")
    h = p.gemm(a, sa, "e4m3", bt.T, sbt.T, "e2m1")
    ref = mx.matmul(a, sa, "e4m3", bt.T, sbt.T, "e2m1")
    out[f"GEMM 16x32x{K} (K chunks)"] = (h, ref)
    return p, out


def main(argv=None) -> int:
    sim = os.environ.get("MAIA_CHIP_SIM", "verilator")
    cfg = C.config(os.environ.get("MAIA_CHIP_CFG", "default"))
    print(f"== whole chip: configuration {cfg.name} ({cfg.clusters} clusters x {cfg.tiles} "
          f"tiles of {cfg.tile.rows}x{cfg.tile.cols} MX cells), RTL on {sim} ==")
    p, layers = build(cfg)
    t0 = time.monotonic()
    g = p.run("golden")
    tg = time.monotonic() - t0
    print(f"  golden chip model: {tg:.2f} s; RTL on {sim} (a first run builds the model, "
          f"a few minutes) ...", flush=True)
    r = p.run(sim)
    errs = compare(g, r)
    for e in errs[:10]:
        print("   ", e)
    fails = len(errs)
    print(f"  {'layer':<30}{'vs golden chip':>15}{'vs definition':>14}{'rel.err vs fp64':>17}")
    for name, (h, ref) in layers.items():
        got = h.read(r)
        n_chip = int(np.count_nonzero(got != h.read(g)))
        if hasattr(h, "reference"):
            n_def = int(np.count_nonzero(got != h.reference()))
            f = got.view(np.float32).astype(np.float64)
            err = f"{np.linalg.norm(f - ref) / np.linalg.norm(ref):.3f}"
        else:  # GEMM: the definition is golden.mx.matmul
            n_def = int(np.count_nonzero(got != ref))
            err = "exact MX"
        fails += n_chip + n_def
        print(f"  {name:<30}{n_chip:>15}{n_def:>14}{err:>17}")
    util = p.macs / (cfg.peak_macs_per_cycle("e4m3") * max(1, r.cycles))
    print(f"  RTL {r.cycles} cycles ({r.wall_s:.1f} s), golden estimate {g.cycles} "
          f"({100 * (g.cycles - r.cycles) / max(1, r.cycles):+.1f} %), {p.macs} MACs, "
          f"utilization {util:.2f} of the FP8 peak (small layers: DMA and TVP dominate)")
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
