"""The 4-chip RTL tray (rtl.chip.tray.Tray of ``tiny_tray`` chips, mesh wires as top ports)
running COLLECTIVE entries on the chips' collective engines, with a seeded fault-injecting
link layer on every directed mesh wire (cocotb bench: cosim/tray/rtl_bench.py).

The host of each chip (rank = chip index) writes the NIC set-up of docs/tray.md "Topology"
for each of its three mesh ports (queue pair QP_MESH towards the peer at the other end, the
rings at spec.tray.ring_addr, the window over [0, ring_base) with key RKEY; the same set-up
as cosim.tray.pair.port_nic), REG_TRAY_RANK, the queue registers and the doorbell.

    res = cosim.tray.rtl_tray.run({r: hbm_r for r in range(4)}, {r: [entry] for r in ...},
                                  faults=dict(drop=0.02), seed=7, cut=[(0, 1)])
    res[rank]["hbm"], res[rank]["queues"][0], res[rank]["counters"][port], res["cycles"]

Wire seeds: directed wire w (chip c, port p; w = 3 c + p) uses ``seed * 1000 + w`` (the
transport model's rule, docs/tray.md "Fault behaviour").
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from cosim.chippair import nic_writes
from cosim.tray.pair import port_nic
from golden import chip as G
from spec import chip as C
from spec import nic as S
from spec import tray as T

__all__ = ["CFG", "RING", "QSIZE", "BENCH_MODULE", "HostStep", "reinit", "wires", "run"]

CFG = C.TINY_TRAY
BENCH_MODULE = "cosim.tray.rtl_bench"
RING = 0xD8000            # host queue ring of every chip (just below ring_base 0xE0000)
QSIZE = 64
FAULT_KEYS = ("drop", "dup", "reorder", "corrupt")


def wires() -> list[tuple[int, int, int, int]]:
    """Directed mesh wires (chip, port, peer chip, peer port), wire index 3 chip + port."""
    out = []
    for c in range(T.CHIPS_PER_TRAY):
        for p, d in enumerate(T.mesh_peers(c)):
            out.append((c, p, d, T.mesh_peers(d).index(c)))
    return out


def _fates(faults, seed: int, cut) -> np.ndarray:
    faults = dict(faults or {})
    bad = set(faults) - set(FAULT_KEYS)
    if bad:
        raise ValueError(f"faults: unknown keys {sorted(bad)}; use {FAULT_KEYS}")
    for k, v in faults.items():
        if not isinstance(v, (int, float)) or not 0.0 <= v <= 1.0:
            raise ValueError(f"faults: {k} must be a probability in [0, 1], got {v!r}")
    if sum(faults.values()) > 1.0:
        raise ValueError("faults: drop + dup + reorder + corrupt must not exceed 1")
    cuts = set()
    for pair in cut:
        if (len(pair) != 2 or not all(isinstance(x, int) for x in pair)
                or not all(0 <= x < T.CHIPS_PER_TRAY for x in pair) or pair[0] == pair[1]):
            raise ValueError(f"cut: pairs of distinct chips 0..3, got {pair!r}")
        cuts.add(frozenset(pair))
    rows = []
    for w, (c, _p, d, _dp) in enumerate(wires()):
        if frozenset((c, d)) in cuts:
            rows.append((seed * 1000 + w, 1.0, 0.0, 0.0, 0.0))
        else:
            rows.append((seed * 1000 + w, *(float(faults.get(k, 0.0)) for k in FAULT_KEYS)))
    return np.array(rows, dtype=np.float64)


@dataclass(frozen=True)
class HostStep:
    """A host step in the middle of a run (``run``/``run2`` ``steps=``): once the tray is
    idle, each rank's host zeroes the HBM ranges ``zero`` (rank -> [(address, length)]) and
    writes its chip's CSRs ``csr`` (rank -> [(address, value)]), every mesh wire takes
    ``faults`` and ``cut`` from then on (a cut of the run before is mended unless given
    again), then each rank's ``entries`` (rank -> list of queue entries, after its earlier
    ones in the ring) are submitted. :func:`reinit` gives ``csr`` and ``zero`` for the
    re-initialisation after an error."""
    entries: dict
    csr: dict = field(default_factory=dict)
    zero: dict = field(default_factory=dict)
    faults: dict | None = None
    cut: tuple = ()


def reinit(cfg: C.ChipConfig, ranks, trays: int = 1, gen: int = 1,
           resync: bool = True) -> tuple[dict, dict]:
    """The hosts' re-initialisation of the queue pairs after a failed multi-rank COLLECTIVE
    of the group ``ranks`` (docs/tray.md "After an error"): every queue pair the engines
    use (spec.tray.route) of every port of each rank of ``ranks``, and the queue pair at the
    other end of each, get new PSNs (``gen`` >= 1: 0x10000 gen + 0x100 sender + 1, the same
    at both ends; the set-up at reset is generation 0) and ctrl = 1, and their completion
    queues are zeroed; then every rank of the tray(s) writes REG_TRAY_RESYNC: the engine
    channels of its re-initialised queue pairs and the sequence bit
    (spec.tray.resync_word), so each engine counts from 0 on every queue pair whose NIC
    indices ctrl = 1 zeroed, whatever it did before (failed, completed the failed command,
    or used the queue pair earlier), and all ranks restart at the same sequence number.
    ``resync=False`` leaves the register out (the rule before it: only right where each
    re-initialised end's engine already counts from 0; for tests). Returns (csr, zero) for
    :class:`HostStep`."""
    p = T.chip_params(cfg, trays)
    if not isinstance(gen, int) or not 1 <= gen <= 0xFF:
        raise ValueError(f"gen: must be an int in 1..255, got {gen!r}")
    ranks = list(ranks)
    if not ranks or any(not isinstance(r, int) or not 0 <= r < p.n_ranks for r in ranks):
        raise ValueError(f"ranks: ranks of 0..{p.n_ranks - 1}, got {ranks!r}")
    ends = sorted({e for r in ranks for q in range(p.n_ranks) if q != r
                   for e in ((r, q), (q, r))})
    csr, zero = {}, {}
    for r, q in ends:
        rt = T.route(r, q, p.n_ranks)
        base = cfg.nic_csr_base(rt.port)
        csr.setdefault(r, []).extend([
            (base + S.qp_reg(rt.qp, "sq_psn"), 0x10000 * gen + 0x100 * r + 1),
            (base + S.qp_reg(rt.qp, "rq_psn"), 0x10000 * gen + 0x100 * q + 1),
            (base + S.qp_reg(rt.qp, "ctrl"), 1)])
        zero.setdefault(r, []).append((T.ring_addr(p, rt.port, rt.qp) + T.CQ_OFF,
                                       S.CQE_BYTES << T.CQ_LOG2))
    if resync:
        for r in range(p.n_ranks):
            qps = [(T.route(a, b, p.n_ranks).port, T.route(a, b, p.n_ranks).qp)
                   for a, b in ends if a == r]
            csr.setdefault(r, []).append((C.REG_TRAY_RESYNC, T.resync_word(cfg, qps, seq=True)))
    return csr, zero


def _steps(steps, ranks, first: dict, fates) -> tuple[dict, dict]:
    """The bench inputs of the host steps (rtl_bench "Mid-run host steps") and every rank's
    entries of the whole run in ring order. ``first``: rank -> entries before any step;
    ``fates(faults, cut)``: the wires' fault rows."""
    steps = list(steps)
    if not all(isinstance(x, HostStep) for x in steps):
        raise ValueError("steps: a list of HostStep")
    inputs, allents = {"n_steps": np.int64(len(steps))}, {r: list(first.get(r, ())) for r in ranks}
    for k, st in enumerate(steps):
        for name in ("entries", "csr", "zero"):
            if not set(getattr(st, name)) <= set(ranks):
                raise ValueError(f"steps: step {k} {name}: keys must be ranks {sorted(ranks)}")
        inputs[f"step{k}_fates"] = fates(st.faults, st.cut)
        for r in ranks:
            new = list(st.entries.get(r, ()))
            allents[r] += new
            inputs[f"step{k}_tail_{r}"] = np.array([[0, len(allents[r])]] if new else [],
                                                   np.int64).reshape(-1, 2)
            inputs[f"step{k}_host_{r}"] = np.array(st.csr.get(r, []), np.int64).reshape(-1, 2)
            inputs[f"step{k}_zero_{r}"] = np.array(st.zero.get(r, []), np.int64).reshape(-1, 2)
    return inputs, allents


def _step_results(out: dict, n_steps: int, ranks) -> list[dict]:
    """Per host step: the cycle it began (after the doorbells) and, per rank, the queue
    registers and done cycle just before it."""
    return [{"cycle": int(out[f"step{k}_cycle"]), **{r: {
        "queues": [{n: int(v) for n, v in zip(C.Q_REGS, row)}
                   for row in out[f"step{k}_qregs_{r}"]],
        "done": int(out[f"step{k}_done_{r}"])} for r in ranks}} for k in range(n_steps)]


def run(hbm: dict, entries: dict, *, faults: dict | None = None, seed: int = 1, cut=(),
        sim: str = "verilator", max_cycles: int = 3_000_000, poll: int = 256,
        timeout_cycles: int = 4000, retry_limit: int = 16, tag: str = "rtltray",
        cfg: C.ChipConfig | None = None, make=None, prof_bin: int = 1024,
        steps=()) -> dict:
    """``hbm``: rank -> HBM image (uint8 [hbm_window]) for ranks 0..3; ``entries``: rank ->
    list of 32-byte queue entries (written into the ring at RING, queue 0); the ring area
    [ring_base, hbm_window) is zeroed (fresh completion queues). ``faults``: probabilities
    (drop, dup, reorder, corrupt) on every wire; ``cut``: chip pairs whose link loses every
    frame in both directions. Returns res[rank] = {hbm, queues (Q_REGS dicts), counters (per
    port), done (cycles to the chip's last queue entry retired), frames (per port), hbm_prof
    (per HBM port and 1024-cycle bin: bytes read, bytes written; rtl_bench.PROF_BIN)},
    res["cycles"] (doorbells to the whole tray idle), res["fates"] (per wire: drop, dup,
    reorder, corrupt, ok counts), res["wires"] (per wire, in :func:`wires` order: frames,
    frame bytes, first and last frame's cycle after the doorbells, as sent). ``cfg`` / ``make``:
    another chip configuration and its module-level ``tray_bench`` factory (both or neither;
    default CFG and tray_bench_tiny); the host ring is 32 KiB below its ring_base.
    ``prof_bin``: cycles per hbm_prof bin; res["frame_log"]: every frame sent on a wire
    (cosim.tray.profile.LOG_FIELDS rows).
    ``steps``: :class:`HostStep` s run in order after the tray is idle (their entries follow
    ``entries`` in the ring); res["steps"][k] = {cycle (after the doorbells), rank: {queues,
    done} just before step k}; the other results are those of the end."""
    from cosim.sim import run_bench
    from rtl.chip.tray import tray_bench_tiny

    ranks = set(range(T.CHIPS_PER_TRAY))
    if set(hbm) != ranks or set(entries) != ranks:
        raise ValueError("hbm, entries: one item for each of ranks 0..3")
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed: must be an int >= 0, got {seed!r}")
    if (cfg is None) != (make is None):
        raise ValueError("cfg, make: give both or neither")
    if cfg is None:
        cfg, make = CFG, tray_bench_tiny
    p = T.chip_params(cfg)
    ring = p.ring_base - 0x8000         # RING for CFG
    inputs = {"wires": np.array(wires(), np.int64), "fates": _fates(faults, seed, cut),
              "max_cycles": np.int64(max_cycles), "poll": np.int64(poll),
              "prof_bin": np.int64(_prof_bin(prof_bin))}
    steps = list(steps)
    step_in, allents = _steps(steps, sorted(ranks), entries, lambda f, c: _fates(f, seed, c))
    inputs.update(step_in)
    for rank in sorted(ranks):
        img = np.array(hbm[rank], dtype=np.uint8)
        if img.shape != (cfg.hbm_window,):
            raise ValueError(f"hbm: rank {rank} needs uint8 [{cfg.hbm_window}]")
        ents = list(entries[rank])
        if not 1 <= len(ents) <= len(allents[rank]) < QSIZE:
            raise ValueError(f"entries: rank {rank} needs 1..{QSIZE - 1} entries (steps "
                             "included)")
        img[p.ring_base:] = 0
        for i, e in enumerate(allents[rank]):
            img[ring + 32 * i:ring + 32 * i + 32] = np.frombuffer(e, np.uint8)
        conf = []
        for peer in sorted(ranks - {rank}):
            port, nic = port_nic(cfg, rank, peer)
            c, _ = nic_writes(cfg, port, nic, timeout_cycles=timeout_cycles,
                              retry_limit=retry_limit)
            conf.append(c)
        conf.append(np.array([[C.REG_TRAY_RANK, rank]], np.int64))
        inputs.update({f"hbm_{rank}": img, f"host_{rank}": np.concatenate(conf),
                       f"queues_{rank}": np.array([[0, ring, QSIZE, len(ents)]], np.int64)})
    out = run_bench(name=f"tray_bench_{cfg.name}", toplevel="tray_bench", make=make,
                    params=cfg.asdict(), test_module=BENCH_MODULE, testcase="tray", sim=sim,
                    tag=tag, inputs=inputs, hierarchical=True)
    res = {"cycles": int(out["cycles"]), "fates": out["fates"], "wires": out["wire_stats"],
           "frame_log": out.get("frame_log"),
           "steps": _step_results(out, len(steps), sorted(ranks))}
    res.update(_per_rank(out, sorted(ranks)))
    return res


def _prof_bin(prof_bin) -> int:
    if isinstance(prof_bin, bool) or not isinstance(prof_bin, int) or prof_bin < 1:
        raise ValueError(f"prof_bin: must be an int >= 1 (cycles), got {prof_bin!r}")
    return prof_bin


def _per_rank(out: dict, ranks) -> dict:
    """rank -> HBM image, queue registers, NIC counters per port, done cycle, frames per port
    (the tray bench's outputs)."""
    return {rank: {
        "hbm": out[f"hbm_{rank}"],
        "queues": [{n: int(v) for n, v in zip(C.Q_REGS, row)} for row in out[f"qregs_{rank}"]],
        "counters": [dict(zip(S.COUNTERS, row)) for row in out[f"counters_{rank}"].tolist()],
        "done": int(out[f"done_{rank}"]),
        "frames": out[f"frames_{rank}"].tolist(),
        "hbm_prof": out.get(f"hbm_prof_{rank}"),
    } for rank in ranks}


# --- two trays: 8 chips, uplinks through the switch (cosim/tray/rtl_switch.py) ---------------

CFG2 = C.TINY_TRAY4
RING2 = T.chip_params(CFG2, 2).ring_base - 0x8000   # host queue ring below the NIC rings
N2 = 2 * T.CHIPS_PER_TRAY


def uplink_nic(cfg: C.ChipConfig, rank: int, hbm: np.ndarray):
    """The golden NIC of rank ``rank``'s uplink (port spec.tray.UPLINK) over ``hbm`` (shared,
    golden.chip.chip_nic): queue pair j towards chip j of the other tray (spec.tray.route),
    rings at spec.tray.ring_addr, the RKEY window over [0, ring_base)."""
    p = T.chip_params(cfg, 2)
    nic = G.chip_nic(cfg, hbm, mac=T.port_mac(rank, T.UPLINK), ip=T.port_ip(rank, T.UPLINK))
    nic.set_window(0, base=0, length=p.ring_base, key=T.RKEY,
                   perm=S.PERM_VALID | S.PERM_REMOTE_WRITE)
    other = 1 - T.tray_of(rank)
    for chip in range(T.CHIPS_PER_TRAY):
        peer = T.rank_of(other, chip)
        rt = T.route(rank, peer, p.n_ranks)
        base = T.ring_addr(p, rt.port, rt.qp)
        nic.setup_qp(rt.qp, dest_qpn=S.QPN_BASE + rt.peer_qp,
                     dest_mac=T.port_mac(peer, rt.peer_port), dest_ip=T.port_ip(peer, rt.peer_port),
                     sq_base=base + T.SQ_OFF, sq_log2=T.SQ_LOG2, cq_base=base + T.CQ_OFF,
                     cq_log2=T.CQ_LOG2, rq_base=base + T.RQ_OFF, rq_log2=T.RQ_LOG2,
                     rq_slot_log2=T.RQ_SLOT_LOG2, sq_psn=0x100 * rank + 1,
                     rq_psn=0x100 * peer + 1)
    return nic


def mesh_nic(cfg: C.ChipConfig, rank: int, peer: int):
    """(port, golden NIC) of the mesh port of ``rank`` towards ``peer`` of the same tray on a
    two-tray system (cosim.tray.pair.port_nic with 8 ranks)."""
    return port_nic(cfg, rank, peer, trays=2)


def wires2() -> list[tuple[int, int, int, int]]:
    """Directed mesh wires of both trays (chip, port, peer chip, peer port), chips 0..7,
    wire index 3 chip + port."""
    return [(4 * t + c, p, 4 * t + d, dp) for t in range(2) for c, p, d, dp in wires()]


def run2(hbm: dict, entries: dict | None = None, uplinks: dict | None = None, *,
         faults: dict | None = None, uplink_faults: dict | None = None, seed: int = 1,
         switch_buffer: int = 64 * 1024, sim: str = "verilator", max_cycles: int = 3_000_000,
         poll: int = 256, timeout_cycles: int = 4000, retry_limit: int = 16,
         tag: str = "rtltray2", switch_learning: bool = False, switch_ageing: int | None = None,
         uplink_cut: dict | None = None, cfg: C.ChipConfig | None = None,
         make=None, prof_bin: int = 1024, cut=(), steps=()) -> dict:
    """Two trays of ``tiny_tray4`` chips (ranks 0..7, rank = 4 tray + chip), the uplinks
    joined by the switch. ``hbm``: rank -> HBM image; ``entries``: rank -> list of 32-byte
    queue entries (queue 0, ring at RING2; a rank may have none); ``uplinks``: rank -> a
    golden uplink NIC (:func:`uplink_nic` over that rank's image, with the work requests the
    host posted: their WQEs must be in ``hbm[rank]``, their doorbells are written after the
    queue tails). Every rank's image has its ring area zeroed by the caller's choice: this
    function zeroes [ring_base, hbm_window) only for ranks without an uplink NIC.
    ``faults`` on every mesh wire, ``uplink_faults`` on every switch ingress (wire seeds
    ``seed * 1000 + w`` for mesh wire w, ``seed * 1000 + 100 + k`` for ingress k).
    ``switch_learning``: the switch learns source MACs from an empty table and floods unknown
    destinations (default False: the static table, see docs/tray.md "Two trays in RTL");
    ``switch_ageing``: cycles after which a learned entry expires (None: never).
    ``uplink_cut``: rank -> "both", "tx" or "rx" (the rank's uplink wire to the switch, from
    it, or both, lose every frame for the whole run) or (that, start, end) (cut from ``start``
    to ``end`` cycles after the doorbells, then mended; end < 0: never).
    Returns res[rank] as :func:`run`, plus res["switch"] (counters dict), res["switch_max"]
    (per port: bytes, frames), res["up_fates"], res["up_stats"] (per port: frames, bytes),
    res["switch_table"] ({MAC: port} at the end), res["switch_flood"] ((rx index, destination
    MAC) per flooded frame), res["switch_learn"] ((rx index, MAC, port) per entry learned or
    moved). ``cfg`` / ``make``: another two-tray chip configuration (4 NIC ports, 4 queue
    pairs) and its module-level two-tray ``tray_bench`` factory (both or neither; default
    CFG2 and tray2_bench_tiny4); the host ring is 32 KiB below its ring_base. ``prof_bin``
    and res["frame_log"] (the switch's egress included) as :func:`run`.
    ``cut``: pairs of ranks of one tray whose mesh link loses every frame both ways;
    ``steps``: as :func:`run` (a step's ``cut`` likewise), res["steps"] too."""
    from cosim.chippair import nic_writes
    from cosim.sim import run_bench
    from cosim.tray.rtl_switch import COUNTERS
    from rtl.chip.tray import tray2_bench_tiny4

    ranks = set(range(N2))
    entries = dict(entries or {})
    uplinks = dict(uplinks or {})
    if set(hbm) != ranks:
        raise ValueError("hbm: one image for each of ranks 0..7")
    if not set(entries) <= ranks or not set(uplinks) <= ranks:
        raise ValueError("entries, uplinks: keys must be ranks 0..7")
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed: must be an int >= 0, got {seed!r}")
    if not isinstance(switch_learning, bool):
        raise ValueError(f"switch_learning: must be True or False, got {switch_learning!r}")
    if switch_ageing is not None and (isinstance(switch_ageing, bool) or not isinstance(
            switch_ageing, int) or switch_ageing < 1 or not switch_learning):
        raise ValueError(f"switch_ageing: None or an int >= 1 with switch_learning=True, got "
                         f"{switch_ageing!r}")
    if (cfg is None) != (make is None):
        raise ValueError("cfg, make: give both or neither")
    if cfg is None:
        cfg, make = CFG2, tray2_bench_tiny4
    p = T.chip_params(cfg, 2)
    ring2 = p.ring_base - 0x8000        # RING2 for cfg
    mesh_fates = _fates2(faults, seed, cut)
    steps = list(steps)
    step_in, allents = _steps(steps, range(N2), entries, lambda f, c: _fates2(f, seed, c))
    up_fates = _fates(uplink_faults, seed, ())[:N2]
    up_fates[:, 0] = [seed * 1000 + 100 + k for k in range(N2)]
    inputs = {"n_chips": np.int64(N2), "wires": np.array(wires2(), np.int64),
              "fates": mesh_fates, "max_cycles": np.int64(max_cycles), "poll": np.int64(poll),
              "uplinks": np.array([(r, T.UPLINK, T.port_mac(r, T.UPLINK)) for r in range(N2)],
                                  np.int64),
              "up_fates": up_fates, "switch_buffer": np.int64(switch_buffer),
              "switch_learning": np.int64(switch_learning),
              "switch_ageing": np.int64(switch_ageing or 0), "up_cuts": _up_cuts(uplink_cut),
              "prof_bin": np.int64(_prof_bin(prof_bin)), **step_in}
    kw = dict(timeout_cycles=timeout_cycles, retry_limit=retry_limit)
    for rank in range(N2):
        img = np.array(hbm[rank], dtype=np.uint8)
        if img.shape != (cfg.hbm_window,):
            raise ValueError(f"hbm: rank {rank} needs uint8 [{cfg.hbm_window}]")
        ents = list(entries.get(rank, []))
        if len(allents[rank]) >= QSIZE:
            raise ValueError(f"entries: rank {rank} needs at most {QSIZE - 1} entries (steps "
                             "included)")
        if rank not in uplinks:
            img[p.ring_base:] = 0
        for i, e in enumerate(allents[rank]):
            img[ring2 + 32 * i:ring2 + 32 * i + 32] = np.frombuffer(e, np.uint8)
        conf, bells = [], [np.zeros((0, 2), np.int64)]
        tray0 = rank - T.chip_of(rank)
        for peer in range(tray0, tray0 + T.CHIPS_PER_TRAY):
            if peer != rank:
                port, nic = mesh_nic(cfg, rank, peer)
                conf.append(nic_writes(cfg, port, nic, **kw)[0])
        up = uplinks.get(rank) or uplink_nic(cfg, rank, np.zeros(cfg.hbm_window, np.uint8))
        c, b = nic_writes(cfg, T.UPLINK, up, **kw)
        conf.append(c)
        bells.append(b)
        # REG_TRAY_RANK: the rank and bit 3, two trays (8 ranks; spec.chip.REG_TRAY_RANK)
        conf.append(np.array([[C.REG_TRAY_RANK, rank | C.TRAY_RANK_TWO_TRAYS]], np.int64))
        inputs.update({f"hbm_{rank}": img, f"host_{rank}": np.concatenate(conf),
                       f"queues_{rank}": np.array([[0, ring2, QSIZE, len(ents)]]
                                                  if allents[rank] else [],
                                                  np.int64).reshape(-1, 4),
                       f"bell_{rank}": np.concatenate(bells)})
    out = run_bench(name=f"tray2_bench_{cfg.name}", toplevel="tray_bench", make=make,
                    params=cfg.asdict(), test_module=BENCH_MODULE, testcase="tray", sim=sim,
                    tag=tag, inputs=inputs, hierarchical=True)
    res = {"cycles": int(out["cycles"]), "fates": out["fates"], "wires": out["wire_stats"],
           "switch": dict(zip(COUNTERS, out["switch"].tolist())),
           "switch_max": out["switch_max"].tolist(), "up_fates": out["up_fates"],
           "up_stats": out["up_stats"].tolist(),
           "switch_table": {int(m): int(k) for m, k in out["switch_table"].tolist()},
           "switch_flood": [tuple(r) for r in out["switch_flood"].tolist()],
           "switch_learn": [tuple(r) for r in out["switch_learn"].tolist()],
           "frame_log": out.get("frame_log"),
           "steps": _step_results(out, len(steps), range(N2))}
    res.update(_per_rank(out, range(N2)))
    return res


def _fates2(faults, seed: int, cut) -> np.ndarray:
    """Fault rows of the 24 mesh wires of two trays (:func:`wires2` order, seed
    ``seed * 1000 + w``); ``cut``: pairs of ranks of one tray."""
    cut = list(cut)
    for pair in cut:
        if (not isinstance(pair, (tuple, list)) or len(pair) != 2
                or not all(isinstance(x, int) and 0 <= x < N2 for x in pair)
                or T.tray_of(pair[0]) != T.tray_of(pair[1])):
            raise ValueError(f"cut: pairs of ranks of one tray (0..3 or 4..7), got {pair!r}")
    rows = np.concatenate([_fates(faults, seed, [(a % T.CHIPS_PER_TRAY, b % T.CHIPS_PER_TRAY)
                                                 for a, b in cut if T.tray_of(a) == t])
                           for t in range(2)])
    rows[:, 0] = [seed * 1000 + w for w in range(len(rows))]
    return rows


CUT_MODES = {"both": (1, 1), "tx": (1, 0), "rx": (0, 1)}   # (switch ingress, switch egress)


def _up_cuts(uplink_cut) -> np.ndarray:
    """run2's ``uplink_cut`` as the bench's up_cuts rows (switch port = rank, ingress cut,
    egress cut, start, end): the rank's uplink "tx" wire is the switch port's ingress."""
    rows = []
    for rank, how in dict(uplink_cut or {}).items():
        if isinstance(rank, bool) or not isinstance(rank, int) or not 0 <= rank < N2:
            raise ValueError(f"uplink_cut: ranks 0..{N2 - 1}, got {rank!r}")
        spec = (how, 0, -1) if isinstance(how, str) else how
        ok = isinstance(spec, tuple) and len(spec) == 3 and spec[0] in CUT_MODES
        if ok:
            mode, start, end = spec
            ok = (all(isinstance(x, int) and not isinstance(x, bool) for x in (start, end))
                  and start >= 0 and (end < 0 or end > start))
        if not ok:
            raise ValueError(f"uplink_cut: rank {rank}: want 'both', 'tx', 'rx' or (that, start, "
                             f"end) with 0 <= start < end or end < 0, got {how!r}")
        rows.append((rank, *CUT_MODES[mode], start, end))
    return np.array(rows, np.int64).reshape(-1, 5)
