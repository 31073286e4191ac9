"""Whole-chip contract: configurations, address map, host queues, command format, CSR map,
error codes and the peak-figure arithmetic of the ``maia200`` configuration.

The single definition used by rtl/chip/, golden/chip.py, cosim/chip/ and docs/chip.md.
Pure Python (no Amaranth, no numpy). The prose contract is docs/chip.md.

Address map (32-bit byte addresses, the same for the host, the command processor and every
cluster DMA)::

    [0, hbm_window)                         HBM (shared by every cluster)
    local_base + c*cluster_stride + 0       CSRAM of cluster c     (csram_bytes)
    local_base + c*cluster_stride + (t+1)*slot
                                            TSRAM of tile t of cluster c (tile.tsram_bytes)

    local_base = hbm_window, slot = next_pow2(max(csram_bytes, tsram_bytes)),
    cluster_stride = slot * next_pow2(1 + tiles)

Queue entry (32 bytes, little-endian 32-bit words, 32-byte aligned in HBM)::

    w0  [7:0] opcode  [15:8] cluster  [19:16] unit  [20] irq  [31:21] reserved (0)
    DMA       w1 address of the first DMA descriptor (spec.dma layout), 64-byte aligned
    TILE      w1 command-list address inside the tile's TSRAM (spec.tile), 32-byte aligned
    SEM_WAIT  w1 [7:0] count (1..255); unit = cluster semaphore index
    WAIT      w1 [0] kind: 0 DMA channel ``unit``, 1 tile ``unit`` of ``cluster``
    FENCE, NOP  no operands (cluster and unit must be 0)
    words 2..7 must be 0 (w1 too for FENCE/NOP)
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field, fields, replace

from spec import dma as D
from spec import nic as N
from spec import tile as T

# --- queue entries (commands) ----------------------------------------------------------------

ENTRY_BYTES = 32
ENTRY_WORDS = ENTRY_BYTES // 4

OP_NOP, OP_DMA, OP_TILE, OP_FENCE, OP_SEM_WAIT, OP_WAIT = 0, 1, 2, 3, 4, 5
# COLLECTIVE: the tray's collective engine (docs/tray.md; layout and checks in spec.tray).
# Only chips with NIC ports have the engine: without them the opcode is BAD_OPCODE.
OP_COLLECTIVE = 0x10
OPCODES = {"NOP": OP_NOP, "DMA": OP_DMA, "TILE": OP_TILE, "FENCE": OP_FENCE,
           "SEM_WAIT": OP_SEM_WAIT, "WAIT": OP_WAIT, "COLLECTIVE": OP_COLLECTIVE}
WAIT_DMA, WAIT_TILE = 0, 1
OPCODE_NAMES = {v: k for k, v in OPCODES.items()}

W0_OPCODE = (0, 8)
W0_CLUSTER = (8, 8)
W0_UNIT = (16, 4)
W0_IRQ = (20, 1)
W0_RESERVED_MASK = 0xFFE0_0000

# --- queue error codes (per queue ERROR register) --------------------------------------------

ERR_NONE = 0
ERR_BAD_OPCODE = 1    # opcode not in OPCODES
ERR_BAD_ENTRY = 2     # a reserved bit or unused word of the entry is not 0; SEM count 0
ERR_BAD_UNIT = 3      # cluster, DMA channel, tile or semaphore index out of range
ERR_BAD_ADDRESS = 4   # DMA head / tile command list misaligned or outside its memory
ERR_FETCH = 5         # the entry itself could not be read (outside HBM or bus error)
ERR_DMA = 6           # the dispatched DMA chain stopped with an error (detail = DMA code)
ERR_TILE = 7          # the dispatched tile list stopped with an error (detail = tile status)
ERR_COLLECTIVE = 8    # a started COLLECTIVE failed (detail = spec.tray.detail: peer, cause)
ERRORS = {"NONE": ERR_NONE, "BAD_OPCODE": ERR_BAD_OPCODE, "BAD_ENTRY": ERR_BAD_ENTRY,
          "BAD_UNIT": ERR_BAD_UNIT, "BAD_ADDRESS": ERR_BAD_ADDRESS, "FETCH": ERR_FETCH,
          "DMA": ERR_DMA, "TILE": ERR_TILE, "COLLECTIVE": ERR_COLLECTIVE}
ERROR_NAMES = {v: k for k, v in ERRORS.items()}

# --- CSR map (host AXI4-Lite, 32-bit registers) ---------------------------------------------

CSR_ADDR_WIDTH = 12
# NIC ports (docs/chip.md "NIC ports"): the host interface grows to
# host_addr_width(cfg) bits; the chip's own CSRs keep [0, 0x1000) and NIC port p's CSR
# block (spec.nic map, 12-bit) sits at NIC_CSR_BASE + p * NIC_CSR_STRIDE.
NIC_CSR_BASE = 0x1000
NIC_CSR_STRIDE = 0x1000
# IRQ_STATUS bit of NIC port p (above the 2 * MAX_QUEUES queue bits): set each time the
# port writes a completion (a send-queue or a receive CQE; the NIC's cq_event).
IRQ_NIC_BASE = 16
MAX_NIC_PORTS = 8
ID_MAGIC = 0x4348_4901  # "CHI" + version 1

REG_ID = 0x000          # RO  ID_MAGIC
REG_CONFIG = 0x004      # RO  [7:0] clusters [11:8] tiles/cluster [15:12] queues
#                             [19:16] DMA channels [23:20] semaphores/cluster
REG_STATUS = 0x008      # RO  [0] ready (DMA windows programmed) [1] busy
REG_IRQ_STATUS = 0x00C  # RW1C bit 2q: queue q irq entry retired; bit 2q+1: queue q error
REG_IRQ_ENABLE = 0x010  # RW  mask for the irq pin
REG_CYCLES = 0x014      # RO  cycles since reset
REG_BUSY_CYCLES = 0x018  # RO cycles with a queue non-empty or a unit in flight
REG_DMA_DISPATCH = 0x01C  # RO DMA commands dispatched
REG_TILE_DISPATCH = 0x020  # RO TILE commands dispatched
REG_MACS_LO = 0x024     # RO  sum of tile macs counters of finished tile lists (64-bit)
REG_MACS_HI = 0x028
REG_TTU_BUSY = 0x02C    # RO  sum of tile ttu_busy counters of finished tile lists
REG_SEM_BASE = 0x040    # RO  cluster c semaphore s at REG_SEM_BASE + 4*(c*n_sems + s), for
#                             the first SEM_DIRECT_MAX semaphores (index c*n_sems + s)
REG_SEM_INDEX = 0x034   # RW  any semaphore: write its index c*n_sems + s here (wraps modulo
REG_SEM_VALUE = 0x038   # RO  the register width), read its value at REG_SEM_VALUE (0 when
#                             the index is past the last semaphore)
# Only with NIC ports (the collective engine; not in GLOBAL_REGS): the chip's place in the
# tray system, written by the host before COLLECTIVE entries (docs/tray.md).
REG_TRAY_RANK = 0x030   # RW  [2:0] rank (spec.tray.rank_of)  [3] two trays (8 ranks)
TRAY_RANK_TWO_TRAYS = 1 << 3
# WO/RO: [7:0] channel mask, [8] sequence number := 0; applied only while the collective
# engine is idle (else SLVERR, nothing changed). Read: [0] engine busy, [31:16] sequence
# number (docs/tray.md "After an error", spec.tray.engine_channels / resync_word)
REG_TRAY_RESYNC = 0x03C
TRAY_RESYNC_SEQ = 1 << 8
GLOBAL_REGS = {"ID": REG_ID, "CONFIG": REG_CONFIG, "STATUS": REG_STATUS,
               "IRQ_STATUS": REG_IRQ_STATUS, "IRQ_ENABLE": REG_IRQ_ENABLE,
               "CYCLES": REG_CYCLES, "BUSY_CYCLES": REG_BUSY_CYCLES,
               "DMA_DISPATCH": REG_DMA_DISPATCH, "TILE_DISPATCH": REG_TILE_DISPATCH,
               "MACS_LO": REG_MACS_LO, "MACS_HI": REG_MACS_HI, "TTU_BUSY": REG_TTU_BUSY}

Q_BASE = 0x800          # queue q registers at Q_BASE + Q_STRIDE*q + offset
# semaphores with a direct register below the queue registers (maia200 has 160 x 16)
SEM_DIRECT_MAX = (Q_BASE - REG_SEM_BASE) // 4
Q_STRIDE = 0x40
Q_RING = 0x00           # RW  ring base address in HBM (32-byte aligned)
Q_SIZE = 0x04           # RW  ring size in entries (1..65535); 0 disables the queue
Q_TAIL = 0x08           # RW  doorbell: index of the next free slot (must be < SIZE)
Q_HEAD = 0x0C           # RO  index of the next entry the command processor takes
Q_STATUS = 0x10         # RO  [0] pending (HEAD != TAIL or a dispatched unit in flight)
Q_ERROR = 0x14          # RO  error code of the oldest failing entry (ERR_*)
Q_ERR_SEQ = 0x18        # RO  sequence number of that entry (entries taken since reset)
Q_ERR_DETAIL = 0x1C     # RO  DMA error code / tile status word of that entry
Q_ERR_COUNT = 0x20      # RO  failing entries
Q_DONE_COUNT = 0x24     # RO  entries retired (failed ones included)
Q_SEQ = 0x28            # RO  entries taken
Q_CTRL = 0x2C           # WO  bit 0: reset the queue (HEAD=TAIL=0, counters and error cleared)
Q_REGS = {"RING": Q_RING, "SIZE": Q_SIZE, "TAIL": Q_TAIL, "HEAD": Q_HEAD,
          "STATUS": Q_STATUS, "ERROR": Q_ERROR, "ERR_SEQ": Q_ERR_SEQ,
          "ERR_DETAIL": Q_ERR_DETAIL, "ERR_COUNT": Q_ERR_COUNT, "DONE_COUNT": Q_DONE_COUNT,
          "SEQ": Q_SEQ}
# registers the golden model predicts exactly once every queue is idle
Q_EXACT_REGS = ("HEAD", "STATUS", "ERROR", "ERR_SEQ", "ERR_DETAIL", "ERR_COUNT",
                "DONE_COUNT", "SEQ")
EXACT_GLOBAL_REGS = ("DMA_DISPATCH", "TILE_DISPATCH", "MACS_LO", "MACS_HI")

MAX_QUEUES = 8
QUEUE_MAX_SIZE = 0xFFFF


def q_reg(q: int, offset: int) -> int:
    return Q_BASE + Q_STRIDE * q + offset


def sem_reg(cfg: ChipConfig, cluster: int, sem: int) -> int:
    """Direct CSR of a cluster semaphore (only the first SEM_DIRECT_MAX have one; the others
    are read through REG_SEM_INDEX / REG_SEM_VALUE)."""
    i = cluster * cfg.n_sems + sem
    if i >= SEM_DIRECT_MAX:
        raise ValueError(f"cluster/sem: semaphore index {i} has no direct register (first "
                         f"{SEM_DIRECT_MAX} only); read it through REG_SEM_INDEX/REG_SEM_VALUE")
    return REG_SEM_BASE + 4 * i


def _pow2(n: int) -> int:
    return 1 << max(0, (n - 1).bit_length())


# --- configurations --------------------------------------------------------------------------

@dataclass(frozen=True)
class ChipConfig:
    """Chip parameters (every size is a parameter).

    mesh_x, mesh_y: cluster grid (one cluster per mesh node). tiles: tiles per cluster.
    tile: spec.tile.TileConfig of every tile. csram_bytes / csram_banks: cluster SRAM.
    dma_channels, dma_max_burst: cluster DMA engine (256-bit data: one TSRAM word per beat).
    hbm_window: bytes of HBM reachable at address 0 (a power of two). queues: host queues.
    n_sems: cluster semaphores (8-bit counters, incremented by cluster-DMA descriptors with
    the ``sem`` flag; sem_id modulo n_sems).
    Estimates only (not RTL): clock_hz, hbm_bytes_per_cycle (HBM bandwidth at the chip clock),
    hbm_capacity, hbm_ports.
    RTL structure: noc (True: every cluster DMA and the command processor reach HBM through
    a NoC network interface and a (mesh_x) x (mesh_y + 1) mesh whose last row holds the HBM
    edge ports; False: one direct HBM port per cluster plus one for the command processor),
    noc_depth (router buffer depth in flits). nic_hbm (with NIC ports; False: the NIC ports
    and the collective engine share the command processor's HBM path; True: each NIC port
    and the collective engine has an HBM edge port of its own, see ``top_hbm_ports`` and
    docs/chip.md "NIC ports").
    """

    name: str = "default"
    mesh_x: int = 2
    mesh_y: int = 2
    tiles: int = 2
    tile: T.TileConfig = field(default_factory=T.TileConfig)
    csram_bytes: int = 256 * 1024
    csram_banks: int = 8
    dma_channels: int = 2
    dma_max_burst: int = 64
    hbm_window: int = 16 << 20
    queues: int = 4
    n_sems: int = 4
    clock_hz: float = 1.0e9
    hbm_bytes_per_cycle: int = 32     # default bench HBM model: one 256-bit beat per cycle
    hbm_capacity: int = 16 << 20
    hbm_ports: int = 0                # 0: one per cluster plus one for the command processor
    noc: bool = True                  # RTL: clusters and HBM ports on the NoC mesh (docs/chip.md)
    noc_depth: int = 4                # RTL: flits per VC buffer in the NoC routers
    nic_ports: int = 0                # NIC ports (rtl.nic NicCore each; docs/chip.md "NIC ports")
    nic_qps: int = 2                  # per port: queue pairs (spec.nic.NicParams.n_qps)
    nic_windows: int = 2              # per port: memory protection windows
    nic_mtu: int = 256                # per port: payload bytes per packet
    nic_window: int = 8               # per port: outstanding request packets per queue pair
    nic_max_msg: int = 4096           # per port: largest message in bytes
    nic_hbm: bool = False             # RTL: own HBM edge ports for the NICs and the engine

    def __post_init__(self):
        def req(cond, name, msg):
            if not cond:
                raise ValueError(f"{name}: {msg}, got {getattr(self, name)!r}")
        for n in ("mesh_x", "mesh_y", "tiles", "csram_bytes", "csram_banks", "dma_channels",
                  "dma_max_burst", "hbm_window", "queues", "n_sems", "hbm_bytes_per_cycle",
                  "hbm_capacity", "hbm_ports"):
            req(isinstance(getattr(self, n), int) and not isinstance(getattr(self, n), bool),
                n, "must be an int")
        req(isinstance(self.noc, bool), "noc", "must be a bool")
        req(isinstance(self.nic_hbm, bool), "nic_hbm", "must be a bool")
        for n in ("nic_ports", "nic_qps", "nic_windows", "nic_mtu", "nic_window",
                  "nic_max_msg"):
            req(isinstance(getattr(self, n), int) and not isinstance(getattr(self, n), bool),
                n, "must be an int")
        req(0 <= self.nic_ports <= MAX_NIC_PORTS, "nic_ports", f"must be in 0..{MAX_NIC_PORTS}")
        req(1 <= self.nic_qps <= 8, "nic_qps", "must be in 1..8 (the NIC CSR map)")
        try:
            _ = self.nic_params
        except ValueError as e:
            raise ValueError(f"nic_*: {e}") from None
        req(isinstance(self.noc_depth, int) and 2 <= self.noc_depth <= 64, "noc_depth",
            "must be an int in 2..64")
        if not isinstance(self.tile, T.TileConfig):
            raise TypeError(f"tile: must be a spec.tile.TileConfig, got "
                            f"{type(self.tile).__name__}")
        req(1 <= self.mesh_x <= 16, "mesh_x", "must be in 1..16")
        req(1 <= self.mesh_y <= 15, "mesh_y", "must be in 1..15 (one more NoC row for HBM)")
        req(self.clusters <= 255, "mesh_y", "mesh_x * mesh_y must be <= 255")
        req(1 <= self.tiles <= D.MAX_WINDOWS - 2, "tiles",
            f"must be in 1..{D.MAX_WINDOWS - 2} (one DMA window per memory of the cluster)")
        req(self.tiles <= 16, "tiles", "must be <= 16 (unit field)")
        req(self.csram_banks >= 1 and self.csram_banks & (self.csram_banks - 1) == 0,
            "csram_banks", "must be a power of two")
        req(self.csram_bytes > 0 and self.csram_bytes % (self.csram_banks * T.WORD_BYTES) == 0
            and self.csram_bytes <= 1 << 24, "csram_bytes",
            "must be a positive multiple of csram_banks*32 and <= 16 MiB")
        req(1 <= self.dma_channels <= 16, "dma_channels", "must be in 1..16")
        req(1 <= self.dma_max_burst <= 128, "dma_max_burst",
            "must be in 1..128 (a 256-bit burst never crosses 4 KiB)")
        req(self.hbm_window >= 1 << 16 and self.hbm_window & (self.hbm_window - 1) == 0,
            "hbm_window", "must be a power of two >= 64 KiB")
        req(1 <= self.queues <= MAX_QUEUES, "queues", f"must be in 1..{MAX_QUEUES}")
        req(1 <= self.n_sems <= 16 and self.n_sems & (self.n_sems - 1) == 0, "n_sems",
            "must be a power of two in 1..16")
        req(self.local_base + self.clusters * self.cluster_stride <= 1 << 32, "hbm_window",
            "HBM window plus the cluster apertures must fit in 32 address bits")
        req(self.hbm_bytes_per_cycle > 0, "hbm_bytes_per_cycle", "must be positive")
        if self.tile.ext_bytes > self.hbm_window:   # the tile-DMA window is HBM [0, ext_bytes)
            raise ValueError(f"tile: tile.ext_bytes ({self.tile.ext_bytes}) must be <= "
                             f"hbm_window ({self.hbm_window}): a tile DMA's external window "
                             "maps onto HBM")

    # derived sizes
    clusters = property(lambda s: s.mesh_x * s.mesh_y)
    n_tiles = property(lambda s: s.clusters * s.tiles)
    local_base = property(lambda s: s.hbm_window)
    slot = property(lambda s: _pow2(max(s.csram_bytes, s.tile.tsram_bytes)))
    cluster_stride = property(lambda s: s.slot * _pow2(1 + s.tiles))
    address_space = property(lambda s: s.local_base + s.clusters * s.cluster_stride)
    n_hbm_ports = property(lambda s: s.hbm_ports or s.clusters + 1)

    @property
    def edge_hbm_ports(self) -> int:
        """HBM AXI4 ports of the RTL top: with the NoC, one per HBM node of the mesh's last
        row (the largest power of two <= mesh_x, each owning an equal slice of hbm_window);
        without it, one per cluster plus one for the command processor."""
        return 1 << (self.mesh_x.bit_length() - 1) if self.noc else self.clusters + 1

    @property
    def top_hbm_ports(self) -> int:
        """HBM AXI4 ports of the RTL top (``hbm0`` ..): the ``edge_hbm_ports`` of the NoC (or
        the direct ports without it), then with ``nic_hbm`` and NIC ports one per NIC port
        (``hbm{edge_hbm_ports + p}``) and one for the collective engine (the last). Every
        port carries full HBM addresses."""
        extra = self.nic_ports + 1 if self.nic_hbm and self.nic_ports else 0
        return self.edge_hbm_ports + extra

    @property
    def nic_params(self) -> N.NicParams:
        """The spec.nic.NicParams of every NIC port."""
        return N.NicParams(n_qps=self.nic_qps, n_windows=self.nic_windows, mtu=self.nic_mtu,
                           window=self.nic_window, max_msg=self.nic_max_msg)

    @property
    def host_addr_width(self) -> int:
        """Address bits of the host AXI4-Lite interface: 12 without NIC ports; with them,
        enough 4 KiB blocks for the chip CSRs and one block per port."""
        return CSR_ADDR_WIDTH + (self.nic_ports.bit_length() if self.nic_ports else 0)

    def nic_csr_base(self, port: int) -> int:
        """Host address of NIC port ``port``'s CSR block (spec.nic CSR map inside)."""
        if isinstance(port, bool) or not isinstance(port, int) \
                or not 0 <= port < self.nic_ports:
            raise ValueError(f"port: NIC port index must be in 0..{self.nic_ports - 1}, "
                             f"got {port!r}")
        return NIC_CSR_BASE + port * NIC_CSR_STRIDE

    def cluster_base(self, c: int) -> int:
        self._check_cluster(c)
        return self.local_base + c * self.cluster_stride

    def csram_base(self, c: int) -> int:
        return self.cluster_base(c)

    def tsram_base(self, c: int, t: int) -> int:
        if not isinstance(t, int) or not 0 <= t < self.tiles:
            raise ValueError(f"t: tile index must be in 0..{self.tiles - 1}, got {t!r}")
        return self.cluster_base(c) + (t + 1) * self.slot

    def _check_cluster(self, c):
        if not isinstance(c, int) or not 0 <= c < self.clusters:
            raise ValueError(f"c: cluster index must be in 0..{self.clusters - 1}, got {c!r}")

    def dma_windows(self, c: int) -> list[tuple[int, int]]:
        """The (base, size) windows the command processor programs into cluster c's DMA at
        reset: HBM, the cluster's CSRAM, then each tile's TSRAM."""
        return ([(0, self.hbm_window), (self.csram_base(c), self.csram_bytes)]
                + [(self.tsram_base(c, t), self.tile.tsram_bytes) for t in range(self.tiles)])

    def config_word(self) -> int:
        return (self.clusters | (self.tiles & 0xF) << 8 | (self.queues & 0xF) << 12
                | (self.dma_channels & 0xF) << 16 | (self.n_sems & 0xF) << 20)

    # peak figures (docs/chip.md "maia200")
    def peak_macs_per_cycle(self, fmt: str = "e4m3") -> int:
        return self.n_tiles * self.tile.peak_macs(fmt, fmt)

    def peak_flops(self, fmt: str = "e4m3") -> float:
        """Dense FLOPS (2 per MAC) at clock_hz."""
        return 2 * self.peak_macs_per_cycle(fmt) * self.clock_hz

    @property
    def sram_bytes(self) -> int:
        return self.clusters * (self.csram_bytes + self.tiles * self.tile.tsram_bytes)

    @property
    def sram_bytes_per_cycle(self) -> int:
        """CSRAM bank bandwidth: one 32-byte word per bank per cycle in every cluster."""
        return self.clusters * self.csram_banks * T.WORD_BYTES

    @property
    def hbm_bandwidth(self) -> float:
        return self.hbm_bytes_per_cycle * self.clock_hz

    def with_(self, **kw) -> ChipConfig:
        return replace(self, **kw)

    def asdict(self) -> dict:
        out = {}
        for f in fields(self):
            v = getattr(self, f.name)
            out[f.name] = ({g.name: getattr(v, g.name) for g in fields(v)}
                           if isinstance(v, T.TileConfig) else v)
        return out


