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

import contextlib
import math

import ml_dtypes
import numpy as np

from golden import fp32
from spec.formats import (
    BLOCK,
    FP32_CANONICAL_NAN,
    SCALE_BIAS,
    SCALE_NAN,
    ElementFormat,
    element_format,
)

__all__ = ["decode", "quantize", "dot", "matmul", "pack_e2m1", "unpack_e2m1",
           "decode_scale", "BLOCK"]

try:  # optional: pins BLAS to one thread around the small per-block GEMMs
    from threadpoolctl import threadpool_limits as _threadpool_limits
except ImportError:  # pragma: no cover - works without it, only slower on a busy machine
    _threadpool_limits = None


def _one_blas_thread():
    """The per-block GEMMs are (64, 32) @ (32, N): too small for threads to pay off, and a
    multithreaded BLAS spinning on a busy core makes them 10x slower."""
    if _threadpool_limits is None:
        return contextlib.nullcontext()
    return _threadpool_limits(limits=1, user_api="blas")


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
    if c.ndim == 0 or c.shape[-1] % 2:
        raise ValueError(f"codes: last dimension must be even to pack e2m1, got shape "
                         f"{c.shape}")
    return (c[..., 0::2] | (c[..., 1::2] << 4)).astype(np.uint8)


def unpack_e2m1(packed) -> np.ndarray:
    """Bytes (..., K/2) -> unpacked e2m1 codes (..., K)."""
    p = np.asarray(packed)
    if p.dtype.kind not in "ui" or (p.size and (p.min() < 0 or p.max() > 255)):
        raise ValueError("packed: must be an array of bytes (integers in [0, 255])")
    if p.ndim == 0:
        raise ValueError("packed: must be an array of at least one dimension")
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
    """codes -> (signed integer value in units of 2^unit (int64), nan, inf, zero, negative).

    NaN and Inf codes get the integer value 0; ``zero`` is true only for the codes +-0.
    """
    c = c.astype(np.int64)
    s = (c >> (f.bits - 1)) & 1
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
    special = nan | inf
    val = np.where(special, 0, sig << ee)
    zero = (val == 0) & ~special
    return np.where(s == 1, -val, val), nan, inf, zero, s == 1


def _needs_split(f: ElementFormat, other: ElementFormat) -> bool:
    """e5m2 integer values reach 2^32 units: split them unless the partner is e2m1 (then
    32 * 2^32 * 12 < 2^53 already)."""
    return f.name == "e5m2" and other.name != "e2m1"


def _operand(codes2d: np.ndarray, scales2d: np.ndarray, f: ElementFormat, split: bool):
    """Rows of codes (R, K) with scales (R, nb) -> float64 pieces and special masks.

    Returns ``pieces``: list of (shift, array (nb, R, BLOCK)) whose elements are the integer
    element values (or their low/high split) times 2^(X + unit + shift), so a block product
    of two pieces is an integer below 2^41 times a power of two: exact in float64 whatever
    the summation order. ``masks``: dict of (R, nb, BLOCK) bool arrays and the (R, nb) NaN
    scale mask.
    """
    R, K = codes2d.shape
    nb = K // BLOCK
    val, nan, inf, zero, neg = _element_parts(codes2d, f)
    s = scales2d.astype(np.int64)
    snan = s == SCALE_NAN
    X = np.where(snan, 0, s - SCALE_BIAS) + f.unit
    vb = val.reshape(R, nb, BLOCK)
    if split:
        lo_mask = np.abs(vb) < (1 << (_SPLIT + 2))  # ee < 15  <=>  |val| < 2^17
        parts = [(0, np.where(lo_mask, vb, 0)), (_SPLIT, np.where(lo_mask, 0, vb >> _SPLIT))]
    else:
        parts = [(0, vb)]
    pieces = []
    for shift, p in parts:
        fac = np.ldexp(1.0, X + shift)[:, :, None]
        pieces.append((shift, np.ascontiguousarray((p * fac).transpose(1, 0, 2))))
    shape3 = (R, nb, BLOCK)
    masks = {"nan": nan.reshape(shape3), "inf": inf.reshape(shape3),
             "zero": zero.reshape(shape3), "neg": neg.reshape(shape3), "snan": snan}
    return pieces, masks


def _has_specials(m) -> bool:
    return bool(m["nan"].any() or m["inf"].any() or m["snan"].any())


# --------------------------------------------------------------------------- exact rounding

def _exact_f32(values) -> int:
    """RNE binary32 of the exact sum of finite float64 values (Python ints, exact)."""
    ints = []
    for v in values:
        v = float(v)
        if v != 0.0:
            m, e = math.frexp(v)
            ints.append((int(m * (1 << 53)), e - 53))
    if not ints:
        return 0
    emin = min(e for _, e in ints)
    n = sum(m << (e - emin) for m, e in ints)
    if n == 0:
        return 0  # exact cancellation: +0
    return fp32.round_exact(int(n < 0), abs(n), emin)


