"""Co-simulation of the NIC: cocotb benches, seeded link model, pcap writer, frame checks.

``run_mac(tx, rx, mac_addr, sim)`` runs the MAC bench (Verilog top ``nic_mac``)."""

from __future__ import annotations

from cosim.nic.frames import join, split
from cosim.sim import run_bench


def run_mac(tx_frames, rx_frames, *, mac_addr: int, rx_expect: int, sim: str = "verilator",
            tag: str = "mac") -> dict:
    """Transmit ``tx_frames`` (no FCS) and receive ``rx_frames`` (wire bytes) through the RTL
    MAC; ``rx_expect`` good frames are awaited. Returns wire frames, received frames,
    counters (dict) and wire timestamps."""
    from rtl.nic.mac import MacTop

    td, tl = join(tx_frames)
    rd, rl = join(rx_frames)
    out = run_bench(name="nic_mac", toplevel="nic_mac", make=lambda: MacTop(),
                    test_module="cosim.nic.mac_bench", sim=sim, tag=tag,
                    inputs=dict(tx_data=td, tx_len=tl, rx_data=rd, rx_len=rl,
                                mac_addr=mac_addr, rx_expect=rx_expect))
    from spec import nic as S

    return dict(wire=split(out["wire_data"], out["wire_len"]),
                rx=split(out["rx_data"], out["rx_len"]),
                counters=dict(zip(S.COUNTERS, out["counters"].tolist())),
                wire_times=out["wire_times"], rx_in_times=out["rx_in_times"],
                rx_out_times=out["rx_out_times"])
