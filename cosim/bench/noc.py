"""NoC benchmark: latency vs offered load (uniform random, transpose) on 4x4 and 8x8 meshes,
zero-load latency vs the analytical T0, and saturation throughput under uniform random.

Traffic is generated, timed and checked in hardware (rtl.noc.traffic.TrafficBench on
Verilator); cocotb only configures each point and reads the counters. Writes
build/bench/noc.json (via `make bench BENCH=noc`) and build/bench/noc.png.

Environment: NOC_BENCH_SIZES (default "4,8"), NOC_BENCH_MEASURE (cycles per point,
default 3000), NOC_BENCH_SIM (default verilator; icarus only for a quick 2x2 look),
NOC_BENCH_VPC (VCs per class for every size; default 2),
NOC_BENCH_PLOT_ONLY=1 (no simulation: noc.json and noc.png from the per-size files),
NOC_BENCH_PATTERNS (curves to measure, default "uniform,transpose"; "" for none: zero-load
and saturation points only), NOC_BENCH_LOADS (comma-separated offered loads replacing the
per-size defaults)."""

from __future__ import annotations

import json
import os
import time

from cosim.noc import TrafficPoint, run_traffic
from cosim.sim import BUILD
from golden import noc as g
from spec import noc as spec

LENGTH = 4          # flits per packet
LOADS = {2: [0.02, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9],
         4: [0.02, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9],
         8: [0.02, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5]}
SAT_RATE = 1.0      # packets/node/cycle offered: more than any node can inject


def _point(load, pattern, measure):
    return TrafficPoint(rate=min(1.0, load / LENGTH), pattern=pattern, length=LENGTH,
                        cls_mode=2, warmup=1000, measure=measure, drain_max=6 * measure)


# VCs per message class by mesh size (the traffic top is generated hierarchically: one
# router, local-port, generator and sink module for the whole mesh), buffer depth per VC
# (flits) and source-queue depth (packets per class).
VCS_PER_CLASS = {2: 2, 4: 2, 8: 2}
BENCH_DEPTH = 16
BENCH_QUEUE = 16


def _vpc(k):
    env = os.environ.get("NOC_BENCH_VPC")
    return int(env) if env else VCS_PER_CLASS.get(k, 1)


def _rows(points, k, sim, label):
    t = time.time()
    res = run_traffic(points, kx=k, ky=k, sim=sim, vcs_per_class=_vpc(k), depth=BENCH_DEPTH,
                      queue=BENCH_QUEUE)
    print(f"[noc bench] {k}x{k} {label}: {len(points)} points in {time.time() - t:.0f} s "
          "(first call includes Verilog generation and the simulator build)", flush=True)
    return res["rows"]


def merged_from_partials(sizes) -> dict:
    """noc.json contents assembled from the per-size files build/bench/noc_<k>x<k>.json
    (NOC_BENCH_PLOT_ONLY=1: no simulation, e.g. after sizes were run separately)."""
    result: dict = {"curves": {}, "config": {"assembled_from": []}}
    for k in sizes:
        path = BUILD / "bench" / f"noc_{k}x{k}.json"
        if not path.exists():
            continue
        part = json.loads(path.read_text())
        result["config"]["assembled_from"].append({"file": path.name, **part["config"]})
        result["curves"].update(part["curves"])
        result.update({kk: v for kk, v in part.items() if kk not in ("config", "curves")})
    vpc = {}
    for c in result["config"]["assembled_from"]:
        v = c.get("vcs_per_class")
        vpc.update(v if isinstance(v, dict) else {f"{k}x{k}": v for k in sizes
                                                    if f"noc_{k}x{k}.json" == c["file"]})
    result["config"]["vcs_per_class"] = vpc
    result["config"]["packet_flits"] = LENGTH
    return result