def _two_sum(a, b):
    """Knuth's TwoSum: s = fl(a + b) and the exact error e = (a + b) - s."""
    s = a + b
    bb = s - a
    e = (a - (s - bb)) + (b - bb)
    return s, e


_LOW29 = np.uint64((1 << 29) - 1)
_HALF29 = np.uint64(1 << 28)
_EXP32 = np.uint32(0x7F800000)
_NEG0 = np.uint32(0x80000000)


def _canonical_bits(acc: np.ndarray) -> np.ndarray:
    """float32 accumulators -> uint32 bits with every NaN made 0x7FC00000."""
    out = acc.view(np.uint32).copy()
    out[np.isnan(acc)] = FP32_CANONICAL_NAN
    return out


_CHUNK = 1 << 15  # output elements per accumulation chunk: temporaries stay in L2


class _Accumulator:
    """Binary32 accumulators updated block by block per the contract.

    ``acc`` holds float32 values; each ``add`` receives the exact block terms as float64
    arrays ``t_k`` (each exact: an integer below 2^53 times a power of two) and performs
    acc <- RNE_fp32(acc + sum_k t_k) with a single rounding.

    Fast path: x = fl64(acc + t) and RNE_fp32(x). Rounding twice (to float64, then to
    binary32) can only differ from rounding once when x lands exactly on a binary32 midpoint
    while x != acc + t, or in the binary32 subnormal range; those elements (and the -0 /
    S == 0 keep rule) are re-done exactly.
    """

    def __init__(self, acc: np.ndarray):
        """acc: C-contiguous float32 array, updated in place (a view into the caller's)."""
        if acc.dtype != np.float32 or not acc.flags.c_contiguous:
            raise AssertionError("accumulator must be a C-contiguous float32 array")
        self.acc = acc
        n = acc.size
        self._x = np.empty(n)
        self._i64 = np.empty(n, dtype=np.uint64)
        self._r = np.empty(n, dtype=np.float32)
        self._u32 = np.empty(n, dtype=np.uint32)
        self.negzero = bool((acc.reshape(-1).view(np.uint32) == _NEG0).any())

    def add(self, terms: list[np.ndarray], special=None):
        """terms: exact float64 arrays, ascending magnitude class; special: None or
        (nan, pinf, ninf) bool masks of this block (products involving NaN/Inf)."""
        with np.errstate(invalid="ignore", over="ignore"):  # Inf/NaN accumulators
            self._add(terms, special)

    def _add(self, terms, special):
        acc = self.acc.reshape(-1)
        terms = [t.reshape(-1) for t in terms]
        old = acc.copy() if special is not None else None
        if len(terms) == 1:
            self._add_exact_term(acc, terms[0], terms)
        else:
            s, e = _two_sum(terms[1], terms[0])
            if len(terms) == 3:
                s, es = _two_sum(terms[2], s)
                e = es + e  # exact: both are integers in the block unit below 2^20
            elif len(terms) != 2:
                raise AssertionError("at most three term classes")
            if not e.any():
                self._add_exact_term(acc, s, terms)
            else:
                self._add_split_term(acc, s, e, terms)
        if special is not None:
            nan, pinf, ninf = (m.reshape(-1) for m in special)
            hit = nan | pinf | ninf
            z = np.where(nan | (pinf & ninf), np.float32(np.nan),
                         np.where(pinf, np.float32(np.inf), np.float32(-np.inf)))
            acc[hit] = old[hit] + z[hit]  # NaN absorbs, Inf+finite=Inf, +Inf-Inf=NaN

    def _finish(self, acc, idx, res_bits):
        acc.view(np.uint32)[idx] = res_bits
        self.negzero = bool((res_bits == _NEG0).any())

    def _danger_common(self, x):
        """Cast x to binary32 into self._r; return the mask of binary32 subnormal/zero."""
        r = self._r
        np.copyto(r, x, casting="same_kind")
        u = self._u32
        np.bitwise_and(r.view(np.uint32), _EXP32, out=u)
        return u == 0

    def _add_exact_term(self, acc, t, terms):
        x = self._x
        np.add(acc, t, out=x)
        danger = self._danger_common(x)
        np.bitwise_and(x.view(np.uint64), _LOW29, out=self._i64)
        danger |= self._i64 == _HALF29
        if self.negzero:
            danger |= t == 0
        res = self._r
        if danger.any():
            idx = np.flatnonzero(danger)
            a = acc[idx].astype(np.float64)
            tt = t[idx]
            rb = res.view(np.uint32)[idx]
            keep = (tt == 0) | ~np.isfinite(a)
            rb[keep] = acc.view(np.uint32)[idx][keep]
            _, e = _two_sum(a, tt)
            hard = np.flatnonzero((e != 0) & ~keep)
            for h in hard:
                i = idx[h]
                rb[h] = _exact_f32([a[h]] + [tk[i] for tk in terms])
            res.view(np.uint32)[idx] = rb
            self.negzero = bool((rb == _NEG0).any())
        else:
            self.negzero = False
        acc[:] = res

    def _add_split_term(self, acc, s, e, terms):
        """acc + s + e exactly, with s = fl(S), e its exact remainder (some e != 0)."""
        x = self._x
        np.add(acc, s, out=x)
        a64 = acc.astype(np.float64)
        bb = x - a64
        ex = (a64 - (x - bb)) + (s - bb)
        r = ex + e  # sign-exact approximation of the remainder v - x
        danger = self._danger_common(x)
        # x within 8 float64 ulps of a binary32 midpoint while v != x
        tol = np.uint64(8)
        np.add(x.view(np.uint64), np.uint64((1 << 29) - (1 << 28)) + tol, out=self._i64)
        np.bitwise_and(self._i64, _LOW29, out=self._i64)
        danger |= (self._i64 <= 2 * tol) & (r != 0)
        # remainder not small against x (cancellation): |r| > ~2 ulp(x)
        danger |= (x + 0.25 * r) != x
        if self.negzero:
            danger |= s == 0
        res = self._r
        if danger.any():
            idx = np.flatnonzero(danger)
            a = a64[idx]
            rb = res.view(np.uint32)[idx]
            keep = (s[idx] == 0) | ~np.isfinite(a)
            rb[keep] = acc.view(np.uint32)[idx][keep]
            todo = np.flatnonzero(~keep)
            if todo.size:
                # renormalize v = y + (ey + er) with y close to RN64(v)
                ti = idx[todo]
                rr, er = _two_sum(ex[ti], e[ti])
                y, ey = _two_sum(x[ti], rr)
                q = ey + er
                y32 = y.astype(np.float32)
                yb = y.view(np.uint64)
                tricky = (((yb & _LOW29) == _HALF29) | ((y32.view(np.uint32) & _EXP32) == 0)) \
                    & (q != 0)
                rb[todo] = y32.view(np.uint32)
                for h in np.flatnonzero(tricky):
                    i = ti[h]
                    rb[todo[h]] = _exact_f32([a64[i]] + [tk[i] for tk in terms])
            res.view(np.uint32)[idx] = rb
            self.negzero = bool((rb == _NEG0).any())
        else:
            self.negzero = False
        acc[:] = res


