"""cocotb bench for rtl.chip.Chip: HBM image + host queue submissions -> HBM, CSRs.

Inputs (cosim.sim.bench_inputs): ``hbm`` uint8 [hbm_window], ``queues`` int64 [n, 4]
(queue index, ring, size, tail), ``max_cycles``, ``poll``; optional ``host_writes`` int64
[n, 2] (CSR address, value: written once the chip is ready, before the queues, e.g.
REG_TRAY_RANK) and ``read_regs`` int64 [n] (CSRs read back at the end). NIC ports, if any,
are left idle (nothing received, always ready to send).
Every HBM port gets a cocotbext-axi AxiRam; all of them share one bytearray, so they are one
memory (the HBM). The host is a cocotbext-axi AxiLiteMaster: it waits for STATUS.ready,
writes RING, SIZE and TAIL of each queue, then reads STATUS every ``poll`` cycles (no
per-cycle Python) until the chip is idle, and reads back every queue register, the global
registers and the cluster semaphores.
Outputs: ``hbm``, ``qregs`` uint64 [queues, len(Q_REGS)], ``gregs`` uint64 [len(GLOBAL_REGS)],
``sems`` [clusters * n_sems], ``extra_regs`` [len(read_regs)], ``irq``, ``wall_s``, ``run_cycles`` (bench cycles from the
first doorbell to the poll that saw the chip idle).
"""

from __future__ import annotations

import logging
import time

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, RisingEdge
from cocotbext.axi import AxiBus, AxiLiteBus, AxiLiteMaster, AxiRam

from cosim.sim import bench_inputs, bench_outputs, bench_params
from spec import chip as C


def _cfg_from_params() -> C.ChipConfig:
    from spec import tile as T

    p = dict(bench_params())
    p["tile"] = T.TileConfig(**p["tile"])
    return C.ChipConfig(**p)


async def read_reg(host, addr: int) -> int:
    return int.from_bytes((await host.read(addr, 4)).data, "little")


async def write_reg(host, addr: int, value: int) -> None:
    await host.write(addr, int(value).to_bytes(4, "little"))


@cocotb.test()
async def run_chip(dut):
    cfg = _cfg_from_params()
    inp = bench_inputs()
    hbm = bytearray(inp["hbm"].astype(np.uint8).tobytes())
    queues = [tuple(int(x) for x in row) for row in np.atleast_2d(inp["queues"])]
    max_cycles = int(inp["max_cycles"])
    poll = int(inp["poll"])
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    dut.rst.value = 1
    for name in ("awvalid", "wvalid", "arvalid", "bready", "rready"):
        getattr(dut, f"s_axil__{name}").value = 0
    for port in range(cfg.nic_ports):
        getattr(dut, f"nic{port}_wire_rx__tvalid").value = 0
        getattr(dut, f"nic{port}_wire_tx__tready").value = 1
    host_writes = [tuple(int(x) for x in row)
                   for row in np.asarray(inp.get("host_writes", np.zeros((0, 2)))).reshape(-1, 2)]
    read_regs = [int(a) for a in np.asarray(inp.get("read_regs", np.zeros(0))).reshape(-1)]
    rams = [AxiRam(AxiBus.from_prefix(dut, f"hbm{i}_"), dut.clk, dut.rst, size=len(hbm),
                   mem=hbm) for i in range(cfg.top_hbm_ports)]
    for r in rams:
        for ch in ("write_if", "read_if"):
            obj = getattr(r, ch, None)
            if obj is not None:
                obj.log.setLevel(logging.WARNING)
    host = AxiLiteMaster(AxiLiteBus.from_prefix(dut, "s_axil_"), dut.clk, dut.rst)
    host.write_if.log.setLevel(logging.WARNING)
    host.read_if.log.setLevel(logging.WARNING)
    await ClockCycles(dut.clk, 3)
    dut.rst.value = 0
    await ClockCycles(dut.clk, 2)
    ident = await read_reg(host, C.REG_ID)
    assert ident == C.ID_MAGIC, f"ID register {ident:#010x}, expected {C.ID_MAGIC:#010x}"
    waited = 0
    while not (await read_reg(host, C.REG_STATUS)) & 1:
        await ClockCycles(dut.clk, 16)
        waited += 16
        assert waited < 100_000, "chip never became ready (DMA window programming)"
    for addr, value in host_writes:
        await write_reg(host, addr, value)
    t0 = time.perf_counter()
    for q, ring, size, _tail in queues:
        await write_reg(host, C.q_reg(q, C.Q_RING), ring)
        await write_reg(host, C.q_reg(q, C.Q_SIZE), size)
    await write_reg(host, C.REG_IRQ_ENABLE, (1 << (2 * cfg.queues)) - 1)
    c0 = await read_reg(host, C.REG_CYCLES)
    for q, _ring, _size, tail in queues:
        await write_reg(host, C.q_reg(q, C.Q_TAIL), tail)
    cycles = 0
    while True:
        await ClockCycles(dut.clk, poll)
        cycles += poll
        st = await read_reg(host, C.REG_STATUS)
        if not st & 2:
            break
        if cycles > max_cycles:
            heads = [await read_reg(host, C.q_reg(q, C.Q_HEAD)) for q in range(cfg.queues)]
            raise AssertionError(f"chip still busy after {cycles} cycles (status {st:#x}, "
                                 f"queue heads {heads}): deadlock or max_cycles too small")
    c1 = await read_reg(host, C.REG_CYCLES)
    wall = time.perf_counter() - t0
    qregs = [[await read_reg(host, C.q_reg(q, off)) for off in C.Q_REGS.values()]
             for q in range(cfg.queues)]
    gregs = [await read_reg(host, a) for a in C.GLOBAL_REGS.values()]
    sems = []
    for i in range(cfg.clusters * cfg.n_sems):   # through SEM_INDEX/SEM_VALUE, and directly
        await write_reg(host, C.REG_SEM_INDEX, i)
        v = await read_reg(host, C.REG_SEM_VALUE)
        if i < C.SEM_DIRECT_MAX:
            d = await read_reg(host, C.REG_SEM_BASE + 4 * i)
            assert d == v, f"semaphore {i}: direct register {d:#x} != SEM_VALUE {v:#x}"
        sems.append(v)
    extra = [await read_reg(host, a) for a in read_regs]
    await RisingEdge(dut.clk)
    irq = int(dut.irq.value)
    dut._log.info("chip bench: %d queues, %d cycles (CSR CYCLES delta %d) in %.2f s",
                  len(queues), cycles, (c1 - c0) & 0xFFFFFFFF, wall)
    bench_outputs(hbm=np.frombuffer(bytes(hbm), dtype=np.uint8),
                  qregs=np.array(qregs, dtype=np.uint64), gregs=np.array(gregs, dtype=np.uint64),
                  sems=np.array(sems, dtype=np.uint64), irq=np.array(irq),
                  extra_regs=np.array(extra, dtype=np.uint64),
                  wall_s=np.array(wall), run_cycles=np.array(cycles),
                  csr_cycles=np.array((c1 - c0) & 0xFFFFFFFF))