def run() -> dict:
    sizes = [int(s) for s in os.environ.get("NOC_BENCH_SIZES", "4,8").split(",")]
    if os.environ.get("NOC_BENCH_PLOT_ONLY", "") not in ("", "0"):
        result = merged_from_partials(sizes)
        _plot(result)
        return result
    measure = int(os.environ.get("NOC_BENCH_MEASURE", "3000"))
    sim = os.environ.get("NOC_BENCH_SIM", "verilator")
    result: dict = {"curves": {}, "config": {"simulator": sim, "packet_flits": LENGTH, "measure_cycles": measure,
                                             "vcs_per_class": {f"{k}x{k}": _vpc(k) for k in sizes},
                                             "buffer_depth": BENCH_DEPTH,
                                             "source_queue": BENCH_QUEUE,
                                             "switch_allocator_rounds": 2,
                                             "vc_choice": "lookahead (spec.VC_SUB)"}}
    for k in sizes:
        n = k * k
        groups = {"zero": [(0.004, _point(0.004, "uniform", 4 * measure))]}
        patterns = [p for p in os.environ.get("NOC_BENCH_PATTERNS",
                                              "uniform,transpose").split(",") if p]
        loads = ([float(x) for x in os.environ["NOC_BENCH_LOADS"].split(",")]
                 if os.environ.get("NOC_BENCH_LOADS") else LOADS.get(k, LOADS[8]))
        for pattern in patterns:
            groups[pattern] = [(load, _point(load, pattern, measure)) for load in loads]
        groups["saturation"] = [(SAT_RATE * LENGTH, TrafficPoint(
            rate=SAT_RATE, pattern="uniform", length=LENGTH, cls_mode=2, warmup=1000,
            measure=measure, drain_max=20 * measure))]
        curves: dict = {}
        errors = lost = 0
        # one simulator run per size: every run_bench call looks the Verilog up by the rtl/
        # sources, and regenerating an 8x8 top takes minutes whenever rtl/ changed meanwhile
        flat = [p for pts in groups.values() for _, p in pts]
        rows_all = _rows(flat, k, sim, f"{len(groups)} groups")
        for pattern, pts in groups.items():
            rows, rows_all = rows_all[:len(pts)], rows_all[len(pts):]
            for (load, _), r in zip(pts, rows):
                errors += sum(r[e] for e in ("err_route", "err_seq", "err_payload",
                                             "err_frame", "err_router"))
                lost += r["created"] - r["packets"]
                lat = r["lat_sum"] / r["marked"] if r["marked"] else None
                # per sending node (transpose: the k diagonal nodes send nothing)
                senders = n - k if pattern == "transpose" else n
                thr = r["flits_window"] / (senders * measure * (4 if pattern == "zero" else 1))
                curves.setdefault(pattern, []).append(
                    {"offered": load, "accepted": round(thr, 4),
                     "latency": round(lat, 2) if lat is not None else None,
                     "lat_max": r["lat_max"], "drained": not r["timed_out"],
                     "throttled": r["throttled"]})
                print(f"[noc bench] {k}x{k} {pattern:10s} offered {load:5.3f} accepted "
                      f"{thr:6.4f} latency {lat if lat is None else round(lat, 2)}", flush=True)
        result["curves"][f"{k}x{k}"] = curves
        t0 = g.mean_traffic_latency(spec.PAT_UNIFORM, k, k, LENGTH)
        z = curves["zero"][0]["latency"]
        cap = g.uniform_capacity(k, k)
        sat_thr = curves["saturation"][0]["accepted"]
        result[f"zero_load_latency_{k}x{k}"] = {"value": z, "unit": "cycles",
                                                "target": None, "analytical_T0": t0}
        result[f"zero_load_ratio_{k}x{k}"] = {"value": round(z / t0, 4), "unit": "measured/T0",
                                              "target": "<= 1.05"}
        result[f"saturation_{k}x{k}"] = {"value": sat_thr, "unit": "flits/node/cycle",
                                         "target": None, "bound": cap}
        result[f"saturation_frac_{k}x{k}"] = {"value": round(sat_thr / cap, 4),
                                              "unit": "of min(1,4/k)", "target": ">= 0.8"}
        result[f"errors_{k}x{k}"] = {"value": errors + lost, "unit": "errors+lost",
                                     "target": "== 0"}
        partial = BUILD / "bench" / f"noc_{k}x{k}.json"      # kept if a later size fails
        partial.parent.mkdir(parents=True, exist_ok=True)
        partial.write_text(json.dumps({kk: v for kk, v in result.items()
                                       if kk == "config" or kk.endswith(f"{k}x{k}")}
                                      | {"curves": {f"{k}x{k}": curves}}, indent=2) + "\n")
    _plot(result)
    return result


def _plot(result):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:      # pragma: no cover
        return
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for mesh, curves in result["curves"].items():
        for pattern in ("uniform", "transpose"):
            pts = [p for p in curves.get(pattern, []) if p["latency"] is not None]
            ax.plot([p["offered"] for p in pts], [p["latency"] for p in pts], marker="o",
                    label=f"{mesh} {pattern}")
    ax.set_xlabel("offered load (flits/sending node/cycle)")
    ax.set_ylabel("average packet latency (cycles)")
    ax.set_yscale("log")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    vpc = ", ".join(f"{m}: {v}" for m, v in result["config"]["vcs_per_class"].items())
    ax.set_title(f"maia-rtl NoC, {result['config']['packet_flits']}-flit packets, XY routing, "
                 f"VCs/class {vpc}", fontsize=10)
    out = BUILD / "bench"
    out.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(out / "noc.png", dpi=120)
    plt.close(fig)
