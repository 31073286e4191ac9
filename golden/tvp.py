"""Golden tile vector processor (TVP) ops on binary32 bit patterns (uint32 arrays).

Every op is defined with numpy float32 arithmetic (IEEE 754 binary32, round to nearest
even, subnormals kept) in a fixed operation order, so the RTL lanes can match it bit for
bit. Every NaN result is the canonical 0x7FC00000. The definitions are docs/tile.md "TVP".
"""

from __future__ import annotations

import numpy as np

from spec import tile as T
from spec.formats import FP32_CANONICAL_NAN

__all__ = ["binary", "unary", "rowsum", "rowmax", "to_bf16", "exp2", "rcp", "fmax", "fmin"]

NAN = np.uint32(FP32_CANONICAL_NAN)


def _f(b) -> np.ndarray:
    return np.asarray(b, dtype=np.uint32).view(np.float32)


def _canon(x: np.ndarray) -> np.ndarray:
    out = np.asarray(x, dtype=np.float32).view(np.uint32).copy()
    out[np.isnan(np.asarray(x, dtype=np.float32))] = NAN
    return out


def _nan_bits(b) -> np.ndarray:
    b = np.asarray(b, dtype=np.uint32)
    return (b & 0x7FFFFFFF) > 0x7F800000


def fmax(a, b) -> np.ndarray:
    """max with NaN -> NaN and max(-0, +0) = +0 (IEEE 754-2019 maximum)."""
    a, b = np.asarray(a, np.uint32), np.asarray(b, np.uint32)
    fa, fb = _f(a), _f(b)
    with np.errstate(invalid="ignore"):
        r = np.where(fa > fb, a, np.where(fb > fa, b, a & b))  # equal: +0 wins via sign AND
    return np.where(_nan_bits(a) | _nan_bits(b), NAN, r).astype(np.uint32)


def fmin(a, b) -> np.ndarray:
    """min with NaN -> NaN and min(-0, +0) = -0."""
    a, b = np.asarray(a, np.uint32), np.asarray(b, np.uint32)
    fa, fb = _f(a), _f(b)
    with np.errstate(invalid="ignore"):
        r = np.where(fa < fb, a, np.where(fb < fa, b, a | b))
    return np.where(_nan_bits(a) | _nan_bits(b), NAN, r).astype(np.uint32)


def _add(a, b):
    with np.errstate(all="ignore"):
        return _canon(_f(a) + _f(b))


def _mul(a, b):
    with np.errstate(all="ignore"):
        return _canon(_f(a) * _f(b))


def binary(op: int, a, b) -> np.ndarray:
    a, b = np.asarray(a, np.uint32), np.asarray(b, np.uint32)
    with np.errstate(all="ignore"):
        if op == T.TVP_ADD:
            return _canon(_f(a) + _f(b))
        if op == T.TVP_SUB:
            return _canon(_f(a) - _f(b))
        if op == T.TVP_MUL:
            return _canon(_f(a) * _f(b))
    if op == T.TVP_MAX:
        return fmax(a, b)
    if op == T.TVP_MIN:
        return fmin(a, b)
    raise ValueError(f"op: {op} is not a binary TVP op")


def exp2(x) -> np.ndarray:
    """2^x by the documented piecewise polynomial (docs/tile.md "exp2")."""
    x = np.asarray(x, np.uint32)
    xf = _f(x)
    with np.errstate(all="ignore"):
        inr = (xf >= T.EXP2_MIN) & (xf < T.EXP2_MAX)
        xs = np.where(inr, xf, np.float32(0))
        n = np.floor(xs.astype(np.float64)).astype(np.int64)
        f = (xs - n.astype(np.float32)).astype(np.float32)          # RNE binary32
        s = np.minimum(np.floor(f.astype(np.float64) * T.EXP2_PIECES).astype(np.int64),
                       T.EXP2_PIECES - 1)
        t = (f - (s / T.EXP2_PIECES).astype(np.float32)).astype(np.float32)
        coef = np.array(T.EXP2_COEFFS, dtype=np.uint32).view(np.float32)  # [piece][k]
        p = coef[s, T.EXP2_DEGREE]
        for k in range(T.EXP2_DEGREE - 1, -1, -1):
            p = (p * t).astype(np.float32)
            p = (p + coef[s, k]).astype(np.float32)
        two_n = np.ldexp(np.float64(1.0), n).astype(np.float32)    # exact for n >= -149
        r = (p * two_n).astype(np.float32)
    out = _canon(r)
    out = np.where(xf >= T.EXP2_MAX, np.uint32(0x7F800000), out)
    out = np.where(xf < T.EXP2_MIN, np.uint32(0), out)
    return np.where(_nan_bits(x), NAN, out).astype(np.uint32)


