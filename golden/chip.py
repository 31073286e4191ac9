"""Golden model of the whole chip (docs/chip.md is the contract).

Chip memory image + host queue submissions in -> final memory image (HBM, every CSRAM and
TSRAM), per-queue registers, global counters and cluster semaphores out, bit for bit; plus a
cycle estimate from the documented performance model.

It composes the block twins: ``golden.dma.run`` executes a cluster DMA chain on the chip
address space (with the windows the command processor programs), ``golden.tile.GoldenTile``
runs a tile's command list on its TSRAM, with HBM ``[0, tile.ext_bytes)`` as the external
memory of its tile DMA (docs/chip.md "Tile DMA window"). Dispatched work is executed
atomically when it is dispatched, in queue order, queues taken round-robin one entry at a
time. The hardware runs units concurrently, so the result is the hardware's when the
program is race-free: work that touches the same bytes is ordered by FENCE or SEM_WAIT
(docs/chip.md "Ordering").
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

import numpy as np

from golden import dma as gdma
from golden import nic as gnic
from golden.tile import CycleModel, GoldenTile
from spec import chip as C
from spec import dma as D
from spec import tile as T

__all__ = ["Queue", "QueueResult", "ChipResult", "PerfModel", "GoldenChip", "run", "chip_nic",
           "nic_wrote_cqe", "PairResult", "run_pair"]


@dataclass(frozen=True)
class Queue:
    """One host submission: the ring base (HBM), its size in entries and the tail written
    to the doorbell (entries ``0 .. tail-1`` are taken, in order)."""
    ring: int
    size: int
    tail: int

    def __post_init__(self):
        for n in ("ring", "size", "tail"):
            v = getattr(self, n)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ValueError(f"{n}: must be a non-negative int, got {v!r}")
        if not 1 <= self.size <= C.QUEUE_MAX_SIZE:
            raise ValueError(f"size: must be in 1..{C.QUEUE_MAX_SIZE}, got {self.size}")
        if self.tail >= self.size:
            raise ValueError(f"tail: must be < size ({self.size}), got {self.tail}")
        if self.ring % C.ENTRY_BYTES or self.ring >= 1 << 32:
            raise ValueError(f"ring: must be a 32-byte aligned 32-bit address, got "
                             f"{self.ring:#x}")


@dataclass
class QueueResult:
    head: int = 0
    seq: int = 0
    error: int = C.ERR_NONE
    err_seq: int = 0
    err_detail: int = 0
    err_count: int = 0
    done_count: int = 0
    status: int = 0
    log: list = field(default_factory=list)    # (seq, opcode name, outcome)

    def regs(self) -> dict[str, int]:
        return {"HEAD": self.head, "STATUS": self.status, "ERROR": self.error,
                "ERR_SEQ": self.err_seq, "ERR_DETAIL": self.err_detail,
                "ERR_COUNT": self.err_count, "DONE_COUNT": self.done_count, "SEQ": self.seq}


@dataclass
class ChipResult:
    mem: np.ndarray
    queues: list
    regs: dict                 # exact global registers
    sems: np.ndarray           # [clusters, n_sems] uint8
    est_cycles: int
    ttu_busy: int              # sum of tile ttu_busy estimates (not exact)
    deadlock: bool = False
    log: list = field(default_factory=list)


@dataclass(frozen=True)
class PerfModel:
    """Cycle model of the command processor and its units (docs/chip.md "Performance").

    The CP takes an entry in ``entry`` cycles (fetch from HBM, check); dispatching a DMA
    costs ``dma_dispatch`` more (two CSR writes); a DMA chain then runs for the golden DMA
    estimate times ``dma_scale`` (memory latency of the HBM model) plus ``dma_extra`` per
    descriptor; a tile list runs for the golden tile estimate; the CP notices completion
    after ``poll`` cycles; a FENCE waits for every unit of its queue.

    With the NoC (``cfg.noc``) every memory access crosses network interfaces and the mesh:
    an entry costs ``noc_entry`` more cycles and a DMA descriptor ``noc_desc`` more (both
    calibrated on the one-hop ``tiny`` chip), plus ``noc_hop`` cycles per hop beyond the
    first for each HBM round trip of a descriptor (its fetch, its HBM source, its HBM
    destination; ``hbm_hops``); a tile-DMA access to HBM costs ``tile_noc_desc`` (one hop)
    plus ``noc_hop`` per further hop. With ``hbm_share`` the data beats of every DMA chain
    and tile list, plus ``hbm_burst`` per burst, are booked on the HBM port that holds the
    address (``hbm_port``; reads and writes share the port's network interface): work ends
    no earlier than ``hbm_tail`` after its last beat leaves a port that earlier work keeps
    busy. An element-mode descriptor (every element its own one-beat burst) costs, per
    element and HBM side, a round trip ``noc_rt + noc_hop * hops`` divided by the
    ``ni_outstanding`` bursts a network interface keeps in flight. ``poll_unit`` lengthens the CP's poll round per unit of the chip (0: not needed by
    the calibration programs so far). docs/chip.md "Performance model" has the formulas and
    the calibration."""

    entry: int = 12
    dma_dispatch: int = 10
    dma_scale: float = 1.0
    dma_extra: int = 4
    tile_dispatch: int = 2
    poll: int = 12
    init: int = 0
    noc_entry: int = 30
    noc_desc: int = 50
    # the mesh's geometry and shared HBM ports (docs/chip.md "Performance model")
    noc_hop: int = 4            # cycles per hop of one round trip (2 per hop each way)
    poll_unit: float = 0.0      # CP cycles per unit of the chip in one poll round
    tile_noc_desc: int = 32     # per tile-DMA access to HBM (source or destination), 1 hop
    hbm_share: bool = True      # DMA and tile-DMA beats queue at their HBM port
    hbm_burst: int = 2          # port cycles per burst besides its beats (head flit, turn)
    hbm_tail: int = 20          # from a port's last beat to the end of the unit's work
    noc_rt: int = 24            # a one-beat HBM round trip at 0 hops, DMA to DMA
    ni_outstanding: int = 4     # bursts a network interface keeps in flight per direction


class GoldenChip:
    """Run host queues on a chip memory image (see the module docstring)."""

    def __init__(self, cfg: C.ChipConfig | None = None, perf: PerfModel | None = None, *,
                 rank: int = 0, trays: int = 1):
        cfg = cfg or C.DEFAULT
        if not isinstance(cfg, C.ChipConfig):
            raise TypeError(f"cfg: must be a spec.chip.ChipConfig, got {type(cfg).__name__}")
        if isinstance(rank, bool) or not isinstance(rank, int) or not 0 <= rank < 8:
            raise ValueError(f"rank: must be an int in 0..7 (REG_TRAY_RANK), got {rank!r}")
        if trays not in (1, 2):
            raise ValueError(f"trays: must be 1 or 2 (REG_TRAY_RANK), got {trays!r}")
        self.rank, self.trays = rank, trays      # what the host wrote to REG_TRAY_RANK
        self.cfg = cfg
        self.perf = perf or PerfModel()
        self.tile = GoldenTile(cfg.tile)
        if cfg.noc and self.perf.tile_noc_desc:
            self.tile.model = _NocTileModel(cfg.tile, chip=cfg, perf=self.perf)

    def empty_image(self) -> np.ndarray:
        return np.zeros(self.cfg.address_space, dtype=np.uint8)

    def run(self, mem: np.ndarray, queues, max_entries: int = 1 << 20) -> ChipResult:
        """``mem``: uint8 [cfg.address_space] (HBM image; the cluster memories start zeroed
        in hardware, so their bytes must be 0). ``queues``: a sequence of Queue (index q) or
        None for an unused queue."""
        cfg, pm = self.cfg, self.perf
        if not isinstance(mem, np.ndarray) or mem.dtype != np.uint8 or mem.shape != (
                cfg.address_space,):
            raise ValueError(f"mem: expected uint8 [{cfg.address_space}], got "
                             f"{getattr(mem, 'dtype', type(mem))} {getattr(mem, 'shape', '')}")
        queues = list(queues)
        if len(queues) > cfg.queues:
            raise ValueError(f"queues: at most {cfg.queues} queues, got {len(queues)}")
        for i, q in enumerate(queues):
            if q is not None and not isinstance(q, Queue):
                raise ValueError(f"queues[{i}]: must be a golden.chip.Queue or None")
        if mem[cfg.local_base:].any():
            raise ValueError("mem: cluster memories (addresses >= local_base) must start "
                             "zeroed")
        mem = mem.copy()
        sems = np.zeros((cfg.clusters, cfg.n_sems), dtype=np.int64)
        qres = [QueueResult() for _ in range(cfg.queues)]
        regs = dict.fromkeys(C.EXACT_GLOBAL_REGS, 0)
        regs["IRQ_STATUS"] = 0
        macs = 0
        ttu_busy = 0
        log = []
        # timing state
        t_cp = pm.init
        poll = pm.poll + pm.poll_unit * cfg.clusters * (cfg.dma_channels + cfg.tiles)
        port_free: dict = {}           # HBM port -> cycle its booked beats are done
        unit_free: dict = {}           # unit key -> cycle its current work ends
        unit_owner: dict = {}
        t_end = 0
        deadlock = False

        def record(q, seq, code, detail):
            r = qres[q]
            if r.err_count == 0 or seq < r.err_seq:
                r.error, r.err_seq, r.err_detail = code, seq, detail & 0xFFFF_FFFF
            r.err_count += 1
            regs["IRQ_STATUS"] |= 1 << (2 * q + 1)

        def retire(q, irq):
            qres[q].done_count += 1
            if irq:
                regs["IRQ_STATUS"] |= 1 << (2 * q)

        heads = [0] * cfg.queues
        active = [q is not None and q.tail != 0 for q in queues] + [False] * (
            cfg.queues - len(queues))
        taken = 0
        while any(active):
            progress = False
            for qi, qd in enumerate(queues):
                if not active[qi]:
                    continue
                r = qres[qi]
                seq = r.seq
                addr = qd.ring + heads[qi] * C.ENTRY_BYTES
                t_entry = pm.entry + (pm.noc_entry if cfg.noc else 0)
                t_cp += t_entry
                outcome = None
                if addr + C.ENTRY_BYTES > cfg.hbm_window:
                    record(qi, seq, C.ERR_FETCH, addr)
                    retire(qi, False)
                    outcome = "FETCH"
                else:
                    e = C.Entry.decode(bytes(mem[addr:addr + C.ENTRY_BYTES]))
                    chk = C.check_entry(e, cfg, self.rank, self.trays)
                    if chk:
                        record(qi, seq, chk, 0)
                        retire(qi, e.irq)
                        outcome = C.ERROR_NAMES[chk]
                    elif e.opcode == C.OP_NOP:
                        retire(qi, e.irq)
                        outcome = "ok"
                    elif e.opcode == C.OP_FENCE:
                        ends = [t for u, t in unit_free.items() if unit_owner.get(u) == qi]
                        if ends:
                            t_cp = max(t_cp, max(ends) + poll)
                        retire(qi, e.irq)
                        outcome = "ok"
                    elif e.opcode == C.OP_WAIT:
                        key = ("tile" if e.arg == C.WAIT_TILE else "dma", e.cluster, e.unit)
                        if key in unit_free:
                            t_cp = max(t_cp, unit_free[key] + poll)
                        retire(qi, e.irq)
                        outcome = "ok"
                    elif e.opcode == C.OP_SEM_WAIT:
                        if sems[e.cluster, e.unit] >= e.arg:
                            sems[e.cluster, e.unit] -= e.arg
                            retire(qi, e.irq)
                            outcome = "ok"
                        else:
                            t_cp -= t_entry
                            continue          # blocked: try the other queues
                    elif e.opcode == C.OP_COLLECTIVE:
                        est = self._collective(mem, e)
                        retire(qi, e.irq)
                        outcome = "ok"
                        key = ("coll", 0, 0)
                        t0 = max(t_cp, unit_free.get(key, 0)) + pm.tile_dispatch
                        t_cp = t0
                        unit_free[key] = t0 + est
                        unit_owner[key] = qi
                    elif e.opcode == C.OP_DMA:
                        outcome = self._dma(mem, e, sems, record, qi, seq)
                        mem = outcome[1]
                        est = outcome[2]
                        outcome = outcome[0]
                        regs["DMA_DISPATCH"] += 1
                        retire(qi, e.irq)
                        key = ("dma", e.cluster, e.unit)
                        t0 = max(t_cp, unit_free.get(key, 0)) + pm.dma_dispatch
                        t_cp = t0
                        t1 = t0 + est
                        t1 = self._share(port_free, self._last_ports, t0, t1)
                        unit_free[key] = t1
                        unit_owner[key] = qi
                    else:   # TILE
                        base = cfg.tsram_base(e.cluster, e.unit)
                        view = mem[base:base + cfg.tile.tsram_bytes]
                        # the tile DMA's external window is HBM [0, tile.ext_bytes)
                        ext_n = cfg.tile.ext_bytes
                        if isinstance(self.tile.model, _NocTileModel):
                            self.tile.model.at(e.cluster, view)
                        res = self.tile.run(view, e.arg, ext=mem[:ext_n])
                        mem[base:base + cfg.tile.tsram_bytes] = res.tsram
                        mem[:ext_n] = res.ext
                        regs["TILE_DISPATCH"] += 1
                        c = res.counters
                        macs += c["macs_lo"] | c["macs_hi"] << 32
                        ttu_busy += c["ttu_busy"]
                        if res.deadlock:
                            deadlock = True
                        if res.state == T.ST_ERROR:
                            record(qi, seq, C.ERR_TILE, res.status)
                            outcome = "TILE error"
                        else:
                            outcome = "ok"
                        retire(qi, e.irq)
                        key = ("tile", e.cluster, e.unit)
                        t0 = max(t_cp, unit_free.get(key, 0)) + pm.tile_dispatch
                        t_cp = t0
                        ports = (self.tile.model.take_ports()
                                 if isinstance(self.tile.model, _NocTileModel) else {})
                        unit_free[key] = self._share(port_free, ports, t0, t0 + c["cycles"])
                        unit_owner[key] = qi
                r.log.append((seq, outcome))
                log.append((qi, seq, outcome))
                r.seq += 1
                heads[qi] = (heads[qi] + 1) % qd.size
                if heads[qi] == qd.tail:
                    active[qi] = False
                progress = True
                taken += 1
                if taken > max_entries:
                    raise RuntimeError(f"more than max_entries={max_entries} entries taken")
            if not progress:
                deadlock = True
                break
        for qi, r in enumerate(qres):
            r.head = heads[qi]
            r.status = 1 if (qi < len(queues) and active[qi]) else 0
        t_end = max([t_cp] + [t + poll for t in unit_free.values()])
        regs["MACS_LO"] = macs & 0xFFFF_FFFF
        regs["MACS_HI"] = (macs >> 32) & 0xFFFF_FFFF
        return ChipResult(mem=mem, queues=qres, regs=regs, sems=(sems & 0xFF).astype(np.uint8),
                          est_cycles=int(t_end), ttu_busy=ttu_busy, deadlock=deadlock, log=log)

    def _share(self, port_free: dict, ports: dict, t0: int, t1: int) -> int:
        """End of a unit's work that started at ``t0`` and would end at ``t1`` alone, when
        its HBM traffic ``ports`` {port: (beats, bursts)} queues behind the
        traffic already booked on those ports (``port_free``, updated)."""
        pm = self.perf
        if not (pm.hbm_share and self.cfg.noc):
            return t1
        for pk, (beats, bursts) in ports.items():
            port_free[pk] = max(port_free.get(pk, 0), t0) + beats + pm.hbm_burst * bursts
            t1 = max(t1, port_free[pk] + pm.hbm_tail)
        return t1

    def _collective(self, mem, e) -> int:
        """A COLLECTIVE entry that passed the static checks (docs/tray.md). A one-rank group
        (the chip's own rank only) is executed here; a group with other ranks needs the
        other chips' images: golden.tray.run is the tray's golden model."""
        from spec import tray as TR

        d, _ = TR.decode(struct.pack("<8I", *e.words))
        if d.n != 1:
            raise ValueError(f"queues: a COLLECTIVE entry over ranks {d.group} needs the other "
                             "chips; golden.chip runs one-rank groups only (use golden.tray.run)")
        words = 0
        for src, dst, nb in TR.local_jobs(d):
            mem[dst:dst + nb] = mem[src:src + nb].copy()
            words += -(-nb // C.ENTRY_BYTES)
        return 2 * words + self.perf.dma_extra

    def _dma(self, mem, e, sems, record, qi, seq):
        cfg = self.cfg
        heads = [None] * cfg.dma_channels
        heads[e.unit] = e.arg
        res = gdma.run(mem, heads, cfg.dma_windows(e.cluster), data_width=256,
                       max_burst=cfg.dma_max_burst)
        ch = res.channels[e.unit]
        for sid in ch.sems:
            sems[e.cluster, sid & (cfg.n_sems - 1)] += 1
        sems[e.cluster] &= 0xFF
        pm = self.perf
        extra = pm.dma_extra + (pm.noc_desc if cfg.noc else 0)
        est = int(ch.est_cycles * pm.dma_scale) + extra * max(1, ch.desc_count)
        trips, self._last_ports, elems = dma_noc_trips(cfg, mem, e.cluster, e.arg,
                                                       ch.desc_count)
        if cfg.noc:
            est += pm.noc_hop * sum(h - 1 for h in trips)
            # element mode: one-beat bursts, each a NoC round trip, ni_outstanding at a time
            est += round(sum(n * max(0.0, (pm.noc_rt + pm.noc_hop * h) / pm.ni_outstanding
                                     - 1) for n, h in elems))
        if ch.status == D.ST_ERROR:
            record(qi, seq, C.ERR_DMA, ch.error)
            return "DMA error", res.mem, est
        return "ok", res.mem, est


def run(mem, queues, cfg: C.ChipConfig | None = None) -> ChipResult:
    return GoldenChip(cfg).run(mem, queues)


# --- geometry of the performance model (docs/chip.md "Performance model") ---------------------

def cluster_node(cfg: C.ChipConfig, c: int) -> tuple[int, int]:
    """Mesh node (x, y) of cluster ``c`` (cluster x + mesh_x * y)."""
    return c % cfg.mesh_x, c // cfg.mesh_x


def hbm_port(cfg: C.ChipConfig, addr: int) -> int:
    """Edge HBM port whose slice of hbm_window holds HBM address ``addr``."""
    return min(addr // (cfg.hbm_window // cfg.edge_hbm_ports), cfg.edge_hbm_ports - 1)


def hbm_hops(cfg: C.ChipConfig, node: tuple[int, int], addr: int) -> int:
    """Mesh hops (XY routing) from ``node`` to the HBM node of ``addr``'s port."""
    return abs(node[0] - hbm_port(cfg, addr)) + abs(node[1] - cfg.mesh_y)


def _element_mode(d: D.Descriptor) -> bool:
    """Whether the DMA engine moves ``d`` element by element, each element its own burst
    (docs/dma.md "Transfer modes"); row mode needs equal unit strides and the same offset in
    a 256-bit word on both sides."""
    e, w = d.elem_bytes, T.WORD_BYTES
    same = all((s - t) % w == 0 for s, t in zip(d.src_strides[1:], d.dst_strides[1:]))
    return not (d.src_strides[0] == d.dst_strides[0] == e and (d.src - d.dst) % w == 0
                and same)


def dma_noc_trips(cfg: C.ChipConfig, mem: np.ndarray, c: int, head: int, n: int):
    """The HBM round trips of the first ``n`` descriptors (at least one) of the cluster-DMA
    chain at ``head`` of cluster ``c``: a list of hop counts, one per descriptor fetched from
    HBM and one per HBM source or destination of a descriptor; the HBM traffic per port
    {port: (beats, bursts)}, descriptor fetches included; and the element-mode accesses:
    (elements, hops) per HBM side of an element-mode descriptor (each element is its own
    one-beat burst)."""
    node = cluster_node(cfg, c)
    trips, ports, elems = [], {}, []
    a = head
    for _ in range(max(1, n)):
        if not (0 <= a and a + D.DESC_BYTES <= cfg.hbm_window):
            break                          # a chain in the cluster's own memory: no NoC
        trips.append(hbm_hops(cfg, node, a))
        _book(ports, hbm_port(cfg, a), D.DESC_BYTES, cfg.dma_max_burst)
        d = D.Descriptor.unpack(bytes(mem[a:a + D.DESC_BYTES]))
        count = d.counts[0] * d.counts[1] * d.counts[2]
        elem = _element_mode(d)
        for addr in (d.src, d.dst):
            if addr < cfg.hbm_window:
                h = hbm_hops(cfg, node, addr)
                trips.append(h)
                _book(ports, hbm_port(cfg, addr), count * d.elem_bytes,
                      1 if elem else cfg.dma_max_burst)
                if elem:
                    elems.append((count, h))
        a = d.next
    return trips, ports, elems


def _book(ports: dict, key, nbytes: int, max_burst: int) -> None:
    """Add a transfer of ``nbytes`` (bursts of at most ``max_burst`` beats) to ``ports``."""
    beats = -(-nbytes // T.WORD_BYTES)
    b, n = ports.get(key, (0, 0))
    ports[key] = (b + beats, n + -(-beats // max_burst))


class _NocTileModel(CycleModel):
    """golden.tile's cycle model with the chip's NoC latency on its DMA (docs/chip.md
    "Performance model"): every access of a tile-DMA descriptor to the tile's external
    window (HBM: its source, its destination) adds ``tile_noc_desc`` (one hop) plus
    ``noc_hop`` per further hop. ``at(cluster, tsram)`` names the tile about to run (its
    descriptors are read from that TSRAM image)."""

    def __init__(self, cfg, *, chip: C.ChipConfig, perf: PerfModel):
        super().__init__(cfg)
        self.chip, self.perf = chip, perf
        self.node, self.tsram, self.ports = (0, 0), None, {}

    def at(self, cluster: int, tsram: np.ndarray) -> None:
        self.node, self.tsram, self.ports = cluster_node(self.chip, cluster), tsram, {}

    def take_ports(self) -> dict:
        """The HBM traffic of the list that ran since ``at`` (see GoldenChip._share)."""
        p, self.ports = self.ports, {}
        return p

    def dma(self, ch) -> int:
        base = super().dma(ch)
        pm, cfg, ts = self.perf, self.chip, self.tsram
        a, extra = ch.head, 0
        for _ in range(max(1, ch.desc_count)):
            if ts is None or not 0 <= a <= ts.size - D.DESC_BYTES:
                break
            d = D.Descriptor.unpack(bytes(ts[a:a + D.DESC_BYTES]))
            nbytes = d.counts[0] * d.counts[1] * d.counts[2] * d.elem_bytes
            for addr in (d.src, d.dst):
                if T.DMA_EXT_BASE <= addr < T.DMA_EXT_BASE + self.cfg.ext_bytes:
                    h = hbm_hops(cfg, self.node, addr - T.DMA_EXT_BASE)
                    extra += pm.tile_noc_desc + pm.noc_hop * (h - 1)
                    _book(self.ports, hbm_port(cfg, addr - T.DMA_EXT_BASE), nbytes,
                          T.DMA_MAX_BURST)
            a = d.next
        return base + extra


# --- NIC ports (docs/chip.md "NIC ports") -----------------------------------------------------

def chip_nic(cfg: C.ChipConfig, hbm: np.ndarray, *, mac: int, ip: int, timeout: int = 64,
             retry_limit: int = 16) -> gnic.Nic:
    """The golden NIC of one NIC port of a chip: a golden.nic.Nic with the chip's NIC
    parameters whose memory *is* ``hbm`` (uint8 [cfg.hbm_window], shared, not copied), so
    its WQEs, payloads, receive rings and CQEs live in the chip's HBM image. Configure it
    (setup_qp, set_window) and post work requests on it like any golden NIC."""
    if not isinstance(cfg, C.ChipConfig):
        raise ValueError(f"cfg: must be a spec.chip.ChipConfig, got {type(cfg).__name__}")
    if cfg.nic_ports < 1:
        raise ValueError(f"cfg: configuration {cfg.name!r} has no NIC ports")
    if not isinstance(hbm, np.ndarray) or hbm.dtype != np.uint8 or hbm.shape != (
            cfg.hbm_window,):
        raise ValueError(f"hbm: expected uint8 [{cfg.hbm_window}], got "
                         f"{getattr(hbm, 'dtype', type(hbm))} {getattr(hbm, 'shape', '')}")
    nic = gnic.Nic(cfg.nic_params, mac=mac, ip=ip, mem_size=8, timeout=timeout,
                   retry_limit=retry_limit)
    nic.mem = hbm
    return nic


def nic_wrote_cqe(nic: gnic.Nic) -> bool:
    """Whether a NIC port wrote a completion (send-queue or receive CQE), which sets its
    IRQ_STATUS bit (the NIC's cq_event)."""
    return bool(nic.counters["wqe_done"] or nic.counters["recv_done"])


@dataclass
class PairResult:
    a: ChipResult
    b: ChipResult
    frames_a: list          # per NIC port: frames sent by chip a's port, in order
    frames_b: list
    ticks: int              # golden NIC time (frame slots), not cycles


def run_pair(cfg: C.ChipConfig, a, b, links=None) -> PairResult:
    """Two chips whose NIC port p are joined (port p of a <-> port p of b).

    ``a`` and ``b``: (mem, queues, nics) with ``mem`` the chip image (uint8
    [cfg.address_space]) as for GoldenChip.run, ``queues`` its host queue submissions and
    ``nics`` one golden NIC per used port (chip_nic, configured and posted; its memory is
    rebound to the chip's result image). ``links``: per port, (a->b, b->a)
    golden.nic.LossyLink pairs (default: lossless).

    Queue work and NIC work of a chip run concurrently in hardware and are not ordered: the
    contract requires them to touch disjoint bytes (like two host queues), so golden runs
    each chip's queues first and then the NICs on the resulting images. Every NIC port that
    wrote a CQE (nic_wrote_cqe) sets IRQ_STATUS bit IRQ_NIC_BASE + port."""
    if not isinstance(cfg, C.ChipConfig) or cfg.nic_ports < 1:
        raise ValueError("cfg: must be a spec.chip.ChipConfig with NIC ports")
    (mem_a, q_a, nics_a), (mem_b, q_b, nics_b) = a, b
    if len(nics_a) != len(nics_b) or len(nics_a) > cfg.nic_ports:
        raise ValueError(f"nics: both chips need the same number of NIC ports (at most "
                         f"{cfg.nic_ports}), got {len(nics_a)} and {len(nics_b)}")
    links = list(links) if links is not None else [(None, None)] * len(nics_a)
    if len(links) != len(nics_a):
        raise ValueError(f"links: one (a->b, b->a) pair per port, got {len(links)}")
    gold = GoldenChip(cfg)
    ra, rb = gold.run(mem_a, q_a), gold.run(mem_b, q_b)
    frames_a, frames_b, ticks = [], [], 0
    for p, (na, nb) in enumerate(zip(nics_a, nics_b)):
        na.mem = ra.mem[:cfg.hbm_window]
        nb.mem = rb.mem[:cfg.hbm_window]
        fa, fb, t = gnic.run_pair(na, nb, *links[p])
        frames_a.append(fa)
        frames_b.append(fb)
        ticks = max(ticks, t)
        for nic, r in ((na, ra), (nb, rb)):
            if nic_wrote_cqe(nic):
                r.regs["IRQ_STATUS"] |= 1 << (C.IRQ_NIC_BASE + p)
    return PairResult(ra, rb, frames_a, frames_b, ticks)
