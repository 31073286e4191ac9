"""MX numerics: element decode, quantization, block dot products and matmul, bit-exact.

The contract is docs/numerics.md (restating ../shared/brief/numerics.md). Summary:

* ``quantize``: per 32-element block, scale X = floor(log2(amax)) - emax (clamped to
  [-127, 127]); elements = RNE(x / 2^X) with saturation; NaN/Inf blocks get scale 0xFF.
* ``dot``/``matmul``: for each block j in order, S_j = sum(a_i * b_i) exactly and
  acc = RNE_fp32(acc + 2^(Xa_j + Xb_j) * S_j), with the contract's NaN/Inf/zero rules.

All results are binary32 bit patterns (uint32). Implementation: block sums are exact integer
sums computed with float64 matrix products (every partial sum is an integer below 2^53, so
BLAS summation order cannot matter); the per-block rounding is decided in float64 with a
rigorous error bound and falls back to exact integer arithmetic (``golden.fp32.round_exact``)
for the rare results that lie too close to a rounding boundary.
"""

from __future__ import annotations

import ml_dtypes
import numpy as np

from golden import fp32
from spec.formats import (BLOCK, FORMATS, FP32_CANONICAL_NAN, FP32_NEG_INF, FP32_POS_INF,
                          SCALE_BIAS, SCALE_NAN, ElementFormat, element_format)

__all__ = ["decode", "quantize", "dot", "matmul", "pack_e2m1", "unpack_e2m1",
           "decode_scale", "BLOCK"]

_ML = {"e2m1": ml_dtypes.float4_e2m1fn, "e4m3": ml_dtypes.float8_e4m3fn,
       "e5m2": ml_dtypes.float8_e5m2, "e8m0": ml_dtypes.float8_e8m0fnu}

# Elements of e5m2 span 2^0..2^32 in units of 2^-16; they are split at ee = 15 into a low and
# a high piece of at most 17 bits each so every block sum of piece products stays below 2^53.
_SPLIT = 15


# --------------------------------------------------------------------------- validation

def _codes(arr, fmt: str, argname: str) -> np.ndarray:
    a = np.asarray(arr)
    if a.dtype.kind not in "ui":
        raise ValueError(f"{argname}: codes must be an integer array, got dtype {a.dtype}")
    limit = 16 if fmt == "e2m1" else 256
    if a.size and (a.min() < 0 or a.max() >= limit):
        raise ValueError(f"{argname}: {fmt} codes must lie in [0, {limit - 1}], "
                         f"got values in [{a.min()}, {a.max()}]")
    return a.astype(np.uint8, copy=False)


def _fmt(fmt, argname: str) -> ElementFormat:
    return element_format(fmt, argname)


# --------------------------------------------------------------------------- decode / pack

def decode(codes, fmt: str) -> np.ndarray:
    """Element or scale codes (one per uint8) -> float32 values (NaN where the code is NaN)."""
    if fmt not in _ML:
        raise ValueError(f"fmt: unknown format {fmt!r}; expected one of {list(_ML)}")
    c = _codes(codes, fmt, "codes")
    return c.view(_ML[fmt]).astype(np.float32)


def decode_scale(scales) -> np.ndarray:
    """e8m0 scale codes -> float32 2^(code-127) (NaN for 0xFF)."""
    return decode(scales, "e8m0")


def pack_e2m1(codes) -> np.ndarray:
    """Unpacked e2m1 codes (..., K), K even -> bytes (..., K/2): element 2i in bits [3:0]."""
    c = _codes(codes, "e2m1", "codes")
    if c.shape[-1] % 2:
        raise ValueError(f"codes: last dimension must be even to pack e2m1, got {c.shape[-1]}")
    return (c[..., 0::2] | (c[..., 1::2] << 4)).astype(np.uint8)


def unpack_e2m1(packed) -> np.ndarray:
    """Bytes (..., K/2) -> unpacked e2m1 codes (..., K)."""
    p = np.asarray(packed)
    if p.dtype.kind not in "ui" or (p.size and (p.min() < 0 or p.max() > 255)):
        raise ValueError("packed: must be an array of bytes (integers in [0, 255])")
    p = p.astype(np.uint8)
    out = np.empty(p.shape[:-1] + (p.shape[-1] * 2,), dtype=np.uint8)
    out[..., 0::2] = p & 0xF
    out[..., 1::2] = p >> 4
    return out


