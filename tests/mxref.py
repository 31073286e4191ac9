"""Exact rational reference for the MX numerics contract, written independently of golden/.

Slow (Python Fractions) but unarguable: element values are decoded from the bit fields by the
OCP formulas, block sums are exact rationals, and binary32 rounding is done on Fractions.
"""

from __future__ import annotations

import bisect
import math
from fractions import Fraction
from functools import cache

NAN = 0x7FC00000
PINF = 0x7F800000
NINF = 0xFF800000

# name: (bits, ebits, mbits, bias)
FMT = {"e2m1": (4, 2, 1, 1), "e4m3": (8, 4, 3, 7), "e5m2": (8, 5, 2, 15)}


@cache
def elem(code: int, fmt: str):
    """-> Fraction, or the strings 'nan', '+inf', '-inf'."""
    bits, eb, mb, bias = FMT[fmt]
    s = (code >> (bits - 1)) & 1
    e = (code >> mb) & ((1 << eb) - 1)
    m = code & ((1 << mb) - 1)
    if fmt == "e4m3" and e == 15 and m == 7:
        return "nan"
    if fmt == "e5m2" and e == 31:
        if m:
            return "nan"
        return "-inf" if s else "+inf"
    if e == 0:
        v = Fraction(m, 1 << mb) * Fraction(2) ** (1 - bias)
    else:
        v = (1 + Fraction(m, 1 << mb)) * Fraction(2) ** (e - bias)
    return -v if s else v


def scale_value(code: int):
    """e8m0: 2^(code-127) as a Fraction, or 'nan' for 0xFF."""
    return "nan" if code == 0xFF else Fraction(2) ** (code - 127)


def floor_log2(a: Fraction) -> int:
    """Exact floor(log2(a)) for a > 0."""
    e = a.numerator.bit_length() - a.denominator.bit_length()
    if Fraction(2) ** e > a:
        e -= 1
    return e


@cache
def _positive_grid(fmt: str):
    """Sorted (value, code) of the finite non-negative codes of an element format."""
    bits = FMT[fmt][0]
    grid = [(v, c) for c in range(1 << (bits - 1))
            if not isinstance(v := elem(c, fmt), str)]
    grid.sort()
    return [v for v, _ in grid], [c for _, c in grid]


def encode(v: Fraction, fmt: str, negative: bool | None = None) -> int:
    """Round a rational to the element format: nearest, ties to the even code, saturating
    at +-max finite, a zero result keeping the sign (``negative`` gives the sign of a zero
    input, e.g. -0.0)."""
    bits = FMT[fmt][0]
    neg = (v < 0) if v != 0 else bool(negative)
    a = -v if v < 0 else v
    vals, codes = _positive_grid(fmt)
    if a >= vals[-1]:
        code = codes[-1]
    else:
        i = bisect.bisect_right(vals, a)  # vals[i-1] <= a < vals[i]
        lo, hi = vals[i - 1], vals[i]
        if a - lo < hi - a:
            code = codes[i - 1]
        elif a - lo > hi - a:
            code = codes[i]
        else:
            code = codes[i - 1] if codes[i - 1] % 2 == 0 else codes[i]
    return code | (int(neg) << (bits - 1))


EMAX = {"e2m1": 2, "e4m3": 8, "e5m2": 15}


def quantize_block_ref(xbits, fmt: str):
    """32 binary32 bit patterns -> (element codes, e8m0 scale code) per the contract."""
    vals = [f32_to_frac(int(b)) for b in xbits]
    if any(isinstance(v, str) for v in vals):
        return [0] * len(vals), 0xFF
    amax = max(abs(v) for v in vals)
    if amax == 0:
        return [encode(Fraction(0), fmt, negative=bool(int(b) >> 31)) for b in xbits], 0
    X = min(max(floor_log2(amax) - EMAX[fmt], -127), 127)
    step = Fraction(2) ** X
    codes = [encode(v / step, fmt, negative=bool(int(b) >> 31)) for v, b in zip(vals, xbits)]
    return codes, X + 127


def f32_to_frac(b: int):
    s, e, m = b >> 31, (b >> 23) & 0xFF, b & 0x7FFFFF
    if e == 0xFF:
        return "nan" if m else ("-inf" if s else "+inf")
    v = Fraction(m, 1 << 23) * Fraction(2) ** -126 if e == 0 else \
        (1 + Fraction(m, 1 << 23)) * Fraction(2) ** (e - 127)
    return -v if s else v


def frac_to_f32(v: Fraction, zero_sign: int = 0) -> int:
    """Round a rational to binary32, RNE, subnormals, overflow to Inf."""
    if v == 0:
        return zero_sign << 31
    s = 1 if v < 0 else 0
    a = -v if s else v
    # e = floor(log2(a))
    e = a.numerator.bit_length() - a.denominator.bit_length()
    if Fraction(2) ** e > a:
        e -= 1
    lsb = max(e - 23, -149)
    q = a / Fraction(2) ** lsb
    n = math.floor(q)
    r = q - n
    if r > Fraction(1, 2) or (r == Fraction(1, 2) and n % 2 == 1):
        n += 1
    if n == 1 << 24:
        n >>= 1
        lsb += 1
    if n >= 1 << 23:
        ef = lsb + 150
        if ef >= 255:
            return (s << 31) | PINF
        return (s << 31) | (ef << 23) | (n & 0x7FFFFF)
    return (s << 31) | n


def dot_ref(a, a_scale, a_fmt, b, b_scale, b_fmt, acc: int = 0) -> int:
    """One K-long dot product per the contract; codes/scales are Python int sequences."""
    K = len(a)
    assert K % 32 == 0 and len(b) == K
    accv = f32_to_frac(int(acc))
    acc = int(acc)
    acc_bits = acc
    if accv == "nan":
        return NAN
    for j in range(K // 32):
        sa, sb = int(a_scale[j]), int(b_scale[j])
        ea = [elem(int(c), a_fmt) for c in a[32 * j:32 * j + 32]]
        eb = [elem(int(c), b_fmt) for c in b[32 * j:32 * j + 32]]
        if sa == 0xFF or sb == 0xFF or any(type(v) is str and v == "nan" for v in ea + eb):
            return NAN
        infs = set()
        if accv in ("+inf", "-inf"):
            infs.add(accv)
        S = Fraction(0)
        for x, y in zip(ea, eb):
            xi, yi = isinstance(x, str), isinstance(y, str)
            if xi or yi:
                other = y if xi else x
                if not isinstance(other, str) and other == 0:
                    return NAN  # inf * 0
                sx = -1 if (x == "-inf" if xi else x < 0) else 1
                sy = -1 if (y == "-inf" if yi else y < 0) else 1
                infs.add("+inf" if sx * sy > 0 else "-inf")
            elif x and y:  # Fraction truth value: nonzero
                S += x * y
        if len(infs) == 2:
            return NAN
        if infs:
            accv = infs.pop()
            acc_bits = PINF if accv == "+inf" else NINF
            continue
        if S == 0:
            continue
        total = accv + S * Fraction(2) ** ((sa - 127) + (sb - 127))
        acc_bits = frac_to_f32(total, 0)
        accv = f32_to_frac(acc_bits)
    return acc_bits
