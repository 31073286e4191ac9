"""`python -m cosim.lint`: Verilator --lint-only on every generated Verilog top.

Waivers (see docs/toolchain.md for why each is safe on Amaranth output):
  DECLFILENAME   Amaranth emits several modules per file, named after the design hierarchy.
  UNUSEDSIGNAL   Amaranth keeps unused slices of wide signals (e.g. unused struct fields).
  UNUSEDPARAM    (same reason, for parameters)
  PROCASSINIT    Amaranth writes each register's power-on value as a declaration initialiser
                 and also assigns it in the clocked process (its reset); this is intended.
  PINCONNECTEMPTY, UNDRIVEN are NOT waived.
Width warnings (WIDTHEXPAND/WIDTHTRUNC) are waived: Amaranth's arithmetic is explicitly
sized by its own rules and its Verilog back end relies on Verilog's implicit extension.
"""

from __future__ import annotations

import subprocess
import sys

from cosim.sim import setup_verilator
from cosim.verilog import generate

WAIVERS = ["-Wno-DECLFILENAME", "-Wno-UNUSEDSIGNAL", "-Wno-UNUSEDPARAM", "-Wno-PROCASSINIT",
           "-Wno-WIDTHEXPAND", "-Wno-WIDTHTRUNC", "-Wno-CASEINCOMPLETE"]


def main(argv=None) -> int:
    """Lint the named tops (default: every regular top; ``--large``: the large tops)."""
    argv = list(argv or [])
    large = "--large" in argv
    names = [a for a in argv if a != "--large"]
    verilator = setup_verilator()
    files = generate(names or None, quiet=True, large=large)
    bad = 0
    for name, path in files.items():
        cmd = [verilator, "--lint-only", "-Wall", *WAIVERS, "--top-module", name, str(path)]
        r = subprocess.run(cmd, capture_output=True, text=True)
        status = "clean" if r.returncode == 0 and "%Warning" not in r.stderr else "FAIL"
        print(f"  lint {name:<28} {status}")
        if status != "clean":
            bad += 1
            print(r.stderr)
    print(f"verilator lint: {len(files) - bad} clean, {bad} with findings (waivers: {' '.join(WAIVERS)})")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
