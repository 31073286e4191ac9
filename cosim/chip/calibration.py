"""Programs that calibrate and check the golden performance model (docs/chip.md
"Performance model") on multi-cluster chips: each exercises one mechanism of the model on
chosen clusters and HBM ports, and every program is race-free and checkable (its results
land in HBM, so golden == RTL is compared byte for byte as for any chip program).

    p = dma_program(spec.chip.QUAD, clusters=(0, 1, 2, 3))
    g, r = p.run("golden"), p.run("verilator")       # g.cycles: estimate, r.cycles: RTL

``PROGRAMS`` names the kinds used by tests/test_chip_estimate.py and the chip benchmark.
"""

from __future__ import annotations

import numpy as np

from cosim.chip.fuzz import random_program
from cosim.chip.program import ChipProgram, random_gemm
from golden import tile as gtile
from spec import chip as C
from spec import tile as T

__all__ = ["dma_program", "tile_dma_program", "nop_program", "gemm_program", "fuzz_program",
           "PROGRAMS", "program"]

RING_SLOTS = 256          # small rings, so the data starts low in HBM slice 0


def _program(cfg: C.ChipConfig, port: int) -> ChipProgram:
    p = ChipProgram(cfg, ring_slots=RING_SLOTS)
    if not 0 <= port < cfg.edge_hbm_ports:
        raise ValueError(f"port: must be in 0..{cfg.edge_hbm_ports - 1}, got {port!r}")
    if port:      # data (and descriptor chains) in the HBM slice of edge port `port`
        p.top = port * (cfg.hbm_window // cfg.edge_hbm_ports)
    return p


def _clusters(cfg, clusters):
    clusters = tuple(range(cfg.clusters)) if clusters is None else tuple(clusters)
    for c in clusters:
        if isinstance(c, bool) or not isinstance(c, int) or not 0 <= c < cfg.clusters:
            raise ValueError(f"clusters: index {c!r} not in 0..{cfg.clusters - 1}")
    return clusters


def nop_program(cfg: C.ChipConfig, n: int = 64, queues: int = 1) -> ChipProgram:
    """``n`` NOP entries on each of ``queues`` queues: the command processor's entry cost."""
    p = ChipProgram(cfg, ring_slots=RING_SLOTS)
    for q in range(queues):
        for _ in range(n):
            p.entry(C.entry_nop(), q)
    return p


def dma_program(cfg: C.ChipConfig, clusters=None, nbytes: int = 2048, ndesc: int = 4,
                port: int = 0, seed: int = 1) -> ChipProgram:
    """Every cluster of ``clusters`` (default: all), on its own queue ``c % queues``
    concurrently: a cluster-DMA chain of ``ndesc`` descriptors copying ``nbytes`` each from
    HBM (slice of edge port ``port``) into its CSRAM, WAIT, then a chain copying them back
    to a fresh HBM range (channel 1), FENCE."""
    clusters = _clusters(cfg, clusters)
    if nbytes * ndesc > cfg.csram_bytes:
        raise ValueError(f"nbytes: {ndesc} x {nbytes} bytes do not fit the CSRAM")
    rng = np.random.default_rng(seed)
    p = _program(cfg, port)
    ch_in, ch_out = p.channels()
    for c in clusters:
        q = c % cfg.queues
        src = p.put(rng.integers(0, 256, nbytes * ndesc, dtype=np.uint8))
        dst = p.alloc(nbytes * ndesc)
        cs = cfg.csram_base(c)
        p.dma(c, [p.copy(src + i * nbytes, cs + i * nbytes, nbytes) for i in range(ndesc)],
              channel=ch_in, queue=q)
        p.wait(c, ch_in, False, queue=q)
        p.dma(c, [p.copy(cs + i * nbytes, dst + i * nbytes, nbytes) for i in range(ndesc)],
              channel=ch_out, queue=q)
    p.fence_all()
    return p


def tile_dma_program(cfg: C.ChipConfig, clusters=None, nbytes: int = 2048, ndesc: int = 2,
                     port: int = 0, seed: int = 2) -> ChipProgram:
    """Tile-DMA-window traffic: tile 0 of every cluster of ``clusters`` runs a list whose
    tile DMA copies ``ndesc`` x ``nbytes`` from HBM (slice of ``port``) into its TSRAM, then
    back to a fresh HBM range (docs/chip.md "Tile DMA window"); the lists are loaded by the
    cluster DMA and run concurrently, one queue per cluster."""
    clusters = _clusters(cfg, clusters)
    E = T.DMA_EXT_BASE
    rng = np.random.default_rng(seed)
    p = _program(cfg, port)
    if p.top + 2 * len(clusters) * nbytes * ndesc > cfg.tile.ext_bytes:
        raise ValueError("nbytes: the data does not fit the tile DMA window")
    loads = []
    for c in clusters:
        src = p.put(rng.integers(0, 256, nbytes * ndesc, dtype=np.uint8))
        dst = p.alloc(nbytes * ndesc)
        tp = gtile.Program(cfg.tile, max_commands=8)
        buf = tp.alloc(nbytes * ndesc)
        h_in = tp.put_dma_chain([ChipProgram.copy(E + src + i * nbytes, buf + i * nbytes,
                                                  nbytes) for i in range(ndesc)])
        h_out = tp.put_dma_chain([ChipProgram.copy(buf + i * nbytes, E + dst + i * nbytes,
                                                   nbytes) for i in range(ndesc)])
        for cmd in (T.cmd_dma(h_in), T.cmd_barrier(), T.cmd_dma(h_out), T.cmd_barrier(),
                    T.cmd_end()):
            tp.cmd(cmd)
        loads.append((c, tp))
    for c, tp in loads:
        q = c % cfg.queues
        p.load_tile(c, 0, tp, queue=q)
        p.tile(c, 0, 0, queue=q)
    p.fence_all()
    return p


def gemm_program(cfg: C.ChipConfig, M: int = 64, N: int = 64, K: int = 128, bm: int = 16,
                 bn: int = 16, seed: int = 3) -> ChipProgram:
    """A double-buffered e4m3 GEMM of ``bm x bn`` blocks dealt over every tile."""
    p, _h, _ref = random_gemm(cfg, M, N, K, "e4m3", "e4m3", seed=seed, bm=bm, bn=bn,
                              ring_slots=RING_SLOTS)
    return p


def fuzz_program(cfg: C.ChipConfig, seed: int = 11, steps: int = 30) -> ChipProgram:
    """A seeded random multi-queue program (cosim.chip.fuzz), error entries included."""
    return random_program(cfg, seed, steps=steps)


PROGRAMS = {
    "nop": nop_program,
    "dma": dma_program,
    "tile_dma": tile_dma_program,
    "gemm": gemm_program,
    "fuzz": fuzz_program,
}


def program(kind: str, cfg: C.ChipConfig, **kw) -> ChipProgram:
    if kind not in PROGRAMS:
        raise ValueError(f"kind: must be one of {list(PROGRAMS)}, got {kind!r}")
    return PROGRAMS[kind](cfg, **kw)