# --------------------------------------------------------------------------- specials

def _special_masks_dot(ma, mb):
    """Per-row, per-block (nan, pinf, ninf) for elementwise products (dot)."""
    an, ai, az, asg = ma["nan"], ma["inf"], ma["zero"], ma["neg"]
    bn, bi, bz, bsg = mb["nan"], mb["inf"], mb["zero"], mb["neg"]
    nan = ma["snan"] | mb["snan"] | an.any(-1) | bn.any(-1) | ((ai & bz) | (az & bi)).any(-1)
    prod_inf = (ai & ~bz & ~bn) | (bi & ~az & ~an)
    neg = asg ^ bsg
    return nan, (prod_inf & ~neg).any(-1), (prod_inf & neg).any(-1)


def _special_masks_mm(ma, mb, j, r0, r1):
    """(r1-r0, N) (nan, pinf, ninf) of block j for A rows r0:r1 x B columns (indicator
    GEMMs: a product class occurs iff the count of matching element pairs is > 0)."""
    f = np.float64

    def mm(x, y):
        return (x.astype(f) @ y.astype(f).T) > 0

    an, ai, az, asg = (ma[k][r0:r1, j, :] for k in ("nan", "inf", "zero", "neg"))
    bn, bi, bz, bsg = (mb[k][:, j, :] for k in ("nan", "inf", "zero", "neg"))
    nan = (ma["snan"][r0:r1, j, None] | mb["snan"][None, :, j] | an.any(-1)[:, None]
           | bn.any(-1)[None, :] | mm(ai, bz) | mm(az, bi))
    a_fin_nz = ~az & ~an & ~ai
    b_fin_nz = ~bz & ~bn & ~bi
    # Inf x (nonzero, non-NaN) products, by sign of the product
    a_ip, a_in = ai & ~asg, ai & asg
    b_ip, b_in = bi & ~bsg, bi & bsg
    b_np, b_nn = (b_fin_nz | bi) & ~bsg, (b_fin_nz | bi) & bsg
    a_np, a_nn = a_fin_nz & ~asg, a_fin_nz & asg
    pinf = mm(a_ip, b_np) | mm(a_in, b_nn) | mm(a_np, b_ip) | mm(a_nn, b_in)
    ninf = mm(a_ip, b_nn) | mm(a_in, b_np) | mm(a_np, b_in) | mm(a_nn, b_ip)
    return nan, pinf, ninf


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


