"""Tray contract: topology, rank numbering, the COLLECTIVE command, its errors, the
collective algorithms (as transfer plans) and the parameters of the transport time model.

The single definition used by golden/tray.py, cosim/tray/ and docs/tray.md (and, later, the
chip's collective engine in RTL). Pure Python (no numpy).

Topology (docs/tray.md)::

    tray t (0 or 1), chip c (0..3), rank = 4*t + c
    port p in 0..2 of chip c: direct link to chip mesh_peers(c)[p] of the same tray
    port 3 (UPLINK) of every chip: one port of the Ethernet switch (switch port = rank)

COLLECTIVE queue entry (32 bytes, little-endian 32-bit words, spec.chip entry format)::

    w0  [7:0] opcode = OP_COLLECTIVE  [15:8] cluster = 0  [19:16] unit = 0 (engine)
        [20] irq  [31:21] reserved (0)
    w1  [3:0] kind  [7:4] format  [10:8] root rank (BROADCAST; else 0)  [15:11] 0
        [23:16] group mask (bit r = rank r takes part)  [31:24] 0
    w2  src address (HBM)            w3  dst address (HBM)
    w4  count: elements of the whole vector (see "buffers")
    w5  src scales address (MX formats; else 0)
    w6  dst scales address (MX formats; else 0)
    w7  scratch address (binary32 ALL_REDUCE / REDUCE_SCATTER; else 0)
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, replace

from spec import chip as C
from spec import nic as N

# --- command ------------------------------------------------------------------------------

# spec.chip lists it among the chip's opcodes (0..5 and 0x10: 6..15 left for the chip's growth)
OP_COLLECTIVE = C.OP_COLLECTIVE

KIND_ALL_REDUCE, KIND_REDUCE_SCATTER, KIND_ALL_GATHER, KIND_BROADCAST = 0, 1, 2, 3
KINDS = {"all_reduce": KIND_ALL_REDUCE, "reduce_scatter": KIND_REDUCE_SCATTER,
         "all_gather": KIND_ALL_GATHER, "broadcast": KIND_BROADCAST}
KIND_NAMES = {v: k for k, v in KINDS.items()}

FMT_FP32, FMT_MX_E4M3, FMT_MX_E5M2, FMT_MX_E2M1 = 0, 1, 2, 3
FORMATS = {"fp32": FMT_FP32, "mx_e4m3": FMT_MX_E4M3, "mx_e5m2": FMT_MX_E5M2,
           "mx_e2m1": FMT_MX_E2M1}
FORMAT_NAMES = {v: k for k, v in FORMATS.items()}
# code bits per element; MX tensors also carry one e8m0 scale byte per MX_BLOCK elements
CODE_BITS = {FMT_FP32: 32, FMT_MX_E4M3: 8, FMT_MX_E5M2: 8, FMT_MX_E2M1: 4}
MX_BLOCK = 32

W1_KIND = (0, 4)
W1_FORMAT = (4, 4)
W1_ROOT = (8, 3)
W1_GROUP = (16, 8)
W1_RESERVED_MASK = 0xFF00_F800

BUF_ALIGN = 32           # every buffer address: one 256-bit DMA word
MAX_RANKS = 8

# queue error code of a failed collective (spec.chip.ERR_COLLECTIVE) and its detail
ERR_COLLECTIVE = C.ERR_COLLECTIVE
DETAIL_PEER = (0, 8)       # the peer rank involved
DETAIL_CAUSE = (8, 4)      # CAUSE_* below
DETAIL_CQ_STATUS = (12, 8)  # the NIC completion status (spec.nic.CQ_*) for CAUSE_NIC
CAUSE_NIC = 1              # a NIC work request to the peer completed with an error status
CAUSE_TIMEOUT = 2          # nothing arrived from the peer for engine_timeout cycles
CAUSE_UNSUPPORTED = 3      # not in this chip's RTL engine: groups across trays without the uplink (docs/tray.md)
CAUSE_NAMES = {CAUSE_NIC: "NIC", CAUSE_TIMEOUT: "TIMEOUT", CAUSE_UNSUPPORTED: "UNSUPPORTED"}


def detail(cause: int, peer: int, cq_status: int = 0) -> int:
    return cause << DETAIL_CAUSE[0] | peer << DETAIL_PEER[0] | cq_status << DETAIL_CQ_STATUS[0]


def split_detail(d: int) -> tuple[int, int, int]:
    """(cause, peer, cq_status) of an ERR_COLLECTIVE detail word."""
    f = lambda fld: (d >> fld[0]) & ((1 << fld[1]) - 1)  # noqa: E731
    return f(DETAIL_CAUSE), f(DETAIL_PEER), f(DETAIL_CQ_STATUS)


# --- topology -----------------------------------------------------------------------------

CHIPS_PER_TRAY = 4
MESH_PORTS = CHIPS_PER_TRAY - 1
UPLINK = MESH_PORTS              # port index of the uplink
PORTS = MESH_PORTS + 1
RKEY = 0x7AA7_0001               # key of the window every port NIC registers over HBM
QP_MESH = 0                      # queue pair used on a mesh port


def rank_of(tray: int, chip: int) -> int:
    return tray * CHIPS_PER_TRAY + chip


def tray_of(rank: int) -> int:
    return rank // CHIPS_PER_TRAY


def chip_of(rank: int) -> int:
    return rank % CHIPS_PER_TRAY


def mesh_peers(chip: int) -> list[int]:
    """The chips of the same tray on ports 0..2, ascending."""
    return [c for c in range(CHIPS_PER_TRAY) if c != chip]


def port_mac(rank: int, port: int) -> int:
    """02:4D:41:00:<rank>:<port> (locally administered)."""
    return 0x02_4D_41_00_00_00 | rank << 8 | port


def port_ip(rank: int, port: int) -> int:
    """10.<tray>.<chip>.<port + 1>."""
    return 0x0A_00_00_00 | tray_of(rank) << 16 | chip_of(rank) << 8 | (port + 1)


@dataclass(frozen=True)
class Route:
    """How ``rank`` reaches ``peer``: its port, the queue pair on that port, and the peer's
    port and queue pair at the other end."""
    port: int
    qp: int
    peer_port: int
    peer_qp: int
    via_switch: bool


def route(rank: int, peer: int, n_ranks: int) -> Route:
    """Same tray: the direct mesh link, queue pair QP_MESH at both ends. Other tray: the
    uplinks through the switch, queue pair = the chip index of the other end."""
    for name, v in (("rank", rank), ("peer", peer)):
        if not isinstance(v, int) or not 0 <= v < n_ranks:
            raise ValueError(f"{name}: must be a rank in 0..{n_ranks - 1}, got {v!r}")
    if rank == peer:
        raise ValueError(f"peer: must differ from rank, got {peer}")
    if tray_of(rank) == tray_of(peer):
        return Route(mesh_peers(chip_of(rank)).index(chip_of(peer)), QP_MESH,
                     mesh_peers(chip_of(peer)).index(chip_of(rank)), QP_MESH, False)
    return Route(UPLINK, chip_of(peer), UPLINK, chip_of(rank), True)


# --- parameters of the tray and of the transport time model --------------------------------

@dataclass(frozen=True)
class TrayParams:
    """Tray system and transport-model parameters (shared by golden/tray.py and cosim/tray).

    trays: 1 (4 chips) or 2 (8 chips, uplinks joined by the switch). mem_bytes: HBM image
    per chip. ring_base: the NIC rings of every port live in [ring_base, mem_bytes).
    nic: spec.nic.NicParams of every port NIC. wqe_max: largest WRITE the engine posts.
    Time model (cycles of the NIC clock): link_bytes_per_cycle (raw rate: the 64-bit MAC),
    link_latency (wire + PHY, each hop), switch_latency (after a frame is fully received),
    switch_buffer (bytes of frames an egress port queues; tail drop beyond),
    tick_cycles (period of the NIC retransmission timers), timeout_ticks, retry_limit,
    engine_timeout (cycles without progress before the engine gives up on a peer; 0 = twice
    the time the NICs need to exhaust their retries), reduce_bytes_per_cycle (bytes of
    binary32 operand the chip's TVPs add per cycle: a reduction of m inputs of B bytes takes
    (m - 1) * B / reduce_bytes_per_cycle; default 256 = the 8 tiles of spec.chip.DEFAULT,
    one 32-byte TVP word each per cycle), phase_overhead (cycles per phase: descriptor
    fetch, notification, completion handling).
    """

    trays: int = 1
    mem_bytes: int = 8 << 20
    ring_base: int = (8 << 20) - (256 << 10)
    nic: N.NicParams = N.NicParams(n_qps=4, n_windows=1, mtu=1024, window=8, max_msg=1 << 16)
    wqe_max: int = 1 << 16
    link_bytes_per_cycle: int = 8
    link_latency: int = 64
    switch_latency: int = 32
    switch_buffer: int = 256 << 10
    tick_cycles: int = 64
    timeout_ticks: int = 128
    retry_limit: int = 7
    engine_timeout: int = 0
    reduce_bytes_per_cycle: int = 256
    phase_overhead: int = 200

    def __post_init__(self):
        def req(cond, name, msg):
            if not cond:
                raise ValueError(f"{name}: {msg}, got {getattr(self, name)!r}")
        for n in ("trays", "mem_bytes", "ring_base", "wqe_max", "link_bytes_per_cycle",
                  "link_latency", "switch_latency", "switch_buffer", "tick_cycles",
                  "timeout_ticks", "retry_limit", "engine_timeout", "reduce_bytes_per_cycle",
                  "phase_overhead"):
            v = getattr(self, n)
            req(isinstance(v, int) and not isinstance(v, bool) and v >= 0, n,
                "must be a non-negative int")
        req(self.trays in (1, 2), "trays", "must be 1 or 2")
        if not isinstance(self.nic, N.NicParams):
            raise TypeError(f"nic: must be a spec.nic.NicParams, got {type(self.nic).__name__}")
        # two trays need nic.n_qps >= 4 (route(): one uplink queue pair per remote chip);
        # check_chip reports a chip that lacks them as BAD_UNIT, the transport model
        # (cosim/tray) refuses such parameters
        req(self.ring_base % BUF_ALIGN == 0 and
            self.ring_base + PORTS * self.nic.n_qps * RING_STRIDE <= self.mem_bytes,
            "ring_base", f"must be {BUF_ALIGN}-byte aligned with room for the rings below "
            "mem_bytes")
        req(8 <= self.wqe_max <= self.nic.max_msg and self.wqe_max % 8 == 0, "wqe_max",
            "must be a multiple of 8 in 8..nic.max_msg")
        for n in ("link_bytes_per_cycle", "tick_cycles", "timeout_ticks",
                  "reduce_bytes_per_cycle"):
            req(getattr(self, n) > 0, n, "must be positive")

    n_ranks = property(lambda s: s.trays * CHIPS_PER_TRAY)

    @property
    def timeout_cycles(self) -> int:
        return self.tick_cycles * self.timeout_ticks

    @property
    def engine_timeout_cycles(self) -> int:
        return self.engine_timeout or 2 * (self.retry_limit + 2) * self.timeout_cycles

    def with_(self, **kw) -> TrayParams:
        return replace(self, **kw)


# NIC rings of (port, qp) at ring_base + (port * n_qps + qp) * RING_STRIDE
RING_STRIDE = 0x4000
SQ_LOG2, CQ_LOG2, RQ_LOG2, RQ_SLOT_LOG2 = 8, 8, 4, 3
SQ_OFF, CQ_OFF, RQ_OFF = 0x0000, 0x2000, 0x3000   # 256 WQEs x 32 B, 256 CQEs x 16 B, 16 x 8 B
NOTE_BYTES = 8               # notification SEND: [0] phase [1] src rank [2:4] seq [4:8] magic
NOTE_MAGIC = 0x5452_4159     # "TRAY"


def ring_addr(p: TrayParams, port: int, qp: int) -> int:
    return p.ring_base + (port * p.nic.n_qps + qp) * RING_STRIDE


# --- descriptor -----------------------------------------------------------------------------

@dataclass(frozen=True)
class Collective:
    """A decoded COLLECTIVE command. ``group`` is the tuple of ranks, ascending."""
    kind: int
    fmt: int
    src: int
    dst: int
    count: int
    group: tuple
    root: int = 0
    src_scales: int = 0
    dst_scales: int = 0
    scratch: int = 0
    irq: bool = False

    @property
    def n(self) -> int:
        return len(self.group)

    @property
    def chunk(self) -> int:
        """Elements per rank's chunk: count / n."""
        return self.count // self.n

    @property
    def mx(self) -> bool:
        return self.fmt != FMT_FP32

    def code_bytes(self, elements: int) -> int:
        return elements * CODE_BITS[self.fmt] // 8

    def scale_bytes(self, elements: int) -> int:
        return elements // MX_BLOCK if self.mx else 0

    def extents(self) -> dict:
        """(address, bytes) of every buffer the command reads or writes on one rank."""
        full, part = self.count, self.chunk
        src_el = part if self.kind == KIND_ALL_GATHER else full
        dst_el = part if self.kind == KIND_REDUCE_SCATTER else full
        out = {"src": (self.src, self.code_bytes(src_el)),
               "dst": (self.dst, self.code_bytes(dst_el))}
        if self.mx:
            out["src_scales"] = (self.src_scales, self.scale_bytes(src_el))
            out["dst_scales"] = (self.dst_scales, self.scale_bytes(dst_el))
        if self.kind in (KIND_ALL_REDUCE, KIND_REDUCE_SCATTER):
            out["scratch"] = (self.scratch, self.n * self.code_bytes(part))
        return out


