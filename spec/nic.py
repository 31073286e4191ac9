"""NIC contract: wire formats, queue entry layouts, CSR map, counters and NAK codes.

The single definition used by ``rtl/nic``, ``golden/nic.py``, ``cosim/nic`` and
``docs/nic.md``. Pure Python (no Amaranth, no numpy).

Wire format (RoCEv2, every multi-byte field big-endian on the wire)::

    Ethernet II  14 B   dst MAC, src MAC, EtherType 0x0800
    IPv4         20 B   0x45, DSCP/ECN 0, total length, id 0, flags DF, TTL 64, proto 17,
                        header checksum, src IP, dst IP
    UDP           8 B   src port 0xC000 | src QPN, dst port 4791, length, checksum 0
    BTH          12 B   opcode, SE=0 M=0 padcount=0 tver=0, P_Key 0xFFFF, 0, dest QPN,
                        A bit, PSN
    RETH         16 B   (WRITE first/only, READ request) VA 64, R_Key 32, DMA length 32
    AETH          4 B   (ACK, READ response first/last/only) syndrome 8, MSN 24
    payload      8k B   0 .. MTU bytes, always a multiple of 8 (so padcount is 0)
    ICRC          4 B   CRC-32 over the masked pseudo-header (see below), little-endian
    FCS           4 B   CRC-32 over the whole frame, little-endian

ICRC (InfiniBand annex A17): CRC-32 (the Ethernet polynomial, reflected, init and final
XOR 0xFFFFFFFF) over 8 bytes of 0xFF, then the IPv4 header with TOS, TTL and header checksum
replaced by all ones, the UDP header with its checksum replaced by all ones, the BTH with
byte 4 (FECN, BECN, reserved) replaced by 0xFF, then the rest of the packet up to the ICRC.
"""

from __future__ import annotations

from dataclasses import dataclass

# --- Ethernet -------------------------------------------------------------------------------
ETH_HDR = 14
ETH_FCS = 4
ETH_MIN_FRAME = 64            # bytes including FCS; shorter frames are padded (TX) / runts (RX)
ETH_PREAMBLE_SFD = 8
ETH_IFG = 12
ETH_OVERHEAD_WIRE = ETH_PREAMBLE_SFD + ETH_IFG   # bytes per frame not seen on the stream
ETHERTYPE_IPV4 = 0x0800
BROADCAST_MAC = 0xFFFF_FFFF_FFFF
# The MAC's stream side inserts this many idle beats after every frame (64-bit datapath):
# 20 bytes of preamble + SFD + minimum inter-frame gap rounded up to whole 8-byte beats.
MAC_IFG_BEATS = 3

# --- IPv4 / UDP -----------------------------------------------------------------------------
IPV4_HDR = 20
IPV4_TTL = 64
IPV4_FLAGS_DF = 0x4000
IP_PROTO_UDP = 17
UDP_HDR = 8
ROCE_UDP_PORT = 4791
UDP_SPORT_BASE = 0xC000       # source port = UDP_SPORT_BASE | source QPN

# --- InfiniBand transport headers -----------------------------------------------------------
BTH_LEN = 12
RETH_LEN = 16
AETH_LEN = 4
ICRC_LEN = 4
PKEY_DEFAULT = 0xFFFF
PSN_BITS = 24
PSN_MASK = (1 << PSN_BITS) - 1
QPN_BITS = 24
# Wire QPN of local queue pair q is QPN_BASE + q: QPs 0 and 1 are InfiniBand's management QPs
# (SMI/GSI), whose SENDs dissectors decode as MADs, so this NIC never uses them.
QPN_BASE = 0x100
HDR_BASE = ETH_HDR + IPV4_HDR + UDP_HDR + BTH_LEN   # 54: offset of the first byte after BTH
ICRC_START = ETH_HDR                                  # ICRC covers the frame from the IP header
ICRC_MASK_OFFSETS = (15, 22, 24, 25, 40, 41, 46)      # frame offsets forced to 0xFF for the ICRC

# RC opcodes (BTH.opcode, transport bits 0b000)
OP_SEND_FIRST = 0x00
OP_SEND_MIDDLE = 0x01
OP_SEND_LAST = 0x02
OP_SEND_ONLY = 0x04
OP_WRITE_FIRST = 0x06
OP_WRITE_MIDDLE = 0x07
OP_WRITE_LAST = 0x08
OP_WRITE_ONLY = 0x0A
OP_READ_REQUEST = 0x0C
OP_READ_RESP_FIRST = 0x0D
OP_READ_RESP_MIDDLE = 0x0E
OP_READ_RESP_LAST = 0x0F
OP_READ_RESP_ONLY = 0x10
OP_ACK = 0x11

