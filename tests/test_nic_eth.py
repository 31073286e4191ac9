"""An RTL NIC against an independent Ethernet peer: cocotbext-eth's EthMac model on the wire
ports, frames built by scapy (Ether/IP/UDP/BTH with scapy's ICRC, FCS by cocotbext-eth).

The peer writes, reads and sends into the NIC, repeats a request, and sends a frame with a
bad FCS, one for another MAC address and a READ with a bad key. The NIC's answers must be
what the golden twin sends for the same frames (byte for byte), parse with scapy, carry the
right AETH and payload, and the NIC's memory and counters must be golden's."""

from __future__ import annotations

import copy

import numpy as np
import pytest
from cocotbext.eth import EthMacFrame
from scapy.contrib.roce import BTH
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether
from scapy.packet import Raw

from cosim.nic import check, pcap, scenario
from cosim.nic.eth import run_eth_peer
from cosim.sim import default_sims
from spec import nic as S

PARAMS = S.NicParams(n_qps=2, n_windows=2, mtu=256, window=8, max_msg=4096)


def peer_frame(opcode, psn, *, reth=None, payload=b"", dst_mac=scenario.MAC_A) -> bytes:
    """A RoCEv2 frame from the peer (NIC B's addresses, QP 0 -> QP 0) built by scapy, padded
    and given its FCS by cocotbext-eth."""
    ext = b""
    if reth is not None:
        va, rkey, length = reth
        ext = va.to_bytes(8, "big") + rkey.to_bytes(4, "big") + length.to_bytes(4, "big")
    pkt = (Ether(dst=_mac(dst_mac), src=_mac(scenario.MAC_B), type=0x0800)
           / IP(src=_ip(scenario.IP_B), dst=_ip(scenario.IP_A), flags="DF", ttl=64, id=0)
           / UDP(sport=S.UDP_SPORT_BASE, dport=S.ROCE_UDP_PORT, chksum=0)
           / BTH(opcode=opcode, pkey=S.PKEY_DEFAULT, dqpn=S.QPN_BASE, ackreq=1, psn=psn)
           / Raw(ext + payload))
    return EthMacFrame.from_payload(bytes(pkt)).data


def _mac(v):
    return ":".join(f"{b:02x}" for b in v.to_bytes(6, "big"))


def _ip(v):
    return ".".join(str(b) for b in v.to_bytes(4, "big"))


def _scenario(seed):
    a, _ = scenario.pair(PARAMS)
    scenario.fill(a, seed)
    rng = np.random.default_rng(seed)
    psn = int(a.qps[0].epsn)
    wdata = rng.integers(0, 256, 128, dtype=np.uint8).tobytes()
    sdata = rng.integers(0, 256, 64, dtype=np.uint8).tobytes()
    key = scenario.WIN_KEY
    rd_va = scenario.WIN_BASE + 0x400
    write = peer_frame(S.OP_WRITE_ONLY, psn, reth=(scenario.WIN_BASE + 0x100, key, 128),
                       payload=wdata)
    bad_fcs = bytearray(write)
    bad_fcs[-1] ^= 0xFF
    frames = [
        write,                                                                 # ACK psn
        peer_frame(S.OP_READ_REQUEST, psn + 1, reth=(rd_va, key, 384)),        # 2 responses
        bytes(bad_fcs),                                                        # dropped
        peer_frame(S.OP_WRITE_ONLY, psn + 3, reth=(scenario.WIN_BASE, key, 8),
                   payload=bytes(8), dst_mac=0x02_00_00_00_00_99),             # foreign
        peer_frame(S.OP_SEND_ONLY, psn + 3, payload=sdata),                    # ACK psn+3
        write,                                                                 # dup: re-ACK
        peer_frame(S.OP_READ_REQUEST, psn + 4, reth=(rd_va, key ^ 1, 64)),     # NAK access
    ]
    return a, frames, dict(psn=psn, wdata=wdata, sdata=sdata, rd_va=rd_va)


