"""One chip with its collective engine (docs/tray.md "Collective engine in the chip"):
HBM image + host queue submissions + REG_TRAY_RANK -> RTL -> HBM image, queue registers.

    res = cosim.tray.chip.run(C.TINY_NIC, hbm, [golden.chip.Queue(...)], rank=0)
    res["hbm"], res["queues"][q] (dict of spec.chip.Q_REGS), res["tray_rank"],
    res["resync_reg"] (REG_TRAY_RESYNC read at the end: [0] engine busy, [31:16] sequence
    number)

It is cosim.chip.run (same bench, same build) with the rank written by the host before the
queues."""

from __future__ import annotations

from spec import chip as C


def run(cfg: C.ChipConfig, hbm, queues, *, rank: int = 0, trays: int = 1,
        sim: str = "verilator", max_cycles: int = 2_000_000, poll: int = 128,
        tag: str = "trychip") -> dict:
    """cosim.chip.run with the host writing REG_TRAY_RANK first (and reading it back, and
    REG_TRAY_RESYNC, at the end)."""
    from cosim import chip as chip_cosim

    if not isinstance(cfg, C.ChipConfig) or cfg.nic_ports < 1:
        raise ValueError("cfg: must be a spec.chip.ChipConfig with NIC ports (the engine)")
    if isinstance(rank, bool) or not isinstance(rank, int) or not 0 <= rank < 8:
        raise ValueError(f"rank: must be an int in 0..7, got {rank!r}")
    if trays not in (1, 2):
        raise ValueError(f"trays: must be 1 or 2, got {trays!r}")
    tray_rank = rank | (C.TRAY_RANK_TWO_TRAYS if trays == 2 else 0)
    res = chip_cosim.run(cfg, hbm, queues, sim=sim, max_cycles=max_cycles, poll=poll, tag=tag,
                         host_writes=[(C.REG_TRAY_RANK, tray_rank)],
                         read_regs=[C.REG_TRAY_RANK, C.REG_TRAY_RESYNC])
    return {"hbm": res["hbm"], "queues": res["queues"],
            "tray_rank": res["extra_regs"][C.REG_TRAY_RANK],
            "resync_reg": res["extra_regs"][C.REG_TRAY_RESYNC], "cycles": res["run_cycles"]}
