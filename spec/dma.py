"""DMA engine contract: descriptor layout, CSR map, error codes and status values.

The single definition used by rtl/dma.py, golden/dma.py, cosim/dma/ and docs/dma.md.
Pure Python (no Amaranth, no numpy). The prose contract is docs/dma.md.

Descriptor (64 bytes in memory, little-endian 32-bit words, 64-byte aligned):

    word  field        bits    meaning
    0     src          31:0    source address of element (0, 0, 0)
    1     dst          31:0    destination address of element (0, 0, 0)
    2     next         31:0    address of the next descriptor; 0 ends the chain
    3     ctrl         2:0     esize: element size is 1 << esize bytes (1..128)
                       3       irq: set IRQ_STATUS.DONE when this descriptor completes
                       4       sem: pulse the semaphore strobe when this descriptor completes
                       7:5     reserved, must be 0
                       15:8    sem_id
                       31:16   reserved, must be 0
    4     count01      15:0    count0 (elements per row), 31:16 count1 (rows per plane)
    5     count2       15:0    count2 (planes); 31:16 reserved, must be 0
    6..8  src_stride0..2       unsigned byte strides of the source, dimensions 0, 1, 2
    9..11 dst_stride0..2       unsigned byte strides of the destination
    12..15 (ignored, write 0)

Element (i0, i1, i2) of a descriptor, 0 <= ik < countk, is the ``1 << esize`` bytes at
``src + i0*src_stride0 + i1*src_stride1 + i2*src_stride2``; it is copied to the same
expression with ``dst``/``dst_stride``. Elements are copied in row-major order (i0 fastest).
"""

from __future__ import annotations

from dataclasses import dataclass

# --- descriptor ------------------------------------------------------------------------------

DESC_BYTES = 64
DESC_WORDS = DESC_BYTES // 4
DESC_ALIGN = 64

W_SRC, W_DST, W_NEXT, W_CTRL, W_COUNT01, W_COUNT2 = 0, 1, 2, 3, 4, 5
W_SRC_STRIDE = (6, 7, 8)
W_DST_STRIDE = (9, 10, 11)

CTRL_ESIZE_SHIFT, CTRL_ESIZE_BITS = 0, 3
CTRL_IRQ = 1 << 3
CTRL_SEM = 1 << 4
CTRL_SEM_ID_SHIFT, CTRL_SEM_ID_BITS = 8, 8
CTRL_RESERVED_MASK = 0xFFFF_00E0
COUNT2_RESERVED_MASK = 0xFFFF_0000

COUNT_BITS = 16
MAX_COUNT = (1 << COUNT_BITS) - 1
MAX_ESIZE = (1 << CTRL_ESIZE_BITS) - 1  # element size 128 bytes
ADDR_BITS = 32

# --- errors (ERROR register, per channel) ---------------------------------------------------
# Checked in this order; the first that applies is reported (docs/dma.md "Errors").

ERR_NONE = 0
ERR_DESC_ALIGN = 1    # descriptor address not 64-byte aligned
ERR_DESC_WINDOW = 2   # descriptor [addr, addr+64) not inside one enabled window
ERR_DESC_READ = 3     # SLVERR/DECERR on any beat of the descriptor fetch
ERR_BAD_DESC = 4      # reserved descriptor bits set
ERR_ZERO_COUNT = 5    # count0, count1 or count2 is zero
ERR_MISALIGNED = 6    # src, dst or a stride is not a multiple of the element size
ERR_SRC_WINDOW = 7    # source bounding range not inside one enabled window
ERR_DST_WINDOW = 8    # destination bounding range not inside one enabled window
ERR_OVERLAP = 9       # source and destination bounding ranges overlap
ERR_READ_RESP = 10    # SLVERR/DECERR on a data read beat (that beat is not written)
ERR_WRITE_RESP = 11   # SLVERR/DECERR write response

ERROR_NAMES = {
    ERR_NONE: "NONE", ERR_DESC_ALIGN: "DESC_ALIGN", ERR_DESC_WINDOW: "DESC_WINDOW",
    ERR_DESC_READ: "DESC_READ", ERR_BAD_DESC: "BAD_DESC", ERR_ZERO_COUNT: "ZERO_COUNT",
    ERR_MISALIGNED: "MISALIGNED", ERR_SRC_WINDOW: "SRC_WINDOW", ERR_DST_WINDOW: "DST_WINDOW",
    ERR_OVERLAP: "OVERLAP", ERR_READ_RESP: "READ_RESP", ERR_WRITE_RESP: "WRITE_RESP",
}
ERROR_BITS = 4

