"""Golden twin of the NIC: frames, MAC checks and the reliable transport, per spec/nic.py.

Pure Python + numpy. Three layers, each usable alone:

* frame codec: :func:`build_frame` (headers, ICRC, MAC padding, FCS) and :func:`parse_frame`;
* MAC: :func:`mac_tx` (pad + FCS) and :func:`mac_rx_check` (the drop reason or ``None``);
* transport: :class:`Nic` (queue pairs, windows, memory image, counters) and
  :func:`run_pair`, which connects two NICs through :class:`LossyLink` in discrete ticks.

Time model of the transport twin: one tick = one frame slot per direction. In each tick
every NIC first consumes the frames the link delivers, then transmits at most one frame
(priority: responses, then retransmissions, then new requests; queue pairs round robin).
The retransmission timer counts ticks without progress. Frames are timing independent at 0%
loss; under loss the memory images, completions and delivery counters are (see docs/nic.md).
"""

from __future__ import annotations

import zlib
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from spec import nic as S

__all__ = ["crc32", "fcs", "icrc", "ipv4_checksum", "build_frame", "parse_frame", "mac_tx",
           "mac_rx_check", "Nic", "LossyLink", "run_pair", "FrameError"]


class FrameError(ValueError):
    """A frame that is not a well-formed RoCEv2 packet of this NIC's wire format."""


def crc32(data: bytes, crc: int = 0) -> int:
    return zlib.crc32(data, crc) & 0xFFFFFFFF


def fcs(frame: bytes) -> bytes:
    """Ethernet FCS of ``frame`` (everything before the FCS), as transmitted."""
    return crc32(frame).to_bytes(4, "little")


def icrc(packet: bytes) -> bytes:
    """ICRC of an Ethernet frame cut just before its ICRC (no FCS), as transmitted."""
    masked = bytearray(packet[S.ICRC_START:])
    for off in S.ICRC_MASK_OFFSETS:
        masked[off - S.ICRC_START] = 0xFF
    return crc32(b"\xff" * 8 + bytes(masked)).to_bytes(4, "little")


def ipv4_checksum(header: bytes) -> int:
    total = sum(int.from_bytes(header[i:i + 2], "big") for i in range(0, len(header), 2))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return (~total) & 0xFFFF


def _check_range(name: str, value: int, bits: int) -> int:
    if not isinstance(value, (int, np.integer)) or not 0 <= int(value) < (1 << bits):
        raise ValueError(f"{name} must be an int in [0, 2**{bits}), not {value!r}")
    return int(value)


def build_frame(*, opcode: int, src_mac: int, dst_mac: int, src_ip: int, dst_ip: int,
                src_qpn: int, dst_qpn: int, psn: int, ackreq: bool = False,
                reth: tuple[int, int, int] | None = None, aeth: tuple[int, int] | None = None,
                payload: bytes = b"") -> bytes:
    """One complete frame as on the wire stream: headers, payload, ICRC, MAC pad, FCS.

    ``reth`` is (va, rkey, dma_length), ``aeth`` (syndrome, msn); each must be given exactly
    for the opcodes that carry it (spec.nic.OPS_WITH_RETH / OPS_WITH_AETH)."""
    if opcode not in S.OPCODE_NAMES:
        raise ValueError(f"opcode {opcode!r} is not an RC opcode this NIC uses")
    if (reth is not None) != (opcode in S.OPS_WITH_RETH):
        raise ValueError(f"reth must {'' if opcode in S.OPS_WITH_RETH else 'not '}be given for "
                         f"{S.OPCODE_NAMES[opcode]}")
    if (aeth is not None) != (opcode in S.OPS_WITH_AETH):
        raise ValueError(f"aeth must {'' if opcode in S.OPS_WITH_AETH else 'not '}be given for "
                         f"{S.OPCODE_NAMES[opcode]}")
    if len(payload) % 8:
        raise ValueError(f"payload length must be a multiple of 8, not {len(payload)}")
    for name, v, bits in (("src_mac", src_mac, 48), ("dst_mac", dst_mac, 48), ("src_ip", src_ip, 32),
                          ("dst_ip", dst_ip, 32), ("src_qpn", src_qpn, 14),
                          ("dst_qpn", dst_qpn, 24), ("psn", psn, 24)):
        _check_range(name, v, bits)
    ext = b""
    if reth is not None:
        va, rkey, dlen = reth
        ext += (_check_range("reth va", va, 64).to_bytes(8, "big")
                + _check_range("reth rkey", rkey, 32).to_bytes(4, "big")
                + _check_range("reth length", dlen, 32).to_bytes(4, "big"))
    if aeth is not None:
        syn, msn = aeth
        ext += bytes([_check_range("aeth syndrome", syn, 8)]) + _check_range("aeth msn", msn, 24).to_bytes(3, "big")
    bth = (bytes([opcode, 0]) + S.PKEY_DEFAULT.to_bytes(2, "big") + b"\x00"
           + dst_qpn.to_bytes(3, "big") + bytes([0x80 if ackreq else 0]) + psn.to_bytes(3, "big"))
    udp_len = S.UDP_HDR + S.BTH_LEN + len(ext) + len(payload) + S.ICRC_LEN
    udp = ((S.UDP_SPORT_BASE | src_qpn).to_bytes(2, "big") + S.ROCE_UDP_PORT.to_bytes(2, "big")
           + udp_len.to_bytes(2, "big") + b"\x00\x00")
    ip = bytearray(b"\x45\x00" + (S.IPV4_HDR + udp_len).to_bytes(2, "big") + b"\x00\x00"
                   + S.IPV4_FLAGS_DF.to_bytes(2, "big") + bytes([S.IPV4_TTL, S.IP_PROTO_UDP])
                   + b"\x00\x00" + src_ip.to_bytes(4, "big") + dst_ip.to_bytes(4, "big"))
    ip[10:12] = ipv4_checksum(bytes(ip)).to_bytes(2, "big")
    eth = dst_mac.to_bytes(6, "big") + src_mac.to_bytes(6, "big") + S.ETHERTYPE_IPV4.to_bytes(2, "big")
    packet = eth + bytes(ip) + udp + bth + ext + bytes(payload)
    return mac_tx(packet + icrc(packet))


