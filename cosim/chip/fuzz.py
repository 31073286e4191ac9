"""Seeded random whole-chip programs drawn from the command grammar (docs/chip.md).

Every program is race-free by construction, so the golden model's in-order result is the
hardware's: each DMA writes a fresh byte range that nothing else touches, and reads only
the initial HBM data or ranges written before the last FENCE. Bad entries of every kind
(bad opcode, reserved bits, bad unit, bad address, failing DMA chain) are mixed in; the
work after them must still complete. Local ranges (CSRAM, TSRAM) are copied back to HBM
at the end, so the HBM image shows everything that was written.
"""

from __future__ import annotations

import numpy as np

from cosim.chip.program import ChipProgram
from spec import chip as C
from spec import dma as D

__all__ = ["random_program", "BAD_KINDS"]

BAD_KINDS = ("opcode", "reserved", "unit", "address", "dma_window", "sem_count")


class _Bump:
    def __init__(self, base: int, size: int):
        self.base, self.end, self.top = base, base + size, base

    def take(self, n: int, rng, align: int = 1) -> int | None:
        a = self.top + int(rng.integers(0, 64))
        a = -(-a // align) * align
        if a + n > self.end:
            return None
        self.top = a + n
        return a


def random_program(cfg: C.ChipConfig, seed: int, steps: int = 24, bad_rate: float = 0.2,
                   data_bytes: int = 8192) -> ChipProgram:
    rng = np.random.default_rng(seed)
    p = ChipProgram(cfg)
    src0 = p.put(rng.integers(0, 256, data_bytes, dtype=np.uint8))
    nq = cfg.queues
    # per queue: ranges it may read (initial data + its own fenced writes) and its writes
    # not yet fenced; a range is only ever read by the queue that wrote it
    settled = [[(src0, data_bytes)] for _ in range(nq)]
    fresh: list[list[tuple[int, int]]] = [[] for _ in range(nq)]
    written: list[list[tuple[int, int]]] = [[] for _ in range(nq)]
    hbm = _Bump(p.alloc(1 << 16), 1 << 16)
    local = {}
    for c in range(cfg.clusters):
        local[(c, -1)] = _Bump(cfg.csram_base(c), cfg.csram_bytes)
        for t in range(cfg.tiles):
            local[(c, t)] = _Bump(cfg.tsram_base(c, t), cfg.tile.tsram_bytes)
    bad_dst = min(cfg.address_space + 4096, 0xFFFF_F000)
    for _ in range(steps):
        q = int(rng.integers(0, nq))
        r = rng.random()
        if r < bad_rate:
            kind = BAD_KINDS[int(rng.integers(0, len(BAD_KINDS)))]
            if kind == "opcode":
                p.entry(C.entry_raw([int(rng.integers(6, 256))]), q)
            elif kind == "reserved":
                p.entry(C.entry_raw([C.OP_NOP | 1 << int(rng.integers(21, 32))]), q)
            elif kind == "unit":
                p.entry(C.entry_tile(cfg.clusters + int(rng.integers(0, 3)), 0, 0), q)
            elif kind == "address":
                p.entry(C.entry_dma(0, 0, src0 + 8), q)
            elif kind == "sem_count":
                p.entry(C.entry_raw([C.OP_SEM_WAIT, 0]), q)
            else:   # a chain that fails validation: destination outside every window
                d = D.Descriptor(src=src0, dst=bad_dst, counts=(64, 1, 1))
                p.dma(int(rng.integers(0, cfg.clusters)), [d],
                      channel=int(rng.integers(0, cfg.dma_channels)), queue=q)
            continue
        if r < 0.3:
            p.fence(q) if rng.random() < 0.5 else p.entry(C.entry_nop(), q)
            if r < 0.25:
                settled[q] += fresh[q]
                fresh[q] = []
            continue
        # a copy: source readable by this queue, destination fresh
        s, sn = settled[q][int(rng.integers(0, len(settled[q])))]
        n = int(rng.integers(1, min(sn, 600) + 1))
        so = int(rng.integers(0, sn - n + 1))
        if s >= cfg.local_base:      # local source: the DMA of its own cluster
            c = (s - cfg.local_base) // cfg.cluster_stride
        else:
            c = int(rng.integers(0, cfg.clusters))
        if rng.random() < 0.4:
            dst = hbm.take(n, rng)
        else:
            dst = local[(c, int(rng.integers(-1, cfg.tiles)))].take(n, rng)
        if dst is None:
            continue
        sem = rng.random() < 0.3
        sid = int(rng.integers(0, cfg.n_sems))
        d = ChipProgram.copy(s + so, dst, n, sem=sem, sem_id=sid)
        p.dma(c, [d], channel=int(rng.integers(0, cfg.dma_channels)), queue=q)
        if sem:
            p.sem_wait(c, sid & (cfg.n_sems - 1), 1, queue=q)
        fresh[q].append((dst, n))
        written[q].append((dst, n))
    # drain: each queue fences its own work and copies its local ranges back to HBM
    back = _Bump(hbm.top + 64, hbm.end - hbm.top - 64)
    for q in range(nq):
        p.fence(q)
        for addr, n in written[q]:
            if addr < cfg.local_base:
                continue
            dst = back.take(n, rng)
            if dst is None:
                break
            c = (addr - cfg.local_base) // cfg.cluster_stride
            p.dma(int(c), [ChipProgram.copy(addr, dst, n)], channel=0, queue=q)
        p.fence(q)
    return p
