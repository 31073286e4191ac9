"""Two chips joined by their NIC ports (docs/chip.md "NIC ports"): driver of the cocotb bench
(cosim/chippair/bench.py, Verilog top ``chip_pair``).

    side_a = Side(hbm=img_a, queues=queues_a, nics=[nic_a])    # golden.nic.Nic per port
    res = run(cfg, side_a, side_b, sim="verilator")
    res["a"]["hbm"], res["a"]["queues"], res["a"]["regs"], res["a"]["frames"], ...

The golden NICs describe the NIC configuration (MAC, IP, queue pairs, windows) and carry
the posted work requests (their WQEs are already in the HBM image, their doorbell is
``sq_prod``): the bench writes exactly that configuration into the RTL NICs' CSRs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from cosim.nic.frames import split
from cosim.nic.pair import csr_config
from golden import nic as GN
from spec import chip as C
from spec import nic as S

__all__ = ["Side", "nic_writes", "run"]

BENCH_MODULE = "cosim.chippair.bench"


@dataclass
class Side:
    """One chip of the pair: its HBM image (uint8 [hbm_window]), host queue submissions
    (golden.chip.Queue or None per queue) and one configured golden.nic.Nic per NIC port."""
    hbm: np.ndarray
    queues: list = field(default_factory=list)
    nics: list = field(default_factory=list)


def nic_writes(cfg: C.ChipConfig, port: int, nic: GN.Nic, *, timeout_cycles: int = 4000,
               retry_limit: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """Host AXI4-Lite writes (address, value) that configure NIC port ``port`` of a chip
    like golden ``nic``, and its doorbell writes."""
    if not isinstance(nic, GN.Nic):
        raise ValueError(f"nic: must be a golden.nic.Nic, got {type(nic).__name__}")
    if nic.p != cfg.nic_params:
        raise ValueError(f"nic: its NicParams {nic.p} differ from the chip's {cfg.nic_params}")
    base = cfg.nic_csr_base(port)
    conf, bells = csr_config(nic, timeout_cycles=timeout_cycles, retry_limit=retry_limit)
    conf[:, 0] += base
    bells[:, 0] += base
    return conf, bells


def _side_inputs(cfg, side: Side, x: str, **kw) -> dict:
    img = np.asarray(side.hbm)
    if img.dtype != np.uint8 or img.shape != (cfg.hbm_window,):
        raise ValueError(f"side_{x}.hbm: expected uint8 [{cfg.hbm_window}], got {img.dtype} "
                         f"{img.shape}")
    if len(side.nics) > cfg.nic_ports:
        raise ValueError(f"side_{x}.nics: at most {cfg.nic_ports} NIC ports, got "
                         f"{len(side.nics)}")
    rows = [(q, s.ring, s.size, s.tail) for q, s in enumerate(side.queues) if s is not None]
    conf, bells = [np.zeros((0, 2), np.int64)], [np.zeros((0, 2), np.int64)]
    for p, nic in enumerate(side.nics):
        c, b = nic_writes(cfg, p, nic, **kw)
        conf.append(c)
        bells.append(b)
    return {f"hbm_{x}": img.copy(),
            f"queues_{x}": np.array(rows, dtype=np.int64).reshape(-1, 4),
            f"nic_{x}": np.concatenate(conf), f"bell_{x}": np.concatenate(bells)}


def run(cfg: C.ChipConfig, side_a: Side, side_b: Side, *, link=(1, 2, 0.0, 0.0, 0.0, 0.0),
        sim: str = "verilator", max_cycles: int = 2_000_000, poll: int = 64,
        timeout_cycles: int = 4000, retry_limit: int = 16, tag: str = "chippair") -> dict:
    """Run both chips (queues and NIC work at once). Returns per chip ``x`` in "a", "b":
    res[x] = {hbm, queues (Q_REGS dicts), regs (GLOBAL_REGS), sems, irq, counters (per
    port, dict), qpregs (per port: [(sq_cons, cq_prod)] per queue pair), frames (per port,
    list of bytes in sending order), frame_cycles (per port)}; res["cycles"]."""
    from cosim.sim import run_bench
    from rtl.chip.pair import ChipPair

    if not isinstance(cfg, C.ChipConfig) or cfg.nic_ports < 1:
        raise ValueError("cfg: must be a spec.chip.ChipConfig with NIC ports")
    if len(link) != 6:
        raise ValueError(f"link: (seed_ab, seed_ba, drop, dup, reorder, corrupt), got {link!r}")
    kw = dict(timeout_cycles=timeout_cycles, retry_limit=retry_limit)
    inputs = {**_side_inputs(cfg, side_a, "a", **kw), **_side_inputs(cfg, side_b, "b", **kw),
              "link": np.array(link, dtype=np.float64), "max_cycles": np.int64(max_cycles),
              "poll": np.int64(poll)}
    out = run_bench(name=f"chip_pair_{cfg.name}", toplevel="chip_pair",
                    make=lambda: ChipPair(cfg), params=cfg.asdict(),
                    test_module=BENCH_MODULE, sim=sim, tag=tag, inputs=inputs)
    res = {"cycles": int(out["cycles"])}
    for x in "ab":
        frames = split(out[f"tx_{x}"], out[f"tx_{x}_len"])
        ports = out[f"tx_{x}_port"].tolist()
        times = out[f"tx_{x}_t"].tolist()
        res[x] = {
            "hbm": out[f"hbm_{x}"],
            "queues": [{n: int(v) for n, v in zip(C.Q_REGS, row)} for row in out[f"qregs_{x}"]],
            "regs": {n: int(v) for n, v in zip(C.GLOBAL_REGS, out[f"gregs_{x}"])},
            "sems": out[f"sems_{x}"].astype(np.uint8).reshape(cfg.clusters, cfg.n_sems),
            "irq": int(out[f"irq_{x}"]),
            "counters": [dict(zip(S.COUNTERS, row)) for row in out[f"counters_{x}"].tolist()],
            "qpregs": [[tuple(r) for r in port] for port in out[f"qpregs_{x}"].tolist()],
            "frames": [[f for f, q in zip(frames, ports) if q == p]
                       for p in range(cfg.nic_ports)],
            "frame_cycles": [[t for t, q in zip(times, ports) if q == p]
                             for p in range(cfg.nic_ports)],
        }
    return res
