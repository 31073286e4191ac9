"""Replay MX dot-product vectors (IN.npz) through the RTL dot-product unit."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

from cosim import mxdot

REQUIRED = ("a", "a_scale", "b", "b_scale", "a_fmt", "b_fmt")


def add_arguments(p) -> None:
    p.add_argument("--check", action="store_true",
                   help="also run golden.mx.dot and report mismatches (exit 1 if any)")


def load(path: str) -> dict:
    p = Path(path)
    if not p.exists():
        raise SystemExit(f"replay: input file {path} does not exist")
    with np.load(p, allow_pickle=False) as z:
        vec = {k: z[k] for k in z.files}
    missing = [k for k in REQUIRED if k not in vec]
    if missing:
        raise SystemExit(f"replay: {path} lacks array(s) {missing}; required: {list(REQUIRED)}")
    for k in ("a_fmt", "b_fmt"):
        vec[k] = vec[k].astype(str)
        if vec[k].ndim == 0:
            vec[k] = str(vec[k])
    if "acc" not in vec:
        vec["acc"] = np.zeros(vec["a"].shape[0], np.uint32)
    return vec


def replay(args) -> int:
    vec = load(args.inp)
    n = vec["a"].shape[0]
    print(f"replay mx-dot: {n} vectors, K={vec['a'].shape[1]}, sim={args.sim}", file=sys.stderr)
    t0 = time.monotonic()
    try:
        res = mxdot.run(vec, sim=args.sim, tag="replay")
    except ValueError as e:
        raise SystemExit(f"replay: {e}") from None
    out = {"out": res["out"], "error": res["error"]}
    status = 0
    if args.check:
        from cosim.mxdot.vectors import golden_dot

        fa, fb = np.broadcast_to(vec["a_fmt"], (n,)), np.broadcast_to(vec["b_fmt"], (n,))
        gold = golden_dot(vec)
        bad = np.nonzero(gold != res["out"])[0]
        out["golden"], out["mismatches"] = gold, np.array(len(bad))
        for i in bad[:10]:
            print(f"  mismatch vector {i}: {fa[i]} x {fb[i]} golden {gold[i]:#010x} "
                  f"rtl {res['out'][i]:#010x}", file=sys.stderr)
        print(f"  {len(bad)} mismatches of {n}", file=sys.stderr)
        status = 1 if len(bad) else 0
    np.savez(args.out, **out)
    print(f"  wrote {args.out} ({time.monotonic() - t0:.1f} s, {int(res['total_cycles'])} cycles)",
          file=sys.stderr)
    return status
