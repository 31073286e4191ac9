"""Per-phase profile of a collective on the RTL tray, seen from the wires (docs/tray.md
"Profiling a collective").

The RTL bench (cosim/tray/rtl_bench.py) logs every frame a chip puts on a wire (mesh ports
and uplinks, as the link layer collects it) and every frame the switch starts sending to a
chip: ``res["frame_log"]`` of :func:`cosim.tray.rtl_tray.run2` / ``run``, rows of
:data:`LOG_FIELDS`. Nothing is added to the RTL: the engine's phases are recovered from its
notifications (the 8-byte SEND that ends each phase carries the phase number, docs/tray.md
"Engine protocol per phase") and the PSN order on each queue pair.

Per rank and phase k of ``spec.tray.plan``:

* ``start``: the first frame of the phase the rank sends (a WRITE of phase k, else its
  notification);
* ``sent``: its last notification of phase k on the wire;
* ``done``: when it can leave the phase: the later of the arrival of the last notification
  of phase k it expects and of the ACK of its own last notification (arrival = the frame
  leaving the sender's link layer, or the switch's egress, + frame bytes / 8);
* ``gap``: from ``done`` to the rank's first frame of phase k + 1 (CQ polling, the phase's
  reductions, WQE posting, the NIC's WQE fetch and packet read).

Per phase (the window from the earliest ``start`` to the latest ``done`` over the ranks):
how busy each class of wire is (frame bytes / 8 over the window length, per wire: mean and
the busiest), mesh wires, chip -> switch uplinks, switch -> chip egress. With a finer HBM
profile (``prof_bin``), the bytes the collective engine's HBM port read in each gap (its
reductions and CQ polling).

:func:`model_phases` gives the transport model's per-phase times for the same command and
parameters (cosim/tray engine: start, complete, end of the phase's reductions + overhead).
"""

from __future__ import annotations

import numpy as np

from spec import nic as S
from spec import tray as T

# frame_log rows: t (cycles after the doorbells), kind (0 a chip sent it on a wire, 1 the
# switch started sending it to a chip), chip (sender for kind 0, receiver for kind 1), port
# (the chip's NIC port), frame bytes (flen), BTH opcode, destination QPN, PSN, notification
# phase and source rank (-1 when not a notification)
LOG_FIELDS = ("t", "kind", "chip", "port", "flen", "opcode", "dqpn", "psn", "note_ph",
              "note_src")
TX, EGRESS = 0, 1
_BTH = S.ETH_HDR + 20 + S.UDP_HDR       # offset of the BTH in a frame


def frame_fields(frame: bytes) -> tuple[int, int, int, int, int, int]:
    """(bytes, opcode, destination QPN, PSN, notification phase, notification source) of a
    RoCEv2 frame; -1 for the fields a frame does not have (not RoCEv2, not a note)."""
    n = len(frame)
    if n < _BTH + S.BTH_LEN:
        return n, -1, -1, -1, -1, -1
    op = frame[_BTH]
    dqpn = int.from_bytes(frame[_BTH + 5:_BTH + 8], "big")
    psn = int.from_bytes(frame[_BTH + 9:_BTH + 12], "big")
    ph = src = -1
    body = S.HDR_BASE
    if op == S.OP_SEND_ONLY and n >= body + T.NOTE_BYTES:
        if int.from_bytes(frame[body + 4:body + 8], "little") == T.NOTE_MAGIC:
            ph, src = frame[body], frame[body + 1]
    return n, op, dqpn, psn, ph, src


def log_rows(t0: int, kind: int, chip: int, port: int, items) -> list[tuple]:
    """frame_log rows of ``items`` ((cycle, frame) pairs) at or after ``t0``."""
    return [(t - t0, kind, chip, port, *frame_fields(f)) for t, f in items if t >= t0]


def _arrival(row) -> int:
    return int(row["t"]) + (int(row["flen"]) + 7) // 8


def _as_records(log: np.ndarray) -> np.ndarray:
    log = np.asarray(log, np.int64).reshape(-1, len(LOG_FIELDS))
    return np.rec.fromarrays(log.T, names=",".join(LOG_FIELDS)) if len(log) else None