def group_mask(group) -> int:
    m = 0
    for r in group:
        m |= 1 << r
    return m


def group_of(mask: int) -> tuple:
    return tuple(r for r in range(MAX_RANKS) if mask >> r & 1)


_put, _u32 = C._put, C._u32  # the entry field encoders of spec.chip


def entry_collective(kind: int, fmt: int, *, src: int, dst: int, count: int, group,
                     root: int = 0, src_scales: int = 0, dst_scales: int = 0,
                     scratch: int = 0, irq: bool = False) -> bytes:
    """Encode a COLLECTIVE queue entry (field ranges only; :func:`check` does the rest)."""
    ranks = list(group)
    for r in ranks:
        if isinstance(r, bool) or not isinstance(r, int) or not 0 <= r < MAX_RANKS:
            raise ValueError(f"group: ranks must be ints in 0..{MAX_RANKS - 1}, got {r!r}")
    w0 = _put(0, C.W0_OPCODE, OP_COLLECTIVE, "opcode") | (1 << C.W0_IRQ[0] if irq else 0)
    w1 = _put(0, W1_KIND, kind, "kind")
    w1 = _put(w1, W1_FORMAT, fmt, "fmt")
    w1 = _put(w1, W1_ROOT, root, "root")
    w1 = _put(w1, W1_GROUP, group_mask(ranks), "group")
    words = [w0, w1, _u32(src, "src"), _u32(dst, "dst"), _u32(count, "count"),
             _u32(src_scales, "src_scales"), _u32(dst_scales, "dst_scales"),
             _u32(scratch, "scratch")]
    return struct.pack("<8I", *words)


