"""`python -m cosim.replay KIND IN.npz OUT.npz [--sim icarus|verilator]`

Runs vectors or programs from any source through the RTL and writes the results:

  mx-dot  IN.npz: a, b (uint8 [N,K] codes, unpacked), a_scale, b_scale (uint8 [N,K/32]),
          acc (uint32 [N] binary32 bits, optional: +0), a_fmt, b_fmt (format name strings,
          or arrays of N names). OUT.npz: out (uint32 [N]), error (uint8 [N]), and, with
          --check, golden (uint32 [N]) and mismatches (int).

Each KIND is implemented by ``cosim.<block>.replay`` with ``add_arguments(parser)`` and
``replay(args) -> int``; blocks add their own kinds to KINDS below.
"""

from __future__ import annotations

import argparse
import importlib
import sys

KINDS = {
    "mx-dot": "cosim.mxdot.replay",
    "tile": "cosim.tile.replay",
}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m cosim.replay", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="kind", required=True)
    for kind, modname in KINDS.items():
        try:
            mod = importlib.import_module(modname)
        except ModuleNotFoundError as e:
            if e.name and modname.startswith(e.name):
                continue  # block not present in this checkout
            raise
        p = sub.add_parser(kind, help=(mod.__doc__ or "").strip().splitlines()[0])
        p.add_argument("inp", metavar="IN.npz")
        p.add_argument("out", metavar="OUT.npz")
        p.add_argument("--sim", choices=("icarus", "verilator"), default="verilator")
        mod.add_arguments(p)
        p.set_defaults(_mod=mod)
    args = ap.parse_args(argv)
    return args._mod.replay(args)


if __name__ == "__main__":
    sys.exit(main())