def rtl_phases(res: dict, raw: bytes, p: T.TrayParams) -> dict:
    """Per-rank phase times of one COLLECTIVE ``raw`` from an RTL run's frame log; returns
    {"ranks": {rank: [dict(start, sent, done, gap) per phase]}, "phases": [window dicts],
    "end": {rank: done cycle}}. Assumes the run held only this command (one sequence
    number) and that every frame the rank sends belongs to it."""
    d, _ = T.decode(raw)
    phases = T.plan(d)
    rec = _as_records(res["frame_log"])
    if rec is None:
        raise ValueError("res: the run logged no frames (frame_log)")
    tx = rec[rec.kind == TX]
    eg = rec[rec.kind == EGRESS]
    n = p.n_ranks
    expect = [[{t.src for t in ph.transfers if t.dst == r} for ph in phases] for r in range(n)]
    dests = [[{t.dst for t in ph.transfers if t.src == r} for ph in phases] for r in range(n)]
    out: dict = {"ranks": {}, "phases": [], "end": {}}

    def port_to(r, peer):
        return T.route(r, peer, n).port

    for r in d.group:
        mine = tx[tx.chip == r]
        notes = mine[mine.note_ph >= 0]
        per = []
        for k in range(len(phases)):
            my_notes = notes[notes.note_ph == k]
            # the phase's data: on each queue pair (port, dqpn) the requests after the
            # rank's previous notification there (an earlier phase) and up to its
            # notification of phase k (by PSN)
            starts = []
            for nt in my_notes:
                same = mine[(mine.port == nt.port) & (mine.dqpn == nt.dqpn)
                            & np.isin(mine.opcode, sorted(S.OPS_REQUEST))]
                prev = notes[(notes.port == nt.port) & (notes.dqpn == nt.dqpn)
                             & (notes.note_ph < k)]
                lo = int(prev.psn.max()) if len(prev) else -1
                sel = same[(same.psn > lo) & (same.psn <= nt.psn)]
                starts.append(int(sel.t.min()) if len(sel) else int(nt.t))
            start = min(starts) if starts else None
            sent = int(my_notes.t.max()) if len(my_notes) else None
            arrivals = []
            for s in expect[r][k]:
                pt = port_to(r, s)
                if pt == T.UPLINK:
                    f = eg[(eg.chip == r) & (eg.note_ph == k) & (eg.note_src == s)]
                else:
                    f = tx[(tx.chip == s) & (tx.note_ph == k) & (tx.note_src == s)]
                if len(f):
                    arrivals.append(min(_arrival(x) for x in f))
            for dd in dests[r][k]:
                nt = my_notes[my_notes.port == port_to(r, dd)]
                if not len(nt):
                    continue
                pt = port_to(r, dd)
                if pt == T.UPLINK:
                    acks = eg[(eg.chip == r) & (eg.port == pt) & (eg.opcode == S.OP_ACK)
                              & (eg.psn >= int(nt.psn.max()))]
                else:
                    peer_port = T.route(dd, r, n).port
                    acks = tx[(tx.chip == dd) & (tx.port == peer_port) & (tx.opcode == S.OP_ACK)
                              & (tx.psn >= int(nt.psn.max())) & (tx.t >= int(nt.t.max()))]
                if len(acks):
                    arrivals.append(min(_arrival(x) for x in acks))
            done = max(arrivals) if arrivals else None
            per.append(dict(start=start, sent=sent, done=done))
        for k, ph in enumerate(per):
            nxt = next((q["start"] for q in per[k + 1:] if q["start"] is not None), None)
            ph["gap"] = (nxt - ph["done"]) if (nxt is not None and ph["done"] is not None) \
                else None
        out["ranks"][r] = per
        out["end"][r] = res[r]["done"] if r in res else None
    for k in range(len(phases)):
        st = [out["ranks"][r][k]["start"] for r in d.group if out["ranks"][r][k]["start"]
              is not None]
        dn = [out["ranks"][r][k]["done"] for r in d.group if out["ranks"][r][k]["done"]
              is not None]
        if not st or not dn:
            out["phases"].append(None)
            continue
        lo, hi = min(st), max(dn)
        w = dict(lo=lo, hi=hi, uplink=any(T.tray_of(t.src) != T.tray_of(t.dst)
                                          for t in phases[k].transfers))
        for name, sel in (("mesh", (rec.kind == TX) & (rec.port < T.UPLINK)),
                          ("up_tx", (rec.kind == TX) & (rec.port == T.UPLINK)),
                          ("egress", rec.kind == EGRESS)):
            rows = rec[sel & (rec.t >= lo) & (rec.t < hi)]
            busy: dict = {}
            for x in rows:
                key = (int(x.chip), int(x.port))
                busy[key] = busy.get(key, 0) + (int(x.flen) + 7) // 8
            n_wires = (T.MESH_PORTS * p.n_ranks if name == "mesh" else p.n_ranks)
            vals = list(busy.values()) + [0] * (n_wires - len(busy))
            span = max(hi - lo, 1)
            w[name] = (sum(vals) / n_wires / span, max(vals) / span)
        out["phases"].append(w)
    return out


