"""Drivers of the NoC co-simulation benches (see docs/noc.md)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from spec import noc as spec

from .traffic_bench import POINT_FIELDS, RESULT_FIELDS

__all__ = ["TrafficPoint", "run_traffic", "run_axi", "run_copies", "POINT_FIELDS",
           "RESULT_FIELDS"]


@dataclass
class TrafficPoint:
    """One run of the hardware traffic bench (fields as rtl.noc.traffic.TrafficConfig)."""
    rate: float = 0.05            # packets per node per cycle (0 .. 1)
    pattern: str = "uniform"
    length: int = 4
    target: tuple[int, int] = (0, 0)
    hot_share: float = 0.0        # hotspot: share of packets sent to ``target``
    cls_mode: int = 2             # 0 request only, 1 response only, 2 random
    bp: float = 0.0               # sink stall probability per cycle
    corrupt: bool = False
    warmup: int = 200
    measure: int = 1000
    drain_max: int = 5000

    def row(self) -> list[int]:
        if self.pattern not in spec.PATTERNS:
            raise ValueError(f"pattern must be one of {sorted(spec.PATTERNS)}, not {self.pattern!r}")
        for name, v in (("rate", self.rate), ("hot_share", self.hot_share), ("bp", self.bp)):
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"{name} must lie in [0, 1], not {v!r}")
        if not 1 <= self.length <= 256:
            raise ValueError(f"length must be in [1, 256] flits, not {self.length!r}")
        if self.cls_mode not in (0, 1, 2):
            raise ValueError(f"cls_mode must be 0, 1 or 2, not {self.cls_mode!r}")
        tx, ty = self.target
        vals = dict(rate=min(65535, round(self.rate * 65536)), pattern=spec.PATTERNS[self.pattern],
                    length=self.length % 256, target=tx | ty << 4,
                    hot_thresh=min(255, round(self.hot_share * 256)), cls_mode=self.cls_mode,
                    bp=min(65535, round(self.bp * 65536)), corrupt=int(self.corrupt),
                    warmup=self.warmup, measure=self.measure, drain_max=self.drain_max)
        return [vals[k] for k in POINT_FIELDS]


def traffic_bench_factory(kx, ky, vcs_per_class=1, depth=4, queue=16, monitor=False):
    from rtl.noc.traffic import TrafficBench

    return lambda: TrafficBench(kx=kx, ky=ky, vcs_per_class=vcs_per_class, depth=depth,
                                queue=queue, monitor=monitor)


def run_traffic(points, *, kx=2, ky=2, sim="verilator", scoreboard=False, vcs_per_class=1,
                depth=4, queue=16) -> dict:
    """Run the hardware traffic bench for each :class:`TrafficPoint`; returns a dict with
    ``rows`` (one dict of RESULT_FIELDS per point) and the scoreboard arrays if requested."""
    from cosim.sim import run_bench

    params = dict(kx=kx, ky=ky, vcs_per_class=vcs_per_class, depth=depth, queue=queue,
                  monitor=bool(scoreboard))
    out = run_bench(name=f"noc_traffic_{kx}x{ky}", toplevel="noc_traffic",
                    make=traffic_bench_factory(kx, ky, vcs_per_class, depth, queue,
                                               bool(scoreboard)),
                    test_module="cosim.noc.traffic_bench", params=params,
                    inputs={"points": np.array([p.row() for p in points], dtype=np.int64),
                            "scoreboard": np.array(int(bool(scoreboard)))},
                    sim=sim, hierarchical=True)
    rows = [dict(zip(RESULT_FIELDS, (int(v) for v in r))) for r in out["results"]]
    res = {"rows": rows}
    for k in ("sb_errors", "sb_delivered", "sb_injected"):
        if k in out:
            res[k] = [int(v) for v in out[k]]
    return res


def run_axi(ops, blob, *, kx=2, ky=2, masters=(0,), memories=(3,), regions=None,
            sim="verilator") -> dict:
    """Run AXI operations through the mesh: ``ops`` rows (master node, is_write, address,
    length, blob offset). Returns resp [n], blob_out (read data at the same offsets) and
    counters (decerr, bad_flits, served, net_errors)."""
    from cosim.sim import run_bench
    from rtl.noc.ni import AxiMeshBench

    regions = tuple(regions) if regions is not None else None
    params = dict(kx=kx, ky=ky, masters=list(masters), memories=list(memories),
                  regions=[(r.base, r.size, r.x, r.y) for r in regions] if regions else None,
                  region_shift=spec.REGION_SHIFT)
    return run_bench(name=f"noc_axi_{kx}x{ky}", toplevel="noc_axi",
                     make=lambda: AxiMeshBench(kx=kx, ky=ky, masters=masters,
                                               memories=memories, regions=regions),
                     test_module="cosim.noc.axi_bench", params=params,
                     inputs={"ops": np.asarray(ops, dtype=np.int64),
                             "blob": np.asarray(blob, dtype=np.uint8)}, sim=sim,
                     hierarchical=True)


def run_copies(rows, *, kx=2, ky=2, memories=(1, 2), seed=1, max_cycles=200_000,
               sim="verilator", outstanding=4) -> dict:
    """Streaming copies (rtl.noc.ni.CopyMaster) through the mesh: ``rows`` of (copier node,
    src address, dst address, beats, count); see cosim/noc/copy_bench.py for the outputs."""
    from cosim.sim import run_bench
    from rtl.noc.ni import AxiMeshBench

    copiers = tuple(sorted({int(r[0]) for r in rows}))
    params = dict(kx=kx, ky=ky, memories=list(memories), copiers=list(copiers),
                  outstanding=outstanding, region_shift=spec.REGION_SHIFT)
    return run_bench(name=f"noc_copy_{kx}x{ky}", toplevel="noc_copy",
                     make=lambda: AxiMeshBench(kx=kx, ky=ky, masters=(), memories=memories,
                                               copiers=copiers, outstanding=outstanding),
                     test_module="cosim.noc.copy_bench", params=params,
                     inputs={"copies": np.asarray(rows, dtype=np.int64),
                             "seed": np.array(seed), "max_cycles": np.array(max_cycles)},
                     sim=sim, hierarchical=True)
