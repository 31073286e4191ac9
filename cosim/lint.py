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

import re
import subprocess
import sys
import tempfile
from pathlib import Path

from cosim.sim import setup_verilator
from cosim.verilog import generate

WAIVERS = ["-Wno-DECLFILENAME", "-Wno-UNUSEDSIGNAL", "-Wno-UNUSEDPARAM", "-Wno-PROCASSINIT",
           "-Wno-WIDTHEXPAND", "-Wno-WIDTHTRUNC", "-Wno-CASEINCOMPLETE"]

# Tops too big for one Verilator run on the project's 24 GB machine, linted in two parts:
# the module the pattern names (with its submodules) alone, then the rest with that module
# replaced by a port-only stub. chip_maia200: one Verilator run over its 640 instances of the
# 8x8-cell tile needs more than 23 GB; the parts take 15 GB (top, tile stubbed) and 2 GB.
LINT_IN_PARTS = {"chip_maia200": r"tile_[0-9a-f]{10}"}

_MODULE = re.compile(r"^module \\?([^\s(]+)", re.M)


def modules(text: str) -> dict[str, str]:
    """{module name: its Verilog text} of an Amaranth/Yosys Verilog file (escaped names
    without their backslash)."""
    out = {}
    for m in _MODULE.finditer(text):
        end = text.index("\nendmodule", m.start()) + len("\nendmodule")
        out[m.group(1)] = text[m.start():end]
    return out


def stub(module: str) -> str:
    """``module`` with its ports only, every output tied to 0."""
    lines = module.split("\n")
    head = []
    for ln in lines:
        head.append(ln)
        if ln.rstrip().endswith(");"):
            break
    ports = [ln for ln in lines if re.match(r"\s*(input|output)\b", ln)]
    outs = [re.sub(r"^\s*output\s*(\[[^\]]*\])?\s*", "", ln).rstrip(";").strip()
            for ln in ports if ln.lstrip().startswith("output")]
    return "\n".join(head + ["  /* verilator lint_off UNUSEDSIGNAL */"] + ports
                     + [f"  assign {o} = '0;" for o in outs] + ["endmodule"])


def lint_file(verilator: str, path: Path, top: str) -> str | None:
    """Verilator lint of ``top`` in ``path`` with the waivers: None when clean, else its
    messages."""
    r = subprocess.run([verilator, "--lint-only", "-Wall", *WAIVERS, "--top-module", top,
                        str(path)], capture_output=True, text=True)
    return None if r.returncode == 0 and "%Warning" not in r.stderr else r.stderr


def lint_in_parts(verilator: str, path: Path, top: str, part: str,
                  workdir: Path) -> list[tuple[str, str]]:
    """Lint ``top`` in two runs (see LINT_IN_PARTS): the one module whose name matches
    ``part`` alone, then the file with that module stubbed. [(part, messages)] of the runs
    with findings."""
    text = path.read_text()
    mods = modules(text)
    names = [n for n in mods if re.fullmatch(part, n)]
    if len(names) != 1:
        raise ValueError(f"part: {part!r} must name exactly one module of {path}, "
                         f"matches {names}")
    name = names[0]
    stubbed = workdir / f"{top}_stubbed.v"
    stubbed.write_text(text.replace(mods[name], stub(mods[name])))
    alone = workdir / f"{top}_{name}.v"
    alone.write_text("\n".join(v for n, v in mods.items()
                               if n == name or n.startswith(name + ".")) + "\n")
    bad = []
    for f, t in ((alone, name), (stubbed, top)):
        err = lint_file(verilator, f, t)
        if err is not None:
            bad.append((t, err))
    return bad


def main(argv=None) -> int:
    """Lint the named tops (default: every regular top; ``--large``: the large tops)."""
    argv = list(argv or [])
    large = "--large" in argv
    names = [a for a in argv if a != "--large"]
    verilator = setup_verilator()
    files = generate(names or None, quiet=True, large=large)
    bad = 0
    for name, path in files.items():
        if name in LINT_IN_PARTS:
            with tempfile.TemporaryDirectory() as tmp:
                found = lint_in_parts(verilator, path, name, LINT_IN_PARTS[name], Path(tmp))
            err = "\n".join(f"[{t}]\n{e}" for t, e in found) if found else None
            how = " (in 2 parts)"
        else:
            err, how = lint_file(verilator, path, name), ""
        status = "clean" if err is None else "FAIL"
        print(f"  lint {name:<28} {status}{how}", flush=True)
        if err is not None:
            bad += 1
            print(err)
    print(f"verilator lint: {len(files) - bad} clean, {bad} with findings (waivers: {' '.join(WAIVERS)})")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