def mac_tx(l2: bytes) -> bytes:
    """MAC transmit: pad to 60 bytes with zeros, append the FCS."""
    if len(l2) < S.ETH_HDR:
        raise ValueError(f"frame must hold at least the {S.ETH_HDR}-byte Ethernet header")
    body = bytes(l2) + b"\x00" * max(0, S.ETH_MIN_FRAME - S.ETH_FCS - len(l2))
    return body + fcs(body)


def mac_rx_check(frame: bytes, my_mac: int, max_frame: int) -> str | None:
    """MAC receive checks in order; returns the counter name of the drop reason, or None."""
    if len(frame) < S.ETH_MIN_FRAME:
        return "rx_runt"
    if len(frame) > max_frame:
        return "rx_oversize"
    if crc32(frame) != 0x2144DF1C:   # CRC-32 residue of a frame followed by its own FCS
        return "rx_fcs_err"
    dst = int.from_bytes(frame[0:6], "big")
    if dst not in (my_mac, S.BROADCAST_MAC):
        return "rx_foreign"
    return None


@dataclass
class Packet:
    """A parsed RoCE packet (FCS already checked and stripped by the MAC)."""
    opcode: int
    src_mac: int
    dst_mac: int
    src_ip: int
    dst_ip: int
    src_qpn: int
    dst_qpn: int
    psn: int
    ackreq: bool
    reth: tuple[int, int, int] | None
    aeth: tuple[int, int] | None
    payload: bytes


def parse_frame(frame: bytes) -> Packet:
    """Parse a frame with its FCS. Raises FrameError naming the first failed check (the
    name of the counter the hardware bumps: rx_not_roce or rx_icrc_err)."""
    body = bytes(frame[:-S.ETH_FCS])
    if len(body) < S.HDR_BASE + S.ICRC_LEN:
        raise FrameError("rx_not_roce")
    ip = body[14:34]
    if (int.from_bytes(body[12:14], "big") != S.ETHERTYPE_IPV4 or ip[0] != 0x45
            or ip[9] != S.IP_PROTO_UDP or int.from_bytes(body[36:38], "big") != S.ROCE_UDP_PORT):
        raise FrameError("rx_not_roce")
    total = int.from_bytes(ip[2:4], "big")
    end = S.ETH_HDR + total                   # RoCE frames are never padded (>= 66 bytes):
    if end != len(body) or total < S.IPV4_HDR + S.UDP_HDR + S.BTH_LEN + S.ICRC_LEN:
        # the IP total length must match the frame exactly
        raise FrameError("rx_not_roce")
    pkt = body[:end]
    if icrc(pkt[:-S.ICRC_LEN]) != pkt[-S.ICRC_LEN:]:
        raise FrameError("rx_icrc_err")
    bth = pkt[42:54]
    opcode = bth[0]
    if opcode not in S.OPCODE_NAMES:
        raise FrameError("rx_not_roce")
    pos = S.HDR_BASE
    reth = aeth = None
    if opcode in S.OPS_WITH_RETH:
        r = pkt[pos:pos + 16]
        reth = (int.from_bytes(r[0:8], "big"), int.from_bytes(r[8:12], "big"),
                int.from_bytes(r[12:16], "big"))
        pos += 16
    if opcode in S.OPS_WITH_AETH:
        a = pkt[pos:pos + 4]
        aeth = (a[0], int.from_bytes(a[1:4], "big"))
        pos += 4
    payload = pkt[pos:-S.ICRC_LEN]
    if len(payload) % 8 or pos > len(pkt) - S.ICRC_LEN:
        raise FrameError("rx_not_roce")
    return Packet(opcode=opcode, dst_mac=int.from_bytes(pkt[0:6], "big"),
                  src_mac=int.from_bytes(pkt[6:12], "big"), src_ip=int.from_bytes(ip[12:16], "big"),
                  dst_ip=int.from_bytes(ip[16:20], "big"),
                  src_qpn=int.from_bytes(pkt[34:36], "big") & 0x3FFF,
                  dst_qpn=int.from_bytes(bth[5:8], "big"), psn=int.from_bytes(bth[9:12], "big"),
                  ackreq=bool(bth[8] & 0x80), reth=reth, aeth=aeth, payload=payload)