def decode(raw: bytes) -> tuple[Collective, tuple]:
    """Decode an entry: (Collective, raw words). Raises ValueError if not 32 bytes."""
    if len(raw) != C.ENTRY_BYTES:
        raise ValueError(f"raw: an entry is {C.ENTRY_BYTES} bytes, got {len(raw)}")
    w = struct.unpack("<8I", bytes(raw))
    f = lambda v, fld: (v >> fld[0]) & ((1 << fld[1]) - 1)  # noqa: E731
    d = Collective(kind=f(w[1], W1_KIND), fmt=f(w[1], W1_FORMAT), src=w[2], dst=w[3],
                   count=w[4], group=group_of(f(w[1], W1_GROUP)), root=f(w[1], W1_ROOT),
                   src_scales=w[5], dst_scales=w[6], scratch=w[7],
                   irq=bool(f(w[0], C.W0_IRQ)))
    return d, w


def count_multiple(fmt: int, n: int) -> int:
    """``count`` must be a multiple of this: every chunk a whole number of 8-byte NIC
    words; MX chunks whole MX blocks whose scale bytes are a multiple of 8."""
    return n * (2 if fmt == FMT_FP32 else 8 * MX_BLOCK)


def check(raw: bytes, rank: int, p: TrayParams) -> int:
    """Static checks the collective engine of ``rank`` makes when it takes the entry, in
    this order; returns spec.chip.ERR_NONE or the first error code (docs/tray.md)."""
    d, w = decode(raw)
    if w[0] & 0xFF != OP_COLLECTIVE:
        return C.ERR_BAD_OPCODE
    if w[0] & C.W0_RESERVED_MASK or w[1] & W1_RESERVED_MASK:
        return C.ERR_BAD_ENTRY
    if d.kind not in KIND_NAMES or d.fmt not in FORMAT_NAMES:
        return C.ERR_BAD_ENTRY
    if d.mx and d.kind in (KIND_ALL_REDUCE, KIND_REDUCE_SCATTER):
        return C.ERR_BAD_ENTRY            # MX tensors are gathered/broadcast, never summed
    if not d.mx and (d.src_scales or d.dst_scales):
        return C.ERR_BAD_ENTRY
    if d.kind not in (KIND_ALL_REDUCE, KIND_REDUCE_SCATTER) and d.scratch:
        return C.ERR_BAD_ENTRY
    if d.kind != KIND_BROADCAST and d.root:
        return C.ERR_BAD_ENTRY
    if (w[0] >> C.W0_CLUSTER[0]) & 0xFFF:   # cluster and unit must be 0
        return C.ERR_BAD_UNIT
    if (d.n < 1 or any(r >= p.n_ranks for r in d.group) or rank not in d.group
            or (d.kind == KIND_BROADCAST and d.root not in d.group)):
        return C.ERR_BAD_UNIT
    if d.count == 0 or d.count % count_multiple(d.fmt, d.n):
        return C.ERR_BAD_ENTRY
    spans = []
    for addr, size in d.extents().values():
        if addr % BUF_ALIGN or addr + size > p.ring_base:
            return C.ERR_BAD_ADDRESS
        spans.append((addr, addr + size))
    spans.sort()
    if any(a[1] > b[0] for a, b in zip(spans, spans[1:])):
        return C.ERR_BAD_ADDRESS          # buffers must not overlap
    return C.ERR_NONE


