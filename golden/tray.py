"""Golden twin of the tray collectives (docs/tray.md is the contract).

Two levels, both bit for bit:

* arrays: :func:`all_reduce`, :func:`reduce_scatter`, :func:`all_gather`, :func:`broadcast`
  on per-rank inputs listed in ascending rank order;
* memory images: :func:`run` executes one COLLECTIVE command (spec.tray entry) on the HBM
  images of every rank of its group and returns each rank's queue status.

binary32 sums follow the fixed order of docs/tray.md "Reduction order": for every element,
``((x[g0] + x[g1]) + x[g2]) + ...`` over the group's ranks in ascending order, each ``+``
the TVP's binary32 add (golden.tvp: round to nearest even, subnormals kept, every NaN the
canonical 0x7FC00000). MX tensors are never summed: their all-gather and broadcast are byte
copies of codes and scales.

:func:`estimate` is the cycle estimate of the direct algorithm at 0% loss from the NIC link
rate and framing (spec.nic: headers, ICRC, FCS, preamble, IFG, MTU, one ACK per packet),
plus the NCCL bandwidth figures.
"""

from __future__ import annotations

import numpy as np

from golden import tvp
from spec import chip as C
from spec import nic as N
from spec import tile as TL
from spec import tray as T

__all__ = ["reduce_fixed", "all_reduce", "reduce_scatter", "all_gather", "broadcast", "run",
           "estimate", "link_limit"]


def _inputs(xs, name: str = "xs", dtype=None) -> list[np.ndarray]:
    if not isinstance(xs, (list, tuple)) or len(xs) < 2:
        raise ValueError(f"{name}: must be a list of at least 2 per-rank arrays, got "
                         f"{type(xs).__name__} of {len(xs) if hasattr(xs, '__len__') else '?'}")
    out = [np.asarray(x) for x in xs]
    shape = out[0].shape
    for i, x in enumerate(out):
        if x.ndim != 1 or x.shape != shape:
            raise ValueError(f"{name}: every rank's array must be 1-D of shape {shape}, "
                             f"rank position {i} has {x.shape}")
        if dtype is not None and x.dtype != dtype:
            raise ValueError(f"{name}: arrays must be {np.dtype(dtype).name} (binary32 bit "
                             f"patterns), rank position {i} is {x.dtype}")
    return out


def reduce_fixed(parts) -> np.ndarray:
    """((parts[0] + parts[1]) + parts[2]) + ... elementwise, binary32 bit patterns."""
    ps = _inputs(parts, "parts", np.uint32)
    acc = ps[0].copy()
    for x in ps[1:]:
        acc = tvp.binary(TL.TVP_ADD, acc, x)
    return acc


def _chunks(n_el: int, n: int, name: str) -> int:
    if n_el % n:
        raise ValueError(f"{name}: length {n_el} must be a multiple of the group size {n}")
    return n_el // n


def all_reduce(xs) -> list[np.ndarray]:
    """Every rank gets the fixed-order sum of all inputs (uint32 binary32 patterns)."""
    s = reduce_fixed(_inputs(xs, "xs", np.uint32))
    return [s.copy() for _ in xs]


def reduce_scatter(xs) -> list[np.ndarray]:
    """Rank position k gets chunk k (len/n elements) of the fixed-order sum."""
    s = reduce_fixed(_inputs(xs, "xs", np.uint32))
    c = _chunks(len(s), len(xs), "xs")
    return [s[k * c:(k + 1) * c].copy() for k in range(len(xs))]


def all_gather(xs) -> list[np.ndarray]:
    """Every rank gets the concatenation of all inputs in rank order (any dtype: a copy)."""
    ps = _inputs(xs)
    cat = np.concatenate(ps)
    return [cat.copy() for _ in ps]


def broadcast(xs, root: int) -> list[np.ndarray]:
    """Every rank gets the input of rank position ``root``."""
    ps = _inputs(xs)
    if isinstance(root, bool) or not isinstance(root, int) or not 0 <= root < len(ps):
        raise ValueError(f"root: must be a rank position in 0..{len(ps) - 1}, got {root!r}")
    return [ps[root].copy() for _ in ps]