OPCODE_NAMES = {
    OP_SEND_FIRST: "SEND_FIRST", OP_SEND_MIDDLE: "SEND_MIDDLE", OP_SEND_LAST: "SEND_LAST",
    OP_SEND_ONLY: "SEND_ONLY", OP_WRITE_FIRST: "RDMA_WRITE_FIRST",
    OP_WRITE_MIDDLE: "RDMA_WRITE_MIDDLE", OP_WRITE_LAST: "RDMA_WRITE_LAST",
    OP_WRITE_ONLY: "RDMA_WRITE_ONLY", OP_READ_REQUEST: "RDMA_READ_REQUEST",
    OP_READ_RESP_FIRST: "RDMA_READ_RESPONSE_FIRST", OP_READ_RESP_MIDDLE: "RDMA_READ_RESPONSE_MIDDLE",
    OP_READ_RESP_LAST: "RDMA_READ_RESPONSE_LAST", OP_READ_RESP_ONLY: "RDMA_READ_RESPONSE_ONLY",
    OP_ACK: "ACKNOWLEDGE",
}
OPS_WITH_RETH = frozenset({OP_WRITE_FIRST, OP_WRITE_ONLY, OP_READ_REQUEST})
OPS_WITH_AETH = frozenset({OP_ACK, OP_READ_RESP_FIRST, OP_READ_RESP_LAST, OP_READ_RESP_ONLY})
OPS_REQUEST = frozenset({OP_SEND_FIRST, OP_SEND_MIDDLE, OP_SEND_LAST, OP_SEND_ONLY,
                         OP_WRITE_FIRST, OP_WRITE_MIDDLE, OP_WRITE_LAST, OP_WRITE_ONLY,
                         OP_READ_REQUEST})
OPS_RESPONSE = frozenset({OP_READ_RESP_FIRST, OP_READ_RESP_MIDDLE, OP_READ_RESP_LAST,
                          OP_READ_RESP_ONLY, OP_ACK})

# AETH syndromes (IBA 9.7.5.1): ACK with "no credit information", NAK codes
AETH_ACK = 0x1F
AETH_NAK_PSN_SEQ = 0x60
AETH_NAK_INVALID_REQ = 0x61
AETH_NAK_REMOTE_ACCESS = 0x62
AETH_NAK_REMOTE_OP = 0x63
NAK_NAMES = {AETH_NAK_PSN_SEQ: "PSN sequence error", AETH_NAK_INVALID_REQ: "invalid request",
             AETH_NAK_REMOTE_ACCESS: "remote access error",
             AETH_NAK_REMOTE_OP: "remote operational error"}


def header_len(opcode: int) -> int:
    """Bytes from the start of the frame to the first payload byte."""
    n = HDR_BASE
    if opcode in OPS_WITH_RETH:
        n += RETH_LEN
    if opcode in OPS_WITH_AETH:
        n += AETH_LEN
    return n


def frame_len(opcode: int, payload: int) -> int:
    """Frame bytes on the stream (headers + payload + ICRC + FCS), before MAC padding."""
    return max(header_len(opcode) + payload + ICRC_LEN + ETH_FCS, ETH_MIN_FRAME)


# --- Work and completion queues in host memory ----------------------------------------------
# Layouts are (field, byte offset, width in bytes), little-endian in memory.
WQE_BYTES = 32
WQE_FIELDS = (
    ("opcode", 0, 1),       # WR_WRITE, WR_SEND, WR_READ
    ("flags", 1, 1),        # bit 0: signaled (write a CQE); errors always write a CQE
    ("wr_id", 4, 4),        # returned in the CQE
    ("local_addr", 8, 8),   # source (WRITE/SEND) or destination (READ) in local memory
    ("remote_addr", 16, 8),  # VA in the peer's registered window (WRITE/READ)
    ("length", 24, 4),      # bytes, multiple of 8, 8 .. MAX_MSG
    ("rkey", 28, 4),        # peer window key (WRITE/READ)
)
WR_WRITE, WR_SEND, WR_READ = 0, 1, 2
WR_NAMES = {WR_WRITE: "WRITE", WR_SEND: "SEND", WR_READ: "READ"}
WQE_FLAG_SIGNALED = 0x01