def chip_params(cfg: C.ChipConfig, trays: int = 1) -> TrayParams:
    """The TrayParams of a tray built from chips of configuration ``cfg`` (the collective
    engine in the chip RTL, docs/tray.md "Collective engine in the chip"): HBM =
    ``hbm_window``, the NIC rings of every (port, queue pair) in the top
    ``PORTS * nic_qps * RING_STRIDE`` bytes of it, the chip's NIC parameters, WRITEs of at
    most ``nic_max_msg`` bytes."""
    if not isinstance(cfg, C.ChipConfig):
        raise ValueError(f"cfg: must be a spec.chip.ChipConfig, got {type(cfg).__name__}")
    if cfg.nic_ports < 1:
        raise ValueError(f"cfg: configuration {cfg.name!r} has no NIC ports")
    if trays not in (1, 2):
        raise ValueError(f"trays: must be 1 or 2, got {trays!r}")
    rings = PORTS * cfg.nic_qps * RING_STRIDE
    return TrayParams(trays=trays, mem_bytes=cfg.hbm_window, ring_base=cfg.hbm_window - rings,
                      nic=cfg.nic_params, wqe_max=cfg.nic_max_msg)


def check_chip(raw: bytes, rank: int, cfg: C.ChipConfig, trays: int = 1) -> int:
    """:func:`check` with :func:`chip_params` as the chip's command processor makes it, plus
    one check of the chip's ports: every other rank of the group must be reachable through
    a NIC port and queue pair the chip has (``route(...).port < cfg.nic_ports``, both ends'
    queue pairs < ``cfg.nic_qps``), else BAD_UNIT. An invalid
    ``rank`` (beyond ``4 * trays``) makes every entry BAD_UNIT."""
    p = chip_params(cfg, trays)
    if isinstance(rank, bool) or not isinstance(rank, int) or not 0 <= rank < MAX_RANKS:
        raise ValueError(f"rank: must be an int in 0..{MAX_RANKS - 1}, got {rank!r}")
    err = check(raw, rank, p)
    if err != C.ERR_NONE:
        return err
    d, _ = decode(raw)
    for r in d.group:
        if r != rank:
            rt = route(rank, r, p.n_ranks)
            if rt.port >= cfg.nic_ports or max(rt.qp, rt.peer_qp) >= cfg.nic_qps:
                return C.ERR_BAD_UNIT
    return C.ERR_NONE


