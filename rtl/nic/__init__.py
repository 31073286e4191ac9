"""Integrated NIC: Ethernet MAC (mac), CRC networks (crc), stream formats (stream),
counters. The RoCEv2 transport, memory protection and host side build on these; see
docs/nic.md. Contract constants live in spec/nic.py."""

from .mac import MacTop

VERILOG_TOPS = {"nic_mac": lambda: MacTop()}
