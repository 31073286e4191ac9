"""One chip with its collective engine (docs/tray.md "Collective engine in the chip"):
HBM image + host queue submissions + REG_TRAY_RANK -> RTL -> HBM image, queue registers.

    res = cosim.tray.chip.run(C.TINY_NIC, hbm, [golden.chip.Queue(...)], rank=0)
    res["hbm"], res["queues"][q] (dict of spec.chip.Q_REGS), res["tray_rank"]

The chip's Verilog and simulator build are the ones cosim.chip.run uses for the same
configuration (same cache name), so the two share one build."""

from __future__ import annotations

import numpy as np

from spec import chip as C

BENCH_MODULE = "cosim.tray.chip_bench"


def run(cfg: C.ChipConfig, hbm, queues, *, rank: int = 0, trays: int = 1,
        sim: str = "verilator", max_cycles: int = 2_000_000, poll: int = 128,
        tag: str = "trychip") -> dict:
    from cosim.sim import run_bench
    from rtl.chip import Chip

    if not isinstance(cfg, C.ChipConfig) or cfg.nic_ports < 1:
        raise ValueError("cfg: must be a spec.chip.ChipConfig with NIC ports (the engine)")
    if isinstance(rank, bool) or not isinstance(rank, int) or not 0 <= rank < 8:
        raise ValueError(f"rank: must be an int in 0..7, got {rank!r}")
    if trays not in (1, 2):
        raise ValueError(f"trays: must be 1 or 2, got {trays!r}")
    img = np.asarray(hbm)
    if img.dtype != np.uint8 or img.shape != (cfg.hbm_window,):
        raise ValueError(f"hbm: expected uint8 [{cfg.hbm_window}], got {img.dtype} {img.shape}")
    rows = [(q, s.ring, s.size, s.tail) for q, s in enumerate(queues) if s is not None]
    if not rows:
        raise ValueError("queues: at least one queue must be submitted")
    tray_rank = rank | (C.TRAY_RANK_TWO_TRAYS if trays == 2 else 0)
    out = run_bench(name=f"chip_{cfg.name}", toplevel="chip", make=lambda: Chip(cfg),
                    params=cfg.asdict(), test_module=BENCH_MODULE, sim=sim, tag=tag,
                    inputs={"hbm": img, "queues": np.array(rows, dtype=np.int64),
                            "tray_rank": np.array(tray_rank),
                            "max_cycles": np.array(max_cycles), "poll": np.array(poll)})
    qregs = [{n: int(v) for n, v in zip(C.Q_REGS, row)} for row in out["qregs"]]
    return {"hbm": out["hbm"], "queues": qregs, "tray_rank": int(out["tray_rank"]),
            "cycles": int(out["cycles"])}
