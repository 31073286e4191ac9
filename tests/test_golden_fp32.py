"""golden/fp32.py (the exact binary32 rounding used by golden's fallback path) against the
Fraction reference in tests/mxref.py and against numpy's own binary32 arithmetic."""

from __future__ import annotations

import os
from fractions import Fraction

import mxref
import numpy as np
import pytest

from golden import fp32


@pytest.fixture
def rng(request):
    seed = int(os.environ.get("MX_SEED", int.from_bytes(os.urandom(4), "little")))
    print(f"{request.node.name}: seed={seed} (replay with MX_SEED={seed})")
    return np.random.default_rng(seed)


def _ref(sign, mag, exp):
    v = Fraction(mag) * Fraction(2) ** exp
    return mxref.frac_to_f32(-v if sign else v, zero_sign=sign)


def test_round_exact_random_against_fractions(rng):
    for _ in range(3000):
        sign = int(rng.integers(0, 2))
        mag = int(rng.integers(1, 2**62)) >> int(rng.integers(0, 62))
        exp = int(rng.integers(-260, 140))
        got = fp32.round_exact(sign, mag, exp)
        exp_bits = _ref(sign, mag, exp)
        assert got == exp_bits, (f"round_exact(sign={sign}, mag={mag:#x}, exp={exp}): "
                                 f"expected {exp_bits:08x} got {got:08x}")


@pytest.mark.parametrize("sign,mag,exp,want", [
    (0, 0, 0, 0x00000000),
    (1, 0, 5, 0x80000000),
    (0, 1, -149, 0x00000001),                      # smallest subnormal
    (0, 1, -150, 0x00000000),                      # half of it: tie to even (0)
    (0, 3, -151, 0x00000001),                      # 0.75 of it rounds up
    (1, 1, -151, 0x80000000),                      # tiny negative -> -0
    (0, (1 << 24) - 1, -150, 0x00800000),          # tie, rounds up into the normal range
    (0, (1 << 24) - 1, -149, 0x00FFFFFF),          # smallest binade, all ones
    (0, (1 << 25) + 1, -25, 0x3F800000),           # just above 1: rounds down to 1.0
    (0, (1 << 25) + 3, -25, 0x3F800001),           # 1 + 0.75 ulp: up
    (0, (1 << 24) + 1, -24, 0x3F800000),           # 1 + 2^-24: tie -> even (1.0)
    (0, (1 << 24) + 3, -24, 0x3F800002),           # 1 + 3*2^-24: tie -> even (up)
    (0, (1 << 24) - 1, 104, 0x7F7FFFFF),           # largest finite
    (0, (1 << 25) - 1, 103, 0x7F800000),           # rounds to 2^128: Inf
    (1, 1, 128, 0xFF800000),                       # -2^128: -Inf
    (0, (1 << 26) - 3, 102, 0x7F7FFFFF),           # below the overflow midpoint
])
def test_round_exact_edges(sign, mag, exp, want):
    assert fp32.round_exact(sign, mag, exp) == want
    assert _ref(sign, mag, exp) == want  # the two references agree on the edge


def test_round_exact_matches_float32_addition(rng):
    """Sums of two binary32 values, rounded by numpy's IEEE float32 addition."""
    a = rng.integers(0, 0x7F800000, 2000, dtype=np.uint32) | \
        (rng.integers(0, 2, 2000, dtype=np.uint32) << 31)
    b = (a.view(np.float32) * np.float32(-1.0000001)).view(np.uint32)  # near-cancelling
    with np.errstate(over="ignore"):
        want = (a.view(np.float32) + b.view(np.float32)).view(np.uint32)
    for x, y, w in zip(a, b, want):
        sx, mx_, ex = fp32.split(int(x))
        sy, my, ey = fp32.split(int(y))
        lo = min(ex, ey)
        n = (-mx_ if sx else mx_) * 2 ** (ex - lo) + (-my if sy else my) * 2 ** (ey - lo)
        got = 0 if n == 0 else fp32.round_exact(int(n < 0), abs(n), lo)
        assert got == int(w), f"{int(x):08x} + {int(y):08x}: numpy {int(w):08x} got {got:08x}"


def test_split_bits_and_nan_helpers():
    assert fp32.split(0x3F800000) == (0, 1 << 23, -23)
    assert fp32.split(0x80000001) == (1, 1, -149)
    with pytest.raises(ValueError, match="split"):
        fp32.split(0x7F800000)
    with pytest.raises(ValueError, match="mag"):
        fp32.round_exact(0, -1, 0)
    v = np.array([1.5, -0.0, np.inf], np.float32)
    assert (fp32.from_bits(fp32.bits(v)).view(np.uint32) == v.view(np.uint32)).all()
    assert list(fp32.is_nan(np.array([0x7FC00000, 0x7F800000, 0xFF800001, 0], np.uint32))) \
        == [True, False, True, False]