def psn_diff(a: int, b: int) -> int:
    """Signed distance a - b in the 24-bit PSN space, in [-2**23, 2**23)."""
    d = (a - b) & S.PSN_MASK
    return d - (1 << S.PSN_BITS) if d >= 1 << (S.PSN_BITS - 1) else d


# --- transport ---------------------------------------------------------------------------------

@dataclass
class _Wqe:
    index: int
    opcode: int
    flags: int
    wr_id: int
    local_addr: int
    remote_addr: int
    length: int
    rkey: int
    first_psn: int = 0
    last_psn: int = 0
    status: int = S.CQ_OK
    read_next: int = 0        # READ: next response PSN expected
    done: bool = False


@dataclass
class _Qp:
    ready: bool = False
    dest_qpn: int = 0
    dest_mac: int = 0
    dest_ip: int = 0
    sq_base: int = 0
    sq_log2: int = 0
    sq_prod: int = 0
    sq_cons: int = 0
    cq_base: int = 0
    cq_log2: int = 0
    cq_prod: int = 0
    rq_base: int = 0
    rq_log2: int = 0
    rq_slot_log2: int = 0
    # requester
    error: bool = False
    psn_next: int = 0
    wqes: deque = field(default_factory=deque)        # fetched, not yet completed
    seg: tuple | None = None                          # (wqe, offset) being segmented
    outstanding: list = field(default_factory=list)   # retransmit buffer: (psn, npsn, frame, wqe)
    resend: int = 0                                   # next outstanding index to (re)send
    read_gap: bool = False                            # went back for a missing READ response
    idle_ticks: int = 0
    retries: int = 0
    # responder
    epsn: int = 0
    msn: int = 0
    nak_sent: bool = False
    in_msg: int | None = None      # None, "write" or "send" opcode family in progress
    wr_va: int = 0
    wr_left: int = 0
    rq_idx: int = 0
    rq_fill: int = 0
    rq_first_psn: int = 0
    responses: deque = field(default_factory=deque)   # frames to send (ACK/NAK/READ resp)


