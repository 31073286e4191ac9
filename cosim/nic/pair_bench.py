"""cocotb bench of two RTL NICs back to back (Verilog top ``nic_pair``).

Each NIC gets a cocotbext-axi ``AxiRam`` on its AXI4 master (host memory), an
``AxiLiteMaster`` on its CSRs, and an ``AxiStreamSink``/``AxiStreamSource`` on its wire ports.
The wires are joined in Python through ``golden.nic.LossyLink`` (seeded drop, duplicate,
reorder, corrupt), one per direction; every frame a NIC sends is logged with its cycle.

Inputs (cosim.nic.pair.run_pair_rtl builds them):
    mem_a, mem_b            uint8 initial host memory images
    cfg_a, cfg_b            (N, 2) CSR writes (address, value) before any doorbell
    bell_a, bell_b          (M, 2) CSR writes (doorbells) after both NICs are configured
    link                    [seed_ab, seed_ba, drop, dup, reorder, corrupt]
    max_cycles              give up (test failure) after this many cycles
Outputs:
    mem_a, mem_b            final memory images
    counters_a, counters_b  spec.nic.COUNTERS read over AXI4-Lite
    qpregs_a, qpregs_b      (n_qps, 2): sq_cons, cq_prod read over AXI4-Lite
    tx_a, tx_b (+ _len, _t) frames each NIC sent (before the link), with the cycle the link
                            model took them (polled every 4 cycles)
    bell_done               cycle the last doorbell write completed
    a_bresp_t               (with input watch_b=1) cycles of NIC A's AXI4 write responses
    cq_events_a, cq_events_b  pulses seen on each NIC's ``cq_event`` output
    cycles                  cycles until both NICs were idle and the link empty
    bell_cycle              cycle of the first doorbell write
"""

from __future__ import annotations

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, RisingEdge
from cocotbext.axi import (
    AxiBus,
    AxiLiteBus,
    AxiLiteMaster,
    AxiRam,
    AxiStreamBus,
    AxiStreamSink,
    AxiStreamSource,
)

from cosim.linkbench import PERIOD_NS, cycle, lossy_link
from cosim.nic.frames import join
from cosim.sim import bench_inputs, bench_outputs, bench_params
from golden.nic import LossyLink
from spec import nic as S


class _Side:
    def __init__(self, dut, name, mem):
        self.name = name
        self.ram = AxiRam(AxiBus.from_prefix(dut, f"{name}_m_axi_"), dut.clk, dut.rst,
                          size=len(mem))
        self.ram.write(0, bytes(mem))
        self.csr = AxiLiteMaster(AxiLiteBus.from_prefix(dut, f"{name}_s_axil_"), dut.clk, dut.rst)
        self.sink = AxiStreamSink(AxiStreamBus.from_prefix(dut, f"{name}_wire_tx_"), dut.clk, dut.rst)
        self.source = AxiStreamSource(AxiStreamBus.from_prefix(dut, f"{name}_wire_rx_"), dut.clk,
                                      dut.rst)
        self.idle = getattr(dut, f"{name}_idle")
        self.sent: list[tuple[int, bytes]] = []

    async def wr(self, addr, value):
        r = await self.csr.write(int(addr), int(value).to_bytes(4, "little"))
        assert int(r.resp) == 0, f"NIC {self.name}: CSR write {addr:#x} answered {int(r.resp)}"

    async def rd(self, addr) -> int:
        r = await self.csr.read(int(addr), 4)
        return int.from_bytes(r.data, "little")


async def _link(dut, tx: _Side, rx: _Side, lossy: LossyLink, state: dict):
    """Move frames from tx's wire to rx's wire through the lossy link."""
    await lossy_link(dut.clk, tx.sink, rx.source, lossy, tx.sent, state, tx.name)


async def _count_edges(sig, box):
    """Count rising edges of a 1-bit output (wakes only on its changes)."""
    while True:
        await RisingEdge(sig)
        box[0] += 1


