"""`python -m cosim.bench [NAME ...]`: run benchmarks, write build/bench/<name>.json, print tables."""

from __future__ import annotations

import argparse
import importlib
import json
import os
import pkgutil
import platform
import re
import shlex
import sys
import time

from cosim.sim import BUILD

OUT = BUILD / "bench"


def discover() -> list[str]:
    import cosim.bench as pkg

    return sorted(m.name for m in pkgutil.iter_modules(pkg.__path__) if not m.name.startswith("_"))


def meets(value, target) -> str:
    if target is None or not isinstance(value, (int, float)):
        return ""
    m = re.fullmatch(r"\s*(>=|<=|==|>|<)\s*([-+0-9.eE]+)\s*", str(target))
    if not m:
        return ""
    op, t = m.group(1), float(m.group(2))
    ok = {">=": value >= t, "<=": value <= t, "==": value == t, ">": value > t, "<": value < t}[op]
    return "ok" if ok else "MISS"


def table(name: str, result: dict) -> str:
    rows = [(k, v) for k, v in result.items() if isinstance(v, dict) and "value" in v]
    w = max([len(k) for k, _ in rows] + [6])
    lines = [f"== bench {name} ==", f"  {'metric':<{w}}  {'value':>14}  {'unit':<16} {'target':<10} "]
    for k, v in rows:
        val = v["value"]
        sval = f"{val:.4g}" if isinstance(val, float) else str(val)
        lines.append(f"  {k:<{w}}  {sval:>14}  {str(v.get('unit', '')):<16} "
                     f"{str(v.get('target') or ''):<10} {meets(val, v.get('target'))}")
    return "\n".join(lines)


def command(name: str, env=None) -> str:
    """The command recorded in build/bench/<name>.json: ``make bench BENCH=<name>`` after
    the MAIA_* variables set in ``env`` (default os.environ), which pick rows, sizes and
    the Verilator level."""
    env = os.environ if env is None else env
    pre = " ".join(f"{k}={shlex.quote(v)}" for k, v in sorted(env.items())
                   if k.startswith("MAIA_") and v)
    return f"{pre} make bench BENCH={name}".lstrip()


def main(argv=None) -> int:
    names = discover()
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("names", nargs="*", help=f"benchmarks to run (default: all of {names})")
    args = ap.parse_args(argv)
    chosen = args.names or names
    unknown = [n for n in chosen if n not in names]
    if unknown:
        print(f"unknown benchmark(s) {unknown}; known: {names}", file=sys.stderr)
        return 2
    OUT.mkdir(parents=True, exist_ok=True)
    for name in chosen:
        print(f"[bench] running {name} ...", flush=True)
        t0 = time.monotonic()
        mod = importlib.import_module(f"cosim.bench.{name}")
        result = mod.run()
        result["command"] = command(name)
        result["wall_s"] = round(time.monotonic() - t0, 2)
        result["host"] = {"machine": platform.machine(), "python": platform.python_version()}
        path = OUT / f"{name}.json"
        path.write_text(json.dumps(result, indent=2, default=str) + "\n")
        print(table(name, result))
        print(f"  -> {path.relative_to(BUILD.parent)} ({result['wall_s']} s)\n", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
