"""cocotb bench of the 4-chip RTL tray (Verilog top ``tray_bench``: rtl.chip.tray.Tray with
``open_mesh=True``, driven by cosim/tray/rtl_tray.py).

Per chip ``c{i}``: the chip-pair bench's per-chip model (cosim.chippair.bench, reused, not
copied): one cocotbext-axi ``AxiRam`` per HBM port over one bytearray (the chip's HBM), an
``AxiLiteMaster`` host on ``c{i}_s_axil``, an ``AxiStreamSink`` on every ``c{i}_nic{p}_wire_tx``
and an ``AxiStreamSource`` on every ``c{i}_nic{p}_wire_rx``. Every directed mesh wire (chip
c port p -> its peer's port) is the chip-pair bench's link coroutine with its own seeded
``golden.nic.LossyLink`` (drop, duplicate, reorder, corrupt; drop 1.0 cuts the wire).

Sequence: reset; wait for STATUS.ready on every chip; each chip's host writes (NIC CSR
set-up, REG_TRAY_RANK); RING/SIZE of the chip queues; IRQ_ENABLE; then the doorbells (queue
TAILs of chip 0, 1, 2, 3). Then the hosts read STATUS every ``poll`` cycles until, three polls
in a row, no queue is pending, every NIC port is idle and every wire is empty.

Inputs (cosim.tray.rtl_tray.run builds them), for i in 0..3:
    hbm_i     uint8 [hbm_window] initial HBM image
    host_i    int64 [n, 2] (host address, value) written before the queues
    queues_i  int64 [n, 4] (queue, ring, size, tail)
    wires     int64 [w, 4] (chip, port, peer chip, peer port): one row per directed wire
    fates     float64 [w, 5] (seed, drop, dup, reorder, corrupt) per wire
    max_cycles, poll
Outputs: hbm_i, qregs_i (Q_REGS per queue), counters_i (per port, spec.nic.COUNTERS),
done_i (cycle after the doorbells at which chip i's STATUS first showed no pending queue),
frames_i (frames sent per port), hbm_prof_i (int64 [HBM ports, bins, 2]: bytes read and
written by each HBM port's memory model per PROF_BIN cycles, bin 0 holding the doorbells'
cycle, t0 // PROF_BIN), fates (per wire: frames dropped, duplicated, reordered,
corrupted, delivered as sent), wire_stats (per wire: frames, frame bytes, first and last
frame's cycle after the doorbells, as sent by the chip), cycles (doorbells to the end),
frame_log (every frame a chip sent on a wire and, two trays, every frame the switch started
sending to a chip: rows of cosim.tray.profile.LOG_FIELDS, cycles after the doorbells).
Optional input prof_bin (cycles per hbm_prof bin, default PROF_BIN).

Two trays (top of ``rtl.chip.tray.tray2_bench_tiny4``, cosim/tray/rtl_tray.py ``run2``), extra
inputs: n_chips (8), uplinks int64 [k, 3] (chip, port, MAC: switch port k), up_fates float64
[k, 5] (seed, drop, dup, reorder, corrupt of ingress k), switch_buffer (bytes per output
FIFO), and per chip (optional) bell_i int64 [n, 2] (host address, value) written after the
queue tails (NIC doorbells of work requests the host posted). The uplinks meet in
cosim.tray.rtl_switch (SwitchModel + run_switch). Extra outputs: switch (counters in
rtl_switch.COUNTERS order), switch_max (per output port: most bytes, most frames queued),
up_fates (per ingress, as fates), up_stats (per switch port: frames in, frame bytes).
Optional switch inputs (absent: a static table, no cut): switch_learning (1: learning and
flooding from an empty table), switch_ageing (cycles; 0: none), up_cuts int64 [n, 5] (switch
port, ingress cut, egress cut, start, end: cycles after the doorbells, end < 0 = never
mended; rtl_switch.run_switch). Extra outputs: switch_table (MAC, port rows at the end),
switch_flood (rx index, destination MAC of every flooded frame), switch_learn (rx index, MAC,
port of every entry learned or moved).

Mid-run host steps (optional, cosim.tray.rtl_tray.HostStep): n_steps; for step s, once the
tray is idle (as at the end): outputs step{s}_cycle (after the doorbells), step{s}_qregs_i
and step{s}_done_i (as qregs_i, done_i, at that point); then per chip the host zeroes the
HBM ranges step{s}_zero_i int64 [n, 2] (address, length: backdoor, the chip idle) and writes
step{s}_host_i int64 [n, 2] (host address, value); every mesh wire takes the probabilities
of step{s}_fates float64 [w, 5] (seed column unused: each wire's generator goes on), which
mends cut wires; then the queue tails step{s}_tail_i int64 [n, 2] (queue, tail) and the
polls again until idle. The final outputs (qregs_i, done_i, cycles) are those of the end.
"""

