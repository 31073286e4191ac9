"""Network-on-chip packet format, message classes, traffic patterns and address map.

The single definition shared by ``rtl/noc``, ``golden/noc.py``, ``cosim/noc`` and
``docs/noc.md``. Pure Python (no Amaranth, no numpy).

Flit
----
A flit on a link is ``kind`` (2 bits) + ``data`` (``flit_width`` bits), plus the virtual-channel
number as side band. ``kind`` bit 0 marks the head flit, bit 1 the tail flit, so a one-flit
packet is ``HEADTAIL`` and a middle flit is ``BODY``.

Head flit (``data``, bit ranges are [lo, hi) from bit 0)
---------------------------------------------------------
=========  =======  ============================================================
field      bits     meaning
=========  =======  ============================================================
dst_x      0..4     destination column (routers use only dst_x/dst_y)
dst_y      4..8     destination row
src_x      8..12    source column
src_y      12..16   source row
op         16..19   opcode (OP_*)
mark       19..20   traffic packets: created inside the measurement window
len        20..28   number of flits after the head (0..255)
arg        28..64   opcode-specific (see ARG fields below); flit_width >= 64 when used
=========  =======  ============================================================

Opcode-specific ``arg`` fields (offsets inside the head flit):

* OP_TRAFFIC: ``seq`` 28..44 (per-flow sequence number), ``stamp`` 44..64 (creation cycle mod
  2**20).
* OP_RD_REQ / OP_WR_REQ: ``axid`` 28..36, ``size`` 36..39, ``burst`` 39..41, ``axlen``
  41..49. The second flit carries the byte offset inside the target's region in its low
  ``addr_width`` bits; a write request then carries ``axlen + 1`` data flits of
  ``wdata`` (bits 0..DW) and ``wstrb`` (bits DW..DW+DW/8).
* OP_RD_RSP: ``axid`` 28..36, ``resp`` 49..51 (response of the whole burst; DECERR if the
  request was refused); ``len`` data flits follow, each ``rdata`` (0..DW) and ``rresp``
  (DW..DW+2).
* OP_WR_RSP: ``axid`` 28..36, ``resp`` 49..51; single flit (``HEADTAIL``).

Message classes and virtual channels
------------------------------------
Class 0 is *request*, class 1 is *response*. A port has ``N_CLASSES * vcs_per_class`` VCs;
VC ``v`` belongs to class ``v // vcs_per_class``. A packet never changes class, so a response
can never wait behind a request (the protocol-deadlock argument in docs/noc.md).

Address map
-----------
Each endpoint that holds memory owns one power-of-two aligned region. The default map gives
node ``n`` (``n = y * kx + x``) the window ``[n << REGION_SHIFT, (n + 1) << REGION_SHIFT)``;
other maps are lists of :class:`Region`. An address outside every region is refused by the
initiating network interface with AXI DECERR and never enters the network.
"""

from __future__ import annotations

from dataclasses import dataclass

# --- flit kinds -------------------------------------------------------------------------------
KIND_BODY, KIND_HEAD, KIND_TAIL, KIND_HEADTAIL = 0b00, 0b01, 0b10, 0b11
KIND_WIDTH = 2

# --- message classes ---------------------------------------------------------------------------
CLASS_REQ, CLASS_RSP = 0, 1
N_CLASSES = 2
CLASS_NAMES = ("request", "response")

# --- opcodes -----------------------------------------------------------------------------------
OP_TRAFFIC, OP_RD_REQ, OP_WR_REQ, OP_RD_RSP, OP_WR_RSP = 0, 1, 2, 3, 4
OP_CLASS = {OP_RD_REQ: CLASS_REQ, OP_WR_REQ: CLASS_REQ, OP_RD_RSP: CLASS_RSP,
            OP_WR_RSP: CLASS_RSP}

# --- router ports ------------------------------------------------------------------------------
PORT_N, PORT_E, PORT_S, PORT_W, PORT_L = 0, 1, 2, 3, 4
PORT_NAMES = ("N", "E", "S", "W", "L")
N_PORTS = 5
# y grows southwards: row 0 is the north edge, column 0 the west edge.

# --- head-flit fields: name -> (lo, hi) ------------------------------------------------------
HEAD_FIELDS = {
    "dst_x": (0, 4), "dst_y": (4, 8), "src_x": (8, 12), "src_y": (12, 16),
    "op": (16, 19), "mark": (19, 20), "len": (20, 28),
}
TRAFFIC_FIELDS = {"seq": (28, 44), "stamp": (44, 64)}
AXI_FIELDS = {"axid": (28, 36), "size": (36, 39), "burst": (39, 41), "axlen": (41, 49),
              "resp": (49, 51)}
