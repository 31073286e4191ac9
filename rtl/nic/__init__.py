"""Integrated NIC: Ethernet MAC (mac), CRC networks (crc), stream formats (stream), counters,
and the RoCEv2 transport with memory protection and host side (core). See docs/nic.md.
Contract constants live in spec/nic.py."""

from spec.nic import NicParams

from .core import NicCore, NicPair
from .mac import MacTop

# The test/benchmark configuration of the pair (also what `make verilog` emits).
PAIR_PARAMS = NicParams(n_qps=2, n_windows=2, mtu=256, window=8, max_msg=4096)

VERILOG_TOPS = {
    "nic_mac": lambda: MacTop(),
    "nic": lambda: NicCore(PAIR_PARAMS),
    "nic_pair": lambda: NicPair(PAIR_PARAMS),
}
