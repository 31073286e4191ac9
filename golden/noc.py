"""Golden twin of the network-on-chip (pure Python/numpy; follows spec/noc.py and docs/noc.md).

* Functional delivery model: where each packet goes (dimension-ordered XY routing, with
  out-of-mesh destinations clamped to the nearest edge node) and the order contract: every
  packet is delivered exactly once, intact, and in injection order per flow
  (source, destination, class). Packets of different flows may interleave arbitrarily.
* Latency model: the zero-load latency of the RTL pipeline (exact at zero load) and the
  uniform-traffic capacity bound used by the benchmarks.
* Network-interface model: the AXI4 -> packet encoding (bit-exact flits) and the memory
  system the network interfaces implement (address map, DECERR rules).
"""

from __future__ import annotations

from collections import defaultdict, deque
from dataclasses import dataclass, field

from spec import noc as spec

# ----------------------------------------------------------------------------------------------
# routing and latency


def clamp_dest(dst_x: int, dst_y: int, kx: int, ky: int) -> tuple[int, int]:
    """The node a packet addressed to (dst_x, dst_y) leaves the network at."""
    return min(dst_x, kx - 1), min(dst_y, ky - 1)


def xy_path(src: tuple[int, int], dst: tuple[int, int], kx: int, ky: int) -> list[tuple[int, int]]:
    """Routers visited, source router first, under XY routing (X first, then Y)."""
    spec.check_mesh(kx, ky)
    x, y = src
    tx, ty = clamp_dest(*dst, kx, ky)
    path = [(x, y)]
    while x != tx:
        x += 1 if tx > x else -1
        path.append((x, y))
    while y != ty:
        y += 1 if ty > y else -1
        path.append((x, y))
    return path


def hops(src, dst, kx, ky) -> int:
    return len(xy_path(src, dst, kx, ky)) - 1


# Pipeline constants of the RTL (docs/noc.md "Pipeline"):
T_INJ = 1        # injection register in the local port
T_ROUTER = 1     # input buffer -> allocation -> output register
T_LINK = 1       # output register = link stage
T_EJ = 1         # ejection buffer in the local port
T_GEN = 1        # traffic generator: creation -> head offered (source queue)


def zero_load_latency(n_hops: int, length: int) -> int:
    """Cycles from the head flit accepted at the injection port to the tail flit offered at
    the ejection port, with no other traffic: T0 = hops * (t_router + t_link) + (t_router +
    t_link) [the destination router] + t_inj + t_ej + (length - 1) [serialization]."""
    if n_hops < 0 or length < 1:
        raise ValueError(f"need n_hops >= 0 and length >= 1, not {n_hops}, {length}")
    return (n_hops + 1) * (T_ROUTER + T_LINK) + T_INJ + T_EJ + (length - 1)


# Network interface pipeline (docs/noc.md "Network interfaces"): request queue -> sender
# (2 cycles from the AXI handshake to the head offered), target request side (head, offset,
# then the AXI command one cycle later), landing buffers (1 cycle to the AXI master).
T_NI_SEND = 2      # AR/last W beat accepted -> request head offered to the mesh
T_NI_TGT = 2       # request tail offered at the target -> command on m_axi
T_NI_LAND = 1      # response flit accepted -> offered to the AXI master


def ni_read_latency(n_hops: int, beats: int, mem_latency: int = 1) -> int:
    """Zero-load cycles from the AR handshake at the initiator to the last R beat offered
    to the master: request (2 flits) through the mesh, AR on the target's m_axi (answered
    immediately), ``mem_latency`` (>= 1) cycles to the first R beat, then one beat per
    cycle; the response head leaves once the pending entry and the first beat are there."""
    if n_hops < 0 or not 1 <= beats <= 256 or mem_latency < 1:
        raise ValueError(f"need n_hops >= 0, beats in 1..256, mem_latency >= 1, not "
                         f"{n_hops}, {beats}, {mem_latency}")
    req_tail = T_NI_SEND + zero_load_latency(n_hops, 2)           # offered at the target
    ar = req_tail + T_NI_TGT - 1                                   # AR handshake
    head = ar + max(1, mem_latency)                                # response head leaves
    tail = head + zero_load_latency(n_hops, beats + 1)             # offered at the initiator
    return tail + T_NI_LAND


def ni_write_latency(n_hops: int, beats: int, mem_latency: int = 1) -> int:
    """Zero-load cycles from the last W beat accepted at the initiator (store-and-forward:
    nothing leaves before it) to B offered to the master; the target memory accepts every
    beat at once and answers B ``mem_latency`` (>= 1) cycles after the last one."""
    if n_hops < 0 or not 1 <= beats <= 256 or mem_latency < 1:
        raise ValueError(f"need n_hops >= 0, beats in 1..256, mem_latency >= 1, not "
                         f"{n_hops}, {beats}, {mem_latency}")
    head_ej = T_NI_SEND + zero_load_latency(n_hops, 1)             # head offered at target
    last_w = head_ej + T_NI_TGT + beats                            # last beat into m_axi
    b = last_w + mem_latency                                       # response leaves
    return b + zero_load_latency(n_hops, 1) + T_NI_LAND


