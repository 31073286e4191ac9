"""IEEE 754 binary32 helpers for the golden model (bit patterns as uint32).

``round_exact`` is the exact reference rounding used by the fast vectorized paths when a
result lies too close to a rounding boundary for float64 arithmetic to decide it.
"""

from __future__ import annotations

import numpy as np

from spec.formats import FP32_CANONICAL_NAN, FP32_NEG_INF, FP32_POS_INF

__all__ = ["bits", "from_bits", "is_nan", "round_exact", "split", "FP32_CANONICAL_NAN",
           "FP32_POS_INF", "FP32_NEG_INF"]


def bits(x) -> np.ndarray:
    """float32 values -> uint32 bit patterns."""
    return np.asarray(x, dtype=np.float32).view(np.uint32)


def from_bits(b) -> np.ndarray:
    """uint32 bit patterns -> float32 values."""
    return np.asarray(b, dtype=np.uint32).view(np.float32)


def is_nan(b) -> np.ndarray:
    b = np.asarray(b, dtype=np.uint32)
    return ((b & 0x7F800000) == 0x7F800000) & ((b & 0x007FFFFF) != 0)


def split(b: int) -> tuple[int, int, int]:
    """Finite binary32 bits -> (sign, integer significand, exponent of its LSB)."""
    b = int(b)
    sign, e, m = b >> 31, (b >> 23) & 0xFF, b & 0x7FFFFF
    if e == 0xFF:
        raise ValueError(f"split: {b:#010x} is not finite")
    if e == 0:
        return sign, m, -149
    return sign, m | (1 << 23), e - 150


def round_exact(sign: int, mag: int, exp: int) -> int:
    """Round (-1)^sign * mag * 2^exp (Python ints, exact) to binary32 with RNE.

    Subnormals are kept, overflow gives +-Inf, an exact zero gives a zero of the given sign.
    """
    if mag < 0:
        raise ValueError("round_exact: mag must be >= 0")
    s = (sign & 1) << 31
    if mag == 0:
        return s
    msb = exp + mag.bit_length() - 1
    lsb = max(msb - 23, -149)
    shift = lsb - exp
    if shift > 0:
        q = mag >> shift
        rem = mag - (q << shift)
        half = 1 << (shift - 1)
        if rem > half or (rem == half and (q & 1)):
            q += 1
    else:
        q = mag << (-shift)
    if q >= (1 << 24):  # carry out of the significand
        q >>= 1
        lsb += 1
    if q >= (1 << 23):
        efield = lsb + 150
        if efield >= 0xFF:
            return s | 0x7F800000
        return s | (efield << 23) | (q & 0x7FFFFF)
    return s | q  # subnormal (lsb == -149)