COORD_BITS = 4
MAX_DIM = 1 << COORD_BITS            # meshes up to 16 x 16
ROUTE_MIN_FLIT_WIDTH = 8             # routers read dst_x/dst_y only
HEAD_MIN_FLIT_WIDTH = 64             # traffic and AXI packets use the whole head
SEQ_BITS = 16
STAMP_BITS = 20
MAX_LEN = 255

REGION_SHIFT = 20                    # default map: 1 MiB per node

# --- virtual channel within a class ("lookahead" choice) -------------------------------------
# A packet's VC on a link (class * vcs_per_class + sub) is chosen by the output port it will
# take at the router that link leads to (its *next port*): a router input VC then holds only
# packets heading the same way (fewer head-of-line blocks), and since the choice is a function
# of the destination and the position, every packet of a flow takes the same VC chain and
# stays in order. On a router's local (ejection) output the sub-channel is the input port the
# packet arrived on, modulo vcs_per_class. Table: VC_SUB[vcs_per_class][next port N,E,S,W,L].
VC_SUB = {1: (0, 0, 0, 0, 0), 2: (0, 1, 0, 1, 1), 3: (0, 1, 0, 1, 2), 4: (0, 1, 3, 1, 2)}


def xy_port(x: int, y: int, dst_x: int, dst_y: int, kx: int, ky: int) -> int:
    """Output port (PORT_*) of a head flit at router (x, y): X first, then Y; a move past
    the mesh edge is not taken (out-of-mesh destinations leave at the nearest edge node)."""
    if dst_x > x and x < kx - 1:
        return PORT_E
    if dst_x < x and x > 0:
        return PORT_W
    if dst_y > y and y < ky - 1:
        return PORT_S
    if dst_y < y and y > 0:
        return PORT_N
    return PORT_L


NEIGHBOUR = {PORT_N: (0, -1), PORT_E: (1, 0), PORT_S: (0, 1), PORT_W: (-1, 0)}


def vc_sub(x: int, y: int, in_port: int, dst_x: int, dst_y: int, kx: int, ky: int,
           vcs_per_class: int) -> int:
    """Sub-channel (VC index inside the class) a packet at router (x, y), arrived on
    ``in_port``, takes on its output link (see VC_SUB)."""
    out = xy_port(x, y, dst_x, dst_y, kx, ky)
    if out == PORT_L:
        return in_port % vcs_per_class
    dx, dy = NEIGHBOUR[out]
    return VC_SUB[vcs_per_class][xy_port(x + dx, y + dy, dst_x, dst_y, kx, ky)]


def inject_sub(x: int, y: int, dst_x: int, dst_y: int, kx: int, ky: int,
               vcs_per_class: int) -> int:
    """Sub-channel on the link from the endpoint into router (x, y)."""
    return VC_SUB[vcs_per_class][xy_port(x, y, dst_x, dst_y, kx, ky)]



def field_get(word: int, lo_hi: tuple[int, int]) -> int:
    lo, hi = lo_hi
    return (word >> lo) & ((1 << (hi - lo)) - 1)


def field_put(word: int, lo_hi: tuple[int, int], value: int, name: str = "field") -> int:
    lo, hi = lo_hi
    if not isinstance(value, int) or not 0 <= value < (1 << (hi - lo)):
        raise ValueError(f"{name} must be an int in [0, {1 << (hi - lo)}), not {value!r}")
    return (word & ~(((1 << (hi - lo)) - 1) << lo)) | (value << lo)


ALL_FIELDS = {**HEAD_FIELDS, **TRAFFIC_FIELDS, **AXI_FIELDS}


def make_head(**fields: int) -> int:
    """Pack a head flit's data word from named fields (any of HEAD/TRAFFIC/AXI_FIELDS)."""
    word = 0
    for name, value in fields.items():
        if name not in ALL_FIELDS:
            raise ValueError(f"unknown head field {name!r}; known: {sorted(ALL_FIELDS)}")
        word = field_put(word, ALL_FIELDS[name], value, name)
    return word


def parse_head(word: int, op: int | None = None) -> dict[str, int]:
    """Unpack a head flit's data word into named fields."""
    out = {k: field_get(word, v) for k, v in HEAD_FIELDS.items()}
    op = out["op"] if op is None else op
    extra = TRAFFIC_FIELDS if op == OP_TRAFFIC else AXI_FIELDS
    out.update({k: field_get(word, v) for k, v in extra.items()})
    return out


# --- traffic packets: payload of body flits (checked for integrity by the sinks) -------------
PAYLOAD_SALT = 0x5A3C96E1