class Nic:
    """Golden NIC: a memory image, CSR-level configuration and the transport state machines.

    ``mem`` is the local memory image (numpy uint8) that the RTL reaches over AXI4."""

    def __init__(self, params: S.NicParams | None = None, *, mac: int, ip: int,
                 mem_size: int = 1 << 16, timeout: int = 64, retry_limit: int = 16):
        self.p = params or S.NicParams()
        self.mac = _check_range("mac", mac, 48)
        self.ip = _check_range("ip", ip, 32)
        if mem_size <= 0 or mem_size % 8:
            raise ValueError(f"mem_size must be a positive multiple of 8, not {mem_size}")
        self.mem = np.zeros(mem_size, dtype=np.uint8)
        self.timeout, self.retry_limit = timeout, retry_limit
        self.qps = [_Qp() for _ in range(self.p.n_qps)]
        self.windows = [(0, 0, 0, 0)] * self.p.n_windows
        self.counters = dict.fromkeys(S.COUNTERS, 0)
        self._rr = 0

    # -- configuration (the CSR writes software would do) --
    def _qp(self, qpn: int) -> _Qp:
        if not isinstance(qpn, int) or not 0 <= qpn < self.p.n_qps:
            raise ValueError(f"qpn must be in [0, {self.p.n_qps}), not {qpn!r}")
        return self.qps[qpn]

    def setup_qp(self, qpn: int, *, dest_qpn: int, dest_mac: int, dest_ip: int, sq_base: int,
                 sq_log2: int, cq_base: int, cq_log2: int, rq_base: int = 0, rq_log2: int = 0,
                 rq_slot_log2: int = 3, sq_psn: int = 0, rq_psn: int = 0) -> None:
        q = self._qp(qpn)
        for name, v in (("sq_base", sq_base), ("cq_base", cq_base), ("rq_base", rq_base)):
            if v % 8 or not 0 <= v < len(self.mem):
                raise ValueError(f"{name} must be 8-byte aligned inside memory, not {v:#x}")
        q.__init__()
        q.ready = True
        q.dest_qpn, q.dest_mac, q.dest_ip = dest_qpn, dest_mac, dest_ip
        q.sq_base, q.sq_log2, q.cq_base, q.cq_log2 = sq_base, sq_log2, cq_base, cq_log2
        q.rq_base, q.rq_log2, q.rq_slot_log2 = rq_base, rq_log2, rq_slot_log2
        q.psn_next = _check_range("sq_psn", sq_psn, 24)
        q.epsn = _check_range("rq_psn", rq_psn, 24)

    def set_window(self, index: int, *, base: int, length: int, key: int, perm: int) -> None:
        if not 0 <= index < self.p.n_windows:
            raise ValueError(f"index must be in [0, {self.p.n_windows}), not {index!r}")
        self.windows[index] = (_check_range("base", base, 64), _check_range("length", length, 32),
                               _check_range("key", key, 32), _check_range("perm", perm, 3))

    def post(self, qpn: int, opcode: int, *, local_addr: int, length: int, remote_addr: int = 0,
             rkey: int = 0, wr_id: int = 0, signaled: bool = True, check: bool = True) -> None:
        """Write a WQE into the send ring and ring the doorbell. With ``check`` (default) bad
        arguments raise ValueError; ``check=False`` posts them to exercise the hardware's
        CQ_BAD_WQE path."""
        q = self._qp(qpn)
        if check:
            if opcode not in S.WR_NAMES:
                raise ValueError(f"opcode must be one of {S.WR_NAMES}, not {opcode!r}")
            if not 8 <= length <= self.p.max_msg or length % 8:
                raise ValueError(f"length must be a multiple of 8 in [8, {self.p.max_msg}], not {length}")
            if local_addr % 8 or local_addr + length > len(self.mem):
                raise ValueError(f"local_addr {local_addr:#x} must be 8-byte aligned and "
                                 f"the buffer inside memory")
            if remote_addr % 8:
                raise ValueError(f"remote_addr must be 8-byte aligned, not {remote_addr:#x}")
        if q.sq_prod - q.sq_cons >= 1 << q.sq_log2:
            raise ValueError(f"send queue of QP {qpn} is full")
        wqe = S.pack_fields(S.WQE_FIELDS, S.WQE_BYTES, dict(
            opcode=opcode, flags=S.WQE_FLAG_SIGNALED if signaled else 0, wr_id=wr_id,
            local_addr=local_addr, remote_addr=remote_addr, length=length, rkey=rkey))
        addr = q.sq_base + (q.sq_prod % (1 << q.sq_log2)) * S.WQE_BYTES
        self.mem[addr:addr + S.WQE_BYTES] = np.frombuffer(wqe, np.uint8)
        q.sq_prod += 1

    # -- helpers --
    def _count(self, name: str, n: int = 1) -> None:
        self.counters[name] = (self.counters[name] + n) & 0xFFFFFFFF

    def _rd(self, addr: int, n: int) -> bytes:
        return self.mem[addr:addr + n].tobytes()

    def _wr(self, addr: int, data: bytes) -> None:
        self.mem[addr:addr + len(data)] = np.frombuffer(data, np.uint8)

    def _frame(self, qpn: int, opcode: int, psn: int, **kw) -> bytes:
        q = self.qps[qpn]
        return build_frame(opcode=opcode, src_mac=self.mac, dst_mac=q.dest_mac, src_ip=self.ip,
                           dst_ip=q.dest_ip, src_qpn=qpn, dst_qpn=q.dest_qpn, psn=psn, **kw)

    def _cqe(self, qpn: int, *, wr_id: int, status: int, opcode: int, byte_len: int, psn: int) -> None:
        q = self.qps[qpn]
        slot = q.cq_prod % (1 << q.cq_log2)
        phase = 1 - ((q.cq_prod >> q.cq_log2) & 1)
        self._wr(q.cq_base + slot * S.CQE_BYTES, S.pack_fields(S.CQE_FIELDS, S.CQE_BYTES, dict(
            wr_id=wr_id, status=status, opcode=opcode, qpn=qpn, valid=phase,
            byte_len=byte_len, psn=psn)))
        q.cq_prod += 1

    def _window_ok(self, rkey: int, va: int, length: int, perm: int) -> bool:
        for base, wlen, key, wperm in self.windows:
            if (wperm & S.PERM_VALID and key == rkey and wperm & perm
                    and va >= base and va + length <= base + wlen):
                return True
        return False

    # -- requester --
    def _complete_done(self, qpn: int) -> None:
        q = self.qps[qpn]
        while q.wqes and q.wqes[0].done:
            w = q.wqes.popleft()
            if w.status != S.CQ_OK or w.flags & S.WQE_FLAG_SIGNALED:
                # a FLUSHED WQE did not execute: byte_len and psn 0 (whether some of its
                # packets had left before the error is timing, not contract)
                self._cqe(qpn, wr_id=w.wr_id, status=w.status, opcode=w.opcode,
                          byte_len=w.length if w.status == S.CQ_OK else 0,
                          psn=0 if w.status == S.CQ_FLUSHED else w.first_psn)
                self._count("wqe_done")

    def _fetch(self, qpn: int) -> _Wqe | None:
        q = self.qps[qpn]
        if q.sq_cons == q.sq_prod:
            return None
        addr = q.sq_base + (q.sq_cons % (1 << q.sq_log2)) * S.WQE_BYTES
        f = S.unpack_fields(S.WQE_FIELDS, self._rd(addr, S.WQE_BYTES))
        w = _Wqe(index=q.sq_cons, opcode=f["opcode"], flags=f["flags"], wr_id=f["wr_id"],
                 local_addr=f["local_addr"], remote_addr=f["remote_addr"], length=f["length"],
                 rkey=f["rkey"])
        q.sq_cons += 1
        return w

    def _wqe_valid(self, w: _Wqe) -> bool:
        return (w.opcode in S.WR_NAMES and 8 <= w.length <= self.p.max_msg and w.length % 8 == 0
                and w.local_addr % 8 == 0 and w.local_addr + w.length <= len(self.mem)
                and w.remote_addr % 8 == 0)

    def _next_request(self, qpn: int) -> bytes | None:
        """Next new request packet of this QP, or None (window full / nothing posted)."""
        q = self.qps[qpn]
        if not q.ready:
            return None
        if q.error:
            while (w := self._fetch(qpn)) is not None:     # flush
                w.status, w.done = S.CQ_FLUSHED, True
                q.wqes.append(w)
            self._complete_done(qpn)
            return None
        if len(q.outstanding) >= self.p.window:
            return None
        while q.seg is None:
            w = self._fetch(qpn)
            if w is None:
                return None
            q.wqes.append(w)
            if not self._wqe_valid(w):
                w.status, w.done = S.CQ_BAD_WQE, True
                self._complete_done(qpn)
                continue
            w.first_psn = q.psn_next
            q.seg = (w, 0)
        w, off = q.seg
        mtu = self.p.mtu
        psn = q.psn_next
        if w.opcode == S.WR_READ:
            npsn = -(-w.length // mtu)
            frame = self._frame(qpn, S.OP_READ_REQUEST, psn, ackreq=True,
                                reth=(w.remote_addr, w.rkey, w.length))
            w.read_next = psn
            w.last_psn = (psn + npsn - 1) & S.PSN_MASK
            q.seg = None
        else:
            npsn = 1
            n = min(mtu, w.length - off)
            first, last = off == 0, off + n == w.length
            if w.opcode == S.WR_WRITE:
                op = ((S.OP_WRITE_ONLY if last else S.OP_WRITE_FIRST) if first
                      else (S.OP_WRITE_LAST if last else S.OP_WRITE_MIDDLE))
            else:
                op = ((S.OP_SEND_ONLY if last else S.OP_SEND_FIRST) if first
                      else (S.OP_SEND_LAST if last else S.OP_SEND_MIDDLE))
            reth = (w.remote_addr, w.rkey, w.length) if op in S.OPS_WITH_RETH else None
            frame = self._frame(qpn, op, psn, ackreq=True, reth=reth,
                                payload=self._rd(w.local_addr + off, n))
            if last:
                w.last_psn = psn
                q.seg = None
            else:
                q.seg = (w, off + n)
        q.psn_next = (psn + npsn) & S.PSN_MASK
        q.outstanding.append((psn, npsn, frame, w))
        q.resend = len(q.outstanding)
        return frame

    def _ack_through(self, qpn: int, psn: int) -> bool:
        """Retire outstanding packets whose PSNs are all <= psn. Returns progress."""
        q = self.qps[qpn]
        progress = False
        while q.outstanding:
            p0, n, _, w = q.outstanding[0]
            last = (p0 + n - 1) & S.PSN_MASK
            if psn_diff(psn, last) < 0:
                break
            if w.opcode == S.WR_READ and not w.done:
                # the responder moved past a READ whose data we did not get: go back to it
                break
            q.outstanding.pop(0)
            q.resend = max(0, q.resend - 1)
            if w.opcode != S.WR_READ and last == w.last_psn:
                w.done = True
            progress = True
        if progress:
            q.idle_ticks, q.retries = 0, 0
        self._complete_done(qpn)
        return progress

    def _go_back(self, qpn: int, psn: int | None = None) -> None:
        q = self.qps[qpn]
        q.resend = 0
        if psn is not None:
            for i, (p0, n, _, _) in enumerate(q.outstanding):
                if 0 <= psn_diff(psn, p0) < n:
                    q.resend = i
                    break

    def _fatal(self, qpn: int, status: int) -> None:
        q = self.qps[qpn]
        if q.outstanding:
            q.outstanding[0][3].status = status
        q.error = True
        for _, _, _, w in q.outstanding:
            if w.status == S.CQ_OK:
                w.status = S.CQ_FLUSHED
        for w in q.wqes:
            if w.status == S.CQ_OK:
                w.status = S.CQ_FLUSHED
            w.done = True
        q.outstanding.clear()
        q.resend = 0
        q.seg = None
        self._complete_done(qpn)

    def _on_response(self, qpn: int, pkt: Packet) -> None:
        q = self.qps[qpn]
        if q.error or not q.outstanding:
            return
        if pkt.opcode == S.OP_ACK:
            syn = pkt.aeth[0]
            if syn >> 5 == 0:
                self._ack_through(qpn, pkt.psn)
            elif syn == S.AETH_NAK_PSN_SEQ:
                self._count("rx_nak")
                self._ack_through(qpn, (pkt.psn - 1) & S.PSN_MASK)
                self._go_back(qpn, pkt.psn)
            else:
                self._count("rx_nak")
                self._ack_through(qpn, (pkt.psn - 1) & S.PSN_MASK)
                if q.outstanding and q.outstanding[0][0] == pkt.psn:
                    self._fatal(qpn, S.CQ_REMOTE_ACCESS_ERR if syn == S.AETH_NAK_REMOTE_ACCESS
                                else S.CQ_REMOTE_INVALID_REQ)
            return
        # READ response: must be the next expected PSN of the oldest outstanding READ
        p0, n, _, w = q.outstanding[0]
        if w.opcode != S.WR_READ:
            self._ack_through(qpn, (pkt.psn - 1) & S.PSN_MASK)   # implicit ACK of earlier requests
            if not q.outstanding:
                return
            p0, n, _, w = q.outstanding[0]
            if w.opcode != S.WR_READ:
                return
        if pkt.psn != w.read_next:
            # out of order / duplicate: ignored. A response beyond the next expected one of
            # this READ means one was lost: go back to the READ at once (once, until a
            # response is accepted) instead of waiting for the timer.
            if (0 < psn_diff(pkt.psn, w.read_next) and psn_diff(pkt.psn, p0) < n
                    and not q.read_gap):
                q.read_gap = True
                self._go_back(qpn, p0)
            return
        i = psn_diff(pkt.psn, p0)
        off = i * self.p.mtu
        exp = min(self.p.mtu, w.length - off)
        if len(pkt.payload) != exp:
            return
        self._wr(w.local_addr + off, pkt.payload)
        q.read_gap = False
        w.read_next = (pkt.psn + 1) & S.PSN_MASK
        q.idle_ticks, q.retries = 0, 0
        if i == n - 1:
            w.done = True
            self._ack_through(qpn, pkt.psn)

    # -- responder --
    def _respond(self, qpn: int, syndrome: int, psn: int) -> None:
        q = self.qps[qpn]
        q.responses.append(self._frame(qpn, S.OP_ACK, psn, aeth=(syndrome, q.msn)))
        self._count({S.AETH_ACK: "tx_ack", S.AETH_NAK_PSN_SEQ: "tx_nak_seq",
                     S.AETH_NAK_REMOTE_ACCESS: "tx_nak_access"}.get(syndrome, "tx_nak_inv"))

    def _read_responses(self, qpn: int, pkt: Packet) -> None:
        q = self.qps[qpn]
        va, _, length = pkt.reth
        n = -(-length // self.p.mtu)
        for i in range(n):
            off = i * self.p.mtu
            data = self._rd(va + off, min(self.p.mtu, length - off))
            if n == 1:
                op = S.OP_READ_RESP_ONLY
            else:
                op = (S.OP_READ_RESP_FIRST if i == 0 else
                      S.OP_READ_RESP_LAST if i == n - 1 else S.OP_READ_RESP_MIDDLE)
            aeth = (S.AETH_ACK, q.msn) if op in S.OPS_WITH_AETH else None
            q.responses.append(self._frame(qpn, op, (pkt.psn + i) & S.PSN_MASK, aeth=aeth,
                                           payload=data))

    def _on_request(self, qpn: int, pkt: Packet) -> None:
        q = self.qps[qpn]
        d = psn_diff(pkt.psn, q.epsn)
        if d < 0:                                          # duplicate
            self._count("rx_dup")
            if pkt.opcode == S.OP_READ_REQUEST:
                if self._window_ok(pkt.reth[1], pkt.reth[0], pkt.reth[2], S.PERM_REMOTE_READ):
                    self._read_responses(qpn, pkt)
            elif pkt.ackreq:
                self._respond(qpn, S.AETH_ACK, (q.epsn - 1) & S.PSN_MASK)
            return
        if d > 0:                                          # a packet was lost
            self._count("rx_seq_err")
            if not q.nak_sent:
                q.nak_sent = True
                self._respond(qpn, S.AETH_NAK_PSN_SEQ, q.epsn)
            return
        op = pkt.opcode
        nak = None
        is_write = op in (S.OP_WRITE_FIRST, S.OP_WRITE_MIDDLE, S.OP_WRITE_LAST, S.OP_WRITE_ONLY)
        is_send = op in (S.OP_SEND_FIRST, S.OP_SEND_MIDDLE, S.OP_SEND_LAST, S.OP_SEND_ONLY)
        starts = op in (S.OP_WRITE_FIRST, S.OP_WRITE_ONLY, S.OP_SEND_FIRST, S.OP_SEND_ONLY,
                        S.OP_READ_REQUEST)
        ends = op in (S.OP_WRITE_LAST, S.OP_WRITE_ONLY, S.OP_SEND_LAST, S.OP_SEND_ONLY,
                      S.OP_READ_REQUEST)
        family = "write" if is_write else "send" if is_send else "read"
        n = len(pkt.payload)
        if starts != (q.in_msg is None) or (not starts and q.in_msg != family):
            nak = S.AETH_NAK_INVALID_REQ                   # opcode sequence error
        elif op == S.OP_READ_REQUEST:
            va, rkey, length = pkt.reth
            if length % 8 or not 8 <= length <= self.p.max_msg or va % 8:
                nak = S.AETH_NAK_INVALID_REQ
            elif not self._window_ok(rkey, va, length, S.PERM_REMOTE_READ):
                nak = S.AETH_NAK_REMOTE_ACCESS
        elif is_write:
            if starts:
                va, rkey, length = pkt.reth
                if not self._window_ok(rkey, va, length, S.PERM_REMOTE_WRITE):
                    nak = S.AETH_NAK_REMOTE_ACCESS
                else:
                    q.wr_va, q.wr_left = va, length
            if nak is None and (n > q.wr_left or (ends and n != q.wr_left)
                                or (not ends and n != self.p.mtu)):
                nak = S.AETH_NAK_INVALID_REQ
        else:  # send
            if starts:
                q.rq_fill, q.rq_first_psn = 0, pkt.psn
            if q.rq_fill + n > 1 << q.rq_slot_log2 or (not ends and n != self.p.mtu):
                nak = S.AETH_NAK_INVALID_REQ
        if nak is not None:
            q.in_msg = None
            self._respond(qpn, nak, pkt.psn)               # epsn stays: the QP pair must be reset
            q.nak_sent = True
            return
        q.nak_sent = False
        if op == S.OP_READ_REQUEST:
            self._read_responses(qpn, pkt)
            q.epsn = (q.epsn + -(-pkt.reth[2] // self.p.mtu)) & S.PSN_MASK
            q.msn = (q.msn + 1) & 0xFFFFFF
            return
        if is_write:
            self._wr(q.wr_va, pkt.payload)
            q.wr_va += n
            q.wr_left -= n
        else:
            slot = q.rq_base + (q.rq_idx % (1 << q.rq_log2)) * (1 << q.rq_slot_log2)
            self._wr(slot + q.rq_fill, pkt.payload)
            q.rq_fill += n
        q.in_msg = None if ends else family
        q.epsn = (q.epsn + 1) & S.PSN_MASK
        if ends:
            q.msn = (q.msn + 1) & 0xFFFFFF
            if is_send:
                self._cqe(qpn, wr_id=q.rq_idx % (1 << q.rq_log2), status=S.CQ_OK,
                          opcode=S.CQE_RECV, byte_len=q.rq_fill, psn=q.rq_first_psn)
                self._count("recv_done")
                q.rq_idx += 1
        if pkt.ackreq:
            self._respond(qpn, S.AETH_ACK, pkt.psn)

    # -- ports --
    def receive(self, frame: bytes) -> None:
        """One frame from the wire (with FCS)."""
        why = mac_rx_check(frame, self.mac, self.p.max_frame)
        if why:
            self._count(why)
            return
        self._count("rx_frames")
        self._count("rx_bytes", len(frame))
        try:
            pkt = parse_frame(frame)
        except FrameError as e:
            self._count(str(e))
            return
        qpn = pkt.dst_qpn - S.QPN_BASE
        if not 0 <= qpn < self.p.n_qps or not self.qps[qpn].ready:
            self._count("rx_bad_qp")
            return
        if pkt.opcode in S.OPS_REQUEST:
            self._on_request(qpn, pkt)
        else:
            self._on_response(qpn, pkt)

    def transmit(self) -> bytes | None:
        """The next frame this NIC sends, or None."""
        frame = None
        n = self.p.n_qps
        for k in range(n):                       # responses first
            q = self.qps[(self._rr + k) % n]
            if q.responses:
                frame = q.responses.popleft()
                break
        if frame is None:
            for k in range(n):                   # then retransmissions
                q = self.qps[(self._rr + k) % n]
                if q.resend < len(q.outstanding):
                    frame = q.outstanding[q.resend][2]
                    q.resend += 1
                    self._count("retransmits")
                    break
        if frame is None:
            for k in range(n):                   # then new requests
                frame = self._next_request((self._rr + k) % n)
                if frame is not None:
                    break
        self._rr = (self._rr + 1) % n
        if frame is not None:
            self._count("tx_frames")
            self._count("tx_bytes", len(frame))
        return frame

    def tick(self) -> None:
        """One tick of the retransmission timers."""
        for qpn, q in enumerate(self.qps):
            if not q.outstanding or q.error:
                q.idle_ticks = 0
                continue
            q.idle_ticks += 1
            if q.idle_ticks >= self.timeout:
                q.idle_ticks = 0
                q.retries += 1
                self._count("timeouts")
                if q.retries > self.retry_limit:
                    self._fatal(qpn, S.CQ_RETRY_EXCEEDED)
                else:
                    self._go_back(qpn)

    def busy(self) -> bool:
        return any(q.outstanding or q.responses or q.seg is not None or q.sq_cons != q.sq_prod
                   for q in self.qps if q.ready)

    def cqes(self, qpn: int) -> list[dict]:
        """Completion entries written so far on this QP's ring, in order."""
        q = self._qp(qpn)
        out = []
        for i in range(max(0, q.cq_prod - (1 << q.cq_log2)), q.cq_prod):
            a = q.cq_base + (i % (1 << q.cq_log2)) * S.CQE_BYTES
            out.append(S.unpack_fields(S.CQE_FIELDS, self._rd(a, S.CQE_BYTES)))
        return out


class LossyLink:
    """One direction of a link that drops, duplicates, reorders and corrupts frames with a
    seeded pattern. Each frame draws one uniform number r from numpy's PCG64(seed):
    r < drop: lost; next ``dup``: delivered twice; next ``reorder``: held back and delivered
    after the following frame; next ``corrupt``: one byte (chosen by a second draw) flipped.
    Frames are delivered ``delay`` ticks after they are sent."""

    def __init__(self, seed: int = 0, *, drop: float = 0.0, dup: float = 0.0,
                 reorder: float = 0.0, corrupt: float = 0.0, delay: int = 1):
        for name, v in (("drop", drop), ("dup", dup), ("reorder", reorder), ("corrupt", corrupt)):
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"{name} must be a probability in [0, 1], not {v!r}")
        if drop + dup + reorder + corrupt > 1.0:
            raise ValueError("drop + dup + reorder + corrupt must not exceed 1")
        if delay < 1:
            raise ValueError(f"delay must be >= 1 tick, not {delay}")
        self.seed = seed
        self.rng = np.random.Generator(np.random.PCG64(seed))
        self.drop, self.dup, self.reorder, self.corrupt, self.delay = drop, dup, reorder, corrupt, delay
        self.held: bytes | None = None
        self.log: list[tuple[str, bytes]] = []   # (fate, frame) in send order

    def fate(self, frame: bytes) -> list[bytes]:
        """Frames (0, 1 or 2) that come out for one frame sent."""
        r = float(self.rng.random())
        out: list[bytes] = []
        if r < self.drop:
            kind = "drop"
        elif r < self.drop + self.dup:
            kind, out = "dup", [frame, frame]
        elif r < self.drop + self.dup + self.reorder and self.held is None:
            kind, self.held = "reorder", frame
            self.log.append((kind, frame))
            return []
        elif r < self.drop + self.dup + self.reorder + self.corrupt:
            kind = "corrupt"
            b = bytearray(frame)
            pos = int(self.rng.integers(0, len(b)))
            b[pos] ^= 0x5A
            out = [bytes(b)]
        else:
            kind, out = "ok", [frame]
        self.log.append((kind, frame))
        if self.held is not None:
            out.append(self.held)
            self.held = None
        return out

    def flush(self) -> list[bytes]:
        held, self.held = self.held, None
        return [held] if held is not None else []


def run_pair(a: Nic, b: Nic, ab: LossyLink | None = None, ba: LossyLink | None = None,
             max_ticks: int = 200_000) -> tuple[list[bytes], list[bytes], int]:
    """Run two NICs back to back until both are idle. Returns (frames sent by a, frames
    sent by b, ticks); raises RuntimeError if they are still busy after ``max_ticks``."""
    ab, ba = ab or LossyLink(), ba or LossyLink()
    sent_a: list[bytes] = []
    sent_b: list[bytes] = []
    wire_ab: deque = deque()
    wire_ba: deque = deque()
    for t in range(max_ticks):
        while wire_ab and wire_ab[0][0] <= t:
            b.receive(wire_ab.popleft()[1])
        while wire_ba and wire_ba[0][0] <= t:
            a.receive(wire_ba.popleft()[1])
        for nic, link, wire, sent in ((a, ab, wire_ab, sent_a), (b, ba, wire_ba, sent_b)):
            f = nic.transmit()
            if f is not None:
                sent.append(f)
                for g in link.fate(f):
                    wire.append((t + link.delay, g))
            elif not nic.busy():
                for g in link.flush():
                    wire.append((t + link.delay, g))
            nic.tick()
        if not (a.busy() or b.busy() or wire_ab or wire_ba or ab.held or ba.held):
            return sent_a, sent_b, t + 1
    raise RuntimeError(f"NICs still busy after {max_ticks} ticks")
