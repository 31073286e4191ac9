"""`make run`: the project's demonstration.

Part 1 quantizes real-valued activations and weights to MX formats with the golden model,
runs the resulting block dot products (a small MX matrix product) through the RTL
dot-product unit on Icarus (or --sim verilator), compares every result with golden bit for
bit, and prints a report: vectors, mismatches, cycles, sustained blocks per cycle, and the
quantization error against a float64 reference.

Part 2 (skip with --no-chip) is the whole-chip demonstration, `cosim.chip.demo`: quantized
GEMMs tiled across the clusters and tiles of the `default` chip configuration
(``MAIA_CHIP_CFG`` picks another), run on the RTL chip (Verilator) and on the golden chip
model, with mismatches (must be 0), cycles,
utilization, the golden cycle estimate and the `maia200` configuration's estimate.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

import cosim.mxdot as drv
from golden import mx

CASES = [("e4m3", "e4m3"), ("e4m3", "e2m1"), ("e5m2", "e4m3"), ("e2m1", "e2m1")]


def build_case(rng, M: int, N: int, K: int, fa: str, fb: str):
    """Activations X[M,K] (heavy-tailed) and weights W[K,N], quantized along K."""
    x = (rng.standard_normal((M, K)) * np.exp(rng.standard_normal((M, 1)))).astype(np.float32)
    w = (rng.standard_normal((K, N)) / np.sqrt(K)).astype(np.float32)
    a, sa = mx.quantize(x, fa)
    bt, sbt = mx.quantize(w.T.copy(), fb)  # quantize columns of W along K
    # all (m, n) pairs as dot-product vectors
    vec = dict(a=np.repeat(a, N, axis=0), a_scale=np.repeat(sa, N, axis=0),
               b=np.tile(bt, (M, 1)), b_scale=np.tile(sbt, (M, 1)),
               acc=np.zeros(M * N, np.uint32), a_fmt=fa, b_fmt=fb)
    ref = (x.astype(np.float64) @ w.astype(np.float64)).ravel()
    return vec, ref, (a, sa, bt.T.copy(), sbt.T.copy())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sim", choices=("icarus", "verilator"), default="icarus")
    ap.add_argument("--seed", type=int, default=2026)
    ap.add_argument("-M", type=int, default=4)
    ap.add_argument("-N", type=int, default=4)
    ap.add_argument("-K", type=int, default=256)
    ap.add_argument("--no-chip", action="store_true", help="skip the whole-chip part")
    args = ap.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    print(f"maia-rtl demo: MX quantization + block dot products on the RTL ({args.sim}), "
          f"seed {args.seed}")
    print(f"  C[{args.M}x{args.N}] = X[{args.M}x{args.K}] . W[{args.K}x{args.N}] per format "
          f"pair; every element is one dot product through the RTL unit\n")
    hdr = (f"  {'A x B':<13}{'vectors':>8}{'mismatch':>9}{'beats':>7}{'cycles':>8}"
           f"{'blocks/cyc':>11}{'MACs/cyc':>9}{'rel.err vs fp64':>17}{'sim s':>7}")
    print(hdr)
    print("  " + "-" * (len(hdr) - 2))
    total_bad = 0
    for fa, fb in CASES:
        vec, ref, (a, sa, b, sb) = build_case(rng, args.M, args.N, args.K, fa, fb)
        t0 = time.monotonic()
        res = drv.run(vec, sim=args.sim, tag="demo")
        wall = time.monotonic() - t0
        gold = mx.dot(vec["a"], vec["a_scale"], fa, vec["b"], vec["b_scale"], fb, vec["acc"])
        gold_mm = mx.matmul(a, sa, fa, b, sb, fb).ravel()
        assert np.array_equal(gold, gold_mm), "golden dot and matmul disagree"
        bad = int(np.count_nonzero(gold != res["out"]))
        total_bad += bad
        got = res["out"].view(np.float32).astype(np.float64)
        err = np.linalg.norm(got - ref) / max(np.linalg.norm(ref), 1e-30)
        beats = int(res["accept_cycles"])
        blocks = int(res["blocks"])
        macs = blocks * 32 / beats
        print(f"  {fa + ' x ' + fb:<13}{len(gold):>8}{bad:>9}{beats:>7}{int(res['total_cycles']):>8}"
              f"{blocks / beats:>11.2f}{macs:>9.0f}{err:>17.2e}{wall:>7.1f}")
        if bad:
            for i in np.nonzero(gold != res["out"])[0][:5]:
                print(f"    mismatch #{i}: golden {gold[i]:#010x} rtl {res['out'][i]:#010x}")
    print()
    print(f"  result: {'PASS' if total_bad == 0 else 'FAIL'}: {total_bad} mismatches between "
          f"RTL and golden (bit-exact comparison of binary32 results)")
    print("  blocks/cyc: sustained rate with no backpressure (1 block of 32 per cycle for FP8,"
          " 2 for e2m1 x e2m1)")
    chip_status = 0
    if not args.no_chip:
        from cosim.chip import demo as chip_demo

        print("\n(the first Verilator build of the chip takes a few minutes)", flush=True)
        chip_status = chip_demo.main([])
    return 1 if (total_bad or chip_status) else 0


if __name__ == "__main__":
    sys.exit(main())
