"""cocotb bench of two chips with NIC ports (Verilog top ``chip_pair``, rtl.chip.pair).

Per chip (``a``, ``b``): every HBM port gets a cocotbext-axi ``AxiRam``, all sharing one
bytearray (the chip's HBM); the host is an ``AxiLiteMaster`` on ``<x>_s_axil``. NIC port p of
chip a is joined to NIC port p of chip b through ``golden.nic.LossyLink`` (one per
direction, seeded), moved by a coroutine that polls the wire every 4 cycles
(cocotbext-axi ``AxiStreamSink``/``AxiStreamSource``); every frame is logged with its cycle.

Sequence: reset; wait for STATUS.ready on both chips; NIC CSR configuration writes of both
chips; RING/SIZE of the chip queues; IRQ_ENABLE; then the doorbells: chip queue TAILs, then
NIC doorbells (all of chip a, then all of chip b). Then the host reads STATUS of both chips
every ``poll`` cycles until, three polls in a row, no queue is pending (bit 1 = 0), every
NIC port is idle (bit 2 = 1) and the links are empty.

Inputs (cosim.chippair.run builds them), for x in a, b:
    hbm_x       uint8 [hbm_window] initial HBM image
    queues_x    int64 [n, 4] (queue, ring, size, tail)
    nic_x       int64 [n, 2] (host address, value) NIC configuration writes
    bell_x      int64 [n, 2] (host address, value) NIC doorbells
    link        float64 [seed_ab, seed_ba, drop, dup, reorder, corrupt]
    max_cycles, poll
Outputs, for x in a, b: hbm_x, qregs_x, gregs_x, sems_x, irq_x, counters_x (per port, all
spec.nic.COUNTERS), qpregs_x (per port and queue pair: sq_cons, cq_prod), tx_x (+ _len, _t,
_port) frames sent by chip x's ports; cycles (first doorbell to the end).
"""

from __future__ import annotations

import logging

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
    AxiStreamSink,
    AxiStreamSource,
)

from cosim.chip.bench import _cfg_from_params
from cosim.linkbench import PERIOD_NS, cycle, lossy_link, quiet
from cosim.nic.frames import join
from cosim.sim import bench_inputs, bench_outputs
from golden.nic import LossyLink
from spec import chip as C
from spec import nic as S


class ChipSide:
    """One chip of a bench: its HBM (AxiRam per edge port), host (AxiLiteMaster) and NIC
    wires (sink of wire_tx, source of wire_rx per port); ports ``<name>_*``."""

    def __init__(self, dut, name, cfg, hbm):
        self.name, self.cfg = name, cfg
        self.hbm = bytearray(hbm)
        self.rams = [AxiRam(AxiBus.from_prefix(dut, f"{name}_hbm{i}_"), dut.clk, dut.rst,
                            size=len(self.hbm), mem=self.hbm)
                     for i in range(cfg.top_hbm_ports)]
        for r in self.rams:
            quiet(r)
        self.host = AxiLiteMaster(AxiLiteBus.from_prefix(dut, f"{name}_s_axil_"), dut.clk,
                                  dut.rst)
        quiet(self.host)
        self.sinks = [AxiStreamSink(AxiStreamBus.from_prefix(dut, f"{name}_nic{p}_wire_tx_"),
                                    dut.clk, dut.rst) for p in range(cfg.nic_ports)]
        self.sources = [AxiStreamSource(AxiStreamBus.from_prefix(dut, f"{name}_nic{p}_wire_rx_"),
                                        dut.clk, dut.rst) for p in range(cfg.nic_ports)]
        for x in self.sinks + self.sources:
            x.log.setLevel(logging.WARNING)
        self.sent: list[tuple[int, int, bytes]] = []     # (cycle, port, frame)

    async def wr(self, addr, value):
        r = await self.host.write(int(addr), int(value).to_bytes(4, "little"))
        assert int(r.resp) == 0, (f"chip {self.name}: host write {int(addr):#06x} <- "
                                  f"{int(value):#x} answered resp {int(r.resp)}")

    async def rd(self, addr) -> int:
        r = await self.host.read(int(addr), 4)
        return int.from_bytes(r.data, "little")


async def link(dut, tx: ChipSide, rx: ChipSide, port: int, lossy: LossyLink, state: dict,
               key):
    """Frames from tx's NIC port ``port`` to rx's, through the lossy link."""
    await lossy_link(dut.clk, tx.sinks[port], rx.sources[port], lossy, tx.sent, state, key,
                     tag=(port,))


