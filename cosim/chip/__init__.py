"""Driver for the whole-chip bench: HBM image + queue submissions -> RTL -> HBM, registers.

    res = cosim.chip.run(cfg, hbm, {q: golden.chip.Queue(...)}, sim="verilator")
    res["hbm"], res["queues"][q] (dict of Q_REGS), res["regs"] (GLOBAL_REGS), res["sems"]
"""

from __future__ import annotations

import numpy as np

from spec import chip as C

BENCH_MODULE = "cosim.chip.bench"


def hierarchical(cfg: C.ChipConfig) -> bool:
    """Whether the chip's Verilog is generated hierarchically (rtl.hier: the tile module
    written once and instantiated): chips with more than one tile. One-tile chips (tiny,
    tiny_4m) keep flat Verilog."""
    return cfg.n_tiles > 1


def build(cfg: C.ChipConfig, sim: str = "verilator"):
    """Generate and compile the chip for ``sim`` (cached); returns the build directory."""
    from cosim.sim import build as sim_build
    from rtl.chip import Chip

    return sim_build(f"chip_{cfg.name}", "chip", lambda: Chip(cfg), cfg.asdict(), sim,
                     hierarchical=hierarchical(cfg))


def run(cfg: C.ChipConfig, hbm, queues, sim: str = "verilator", max_cycles: int = 5_000_000,
        poll: int = 256, tag: str = "chip", host_writes=(), read_regs=()) -> dict:
    """Run queue submissions (``queues``: sequence indexed by queue, each a golden.chip.Queue
    or None) on the RTL chip with HBM image ``hbm`` (uint8 [cfg.hbm_window]). Chips with
    more than one tile are generated hierarchically (``hierarchical``).

    ``host_writes``: (CSR address, value) pairs the host writes once the chip is ready,
    before the queues (e.g. REG_TRAY_RANK); ``read_regs``: CSR addresses read back at the
    end, returned as ``res["extra_regs"]`` {address: value}."""
    from cosim.sim import run_bench
    from rtl.chip import Chip

    if not isinstance(cfg, C.ChipConfig):
        raise ValueError(f"cfg: must be a spec.chip.ChipConfig, got {type(cfg).__name__}")
    img = np.asarray(hbm)
    if img.dtype != np.uint8 or img.shape != (cfg.hbm_window,):
        raise ValueError(f"hbm: expected uint8 [{cfg.hbm_window}], got {img.dtype} {img.shape}")
    rows = [(q, s.ring, s.size, s.tail) for q, s in enumerate(queues) if s is not None]
    if not rows:
        raise ValueError("queues: at least one queue must be submitted")
    writes = np.array([(int(a), int(v)) for a, v in host_writes], dtype=np.int64).reshape(-1, 2)
    reads = np.array([int(a) for a in read_regs], dtype=np.int64)
    out = run_bench(name=f"chip_{cfg.name}", toplevel="chip", make=lambda: Chip(cfg),
                    params=cfg.asdict(), test_module=BENCH_MODULE, sim=sim, tag=tag,
                    hierarchical=hierarchical(cfg),
                    inputs={"hbm": img, "queues": np.array(rows, dtype=np.int64),
                            "max_cycles": np.array(max_cycles), "poll": np.array(poll),
                            "host_writes": writes, "read_regs": reads})
    qregs = [{n: int(v) for n, v in zip(C.Q_REGS, row)} for row in out["qregs"]]
    gregs = {n: int(v) for n, v in zip(C.GLOBAL_REGS, out["gregs"])}
    return {"hbm": out["hbm"], "queues": qregs, "regs": gregs,
            "sems": out["sems"].astype(np.uint8).reshape(cfg.clusters, cfg.n_sems),
            "extra_regs": {int(a): int(v) for a, v in zip(reads, out["extra_regs"])},
            "irq": int(out["irq"]), "wall_s": float(out["wall_s"]),
            "run_cycles": int(out["run_cycles"]), "csr_cycles": int(out["csr_cycles"])}
