"""`make bench BENCH=dma`: DMA bus efficiency and golden cycle-model accuracy.

Runs the default engine (2 channels, 64-bit data, 256-beat bursts) on Verilator against a
zero-wait cocotbext-axi AxiRam. Every figure comes from the engine's own CSR counters
(WR_BEATS = data beats written, BUSY_CYCLES = cycles from doorbell to chain end), read over
AXI4-Lite after the run; results are also checked bit for bit against golden/dma.py.

    efficiency       = WR_BEATS / BUSY_CYCLES       (one channel alone)
    model error      = |golden estimate - BUSY_CYCLES| / BUSY_CYCLES
"""

from __future__ import annotations

import dataclasses

import numpy as np

from cosim import dma as D
from spec import dma as S

MEM = 1 << 18
WINDOWS = [(0, MEM), (0, 0)]


def _scenario(descs, note, channel_descs=None):
    mem = np.frombuffer(np.random.default_rng(len(note)).bytes(MEM), dtype=np.uint8).copy()
    heads = [D.write_chain(mem, [(0x100 + 64 * i, d) for i, d in enumerate(descs)]), None]
    if channel_descs:
        heads[1] = D.write_chain(mem, [(0x800 + 64 * i, d)
                                       for i, d in enumerate(channel_descs)])
    return D.Scenario(mem=mem, heads=heads, windows=WINDOWS, watch_sems=False, note=note)


def _contig(nbytes, src=0x1000, dst=0x20000):
    return S.Descriptor(src=src, dst=dst, counts=(nbytes // 8, 1, 1), src_strides=(8, 0, 0),
                        dst_strides=(8, 0, 0), esize=3)


def scenarios() -> dict[str, D.Scenario]:
    rows = S.Descriptor(src=0x1000, dst=0x20000, counts=(64, 64, 1), src_strides=(1, 128, 0),
                        dst_strides=(1, 192, 0))
    rows3d = S.Descriptor(src=0x1000, dst=0x20000, counts=(64, 16, 4),
                          src_strides=(1, 128, 4096), dst_strides=(1, 64, 2048))
    gather = S.Descriptor(src=0x1000, dst=0x20000, counts=(256, 4, 1),
                          src_strides=(24, 8192, 0), dst_strides=(8, 2048, 0), esize=3)
    chain = [_contig(1024, src=0x1000 + 0x800 * i, dst=0x20000 + 0x800 * i) for i in range(8)]
    return {
        "contig_4k": _scenario([_contig(4096)], "contiguous 4 KiB"),
        "contig_16k": _scenario([_contig(16384)], "contiguous 16 KiB"),
        "contig_64k": _scenario([_contig(65536)], "contiguous 64 KiB"),
        "rows_2d_64b": _scenario([rows], "2D, 64 rows of 64 B"),
        "rows_3d_64b": _scenario([rows3d], "3D, 4 x 16 rows of 64 B"),
        "gather_8b": _scenario([gather], "element gather, 1024 x 8 B"),
        "chain_8x1k": _scenario(chain, "chain of 8 x 1 KiB"),
        "contig_16k_stall10": dataclasses.replace(
            _scenario([_contig(16384)], "contiguous 16 KiB, 10 % random stalls"), pause=10,
            seed=1),
        "two_channels_16k": _scenario([_contig(16384)], "2 channels x 16 KiB",
                                      [_contig(16384, src=0x10000, dst=0x30000)]),
    }


def run() -> dict:
    scs = scenarios()
    results = D.run(list(scs.values()), sim="verilator")
    out: dict = {}
    worst_model = 0.0
    for (name, sc), res in zip(scs.items(), results):
        problems = D.check(sc, res)
        if problems:
            raise AssertionError(f"bench {name}: RTL differs from golden:\n" + "\n".join(problems))
        g = D.golden(sc)
        regs = res["regs"]
        if name == "two_channels_16k":
            beats = regs[0]["WR_BEATS"] + regs[1]["WR_BEATS"]
            busy = max(regs[0]["BUSY_CYCLES"], regs[1]["BUSY_CYCLES"])
            out["eff_two_channels_16k"] = {"value": round(beats / busy, 4), "unit": "beats/cycle",
                                           "target": None, "beats": beats, "busy_cycles": busy}
            continue
        beats, busy = regs[0]["WR_BEATS"], regs[0]["BUSY_CYCLES"]
        est = g.channels[0].est_cycles
        err = abs(est - busy) / busy
        target = {"contig_4k": ">= 0.95", "contig_16k": ">= 0.95", "contig_64k": ">= 0.95",
                  "rows_2d_64b": ">= 0.80"}.get(name)
        out[f"eff_{name}"] = {"value": round(beats / busy, 4), "unit": "beats/cycle",
                              "target": target, "beats": beats, "busy_cycles": busy,
                              "golden_estimate": est, "note": sc.note}
        if sc.pause:  # the model is for a zero-wait memory: informative only
            out[f"model_err_{name}"] = {"value": round(err, 4), "unit": "fraction",
                                        "target": None}
            continue
        worst_model = max(worst_model, err)
        out[f"model_err_{name}"] = {"value": round(err, 4), "unit": "fraction",
                                    "target": "<= 0.10"}
    out["model_err_worst"] = {"value": round(worst_model, 4), "unit": "fraction",
                              "target": "<= 0.10"}
    out["config"] = {"channels": 2, "data_width": 64, "max_burst": 256, "fifo_depth": 512,
                     "memory": "cocotbext-axi AxiRam, zero wait", "simulator": "verilator"}
    return out