def unsupported_detail(raw: bytes, rank: int, cfg: C.ChipConfig, trays: int = 1) -> int:
    """ERR_DETAIL with which the chip's RTL engine ends an entry that :func:`check_chip`
    accepts but that it does not run (docs/tray.md "Errors", cause UNSUPPORTED): a group
    with ranks in the other tray on a chip with the uplink port (``nic_ports`` > UPLINK) and
    fewer than CHIPS_PER_TRAY queue pairs per port; peer = the lowest other member. 0 for
    every other entry (the engine runs it, or the static check refuses it)."""
    if check_chip(raw, rank, cfg, trays) != C.ERR_NONE:
        return 0
    if cfg.nic_ports <= UPLINK or cfg.nic_qps >= CHIPS_PER_TRAY:
        return 0
    d, _ = decode(raw)
    others = [r for r in d.group if r != rank]
    if not any(tray_of(r) != tray_of(rank) for r in others):
        return 0
    return detail(CAUSE_UNSUPPORTED, min(others))


def engine_channels(cfg: C.ChipConfig) -> list[tuple[int, int]]:
    """The collective engine's channels of a chip, as (NIC port, queue pair), channel c at
    index c: bit c of REG_TRAY_RESYNC's mask (docs/tray.md "After an error"). With the
    two-tier engine (``nic_ports`` > UPLINK and ``nic_qps`` >= CHIPS_PER_TRAY) the 3 mesh
    ports (queue pair QP_MESH), then the uplink's queue pairs 0..3; otherwise one channel
    per port (queue pair QP_MESH)."""
    if not isinstance(cfg, C.ChipConfig):
        raise ValueError(f"cfg: must be a spec.chip.ChipConfig, got {type(cfg).__name__}")
    if cfg.nic_ports < 1:
        raise ValueError(f"cfg: configuration {cfg.name!r} has no NIC ports")
    if cfg.nic_ports > UPLINK and cfg.nic_qps >= CHIPS_PER_TRAY:
        return [(p, QP_MESH) for p in range(MESH_PORTS)] + \
            [(UPLINK, j) for j in range(CHIPS_PER_TRAY)]
    return [(p, QP_MESH) for p in range(cfg.nic_ports)]


