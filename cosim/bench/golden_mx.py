"""Golden MX numerics throughput: `golden.mx.matmul` per format pair against float64
`np.matmul` on the same 512x512x512 shape, measured side by side in one run, and
`golden.mx.quantize` throughput.

Each pair is timed on two data sets: quantized Gaussian data (what real workloads feed the
tensor unit) and uniformly random finite codes (every exponent equally likely: the worst
case for the exact-rounding checks).

The target (>= 0.1 of float64 matmul speed) is checked with the same resources on both
sides: one thread for the BLAS and one for golden (`matmul_<pair>` rows). The float64
baseline is re-measured next to every pair (best of several repeats) and every ratio uses
the best float64 time of the whole run, so a busy machine can only make the ratios smaller.
The `_allcores` rows repeat the comparison with every core on both sides (threaded BLAS,
golden's row-chunk threads); they are reported without a target because a threaded BLAS on
a machine shared with other jobs varies by up to 10x from one run to the next.
"""

from __future__ import annotations

import contextlib
import os
import time

import numpy as np

try:
    from threadpoolctl import threadpool_limits
except ImportError:  # pragma: no cover
    threadpool_limits = None

from golden import mx

SHAPE = 512  # M = N = K
ELEMS = ("e4m3", "e5m2", "e2m1")
TARGET = ">= 0.1"


def _best(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def _random_codes(fmt: str, rng, shape) -> np.ndarray:
    c = rng.integers(0, 16 if fmt == "e2m1" else 256, shape, dtype=np.uint8)
    if fmt == "e4m3":
        c = np.where((c & 0x7F) == 0x7F, c & 0x80, c)
    elif fmt == "e5m2":
        c = np.where((c & 0x7C) == 0x7C, c & 0x80, c)
    return c.astype(np.uint8)


def _operands(fa, fb, kind, rng):
    n, nb = SHAPE, SHAPE // mx.BLOCK
    if kind == "gaussian":
        x = rng.standard_normal((n, n)).astype(np.float32)
        w = (rng.standard_normal((n, n)) * 0.02).astype(np.float32)  # weights, (N, K)
        a, sa = mx.quantize(x, fa)
        bt, sbt = mx.quantize(w, fb)
    else:
        a, bt = _random_codes(fa, rng, (n, n)), _random_codes(fb, rng, (n, n))
        sa = rng.integers(112, 143, (n, nb), dtype=np.uint8)
        sbt = rng.integers(112, 143, (n, nb), dtype=np.uint8)
    return a, sa, np.ascontiguousarray(bt.T), np.ascontiguousarray(sbt.T)


@contextlib.contextmanager
def _single_thread():
    """One thread on both sides: BLAS (threadpoolctl) and golden's row-chunk threads."""
    old = os.environ.get("MAIA_GOLDEN_THREADS")
    os.environ["MAIA_GOLDEN_THREADS"] = "1"
    try:
        if threadpool_limits is None:
            yield
        else:
            with threadpool_limits(limits=1, user_api="blas"):
                yield
    finally:
        if old is None:
            del os.environ["MAIA_GOLDEN_THREADS"]
        else:
            os.environ["MAIA_GOLDEN_THREADS"] = old


def run() -> dict:
    rng = np.random.default_rng(20260122)
    x64 = rng.standard_normal((SHAPE, SHAPE))
    y64 = rng.standard_normal((SHAPE, SHAPE))
    result: dict = {}
    f64_times, f64_1_times = [], []
    detail = {}
    for kind in ("gaussian", "random"):
        for fa in ELEMS:
            for fb in ELEMS:
                a, sa, b, sb = _operands(fa, fb, kind, rng)
                def golden(a=a, sa=sa, b=b, sb=sb, fa=fa, fb=fb):
                    return mx.matmul(a, sa, fa, b, sb, fb)

                golden()  # warm-up (page faults, thread pools)
                t64 = _best(lambda: np.matmul(x64, y64), 7)
                tg = _best(golden, 3)
                with _single_thread():
                    t64_1 = _best(lambda: np.matmul(x64, y64), 5)
                    tg_1 = _best(golden, 3)
                f64_times.append(t64)
                f64_1_times.append(t64_1)
                key = f"matmul_{fa}x{fb}" + ("" if kind == "gaussian" else "_random")
                detail[key] = {"golden_ms": round(tg * 1e3, 2), "f64_ms": round(t64 * 1e3, 2),
                               "golden_1thread_ms": round(tg_1 * 1e3, 2),
                               "f64_1thread_ms": round(t64_1 * 1e3, 2)}
    t64, t64_1 = min(f64_times), min(f64_1_times)
    for key, d in detail.items():
        result[key] = {"value": round(t64_1 * 1e3 / d["golden_1thread_ms"], 4),
                       "unit": "x f64 matmul (1 thread each)", "target": TARGET}
    for key, d in detail.items():
        result[key + "_allcores"] = {"value": round(t64 * 1e3 / d["golden_ms"], 4),
                                     "unit": "x f64 matmul (all cores each)", "target": None}
    # quantize: binary32 elements per second, (512, 512) input
    xq = rng.standard_normal((SHAPE, SHAPE)).astype(np.float32)
    for fmt in ELEMS:
        tq = _best(lambda fmt=fmt: mx.quantize(xq, fmt), 5)
        result[f"quantize_{fmt}"] = {"value": round(xq.size / tq / 1e6, 2),
                                     "unit": "Melem/s", "target": None}
    result["f64_matmul_ms_best"] = {"value": round(t64 * 1e3, 3), "unit": "ms",
                                    "target": None}
    result["f64_matmul_1thread_ms_best"] = {"value": round(t64_1 * 1e3, 3), "unit": "ms",
                                            "target": None}
    result["load_average"] = os.getloadavg()
    result["shape"] = [SHAPE, SHAPE, SHAPE]
    result["times"] = detail
    result["notes"] = ("value = best float64 np.matmul time of the run / golden matmul time "
                       "(best of 3) on the same shape, one thread on each side; '_random' rows use "
                       "uniformly random finite codes and scales; '_allcores' rows use every "
                       "core on both sides (no target: load-sensitive); "
                       "'times' holds each pair's own timings; load_average is the host's "
                       "(1, 5, 15 min) load when the run ended (2 cores shared).")
    return result
