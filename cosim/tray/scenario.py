"""Shared set-up of the tray tests and benchmark: a buffer layout in HBM, the COLLECTIVE
entry for a case, and seeded inputs (binary32 values with specials, or MX codes + scales)."""

from __future__ import annotations

import numpy as np

from spec import nic as S
from spec import tray as T

SRC, DST, SCRATCH = 0x000000, 0x200000, 0x400000
SRC_SCALES, DST_SCALES = 0x600000, 0x680000

# two trays (tiny_tray4): host RDMA WRITEs on the uplinks beside the collectives; buffers
# below the rings (ring_base 0xB8000)
UP_SRC, UP_DST = 0x80000, 0xA0000
# per rank: WRITEs (local offset, length, remote offset) to the same chip of the other tray
UP_WRITES = ((0, 4096, 0), (4096, 1000, 8192), (6144, 8, 12280))

SPECIALS = np.array([0x00000000, 0x80000000, 0x7F800000, 0xFF800000, 0x7FC00000, 0x7F800001,
                     0xFFC12345, 0x00000001, 0x807FFFFF, 0x7F7FFFFF, 0xFF7FFFFF, 0x3F800000],
                    dtype=np.uint32)


def group_for(n: int) -> tuple:
    """The ranks of an n-chip case: 2 and 4 chips in tray 0, 8 chips = both trays."""
    if n not in (2, 4, 8):
        raise ValueError(f"n: must be 2, 4 or 8, got {n!r}")
    return tuple(range(n))


def params_for(n: int, **kw) -> T.TrayParams:
    return T.TrayParams(trays=2 if n > T.CHIPS_PER_TRAY else 1, **kw)


def entry(kind: int, fmt: int, group, count: int, root: int = 0) -> bytes:
    mx = fmt != T.FMT_FP32
    red = kind in (T.KIND_ALL_REDUCE, T.KIND_REDUCE_SCATTER)
    return T.entry_collective(kind, fmt, src=SRC, dst=DST, count=count, group=group,
                              root=root if kind == T.KIND_BROADCAST else 0,
                              src_scales=SRC_SCALES if mx else 0,
                              dst_scales=DST_SCALES if mx else 0,
                              scratch=SCRATCH if red else 0)


def fp32_values(rng: np.random.Generator, n: int) -> np.ndarray:
    """binary32 bit patterns: mostly values of mixed magnitude and sign (so the summation
    order changes results), some subnormals, and the specials above."""
    mag = rng.uniform(-1, 1, n) * np.exp2(rng.integers(-20, 21, n))
    bits = mag.astype(np.float32).view(np.uint32)
    pick = rng.random(n)
    bits = np.where(pick < 0.02, SPECIALS[rng.integers(0, len(SPECIALS), n)], bits)
    sub = rng.integers(0, 0x800000, n, dtype=np.uint32) | (rng.integers(0, 2, n, dtype=np.uint32) << 31)
    return np.where((pick >= 0.02) & (pick < 0.04), sub, bits).astype(np.uint32)


def fill(mems: dict, raw: bytes, seed: int) -> dict:
    """Random inputs for every rank of the entry's group; returns rank -> dict of the input
    arrays written (``src`` as uint32 for binary32, ``codes``/``scales`` as uint8 for MX)."""
    d, _ = T.decode(raw)
    rng = np.random.default_rng(seed)
    out = {}
    src_el = d.chunk if d.kind == T.KIND_ALL_GATHER else d.count
    for r in d.group:
        if d.mx:
            codes = rng.integers(0, 256, d.code_bytes(src_el), dtype=np.uint8)
            scales = rng.integers(100, 155, d.scale_bytes(src_el), dtype=np.uint8)
            mems[r][d.src:d.src + len(codes)] = codes
            mems[r][d.src_scales:d.src_scales + len(scales)] = scales
            out[r] = dict(codes=codes, scales=scales)
        else:
            x = fp32_values(rng, src_el)
            mems[r][d.src:d.src + 4 * src_el] = x.view(np.uint8)
            out[r] = dict(src=x)
    return out


def word_diff(name: str, want: np.ndarray, got: np.ndarray,
              skip: np.ndarray | None = None) -> list[str]:
    """Compare two HBM images (uint8) outside ``skip`` (bool, True = not compared; None:
    everywhere): [] if equal, else one message with the number of differing bytes and the
    first differing 32-bit word, expected and got, in hex."""
    diff = want != got
    bad = np.flatnonzero(diff if skip is None else diff & ~skip)
    if not bad.size:
        return []
    i = int(bad[0]) & ~3
    w = int.from_bytes(bytes(want[i:i + 4]), "little")
    g = int.from_bytes(bytes(got[i:i + 4]), "little")
    return [f"{name}: {bad.size} bytes differ, first word at {i:#x}: expected {w:#010x} "
            f"got {g:#010x}"]


def post_uplink_writes(nics: dict) -> None:
    """The host of every rank in ``nics`` (rank -> golden uplink NIC, rtl_tray.uplink_nic)
    posts UP_WRITES on its uplink queue pair to the same chip of the other tray, with
    wr_id 0x100 + local offset."""
    for r, nic in nics.items():
        peer = T.rank_of(1 - T.tray_of(r), T.chip_of(r))
        for loc, n, rem in UP_WRITES:
            nic.post(T.route(r, peer, 8).qp, S.WR_WRITE, local_addr=UP_SRC + loc, length=n,
                     remote_addr=UP_DST + rem, rkey=T.RKEY, wr_id=0x100 + loc)


def uplink_write_images(seed: int, count: int, src: int):
    """Two trays of tiny_tray4 chips: per rank an image filled with 0x5A, seeded binary32
    at ``src`` (``count`` elements, for a collective), random bytes at UP_SRC (16 KiB),
    rings zeroed, and its uplink NIC with post_uplink_writes posted. Returns (images,
    uplink NICs), both rank -> ..."""
    from cosim.tray import rtl_tray

    cfg = rtl_tray.CFG2
    ring_base = T.chip_params(cfg, 2).ring_base
    rng = np.random.default_rng(seed)
    imgs, nics = {}, {}
    for r in range(2 * T.CHIPS_PER_TRAY):
        img = np.full(cfg.hbm_window, 0x5A, np.uint8)
        img[src:src + 4 * count] = fp32_values(rng, count).view(np.uint8)
        img[UP_SRC:UP_SRC + 0x4000] = rng.integers(0, 256, 0x4000, dtype=np.uint8)
        img[ring_base:] = 0
        imgs[r] = img
        nics[r] = rtl_tray.uplink_nic(cfg, r, img)
    post_uplink_writes(nics)
    return imgs, nics


def tray_local_all_reduce(count: int, src: int, dst: int, scratch: int) -> dict:
    """Two trays: rank -> [the binary32 ALL_REDUCE entry over its own tray's 4 ranks]."""
    out = {}
    for t in range(2):
        group = tuple(T.rank_of(t, c) for c in range(T.CHIPS_PER_TRAY))
        e = T.entry_collective(T.KIND_ALL_REDUCE, T.FMT_FP32, src=src, dst=dst, count=count,
                               group=group, scratch=scratch)
        for r in group:
            out[r] = [e]
    return out
