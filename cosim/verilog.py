"""`python -m cosim.verilog [NAME ...]`: write every block's Verilog to build/verilog/.

Blocks are found by importing every module of the ``rtl`` package and collecting its
``VERILOG_TOPS`` dict ({verilog_name: zero-argument factory})."""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
import time
from pathlib import Path

from cosim.sim import BUILD, to_verilog, write_if_changed

OUT = BUILD / "verilog"


def discover() -> dict:
    import rtl

    tops = {}
    for mod in sorted(pkgutil.iter_modules(rtl.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"rtl.{mod.name}")
        for name, factory in getattr(module, "VERILOG_TOPS", {}).items():
            if name in tops:
                raise RuntimeError(f"Verilog top {name!r} defined twice (rtl.{mod.name})")
            tops[name] = factory
    return tops


def generate(names=None, out: Path = OUT, quiet: bool = False) -> dict[str, Path]:
    tops = discover()
    if names:
        unknown = sorted(set(names) - set(tops))
        if unknown:
            raise SystemExit(f"unknown Verilog top(s) {unknown}; known: {sorted(tops)}")
        tops = {n: tops[n] for n in names}
    written = {}
    for name, factory in tops.items():
        t0 = time.monotonic()
        path = write_if_changed(out / f"{name}.v", to_verilog(factory(), name))
        written[name] = path
        if not quiet:
            lines = path.read_text().count("\n")
            print(f"  {name:<28} {lines:>7} lines  {time.monotonic() - t0:5.1f} s  -> {path.relative_to(BUILD.parent)}")
    return written


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("names", nargs="*", help="Verilog tops to write (default: all)")
    args = ap.parse_args(argv)
    print(f"Writing Verilog to {OUT.relative_to(BUILD.parent)}/")
    generate(args.names)
    return 0


if __name__ == "__main__":
    sys.exit(main())
