"""Driver of the cocotbext-eth peer bench (cosim/nic/eth_bench.py): one RTL NIC configured
like golden NIC ``a``, frames from an independent Ethernet peer in, its frames out."""

from __future__ import annotations

import dataclasses

import numpy as np

from cosim.nic.frames import join, split
from cosim.nic.pair import csr_config, make_pair
from cosim.sim import run_bench
from golden import nic as G
from spec import nic as S


def run_eth_peer(a: G.Nic, frames, *, n_expect: int, sim: str = "verilator",
                 max_cycles: int = 20_000, tag: str = "eth") -> dict:
    """Send ``frames`` (wire bytes with FCS) from a cocotbext-eth EthMac into an RTL NIC
    configured like ``a`` (call before feeding ``a`` the same frames); wait for ``n_expect``
    frames back. Returns the frames the NIC sent, its memory image and counters."""
    if n_expect < 0:
        raise ValueError(f"n_expect must be >= 0, not {n_expect}")
    cfg, bells = csr_config(a, timeout_cycles=4000, retry_limit=16)
    if len(bells):
        raise ValueError("a must have no posted work requests (the peer drives the traffic)")
    d, lens = join(frames)
    params = dict(dataclasses.asdict(a.p), mem_bytes=len(a.mem))
    out = run_bench(name="nic_pair", toplevel="nic_pair",
                    make=lambda: make_pair(a.p, len(a.mem)), params=params,
                    test_module="cosim.nic.eth_bench", sim=sim, tag=tag,
                    inputs=dict(mem_a=a.mem.copy(), cfg_a=cfg, rx_data=d, rx_len=lens,
                                n_expect=np.int64(n_expect), max_cycles=np.int64(max_cycles)))
    return {"tx": split(out["tx_data"], out["tx_len"]), "mem": out["mem_a"],
            "counters": dict(zip(S.COUNTERS, out["counters_a"].tolist())),
            "cycles": int(out["cycles"])}