DEFAULT = ChipConfig()

# the smallest chip: one cluster, one 1x1-cell tile (Icarus and the fast default tests)
TINY = ChipConfig(name="tiny", mesh_x=1, mesh_y=1, tiles=1,
                  tile=T.TileConfig(rows=1, cols=1, banks=4, tsram_bytes=16384, window=2,
                                    max_k=256, n_sems=4),
                  csram_bytes=32 * 1024, csram_banks=4, dma_channels=2, dma_max_burst=16,
                  hbm_window=1 << 20, queues=2, n_sems=4, hbm_capacity=1 << 20)

# one cluster with two default tiles (Verilator tests of the whole path at tile size)
SMALL = ChipConfig(name="small", mesh_x=1, mesh_y=1, tiles=2, csram_bytes=128 * 1024,
                   hbm_window=4 << 20, hbm_capacity=4 << 20)

# The Maia 200 class configuration (estimates and Verilog inspection only).
# 16 x 10 mesh = 160 clusters x 4 tiles = 640 tiles of 8 x 8 MX cells.
MAIA200_CLOCK_HZ = 1.94e9
MAIA200 = ChipConfig(
    name="maia200", mesh_x=16, mesh_y=10, tiles=4,
    tile=T.TileConfig(rows=8, cols=8, banks=8, tsram_bytes=256 * 1024, window=8,
                      max_k=8192, n_sems=16),
    csram_bytes=640 * 1024, csram_banks=8, dma_channels=4, dma_max_burst=64,
    hbm_window=1 << 31, queues=8, n_sems=16, clock_hz=MAIA200_CLOCK_HZ,
    hbm_bytes_per_cycle=28 * 128,          # 28 HBM ports x 1024 bits per chip cycle
    hbm_capacity=216 * 10**9, hbm_ports=28)

