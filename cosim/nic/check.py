"""Independent frame checks with scapy (scapy.contrib.roce): every frame must parse as
Ether/IP/UDP/BTH with a correct IPv4 checksum, ICRC and FCS."""

from __future__ import annotations

from scapy.contrib.roce import BTH
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether

from spec import nic as S


def _crc32_bitwise(data: bytes) -> int:
    """Bit-serial reflected CRC-32 (independent of zlib) for the FCS check."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0xEDB88320 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def frame_problems(frame: bytes) -> list[str]:
    """What is wrong with ``frame`` (bytes as on the wire, FCS included); [] if it is a
    valid RoCEv2 frame. Uses scapy for the headers, the IPv4 checksum and the ICRC."""
    out = []
    if len(frame) < S.ETH_MIN_FRAME:
        out.append(f"runt: {len(frame)} bytes")
    body, fcs = frame[:-4], frame[-4:]
    if _crc32_bitwise(body).to_bytes(4, "little") != fcs:
        out.append(f"bad FCS {fcs.hex()} (expected {_crc32_bitwise(body).to_bytes(4, 'little').hex()})")
    pkt = Ether(body)
    if IP not in pkt or UDP not in pkt or BTH not in pkt:
        return out + [f"not Ether/IP/UDP/BTH: {pkt.summary()}"]
    ip = pkt[IP]
    if pkt[UDP].dport != S.ROCE_UDP_PORT:
        out.append(f"UDP dport {pkt[UDP].dport}")
    rebuilt = IP(bytes(ip)[:ip.ihl * 4])
    rebuilt.chksum = None
    if IP(bytes(rebuilt)).chksum != ip.chksum:
        out.append(f"bad IPv4 checksum {ip.chksum:#06x}")
    bth = pkt[BTH]
    want = bth.compute_icrc(None)
    got = bth.icrc.to_bytes(4, "big")          # the raw ICRC bytes as they sit in the frame
    if want != got:
        out.append(f"bad ICRC {got.hex()} (scapy computes {want.hex()})")
    return out


def assert_frames_valid(frames, what: str = "frame") -> None:
    bad = []
    for i, f in enumerate(frames):
        p = frame_problems(bytes(f))
        if p:
            bad.append(f"{what} {i} ({len(f)} B, head {bytes(f)[:64].hex()}): {'; '.join(p)}")
    assert not bad, f"{len(bad)} of {len(frames)} frames invalid:\n" + "\n".join(bad[:10])


def assert_frames_equal(expected, got, what: str = "frame") -> None:
    """Byte-for-byte comparison with a precise first-difference report."""
    assert len(expected) == len(got), f"{what}s: expected {len(expected)} frames, got {len(got)}"
    for i, (e, g) in enumerate(zip(expected, got)):
        e, g = bytes(e), bytes(g)
        if e != g:
            k = next((j for j in range(min(len(e), len(g))) if e[j] != g[j]), min(len(e), len(g)))
            raise AssertionError(
                f"{what} {i}: first difference at byte {k} (len expected {len(e)}, got {len(g)})\n"
                f"  expected[{k}:{k + 16}] = {e[k:k + 16].hex()}\n  got     [{k}:{k + 16}] = {g[k:k + 16].hex()}\n"
                f"  expected head {e[:64].hex()}\n  got head      {g[:64].hex()}")