# --------------------------------------------------------------------------- dot / matmul

def _block_terms(pa, pb, product):
    """Exact block terms grouped by total shift (ascending): list of float64 arrays."""
    by_shift: dict[int, np.ndarray] = {}
    for sa, xa in pa:
        for sb, xb in pb:
            t = product(xa, xb)
            k = sa + sb
            by_shift[k] = t if k not in by_shift else by_shift[k] + t  # exact (< 2^41 each)
    return [by_shift[k] for k in sorted(by_shift)]


def dot(a, a_scale, a_fmt, b, b_scale, b_fmt, acc=None) -> np.ndarray:
    """Block dot products along the last axis: a, b (..., K) codes -> uint32 (...).

    a_scale, b_scale: e8m0 codes (..., K/32); acc: binary32 bits (uint32, or float32 values)
    broadcastable to (...), default +0. Returns binary32 bit patterns per the contract.
    """
    fa, fb = _fmt(a_fmt, "a_fmt"), _fmt(b_fmt, "b_fmt")
    a = _codes(a, a_fmt, "a")
    b = _codes(b, b_fmt, "b")
    nb = _check_k(a.shape, "a")
    if b.shape != a.shape:
        raise ValueError(f"b: shape {b.shape} must equal a's shape {a.shape}")
    shape = a.shape[:-1]
    a_scale = _check_scales(a_scale, shape + (nb,), "a_scale")
    b_scale = _check_scales(b_scale, shape + (nb,), "b_scale")
    accf = _init_acc(acc, shape).reshape(-1).view(np.float32)
    n = accf.shape[0]
    K = nb * BLOCK
    pa, ma = _operand(a.reshape(n, K), a_scale.reshape(n, nb), fa, _needs_split(fa, fb))
    pb, mb = _operand(b.reshape(n, K), b_scale.reshape(n, nb), fb, _needs_split(fb, fa))
    specials = _has_specials(ma) or _has_specials(mb)
    if specials:
        nan, pinf, ninf = _special_masks_dot(ma, mb)
    # all blocks at once: (nb, n) per term class
    terms = _block_terms(pa, pb, lambda x, y: np.einsum("jik,jik->ji", x, y))
    for r0 in range(0, n, _CHUNK):
        r1 = min(n, r0 + _CHUNK)
        accum = _Accumulator(accf[r0:r1])
        for j in range(nb):
            sp = (nan[r0:r1, j], pinf[r0:r1, j], ninf[r0:r1, j]) if specials else None
            accum.add([t[j, r0:r1] for t in terms], sp)
    return _canonical_bits(accf).reshape(shape)


def matmul(a, a_scale, a_fmt, b, b_scale, b_fmt, acc=None) -> np.ndarray:
    """C[M,N] = A[M,K] x B[K,N] per the contract; scales (M,K/32) and (K/32,N); uint32 out.

    acc: binary32 bits (uint32, or float32 values) broadcastable to (M, N), default +0.
    """
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
    accf = _init_acc(acc, (M, N)).view(np.float32)
    # B is handled as N rows of K (its transpose, C-contiguous): the per-block GEMMs are
    # (rows, 32) @ (32, N) with the right operand passed as a transposed (N, 32) array.
    pa, ma = _operand(a, a_scale, fa, _needs_split(fa, fb))
    pb, mb = _operand(np.ascontiguousarray(b.T), np.ascontiguousarray(b_scale.T), fb,
                      _needs_split(fb, fa))
    specials = _has_specials(ma) or _has_specials(mb)
    rows = max(1, _CHUNK // max(N, 1))
    bufs = [np.empty((min(rows, M), N)) for _ in range(len(pa) * len(pb))]
    with _one_blas_thread():
        _matmul_rows(accf, pa, pb, ma, mb, specials, rows, bufs, nb)
    return _canonical_bits(accf)


def _matmul_rows(accf, pa, pb, ma, mb, specials, rows, bufs, nb):
    M = accf.shape[0]
    for r0 in range(0, M, rows):
        r1 = min(M, r0 + rows)
        accum = _Accumulator(accf[r0:r1])
        for j in range(nb):
            terms: dict[int, np.ndarray] = {}
            k = 0
            for sa, xa in pa:
                for sb, xb in pb:
                    t = np.matmul(xa[j, r0:r1], xb[j].T, out=bufs[k][:r1 - r0])
                    k += 1
                    s = sa + sb
                    if s in terms:
                        terms[s] += t  # exact: integers below 2^41 in the same unit
                    else:
                        terms[s] = t
            sp = _special_masks_mm(ma, mb, j, r0, r1) if specials else None
            accum.add([terms[s] for s in sorted(terms)], sp)