@cocotb.test()
async def chip_pair(dut):
    cfg = _cfg_from_params()
    vec = bench_inputs()
    cocotb.start_soon(Clock(dut.clk, PERIOD_NS, unit="ns").start())
    dut.rst.value = 1
    chips = {x: ChipSide(dut, x, cfg, vec[f"hbm_{x}"].astype(np.uint8).tobytes()) for x in "ab"}
    await ClockCycles(dut.clk, 4)
    dut.rst.value = 0
    await ClockCycles(dut.clk, 2)
    seed_ab, seed_ba, drop, dup, reorder, corrupt = vec["link"].tolist()
    state = {}
    for p in range(cfg.nic_ports):
        for tx, rx, seed in ((chips["a"], chips["b"], seed_ab), (chips["b"], chips["a"], seed_ba)):
            lossy = LossyLink(int(seed) + 100 * p, drop=drop, dup=dup, reorder=reorder,
                              corrupt=corrupt)
            key = (tx.name, p)
            state[key] = True
            cocotb.start_soon(link(dut, tx, rx, p, lossy, state, key))
    for c in chips.values():
        ident = await c.rd(C.REG_ID)
        assert ident == C.ID_MAGIC, f"chip {c.name}: ID {ident:#010x}"
        waited = 0
        while not (await c.rd(C.REG_STATUS)) & 1:
            await ClockCycles(dut.clk, 16)
            waited += 16
            assert waited < 100_000, f"chip {c.name} never became ready"
    for x, c in chips.items():
        for addr, value in vec[f"nic_{x}"].reshape(-1, 2).tolist():
            await c.wr(addr, value)
        for q, ring, size, _tail in np.asarray(vec[f"queues_{x}"]).reshape(-1, 4).tolist():
            await c.wr(C.q_reg(q, C.Q_RING), ring)
            await c.wr(C.q_reg(q, C.Q_SIZE), size)
        await c.wr(C.REG_IRQ_ENABLE, 0xFFFF_FFFF)
    t0 = cycle()
    for x, c in chips.items():
        for q, _ring, _size, tail in np.asarray(vec[f"queues_{x}"]).reshape(-1, 4).tolist():
            await c.wr(C.q_reg(q, C.Q_TAIL), tail)
    for x, c in chips.items():
        for addr, value in vec[f"bell_{x}"].reshape(-1, 2).tolist():
            await c.wr(addr, value)
    max_cycles, poll = int(vec["max_cycles"]), int(vec["poll"])
    stable = 0
    while stable < 3:
        await ClockCycles(dut.clk, poll)
        st = [await c.rd(C.REG_STATUS) for c in chips.values()]
        done = all((s & 2) == 0 and (s & 4) for s in st) and all(state.values())
        stable = stable + 1 if done else 0
        if cycle() - t0 > max_cycles:
            raise AssertionError(
                f"chips not done after {max_cycles} cycles: STATUS a {st[0]:#x} b {st[1]:#x} "
                f"(bit 1 queue pending, bit 2 NICs idle), links idle {state}, frames sent "
                f"a {len(chips['a'].sent)} b {len(chips['b'].sent)}")
    cycles = cycle() - t0
    out = {}
    for x, c in chips.items():
        out[f"hbm_{x}"] = np.frombuffer(bytes(c.hbm), dtype=np.uint8)
        out[f"qregs_{x}"] = np.array([[await c.rd(C.q_reg(q, off)) for off in C.Q_REGS.values()]
                                      for q in range(cfg.queues)], dtype=np.uint64)
        out[f"gregs_{x}"] = np.array([await c.rd(a) for a in C.GLOBAL_REGS.values()],
                                     dtype=np.uint64)
        out[f"sems_{x}"] = np.array([await c.rd(C.REG_SEM_BASE + 4 * i)
                                     for i in range(cfg.clusters * cfg.n_sems)], dtype=np.uint64)
        out[f"irq_{x}"] = np.array(int(getattr(dut, f"{x}_irq").value))
        cnt, qp = [], []
        for p in range(cfg.nic_ports):
            base = cfg.nic_csr_base(p)
            cnt.append([await c.rd(base + S.CSR_COUNTER_BASE + 4 * k)
                        for k in range(len(S.COUNTERS))])
            qp.append([[await c.rd(base + S.qp_reg(q, "sq_cons")),
                        await c.rd(base + S.qp_reg(q, "cq_prod"))] for q in range(cfg.nic_qps)])
        out[f"counters_{x}"] = np.array(cnt, dtype=np.uint64)
        out[f"qpregs_{x}"] = np.array(qp, dtype=np.uint64)
        d, lens = join([f for _, _, f in c.sent])
        out[f"tx_{x}"], out[f"tx_{x}_len"] = d, lens
        out[f"tx_{x}_t"] = np.array([t for t, _, _ in c.sent], np.int64)
        out[f"tx_{x}_port"] = np.array([p for _, p, _ in c.sent], np.int64)
    dut._log.info("chip pair: %d cycles, frames a %d b %d", cycles, len(chips["a"].sent),
                  len(chips["b"].sent))
    bench_outputs(cycles=np.int64(cycles), **out)