# The whole-chip benchmark's chip: tiny's single 1x1-cell tile, with a 4 MiB HBM window so a
# 512^3 GEMM fits (A and B codes, scales and the binary32 C: 1.6 MiB) and a 64 KiB TSRAM with
# max_k 512 (the maia200 tile has 256 KiB), so a GEMM block amortizes its DMA and queue
# entries the way a real tile's does; still fast to simulate.
TINY_4M = TINY.with_(name="tiny_4m", hbm_window=4 << 20, hbm_capacity=4 << 20,
                     tile=T.TileConfig(rows=1, cols=1, banks=4, tsram_bytes=65536, window=2,
                                       max_k=512, n_sems=4))

# tiny with one NIC port (the two-chip co-simulation of docs/chip.md "NIC ports")
TINY_NIC = TINY.with_(name="tiny_nic", nic_ports=1)
# tiny with three NIC ports: the chip of the 4-chip tray top (rtl.chip.tray, a full mesh)
# (nic_hbm: its NIC ports and collective engine on HBM edge ports of their own)
TINY_TRAY = TINY.with_(name="tiny_tray", nic_ports=3, nic_hbm=True)
# tiny_tray with the uplink: a 4th NIC port (spec.tray.UPLINK) and 4 queue pairs per port
# (spec.tray.route: uplink queue pair = chip index of the other tray), the chip of the
# two-tray RTL bench (rtl.chip.tray.tray2_bench_tiny4, docs/tray.md "RTL tray")
TINY_TRAY4 = TINY.with_(name="tiny_tray4", nic_ports=4, nic_qps=4)
# tiny_tray with MTU 1024 and a 4 MiB HBM: the chip of the RTL tray busbw benchmark
# (cosim/bench/tray.py, docs/tray.md "Figures"): 1 MiB per chip with dst and scratch fits
# (nic_hbm from tiny_tray)
TRAY_PERF = TINY_TRAY.with_(name="tray_perf", nic_mtu=1024, hbm_window=4 << 20,
                            hbm_capacity=4 << 20)
