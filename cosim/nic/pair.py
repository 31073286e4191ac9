"""Driver of the two-NIC RTL bench: configure two RTL NICs exactly like two golden NICs and
run them back to back through the seeded lossy link (cosim/nic/pair_bench.py)."""

from __future__ import annotations

import dataclasses

import numpy as np

from cosim.nic.frames import split
from cosim.sim import run_bench
from golden import nic as G
from spec import nic as S


def csr_config(nic: G.Nic, *, timeout_cycles: int, retry_limit: int):
    """CSR writes that give an RTL NIC the configuration of golden ``nic`` (call before the
    golden run). Returns (config writes, doorbell writes) as (N, 2) arrays."""
    cfg = [(S.CSR_MAC_LO, nic.mac & 0xFFFFFFFF), (S.CSR_MAC_HI, nic.mac >> 32),
           (S.CSR_IP, nic.ip), (S.CSR_RETX_TIMEOUT, timeout_cycles),
           (S.CSR_RETRY_LIMIT, retry_limit), (S.CSR_CTRL, 1)]
    for w, (base, length, key, perm) in enumerate(nic.windows):
        cfg += [(S.win_reg(w, "base_lo"), base & 0xFFFFFFFF), (S.win_reg(w, "base_hi"), base >> 32),
                (S.win_reg(w, "length"), length), (S.win_reg(w, "key"), key),
                (S.win_reg(w, "perm"), perm)]
    bells = []
    for qn, q in enumerate(nic.qps):
        if not q.ready:
            continue
        regs = dict(dest_qpn=q.dest_qpn, dest_mac_lo=q.dest_mac & 0xFFFFFFFF,
                    dest_mac_hi=q.dest_mac >> 32, dest_ip=q.dest_ip,
                    sq_base_lo=q.sq_base & 0xFFFFFFFF, sq_base_hi=q.sq_base >> 32,
                    sq_log2=q.sq_log2, cq_base_lo=q.cq_base & 0xFFFFFFFF,
                    cq_base_hi=q.cq_base >> 32, cq_log2=q.cq_log2, sq_psn=q.psn_next,
                    rq_psn=q.epsn, rq_base_lo=q.rq_base & 0xFFFFFFFF, rq_base_hi=q.rq_base >> 32,
                    rq_log2=q.rq_log2, rq_slot_log2=q.rq_slot_log2)
        cfg += [(S.qp_reg(qn, k), v) for k, v in regs.items()]
        cfg.append((S.qp_reg(qn, "ctrl"), 1))
        if q.sq_prod:
            bells.append((S.qp_reg(qn, "sq_prod"), q.sq_prod))
    return (np.array(cfg, dtype=np.int64).reshape(-1, 2),
            np.array(bells, dtype=np.int64).reshape(-1, 2))


def make_pair(params: S.NicParams, mem_bytes: int):
    from rtl.nic.core import NicPair

    return NicPair(params, mem_bytes=mem_bytes)


def run_pair_rtl(a: G.Nic, b: G.Nic, *, link=(1, 2, 0.0, 0.0, 0.0, 0.0),
                 timeout_cycles: int = 4000, retry_limit: int = 16, sim: str = "verilator",
                 max_cycles: int = 400_000, tag: str = "pair", watch_b: bool = False) -> dict:
    """Run the RTL pair from golden NICs ``a`` and ``b`` (configured and posted, not yet run).
    ``link`` = (seed a->b, seed b->a, drop, dup, reorder, corrupt). Returns the final memory
    images, counters (dicts), per-QP (sq_cons, cq_prod), the frames each NIC sent (with the
    cycle of their last beat) and the cycle count."""
    if a.p != b.p:
        raise ValueError("a and b must have the same NicParams")
    if len(a.mem) != len(b.mem):
        raise ValueError("a and b must have memories of the same size")
    cfg_a, bell_a = csr_config(a, timeout_cycles=timeout_cycles, retry_limit=retry_limit)
    cfg_b, bell_b = csr_config(b, timeout_cycles=timeout_cycles, retry_limit=retry_limit)
    params = dict(dataclasses.asdict(a.p), mem_bytes=len(a.mem))
    out = run_bench(name="nic_pair", toplevel="nic_pair",
                    make=lambda: make_pair(a.p, len(a.mem)), params=params,
                    test_module="cosim.nic.pair_bench", sim=sim, tag=tag,
                    inputs=dict(mem_a=a.mem.copy(), mem_b=b.mem.copy(), cfg_a=cfg_a, cfg_b=cfg_b,
                                bell_a=bell_a, bell_b=bell_b,
                                link=np.array(link, dtype=np.float64),
                                max_cycles=np.int64(max_cycles), watch_b=np.int64(watch_b)))
    res = {"cycles": int(out["cycles"]), "bell_done": int(out["bell_done"]),
           "a_bresp_t": out["a_bresp_t"].tolist()}
    for n in ("a", "b"):
        res[f"mem_{n}"] = out[f"mem_{n}"]
        res[f"counters_{n}"] = dict(zip(S.COUNTERS, out[f"counters_{n}"].tolist()))
        res[f"qpregs_{n}"] = out[f"qpregs_{n}"].tolist()
        res[f"tx_{n}"] = split(out[f"tx_{n}"], out[f"tx_{n}_len"])
        res[f"tx_{n}_t"] = out[f"tx_{n}_t"].tolist()
        res[f"cq_events_{n}"] = int(out[f"cq_events_{n}"])
    return res
