"""cocotb bench of cosim.tray.chip: one chip (rtl.chip.Chip with NIC ports), HBM as a
cocotbext-axi AxiRam on every HBM port, the host as an AxiLiteMaster that writes
REG_TRAY_RANK, the queue registers and the doorbells, then reads STATUS every ``poll``
cycles until nothing is pending and reads back the queue registers.
The NIC wires are left idle (nothing is received; the engine of this build sends nothing)."""

from __future__ import annotations

import logging

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles
from cocotbext.axi import AxiBus, AxiLiteBus, AxiLiteMaster, AxiRam

from cosim.sim import bench_inputs, bench_outputs, bench_params
from spec import chip as C
from spec import tile as T


async def _rd(host, addr: int) -> int:
    return int.from_bytes((await host.read(addr, 4)).data, "little")


async def _wr(host, addr: int, value: int) -> None:
    await host.write(addr, int(value).to_bytes(4, "little"))


@cocotb.test()
async def run_tray_chip(dut):
    p = dict(bench_params())
    p["tile"] = T.TileConfig(**p["tile"])
    cfg = C.ChipConfig(**p)
    inp = bench_inputs()
    hbm = bytearray(inp["hbm"].astype(np.uint8).tobytes())
    queues = [tuple(int(x) for x in row) for row in np.atleast_2d(inp["queues"])]
    max_cycles, poll = int(inp["max_cycles"]), int(inp["poll"])
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    dut.rst.value = 1
    for name in ("awvalid", "wvalid", "arvalid", "bready", "rready"):
        getattr(dut, f"s_axil__{name}").value = 0
    for port in range(cfg.nic_ports):
        getattr(dut, f"nic{port}_wire_rx__tvalid").value = 0
        getattr(dut, f"nic{port}_wire_tx__tready").value = 1
    rams = [AxiRam(AxiBus.from_prefix(dut, f"hbm{i}_"), dut.clk, dut.rst, size=len(hbm),
                   mem=hbm) for i in range(cfg.edge_hbm_ports)]
    for r in rams:
        for ch in ("write_if", "read_if"):
            getattr(r, ch).log.setLevel(logging.WARNING)
    host = AxiLiteMaster(AxiLiteBus.from_prefix(dut, "s_axil_"), dut.clk, dut.rst)
    host.write_if.log.setLevel(logging.WARNING)
    host.read_if.log.setLevel(logging.WARNING)
    await ClockCycles(dut.clk, 3)
    dut.rst.value = 0
    await ClockCycles(dut.clk, 2)
    waited = 0
    while not (await _rd(host, C.REG_STATUS)) & 1:
        await ClockCycles(dut.clk, 16)
        waited += 16
        assert waited < 100_000, "chip never became ready"
    await _wr(host, C.REG_TRAY_RANK, int(inp["tray_rank"]))
    tray_rank = await _rd(host, C.REG_TRAY_RANK)
    for q, ring, size, _tail in queues:
        await _wr(host, C.q_reg(q, C.Q_RING), ring)
        await _wr(host, C.q_reg(q, C.Q_SIZE), size)
    for q, _ring, _size, tail in queues:
        await _wr(host, C.q_reg(q, C.Q_TAIL), tail)
    cycles = 0
    while True:
        await ClockCycles(dut.clk, poll)
        cycles += poll
        st = await _rd(host, C.REG_STATUS)
        if not st & 2:
            break
        if cycles > max_cycles:
            heads = [await _rd(host, C.q_reg(q, C.Q_HEAD)) for q in range(cfg.queues)]
            raise AssertionError(f"chip still busy after {cycles} cycles (status {st:#x}, "
                                 f"queue heads {heads})")
    qregs = [[await _rd(host, C.q_reg(q, off)) for off in C.Q_REGS.values()]
             for q in range(cfg.queues)]
    dut._log.info("tray chip bench: %d cycles", cycles)
    bench_outputs(hbm=np.frombuffer(bytes(hbm), dtype=np.uint8),
                  qregs=np.array(qregs, dtype=np.uint64), tray_rank=np.array(tray_rank),
                  cycles=np.array(cycles))