# --- channel state (STATUS register bits 1:0) -------------------------------------------------

ST_IDLE, ST_BUSY, ST_DONE, ST_ERROR = 0, 1, 2, 3
STATUS_NAMES = {ST_IDLE: "IDLE", ST_BUSY: "BUSY", ST_DONE: "DONE", ST_ERROR: "ERROR"}

IRQ_DONE = 1 << 0   # a descriptor with ctrl.irq completed
IRQ_ERROR = 1 << 1  # the chain stopped with an error

# --- CSR map (AXI4-Lite, 32-bit registers, byte addresses) ------------------------------------

CSR_ADDR_WIDTH = 12
CSR_DATA_WIDTH = 32

ID_MAGIC = 0x444D_4101  # "DMA" + version 1

REG_ID = 0x000          # RO  ID_MAGIC
REG_CONFIG = 0x004      # RO  [7:0] channels, [11:8] log2(data bytes), [15:12] windows,
#                             [23:16] max burst beats - 1
WIN_BASE = 0x010        # window k: base at WIN_BASE + 8k, size at WIN_BASE + 8k + 4
WIN_STRIDE = 8
MAX_WINDOWS = 8

CH_BASE = 0x100         # channel c registers at CH_BASE + c * CH_STRIDE + offset
CH_STRIDE = 0x40
MAX_CHANNELS = (1 << CSR_ADDR_WIDTH) - CH_BASE
MAX_CHANNELS //= CH_STRIDE  # 60

CH_HEAD = 0x00          # RW  address of the first descriptor of the chain
CH_DOORBELL = 0x04      # WO  any write starts the chain at HEAD (SLVERR while BUSY)
CH_STATUS = 0x08        # RO  [1:0] state (ST_*)
CH_ERROR = 0x0C         # RO  error code (ERR_*) of the last chain
CH_ERR_DESC = 0x10      # RO  address of the descriptor that failed
CH_CUR_DESC = 0x14      # RO  address of the descriptor being (or last) processed
CH_IRQ_STATUS = 0x18    # RW1C IRQ_DONE | IRQ_ERROR
CH_IRQ_ENABLE = 0x1C    # RW  mask for the channel's irq output
CH_DESC_COUNT = 0x20    # RO  descriptors completed without error since the doorbell
CH_RD_BEATS = 0x24      # RO  data read beats (not descriptor fetches) since the doorbell
CH_WR_BEATS = 0x28      # RO  data write beats since the doorbell
CH_BYTES = 0x2C         # RO  bytes of completed descriptors since the doorbell (mod 2**32)
CH_BUSY_CYCLES = 0x30   # RO  clock cycles in BUSY since the doorbell
CH_SEM_COUNT = 0x34     # RO  semaphore strobes emitted since the doorbell

# name -> (offset, access) for docs and drivers
CH_REGS = {
    "HEAD": (CH_HEAD, "RW"), "DOORBELL": (CH_DOORBELL, "WO"), "STATUS": (CH_STATUS, "RO"),
    "ERROR": (CH_ERROR, "RO"), "ERR_DESC": (CH_ERR_DESC, "RO"),
    "CUR_DESC": (CH_CUR_DESC, "RO"), "IRQ_STATUS": (CH_IRQ_STATUS, "RW1C"),
    "IRQ_ENABLE": (CH_IRQ_ENABLE, "RW"), "DESC_COUNT": (CH_DESC_COUNT, "RO"),
    "RD_BEATS": (CH_RD_BEATS, "RO"), "WR_BEATS": (CH_WR_BEATS, "RO"),
    "BYTES": (CH_BYTES, "RO"), "BUSY_CYCLES": (CH_BUSY_CYCLES, "RO"),
    "SEM_COUNT": (CH_SEM_COUNT, "RO"),
}
# registers whose value the golden model predicts exactly (BUSY_CYCLES is timing)
CH_EXACT_REGS = ("HEAD", "STATUS", "ERROR", "ERR_DESC", "CUR_DESC", "IRQ_STATUS",
                 "DESC_COUNT", "RD_BEATS", "WR_BEATS", "BYTES", "SEM_COUNT")


def ch_reg(channel: int, offset: int) -> int:
    """Byte address of a channel register."""
    return CH_BASE + channel * CH_STRIDE + offset