async def _watch_b(dut, log):
    """Cycles at which NIC A's AXI4 write responses complete (latency runs only)."""
    while True:
        await RisingEdge(dut.clk)
        if dut.a_m_axi__bvalid.value == 1 and dut.a_m_axi__bready.value == 1:
            log.append(cycle())


@cocotb.test()
async def pair(dut):
    vec = bench_inputs()
    params = bench_params()
    n_qps = int(params.get("n_qps", 1))
    cocotb.start_soon(Clock(dut.clk, PERIOD_NS, unit="ns").start())
    dut.rst.value = 1
    a = _Side(dut, "a", vec["mem_a"])
    b = _Side(dut, "b", vec["mem_b"])
    await ClockCycles(dut.clk, 4)
    dut.rst.value = 0
    await ClockCycles(dut.clk, 2)
    seed_ab, seed_ba, drop, dup, reorder, corrupt = vec["link"].tolist()
    links = {"a": LossyLink(int(seed_ab), drop=drop, dup=dup, reorder=reorder, corrupt=corrupt),
             "b": LossyLink(int(seed_ba), drop=drop, dup=dup, reorder=reorder, corrupt=corrupt)}
    state = {"a": True, "b": True}
    cq_events = {"a": [0], "b": [0]}
    for n in ("a", "b"):
        cocotb.start_soon(_count_edges(getattr(dut, f"{n}_cq_event"), cq_events[n]))
    cocotb.start_soon(_link(dut, a, b, links["a"], state))
    cocotb.start_soon(_link(dut, b, a, links["b"], state))
    for side, cfg in ((a, vec["cfg_a"]), (b, vec["cfg_b"])):
        for addr, value in cfg.reshape(-1, 2).tolist():
            await side.wr(addr, value)
    bwrites: list[int] = []
    if int(vec.get("watch_b", 0)):
        cocotb.start_soon(_watch_b(dut, bwrites))
    bell_cycle = cycle()
    for side, bell in ((a, vec["bell_a"]), (b, vec["bell_b"])):
        for addr, value in bell.reshape(-1, 2).tolist():
            await side.wr(addr, value)
    bell_done = cycle()
    max_cycles = int(vec["max_cycles"])
    stable = 0
    while stable < 3:
        await ClockCycles(dut.clk, 32)
        await RisingEdge(dut.clk)
        done = (int(a.idle.value) and int(b.idle.value) and state["a"] and state["b"]
                and a.sink.empty() and b.sink.empty())
        stable = stable + 1 if done else 0
        assert cycle() < max_cycles, (
            f"NICs not idle after {max_cycles} cycles (a idle {int(a.idle.value)}, "
            f"b idle {int(b.idle.value)}, frames a->b {len(a.sent)}, b->a {len(b.sent)})")
    cycles = cycle() - bell_cycle
    out = {}
    for side in (a, b):
        n = side.name
        out[f"mem_{n}"] = np.frombuffer(side.ram.read(0, len(vec[f"mem_{n}"])), np.uint8)
        out[f"counters_{n}"] = np.array(
            [await side.rd(S.CSR_COUNTER_BASE + 4 * k) for k in range(len(S.COUNTERS))], np.uint64)
        out[f"qpregs_{n}"] = np.array(
            [[await side.rd(S.qp_reg(q, "sq_cons")), await side.rd(S.qp_reg(q, "cq_prod"))]
             for q in range(n_qps)], np.uint64).reshape(-1, 2)
        d, lens = join([f for _, f in side.sent])
        out[f"tx_{n}"], out[f"tx_{n}_len"] = d, lens
        out[f"tx_{n}_t"] = np.array([t for t, _ in side.sent], np.int64)
        out[f"cq_events_{n}"] = np.int64(cq_events[n][0])
    bench_outputs(cycles=np.int64(cycles), bell_cycle=np.int64(bell_cycle),
                  bell_done=np.int64(bell_done), a_bresp_t=np.array(bwrites, np.int64), **out)
