"""cocotb bench of ONE chip whose NIC port 0 faces a peer modelled in Python (Verilog top
``chip``, the `tiny_nic` configuration; docs/chip.md "NIC ports").

The peer is a golden.nic.Nic (its own memory image, its own queue pairs and windows, its
posted work requests), handed over pickled (``MAIA_PEER_PICKLE``). The chip's HBM port(s) get
a cocotbext-axi ``AxiRam`` (one shared bytearray), the host an ``AxiLiteMaster``; the NIC's
wire side a cocotbext-axi ``AxiStreamSink`` (frames the chip sends) and ``AxiStreamSource``
(frames the peer sends). Every 4 cycles a coroutine moves the chip's frames into the peer
(``receive``) and, when the source is empty, takes the peer's next frame (``transmit``) and
queues it on the wire. The peer's retransmission timer ticks once per ``tick_cycles``
cycles without a frame from the chip (at 0% loss it never expires, so its frames do not
depend on the chip's timing).

Sequence: reset; wait STATUS.ready; NIC CSR writes; chip queue RING/SIZE; IRQ_ENABLE; then
the chip queue TAILs and NIC doorbells; then STATUS polls every ``poll`` cycles until, three
polls in a row, no queue is pending, the NIC is idle, the peer is not busy and the wire is
empty.

Inputs (cosim.chippair.peer.run_peer builds them): hbm, queues (n, 4), nic (n, 2) CSR writes,
bell (n, 2) doorbells, max_cycles, poll, tick_cycles.
Outputs: hbm, qregs, gregs, sems, irq, counters (spec.nic.COUNTERS of port 0), qpregs
(sq_cons, cq_prod per queue pair), tx/_len/_t (the chip's frames, cycle seen), ptx/_len/_t
(the peer's frames, cycle queued), peer_mem, peer_counters, cycles (first doorbell to the
end), first_bell (cycle of the first doorbell write).
"""

from __future__ import annotations

import os
import pickle

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles
from cocotbext.axi import (
    AxiBus,
    AxiLiteBus,
    AxiLiteMaster,
    AxiRam,
    AxiStreamBus,
    AxiStreamFrame,
    AxiStreamSink,
    AxiStreamSource,
)

from cosim.chip.bench import _cfg_from_params
from cosim.linkbench import PERIOD_NS, cycle, quiet
from cosim.nic.frames import join
from cosim.sim import bench_inputs, bench_outputs
from spec import chip as C
from spec import nic as S


async def _peer_link(dut, sink, source, peer, log, state, tick_cycles):
    """Chip frames -> peer.receive; peer.transmit -> chip, one frame queued at a time."""
    quiet = 0
    while True:
        await ClockCycles(dut.clk, 4)
        while not sink.empty():
            frame = bytes(sink.recv_nowait().tdata)
            log["chip"].append((cycle(), frame))
            peer.receive(frame)
            quiet = 0
        if source.empty():
            f = peer.transmit()
            if f is not None:
                log["peer"].append((cycle(), f))
                await source.send(AxiStreamFrame(f))
        quiet += 4
        if quiet >= tick_cycles:
            quiet = 0
            peer.tick()
        state["idle"] = (sink.empty() and source.empty() and source.idle()
                         and not peer.busy())