from __future__ import annotations

from types import SimpleNamespace

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles

from cosim.chip.bench import _cfg_from_params
from cosim.chippair.bench import ChipSide, link
from cosim.linkbench import PERIOD_NS, cycle
from cosim.sim import bench_inputs, bench_outputs
from cosim.tray.profile import EGRESS, LOG_FIELDS, TX, log_rows
from cosim.tray.rtl_switch import COUNTERS, SwitchModel, run_switch
from golden.nic import LossyLink
from spec import chip as C
from spec import nic as S

N_CHIPS = 4
FATES = ("drop", "dup", "reorder", "corrupt", "ok")
PROF_BIN = 1024             # cycles per bin of the HBM port profile (hbm_prof_i)


def _profile(ram, prof_bin: int = PROF_BIN) -> dict:
    """Count the bytes an AxiRam reads and writes, per ``prof_bin`` cycles (absolute cycle
    bins: {bin: [read bytes, written bytes]}), by wrapping its memory accesses (one count per
    beat, no per-cycle callback)."""
    bins: dict[int, list[int]] = {}
    rd, wr = ram.read_if._read, ram.write_if._write

    async def _read(address, length):
        bins.setdefault(cycle() // prof_bin, [0, 0])[0] += length
        return await rd(address, length)

    async def _write(address, data):
        bins.setdefault(cycle() // prof_bin, [0, 0])[1] += len(data)
        await wr(address, data)

    ram.read_if._read, ram.write_if._write = _read, _write
    return bins


@cocotb.test()
async def tray(dut):
    cfg = _cfg_from_params()
    vec = bench_inputs()
    n_chips = int(vec["n_chips"]) if "n_chips" in vec else N_CHIPS
    cocotb.start_soon(Clock(dut.clk, PERIOD_NS, unit="ns").start())
    dut.rst.value = 1
    chips = [ChipSide(dut, f"c{i}", cfg, vec[f"hbm_{i}"].astype(np.uint8).tobytes())
             for i in range(n_chips)]
    prof_bin = int(vec.get("prof_bin", PROF_BIN))
    profs = [[_profile(ram, prof_bin) for ram in ch.rams] for ch in chips]
    await ClockCycles(dut.clk, 4)
    dut.rst.value = 0
    await ClockCycles(dut.clk, 2)
    state, links = {}, []
    wires = np.asarray(vec["wires"]).reshape(-1, 4).tolist()
    fates = np.asarray(vec["fates"]).reshape(-1, 5).tolist()
    for (c, p, d, dp), (seed, drop, dup, reorder, corrupt) in zip(wires, fates):
        lossy = LossyLink(int(seed), drop=drop, dup=dup, reorder=reorder, corrupt=corrupt)
        links.append(lossy)
        # the chip-pair link joins port p of tx to port p of rx: give it a view of the
        # receiving chip whose port p is the peer's port dp
        rx = SimpleNamespace(sources={p: chips[d].sources[dp]})
        state[(c, p)] = True
        cocotb.start_soon(link(dut, chips[c], rx, p, lossy, state, (c, p)))
    model, up_links, up_sent, t_bell, egress = None, [], [], {}, []
    if "uplinks" in vec:
        ups = np.asarray(vec["uplinks"]).reshape(-1, 3).tolist()
        learning = bool(int(vec.get("switch_learning", 0)))
        ageing = int(vec.get("switch_ageing", 0)) or None
        model = SwitchModel({} if learning else
                            {int(mac): k for k, (_c, _p, mac) in enumerate(ups)}, len(ups),
                            buffer=int(vec["switch_buffer"]), learning=learning, ageing=ageing)
        up_cuts = [tuple(int(x) for x in row)
                   for row in np.asarray(vec.get("up_cuts", np.zeros((0, 5)))).reshape(-1, 5)]
        for seed, drop, dup, reorder, corrupt in np.asarray(vec["up_fates"]).reshape(-1, 5):
            up_links.append(LossyLink(int(seed), drop=drop, dup=dup, reorder=reorder,
                                      corrupt=corrupt))
        state["switch"] = True
        cocotb.start_soon(run_switch(dut.clk, model, [chips[c].sinks[p] for c, p, _ in ups],
                                     [chips[c].sources[p] for c, p, _ in ups], up_links,
                                     up_sent, state, "switch", up_cuts, t_bell, egress))
    for ch in chips:
        ident = await ch.rd(C.REG_ID)
        assert ident == C.ID_MAGIC, f"chip {ch.name}: ID {ident:#010x}"
        waited = 0
        while not (await ch.rd(C.REG_STATUS)) & 1:
            await ClockCycles(dut.clk, 16)
            waited += 16
            assert waited < 100_000, f"chip {ch.name} never became ready"
    for i, ch in enumerate(chips):
        for addr, value in vec[f"host_{i}"].reshape(-1, 2).tolist():
            await ch.wr(addr, value)
        for q, ring, size, _tail in np.asarray(vec[f"queues_{i}"]).reshape(-1, 4).tolist():
            await ch.wr(C.q_reg(q, C.Q_RING), ring)
            await ch.wr(C.q_reg(q, C.Q_SIZE), size)
        await ch.wr(C.REG_IRQ_ENABLE, 0xFFFF_FFFF)
    t0 = t_bell["t"] = cycle()
    for i, ch in enumerate(chips):
        for q, _ring, _size, tail in np.asarray(vec[f"queues_{i}"]).reshape(-1, 4).tolist():
            await ch.wr(C.q_reg(q, C.Q_TAIL), tail)
        for addr, value in np.asarray(vec.get(f"bell_{i}", np.zeros((0, 2)))).reshape(
                -1, 2).tolist():
            await ch.wr(addr, value)
    max_cycles, poll = int(vec["max_cycles"]), int(vec["poll"])

    async def settle(t_start: int) -> list[int]:
        """Poll until idle; per chip the cycle (after t0) its queues stopped pending."""
        done = [-1] * n_chips
        stable = 0
        while stable < 3:
            await ClockCycles(dut.clk, poll)
            st = [await ch.rd(C.REG_STATUS) for ch in chips]
            for i, s in enumerate(st):
                if done[i] < 0 and not s & 2:
                    done[i] = cycle() - t0
            idle = all((s & 2) == 0 and (s & 4) for s in st) and all(state.values())
            stable = stable + 1 if idle else 0
            if cycle() - t_start > max_cycles:
                raise AssertionError(
                    f"tray not done after {max_cycles} cycles: STATUS "
                    + " ".join(f"{s:#x}" for s in st)
                    + f" (bit 1 queue pending, bit 2 NICs idle), wires idle {state}, frames "
                    + f"sent {[len(ch.sent) for ch in chips]}")
        return done

    async def qregs(ch) -> np.ndarray:
        return np.array([[await ch.rd(C.q_reg(q, off)) for off in C.Q_REGS.values()]
                         for q in range(cfg.queues)], dtype=np.uint64)

    out = {}
    done = await settle(t0)
    for s in range(int(vec.get("n_steps", 0))):     # mid-run host steps, the tray idle
        out[f"step{s}_cycle"] = np.int64(cycle() - t0)
        for i, ch in enumerate(chips):
            out[f"step{s}_qregs_{i}"] = await qregs(ch)
            out[f"step{s}_done_{i}"] = np.int64(done[i])
            for a, n in np.asarray(vec[f"step{s}_zero_{i}"]).reshape(-1, 2).tolist():
                ch.hbm[a:a + n] = bytes(n)          # the host zeroes HBM (CQs)
            for addr, value in np.asarray(vec[f"step{s}_host_{i}"]).reshape(-1, 2).tolist():
                await ch.wr(addr, value)
        for lk, row in zip(links, np.asarray(vec[f"step{s}_fates"]).reshape(-1, 5).tolist()):
            lk.drop, lk.dup, lk.reorder, lk.corrupt = row[1:]   # cut links mended or not
        t_step = cycle()
        for i, ch in enumerate(chips):
            for q, tail in np.asarray(vec[f"step{s}_tail_{i}"]).reshape(-1, 2).tolist():
                await ch.wr(C.q_reg(q, C.Q_TAIL), tail)
        done = await settle(t_step)
    cycles = cycle() - t0
    for i, ch in enumerate(chips):
        out[f"hbm_{i}"] = np.frombuffer(bytes(ch.hbm), dtype=np.uint8)
        out[f"qregs_{i}"] = await qregs(ch)
        cnt = []
        for p in range(cfg.nic_ports):
            base = cfg.nic_csr_base(p)
            cnt.append([await ch.rd(base + S.CSR_COUNTER_BASE + 4 * k)
                        for k in range(len(S.COUNTERS))])
        out[f"counters_{i}"] = np.array(cnt, dtype=np.uint64)
        out[f"done_{i}"] = np.int64(done[i])
        out[f"frames_{i}"] = np.array([sum(1 for _, q, _ in ch.sent if q == p)
                                       for p in range(cfg.nic_ports)], np.int64)
    out["fates"] = np.array([[sum(1 for k, _ in lk.log if k == f) for f in FATES]
                             for lk in links], np.int64)
    stats = []
    for c, p, _d, _dp in wires:
        sent = [(t - t0, len(f)) for t, q, f in chips[c].sent if q == p and t >= t0]
        stats.append([len(sent), sum(n for _, n in sent), min((t for t, _ in sent), default=-1),
                      max((t for t, _ in sent), default=-1)])
    out["wire_stats"] = np.array(stats, np.int64)
    log = []
    for i, ch in enumerate(chips):
        for p in range(cfg.nic_ports):
            log += log_rows(t0, TX, i, p, [(t, f) for t, q, f in ch.sent if q == p])
    if model is not None:
        for k, (c, p, _mac) in enumerate(ups):
            log += log_rows(t0, TX, c, p, [(t, f) for t, q, f in up_sent if q == k])
            log += log_rows(t0, EGRESS, c, p, [(t, f) for t, q, f in egress if q == k])
    out["frame_log"] = np.array(sorted(log), np.int64).reshape(-1, len(LOG_FIELDS))
    b0, nb = t0 // prof_bin, (t0 + cycles) // prof_bin - t0 // prof_bin + 1
    for i, per_port in enumerate(profs):
        prof = np.zeros((len(per_port), nb, 2), np.int64)
        for k, bins in enumerate(per_port):
            for b, (r, w) in bins.items():
                if 0 <= b - b0 < nb:
                    prof[k, b - b0] = (r, w)
        out[f"hbm_prof_{i}"] = prof
    if model is not None:
        out["switch"] = np.array([model.counters[k] for k in COUNTERS], np.int64)
        out["switch_max"] = np.array(list(zip(model.max_qbytes, model.max_qframes)), np.int64)
        out["up_fates"] = np.array([[sum(1 for k, _ in lk.log if k == f) for f in FATES]
                                    for lk in up_links], np.int64)
        out["up_stats"] = np.array([[sum(1 for _, q, _ in up_sent if q == k),
                                     sum(len(f) for _, q, f in up_sent if q == k)]
                                    for k in range(model.n_ports)], np.int64)
        out["switch_table"] = np.array(model.table_rows(), np.int64).reshape(-1, 2)
        out["switch_flood"] = np.array(model.flood_log, np.int64).reshape(-1, 2)
        out["switch_learn"] = np.array(model.learn_log, np.int64).reshape(-1, 3)
    dut._log.info("tray: %d cycles, frames sent %s", cycles, [len(ch.sent) for ch in chips])
    bench_outputs(cycles=np.int64(cycles), **out)