# tiny_tray4 with tray_perf's MTU 1024, 4 MiB HBM and nic_hbm (NIC ports and the collective
# engine on HBM edge ports of their own): the chip of the 8-chip (two-tray) RTL busbw
# benchmark (cosim/bench/tray.py tray2_bench_perf, docs/tray.md "Figures"): 1 MiB per chip
# with dst and scratch fits below the host ring
TRAY4_PERF = TINY_TRAY4.with_(name="tray4_perf", nic_mtu=1024, hbm_window=4 << 20,
                              hbm_capacity=4 << 20, nic_hbm=True)

# Calibration chips of the performance model (docs/chip.md "Performance model"): tiny's
# 1x1-cell tile and memories on several clusters, so hop counts, HBM ports shared by several
# clusters and the CP polling more units show up while a Verilator build takes minutes.
# quad: 2 x 2 clusters, 2 HBM ports; duo_x: 2 x 1 (2 HBM ports); duo_y: 1 x 2 (1 HBM port).
QUAD = TINY.with_(name="quad", mesh_x=2, mesh_y=2, queues=4)
DUO_X = TINY.with_(name="duo_x", mesh_x=2, mesh_y=1)
DUO_Y = TINY.with_(name="duo_y", mesh_x=1, mesh_y=2)

CONFIGS = {c.name: c for c in (DEFAULT, TINY, TINY_4M, SMALL, MAIA200, TINY_NIC, TINY_TRAY,
                               QUAD, DUO_X, DUO_Y, TRAY_PERF, TINY_TRAY4, TRAY4_PERF)}


