"""cocotb bench of the MAC (Verilog top ``nic_mac``): cocotbext-axi AxiStreamSource/Sink on
all four stream ports. Inputs (see cosim.nic.run_mac): ``tx`` frames to transmit (no FCS),
``rx`` wire frames to receive (with FCS), ``mac_addr``. Outputs: the wire frames, the
received frames, the cycle each frame started and ended on the wire, and the counters."""

from __future__ import annotations

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, RisingEdge
from cocotbext.axi import AxiStreamBus, AxiStreamFrame, AxiStreamSink, AxiStreamSource

from cosim.nic.frames import join, split
from cosim.sim import bench_inputs, bench_outputs
from spec import nic as S


async def _watch(dut, prefix, log):
    """Cycle numbers of the first and last beat of every frame on stream ``prefix``."""
    valid, ready, last = (getattr(dut, f"{prefix}__t{s}") for s in ("valid", "ready", "last"))
    cycle, start = 0, None
    while True:
        await RisingEdge(dut.clk)
        cycle += 1
        if valid.value == 1 and ready.value == 1:
            if start is None:
                start = cycle
            if last.value == 1:
                log.append((start, cycle))
                start = None


@cocotb.test()
async def mac(dut):
    vec = bench_inputs()
    tx_frames = split(vec["tx_data"], vec["tx_len"])
    rx_frames = split(vec["rx_data"], vec["rx_len"])
    dut.mac_addr.value = int(vec["mac_addr"])
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    dut.rst.value = 1
    await ClockCycles(dut.clk, 3)
    dut.rst.value = 0
    tx_src = AxiStreamSource(AxiStreamBus.from_prefix(dut, "tx_"), dut.clk, dut.rst)
    wire_sink = AxiStreamSink(AxiStreamBus.from_prefix(dut, "wire_tx_"), dut.clk, dut.rst)
    wire_src = AxiStreamSource(AxiStreamBus.from_prefix(dut, "wire_rx_"), dut.clk, dut.rst)
    rx_sink = AxiStreamSink(AxiStreamBus.from_prefix(dut, "rx_"), dut.clk, dut.rst)
    times: list[tuple[int, int]] = []
    rx_in_times: list[tuple[int, int]] = []
    rx_out_times: list[tuple[int, int]] = []
    cocotb.start_soon(_watch(dut, "wire_tx", times))
    cocotb.start_soon(_watch(dut, "wire_rx", rx_in_times))
    cocotb.start_soon(_watch(dut, "rx", rx_out_times))
    for f in tx_frames:
        await tx_src.send(AxiStreamFrame(f))
    for f in rx_frames:
        await wire_src.send(AxiStreamFrame(f))
    wire = [bytes((await wire_sink.recv()).tdata) for _ in tx_frames]
    n_good = int(vec["rx_expect"])
    got = [bytes((await rx_sink.recv()).tdata) for _ in range(n_good)]
    await wire_src.wait()
    await ClockCycles(dut.clk, 40)          # drops finish; nothing else may come out
    extra = []
    while not rx_sink.empty():
        extra.append(bytes(rx_sink.recv_nowait().tdata))
    counters = [(int(dut.counters.value.to_unsigned()) >> (32 * k)) & 0xFFFFFFFF
                for k in range(len(S.COUNTERS))]
    wd, wl = join(wire)
    rd, rl = join(got + extra)
    bench_outputs(wire_data=wd, wire_len=wl, rx_data=rd, rx_len=rl,
                  counters=np.array(counters, dtype=np.uint64),
                  wire_times=np.array(times, dtype=np.int64).reshape(-1, 2),
                  rx_in_times=np.array(rx_in_times, dtype=np.int64).reshape(-1, 2),
                  rx_out_times=np.array(rx_out_times, dtype=np.int64).reshape(-1, 2))