def traffic_payload(src: int, dst: int, seq: int, idx: int, width: int) -> int:
    """Data word of flit ``idx`` (1..len) of traffic packet ``seq`` from ``src`` to ``dst``
    (coordinate bytes ``x | y << 4``): 32-bit chunks ``chunk_j = (src<<24 | dst<<16 | seq) ^ (idx << 8*j) ^ SALT``
    rotated left by j bits, truncated to ``width``. Cheap in hardware (wiring and XOR),
    and any single flipped bit, swapped flit, or misdelivered packet changes it."""
    base = ((src & 0xFF) << 24) | ((dst & 0xFF) << 16) | (seq & 0xFFFF)
    word = 0
    for j in range((width + 31) // 32):
        c = (base ^ ((idx & 0xFF) << (8 * (j % 4))) ^ PAYLOAD_SALT) & 0xFFFFFFFF
        r = j % 32
        c = ((c << r) | (c >> (32 - r))) & 0xFFFFFFFF if r else c
        word |= c << (32 * j)
    return word & ((1 << width) - 1)


# --- traffic patterns --------------------------------------------------------------------------
PAT_UNIFORM, PAT_TRANSPOSE, PAT_BITCOMP, PAT_HOTSPOT, PAT_ALL_TO_ONE = 0, 1, 2, 3, 4
PATTERNS = {"uniform": PAT_UNIFORM, "transpose": PAT_TRANSPOSE, "bitcomp": PAT_BITCOMP,
            "hotspot": PAT_HOTSPOT, "all_to_one": PAT_ALL_TO_ONE}


def pattern_dest(pattern: int, x: int, y: int, kx: int, ky: int, rnd16: int,
                 rnd8: int = 0, target: int = 0, hot_thresh: int = 0) -> tuple[int, int] | None:
    """Destination (dst_x, dst_y) of a packet created at (x, y) under ``pattern``; None
    means the node does not send (transpose on the diagonal or on a non-square mesh,
    all-to-one at the target itself).

    ``rnd16``/``rnd8`` are the generator's LFSR bits. Uniform picks
    ``dst_x = (rnd16[0:8] * kx) >> 8`` and ``dst_y = (rnd16[8:16] * ky) >> 8`` (self
    included); hotspot picks ``target`` when ``rnd8 < hot_thresh``, uniform otherwise;
    all-to-one sends to ``target``. ``target`` is ``tx | ty << 4`` (coordinates, so a
    target outside the mesh can be named on purpose)."""
    tx, ty = target & 0xF, (target >> 4) & 0xF
    ux, uy = ((rnd16 & 0xFF) * kx) >> 8, (((rnd16 >> 8) & 0xFF) * ky) >> 8
    if pattern == PAT_UNIFORM:
        return ux, uy
    if pattern == PAT_TRANSPOSE:
        if kx != ky or x == y:
            return None
        return y, x
    if pattern == PAT_BITCOMP:
        return kx - 1 - x, ky - 1 - y
    if pattern == PAT_HOTSPOT:
        return (tx, ty) if rnd8 < hot_thresh else (ux, uy)
    if pattern == PAT_ALL_TO_ONE:
        return None if (x, y) == (tx, ty) else (tx, ty)
    raise ValueError(f"pattern must be one of {sorted(PATTERNS.values())}, not {pattern!r}")


# --- LFSR used by generators and sinks (Galois, 16 bits, taps 0xB400: maximal length; the
# hardware advances it 16 steps per cycle so that successive words are independent) ---------
LFSR_TAPS = 0xB400


def lfsr_next(state: int) -> int:
    lsb = state & 1
    state >>= 1
    return state ^ LFSR_TAPS if lsb else state


# --- address map -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Region:
    """``[base, base + size)`` belongs to the node at column ``x``, row ``y``. ``size`` is a
    power of two and ``base`` a multiple of it. (x, y) may lie outside the mesh: the
    network then delivers the request to the nearest edge node, whose interface answers
    DECERR (tested on purpose)."""
    base: int
    size: int
    x: int
    y: int

    def __post_init__(self):
        if self.size <= 0 or self.size & (self.size - 1):
            raise ValueError(f"size must be a power of two, not {self.size:#x}")
        if self.base % self.size:
            raise ValueError(f"base {self.base:#x} must be a multiple of size {self.size:#x}")
        for name in ("x", "y"):
            v = getattr(self, name)
            if not 0 <= v < MAX_DIM:
                raise ValueError(f"{name} must be in [0, {MAX_DIM}), not {v!r}")


def default_address_map(kx: int, ky: int, shift: int = REGION_SHIFT) -> tuple[Region, ...]:
    return tuple(Region(base=(y * kx + x) << shift, size=1 << shift, x=x, y=y)
                 for y in range(ky) for x in range(kx))


def decode_address(regions, addr: int) -> tuple[Region, int] | None:
    """(region, offset) of ``addr``, or None if unmapped. Regions must not overlap; the
    first match wins."""
    for r in regions:
        if r.base <= addr < r.base + r.size:
            return r, addr - r.base
    return None


def check_mesh(kx: int, ky: int) -> None:
    for name, v in (("kx", kx), ("ky", ky)):
        if not isinstance(v, int) or not 1 <= v <= MAX_DIM:
            raise ValueError(f"{name} must be an int in [1, {MAX_DIM}], not {v!r}")