# --------------------------------------------------------------------------- quantize

def quantize(x, fmt: str, block: int = BLOCK) -> tuple[np.ndarray, np.ndarray]:
    """binary32 values (..., K) -> (codes uint8 (..., K), scales uint8 (..., K/block))."""
    f = _fmt(fmt, "fmt")
    if block != BLOCK:
        raise ValueError(f"block: only the MX block size {BLOCK} is supported, got {block}")
    xa = np.asarray(x)
    if xa.dtype != np.float32:
        if xa.dtype.kind != "f":
            raise ValueError(f"x: must be a float32 array, got dtype {xa.dtype}")
        xa = xa.astype(np.float32)
    if xa.ndim == 0 or xa.shape[-1] % BLOCK or xa.shape[-1] == 0:
        raise ValueError(f"x: last dimension must be a positive multiple of {BLOCK}, "
                         f"got shape {xa.shape}")
    blocks = xa.reshape(xa.shape[:-1] + (xa.shape[-1] // BLOCK, BLOCK))
    bad = ~np.isfinite(blocks).all(axis=-1)
    amax = np.abs(np.where(np.isfinite(blocks), blocks, 0)).max(axis=-1).astype(np.float64)
    zero = amax == 0
    _, e = np.frexp(np.where(zero, 1.0, amax))  # amax = m * 2^e, m in [0.5, 1): floor(log2) = e-1
    X = np.clip(e.astype(np.int64) - 1 - f.emax, -127, 127)
    X = np.where(zero, -127, X)
    scaled = blocks.astype(np.float64) * np.ldexp(1.0, -X)[..., None]
    with np.errstate(invalid="ignore", over="ignore"):
        scaled = np.clip(np.where(np.isfinite(scaled), scaled, 0.0), -f.max_finite,
                         f.max_finite)
    # scaled values that matter are exact in float32 (float32 input times a power of two)
    codes = scaled.astype(np.float32).astype(_ML[fmt]).view(np.uint8)
    codes = np.where(bad[..., None], 0, codes).astype(np.uint8)
    scales = np.where(bad, SCALE_NAN, X + SCALE_BIAS).astype(np.uint8)
    return codes.reshape(xa.shape), scales


# --------------------------------------------------------------------------- element algebra

def _element_parts(c: np.ndarray, f: ElementFormat):
    """codes -> (signed integer value in units 2^unit as int64, nan, inf, zero masks)."""
    c = c.astype(np.int64)
    sbit = f.bits - 1
    s = (c >> sbit) & 1
    e = (c >> f.mbits) & ((1 << f.ebits) - 1)
    m = c & ((1 << f.mbits) - 1)
    eall = (1 << f.ebits) - 1
    if f.name == "e4m3":
        nan = (e == eall) & (m == (1 << f.mbits) - 1)
        inf = np.zeros_like(nan)
    elif f.name == "e5m2":
        nan = (e == eall) & (m != 0)
        inf = (e == eall) & (m == 0)
    else:
        nan = inf = np.zeros(c.shape, dtype=bool)
    sig = np.where(e > 0, m | (1 << f.mbits), m)
    ee = np.maximum(e, 1) - 1
    val = np.where(nan | inf, 0, sig << ee)
    val = np.where(s == 1, -val, val)
    return val, nan, inf, val == 0, s == 1


def _pieces(val: np.ndarray, f: ElementFormat) -> list[tuple[np.ndarray, int]]:
    """Split integer element values into float64 pieces below 2^18 with their bit shifts."""
    if f.name != "e5m2":
        return [(val.astype(np.float64), 0)]
    lo_mask = np.abs(val) < (1 << _SPLIT) * 4  # ee < 15 <=> |val| < 4 * 2^15 for 3-bit sig
    lo = np.where(lo_mask, val, 0)
    hi = np.where(lo_mask, 0, val >> _SPLIT)  # exact: |val| >= 2^17 means ee >= 15
    return [(lo.astype(np.float64), 0), (hi.astype(np.float64), _SPLIT)]


def _scale_factors(scales: np.ndarray, f: ElementFormat):
    """e8m0 codes -> (2^(X + unit) as float64, NaN mask)."""
    s = scales.astype(np.int64)
    nan = s == SCALE_NAN
    X = np.where(nan, 0, s - SCALE_BIAS)
    return np.ldexp(1.0, X + f.unit), nan


# --------------------------------------------------------------------------- accumulation

class _Blocks:
    """Exact per-block sums for one output array, as float64 pieces P_k with shifts s_k:
    S = sum_k P_k * 2^s_k, each P_k an exact integer-valued float64 below 2^53."""

    def __init__(self, terms: list[tuple[np.ndarray, int]]):
        shifts = sorted({s for _, s in terms})
        merged = {s: None for s in shifts}
        for p, s in terms:
            merged[s] = p if merged[s] is None else merged[s] + p  # exact: < 2^41 each
        self.terms = [(merged[s], s) for s in shifts]

    def value(self):
        """(S rounded to float64 with one rounding, exact-zero mask, exact int getter)."""
        if len(self.terms) == 1:
            p, s = self.terms[0]
            return np.ldexp(p, s), p == 0
        # two-limb int64: S = H * 2^30 + L, 0 <= L < 2^30 (shifts are 0, 15, 30)
        ints = {s: p.astype(np.int64) for p, s in self.terms}
        lo = ints.get(0, 0)
        mid = ints.get(_SPLIT, 0)
        hi = ints.get(2 * _SPLIT, 0)
        H = hi + (mid >> _SPLIT)
        L = ((mid & ((1 << _SPLIT) - 1)) << _SPLIT) + lo
        H = H + (L >> 30)
        L = L & ((1 << 30) - 1)
        S = np.ldexp(H.astype(np.float64), 30) + L.astype(np.float64)  # one rounding
        return S, (H == 0) & (L == 0)

    def exact(self, idx) -> int:
        return sum(int(p[idx]) << s for p, s in self.terms)


def _accumulate_block(acc: np.ndarray, blk: _Blocks, sa: np.ndarray, sb: np.ndarray,
                      nan: np.ndarray | None, pinf: np.ndarray | None,
                      ninf: np.ndarray | None, exp_ab) -> np.ndarray:
    """acc (uint32 bits) <- RNE(acc + 2^E * S) with the contract's special cases."""
    S, s_zero = blk.value()
    scale = sa * sb  # exact power of two in float64
    term = S * scale
    a64 = acc.view(np.float32).astype(np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        x = a64 + term
        bound = (np.abs(a64) + np.abs(term)) * 2.0**-50
        lo = (x - bound).astype(np.float32).view(np.uint32)
        hi = (x + bound).astype(np.float32).view(np.uint32)
    out = lo.copy()
    acc_nan = fp32.is_nan(acc)
    acc_pinf = acc == FP32_POS_INF
    acc_ninf = acc == FP32_NEG_INF
    special = acc_nan | acc_pinf | acc_ninf
    if nan is not None:
        special |= nan | pinf | ninf
    keep = s_zero & ~special
    out[keep] = acc[keep]
    hard = (lo != hi) & ~s_zero & ~special
    if hard.any():
        for idx in zip(*np.nonzero(hard)):
            S_int = blk.exact(idx)
            E = exp_ab(idx)
            sgn, A, ea = fp32.split(acc[idx])
            lo_e = min(ea, E)
            N = (-A if sgn else A) * (1 << (ea - lo_e)) + S_int * (1 << (E - lo_e))
            out[idx] = 0 if N == 0 else fp32.round_exact(int(N < 0), abs(N), lo_e)
    if special.any():
        p = acc_pinf | (pinf if pinf is not None else False)
        n = acc_ninf | (ninf if ninf is not None else False)
        isnan = acc_nan | p & n
        if nan is not None:
            isnan |= nan
        out = np.where(p, np.uint32(FP32_POS_INF), out)
        out = np.where(n, np.uint32(FP32_NEG_INF), out)
        out = np.where(isnan, np.uint32(FP32_CANONICAL_NAN), out).astype(np.uint32)
    return out


def _init_acc(acc, shape, argname="acc") -> np.ndarray:
    if acc is None:
        return np.zeros(shape, dtype=np.uint32)
    a = np.asarray(acc)
    if a.dtype == np.float32:
        a = a.view(np.uint32)
    if a.dtype.kind not in "ui":
        raise ValueError(f"{argname}: must be binary32 bit patterns (uint32) or float32, "
                         f"got dtype {a.dtype}")
    if a.size and (a.min() < 0 or a.max() > 0xFFFFFFFF):
        raise ValueError(f"{argname}: values must fit in 32 bits")
    if a.shape != tuple(shape):
        try:
            a = np.broadcast_to(a, shape)
        except ValueError:
            raise ValueError(f"{argname}: shape {a.shape} does not match output shape "
                             f"{tuple(shape)}") from None
    return a.astype(np.uint32).copy()


def _check_k(shape, argname) -> int:
    if len(shape) == 0 or shape[-1] == 0 or shape[-1] % BLOCK:
        raise ValueError(f"{argname}: K (last dimension) must be a positive multiple of "
                         f"{BLOCK}, got shape {shape}")
    return shape[-1] // BLOCK


def _check_scales(scales, shape, argname) -> np.ndarray:
    s = np.asarray(scales)
    if s.dtype.kind not in "ui" or (s.size and (s.min() < 0 or s.max() > 255)):
        raise ValueError(f"{argname}: e8m0 scale codes must be integers in [0, 255]")
    if s.shape != tuple(shape):
        raise ValueError(f"{argname}: expected shape {tuple(shape)}, got {s.shape}")
    return s.astype(np.uint8)


# --------------------------------------------------------------------------- dot

def dot(a, a_scale, a_fmt, b, b_scale, b_fmt, acc=None) -> np.ndarray:
    """Block dot products along the last axis: a, b (..., K) codes -> uint32 (...)."""
    fa, fb = _fmt(a_fmt, "a_fmt"), _fmt(b_fmt, "b_fmt")
    a = _codes(a, a_fmt, "a")
    b = _codes(b, b_fmt, "b")
    nb = _check_k(a.shape, "a")
    if b.shape != a.shape:
        raise ValueError(f"b: shape {b.shape} must equal a's shape {a.shape}")
    shape = a.shape[:-1]
    a_scale = _check_scales(a_scale, shape + (nb,), "a_scale")
    b_scale = _check_scales(b_scale, shape + (nb,), "b_scale")
    out = _init_acc(acc, shape).reshape(-1)
    n = out.shape[0]
    a, b = a.reshape(n, nb * BLOCK), b.reshape(n, nb * BLOCK)
    a_scale, b_scale = a_scale.reshape(n, nb), b_scale.reshape(n, nb)
    batch = (n,)
    av, an, ai, az, asg = (t.reshape(batch + (nb, BLOCK)) for t in _element_parts(a, fa))
    bv, bn, bi, bz, bsg = (t.reshape(batch + (nb, BLOCK)) for t in _element_parts(b, fb))
    sa, sa_nan = _scale_factors(a_scale, fa)
    sb, sb_nan = _scale_factors(b_scale, fb)
    pa, pb = _pieces(av, fa), _pieces(bv, fb)
    nan = sa_nan | sb_nan | an.any(-1) | bn.any(-1) | ((ai & bz) | (az & bi)).any(-1)
    prod_inf = (ai & ~bz & ~bn) | (bi & ~az & ~an)
    neg = asg ^ bsg
    pinf = (prod_inf & ~neg).any(-1)
    ninf = (prod_inf & neg).any(-1)
    Xa = a_scale.astype(np.int64) - SCALE_BIAS + fa.unit
    Xb = b_scale.astype(np.int64) - SCALE_BIAS + fb.unit
    for j in range(nb):
        terms = [((x[..., j, :] * y[..., j, :]).sum(-1), s + t) for x, s in pa for y, t in pb]
        blk = _Blocks(terms)
        out = _accumulate_block(out, blk, sa[..., j], sb[..., j], nan[..., j], pinf[..., j],
                                ninf[..., j], lambda idx, j=j: int(Xa[idx + (j,)] + Xb[idx + (j,)]))
    return out.reshape(shape)


# --------------------------------------------------------------------------- matmul

def matmul(a, a_scale, a_fmt, b, b_scale, b_fmt, acc=None) -> np.ndarray:
    """C[M,N] = A[M,K] x B[K,N] per the contract; scales (M,K/32) and (K/32,N); uint32 out."""
    fa, fb = _fmt(a_fmt, "a_fmt"), _fmt(b_fmt, "b_fmt")
    a = _codes(a, a_fmt, "a")
    b = _codes(b, b_fmt, "b")
    if a.ndim != 2:
        raise ValueError(f"a: must be 2-D (M, K), got shape {a.shape}")
    if b.ndim != 2:
        raise ValueError(f"b: must be 2-D (K, N), got shape {b.shape}")
    M, K = a.shape
    nb = _check_k(a.shape, "a")
    if b.shape[0] != K:
        raise ValueError(f"b: K mismatch: a is {a.shape}, b is {b.shape}")
    N = b.shape[1]
    a_scale = _check_scales(a_scale, (M, nb), "a_scale")
    b_scale = _check_scales(b_scale, (nb, N), "b_scale")
    out = _init_acc(acc, (M, N))

    av, an, ai, az, asg = _element_parts(a, fa)
    bv, bn, bi, bz, bsg = _element_parts(b.T, fb)  # (N, K)
    sa, sa_nan = _scale_factors(a_scale, fa)
    sb, sb_nan = _scale_factors(b_scale.T, fb)  # (N, nb)
    pa = [(np.ascontiguousarray(p.reshape(M, nb, BLOCK).transpose(1, 0, 2)), s)
          for p, s in _pieces(av, fa)]
    pb = [(np.ascontiguousarray(p.reshape(N, nb, BLOCK).transpose(1, 0, 2)), s)
          for p, s in _pieces(bv, fb)]
    specials = bool(an.any() or bn.any() or ai.any() or bi.any() or sa_nan.any()
                    or sb_nan.any())
    if specials:
        f = np.float64
        blk3 = (lambda t, n: t.reshape(n, nb, BLOCK).transpose(1, 0, 2).astype(f))
        A_nan, B_nan = an.reshape(M, nb, BLOCK).any(-1), bn.reshape(N, nb, BLOCK).any(-1)
        ai3, az3, bi3, bz3 = blk3(ai, M), blk3(az & ~an, M), blk3(bi, N), blk3(bz & ~bn, N)
        anz_p, anz_n = blk3(~az & ~an & ~asg, M), blk3(~az & ~an & asg, M)
        bnz_p, bnz_n = blk3(~bz & ~bn & ~bsg, N), blk3(~bz & ~bn & bsg, N)
        ai_p, ai_n = blk3(ai & ~asg, M), blk3(ai & asg, M)
        bi_p, bi_n = blk3(bi & ~bsg, N), blk3(bi & bsg, N)
    Xa = a_scale.astype(np.int64) - SCALE_BIAS + fa.unit
    Xb = b_scale.astype(np.int64) - SCALE_BIAS + fb.unit
    for j in range(nb):
        terms = [(x[j] @ y[j].T, s + t) for x, s in pa for y, t in pb]
        blk = _Blocks(terms)
        nan = pinf = ninf = None
        if specials:
            def mm(x, y):
                return (x[j] @ y[j].T) > 0
            nan = (sa_nan[:, j, None] | sb_nan[None, :, j] | A_nan[:, j, None]
                   | B_nan[None, :, j] | mm(ai3, bz3) | mm(az3, bi3))
            pinf = mm(ai_p, bnz_p) | mm(ai_n, bnz_n) | mm(anz_p, bi_p) | mm(anz_n, bi_n)
            ninf = mm(ai_p, bnz_n) | mm(ai_n, bnz_p) | mm(anz_p, bi_n) | mm(anz_n, bi_p)
        out = _accumulate_block(out, blk, sa[:, j, None], sb[None, :, j], nan, pinf, ninf,
                                lambda idx, j=j: int(Xa[idx[0], j] + Xb[j, idx[1]]))
    return out
