"""Driver for the tensor tile bench: TSRAM image + command list -> RTL -> image, status, counters.

    res = cosim.tile.run(image, cfg=TileConfig(), sim="verilator")
    res["image"], res["status"], res["counters"] (dict name -> int)
"""

from __future__ import annotations

import dataclasses

import numpy as np

from spec import tile as T

BENCH_MODULE = "cosim.tile.bench"


def _name(cfg: T.TileConfig) -> str:
    return f"tile_{cfg.rows}x{cfg.cols}"


def run(image, cfg: T.TileConfig | None = None, sim: str = "verilator", cmd_addr=0,
        max_cycles: int = 2_000_000, tag: str = "tile", ext=None) -> dict:
    """Run a TSRAM image (uint8 [cfg.tsram_bytes]) whose command list is at ``cmd_addr`` (or
    several lists, one after the other: a sequence of addresses). ``ext``: the external
    memory of the tile DMA (uint8 [cfg.ext_bytes]; an AxiRam on m_axi), returned as ``ext``
    (None when not given). Returns ``image``,
    ``status`` / ``counters`` (of the last list) and ``statuses`` / ``all_counters``."""
    from cosim.sim import run_bench
    from rtl.tile import Tile

    cfg = cfg or T.TileConfig()
    img = np.asarray(image)
    if img.dtype != np.uint8 or img.shape != (cfg.tsram_bytes,):
        raise ValueError(f"image: expected uint8 [{cfg.tsram_bytes}], got {img.dtype} "
                         f"{img.shape}")
    addrs = [cmd_addr] if isinstance(cmd_addr, int) else list(cmd_addr)
    if not addrs or not all(isinstance(a, int) and 0 <= a < 1 << 32 for a in addrs):
        raise ValueError(f"cmd_addr: must be a 32-bit unsigned int or a non-empty sequence "
                         f"of them, got {cmd_addr!r}")
    inputs = {"image": img, "cmd_addr": np.array(addrs, dtype=np.uint64),
              "max_cycles": np.array(max_cycles)}
    if ext is not None:
        ext = np.asarray(ext)
        if ext.dtype != np.uint8 or ext.shape != (cfg.ext_bytes,):
            raise ValueError(f"ext: expected uint8 [{cfg.ext_bytes}], got {ext.dtype} "
                             f"{ext.shape}")
        inputs["ext"] = ext
    out = run_bench(name=_name(cfg), toplevel="tile", make=lambda: Tile(cfg),
                    params=dataclasses.asdict(cfg), test_module=BENCH_MODULE, sim=sim, tag=tag,
                    inputs=inputs)
    allc = [{c: int(v) for c, v in zip(T.COUNTERS, row)} for row in out["counters"]]
    sts = [int(s) for s in out["status"]]
    return {"image": out["image"], "status": sts[-1], "counters": allc[-1], "statuses": sts,
            "all_counters": allc, "run_cycles": [int(c) for c in out["run_cycles"]],
            "wall_s": float(out["wall_s"]), "ext": out.get("ext")}
