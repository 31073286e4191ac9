"""Two chips of the tray joined by their mesh port 0 (rtl.chip.pair.ChipPair; ranks 0 and
1 of one tray) running COLLECTIVE entries on their collective engines (docs/tray.md
"Collective engine in the chip"). Reuses the chip-pair bench (cosim/chippair/bench.py):
the host of each chip writes the NIC set-up of docs/tray.md "Topology" (queue pair QP_MESH
of port 0 with the rings at spec.tray.ring_addr, the window over [0, ring_base) with key
RKEY), REG_TRAY_RANK, the queue registers and the doorbell.

    res = cosim.tray.pair.run(C.TINY_NIC, {0: hbm0, 1: hbm1}, {0: [entry], 1: [entry]})
    res[rank]["hbm"], res[rank]["queues"][0], res["cycles"]
"""

from __future__ import annotations

import numpy as np

from golden import chip as G
from spec import chip as C
from spec import nic as S
from spec import tray as T

BENCH_MODULE = "cosim.chippair.bench"
RING = 0x80000            # host queue ring of every chip (below ring_base of tiny_nic)
QSIZE = 64


def port_nic(cfg: C.ChipConfig, rank: int, peer: int, trays: int = 1):
    """The golden NIC describing port ``route(rank, peer).port``'s set-up (for its CSR
    writes): queue pair QP_MESH towards ``peer``, the RKEY window (rings and ranks of a
    system of ``trays`` trays)."""
    p = T.chip_params(cfg, trays)
    rt = T.route(rank, peer, p.n_ranks)
    nic = G.chip_nic(cfg, np.zeros(cfg.hbm_window, np.uint8), mac=T.port_mac(rank, rt.port),
                     ip=T.port_ip(rank, rt.port))
    nic.set_window(0, base=0, length=p.ring_base, key=T.RKEY,
                   perm=S.PERM_VALID | S.PERM_REMOTE_WRITE)
    base = T.ring_addr(p, rt.port, rt.qp)
    nic.setup_qp(rt.qp, dest_qpn=S.QPN_BASE + rt.peer_qp, dest_mac=T.port_mac(peer, rt.peer_port),
                 dest_ip=T.port_ip(peer, rt.peer_port), sq_base=base + T.SQ_OFF,
                 sq_log2=T.SQ_LOG2, cq_base=base + T.CQ_OFF, cq_log2=T.CQ_LOG2,
                 rq_base=base + T.RQ_OFF, rq_log2=T.RQ_LOG2, rq_slot_log2=T.RQ_SLOT_LOG2,
                 sq_psn=0x100 * rank + 1, rq_psn=0x100 * peer + 1)
    return rt.port, nic


def run(cfg: C.ChipConfig, hbm: dict, entries: dict, *, sim: str = "verilator",
        link=(1, 2, 0.0, 0.0, 0.0, 0.0), max_cycles: int = 3_000_000, poll: int = 256,
        timeout_cycles: int = 4000, retry_limit: int = 16, tag: str = "traypair") -> dict:
    """``hbm``: rank -> HBM image (uint8 [hbm_window]) for ranks 0 and 1; ``entries``: rank
    -> list of 32-byte queue entries (written into the ring at RING, queue 0). The ring
    area [ring_base, hbm_window) is zeroed (fresh completion queues)."""
    from cosim.chippair import nic_writes
    from cosim.sim import run_bench
    from rtl.chip.pair import ChipPair

    if not isinstance(cfg, C.ChipConfig) or cfg.nic_ports < 1:
        raise ValueError("cfg: must be a spec.chip.ChipConfig with NIC ports")
    if set(hbm) != {0, 1} or set(entries) != {0, 1}:
        raise ValueError("hbm, entries: one item for each of ranks 0 and 1")
    p = T.chip_params(cfg)
    inputs = {"link": np.array(link, dtype=np.float64), "max_cycles": np.int64(max_cycles),
              "poll": np.int64(poll)}
    for rank, x in ((0, "a"), (1, "b")):
        img = np.array(hbm[rank], dtype=np.uint8)
        if img.shape != (cfg.hbm_window,):
            raise ValueError(f"hbm: rank {rank} needs uint8 [{cfg.hbm_window}]")
        ents = list(entries[rank])
        if not 1 <= len(ents) < QSIZE:
            raise ValueError(f"entries: rank {rank} needs 1..{QSIZE - 1} entries")
        img[p.ring_base:] = 0
        for i, e in enumerate(ents):
            img[RING + 32 * i:RING + 32 * i + 32] = np.frombuffer(e, np.uint8)
        port, nic = port_nic(cfg, rank, 1 - rank)
        conf, _ = nic_writes(cfg, port, nic, timeout_cycles=timeout_cycles,
                             retry_limit=retry_limit)
        conf = np.concatenate([conf, np.array([[C.REG_TRAY_RANK, rank]], np.int64)])
        inputs.update({f"hbm_{x}": img, f"nic_{x}": conf,
                       f"bell_{x}": np.zeros((0, 2), np.int64),
                       f"queues_{x}": np.array([[0, RING, QSIZE, len(ents)]], np.int64)})
    out = run_bench(name=f"chip_pair_{cfg.name}", toplevel="chip_pair",
                    make=lambda: ChipPair(cfg), params=cfg.asdict(),
                    test_module=BENCH_MODULE, sim=sim, tag=tag, inputs=inputs)
    res = {"cycles": int(out["cycles"])}
    for rank, x in ((0, "a"), (1, "b")):
        res[rank] = {
            "hbm": out[f"hbm_{x}"],
            "queues": [{n: int(v) for n, v in zip(C.Q_REGS, row)} for row in out[f"qregs_{x}"]],
            "counters": [dict(zip(S.COUNTERS, row)) for row in out[f"counters_{x}"].tolist()],
            # frames this chip sent: cycle and length of each (for timelines)
            "tx_t": np.asarray(out[f"tx_{x}_t"]), "tx_len": np.asarray(out[f"tx_{x}_len"]),
        }
    return res