CQE_BYTES = 16
CQE_FIELDS = (
    ("wr_id", 0, 4),        # from the WQE (receive completions: the receive slot index)
    ("status", 4, 1),       # CQ_* below
    ("opcode", 5, 1),       # WR_* for send-queue completions, CQE_RECV for receives
    ("qpn", 6, 1),          # local queue pair
    ("valid", 7, 1),        # phase bit: 1 on the first pass over the ring, 0 on the next...
    ("byte_len", 8, 4),     # bytes transferred
    ("psn", 12, 4),         # first PSN of the message (diagnostics)
)
CQE_RECV = 0x80
CQ_OK = 0
CQ_REMOTE_ACCESS_ERR = 1    # the peer answered NAK remote access error
CQ_BAD_WQE = 2              # bad WQE: opcode, length (0, not a multiple of 8, > max_msg),
                            # unaligned or out-of-range address; nothing is sent
CQ_REMOTE_INVALID_REQ = 3   # the peer answered NAK invalid request (e.g. SEND too large)
CQ_RETRY_EXCEEDED = 4       # retry limit reached without progress
CQ_FLUSHED = 5              # the queue pair is in the error state; the WQE was not executed
CQ_NAMES = {CQ_OK: "OK", CQ_REMOTE_ACCESS_ERR: "REMOTE_ACCESS_ERR", CQ_BAD_WQE: "BAD_WQE",
            CQ_REMOTE_INVALID_REQ: "REMOTE_INVALID_REQ", CQ_RETRY_EXCEEDED: "RETRY_EXCEEDED",
            CQ_FLUSHED: "FLUSHED"}


def pack_fields(fields, size: int, values: dict) -> bytes:
    """Pack ``values`` (name -> int) into ``size`` little-endian bytes per ``fields``."""
    known = {f[0] for f in fields}
    for k in values:
        if k not in known:
            raise ValueError(f"values: unknown field {k!r}; fields are {sorted(known)}")
    out = bytearray(size)
    for name, off, width in fields:
        v = int(values.get(name, 0))
        if not 0 <= v < (1 << (8 * width)):
            raise ValueError(f"{name}={v:#x} does not fit in {width} bytes")
        out[off:off + width] = v.to_bytes(width, "little")
    return bytes(out)


def unpack_fields(fields, data: bytes) -> dict:
    return {name: int.from_bytes(data[off:off + width], "little") for name, off, width in fields}


# --- Memory protection windows ----------------------------------------------------------------
PERM_REMOTE_WRITE = 0x1     # RDMA WRITE may write into the window
PERM_REMOTE_READ = 0x2
PERM_VALID = 0x4

# --- CSR map (AXI4-Lite, 32-bit registers, byte addresses) ------------------------------------
CSR_ID = 0x000              # RO  'NIC1'
CSR_ID_VALUE = 0x4E494331
CSR_CTRL = 0x004            # bit 0: enable transmit/receive
CSR_MAC_LO = 0x008          # local MAC address bits 31:0
CSR_MAC_HI = 0x00C          # local MAC address bits 47:32
CSR_IP = 0x010              # local IPv4 address
CSR_RETX_TIMEOUT = 0x014    # retransmission timer, cycles without progress
CSR_RETRY_LIMIT = 0x018     # timeouts without progress before CQ_RETRY_EXCEEDED
CSR_COUNTER_BASE = 0x100    # RO counters, 32-bit wrapping, one per COUNTERS entry
CSR_QP_BASE = 0x400
CSR_QP_STRIDE = 0x80
QP_REGS = {                 # offset inside a queue pair's block
    "ctrl": 0x00,           # bit 0: ready to send/receive
    "dest_qpn": 0x04,       # the peer's wire QPN (its QPN_BASE + index)
    "dest_mac_lo": 0x08, "dest_mac_hi": 0x0C,
    "dest_ip": 0x10,
    "sq_base_lo": 0x14, "sq_base_hi": 0x18, "sq_log2": 0x1C,
    "sq_prod": 0x20,        # doorbell: producer index (free-running, mod 2**32)
    "sq_cons": 0x24,        # RO: WQEs fetched
    "cq_base_lo": 0x28, "cq_base_hi": 0x2C, "cq_log2": 0x30,
    "cq_prod": 0x34,        # RO: CQEs written
    "sq_psn": 0x38,         # initial send PSN (written before ctrl.ready)
    "rq_psn": 0x3C,         # initial expected receive PSN
    "rq_base_lo": 0x40, "rq_base_hi": 0x44,
    "rq_log2": 0x48,        # receive ring: 2**rq_log2 slots of 2**rq_slot_log2 bytes
    "rq_slot_log2": 0x4C,
}
CSR_WIN_BASE = 0x800
CSR_WIN_STRIDE = 0x20
WIN_REGS = {"base_lo": 0x00, "base_hi": 0x04, "length": 0x08, "key": 0x0C, "perm": 0x10}