def resync_word(cfg: C.ChipConfig, queue_pairs=(), seq: bool = False) -> int:
    """The REG_TRAY_RESYNC value that zeroes the engine's indices of the channels of
    ``queue_pairs`` ((port, queue pair) pairs, each one of :func:`engine_channels`) and,
    with ``seq``, its sequence number."""
    chans = engine_channels(cfg)
    word = 0
    for pq in queue_pairs:
        if tuple(pq) not in chans:
            raise ValueError(f"queue_pairs: {pq!r} is not a collective-engine channel of "
                             f"{cfg.name!r} (one of {chans})")
        word |= 1 << chans.index(tuple(pq))
    if not isinstance(seq, bool):
        raise ValueError(f"seq: must be a bool, got {seq!r}")
    return word | (C.TRAY_RESYNC_SEQ if seq else 0)


def local_jobs(d: Collective) -> list[tuple[int, int, int]]:
    """The engine's work for a one-rank group (only the rank itself): (src, dst, bytes)
    copies; the result of every kind is its src: codes (and MX scales) copied to dst. No
    addition takes place, so bit patterns are kept as they are (NaN payloads included)."""
    if d.n != 1:
        raise ValueError(f"d: a one-rank group expected, got group {d.group}")
    jobs = [(d.src, d.dst, d.code_bytes(d.count))]
    if d.mx:
        jobs.append((d.src_scales, d.dst_scales, d.scale_bytes(d.count)))
    return jobs


# --- algorithms: transfer plans --------------------------------------------------------------

@dataclass(frozen=True)
class Transfer:
    """``nbytes`` from ``src_addr`` of rank ``src`` to ``dst_addr`` of rank ``dst``."""
    src: int
    dst: int
    src_addr: int
    dst_addr: int
    nbytes: int


@dataclass(frozen=True)
class Reduce:
    """On ``rank``: out = ((in[0] + in[1]) + in[2]) + ... (binary32, ``elements`` each).
    The inputs are the ranks' contributions in ascending rank order, or (two-tier) the
    partial sum of the lower ranks followed by the higher ranks' contributions, so every
    result is the sum in ascending rank order."""
    rank: int
    out: int
    inputs: tuple
    elements: int


@dataclass(frozen=True)
class Copy:
    rank: int
    src: int
    dst: int
    nbytes: int


@dataclass(frozen=True)
class Phase:
    """Local copies (before the sends), transfers, then local reductions (after every
    transfer into the rank has arrived)."""
    copies: tuple
    transfers: tuple
    reduces: tuple


ALGO_DIRECT, ALGO_TWO_TIER = "direct", "two-tier"
PIECE_MIN = 4096          # bytes: smallest pipeline piece of the two-tier all-reduce


def algorithm(d: Collective) -> str:
    """The algorithm the engine runs: two-tier for all-reduce, reduce-scatter and all-gather
    over all 8 ranks of two trays, direct (full mesh) otherwise."""
    if (d.group == tuple(range(2 * CHIPS_PER_TRAY))
            and d.kind in (KIND_ALL_REDUCE, KIND_REDUCE_SCATTER, KIND_ALL_GATHER)):
        return ALGO_TWO_TIER
    return ALGO_DIRECT


def _pieces(d: Collective):
    cb, sb = d.code_bytes(d.chunk), d.scale_bytes(d.chunk)

    def pieces(src_off_c, dst_off_c, src_off_s, dst_off_s):
        """(src, dst, bytes) of the code and (MX) scale parts of one chunk."""
        out = [(src_off_c, dst_off_c, cb)]
        if d.mx:
            out.append((src_off_s, dst_off_s, sb))
        return out
    return pieces


def pipeline_pieces(chunk_bytes: int) -> int:
    """Pieces per chunk in the two-tier pipeline: 4, 2 or 1, each a multiple of 8 bytes and
    at least PIECE_MIN bytes."""
    for q in (4, 2):
        if chunk_bytes % (8 * q) == 0 and chunk_bytes // q >= PIECE_MIN:
            return q
    return 1


