"""Run a tile program (TSRAM image + command list) through the RTL tile.

PROGRAM.npz: ``image`` (uint8 TSRAM image), optional ``cmd_addr`` (one or more list
addresses), ``config`` (JSON of spec.tile.TileConfig) and ``ext`` (uint8 [ext_bytes]: the
tile DMA's external memory). OUT.npz: ``image``, ``status``, ``counters``,
``counter_names``, ``ext`` (when given), ``mismatches`` (with --check)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

from spec import tile as T


def add_arguments(p) -> None:
    p.add_argument("--check", action="store_true",
                   help="also run golden.tile and compare image, status and exact counters "
                        "(exit 1 on any difference)")


def load(path: str):
    p = Path(path)
    if not p.exists():
        raise SystemExit(f"replay: input file {path} does not exist")
    with np.load(p, allow_pickle=False) as z:
        prog = {k: z[k] for k in z.files}
    if "image" not in prog:
        raise SystemExit(f"replay: {path} lacks array 'image' (uint8 TSRAM image)")
    cfg = T.TileConfig(**json.loads(str(prog["config"]))) if "config" in prog else T.TileConfig()
    addrs = [int(a) for a in np.atleast_1d(prog.get("cmd_addr", np.array(0)))]
    ext = prog["ext"].astype(np.uint8) if "ext" in prog else None
    return prog["image"].astype(np.uint8), cfg, addrs, ext


def replay(args) -> int:
    from cosim import tile

    image, cfg, addrs, ext = load(args.inp)
    print(f"replay tile: {len(addrs)} list(s), {cfg}, sim={args.sim}", file=sys.stderr)
    t0 = time.monotonic()
    try:
        res = tile.run(image, cfg, sim=args.sim, cmd_addr=addrs, tag="replay", ext=ext)
    except ValueError as e:
        raise SystemExit(f"replay: {e}") from None
    out = {"image": res["image"], "status": np.array(res["statuses"], dtype=np.uint32),
           "counters": np.array([[c[k] for k in T.COUNTERS] for c in res["all_counters"]],
                                dtype=np.uint64),
           "counter_names": np.array(T.COUNTERS)}
    if ext is not None:
        out["ext"] = res["ext"]
    status = 0
    if args.check:
        from golden.tile import GoldenTile

        try:
            gold = GoldenTile(cfg).run_lists(image, addrs, ext=ext)
        except ValueError as e:
            raise SystemExit(f"replay: {e}") from None
        diffs = []
        for i, g in enumerate(gold):
            if g.status != res["statuses"][i]:
                diffs.append(f"list {i}: status golden {g.status:#010x} rtl "
                             f"{res['statuses'][i]:#010x}")
            for k in T.EXACT_COUNTERS:
                if g.counters[k] != res["all_counters"][i][k]:
                    diffs.append(f"list {i}: counter {k} golden {g.counters[k]} "
                                 f"rtl {res['all_counters'][i][k]}")
        bad = np.flatnonzero(gold[-1].tsram != res["image"])
        if bad.size:
            diffs.append(f"{bad.size} TSRAM bytes differ, first at {bad[0]:#x}: golden "
                         f"{gold[-1].tsram[bad[0]]:#04x} rtl {res['image'][bad[0]]:#04x}")
        if ext is not None:
            bad = np.flatnonzero(gold[-1].ext != res["ext"])
            if bad.size:
                diffs.append(f"{bad.size} external bytes differ, first at {bad[0]:#x}: "
                             f"golden {gold[-1].ext[bad[0]]:#04x} rtl {res['ext'][bad[0]]:#04x}")
        for d in diffs:
            print("  " + d, file=sys.stderr)
        out["mismatches"] = np.array(len(diffs))
        status = 1 if diffs else 0
    np.savez(args.out, **out)
    print(f"  wrote {args.out} ({time.monotonic() - t0:.1f} s)", file=sys.stderr)
    return status