@cocotb.test()
async def chip_peer(dut):
    cfg = _cfg_from_params()
    vec = bench_inputs()
    with open(os.environ["MAIA_PEER_PICKLE"], "rb") as fh:
        peer = pickle.load(fh)
    cocotb.start_soon(Clock(dut.clk, PERIOD_NS, unit="ns").start())
    dut.rst.value = 1
    hbm = bytearray(vec["hbm"].astype(np.uint8).tobytes())
    rams = [AxiRam(AxiBus.from_prefix(dut, f"hbm{i}_"), dut.clk, dut.rst, size=len(hbm),
                   mem=hbm) for i in range(cfg.top_hbm_ports)]
    host = AxiLiteMaster(AxiLiteBus.from_prefix(dut, "s_axil_"), dut.clk, dut.rst)
    sink = AxiStreamSink(AxiStreamBus.from_prefix(dut, "nic0_wire_tx_"), dut.clk, dut.rst)
    source = AxiStreamSource(AxiStreamBus.from_prefix(dut, "nic0_wire_rx_"), dut.clk, dut.rst)
    for x in (*rams, host, sink, source):
        quiet(x)
    await ClockCycles(dut.clk, 4)
    dut.rst.value = 0
    await ClockCycles(dut.clk, 2)

    async def wr(addr, value):
        r = await host.write(int(addr), int(value).to_bytes(4, "little"))
        assert int(r.resp) == 0, f"host write {int(addr):#06x} <- {int(value):#x}: resp {int(r.resp)}"

    async def rd(addr) -> int:
        return int.from_bytes((await host.read(int(addr), 4)).data, "little")

    ident = await rd(C.REG_ID)
    assert ident == C.ID_MAGIC, f"chip ID {ident:#010x}"
    waited = 0
    while not (await rd(C.REG_STATUS)) & 1:
        await ClockCycles(dut.clk, 16)
        waited += 16
        assert waited < 100_000, "chip never became ready"
    for addr, value in vec["nic"].reshape(-1, 2).tolist():
        await wr(addr, value)
    queues = np.asarray(vec["queues"]).reshape(-1, 4).tolist()
    for q, ring, size, _tail in queues:
        await wr(C.q_reg(q, C.Q_RING), ring)
        await wr(C.q_reg(q, C.Q_SIZE), size)
    await wr(C.REG_IRQ_ENABLE, 0xFFFF_FFFF)
    log = {"chip": [], "peer": []}
    state = {"idle": False}
    cocotb.start_soon(_peer_link(dut, sink, source, peer, log, state, int(vec["tick_cycles"])))
    t0 = cycle()
    for q, _ring, _size, tail in queues:
        await wr(C.q_reg(q, C.Q_TAIL), tail)
    for addr, value in vec["bell"].reshape(-1, 2).tolist():
        await wr(addr, value)
    max_cycles, poll = int(vec["max_cycles"]), int(vec["poll"])
    stable = 0
    while stable < 3:
        await ClockCycles(dut.clk, poll)
        st = await rd(C.REG_STATUS)
        stable = stable + 1 if (st & 2) == 0 and (st & 4) and state["idle"] else 0
        if cycle() - t0 > max_cycles:
            raise AssertionError(
                f"chip not done after {max_cycles} cycles: STATUS {st:#x} (bit 1 queue "
                f"pending, bit 2 NIC idle), peer/wire idle {state['idle']}, frames chip "
                f"{len(log['chip'])} peer {len(log['peer'])}")
    cycles = cycle() - t0
    base = cfg.nic_csr_base(0)
    out = {
        "hbm": np.frombuffer(bytes(hbm), dtype=np.uint8),
        "qregs": np.array([[await rd(C.q_reg(q, off)) for off in C.Q_REGS.values()]
                           for q in range(cfg.queues)], dtype=np.uint64),
        "gregs": np.array([await rd(a) for a in C.GLOBAL_REGS.values()], dtype=np.uint64),
        "sems": np.array([await rd(C.REG_SEM_BASE + 4 * i)
                          for i in range(cfg.clusters * cfg.n_sems)], dtype=np.uint64),
        "irq": np.array(int(dut.irq.value)),
        "counters": np.array([await rd(base + S.CSR_COUNTER_BASE + 4 * k)
                              for k in range(len(S.COUNTERS))], dtype=np.uint64),
        "qpregs": np.array([[await rd(base + S.qp_reg(q, "sq_cons")),
                             await rd(base + S.qp_reg(q, "cq_prod"))]
                            for q in range(cfg.nic_qps)], dtype=np.uint64),
        "peer_mem": np.asarray(peer.mem, dtype=np.uint8),
        "peer_counters": np.array([peer.counters[k] for k in S.COUNTERS], dtype=np.uint64),
    }
    for key, name in (("chip", "tx"), ("peer", "ptx")):
        d, lens = join([f for _, f in log[key]])
        out[name], out[f"{name}_len"] = d, lens
        out[f"{name}_t"] = np.array([t - t0 for t, _ in log[key]], np.int64)
    dut._log.info("chip + peer: %d cycles, frames chip %d peer %d", cycles, len(log["chip"]),
                  len(log["peer"]))
    bench_outputs(cycles=np.int64(cycles), first_bell=np.int64(t0), **out)
