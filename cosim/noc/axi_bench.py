"""cocotb bench: AXI4 through the network interfaces (rtl.noc.ni.AxiMeshBench).

cocotbext-axi ``AxiMaster`` models drive the initiator ports ``n<i>_s_axi``, ``AxiRam``
models sit behind the target ports ``n<j>_m_axi``. Inputs: ``ops`` int64 [n, 5] rows of
(master node, is_write, address, length, blob offset) and ``blob`` uint8 (write data; read
data is returned at the same offsets). Each master runs its operations in order; masters
run concurrently. Outputs: ``resp`` [n], ``blob_out`` (read data), counters."""

from __future__ import annotations

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import RisingEdge, with_timeout
from cocotbext.axi import AxiBus, AxiMaster, AxiRam

from cosim.sim import bench_inputs, bench_outputs, bench_params


@cocotb.test()
async def axi_ops(dut):
    params = bench_params()
    inputs = bench_inputs()
    ops, blob = inputs["ops"], inputs["blob"]
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    dut.rst.value = 1
    masters = {i: AxiMaster(AxiBus.from_prefix(dut, f"n{i}_s_axi_"), dut.clk, dut.rst)
               for i in params["masters"]}
    rams = {j: AxiRam(AxiBus.from_prefix(dut, f"n{j}_m_axi_"), dut.clk, dut.rst,
                      size=1 << params["region_shift"]) for j in params["memories"]}
    for _ in range(3):
        await RisingEdge(dut.clk)
    dut.rst.value = 0
    await RisingEdge(dut.clk)
    assert rams
    resp = np.full(len(ops), -1, dtype=np.int64)
    out = np.zeros_like(blob)

    async def run_master(i):
        for k, (node, is_w, addr, length, off) in enumerate(ops):
            if node != i:
                continue
            if is_w:
                r = await masters[i].write(int(addr), bytes(blob[off:off + length]))
                resp[k] = int(r.resp)
            else:
                r = await masters[i].read(int(addr), int(length))
                resp[k] = int(r.resp)
                out[off:off + length] = np.frombuffer(bytes(r.data), dtype=np.uint8)

    tasks = [cocotb.start_soon(run_master(i)) for i in masters]
    # generous budget (a few hundred cycles per operation): a hang fails instead of
    # running forever
    budget_ns = 10 * (20_000 + 600 * len(ops))
    for t in tasks:
        await with_timeout(t, budget_ns, "ns")
    for _ in range(20):
        await RisingEdge(dut.clk)
    bench_outputs(resp=resp, blob_out=out,
                  counters=np.array([int(dut.decerr.value), int(dut.bad_flits.value),
                                     int(dut.served.value), int(dut.net_errors.value)]))
