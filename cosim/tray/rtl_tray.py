"""The 4-chip RTL tray (rtl.chip.tray.Tray of ``tiny_tray`` chips, mesh wires as top ports)
running COLLECTIVE entries on the chips' collective engines, with a seeded fault-injecting
link layer on every directed mesh wire (cocotb bench: cosim/tray/rtl_bench.py).

The host of each chip (rank = chip index) writes the NIC set-up of docs/tray.md "Topology"
for each of its three mesh ports (queue pair QP_MESH towards the peer at the other end, the
rings at spec.tray.ring_addr, the window over [0, ring_base) with key RKEY; the same set-up
as cosim.tray.pair.port_nic), REG_TRAY_RANK, the queue registers and the doorbell.

    res = cosim.tray.rtl_tray.run({r: hbm_r for r in range(4)}, {r: [entry] for r in ...},
                                  faults=dict(drop=0.02), seed=7, cut=[(0, 1)])
    res[rank]["hbm"], res[rank]["queues"][0], res[rank]["counters"][port], res["cycles"]

Wire seeds: directed wire w (chip c, port p; w = 3 c + p) uses ``seed * 1000 + w`` (the
transport model's rule, docs/tray.md "Fault behaviour").
"""

from __future__ import annotations

import numpy as np

from cosim.chippair import nic_writes
from cosim.tray.pair import port_nic
from spec import chip as C
from spec import nic as S
from spec import tray as T

__all__ = ["CFG", "RING", "QSIZE", "BENCH_MODULE", "wires", "run"]

CFG = C.TINY_TRAY
BENCH_MODULE = "cosim.tray.rtl_bench"
RING = 0xD8000            # host queue ring of every chip (just below ring_base 0xE0000)
QSIZE = 64
FAULT_KEYS = ("drop", "dup", "reorder", "corrupt")


def wires() -> list[tuple[int, int, int, int]]:
    """Directed mesh wires (chip, port, peer chip, peer port), wire index 3 chip + port."""
    out = []
    for c in range(T.CHIPS_PER_TRAY):
        for p, d in enumerate(T.mesh_peers(c)):
            out.append((c, p, d, T.mesh_peers(d).index(c)))
    return out


def _fates(faults, seed: int, cut) -> np.ndarray:
    faults = dict(faults or {})
    bad = set(faults) - set(FAULT_KEYS)
    if bad:
        raise ValueError(f"faults: unknown keys {sorted(bad)}; use {FAULT_KEYS}")
    for k, v in faults.items():
        if not isinstance(v, (int, float)) or not 0.0 <= v <= 1.0:
            raise ValueError(f"faults: {k} must be a probability in [0, 1], got {v!r}")
    if sum(faults.values()) > 1.0:
        raise ValueError("faults: drop + dup + reorder + corrupt must not exceed 1")
    cuts = set()
    for pair in cut:
        if (len(pair) != 2 or not all(isinstance(x, int) for x in pair)
                or not all(0 <= x < T.CHIPS_PER_TRAY for x in pair) or pair[0] == pair[1]):
            raise ValueError(f"cut: pairs of distinct chips 0..3, got {pair!r}")
        cuts.add(frozenset(pair))
    rows = []
    for w, (c, _p, d, _dp) in enumerate(wires()):
        if frozenset((c, d)) in cuts:
            rows.append((seed * 1000 + w, 1.0, 0.0, 0.0, 0.0))
        else:
            rows.append((seed * 1000 + w, *(float(faults.get(k, 0.0)) for k in FAULT_KEYS)))
    return np.array(rows, dtype=np.float64)


def run(hbm: dict, entries: dict, *, faults: dict | None = None, seed: int = 1, cut=(),
        sim: str = "verilator", max_cycles: int = 3_000_000, poll: int = 256,
        timeout_cycles: int = 4000, retry_limit: int = 16, tag: str = "rtltray") -> dict:
    """``hbm``: rank -> HBM image (uint8 [hbm_window]) for ranks 0..3; ``entries``: rank ->
    list of 32-byte queue entries (written into the ring at RING, queue 0); the ring area
    [ring_base, hbm_window) is zeroed (fresh completion queues). ``faults``: probabilities
    (drop, dup, reorder, corrupt) on every wire; ``cut``: chip pairs whose link loses every
    frame in both directions. Returns res[rank] = {hbm, queues (Q_REGS dicts), counters (per
    port), done (cycles to the chip's last queue entry retired), frames (per port)},
    res["cycles"] (doorbells to the whole tray idle), res["fates"] (per wire: drop, dup,
    reorder, corrupt, ok counts), res["wires"] (per wire, in :func:`wires` order: frames,
    frame bytes, first and last frame's cycle after the doorbells, as sent)."""
    from cosim.sim import run_bench
    from rtl.chip.tray import tray_bench_tiny

    ranks = set(range(T.CHIPS_PER_TRAY))
    if set(hbm) != ranks or set(entries) != ranks:
        raise ValueError("hbm, entries: one item for each of ranks 0..3")
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed: must be an int >= 0, got {seed!r}")
    p = T.chip_params(CFG)
    inputs = {"wires": np.array(wires(), np.int64), "fates": _fates(faults, seed, cut),
              "max_cycles": np.int64(max_cycles), "poll": np.int64(poll)}
    for rank in sorted(ranks):
        img = np.array(hbm[rank], dtype=np.uint8)
        if img.shape != (CFG.hbm_window,):
            raise ValueError(f"hbm: rank {rank} needs uint8 [{CFG.hbm_window}]")
        ents = list(entries[rank])
        if not 1 <= len(ents) < QSIZE:
            raise ValueError(f"entries: rank {rank} needs 1..{QSIZE - 1} entries")
        img[p.ring_base:] = 0
        for i, e in enumerate(ents):
            img[RING + 32 * i:RING + 32 * i + 32] = np.frombuffer(e, np.uint8)
        conf = []
        for peer in sorted(ranks - {rank}):
            port, nic = port_nic(CFG, rank, peer)
            c, _ = nic_writes(CFG, port, nic, timeout_cycles=timeout_cycles,
                              retry_limit=retry_limit)
            conf.append(c)
        conf.append(np.array([[C.REG_TRAY_RANK, rank]], np.int64))
        inputs.update({f"hbm_{rank}": img, f"host_{rank}": np.concatenate(conf),
                       f"queues_{rank}": np.array([[0, RING, QSIZE, len(ents)]], np.int64)})
    out = run_bench(name="tray_bench_tiny_tray", toplevel="tray_bench", make=tray_bench_tiny,
                    params=CFG.asdict(), test_module=BENCH_MODULE, testcase="tray", sim=sim,
                    tag=tag, inputs=inputs, hierarchical=True)
    res = {"cycles": int(out["cycles"]), "fates": out["fates"], "wires": out["wire_stats"]}
    for rank in sorted(ranks):
        res[rank] = {
            "hbm": out[f"hbm_{rank}"],
            "queues": [{n: int(v) for n, v in zip(C.Q_REGS, row)}
                       for row in out[f"qregs_{rank}"]],
            "counters": [dict(zip(S.COUNTERS, row)) for row in out[f"counters_{rank}"].tolist()],
            "done": int(out[f"done_{rank}"]),
            "frames": out[f"frames_{rank}"].tolist(),
        }
    return res
