"""Tensor tile contract: configuration, TSRAM layouts, command descriptors, errors, counters.

The single definition used by rtl/tile/, golden/tile.py, cosim/tile/ and docs/tile.md.
Pure Python (no Amaranth, no numpy). The prose contract is docs/tile.md.

TSRAM is byte addressed and organised in 32-byte words (``WORD_BYTES``); every operand
address in a command must be word aligned. Matrices are stored row by row with each row
padded to a whole number of words (``row_words``).

Command descriptor: 32 bytes (one TSRAM word), eight little-endian 32-bit words::

    word 0  [7:0] opcode   [11:8] wait_sem  [12] wait_en  [19:16] signal_sem  [20] signal_en
            (wait/signal apply to unit commands MATMUL, TVP; other opcodes must leave them 0)
    MATMUL  w1 a_addr  w2 a_scale_addr  w3 b_addr  w4 b_scale_addr  w5 c_addr
            w6 [15:0] M  [31:16] N
            w7 [15:0] K  [17:16] a_fmt  [19:18] b_fmt  [20] accumulate
    TVP     w1 src1  w2 src2 (QUANT: scale destination)  w3 dst  w4 imm
            w5 [15:0] rows  [31:16] n (elements per row)
            w6 [7:0] tvp_op  [9:8] src2 mode  [13:12] element format (QUANT)
    DMA     w1 address of the first DMA descriptor (spec.dma layout, 64-byte aligned, in
            TSRAM); the tile DMA runs the chain (docs/dma.md) in the tile DMA address space
            (TSRAM at 0, external AXI4 memory at DMA_EXT_BASE)
    SEM_WAIT / SEM_SIGNAL   w1 semaphore index   w2 count (1..255)
    NOP, BARRIER, END       no operands
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass

from spec.formats import BLOCK, FORMATS

WORD_BYTES = 32          # TSRAM word: one FP8 block, two e2m1 blocks, 8 binary32 lanes
LANES = WORD_BYTES // 4  # TVP binary32 lanes (one word per step)
DESC_BYTES = 32
DESC_WORDS = DESC_BYTES // 4

# --- opcodes -------------------------------------------------------------------------------
OP_NOP, OP_MATMUL, OP_TVP, OP_DMA, OP_SEM_WAIT, OP_SEM_SIGNAL, OP_BARRIER, OP_END = range(8)
OPCODES = {"NOP": OP_NOP, "MATMUL": OP_MATMUL, "TVP": OP_TVP, "DMA": OP_DMA,
           "SEM_WAIT": OP_SEM_WAIT, "SEM_SIGNAL": OP_SEM_SIGNAL, "BARRIER": OP_BARRIER,
           "END": OP_END}
IMPLEMENTED_OPCODES = (OP_NOP, OP_MATMUL, OP_TVP, OP_DMA, OP_SEM_WAIT, OP_SEM_SIGNAL,
                       OP_BARRIER, OP_END)
UNIT_OPCODES = (OP_MATMUL, OP_TVP, OP_DMA)   # run in a unit; may carry wait/signal

# --- tile DMA (docs/tile.md "DMA") -----------------------------------------------------------
# The tile DMA engine (rtl.dma.DMAEngine, one channel, 256-bit AXI4) sees a 32-bit address
# space: TSRAM at [0, tsram_bytes), the external AXI4 port ``m_axi`` at
# [DMA_EXT_BASE, DMA_EXT_BASE + ext_bytes) (addresses passed to m_axi unchanged). The two
# windows are programmed by the tile after reset; anything else is outside every window.
DMA_EXT_BASE = 1 << 24
DMA_DATA_WIDTH = 256
DMA_MAX_BURST = 16
DMA_DESC_ALIGN = 64
DMA_DESC_BYTES = 64

# word 0 fields
W0_OPCODE = (0, 8)
W0_WAIT_SEM = (8, 4)
W0_WAIT_EN = (12, 1)
W0_SIG_SEM = (16, 4)
W0_SIG_EN = (20, 1)

# --- TVP operations -------------------------------------------------------------------------
(TVP_ADD, TVP_SUB, TVP_MUL, TVP_MAX, TVP_MIN, TVP_RELU, TVP_SCALE2, TVP_ROWSUM, TVP_ROWMAX,
 TVP_EXP2, TVP_QUANT, TVP_BF16, TVP_COPY, TVP_RCP) = range(14)
TVP_OPS = {"add": TVP_ADD, "sub": TVP_SUB, "mul": TVP_MUL, "max": TVP_MAX, "min": TVP_MIN,
           "relu": TVP_RELU, "scale2": TVP_SCALE2, "rowsum": TVP_ROWSUM,
           "rowmax": TVP_ROWMAX, "exp2": TVP_EXP2, "quant": TVP_QUANT, "bf16": TVP_BF16,
           "copy": TVP_COPY, "rcp": TVP_RCP}
TVP_BINARY = (TVP_ADD, TVP_SUB, TVP_MUL, TVP_MAX, TVP_MIN)   # use src2
TVP_ELEMENTWISE = (*TVP_BINARY, TVP_RELU, TVP_SCALE2, TVP_EXP2, TVP_COPY, TVP_RCP)
TVP_ROW = (TVP_ROWSUM, TVP_ROWMAX)
# src2 modes for binary ops
SRC2_VECTOR, SRC2_ROW, SRC2_IMM = 0, 1, 2
SCALE2_MIN, SCALE2_MAX = -126, 127   # imm of TVP_SCALE2 (a signed 32-bit k: x * 2^k)

# --- errors --------------------------------------------------------------------------------
ERR_NONE = 0
ERR_BAD_OPCODE = 1   # unknown/reserved opcode or nonzero wait/signal on a TCP-local command
ERR_ADDR_RANGE = 2   # an operand region reaches past the end of TSRAM
ERR_ADDR_ALIGN = 3   # an operand address is not word (32-byte) aligned
ERR_BAD_SHAPE = 4    # zero/oversized dimension, K not a multiple of 32, QUANT n % 32 != 0
ERR_BAD_FORMAT = 5   # element format code 3
ERR_BAD_SEM = 6      # semaphore index >= n_sems, or count 0 / > 255
ERR_BAD_TVP_OP = 7   # unknown TVP op or src2 mode 3
ERR_CMD_RANGE = 8    # the command list runs past the end of TSRAM
ERR_DMA = 0x10       # the tile DMA stopped its chain: error = ERR_DMA | spec.dma ERR_* code
ERRORS = {"NONE": ERR_NONE, "BAD_OPCODE": ERR_BAD_OPCODE, "ADDR_RANGE": ERR_ADDR_RANGE,
          "ADDR_ALIGN": ERR_ADDR_ALIGN, "BAD_SHAPE": ERR_BAD_SHAPE,
          "BAD_FORMAT": ERR_BAD_FORMAT, "BAD_SEM": ERR_BAD_SEM,
          "BAD_TVP_OP": ERR_BAD_TVP_OP, "CMD_RANGE": ERR_CMD_RANGE, "DMA": ERR_DMA}

# --- status register ----------------------------------------------------------------------
ST_IDLE, ST_RUNNING, ST_DONE, ST_ERROR = range(4)
STATUS_STATE = (0, 2)
STATUS_ERROR = (8, 8)
STATUS_INDEX = (16, 16)


def status_word(state: int, error: int = 0, index: int = 0) -> int:
    return (state & 3) | (error & 0xFF) << 8 | (index & 0xFFFF) << 16


def status_fields(word: int) -> tuple[int, int, int]:
    return word & 3, (word >> 8) & 0xFF, (word >> 16) & 0xFFFF


# --- performance counters (32-bit, wrap, cleared by start) ---------------------------------
# EXACT counters are reproduced bit for bit by the golden tile; the others are cycle counts
# that the golden tile estimates from its performance model.
COUNTERS = ("cycles", "cmds_retired", "ttu_busy", "ttu_fill", "ttu_issue", "ttu_stall",
            "ttu_beats", "macs_lo", "macs_hi", "tvp_busy", "tvp_words", "tcp_stall",
            "dma_busy", "dma_bytes")
EXACT_COUNTERS = ("cmds_retired", "ttu_beats", "macs_lo", "macs_hi", "tvp_words",
                  "dma_bytes")
COUNTER_INDEX = {n: i for i, n in enumerate(COUNTERS)}

# --- exp2 polynomial (docs/tile.md "exp2") -------------------------------------------------
EXP2_PIECES = 8
EXP2_DEGREE = 4


def _f32(x: float) -> int:
    return struct.unpack("<I", struct.pack("<f", x))[0]


def _exp2_coeffs() -> tuple[tuple[int, ...], ...]:
    """Piece s in [0, 8): 2^(s/8 + t) ~= sum_k c_k t^k, c_k = 2^(s/8) ln2^k / k!, as binary32
    bit patterns (round to nearest of the float64 value)."""
    out = []
    for s in range(EXP2_PIECES):
        base = 2.0 ** (s / EXP2_PIECES)
        out.append(tuple(_f32(base * math.log(2.0) ** k / math.factorial(k))
                         for k in range(EXP2_DEGREE + 1)))
    return tuple(out)


EXP2_COEFFS = _exp2_coeffs()   # [piece][k] binary32 bits
EXP2_MIN = -149                # exp2(x) = +0 for x < -149
EXP2_MAX = 128                 # exp2(x) = +Inf for x >= 128
# rcp: y0 = RCP_MAGIC - bits(|x|) (integer), then RCP_STEPS Newton steps y = y * (2 - |x|*y)
RCP_MAGIC = 0x7EF311C3
RCP_STEPS = 3


# --- configuration -------------------------------------------------------------------------
@dataclass(frozen=True)
class TileConfig:
    """Tile parameters (every size is a parameter).

    rows, cols: TTU array shape (cols must be 1, 2, 4 or 8: a C-tile row segment lies in
    one TSRAM word). banks: TSRAM banks (power of two, >= window). tsram_bytes: TSRAM size
    (a multiple of banks * 32). window: words the TTU operand loader requests per cycle.
    max_k: largest K of a MATMUL (staging buffer size). n_sems: hardware semaphores.
    ext_bytes: size of the external memory window of the tile DMA (power of two, at
    DMA_EXT_BASE).
    """
    rows: int = 2
    cols: int = 2
    banks: int = 8
    tsram_bytes: int = 65536
    window: int = 4
    max_k: int = 1024
    n_sems: int = 8
    ext_bytes: int = 1 << 20

    def __post_init__(self):
        def req(cond, name, msg):
            if not cond:
                raise ValueError(f"{name}: {msg}, got {getattr(self, name)!r}")
        for n in ("rows", "cols", "banks", "tsram_bytes", "window", "max_k", "n_sems",
                  "ext_bytes"):
            req(isinstance(getattr(self, n), int), n, "must be an int")
        req(1 <= self.rows <= 16, "rows", "must be in 1..16")
        req(self.cols in (1, 2, 4, 8), "cols", "must be 1, 2, 4 or 8")
        req(self.banks >= 1 and self.banks & (self.banks - 1) == 0, "banks",
            "must be a power of two")
        req(self.window in (1, 2, 4, 8, 16) and self.window <= self.banks, "window",
            "must be a power of two <= banks (and <= 16)")
        req(self.window >= max(self.rows, self.cols), "window",
            "must be >= max(rows, cols) (scale words of a tile are fetched in one window)")
        req(self.tsram_bytes > 0 and self.tsram_bytes % (self.banks * WORD_BYTES) == 0
            and self.tsram_bytes <= 1 << 24, "tsram_bytes",
            "must be a positive multiple of banks*32 and <= 16 MiB")
        req(self.max_k >= BLOCK and self.max_k % (BLOCK * 2) == 0 and self.max_k <= 8192,
            "max_k", "must be a multiple of 64 in 64..8192")
        req(1 <= self.n_sems <= 16, "n_sems", "must be in 1..16")
        req(DMA_DESC_BYTES <= self.ext_bytes <= 1 << 24
            and self.ext_bytes & (self.ext_bytes - 1) == 0, "ext_bytes",
            "must be a power of two in 64..16 MiB")

    @property
    def words(self) -> int:
        return self.tsram_bytes // WORD_BYTES

    @property
    def bank_depth(self) -> int:
        return self.words // self.banks

    def dma_windows(self) -> list[tuple[int, int]]:
        """(base, size) of the tile-DMA windows, programmed after reset: TSRAM, external."""
        return [(0, self.tsram_bytes), (DMA_EXT_BASE, self.ext_bytes)]

    def peak_macs(self, a_fmt: str, b_fmt: str) -> int:
        """MACs per cycle of the whole array for this format pair."""
        dual = a_fmt == "e2m1" and b_fmt == "e2m1"
        return self.rows * self.cols * BLOCK * (2 if dual else 1)


# --- layouts -------------------------------------------------------------------------------
def fmt_bits(fmt: str) -> int:
    return FORMATS[fmt].bits


def words_for_bytes(n: int) -> int:
    return -(-n // WORD_BYTES)


def code_row_words(k: int, fmt: str) -> int:
    """Words of one row of K element codes (e2m1 packed two per byte)."""
    return words_for_bytes(k * fmt_bits(fmt) // 8)


def scale_row_words(k: int) -> int:
    """Words of one row of K/32 e8m0 scales."""
    return words_for_bytes(k // BLOCK)


def f32_row_words(n: int) -> int:
    return words_for_bytes(4 * n)


def bf16_row_words(n: int) -> int:
    return words_for_bytes(2 * n)


def matmul_regions(M: int, N: int, K: int, a_fmt: str, b_fmt: str) -> dict[str, int]:
    """Bytes occupied by each MATMUL operand region (A rows, B columns, scales, C rows)."""
    return {"a": M * code_row_words(K, a_fmt) * WORD_BYTES,
            "a_scale": M * scale_row_words(K) * WORD_BYTES,
            "b": N * code_row_words(K, b_fmt) * WORD_BYTES,
            "b_scale": N * scale_row_words(K) * WORD_BYTES,
            "c": M * f32_row_words(N) * WORD_BYTES}


# --- descriptor encoding -------------------------------------------------------------------
def _put(v: int, field: tuple[int, int], value: int, name: str) -> int:
    lo, width = field
    if not isinstance(value, int) or value < 0 or value >= 1 << width:
        raise ValueError(f"{name}: must be an int in [0, {(1 << width) - 1}], got {value!r}")
    return v | value << lo


def _word0(op: int, wait, signal) -> int:
    w = _put(0, W0_OPCODE, op, "opcode")
    if wait is not None:
        w = _put(w, W0_WAIT_SEM, wait, "wait") | 1 << W0_WAIT_EN[0]
    if signal is not None:
        w = _put(w, W0_SIG_SEM, signal, "signal") | 1 << W0_SIG_EN[0]
    return w


def _pack(words) -> bytes:
    words = list(words) + [0] * (DESC_WORDS - len(words))
    for i, w in enumerate(words):
        if not 0 <= w <= 0xFFFFFFFF:
            raise ValueError(f"descriptor word {i} does not fit in 32 bits: {w!r}")
    return struct.pack("<8I", *words)


def _u32(v, name):
    if not isinstance(v, int) or not 0 <= v <= 0xFFFFFFFF:
        raise ValueError(f"{name}: must be an int in [0, 2^32), got {v!r}")
    return v


def _fcode(fmt, name):
    if isinstance(fmt, int):
        return fmt
    if fmt not in FORMATS:
        raise ValueError(f"{name}: unknown element format {fmt!r}; expected one of "
                         f"{list(FORMATS)}")
    return FORMATS[fmt].code


def cmd_matmul(a, a_scale, b, b_scale, c, M, N, K, a_fmt, b_fmt, accumulate=False,
               wait=None, signal=None) -> bytes:
    w7 = _put(0, (0, 16), K, "K")
    w7 = _put(w7, (16, 2), _fcode(a_fmt, "a_fmt"), "a_fmt")
    w7 = _put(w7, (18, 2), _fcode(b_fmt, "b_fmt"), "b_fmt")
    w7 |= int(bool(accumulate)) << 20
    return _pack([_word0(OP_MATMUL, wait, signal), _u32(a, "a"), _u32(a_scale, "a_scale"),
                  _u32(b, "b"), _u32(b_scale, "b_scale"), _u32(c, "c"),
                  _put(_put(0, (0, 16), M, "M"), (16, 16), N, "N"), w7])


def cmd_tvp(op, src1, dst, rows, n, src2=0, imm=0, src2_mode=SRC2_VECTOR, fmt=0,
            wait=None, signal=None) -> bytes:
    if isinstance(op, str):
        if op not in TVP_OPS:
            raise ValueError(f"op: unknown TVP op {op!r}; expected one of {list(TVP_OPS)}")
        op = TVP_OPS[op]
    if isinstance(imm, int) and imm < 0:
        imm &= 0xFFFFFFFF
    w6 = _put(0, (0, 8), op, "op")
    w6 = _put(w6, (8, 2), src2_mode, "src2_mode")
    w6 = _put(w6, (12, 2), _fcode(fmt, "fmt"), "fmt")
    return _pack([_word0(OP_TVP, wait, signal), _u32(src1, "src1"), _u32(src2, "src2"),
                  _u32(dst, "dst"), _u32(imm, "imm"),
                  _put(_put(0, (0, 16), rows, "rows"), (16, 16), n, "n"), w6])


def cmd_dma(desc: int, wait=None, signal=None) -> bytes:
    """Run the tile-DMA descriptor chain whose first descriptor is at TSRAM byte ``desc``."""
    return _pack([_word0(OP_DMA, wait, signal), _u32(desc, "desc")])


def cmd_sem_wait(sem: int, count: int = 1) -> bytes:
    return _pack([OP_SEM_WAIT, _u32(sem, "sem"), _u32(count, "count")])


def cmd_sem_signal(sem: int, count: int = 1) -> bytes:
    return _pack([OP_SEM_SIGNAL, _u32(sem, "sem"), _u32(count, "count")])


def cmd_barrier() -> bytes:
    return _pack([OP_BARRIER])


def cmd_nop() -> bytes:
    return _pack([OP_NOP])


def cmd_end() -> bytes:
    return _pack([OP_END])


def cmd_raw(words) -> bytes:
    """Any eight 32-bit words (for error-path tests)."""
    return _pack(words)


@dataclass(frozen=True)
class Command:
    """A decoded descriptor (field names as in the module docstring)."""
    words: tuple[int, ...]

    @classmethod
    def decode(cls, desc: bytes) -> Command:
        if len(desc) != DESC_BYTES:
            raise ValueError(f"desc: a descriptor is {DESC_BYTES} bytes, got {len(desc)}")
        return cls(struct.unpack("<8I", bytes(desc)))

    def _f(self, w, lo, width):
        return (self.words[w] >> lo) & ((1 << width) - 1)

    opcode = property(lambda s: s._f(0, *W0_OPCODE))
    wait_sem = property(lambda s: s._f(0, *W0_WAIT_SEM))
    wait_en = property(lambda s: s._f(0, *W0_WAIT_EN))
    sig_sem = property(lambda s: s._f(0, *W0_SIG_SEM))
    sig_en = property(lambda s: s._f(0, *W0_SIG_EN))
    # MATMUL
    a = property(lambda s: s.words[1])
    a_scale = property(lambda s: s.words[2])
    b = property(lambda s: s.words[3])
    b_scale = property(lambda s: s.words[4])
    c = property(lambda s: s.words[5])
    M = property(lambda s: s._f(6, 0, 16))
    N = property(lambda s: s._f(6, 16, 16))
    K = property(lambda s: s._f(7, 0, 16))
    a_fmt = property(lambda s: s._f(7, 16, 2))
    b_fmt = property(lambda s: s._f(7, 18, 2))
    accumulate = property(lambda s: s._f(7, 20, 1))
    # TVP
    src1 = property(lambda s: s.words[1])
    src2 = property(lambda s: s.words[2])
    dst = property(lambda s: s.words[3])
    imm = property(lambda s: s.words[4])
    rows = property(lambda s: s._f(5, 0, 16))
    n = property(lambda s: s._f(5, 16, 16))
    tvp_op = property(lambda s: s._f(6, 0, 8))
    src2_mode = property(lambda s: s._f(6, 8, 2))
    fmt = property(lambda s: s._f(6, 12, 2))
    # DMA
    dma_desc = property(lambda s: s.words[1])
    # SEM
    sem = property(lambda s: s.words[1])
    count = property(lambda s: s.words[2])