def win_base_reg(k: int) -> int:
    return WIN_BASE + k * WIN_STRIDE


def win_size_reg(k: int) -> int:
    return WIN_BASE + k * WIN_STRIDE + 4


# --- Python view of a descriptor ----------------------------------------------------------------

def _field(name: str, value, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an int, not {type(value).__name__}")
    if not lo <= value <= hi:
        raise ValueError(f"{name} must be in {lo}..{hi:#x}, not {value:#x}")
    return value


@dataclass(frozen=True)
class Descriptor:
    """One descriptor. Fields are checked only for *encodability* (so that descriptors the
    hardware must reject, e.g. zero counts, can still be built); semantic checks are the
    engine's (error codes above)."""

    src: int
    dst: int
    counts: tuple = (1, 1, 1)
    src_strides: tuple = (1, 0, 0)
    dst_strides: tuple = (1, 0, 0)
    esize: int = 0
    next: int = 0
    irq: bool = False
    sem: bool = False
    sem_id: int = 0
    reserved: int = 0  # raw bits ORed into ctrl (tests of ERR_BAD_DESC)

    def __post_init__(self):
        _field("src", self.src, 0, (1 << ADDR_BITS) - 1)
        _field("dst", self.dst, 0, (1 << ADDR_BITS) - 1)
        _field("next", self.next, 0, (1 << ADDR_BITS) - 1)
        _field("esize", self.esize, 0, MAX_ESIZE)
        _field("sem_id", self.sem_id, 0, (1 << CTRL_SEM_ID_BITS) - 1)
        _field("reserved", self.reserved, 0, CTRL_RESERVED_MASK)
        if self.reserved & ~CTRL_RESERVED_MASK:
            raise ValueError(f"reserved must only use bits {CTRL_RESERVED_MASK:#x}")
        for name in ("counts", "src_strides", "dst_strides"):
            v = getattr(self, name)
            if not isinstance(v, (tuple, list)) or len(v) != 3:
                raise ValueError(f"{name} must be a sequence of 3 ints, not {v!r}")
            object.__setattr__(self, name, tuple(v))
        for i, c in enumerate(self.counts):
            _field(f"counts[{i}]", c, 0, MAX_COUNT)
        for name in ("src_strides", "dst_strides"):
            for i, s in enumerate(getattr(self, name)):
                _field(f"{name}[{i}]", s, 0, (1 << ADDR_BITS) - 1)

    @property
    def elem_bytes(self) -> int:
        return 1 << self.esize

    @property
    def ctrl(self) -> int:
        return (self.esize | (CTRL_IRQ if self.irq else 0) | (CTRL_SEM if self.sem else 0)
                | (self.sem_id << CTRL_SEM_ID_SHIFT) | self.reserved)

    def words(self) -> list[int]:
        w = [0] * DESC_WORDS
        w[W_SRC], w[W_DST], w[W_NEXT], w[W_CTRL] = self.src, self.dst, self.next, self.ctrl
        w[W_COUNT01] = self.counts[0] | (self.counts[1] << 16)
        w[W_COUNT2] = self.counts[2]
        for i in range(3):
            w[W_SRC_STRIDE[i]] = self.src_strides[i]
            w[W_DST_STRIDE[i]] = self.dst_strides[i]
        return w

    def pack(self) -> bytes:
        return b"".join(x.to_bytes(4, "little") for x in self.words())

    @classmethod
    def unpack(cls, raw: bytes) -> Descriptor:
        if len(raw) != DESC_BYTES:
            raise ValueError(f"raw must be {DESC_BYTES} bytes, not {len(raw)}")
        w = [int.from_bytes(raw[4 * i:4 * i + 4], "little") for i in range(DESC_WORDS)]
        ctrl = w[W_CTRL]
        return cls(src=w[W_SRC], dst=w[W_DST], next=w[W_NEXT],
                   esize=ctrl & MAX_ESIZE, irq=bool(ctrl & CTRL_IRQ), sem=bool(ctrl & CTRL_SEM),
                   sem_id=(ctrl >> CTRL_SEM_ID_SHIFT) & 0xFF,
                   reserved=ctrl & CTRL_RESERVED_MASK,
                   counts=(w[W_COUNT01] & 0xFFFF, w[W_COUNT01] >> 16, w[W_COUNT2] & 0xFFFF),
                   src_strides=tuple(w[i] for i in W_SRC_STRIDE),
                   dst_strides=tuple(w[i] for i in W_DST_STRIDE))