def config(name: str) -> ChipConfig:
    if name not in CONFIGS:
        raise ValueError(f"name: unknown chip configuration {name!r}; known: {list(CONFIGS)}")
    return CONFIGS[name]


# --- entry encoding ----------------------------------------------------------------------------

def _put(v: int, fld: tuple[int, int], value, name: str) -> int:
    lo, width = fld
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 1 << width:
        raise ValueError(f"{name}: must be an int in [0, {(1 << width) - 1}], got {value!r}")
    return v | value << lo


def _u32(v, name: str) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= 0xFFFF_FFFF:
        raise ValueError(f"{name}: must be an int in [0, 2^32), got {v!r}")
    return v


def entry_raw(words) -> bytes:
    """Any eight 32-bit words (error-path tests)."""
    words = list(words) + [0] * (ENTRY_WORDS - len(words))
    if len(words) != ENTRY_WORDS:
        raise ValueError(f"words: at most {ENTRY_WORDS} words, got {len(words)}")
    return struct.pack("<8I", *[_u32(w, f"words[{i}]") for i, w in enumerate(words)])


def _w0(op: int, cluster: int = 0, unit: int = 0, irq: bool = False) -> int:
    w = _put(0, W0_OPCODE, op, "opcode")
    w = _put(w, W0_CLUSTER, cluster, "cluster")
    w = _put(w, W0_UNIT, unit, "unit")
    return w | (1 << W0_IRQ[0] if irq else 0)