# --- memory images ----------------------------------------------------------------------------

def _rd(mem: np.ndarray, addr: int, n: int) -> np.ndarray:
    return mem[addr:addr + n]


def run(mems: dict, entry: bytes, p: T.TrayParams | None = None) -> dict:
    """Execute the COLLECTIVE ``entry`` submitted to every rank of its group.

    ``mems`` maps rank -> HBM image (numpy uint8, ``p.mem_bytes``); the images of the group's
    ranks are updated in place. Returns rank -> (queue error code, detail) for the group's
    ranks (statically rejected commands: the spec.tray.check code, detail 0, and nothing is
    written anywhere). The scratch buffer is a work area whose contents afterwards are not
    part of the contract (docs/tray.md "Buffers"); golden leaves it as it was."""
    p = p or T.TrayParams()
    if not isinstance(entry, (bytes, bytearray)) or len(entry) != C.ENTRY_BYTES:
        raise ValueError(f"entry: must be {C.ENTRY_BYTES} bytes, got {entry!r:.40}")
    d, _ = T.decode(entry)
    if not isinstance(mems, dict):
        raise ValueError(f"mems: must be a dict rank -> uint8 array, got {type(mems).__name__}")
    for r in d.group:
        if r >= p.n_ranks:
            continue                         # check() rejects the command (BAD_UNIT)
        m = mems.get(r)
        if not isinstance(m, np.ndarray) or m.dtype != np.uint8 or m.shape != (p.mem_bytes,):
            raise ValueError(f"mems: rank {r} needs a uint8 array of {p.mem_bytes} bytes")
    status = {r: (T.check(bytes(entry), r, p), 0) for r in d.group if r < p.n_ranks}
    if any(e != C.ERR_NONE for e, _ in status.values()) or not status:
        return status
    g, n = d.group, d.n
    cb, sb = d.code_bytes(d.chunk), d.scale_bytes(d.chunk)
    if n == 1:                 # one-rank group: dst = src (docs/tray.md "One-rank groups")
        m = mems[g[0]]
        for src, dst, nb in T.local_jobs(d):
            m[dst:dst + nb] = m[src:src + nb].copy()
        return status
    if d.kind in (T.KIND_ALL_REDUCE, T.KIND_REDUCE_SCATTER):
        srcs = [_rd(mems[r], d.src, cb * n).copy() for r in g]
        xs = [s.view("<u4") for s in srcs]
        total = reduce_fixed(xs).astype("<u4").view(np.uint8)
        for k, r in enumerate(g):
            m = mems[r]
            if d.kind == T.KIND_ALL_REDUCE:
                m[d.dst:d.dst + n * cb] = total
            else:
                m[d.dst:d.dst + cb] = total[k * cb:(k + 1) * cb]
    elif d.kind == T.KIND_ALL_GATHER:
        codes = np.concatenate([_rd(mems[r], d.src, cb).copy() for r in g])
        scales = (np.concatenate([_rd(mems[r], d.src_scales, sb).copy() for r in g])
                  if d.mx else None)
        for r in g:
            mems[r][d.dst:d.dst + n * cb] = codes
            if d.mx:
                mems[r][d.dst_scales:d.dst_scales + n * sb] = scales
    else:
        codes = _rd(mems[d.root], d.src, n * cb).copy()
        scales = _rd(mems[d.root], d.src_scales, n * sb).copy() if d.mx else None
        for r in g:
            mems[r][d.dst:d.dst + n * cb] = codes
            if d.mx:
                mems[r][d.dst_scales:d.dst_scales + n * sb] = scales
    return status


# --- cycle estimate ---------------------------------------------------------------------------

def link_limit(p: T.TrayParams) -> float:
    """Payload bytes per cycle one link direction carries at best: the raw rate times
    spec.nic.goodput_limit for messages of ``wqe_max`` bytes at the NIC's MTU (ACKs of the
    reverse traffic not counted)."""
    return p.link_bytes_per_cycle * N.goodput_limit(p.wqe_max, p.nic.mtu)


def _path(src: int, dst: int) -> list[tuple]:
    if T.tray_of(src) == T.tray_of(dst):
        return [(src, dst)]
    return [(src, "sw"), ("sw", dst)]


