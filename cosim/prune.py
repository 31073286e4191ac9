"""`python -m cosim.prune [--keep N] [--dry-run]`: delete stale simulator builds.

Every change to a design's Verilog makes a new build directory under build/sim/ (the cache
key is the Verilog text) and a new file under build/sim/verilog/; old ones are never used
again but stay, and a busy checkout gathers gigabytes. This keeps, per design name and
simulator, the ``--keep`` most recently used builds (default 3: some designs have variants under one name) and per design name the
``--keep`` newest generated Verilog files, and deletes the rest. A build is "used" when a
run starts in it (its runs/ folder changes) or it is built; anything used in the last
``--min-age`` minutes (default 30), unfinished builds and builds whose lock another process
holds are never touched. `make prune` runs it."""

from __future__ import annotations

import argparse
import fcntl
import re
import shutil
import sys
import time
from collections import defaultdict
from pathlib import Path

from cosim.sim import BUILD

_BUILD_DIR = re.compile(r"^(?P<name>.+)-(?P<sim>icarus|verilator)-(?P<key>[0-9a-f]{12})$")
_VERILOG = re.compile(r"^(?P<name>.+)-(?P<key>[0-9a-f]{16})\.v$")


def _last_used(path: Path) -> float:
    stamps = [path / ".built", path / "runs", path]
    return max(p.stat().st_mtime for p in stamps if p.exists())


def _locked(lock: Path) -> bool:
    if not lock.exists():
        return False
    with open(lock, "a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(f, fcntl.LOCK_UN)
    return False


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def stale(root: Path = BUILD / "sim", keep: int = 3, min_age_s: float = 1800.0) -> list[Path]:
    """Build directories and Verilog files under ``root`` that :func:`main` would delete."""
    if keep < 1:
        raise ValueError(f"keep: must be at least 1, got {keep}")
    now = time.time()
    groups: dict[tuple, list[tuple[float, Path]]] = defaultdict(list)
    if root.is_dir():
        for d in root.iterdir():
            m = _BUILD_DIR.match(d.name)
            if m and d.is_dir():
                groups[("build", m["name"], m["sim"])].append((_last_used(d), d))
    vdir = root / "verilog"
    if vdir.is_dir():
        for f in vdir.iterdir():
            m = _VERILOG.match(f.name)
            if m:
                groups[("verilog", m["name"])].append((f.stat().st_mtime, f))
    out = []
    for key, items in groups.items():
        items.sort(reverse=True)
        for used, path in items[keep:]:
            if now - used < min_age_s:
                continue
            if key[0] == "build":
                if not (path / ".built").exists() or _locked(root / f".{path.name}.lock"):
                    continue
            elif _locked(path.with_suffix(".lock")):
                continue
            out.append(path)
    return sorted(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m cosim.prune", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--keep", type=int, default=3, help="builds kept per design (default 3)")
    ap.add_argument("--min-age", type=float, default=30.0,
                    help="never delete what was used in the last MIN minutes (default 30)")
    ap.add_argument("--dry-run", action="store_true", help="list, delete nothing")
    args = ap.parse_args(argv)
    if args.keep < 1:
        ap.error(f"--keep must be at least 1, got {args.keep}")
    root = BUILD / "sim"
    paths = stale(root, keep=args.keep, min_age_s=args.min_age * 60)
    total = 0
    for p in paths:
        size = _size(p)
        total += size
        print(f"{'would delete' if args.dry_run else 'delete'} {p.relative_to(BUILD.parent)} "
              f"({size / 2**20:.1f} MiB)")
        if not args.dry_run:
            if p.is_dir():
                shutil.rmtree(p, ignore_errors=True)
                (root / f".{p.name}.lock").unlink(missing_ok=True)
            else:
                p.unlink(missing_ok=True)
                p.with_suffix(".lock").unlink(missing_ok=True)
    print(f"{len(paths)} stale item(s), {total / 2**30:.2f} GiB"
          f"{' (dry run)' if args.dry_run else ' freed'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