def rcp(x) -> np.ndarray:
    """1/x by Newton steps from a bit-trick seed (docs/tile.md "rcp")."""
    x = np.asarray(x, np.uint32)
    sign = x & np.uint32(0x80000000)
    a = x & np.uint32(0x7FFFFFFF)
    af = _f(a)
    with np.errstate(all="ignore"):
        y = _f((np.uint32(T.RCP_MAGIC) - np.minimum(a, np.uint32(T.RCP_MAGIC))).astype(np.uint32))
        two = np.float32(2.0)
        for _ in range(T.RCP_STEPS):
            m = (af * y).astype(np.float32)
            e = (two - m).astype(np.float32)
            y = (y * e).astype(np.float32)
    out = y.view(np.uint32) | sign
    out = np.where(a < 0x00800000, sign | np.uint32(0x7F800000), out)   # |x| < 2^-126
    out = np.where(a > 0x7E800000, sign, out)                           # |x| > 2^126
    return np.where(_nan_bits(x), NAN, out).astype(np.uint32)


def unary(op: int, x, imm: int = 0) -> np.ndarray:
    x = np.asarray(x, np.uint32)
    if op == T.TVP_RELU:
        with np.errstate(invalid="ignore"):
            r = np.where(_f(x) > 0, x, np.uint32(0))
        return np.where(_nan_bits(x), NAN, r).astype(np.uint32)
    if op == T.TVP_SCALE2:
        if not T.SCALE2_MIN <= imm <= T.SCALE2_MAX:
            raise ValueError(f"imm: scale2 exponent must be in [{T.SCALE2_MIN}, "
                             f"{T.SCALE2_MAX}], got {imm}")
        return _mul(x, np.float32(2.0 ** imm).view(np.uint32))
    if op == T.TVP_EXP2:
        return exp2(x)
    if op == T.TVP_RCP:
        return rcp(x)
    if op == T.TVP_COPY:
        return x.copy()
    raise ValueError(f"op: {op} is not a unary TVP op")


def _lanes(x, init: int, step):
    """Per-lane sequential reduction: lane l takes elements l, l+8, ... in order."""
    x = np.asarray(x, np.uint32)
    rows, n = x.shape
    acc = np.full((rows, T.LANES), init, dtype=np.uint32)
    for j in range(0, n, T.LANES):
        chunk = x[:, j:j + T.LANES]
        w = chunk.shape[1]
        acc[:, :w] = step(acc[:, :w], chunk)
    return acc


def _tree(acc, step):
    """((l0 . l1) . (l2 . l3)) . ((l4 . l5) . (l6 . l7))"""
    level = [acc[:, i] for i in range(acc.shape[1])]
    while len(level) > 1:
        level = [step(level[i], level[i + 1]) for i in range(0, len(level), 2)]
    return level[0]


def rowsum(x) -> np.ndarray:
    """Row sums: lane accumulators start at -0, then the fixed pairwise tree."""
    return _tree(_lanes(x, 0x80000000, _add), _add)


def rowmax(x) -> np.ndarray:
    """Row maxima: lane accumulators start at -Inf, then the fixed pairwise tree."""
    return _tree(_lanes(x, 0xFF800000, fmax), fmax)


def to_bf16(x) -> np.ndarray:
    """binary32 -> bfloat16 bits (uint16), round to nearest even; NaN -> 0x7FC0."""
    x = np.asarray(x, np.uint32).astype(np.uint64)
    upper = x >> 16
    rnd = (x >> 15) & 1
    sticky = (x & 0x7FFF) != 0
    up = rnd & (sticky | (upper & 1)).astype(np.uint64)
    r = (upper + up).astype(np.uint16)
    return np.where(_nan_bits(x.astype(np.uint32)), np.uint16(0x7FC0), r).astype(np.uint16)