def _msg_wire(nbytes: int, p: T.TrayParams) -> tuple[int, int]:
    req = acks = 0
    off = 0
    while off < nbytes:
        k = min(p.wqe_max, nbytes - off)
        a, b = T.wire_bytes_message(k, p.nic.mtu)
        req, acks, off = req + a, acks + b, off + k
    return req, acks


def estimate(entry_or_desc, p: T.TrayParams | None = None) -> dict:
    """Cycle estimate of the direct algorithm at 0% loss (docs/tray.md "Performance model").

    Per phase: the busiest directed link (a mesh link, a chip's uplink or a switch egress
    port) carries its request frames plus the ACK frames of the reverse direction's
    packets, one 8-byte notification SEND per (source, destination) pair, at
    ``link_bytes_per_cycle``; plus the hop latencies of the longest path (with one frame
    time of store-and-forward per switch), ``phase_overhead`` and the binary32 reductions
    at ``reduce_bytes_per_cycle``. Returns cycles, per-phase cycles, algbw and busbw in
    bytes per cycle, ``link_limit`` and ``ideal_busbw`` (busbw if every link carried only
    payload at ``link_limit``: the bound of the algorithm on this topology)."""
    p = p or T.TrayParams()
    if isinstance(entry_or_desc, (bytes, bytearray)):
        d, _ = T.decode(bytes(entry_or_desc))
        err = T.check(bytes(entry_or_desc), d.group[0] if d.group else 0, p)
        if err != C.ERR_NONE:
            raise ValueError(f"entry_or_desc: the command fails the static checks "
                             f"({C.ERROR_NAMES.get(err, err)})")
    elif isinstance(entry_or_desc, T.Collective):
        d = entry_or_desc
    else:
        raise ValueError(f"entry_or_desc: must be entry bytes or a spec.tray.Collective, got "
                         f"{type(entry_or_desc).__name__}")
    rate = p.link_bytes_per_cycle
    lim = link_limit(p)
    max_frame = N.frame_len(N.OP_WRITE_MIDDLE, p.nic.mtu) + N.ETH_OVERHEAD_WIRE
    note_req, note_ack = T.wire_bytes_message(T.NOTE_BYTES, p.nic.mtu, "send")
    phases, ideal_cycles = [], 0.0
    for ph in T.plan(d):
        load: dict = {}
        payload: dict = {}
        pairs = set()
        hops = 0
        for t in ph.transfers:
            req, ack = _msg_wire(t.nbytes, p)
            fwd, back = _path(t.src, t.dst), _path(t.dst, t.src)
            for lk in fwd:
                load[lk] = load.get(lk, 0) + req
                payload[lk] = payload.get(lk, 0) + t.nbytes
            for lk in back:
                load[lk] = load.get(lk, 0) + ack
            pairs.add((t.src, t.dst))
            hops = max(hops, len(fwd))
        for s, dd in pairs:
            for lk in _path(s, dd):
                load[lk] = load.get(lk, 0) + note_req
            for lk in _path(dd, s):
                load[lk] = load.get(lk, 0) + note_ack
        wire = max(load.values(), default=0) / rate
        lat = hops * p.link_latency + (hops - 1) * (p.switch_latency + max_frame / rate)
        red = max(((len(r.inputs) - 1) * r.elements * 4 for r in ph.reduces), default=0)
        cyc = wire + lat + p.phase_overhead + red / p.reduce_bytes_per_cycle
        phases.append(cyc)
        ideal_cycles += max(payload.values(), default=0) / lim
    cycles = sum(phases)
    nbytes = d.code_bytes(d.count) + d.scale_bytes(d.count)
    algbw = nbytes / cycles
    f = T.bus_factor(d.kind, d.n)
    ideal = f * nbytes / ideal_cycles if ideal_cycles else 0.0
    return dict(cycles=cycles, phases=phases, bytes=nbytes, algbw=algbw, busbw=algbw * f,
                link_limit=lim, busbw_over_link=algbw * f / lim, ideal_busbw=ideal,
                efficiency=algbw * f / ideal if ideal else 0.0)