def entry_dma(cluster: int, channel: int, head: int, irq: bool = False) -> bytes:
    return entry_raw([_w0(OP_DMA, cluster, channel, irq), _u32(head, "head")])


def entry_tile(cluster: int, tile: int, cmd_addr: int, irq: bool = False) -> bytes:
    return entry_raw([_w0(OP_TILE, cluster, tile, irq), _u32(cmd_addr, "cmd_addr")])


def entry_fence(irq: bool = False) -> bytes:
    return entry_raw([_w0(OP_FENCE, irq=irq)])


def entry_nop(irq: bool = False) -> bytes:
    return entry_raw([_w0(OP_NOP, irq=irq)])


def entry_wait(cluster: int, unit: int, tile: bool, irq: bool = False) -> bytes:
    """Retire when DMA channel ``unit`` (tile=False) or tile ``unit`` (tile=True) of
    ``cluster`` has no dispatched work in flight."""
    return entry_raw([_w0(OP_WAIT, cluster, unit, irq), WAIT_TILE if tile else WAIT_DMA])


def entry_sem_wait(cluster: int, sem: int, count: int = 1, irq: bool = False) -> bytes:
    return entry_raw([_w0(OP_SEM_WAIT, cluster, sem, irq), _put(0, (0, 8), count, "count")])