def _plan_two_tier(d: Collective) -> list[Phase]:
    """docs/tray.md "Two-tier algorithm". Partners: chip c of tray 0 (rank c) and chip c of
    tray 1 (rank 4 + c) own chunks c and 4 + c (half h = 0, 1 of their region)."""
    C4 = CHIPS_PER_TRAY
    cb, sb = d.code_bytes(d.chunk), d.scale_bytes(d.chunk)
    pieces = _pieces(d)

    def mates(k):
        return [4 * tray_of(k) + c for c in range(C4) if c != chip_of(k)]

    if d.kind == KIND_ALL_GATHER:
        copies, xf = [], []
        for k in range(2 * C4):
            for (sc, dc, nb) in pieces(d.src, d.dst + k * cb, d.src_scales, d.dst_scales + k * sb):
                copies.append(Copy(k, sc, dc, nb))
                xf.append(Transfer(k, (k + C4) % (2 * C4), sc, dc, nb))
        xf2 = []
        for k in range(2 * C4):
            for c in (k, (k + C4) % (2 * C4)):
                for (sc, dc, nb) in pieces(d.dst + c * cb, d.dst + c * cb,
                                           d.dst_scales + c * sb, d.dst_scales + c * sb):
                    xf2 += [Transfer(k, j, sc, dc, nb) for j in mates(k)]
        return [Phase(tuple(copies), tuple(xf), ()), Phase((), tuple(xf2), ())]

    def ch(c, h):
        return c + C4 * h

    def slot(c, h):
        return d.scratch + (2 * c + h) * cb

    ar = d.kind == KIND_ALL_REDUCE
    # phase 0 (mesh): chip c of each tray gathers chunks c, 4 + c of its tray-mates; tray 0
    # sums them in rank order into scratch slots 2c + h (the prefix p of the sum)
    xf, red = [], []
    for t in (0, 1):
        for c in range(C4):
            owner = 4 * t + c
            for c2 in range(C4):
                if c2 != c:
                    xf += [Transfer(4 * t + c2, owner, d.src + ch(c, h) * cb, slot(c2, h), cb)
                           for h in (0, 1)]
            if t == 0:
                for h in (0, 1):
                    ins = tuple(d.src + ch(c, h) * cb if c2 == c else slot(c2, h)
                                for c2 in range(C4))
                    red.append(Reduce(owner, slot(c, h), ins, d.chunk))
    phases = [Phase((), tuple(xf), tuple(red))]
    # pipeline over the uplinks: piece j of p goes to the partner, which finishes the sum
    # ((((p + x4) + x5) + x6) + x7) and returns piece j - 1 of the result
    q = pipeline_pieces(cb)
    pb, pel = cb // q, d.chunk // q
    items = [(h, i * pb) for h in (0, 1) for i in range(q)]

    def out(c, h, off):                        # where the partner (tray 1) puts the result
        if ar:
            return d.dst + ch(c, h) * cb + off
        return d.dst + off if h == 1 else slot(c, h) + off

    for j in range(len(items) + 1):
        xf, red = [], []
        for c in range(C4):
            a, b = c, C4 + c
            if j < len(items):
                h, off = items[j]
                xf.append(Transfer(a, b, slot(c, h) + off, slot(c, h) + off, pb))
                ins = (slot(c, h) + off,) + tuple(
                    d.src + ch(c, h) * cb + off if c2 == c else slot(c2, h) + off
                    for c2 in range(C4))
                red.append(Reduce(b, out(c, h, off), ins, pel))
            if j >= 1:
                h, off = items[j - 1]
                if ar or h == 0:
                    back = d.dst + ch(c, h) * cb + off if ar else d.dst + off
                    xf.append(Transfer(b, a, out(c, h, off), back, pb))
        phases.append(Phase((), tuple(xf), tuple(red)))
    if ar:
        xf = []
        for k in range(2 * C4):
            c = chip_of(k)
            for h in (0, 1):
                a = d.dst + ch(c, h) * cb
                xf += [Transfer(k, j, a, a, cb) for j in mates(k)]
        phases.append(Phase((), tuple(xf), ()))
    return phases


