"""`python -m cosim.verilog [--large | --all] [NAME ...]`: write every block's Verilog to build/verilog/.

Blocks are found by importing every module of the ``rtl`` package and collecting its
``VERILOG_TOPS`` dict ({verilog_name: zero-argument factory}). ``LARGE_VERILOG_TOPS`` (same
form) holds designs that take minutes to generate (the default chip, the whole maia200 chip, the tray):
they are written only with ``--large`` (`make verilog-large`) or when named, and
hierarchically (rtl.hier: each distinct tile is generated once and instantiated). ``--all``
writes both sets (`make verilog`: the chip top in its default and maia200 configurations).

A top is regenerated only when the sources its factory reaches through static imports changed
(``cosim.sim.source_fingerprint``; the key sits beside the file as ``.<name>.key``)."""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
import time
from pathlib import Path

from cosim.sim import BUILD, source_fingerprint, to_verilog, write_if_changed
from rtl import hier

OUT = BUILD / "verilog"


def discover(large: bool = False) -> dict:
    """{name: factory} of every ``VERILOG_TOPS`` (and ``LARGE_VERILOG_TOPS`` when large)."""
    import rtl

    tops = {}
    attrs = ("VERILOG_TOPS", "LARGE_VERILOG_TOPS") if large else ("VERILOG_TOPS",)
    for mod in sorted(pkgutil.iter_modules(rtl.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"rtl.{mod.name}")
        for name, factory in [kv for a in attrs for kv in getattr(module, a, {}).items()]:
            if name in tops:
                raise RuntimeError(f"Verilog top {name!r} defined twice (rtl.{mod.name})")
            tops[name] = factory
    return tops


def _show(path: Path) -> str:
    return str(path.relative_to(BUILD.parent) if path.is_relative_to(BUILD.parent) else path)


def generate(names=None, out: Path = OUT, quiet: bool = False,
             large: bool | None = False) -> dict[str, Path]:
    """Write the named tops (default: every regular top; with ``large`` only the large
    ones; ``large=None``: both). Names may be regular or large tops. Tops whose sources did
    not change since they were last written are kept."""
    tops = discover(large=True)
    if not names:
        small = discover()
        names = [n for n in tops if large is None or (n not in small) == large]
    if names:
        unknown = sorted(set(names) - set(tops))
        if unknown:
            raise SystemExit(f"unknown Verilog top(s) {unknown}; known: {sorted(tops)}")
        tops = {n: tops[n] for n in names}
    large_names = set(tops) - set(discover())
    written = {}
    for name, factory in tops.items():
        t0 = time.monotonic()
        path = out / f"{name}.v"
        stamp = out / f".{name}.key"
        key = f"{source_fingerprint(factory)} hier={name in large_names}\n"
        if path.exists() and stamp.exists() and stamp.read_text() == key:
            written[name] = path
            if not quiet:
                print(f"  {name:<28} unchanged sources, kept {_show(path)}")
            continue
        if name in large_names:
            # large tops: every distinct repeated block (rtl.hier.instance: the tiles) is
            # generated once and instantiated, instead of once per instance
            if not quiet:
                print(f"  {name}: generating (large design, hierarchical) ...", flush=True)
            text = hier.generate_hierarchical(
                factory(), name, to_verilog,
                progress=None if quiet else lambda mod: print(f"    module {mod} ...",
                                                              flush=True))
        else:
            text = to_verilog(factory(), name)
        path = write_if_changed(path, text)
        stamp.write_text(key)
        written[name] = path
        if not quiet:
            lines = path.read_text().count("\n")
            print(f"  {name:<28} {lines:>7} lines  {time.monotonic() - t0:5.1f} s  -> {_show(path)}")
    return written


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("names", nargs="*", help="Verilog tops to write (default: all regular "
                    "tops)")
    group = ap.add_mutually_exclusive_group()
    group.add_argument("--large", action="store_true", help="write the large tops "
                       "(LARGE_VERILOG_TOPS) instead")
    group.add_argument("--all", action="store_true", help="write the regular and the large "
                       "tops")
    args = ap.parse_args(argv)
    print(f"Writing Verilog to {OUT.relative_to(BUILD.parent)}/")
    generate(args.names, large=None if args.all else args.large)
    return 0


if __name__ == "__main__":
    sys.exit(main())