@pytest.mark.sim
@pytest.mark.parametrize("sim", default_sims())
def test_nic_answers_cocotbext_eth_peer_like_golden(sim, tmp_path):
    seed = 21
    print(f"seed={seed}")
    a, frames, info = _scenario(seed)
    check.assert_frames_valid([f for i, f in enumerate(frames) if i != 2], "peer frame")
    mem0 = a.mem.copy()
    before = copy.deepcopy(a)              # configures the RTL NIC
    want = []
    for f in frames:                       # the golden twin answers the same frames
        a.receive(f)
        while (g := a.transmit()) is not None:
            want.append(g)
    rtl = run_eth_peer(before, frames, n_expect=len(want), sim=sim,
                       tag=f"eth-{sim}")
    check.assert_frames_equal(want, rtl["tx"], "NIC frame")
    check.assert_frames_valid(rtl["tx"], "NIC frame")
    # independent of golden: scapy reads the answers
    psn = info["psn"]
    seen = []
    for f in rtl["tx"]:
        p = Ether(f[:-4])
        bth = p[BTH]
        body = bytes(bth.payload)            # AETH / payload (scapy keeps the ICRC apart)
        seen.append((bth.opcode, bth.psn, body[0] if bth.opcode != S.OP_READ_RESP_MIDDLE
                     else None))
        assert p[IP].dst == _ip(scenario.IP_B) and p[UDP].dport == S.ROCE_UDP_PORT
    assert [(o, q) for o, q, _ in seen] == [
        (S.OP_ACK, psn), (S.OP_READ_RESP_FIRST, psn + 1), (S.OP_READ_RESP_LAST, psn + 2),
        (S.OP_ACK, psn + 3), (S.OP_ACK, psn + 3), (S.OP_ACK, psn + 4)], seen
    assert [s for _, _, s in seen] == [S.AETH_ACK] * 5 + [S.AETH_NAK_REMOTE_ACCESS], seen
    rd = b"".join(bytes(Ether(f[:-4])[BTH].payload)[4:] for f in rtl["tx"][1:3])
    assert rd == mem0[info["rd_va"]:info["rd_va"] + 384].tobytes(), "READ response payload"
    got_w = rtl["mem"][scenario.WIN_BASE + 0x100:scenario.WIN_BASE + 0x180].tobytes()
    assert got_w == info["wdata"], f"WRITE landed {got_w[:16].hex()} != {info['wdata'][:16].hex()}"
    slot = rtl["mem"][scenario.RQ_BASE:scenario.RQ_BASE + 64].tobytes()
    assert slot == info["sdata"], "SEND payload not in receive slot 0"
    assert np.array_equal(rtl["mem"], a.mem), "memory differs from golden"
    diff = {k: (a.counters[k], rtl["counters"][k]) for k in S.COUNTERS
            if a.counters[k] != rtl["counters"][k]}
    assert not diff, f"counters (golden, rtl): {diff}"
    for k, n in (("rx_fcs_err", 1), ("rx_foreign", 1), ("rx_dup", 1), ("tx_nak_access", 1),
                 ("recv_done", 1)):
        assert rtl["counters"][k] == n, (k, rtl["counters"])
    path = (pcap.pcap_dir() or tmp_path) / f"eth-peer-{sim}.pcap"
    pcap.write_pcap(path, [f for i, f in enumerate(frames) if i != 2] + rtl["tx"])
    if pcap.tshark() is not None:
        problems = pcap.check_pcap_tshark(path)
        assert not problems, problems[:10]


def test_peer_frames_are_checked_independently():
    """The checker rejects a peer frame with a flipped payload byte (bad ICRC and FCS)."""
    a, frames, _ = _scenario(21)
    bad = bytearray(frames[0])
    bad[80] ^= 1
    assert check.frame_problems(bytes(frames[0])) == []
    problems = check.frame_problems(bytes(bad))
    assert any("ICRC" in p for p in problems) and any("FCS" in p for p in problems), problems
