"""cocotb bench: one RTL NIC facing cocotbext-eth's Ethernet MAC model as its wire peer.

The Verilog top is ``nic_pair`` (its build is shared with the pair bench); only NIC ``a`` is
used, NIC ``b`` stays idle. NIC a's wire ports are driven by ``cocotbext.eth.EthMac``: its RX
model serialises the peer's frames into ``a_wire_rx`` with preamble and inter-frame gap
timing at 6.4 Gb/s (8 bytes per 10 ns cycle), its TX model takes NIC a's frames from
``a_wire_tx``. The frames themselves are built by the test (scapy), so the peer is
independent of the golden twin and of the RTL.

Inputs (cosim.nic.eth.run_eth_peer builds them):
    mem_a               uint8 initial host memory of NIC a
    cfg_a               (N, 2) CSR writes (address, value)
    rx_data, rx_len     frames the peer sends (wire bytes, FCS included), concatenated
    n_expect            frames NIC a must send back
    max_cycles          give up (test failure) after this many cycles
Outputs:
    mem_a, counters_a   final memory image and spec.nic.COUNTERS
    tx_data, tx_len     frames NIC a sent (wire bytes, FCS included), in order
    cycles              cycles from the first peer frame to the end
"""

from __future__ import annotations

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, with_timeout
from cocotbext.axi import (
    AxiBus,
    AxiLiteBus,
    AxiLiteMaster,
    AxiRam,
    AxiStreamBus,
    AxiStreamSink,
    AxiStreamSource,
)
from cocotbext.eth import EthMac, EthMacFrame

from cosim.linkbench import PERIOD_NS, cycle
from cosim.nic.frames import join, split
from cosim.sim import bench_inputs, bench_outputs
from spec import nic as S


@cocotb.test()
async def eth_peer(dut):
    vec = bench_inputs()
    cocotb.start_soon(Clock(dut.clk, PERIOD_NS, unit="ns").start())
    dut.rst.value = 1
    ram = AxiRam(AxiBus.from_prefix(dut, "a_m_axi_"), dut.clk, dut.rst, size=len(vec["mem_a"]))
    ram.write(0, bytes(vec["mem_a"]))
    csr = AxiLiteMaster(AxiLiteBus.from_prefix(dut, "a_s_axil_"), dut.clk, dut.rst)
    # cocotbext.axi's stream bus (tuser optional) so the EthMac models fit the NIC's ports
    peer = EthMac(tx_bus=AxiStreamBus.from_prefix(dut, "a_wire_tx_"), tx_clk=dut.clk,
                  tx_rst=dut.rst, rx_bus=AxiStreamBus.from_prefix(dut, "a_wire_rx_"),
                  rx_clk=dut.clk, rx_rst=dut.rst, ifg=S.ETH_IFG, speed=6.4e9)
    # NIC b: idle, its inputs held by quiet models
    AxiRam(AxiBus.from_prefix(dut, "b_m_axi_"), dut.clk, dut.rst, size=4096)
    AxiLiteMaster(AxiLiteBus.from_prefix(dut, "b_s_axil_"), dut.clk, dut.rst)
    AxiStreamSink(AxiStreamBus.from_prefix(dut, "b_wire_tx_"), dut.clk, dut.rst)
    AxiStreamSource(AxiStreamBus.from_prefix(dut, "b_wire_rx_"), dut.clk, dut.rst)
    await ClockCycles(dut.clk, 4)
    dut.rst.value = 0
    await ClockCycles(dut.clk, 2)

    async def wr(addr, value):
        r = await csr.write(int(addr), int(value).to_bytes(4, "little"))
        assert int(r.resp) == 0, f"CSR write {addr:#x} answered {int(r.resp)}"

    async def rd(addr) -> int:
        return int.from_bytes((await csr.read(int(addr), 4)).data, "little")

    for addr, value in vec["cfg_a"].reshape(-1, 2).tolist():
        await wr(addr, value)
    start = cycle()
    for f in split(vec["rx_data"], vec["rx_len"]):
        await peer.rx.send(EthMacFrame(f))
    got = []
    limit_ns = int(vec["max_cycles"]) * PERIOD_NS
    for _ in range(int(vec["n_expect"])):
        frame = await with_timeout(peer.tx.recv(), limit_ns, "ns")
        got.append(bytes(frame.data))
    stable = 0
    while stable < 3:
        await ClockCycles(dut.clk, 32)
        quiet = peer.rx.empty() and peer.rx.idle() and peer.tx.empty()
        stable = stable + 1 if int(dut.a_idle.value) and quiet else 0
        assert cycle() - start < int(vec["max_cycles"]), "NIC a not idle in time"
    extra = []
    while not peer.tx.empty():
        extra.append(bytes(peer.tx.recv_nowait().data))
    counters = np.array([await rd(S.CSR_COUNTER_BASE + 4 * k) for k in range(len(S.COUNTERS))],
                        np.uint64)
    d, lens = join(got + extra)
    bench_outputs(mem_a=np.frombuffer(ram.read(0, len(vec["mem_a"])), np.uint8),
                  counters_a=counters, tx_data=d, tx_len=lens,
                  cycles=np.int64(cycle() - start))