def load_run(path) -> tuple[dict, bytes, int]:
    """(res, raw entry, prof_bin) from the .npz the bench's MAIA_TRAY_RTL_PROFILE=1 writes
    (build/bench/tray_profile_<name>.npz): ``res`` as :func:`rtl_phases` and :func:`table`
    take it."""
    z = np.load(path)
    res: dict = {"frame_log": z["frame_log"]}
    for k in z.files:
        if k.startswith("done_"):
            r = int(k[5:])
            res[r] = {"done": int(z[k]), "hbm_prof": z[f"hbm_prof_{r}"]}
    return res, z["raw"].tobytes(), int(z["prof_bin"])


def engine_reads(res: dict, rank: int, lo: int, hi: int, prof_bin: int) -> int | None:
    """Bytes the collective engine's HBM port (the last port with ``nic_hbm``) read between
    cycles ``lo`` and ``hi`` after the doorbells (whole ``prof_bin`` bins)."""
    prof = res[rank].get("hbm_prof")
    if prof is None or lo is None or hi is None:
        return None
    eng = prof[-1]
    a, b = max(lo // prof_bin, 0), max(hi // prof_bin, lo // prof_bin + 1)
    return int(eng[a:b, 0].sum())


def model_phases(raw: bytes, p: T.TrayParams, inputs: dict, faults=None, seed: int = 1):
    """The transport model's (cosim.tray) per-phase times of ``raw`` with ``inputs`` (rank ->
    (address, uint8 array) loaded before the command): {rank: [dict(start, complete, end)]}
    (start: the phase's sends posted; complete: every notification in and SEND completed;
    end: after the reductions and the phase overhead) and the model's total cycles."""
    from cosim.tray import Tray
    from cosim.tray import engine as E

    log: dict = {}
    orig_begin, orig_check, orig_next = E.Engine._begin, E.Engine._check_phase, E.Engine._next

    def _begin(self, k):
        if self.status is None and k < len(self.phases):
            log.setdefault(self.rank, {}).setdefault(k, {})["start"] = self.net.sim.t
        return orig_begin(self, k)

    def _check_phase(self):
        was = self.waiting_reduce
        orig_check(self)
        if not was and self.waiting_reduce:
            log[self.rank][self.k]["complete"] = self.net.sim.t

    def _next(self):
        log[self.rank][self.k]["end"] = self.net.sim.t
        return orig_next(self)

    tray = Tray(p, seed=seed, faults=faults)
    for r, (addr, data) in inputs.items():
        tray.mems[r][addr:addr + len(data)] = data
    E.Engine._begin, E.Engine._check_phase, E.Engine._next = _begin, _check_phase, _next
    try:
        mres = tray.collective(raw)
    finally:
        E.Engine._begin, E.Engine._check_phase, E.Engine._next = (orig_begin, orig_check,
                                                                  orig_next)
    if not mres.ok:
        raise RuntimeError(f"transport model failed: {mres.status}")
    return {r: [log[r][k] for k in sorted(log[r])] for r in sorted(log)}, mres.cycles


def _f(x, width=7) -> str:
    return f"{'-':>{width}}" if x is None else f"{x:>{width},.0f}"


def table(prof: dict, model: dict | None, ranks, res: dict | None = None,
          prof_bin: int | None = None, title: str = "") -> str:
    """The profile as text: for each of ``ranks`` one line per phase (RTL start, notes sent,
    done, gap to the next phase, the engine's HBM reads in the gap when known; the model's
    start, complete, end), then the wire busy fractions per phase."""
    lines = [title] if title else []
    for r in ranks:
        lines.append(f"rank {r} (tray {T.tray_of(r)}, chip {T.chip_of(r)}), done at "
                     f"{prof['end'].get(r)}")
        lines.append("  ph  wires   RTL start    sent    done     gap  eng.rd KiB |"
                     "  model start complete     end   phase")
        for k, ph in enumerate(prof["ranks"][r]):
            w = prof["phases"][k]
            where = "-" if w is None else ("uplink" if w["uplink"] else "mesh")
            rd = None
            if res is not None and prof_bin and ph["done"] is not None and ph["gap"] is not None:
                b = engine_reads(res, r, ph["done"], ph["done"] + ph["gap"], prof_bin)
                rd = None if b is None else b / 1024
            m = (model or {}).get(r)
            mk = m[k] if m and k < len(m) else {}
            mdur = (mk["end"] - mk["start"]) if mk.get("end") is not None else None
            lines.append(f"  {k:2d}  {where:6s} {_f(ph['start'], 9)} {_f(ph['sent'])} "
                         f"{_f(ph['done'])} {_f(ph['gap'])} {_f(rd, 11)} | "
                         f"{_f(mk.get('start'), 12)} {_f(mk.get('complete'), 8)} "
                         f"{_f(mk.get('end'))} {_f(mdur)}")
    lines.append("wire busy per phase (frame bytes / 8 per cycle of the window; mean over "
                 "the wires, busiest):")
    lines.append("  ph   window lo       hi   cycles |  mesh mean  max | uplink tx mean  max | "
                 "switch egress mean  max")
    for k, w in enumerate(prof["phases"]):
        if w is None:
            continue
        lines.append(f"  {k:2d} {w['lo']:>10,} {w['hi']:>8,} {w['hi'] - w['lo']:>8,} |"
                     f"      {w['mesh'][0]:.3f} {w['mesh'][1]:.3f} |"
                     f"          {w['up_tx'][0]:.3f} {w['up_tx'][1]:.3f} |"
                     f"              {w['egress'][0]:.3f} {w['egress'][1]:.3f}")
    return "\n".join(lines)


def report(res: dict, raw: bytes, p: T.TrayParams, inputs: dict, prof_bin: int | None = None,
           faults=None, seed: int = 1, title: str = "") -> tuple[str, dict]:
    """:func:`rtl_phases` of the run, :func:`model_phases` for the same command, inputs
    (rank -> (address, bytes)), faults and seed, and the :func:`table` of the first rank of
    each tray in the group and the slowest rank; returns (text, {"rtl", "model",
    "model_cycles", "ranks"})."""
    d, _ = T.decode(raw)
    prof = rtl_phases(res, raw, p)
    model, mcyc = model_phases(raw, p, inputs, faults=faults, seed=seed)
    ranks = []
    for t in range(p.trays):
        mine = [r for r in d.group if T.tray_of(r) == t]
        if mine:
            ranks.append(mine[0])
    slow = max(d.group, key=lambda r: (res[r]["done"], r))
    if slow not in ranks:
        ranks.append(slow)
    head = (f"{title}\n" if title else "") + (
        f"RTL {max(res[r]['done'] for r in d.group):,} cycles (slowest rank {slow}); "
        f"transport model {mcyc:,.0f} cycles")
    return table(prof, model, ranks, res, prof_bin, head), dict(
        rtl=prof, model=model, model_cycles=mcyc, ranks=ranks)