@dataclass(frozen=True)
class Entry:
    """A decoded queue entry."""
    words: tuple

    @classmethod
    def decode(cls, raw: bytes) -> Entry:
        if len(raw) != ENTRY_BYTES:
            raise ValueError(f"raw: an entry is {ENTRY_BYTES} bytes, got {len(raw)}")
        return cls(struct.unpack("<8I", bytes(raw)))

    def _f(self, fld):
        return (self.words[0] >> fld[0]) & ((1 << fld[1]) - 1)

    opcode = property(lambda s: s._f(W0_OPCODE))
    cluster = property(lambda s: s._f(W0_CLUSTER))
    unit = property(lambda s: s._f(W0_UNIT))
    irq = property(lambda s: bool(s._f(W0_IRQ)))
    reserved = property(lambda s: s.words[0] & W0_RESERVED_MASK)
    arg = property(lambda s: s.words[1])


def check_entry(e: Entry, cfg: ChipConfig, rank: int = 0, trays: int = 1) -> int:
    """Static checks the command processor makes when it takes an entry, in this order;
    returns ERR_NONE or the first error code (docs/chip.md "Errors"). ``rank`` and
    ``trays``: the chip's REG_TRAY_RANK (used by COLLECTIVE entries only, whose checks are
    spec.tray.check_chip's; a chip without NIC ports has no collective engine)."""
    if e.opcode == OP_COLLECTIVE and cfg.nic_ports:
        from spec import tray  # spec.tray builds on this module

        return tray.check_chip(struct.pack("<8I", *e.words), rank, cfg, trays)
    if e.opcode not in OPCODE_NAMES or e.opcode == OP_COLLECTIVE:
        return ERR_BAD_OPCODE
    unused = e.words[2:] if e.opcode in (OP_DMA, OP_TILE, OP_SEM_WAIT, OP_WAIT) \
        else e.words[1:]
    if e.reserved or any(unused):
        return ERR_BAD_ENTRY
    if e.opcode in (OP_NOP, OP_FENCE):
        return ERR_BAD_UNIT if (e.cluster or e.unit) else ERR_NONE
    if e.opcode == OP_SEM_WAIT and not 1 <= e.arg <= 255:
        return ERR_BAD_ENTRY
    if e.opcode == OP_WAIT and e.arg > WAIT_TILE:
        return ERR_BAD_ENTRY
    limit = {OP_DMA: cfg.dma_channels, OP_TILE: cfg.tiles, OP_SEM_WAIT: cfg.n_sems,
             OP_WAIT: cfg.tiles if e.arg == WAIT_TILE else cfg.dma_channels}[e.opcode]
    if e.cluster >= cfg.clusters or e.unit >= limit:
        return ERR_BAD_UNIT
    if e.opcode == OP_DMA:
        a = e.arg
        lo = cfg.cluster_base(e.cluster)
        ok = a % D.DESC_ALIGN == 0 and (a + D.DESC_BYTES <= cfg.hbm_window
                                        or lo <= a < lo + cfg.cluster_stride)
        return ERR_NONE if ok else ERR_BAD_ADDRESS
    if e.opcode == OP_TILE:
        a = e.arg
        ok = a % T.WORD_BYTES == 0 and a < cfg.tile.tsram_bytes
        return ERR_NONE if ok else ERR_BAD_ADDRESS
    return ERR_NONE