def traffic_latency(n_hops: int, length: int) -> int:
    """Zero-load latency as the hardware sinks measure it (creation stamp -> tail accepted)."""
    return T_GEN + zero_load_latency(n_hops, length)


def pattern_pairs(pattern: int, kx: int, ky: int, target: int = 0):
    """(src, dst) coordinate pairs a deterministic pattern uses; uniform: all pairs."""
    out = []
    for y in range(ky):
        for x in range(kx):
            if pattern in (spec.PAT_UNIFORM, spec.PAT_HOTSPOT):
                out += [((x, y), (dx, dy)) for dy in range(ky) for dx in range(kx)]
            else:
                d = spec.pattern_dest(pattern, x, y, kx, ky, 0, 0, target, 0)
                if d is not None:
                    out.append(((x, y), d))
    return out


def mean_traffic_latency(pattern: int, kx: int, ky: int, length: int) -> float:
    """Average zero-load latency (as measured by the sinks) over a pattern's pairs."""
    pairs = pattern_pairs(pattern, kx, ky)
    return sum(traffic_latency(hops(s, d, kx, ky), length) for s, d in pairs) / len(pairs)


def uniform_capacity(kx: int, ky: int) -> float:
    """Ideal uniform-random throughput bound (flits/node/cycle) on a k x k mesh:
    min(1, 4/k) (bisection: k/2 * k/2 * 2 flows each way over k channels, and the one-flit
    per cycle injection/ejection port)."""
    k = max(kx, ky)
    return min(1.0, 4.0 / k)


# ----------------------------------------------------------------------------------------------
# functional delivery model

Flit = tuple[int, int]   # (kind, data)


@dataclass
class Packet:
    src: tuple[int, int]
    cls: int
    flits: tuple[Flit, ...]

    @property
    def head(self) -> dict:
        return spec.parse_head(self.flits[0][1])

    @property
    def dst(self) -> tuple[int, int]:
        h = self.head
        return h["dst_x"], h["dst_y"]

    def hex(self) -> str:
        return " ".join(f"{k}:{d:#x}" for k, d in self.flits)


def check_framing(flits) -> str | None:
    """None if ``flits`` is one well-formed packet (head ... tail, len matches)."""
    if not flits:
        return "empty packet"
    k0, d0 = flits[0]
    if not k0 & spec.KIND_HEAD:
        return f"first flit kind {k0} is not a head"
    n = spec.parse_head(d0)["len"]
    if len(flits) != n + 1:
        return f"head says len={n} but the packet has {len(flits) - 1} flits after the head"
    for i, (k, _) in enumerate(flits):
        want = (spec.KIND_HEAD if i == 0 else 0) | (spec.KIND_TAIL if i == n else 0)
        if k != want:
            return f"flit {i} has kind {k}, expected {want}"
    return None


@dataclass
class DeliveryModel:
    """Expected deliveries: feed injected packets with :meth:`inject`, delivered ones with
    :meth:`deliver`; :meth:`deliver` returns an error string (with hex context) or None."""
    kx: int
    ky: int
    pending: dict = field(default_factory=lambda: defaultdict(deque))
    delivered: int = 0
    errors: list = field(default_factory=list)

    def flow(self, p: Packet) -> tuple:
        return p.src, clamp_dest(*p.dst, self.kx, self.ky), p.cls

    def inject(self, p: Packet) -> None:
        self.pending[self.flow(p)].append(p)

    def deliver(self, at: tuple[int, int], p: Packet) -> str | None:
        err = check_framing(p.flits)
        if err is None:
            key = self.flow(p)
            if key[1] != at:
                err = f"delivered at {at}, but XY routing ends at {key[1]}"
            elif not self.pending[key]:
                err = f"no packet of flow {key} outstanding (duplicate or invented)"
            else:
                exp = self.pending[key].popleft()
                if exp.flits != p.flits:
                    err = f"flow {key}: expected {exp.hex()}"
        if err:
            msg = f"packet at {at} class {p.cls}: {p.hex()}: {err}"
            self.errors.append(msg)
            return msg
        self.delivered += 1
        return None

    def outstanding(self) -> int:
        return sum(len(q) for q in self.pending.values())