def plan(d: Collective) -> list[Phase]:
    """The transfer plan of docs/tray.md "Algorithms": :func:`algorithm` picks two-tier or
    direct. Direct (full mesh): chunk k of the vector belongs to group member k (position
    in the ascending group)."""
    if algorithm(d) == ALGO_TWO_TIER:
        return _plan_two_tier(d)
    g, n = d.group, d.n
    cb, sb = d.code_bytes(d.chunk), d.scale_bytes(d.chunk)
    pieces = _pieces(d)

    def gather_phase(own_src, own_src_s, base_c, base_s, members):
        """Member k sends its chunk (at own_src(k)) to every other member's base + k*cb."""
        copies, xfers = [], []
        for k in members:
            for (sc, dc, nb) in pieces(own_src(k), base_c + k * cb, own_src_s(k), base_s + k * sb):
                if sc != dc:
                    copies.append(Copy(g[k], sc, dc, nb))
                for j in members:
                    if j != k:
                        xfers.append(Transfer(g[k], g[j], sc, dc, nb))
        return copies, xfers

    if d.kind in (KIND_ALL_REDUCE, KIND_REDUCE_SCATTER):
        xfers, reds = [], []
        for k in range(n):
            out = d.dst + (k * cb if d.kind == KIND_ALL_REDUCE else 0)
            ins = tuple(d.src + k * cb if i == k else d.scratch + i * cb for i in range(n))
            reds.append(Reduce(g[k], out, ins, d.chunk))
            for i in range(n):
                if i != k:
                    xfers.append(Transfer(g[i], g[k], d.src + k * cb, d.scratch + i * cb, cb))
        phases = [Phase((), tuple(xfers), tuple(reds))]
        if d.kind == KIND_ALL_REDUCE:
            copies, xf = gather_phase(lambda k: d.dst + k * cb, lambda k: 0, d.dst, 0, range(n))
            phases.append(Phase(tuple(copies), tuple(xf), ()))
        return phases
    if d.kind == KIND_ALL_GATHER:
        copies, xf = gather_phase(lambda k: d.src, lambda k: d.src_scales, d.dst,
                                  d.dst_scales, range(n))
        return [Phase(tuple(copies), tuple(xf), ())]
    # BROADCAST: the root sends chunk k to member k and its own chunk to every member,
    # then the other members all-gather their chunks
    r = g.index(d.root)
    copies, xfers = [], []
    for (sc, dc, nb) in pieces(d.src, d.dst, d.src_scales, d.dst_scales):
        copies.append(Copy(d.root, sc, dc, nb * n))
    for k in range(n):
        if k != r:
            for c in (k, r):
                for (sc, dc, nb) in pieces(d.src + c * cb, d.dst + c * cb,
                                           d.src_scales + c * sb, d.dst_scales + c * sb):
                    xfers.append(Transfer(d.root, g[k], sc, dc, nb))
    phases = [Phase(tuple(copies), tuple(xfers), ())]
    others = [k for k in range(n) if k != r]
    if len(others) > 1:
        _, xf = gather_phase(lambda k: d.dst + k * cb, lambda k: d.dst_scales + k * sb,
                             d.dst, d.dst_scales, others)
        phases.append(Phase((), tuple(xf), ()))
    return phases


# --- NCCL bandwidth definitions ----------------------------------------------------------------

def bus_factor(kind: int, n: int) -> float:
    """NCCL busbw = algbw * factor: all-reduce 2(n-1)/n, reduce-scatter and all-gather
    (n-1)/n, broadcast 1. algbw = bytes of the whole vector (count * element size) / time."""
    if kind not in KIND_NAMES:
        raise ValueError(f"kind: must be one of {sorted(KIND_NAMES)}, got {kind!r}")
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n: must be a positive int, got {n!r}")
    return {KIND_ALL_REDUCE: 2 * (n - 1) / n, KIND_REDUCE_SCATTER: (n - 1) / n,
            KIND_ALL_GATHER: (n - 1) / n, KIND_BROADCAST: 1.0}[kind]


def wire_bytes_message(nbytes: int, mtu: int, opcode_family: str = "write") -> tuple[int, int]:
    """(wire bytes of the request frames, wire bytes of their ACK frames) of one RDMA WRITE
    (``family`` "write") or SEND of ``nbytes``, including preamble and IFG."""
    if nbytes <= 0 or nbytes % 8:
        raise ValueError(f"nbytes: must be a positive multiple of 8, got {nbytes!r}")
    ops = {"write": (N.OP_WRITE_ONLY, N.OP_WRITE_FIRST, N.OP_WRITE_MIDDLE, N.OP_WRITE_LAST),
           "send": (N.OP_SEND_ONLY, N.OP_SEND_FIRST, N.OP_SEND_MIDDLE, N.OP_SEND_LAST)}
    if opcode_family not in ops:
        raise ValueError(f"opcode_family: must be 'write' or 'send', got {opcode_family!r}")
    only, first, middle, last = ops[opcode_family]
    req = acks = 0
    left, off = nbytes, 0
    ack = N.frame_len(N.OP_ACK, 0) + N.ETH_OVERHEAD_WIRE
    while left > 0:
        k = min(left, mtu)
        op = (only if k == left else first) if off == 0 else (last if k == left else middle)
        req += N.frame_len(op, k) + N.ETH_OVERHEAD_WIRE
        acks += ack
        left -= k
        off += k
    return req, acks
