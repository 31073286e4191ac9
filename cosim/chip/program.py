"""Whole-chip programming API: build a program (HBM image + host queue entries) and run it on
the golden model or on the RTL (Icarus or Verilator) with one call.

    p = ChipProgram(spec.chip.TINY)
    src = p.put(np.arange(256, dtype=np.uint8))
    dst = p.alloc(256)
    p.dma(0, [p.copy(src, p.cfg.csram_base(0), 256)])
    p.fence()
    res = p.run("golden")            # or "icarus" / "verilator"
    res.read(dst, 256)

``gemm`` tiles C = A x B (MX codes + scales of any size) across every cluster and tile.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from golden import chip as G
from golden import tile as gtile
from spec import chip as C
from spec import dma as D
from spec import tile as T

__all__ = ["ChipProgram", "ProgramResult", "BACKENDS", "compare", "random_gemm"]

BACKENDS = ("golden", "icarus", "verilator")
RING_SLOTS = 4096          # entries reserved per queue ring


@dataclass
class ProgramResult:
    backend: str
    hbm: np.ndarray
    queues: list            # per queue: dict of spec.chip.Q_EXACT_REGS (+ more on RTL)
    regs: dict              # exact global registers (+ all on RTL)
    sems: np.ndarray
    cycles: int             # RTL: BUSY_CYCLES register; golden: performance-model estimate
    wall_s: float = 0.0
    extra: dict = field(default_factory=dict)

    def read(self, addr: int, nbytes: int) -> np.ndarray:
        return self.hbm[addr:addr + nbytes].copy()


class ChipProgram:
    """A whole-chip program: data and descriptors in HBM, entries in host queue rings."""

    def __init__(self, cfg: C.ChipConfig | None = None, data_base: int | None = None,
                 ring_slots: int = RING_SLOTS):
        self.cfg = cfg or C.DEFAULT
        if not isinstance(self.cfg, C.ChipConfig):
            raise ValueError(f"cfg: must be a spec.chip.ChipConfig, got {type(cfg).__name__}")
        self.hbm = np.zeros(self.cfg.hbm_window, dtype=np.uint8)
        if (isinstance(ring_slots, bool) or not isinstance(ring_slots, int)
                or not 2 <= ring_slots <= C.QUEUE_MAX_SIZE):
            raise ValueError(f"ring_slots: must be an int in [2, {C.QUEUE_MAX_SIZE}], got "
                             f"{ring_slots!r}")
        self.ring_slots = ring_slots
        ring_bytes = ring_slots * C.ENTRY_BYTES
        self.ring_base = [q * ring_bytes for q in range(self.cfg.queues)]
        self.top = self.cfg.queues * ring_bytes if data_base is None else data_base
        self.entries: list[list[bytes]] = [[] for _ in range(self.cfg.queues)]
        self.macs = 0

    # --- HBM allocation -----------------------------------------------------------------
    def alloc(self, nbytes: int, align: int = 64) -> int:
        if isinstance(nbytes, bool) or not isinstance(nbytes, (int, np.integer)) or nbytes < 0:
            raise ValueError(f"nbytes: must be a non-negative int, got {nbytes!r}")
        addr = -(-self.top // align) * align
        if addr + nbytes > self.cfg.hbm_window:
            raise ValueError(f"nbytes: {nbytes} bytes do not fit in HBM "
                             f"({self.cfg.hbm_window - addr} left)")
        self.top = addr + int(nbytes)
        return addr

    def put(self, data, align: int = 64) -> int:
        b = np.frombuffer(np.ascontiguousarray(data).tobytes(), dtype=np.uint8)
        addr = self.alloc(b.size, align)
        self.hbm[addr:addr + b.size] = b
        return addr

    # --- DMA descriptors ------------------------------------------------------------------
    @staticmethod
    def copy(src: int, dst: int, nbytes: int, **kw) -> D.Descriptor:
        """A 1D byte copy (row mode when src and dst have the same offset in a 32-byte word)."""
        if nbytes < 1:
            raise ValueError(f"nbytes: must be >= 1, got {nbytes}")
        rows = 1
        while nbytes > D.MAX_COUNT:
            if nbytes % 2:
                raise ValueError(f"nbytes: {nbytes} is too long for one descriptor")
            nbytes //= 2
            rows *= 2
        return D.Descriptor(src=src, dst=dst, counts=(nbytes, rows, 1),
                            src_strides=(1, nbytes, 0), dst_strides=(1, nbytes, 0), **kw)

    @staticmethod
    def copy2d(src: int, dst: int, row_bytes: int, rows: int, src_pitch: int, dst_pitch: int,
               **kw) -> D.Descriptor:
        return D.Descriptor(src=src, dst=dst, counts=(row_bytes, rows, 1),
                            src_strides=(1, src_pitch, 0), dst_strides=(1, dst_pitch, 0), **kw)

    def chain(self, descs) -> int:
        """Store descriptors as one chain in HBM; returns the head address."""
        descs = list(descs)
        if not descs:
            raise ValueError("descs: at least one descriptor")
        base = self.alloc(D.DESC_BYTES * len(descs), D.DESC_ALIGN)
        for i, d in enumerate(descs):
            nxt = base + D.DESC_BYTES * (i + 1) if i + 1 < len(descs) else 0
            raw = D.Descriptor(**{**d.__dict__, "next": nxt}).pack()
            self.hbm[base + D.DESC_BYTES * i:base + D.DESC_BYTES * (i + 1)] = \
                np.frombuffer(raw, dtype=np.uint8)
        return base

    # --- queue entries --------------------------------------------------------------------
    def entry(self, raw: bytes, queue: int = 0) -> int:
        if not isinstance(queue, int) or not 0 <= queue < self.cfg.queues:
            raise ValueError(f"queue: must be in 0..{self.cfg.queues - 1}, got {queue!r}")
        if len(raw) != C.ENTRY_BYTES:
            raise ValueError(f"raw: an entry is {C.ENTRY_BYTES} bytes, got {len(raw)}")
        if len(self.entries[queue]) >= self.ring_slots - 1:
            raise ValueError(f"queue: ring {queue} is full ({self.ring_slots - 1} entries; "
                             f"ChipProgram(ring_slots=...) reserves more)")
        self.entries[queue].append(bytes(raw))
        return len(self.entries[queue]) - 1

    def dma(self, cluster: int, descs_or_head, channel: int = 0, queue: int = 0,
            irq: bool = False) -> int:
        head = (descs_or_head if isinstance(descs_or_head, int)
                else self.chain(descs_or_head))
        return self.entry(C.entry_dma(cluster, channel, head, irq), queue)

    def tile(self, cluster: int, tile: int, cmd_addr: int = 0, queue: int = 0,
             irq: bool = False) -> int:
        return self.entry(C.entry_tile(cluster, tile, cmd_addr, irq), queue)

    def load_tile(self, cluster: int, tile: int, prog: gtile.Program, channel: int = 0,
                  queue: int = 0) -> None:
        """Copy the used part of a golden.tile.Program image (command lists, descriptors,
        data: TSRAM bytes ``[0, prog.top)``) into the TSRAM of (cluster, tile) with the
        cluster DMA and wait for it; then ``tile(cluster, tile, addr)`` runs a list."""
        if not isinstance(prog, gtile.Program):
            raise ValueError(f"prog: must be a golden.tile.Program, got {type(prog).__name__}")
        if prog.cfg != self.cfg.tile:
            raise ValueError("prog: built for another tile configuration than cfg.tile")
        n = -(-prog.top // T.WORD_BYTES) * T.WORD_BYTES
        src = self.put(prog.img[:n])
        self.dma(cluster, [self.copy(src, self.cfg.tsram_base(cluster, tile), n)],
                 channel=channel, queue=queue)
        self.wait(cluster, channel, False, queue=queue)

    def fence(self, queue: int = 0, irq: bool = False) -> int:
        return self.entry(C.entry_fence(irq), queue)

    def wait(self, cluster: int, unit: int, tile: bool, queue: int = 0) -> int:
        return self.entry(C.entry_wait(cluster, unit, tile), queue)

    def sem_wait(self, cluster: int, sem: int, count: int = 1, queue: int = 0) -> int:
        return self.entry(C.entry_sem_wait(cluster, sem, count), queue)

    # --- building the submission -------------------------------------------------------------
    def image(self) -> tuple[np.ndarray, list]:
        """HBM image with the rings written, and the golden.chip.Queue list."""
        img = self.hbm.copy()
        queues = []
        for q, ents in enumerate(self.entries):
            if not ents:
                queues.append(None)
                continue
            base = self.ring_base[q]
            for i, e in enumerate(ents):
                a = base + i * C.ENTRY_BYTES
                img[a:a + C.ENTRY_BYTES] = np.frombuffer(e, dtype=np.uint8)
            queues.append(G.Queue(ring=base, size=self.ring_slots, tail=len(ents)))
        return img, queues

    def run(self, backend: str = "golden", **kw) -> ProgramResult:
        if backend not in BACKENDS:
            raise ValueError(f"backend: must be one of {BACKENDS}, got {backend!r}")
        img, queues = self.image()
        if backend == "golden":
            mem = np.zeros(self.cfg.address_space, dtype=np.uint8)
            mem[:self.cfg.hbm_window] = img
            import time
            t0 = time.perf_counter()
            r = G.GoldenChip(self.cfg).run(mem, queues)
            wall = time.perf_counter() - t0
            return ProgramResult("golden", r.mem[:self.cfg.hbm_window], [q.regs() for q in
                                 r.queues], dict(r.regs), r.sems, r.est_cycles, wall,
                                 {"ttu_busy": r.ttu_busy, "deadlock": r.deadlock,
                                  "mem": r.mem, "log": r.log})
        import cosim.chip as drv
        out = drv.run(self.cfg, img, queues, sim=backend, **kw)
        return ProgramResult(backend, out["hbm"], out["queues"], out["regs"], out["sems"],
                             out["regs"]["BUSY_CYCLES"], out["wall_s"],
                             {"irq": out["irq"], "run_cycles": out["run_cycles"]})

    # --- scheduling -----------------------------------------------------------------------
    def emit_rounds(self, steps: dict) -> None:
        """Emit per-tile step sequences as queue entries, interleaved so units overlap.

        ``steps`` maps (cluster, tile) to a list of (phase_a, phase_b) action lists; an
        action is ("dma", c, channel, descs, q), ("wait", c, unit, is_tile, q) or
        ("tile", c, t, q[, cmd_addr]). Round k emits every unit's phase A of step k (loads, start),
        then every unit's phase B (drain), so one tile computes while others load."""
        if not steps:
            return
        units = list(steps)
        for k in range(max(len(v) for v in steps.values())):
            for ph in (0, 1):
                for u in units:
                    if k >= len(steps[u]):
                        continue
                    for s in steps[u][k][ph]:
                        if s[0] == "dma":
                            self.dma(s[1], s[3], channel=s[2], queue=s[4])
                        elif s[0] == "wait":
                            self.wait(s[1], s[2], s[3], queue=s[4])
                        else:
                            self.tile(s[1], s[2], s[4] if len(s) > 4 else 0, queue=s[3])

    def fence_all(self) -> None:
        """A FENCE at the end of every queue that has entries."""
        for q in range(self.cfg.queues):
            if self.entries[q]:
                self.fence(q)

    def units(self) -> list[tuple[int, int]]:
        """Every (cluster, tile), tile-major so consecutive work lands on different
        clusters (and queues)."""
        return [(c, t) for t in range(self.cfg.tiles) for c in range(self.cfg.clusters)]

    def channels(self) -> tuple[int, int]:
        """(input, output) cluster DMA channels: 0 and 1 when there are two."""
        return 0, (1 if self.cfg.dma_channels > 1 else 0)

    # --- GEMM -------------------------------------------------------------------------------
    def gemm(self, a, sa, fa: str, b, sb, fb: str, *, bm: int | None = None,
             bn: int | None = None, double_buffer: bool | None = None) -> GemmHandle:
        """C = A x B (A: M x K codes ``a`` with scales ``sa`` (M x K/32), B: K x N codes
        ``b`` with scales ``sb`` (K/32 x N)), binary32 C in HBM (row pitch
        ``f32_row_words(N)*32``). Output blocks of ``bm x bn`` are dealt to the tiles
        cluster by cluster; each cluster's work goes to queue ``cluster % queues``. Per tile
        the B column panel stays resident while its row blocks stream through (A in on DMA
        channel 0, C out on channel 1 when there are two). K larger than the tile's
        ``max_k`` is split into chunks of ``max_k`` accumulated in TSRAM (MATMUL with
        accumulate), which gives the same bits as one pass over K (the contract rounds
        block by block in K order).

        ``double_buffer`` (default None: on when K is one chunk, K <= max_k; with several
        K chunks on when two buffer sets fit TSRAM, else the single-buffered schedule; True
        raises ValueError when they do not fit): two sets of A, A scale, C and command list
        in TSRAM, so the DMA of row block i+1 into one set runs while the tile computes
        block i from the other, and C of block i leaves while block i+1 computes. With K
        chunks the B panel changes every chunk, so a set holds B chunk, B scale, A chunk,
        A scale and list, and two C accumulators alternate per output block
        (``_gemm_dbk_steps``); chunks still accumulate in K order. Per tile and step: DMA in (set s % 2), WAIT it, WAIT the tile (step
        s-1), DMA out of C (step s-1; the entry is dispatched only once the previous out
        chain has finished, so C of set s % 2 is free), TILE (step s)."""
        cfg = self.cfg
        tc = cfg.tile
        a, b = np.asarray(a, dtype=np.uint8), np.asarray(b, dtype=np.uint8)
        sa, sb = np.asarray(sa, dtype=np.uint8), np.asarray(sb, dtype=np.uint8)
        if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[0]:
            raise ValueError(f"a, b: shapes {a.shape} x {b.shape} do not chain")
        M, K = a.shape
        N = b.shape[1]
        if K % 32 or K == 0:
            raise ValueError(f"a: K={K} must be a positive multiple of 32")
        if sa.shape != (M, K // 32) or sb.shape != (K // 32, N):
            raise ValueError(f"sa, sb: scale shapes {sa.shape}, {sb.shape} do not match "
                             f"A {a.shape}, B {b.shape}")
        kc = min(K, tc.max_k)
        chunks = [(k0, min(kc, K - k0)) for k0 in range(0, K, kc)]
        cw = T.f32_row_words(N) * 32
        # HBM layouts, per K chunk: A rows, A scale rows, B^T rows, B^T scale rows; C rows
        hbm = []
        for k0, kn in chunks:
            blk = slice(k0 // 32, (k0 + kn) // 32)
            kaw, kbw = T.code_row_words(kn, fa) * 32, T.code_row_words(kn, fb) * 32
            ksw = T.scale_row_words(kn) * 32
            pa = self.alloc(M * kaw)
            gtile.write_codes(self.hbm, pa, a[:, k0:k0 + kn], fa)
            psa = self.alloc(M * ksw)
            gtile.write_scales(self.hbm, psa, sa[:, blk])
            pb = self.alloc(N * kbw)
            gtile.write_codes(self.hbm, pb, np.ascontiguousarray(b[k0:k0 + kn].T), fb)
            psb = self.alloc(N * ksw)
            gtile.write_scales(self.hbm, psb, np.ascontiguousarray(sb[blk].T))
            hbm.append((pa, psa, pb, psb, kn, kaw, kbw, ksw))
        # (a chunk's rows are packed with its own pitch: code_row_words(kn), which is at
        # most the pitch of a full chunk that the TSRAM layout reserves)
        pc = self.alloc(M * cw)
        aw, bw = T.code_row_words(kc, fa) * 32, T.code_row_words(kc, fb) * 32
        sw = T.scale_row_words(kc) * 32
        # block sizes that fit TSRAM: commands (1 word each, 2 lists) + B panel + 2 A/C sets
        bm_given, bn_given = bm, bn
        if bn is None:
            bn = min(N, 64)
        if bm is None:
            bm = min(M, 32)
        if bn % 8 and bn != N:
            raise ValueError(f"bn: must be a multiple of 8 (C rows are word aligned), got {bn}")

        if double_buffer is not None and not isinstance(double_buffer, bool):
            raise ValueError(f"double_buffer: must be None, True or False, got "
                             f"{double_buffer!r}")
        multi = len(chunks) > 1

        def panel_layout(nset):
            def layout(bm_, bn_, k=0):
                """TSRAM layout of buffer set k: (cmd, b0, sb0, a0, sa0, c0, end); ``end``
                is the end of the last set. Lists (2 commands) first, then the B panel,
                then the A / A scale / C sets."""
                cmd = k * 2 * 32
                b0 = nset * 2 * 32
                sb0 = b0 + bn_ * bw
                size = bm_ * aw + bm_ * sw + bm_ * T.f32_row_words(bn_) * 32
                a0 = sb0 + bn_ * sw + k * size
                sa0 = a0 + bm_ * aw
                c0 = sa0 + bm_ * sw
                end = sb0 + bn_ * sw + nset * size
                return cmd, b0, sb0, a0, sa0, c0, end
            return layout

        def chunk_layout(bm_, bn_, k=0, cb=None):
            """Double-buffered K chunks: two lists, two sets of B chunk / B scale / A chunk
            / A scale (set k), then two C accumulators (``cb``, default k)."""
            cb = k if cb is None else cb
            size = bn_ * bw + bn_ * sw + bm_ * aw + bm_ * sw
            b0 = 2 * 2 * 32 + k * size
            sb0 = b0 + bn_ * bw
            a0 = sb0 + bn_ * sw
            sa0 = a0 + bm_ * aw
            csize = bm_ * T.f32_row_words(bn_) * 32
            c0 = 2 * 2 * 32 + 2 * size + cb * csize
            return k * 2 * 32, b0, sb0, a0, sa0, c0, 2 * 2 * 32 + 2 * size + 2 * csize
        auto = bm_given is None and bn_given is None

        def search(layout):
            bm_, bn_ = bm, bn
            while auto and layout(bm_, bn_)[-1] > tc.tsram_bytes and (bm_ > 1 or bn_ > 8):
                if bm_ > 8 or bn_ <= 8:
                    bm_ = max(1, bm_ // 2)
                else:
                    bn_ = max(8, (bn_ // 2 + 7) // 8 * 8)
            return bm_, bn_
        db_layout = chunk_layout if multi else panel_layout(2)
        if double_buffer is None:
            # one K chunk: always (a block too large for two sets raises below); K chunks:
            # when two sets fit TSRAM with the searched block (or the given bm, bn), else
            # the single-buffered schedule
            double_buffer = (not multi
                             or db_layout(*search(db_layout))[-1] <= tc.tsram_bytes)
        layout = db_layout if double_buffer else panel_layout(1)
        bm, bn = search(layout)
        if layout(bm, bn)[-1] > tc.tsram_bytes:
            why = ", double_buffer=True needs two sets" if multi and double_buffer else ""
            raise ValueError(f"bm, bn: a {bm}x{bn} block with K={kc} does not fit TSRAM "
                             f"({layout(bm, bn)[-1]} > {tc.tsram_bytes} bytes{why})")
        col_blocks = [(j, min(bn, N - j)) for j in range(0, N, bn)]
        row_blocks = [(i, min(bm, M - i)) for i in range(0, M, bm)]
        units = self.units()
        # deal column panels to tiles; each tile runs all row blocks of its panels
        work = {u: [] for u in units}
        for k, cb in enumerate(col_blocks):
            work[units[k % len(units)]].append(cb)
        ch_in, ch_out = self.channels()
        # per tile, a sequence of steps; emitted round-robin across tiles so units overlap
        steps = {}
        for (c, t), panels in work.items():
            tb = cfg.tsram_base(c, t)
            q = c % cfg.queues
            seq = []
            if double_buffer:
                # set addresses from the largest block, so the sets never overlap when
                # the last row block or column panel is smaller
                if multi:
                    steps[(c, t)] = self._gemm_dbk_steps(
                        c, t, q, panels, row_blocks, lambda k, cb: layout(bm, bn, k, cb), hbm,
                        pc, cw, fa, fb, K)
                else:
                    steps[(c, t)] = self._gemm_db_steps(
                        c, t, q, panels, row_blocks, lambda k: layout(bm, bn, k), hbm[0], pc,
                        cw, fa, fb, K)
                continue
            for (j, nb) in panels:
                for (i, mb) in row_blocks:
                    cmd, b0, sb0, a0, sa0, c0, _ = layout(mb, nb)
                    out = self.copy2d(tb + c0, pc + i * cw + j * 4, nb * 4, mb,
                                      T.f32_row_words(nb) * 32, cw)
                    for kk, (pa, psa, pb, psb, kn, kaw, kbw, ksw) in enumerate(hbm):
                        lst = (T.cmd_matmul(a0, sa0, b0, sb0, c0, mb, nb, kn, fa, fb,
                                            accumulate=kk > 0) + T.cmd_end())
                        pl = self.put(np.frombuffer(lst, dtype=np.uint8), 64)
                        descs = []
                        if i == 0 or len(hbm) > 1:  # the B panel stays when K is one chunk
                            descs += [self.copy(pb + j * kbw, tb + b0, nb * kbw),
                                      self.copy(psb + j * ksw, tb + sb0, nb * ksw)]
                        descs += [self.copy(pa + i * kaw, tb + a0, mb * kaw),
                                  self.copy(psa + i * ksw, tb + sa0, mb * ksw),
                                  self.copy(pl, tb + cmd, len(lst))]
                        first, last = kk == 0, kk == len(hbm) - 1
                        seq.append(([("dma", c, ch_in, descs, q), ("wait", c, ch_in, False, q)]
                                    + ([("wait", c, ch_out, False, q)] if first else [])
                                    + [("tile", c, t, q)],
                                    [("wait", c, t, True, q)]
                                    + ([("dma", c, ch_out, [out], q)] if last else [])))
                    self.macs += mb * nb * K
            steps[(c, t)] = seq
        self.emit_rounds(steps)
        self.fence_all()
        return GemmHandle(pc, M, N, cw)

    def _gemm_db_steps(self, c, t, q, panels, row_blocks, layout, chunk, pc, cw, fa, fb, K):
        """Double-buffered steps of one tile (gemm's docstring): a list of (phase A, phase
        B) action lists for emit_rounds, one per block plus a final drain."""
        cfg = self.cfg
        tb = cfg.tsram_base(c, t)
        pa, psa, pb, psb, kn, kaw, kbw, ksw = chunk
        ch_in, ch_out = self.channels()
        seq, prev_out, s = [], None, 0
        for (j, nb) in panels:
            for bi, (i, mb) in enumerate(row_blocks):
                k = s % 2
                cmd, b0, sb0, a0, sa0, c0, _ = layout(k)
                lst = T.cmd_matmul(a0, sa0, b0, sb0, c0, mb, nb, kn, fa, fb) + T.cmd_end()
                pl = self.put(np.frombuffer(lst, dtype=np.uint8), 64)
                descs = [self.copy(pa + i * kaw, tb + a0, mb * kaw),
                         self.copy(psa + i * ksw, tb + sa0, mb * ksw),
                         self.copy(pl, tb + cmd, len(lst))]
                phase_a = []
                if bi == 0:   # a new B panel: the tile must be done with the old one
                    if s > 0:
                        phase_a += [("wait", c, t, True, q)]
                    descs = [self.copy(pb + j * kbw, tb + b0, nb * kbw),
                             self.copy(psb + j * ksw, tb + sb0, nb * ksw)] + descs
                phase_a += [("dma", c, ch_in, descs, q), ("wait", c, ch_in, False, q)]
                phase_b = [("wait", c, t, True, q)] if s > 0 else []
                if prev_out is not None:
                    phase_b.append(("dma", c, ch_out, [prev_out], q))
                phase_b.append(("tile", c, t, q, cmd))
                seq.append((phase_a, phase_b))
                prev_out = self.copy2d(tb + c0, pc + i * cw + j * 4, nb * 4, mb,
                                       T.f32_row_words(nb) * 32, cw)
                self.macs += mb * nb * K
                s += 1
        if prev_out is not None:
            seq.append(([], [("wait", c, t, True, q), ("dma", c, ch_out, [prev_out], q)]))
        return seq

    def _gemm_dbk_steps(self, c, t, q, panels, row_blocks, layout, hbm, pc, cw, fa, fb, K):
        """Double-buffered steps of one tile when K has several chunks (gemm's docstring):
        one step per (output block, K chunk), in chunk order, plus a final drain. Step s
        loads B chunk, B scale, A chunk, A scale and its list into set s % 2 while the tile
        runs step s-1; output block b accumulates in C buffer b % 2, whose DMA out is
        issued before the first TILE of block b+1."""
        tb = self.cfg.tsram_base(c, t)
        ch_in, ch_out = self.channels()
        seq, prev_out, s, blk = [], None, 0, 0
        for (j, nb) in panels:
            for (i, mb) in row_blocks:
                c0 = None
                for kk, (pa, psa, pb, psb, kn, kaw, kbw, ksw) in enumerate(hbm):
                    cmd, b0, sb0, a0, sa0, c0, _ = layout(s % 2, blk % 2)
                    lst = (T.cmd_matmul(a0, sa0, b0, sb0, c0, mb, nb, kn, fa, fb,
                                        accumulate=kk > 0) + T.cmd_end())
                    pl = self.put(np.frombuffer(lst, dtype=np.uint8), 64)
                    descs = [self.copy(pb + j * kbw, tb + b0, nb * kbw),
                             self.copy(psb + j * ksw, tb + sb0, nb * ksw),
                             self.copy(pa + i * kaw, tb + a0, mb * kaw),
                             self.copy(psa + i * ksw, tb + sa0, mb * ksw),
                             self.copy(pl, tb + cmd, len(lst))]
                    phase_a = [("dma", c, ch_in, descs, q), ("wait", c, ch_in, False, q)]
                    phase_b = [("wait", c, t, True, q)] if s > 0 else []
                    if kk == 0 and prev_out is not None:
                        phase_b.append(("dma", c, ch_out, [prev_out], q))
                    phase_b.append(("tile", c, t, q, cmd))
                    seq.append((phase_a, phase_b))
                    s += 1
                prev_out = self.copy2d(tb + c0, pc + i * cw + j * 4, nb * 4, mb,
                                       T.f32_row_words(nb) * 32, cw)
                self.macs += mb * nb * K
                blk += 1
        if prev_out is not None:
            seq.append(([], [("wait", c, t, True, q), ("dma", c, ch_out, [prev_out], q)]))
        return seq

    # --- layers (cosim.chip.layers) ----------------------------------------------------------
    def softmax(self, x, **kw):
        """Row softmax of float32 x (R, n) on every tile; see cosim.chip.layers.softmax."""
        from cosim.chip import layers
        return layers.softmax(self, x, **kw)

    def mlp(self, x, w1, w2, **kw):
        """Quantized MLP Y = relu(X W1)_q W2; see cosim.chip.layers.mlp."""
        from cosim.chip import layers
        return layers.mlp(self, x, w1, w2, **kw)

    def attention(self, q, k, v, **kw):
        """One attention head softmax(Q K^T / sqrt(d))_q V; see cosim.chip.layers.attention."""
        from cosim.chip import layers
        return layers.attention(self, q, k, v, **kw)


@dataclass
class GemmHandle:
    addr: int
    M: int
    N: int
    pitch: int

    def read(self, res: ProgramResult) -> np.ndarray:
        """C as uint32 binary32 bits [M, N]."""
        raw = res.hbm[self.addr:self.addr + self.M * self.pitch].reshape(self.M, self.pitch)
        return raw[:, :4 * self.N].copy().view(np.uint32)


def random_gemm(cfg: C.ChipConfig, M: int, N: int, K: int, fa: str = "e4m3",
                fb: str = "e4m3", seed: int = 0, ring_slots: int = RING_SLOTS, **kw):
    """A GEMM program on Gaussian data quantized to MX (tests and benchmarks):
    (program, handle, golden.mx.matmul reference bits). ``kw`` goes to ``gemm``."""
    from golden import mx

    rng = np.random.default_rng(seed)
    a, sa = mx.quantize(rng.standard_normal((M, K)).astype(np.float32), fa)
    bt, sbt = mx.quantize(rng.standard_normal((N, K)).astype(np.float32), fb)
    p = ChipProgram(cfg, ring_slots=ring_slots)
    h = p.gemm(a, sa, fa, bt.T, sbt.T, fb, **kw)
    return p, h, mx.matmul(a, sa, fa, bt.T, sbt.T, fb)


def compare(a: ProgramResult, b: ProgramResult, hbm_range=None) -> list[str]:
    """Mismatches between two results (exact registers, semaphores, HBM bytes)."""
    out = []
    lo, hi = hbm_range or (0, a.hbm.size)
    da, db = a.hbm[lo:hi], b.hbm[lo:hi]
    bad = np.flatnonzero(da != db)
    if bad.size:
        i = int(bad[0]) + lo
        out.append(f"HBM: {bad.size} bytes differ, first at {i:#x}: {a.backend} "
                   f"{int(a.hbm[i]):#04x} vs {b.backend} {int(b.hbm[i]):#04x}")
    for q, (qa, qb) in enumerate(zip(a.queues, b.queues)):
        for n in C.Q_EXACT_REGS:
            if qa[n] != qb[n]:
                out.append(f"queue {q} {n}: {a.backend} {qa[n]:#x} vs {b.backend} {qb[n]:#x}")
    for n in (*C.EXACT_GLOBAL_REGS, "IRQ_STATUS"):
        if a.regs.get(n) != b.regs.get(n):
            out.append(f"{n}: {a.backend} {a.regs.get(n)} vs {b.backend} {b.regs.get(n)}")
    if not np.array_equal(a.sems, b.sems):
        out.append(f"semaphores: {a.backend} {a.sems.tolist()} vs {b.backend} "
                   f"{b.sems.tolist()}")
    return out