def traffic_packet(src, dst, cls, seq, length, flit_width=64, stamp=0, mark=0) -> Packet:
    """The traffic packet a hardware generator sends (spec: OP_TRAFFIC + traffic_payload)."""
    head = spec.make_head(dst_x=dst[0], dst_y=dst[1], src_x=src[0], src_y=src[1],
                          op=spec.OP_TRAFFIC, mark=mark, len=length - 1, seq=seq, stamp=stamp)
    sb = src[0] | src[1] << 4
    db = dst[0] | dst[1] << 4
    flits = [(spec.KIND_HEAD | (spec.KIND_TAIL if length == 1 else 0), head)]
    for i in range(1, length):
        flits.append((spec.KIND_TAIL if i == length - 1 else spec.KIND_BODY,
                      spec.traffic_payload(sb, db, seq, i, flit_width)))
    return Packet(src=tuple(src), cls=cls, flits=tuple(flits))


# ----------------------------------------------------------------------------------------------
# network interface: AXI4 <-> packets, and the memory system it implements

RESP_OKAY, RESP_DECERR = 0, 3


def _head(src, dst, op, length, axid, size=0, burst=0, axlen=0, resp=0) -> int:
    return spec.make_head(dst_x=dst[0], dst_y=dst[1], src_x=src[0], src_y=src[1], op=op,
                          len=length & 0xFF, axid=axid, size=size, burst=burst, axlen=axlen,
                          resp=resp)


def write_request(src, dst, offset, axid, wdata, wstrb, size, burst=1, data_width=32):
    """Flits of a write-request packet: head, offset, one flit per beat (wdata | wstrb << DW)."""
    n = len(wdata)
    if not 1 <= n <= 256 or len(wstrb) != n:
        raise ValueError(f"wdata must have 1..256 beats and wstrb as many, not {n}, {len(wstrb)}")
    flits = [(spec.KIND_HEAD, _head(src, dst, spec.OP_WR_REQ, n + 1, axid, size, burst, n - 1)),
             (spec.KIND_BODY, offset)]
    for i, (d, s) in enumerate(zip(wdata, wstrb)):
        flits.append((spec.KIND_TAIL if i == n - 1 else spec.KIND_BODY, d | s << data_width))
    return Packet(src=tuple(src), cls=spec.CLASS_REQ, flits=tuple(flits))


def read_request(src, dst, offset, axid, arlen, size, burst=1):
    flits = ((spec.KIND_HEAD, _head(src, dst, spec.OP_RD_REQ, 1, axid, size, burst, arlen)),
             (spec.KIND_TAIL, offset))
    return Packet(src=tuple(src), cls=spec.CLASS_REQ, flits=flits)


def write_response(src, dst, axid, resp):
    return Packet(src=tuple(src), cls=spec.CLASS_RSP,
                  flits=((spec.KIND_HEADTAIL, _head(src, dst, spec.OP_WR_RSP, 0, axid,
                                                    resp=resp)),))


def read_response(src, dst, axid, rdata, rresp, size, burst=1, resp=RESP_OKAY, data_width=32):
    n = len(rdata)
    flits = [(spec.KIND_HEAD, _head(src, dst, spec.OP_RD_RSP, n, axid, size, burst, n - 1,
                                    resp))]
    for i, (d, r) in enumerate(zip(rdata, rresp)):
        flits.append((spec.KIND_TAIL if i == n - 1 else spec.KIND_BODY, d | r << data_width))
    return Packet(src=tuple(src), cls=spec.CLASS_RSP, flits=tuple(flits))


class MemorySystem:
    """What AXI masters see through the network interfaces: one byte-addressed memory per
    region, at the region's offset; DECERR for an unmapped address (refused by the
    initiator) or a region whose node lies outside the ``kx`` x ``ky`` mesh (refused by the
    edge node the packet reaches). A burst must not leave the region of its first byte."""

    def __init__(self, kx: int, ky: int, regions=None):
        spec.check_mesh(kx, ky)
        self.kx, self.ky = kx, ky
        self.regions = tuple(spec.default_address_map(kx, ky) if regions is None else regions)
        self.mem: dict[spec.Region, bytearray] = {}

    def route(self, addr: int, length: int):
        """(region, offset) or None for a DECERR; raises ValueError for a burst that leaves
        its region."""
        hit = spec.decode_address(self.regions, addr)
        if hit is None:
            return None
        region, off = hit
        if off + length > region.size:
            raise ValueError(f"addr {addr:#x} + length {length} leaves region {region}")
        if region.x >= self.kx or region.y >= self.ky:
            return None
        return region, off

    def write(self, addr: int, data: bytes) -> int:
        hit = self.route(addr, len(data))
        if hit is None:
            return RESP_DECERR
        region, off = hit
        mem = self.mem.setdefault(region, bytearray(region.size))
        mem[off:off + len(data)] = data
        return RESP_OKAY

    def read(self, addr: int, length: int) -> tuple[bytes, int]:
        hit = self.route(addr, length)
        if hit is None:
            return bytes(length), RESP_DECERR
        region, off = hit
        mem = self.mem.setdefault(region, bytearray(region.size))
        return bytes(mem[off:off + length]), RESP_OKAY