def qp_reg(qpn: int, name: str) -> int:
    return CSR_QP_BASE + qpn * CSR_QP_STRIDE + QP_REGS[name]


def win_reg(index: int, name: str) -> int:
    return CSR_WIN_BASE + index * CSR_WIN_STRIDE + WIN_REGS[name]


# --- Counters (CSR_COUNTER_BASE + 4 * index) ---------------------------------------------------
COUNTERS = (
    "tx_frames",            # frames handed to the wire
    "tx_bytes",             # their bytes including FCS (not preamble/IFG)
    "rx_frames",            # frames accepted by the MAC
    "rx_bytes",
    "rx_fcs_err",           # dropped: bad FCS
    "rx_runt",              # dropped: shorter than 64 bytes
    "rx_oversize",          # dropped: longer than the maximum frame
    "rx_foreign",           # dropped: destination MAC neither ours nor broadcast
    "rx_overflow",          # dropped: receive buffer full
    "rx_not_roce",          # dropped: not IPv4/UDP/4791, or malformed headers
    "rx_icrc_err",          # dropped: bad ICRC
    "rx_bad_qp",            # dropped: destination QP not ready / out of range
    "rx_dup",               # duplicate requests (dropped and re-acknowledged)
    "rx_seq_err",           # requests with a PSN beyond the expected one
    "tx_ack",
    "tx_nak_seq",
    "tx_nak_access",
    "tx_nak_inv",
    "rx_nak",
    "retransmits",          # request packets sent again
    "timeouts",             # retransmission timer expiries
    "wqe_done",             # send-queue completions written (ok or error)
    "recv_done",            # receive completions written
)
COUNTER_INDEX = {name: i for i, name in enumerate(COUNTERS)}


@dataclass(frozen=True)
class NicParams:
    """Build-time parameters shared by the RTL and the golden model."""
    n_qps: int = 4
    n_windows: int = 4
    mtu: int = 256            # payload bytes per packet (power of two, 64 .. 4096)
    window: int = 8           # outstanding request packets per queue pair (power of two)
    max_msg: int = 1 << 16    # largest message in bytes

    def __post_init__(self):
        for name, lo, hi in (("n_qps", 1, 256), ("n_windows", 1, 64), ("mtu", 64, 4096),
                             ("window", 1, 256), ("max_msg", 8, 1 << 31)):
            v = getattr(self, name)
            if not isinstance(v, int) or not lo <= v <= hi:
                raise ValueError(f"{name} must be an int in [{lo}, {hi}], not {v!r}")
        for name in ("mtu", "window"):
            v = getattr(self, name)
            if v & (v - 1):
                raise ValueError(f"{name} must be a power of two, not {v}")
        if self.max_msg % 8:
            raise ValueError(f"max_msg must be a multiple of 8, not {self.max_msg}")

    @property
    def max_frame(self) -> int:
        """Largest frame the MAC accepts (bytes incl. FCS): biggest RoCE packet."""
        return HDR_BASE + RETH_LEN + self.mtu + ICRC_LEN + ETH_FCS


def read_goodput_limit(payload: int, mtu: int) -> float:
    """Best possible goodput of the READ responses of one RDMA READ of ``payload`` bytes as a
    fraction of the raw link rate (response first/last/only carry an AETH, middle none)."""
    if payload <= 0 or payload % 8:
        raise ValueError(f"payload must be a positive multiple of 8, not {payload}")
    n = -(-payload // mtu)
    wire = 0
    for i in range(n):
        size = min(mtu, payload - i * mtu)
        op = OP_READ_RESP_ONLY if n == 1 else (
            OP_READ_RESP_FIRST if i == 0 else OP_READ_RESP_LAST if i == n - 1 else OP_READ_RESP_MIDDLE)
        wire += frame_len(op, size) + ETH_OVERHEAD_WIRE
    return payload / wire


def goodput_limit(payload: int, mtu: int) -> float:
    """Best possible goodput of one RDMA WRITE of ``payload`` bytes as a fraction of the raw
    link rate: payload over payload + every header, ICRC, FCS, preamble and inter-frame gap."""
    if payload <= 0 or payload % 8:
        raise ValueError(f"payload must be a positive multiple of 8, not {payload}")
    wire = 0
    left, first = payload, True
    while left > 0:
        n = min(left, mtu)
        op = (OP_WRITE_ONLY if n == left else OP_WRITE_FIRST) if first else (
            OP_WRITE_LAST if n == left else OP_WRITE_MIDDLE)
        wire += frame_len(op, n) + ETH_OVERHEAD_WIRE
        left -= n
        first = False
    return payload / wire
