"""MX numerics: element decode, quantization, block dot products and matmul, bit-exact.

The contract is docs/numerics.md (restating ../shared/brief/numerics.md). Summary:

* ``quantize``: per 32-element block, scale X = floor(log2(amax)) - emax (clamped to
  [-127, 127]); elements = RNE(x / 2^X) with saturation; NaN/Inf blocks get scale 0xFF.
* ``dot``/``matmul``: for each block j in order, S_j = sum(a_i * b_i) exactly and
  acc = RNE_fp32(acc + 2^(Xa_j + Xb_j) * S_j), with the contract's NaN/Inf/zero rules.

All results are binary32 bit patterns (uint32). Implementation (docs/numerics.md section 6):
block sums come exactly from float64 GEMMs with the scales folded in as powers of two (every
partial sum is an integer multiple of the block's lowest bit below 2^53, so BLAS summation
order cannot matter; wide e5m2 blocks are split by exponent into pieces that meet this).
The per-block rounding is x = fl64(acc + t) then binary32; the only elements where that
double rounding can differ from one rounding (x exactly on a binary32 midpoint while inexact,
binary32 subnormal results) are flagged, re-checked with TwoSum and, when still ambiguous,
rounded in exact integer arithmetic (``golden.fp32.round_exact``).
"""

from __future__ import annotations

import contextlib
import math
import os
from concurrent.futures import ThreadPoolExecutor

import ml_dtypes
import numpy as np

from golden import fp32
from spec.formats import (
    BLOCK,
    FORMATS,
    FP32_CANONICAL_NAN,
    SCALE_BIAS,
    SCALE_NAN,
    ElementFormat,
    element_format,
)

__all__ = ["decode", "quantize", "dot", "matmul", "pack_e2m1", "unpack_e2m1",
           "decode_scale", "BLOCK"]

try:  # optional: pins BLAS to one thread around the small per-block GEMMs
    from threadpoolctl import ThreadpoolController as _ThreadpoolController
except ImportError:  # pragma: no cover - works without it, only slower on a busy machine
    _ThreadpoolController = None
_controller = None


def _one_blas_thread():
    """The per-block GEMMs are (64, 32) @ (32, N): too small for BLAS threads to pay off,
    and a multithreaded BLAS spinning on a busy core makes them 10x slower. (The controller
    is created once: scanning the loaded libraries costs about a millisecond.)"""
    global _controller
    if _ThreadpoolController is None:
        return contextlib.nullcontext()
    if _controller is None:
        _controller = _ThreadpoolController()
    return _controller.limit(limits=1, user_api="blas")


_ML = {"e2m1": ml_dtypes.float4_e2m1fn, "e4m3": ml_dtypes.float8_e4m3fn,
       "e5m2": ml_dtypes.float8_e5m2, "e8m0": ml_dtypes.float8_e8m0fnu}


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

def _element_fields(f: ElementFormat) -> dict[str, np.ndarray]:
    """Lookup tables indexed by code: integer value in units of 2^unit (float64, 0 for
    NaN/Inf), masks nan/inf/zero/neg/special, and ``lsb`` (value of the lowest set bit of the
    integer value; +inf for zero and special codes)."""
    c = np.arange(1 << f.bits, dtype=np.int64)
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
    mag = np.where(special, 0, sig << ee)
    zero = (mag == 0) & ~special
    lsb = np.where(mag > 0, (mag & -mag).astype(np.float64), np.inf)
    return {"val": np.where(s == 1, -mag, mag).astype(np.float64), "nan": nan, "inf": inf,
            "zero": zero, "neg": s == 1, "special": special, "lsb": lsb}


_FIELDS = {name: _element_fields(f) for name, f in FORMATS.items()}

# A block product sum_i a_i * b_i is exact in float64, whatever order the BLAS adds in, when
# every partial sum is an integer multiple of lsb_a * lsb_b (lsb: the lowest set bit present
# in the block) of magnitude at most 2^53; the partial sums are bounded by
# min(sum|a| * max|b|, max|a| * sum|b|). In log2 units of the lsb ("spans"): exact when
# min(l1_a + max_b, max_a + l1_b) <= 53. e2m1 (max span 3.6 bits) and e4m3 (17.9) always meet
# it together (3.6 + 17.9 + 5 < 53; 17.9 + 17.9 + 5 < 53); e5m2 spans up to 31.9 bits, so an
# e5m2 operand paired with e4m3/e5m2 is checked per block and split into pieces when needed.
_EXACT_BITS = 53.0 - 1e-9


def _may_need_split(f: ElementFormat, other: ElementFormat) -> bool:
    return f.name == "e5m2" and other.name != "e2m1"


def _split_plan(oa: _Operand, ob: _Operand):
    """Pieces for blocks that fail the span bound: e5m2 x e5m2 splits A in 3 (x full B,
    sums below 2^49 units: 3 GEMMs); e5m2 x e4m3 splits the e5m2 side in 2 (below 2^40)."""
    fa, fb = oa.f.name, ob.f.name
    if fa == "e5m2" and fb == "e5m2":
        return oa.pieces(3), [(0, ob.full)]
    if _may_need_split(oa.f, ob.f):
        return oa.pieces(2), [(0, ob.full)]
    if _may_need_split(ob.f, oa.f):
        return [(0, oa.full)], ob.pieces(2)
    return [(0, oa.full)], [(0, ob.full)]


class _Operand:
    """Rows of MX codes (R, K) with e8m0 scales (R, K/32), prepared for exact block products.

    ``full[j]`` (R, 32) holds the integer element values times 2^(X + unit) of block j (the
    scale is folded in: powers of two, exact in float64; a NaN-scale block uses X = 0 and is
    overridden by the special-case masks). ``split()`` gives low/high pieces of it and
    ``span`` the per-(row, block) log2(max|val| / lsb) used to decide whether a block must be
    split. ``masks()`` gives the NaN/Inf/zero/sign masks, only computed when needed.
    """

    def __init__(self, codes2d: np.ndarray, scales2d: np.ndarray, f: ElementFormat,
                 want_span: bool):
        R, K = codes2d.shape
        nb = K // BLOCK
        self.f, self.codes, self.shape3 = f, codes2d, (R, nb, BLOCK)
        T = _FIELDS[f.name]
        s = scales2d.astype(np.int64)
        self.snan = s == SCALE_NAN
        fac = np.ldexp(1.0, np.where(self.snan, 0, s - SCALE_BIAS) + f.unit)  # (R, nb)
        val = T["val"][codes2d].reshape(self.shape3)
        self.full = np.empty((nb, R, BLOCK))
        np.multiply(val.transpose(1, 0, 2), fac.T[:, :, None], out=self.full)
        self._val = val
        self.has_specials = bool(self.snan.any()) or (
            bool(T["special"].any()) and bool(T["special"][codes2d].any()))
        self.span_max = self.span_l1 = None  # (R, nb) log2(max|val| / lsb), log2(sum / lsb)
        if want_span:
            mag = np.abs(val)
            lsb = np.log2(T["lsb"][codes2d].reshape(self.shape3).min(-1))
            with np.errstate(divide="ignore", invalid="ignore"):
                self.span_max = np.log2(mag.max(-1)) - lsb  # -inf for all-zero blocks
                self.span_l1 = np.log2(mag.sum(-1)) - lsb
            self.span_max[np.isnan(self.span_max)] = -np.inf
            self.span_l1[np.isnan(self.span_l1)] = -np.inf
        self._pieces: dict[int, list] = {}
        self._masks = None

    def pieces(self, nparts: int) -> list[tuple[int, np.ndarray]]:
        """[(shift class, (nb, R, 32) array)] splitting ``full`` by magnitude (exclusive
        pieces, summing to ``full``). e5m2 integer values are sig * 2^ee with sig < 8:
        2 pieces: ee < 15 (|val| < 2^17 units) and ee >= 15 (multiples of 2^15 below 2^32);
        3 pieces: ee < 10, 10 <= ee < 20, ee >= 20 (each at most 12 significant bits)."""
        if nparts not in self._pieces:
            shifts = {2: [0, 15], 3: [0, 10, 20]}[nparts]
            mag = np.abs(self._val).transpose(1, 0, 2)
            out, rest = [], self.full
            for k, shift in enumerate(shifts):
                if k + 1 < len(shifts):
                    # |val| < 4 * 2^next_shift  <=>  ee < next_shift
                    p = np.where(mag < 4.0 * 2.0 ** shifts[k + 1], rest, 0.0)
                    rest = rest - p  # exact: elementwise either 0 or rest
                else:
                    p = rest
                out.append((shift, p))
            self._pieces[nparts] = out
        return self._pieces[nparts]

    def masks(self) -> dict[str, np.ndarray]:
        if self._masks is None:
            T = _FIELDS[self.f.name]
            self._masks = {k: T[k][self.codes].reshape(self.shape3)
                           for k in ("nan", "inf", "zero", "neg")}
            self._masks["snan"] = self.snan
        return self._masks


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

    Each ``add`` receives the exact block terms as float64 arrays t_k (each an integer below
    2^53 times a power of two) and performs acc <- RNE_fp32(acc + sum_k t_k) with a single
    rounding. Two float32 buffers alternate (the previous values stay readable); ``finish``
    leaves the result in the caller's array.

    Fast path (one term t, or several whose sum is exact in float64): x = fl64(acc + t), then
    RNE_fp32(x). Rounding twice can only differ from rounding once when x is exactly a
    binary32 midpoint while x != acc + t, or when the result is a binary32 subnormal/zero;
    only those elements (and the S == 0 keep rule when -0 may be present) are re-checked,
    with TwoSum, and the truly ambiguous ones re-done in exact integer arithmetic.
    """

    def __init__(self, acc: np.ndarray):
        """acc: C-contiguous float32 array (the caller's), holding the initial values."""
        if acc.dtype != np.float32 or not acc.flags.c_contiguous:
            raise AssertionError("accumulator must be a C-contiguous float32 array")
        self.dest = acc.reshape(-1)
        n = self.dest.size
        self.cur, self.alt = self.dest, np.empty(n, dtype=np.float32)
        self._x = np.empty(n)
        self._i64 = np.empty(n, dtype=np.uint64)
        self._u32 = np.empty(n, dtype=np.uint32)
        self.negzero = bool((self.dest.view(np.uint32) == _NEG0).any())

    def finish(self):
        if self.cur is not self.dest:
            self.dest[:] = self.cur

    def add(self, terms: list[np.ndarray], special=None):
        """terms: exact float64 arrays, ascending magnitude class; special: None or
        (nan, pinf, ninf) bool masks of this block (products involving NaN/Inf)."""
        with np.errstate(invalid="ignore", over="ignore"):  # Inf/NaN accumulators
            terms = [t.reshape(-1) for t in terms]
            if len(terms) == 1:
                self._add_exact_term(terms[0], terms)
            else:
                s, e = _two_sum(terms[1], terms[0])
                if len(terms) == 3:
                    s, es = _two_sum(terms[2], s)
                    e = es + e  # exact: integers in the block unit below 2^17
                elif len(terms) != 2:
                    raise AssertionError("at most three term classes")
                if not e.any():
                    self._add_exact_term(s, terms)
                else:
                    self._add_split_term(s, e, terms)
            if special is not None:
                nan, pinf, ninf = (m.reshape(-1) for m in special)
                hit = nan | pinf | ninf
                z = np.where(nan | (pinf & ninf), np.float32(np.nan),
                             np.where(pinf, np.float32(np.inf), np.float32(-np.inf)))
                # NaN absorbs, Inf + finite = Inf, +Inf + -Inf = NaN
                self.alt[hit] = self.cur[hit] + z[hit]
        self.cur, self.alt = self.alt, self.cur

    def _cast_and_flag(self, x):
        """alt <- RNE_fp32(x); return the mask of binary32 subnormal or zero results."""
        np.copyto(self.alt, x, casting="same_kind")
        np.bitwise_and(self.alt.view(np.uint32), _EXP32, out=self._u32)
        return self._u32 == 0

    def _add_exact_term(self, t, terms):
        cur, x = self.cur, self._x
        np.add(cur, t, out=x)
        danger = self._cast_and_flag(x)
        np.bitwise_and(x.view(np.uint64), _LOW29, out=self._i64)
        danger |= self._i64 == _HALF29
        negzero = self.negzero
        if negzero:
            danger |= t == 0
        self.negzero = False
        if not danger.any():
            return
        # Flagged: binary32 midpoints, subnormal/zero results, and (when -0 may be present)
        # zero block sums. A non-finite acc is never flagged except through t == 0.
        idx = np.flatnonzero(danger)
        a = cur[idx].astype(np.float64)
        tt = t[idx]
        xx = x[idx]
        bb = xx - a
        e = (a - (xx - bb)) + (tt - bb)  # TwoSum: exact error of x = fl64(a + t)
        alt_bits = self.alt.view(np.uint32)
        if negzero:
            keep = tt == 0
            if keep.any():
                e[keep] = 0.0
                alt_bits[idx[keep]] = cur.view(np.uint32)[idx[keep]]
        for h in np.flatnonzero(e != 0):  # x inexact and ambiguous: decide exactly
            i = idx[h]
            alt_bits[i] = _exact_f32([a[h]] + [tk[i] for tk in terms])
        self.negzero = bool((alt_bits[idx] == _NEG0).any())

    def _add_split_term(self, s, e, terms):
        """acc + s + e exactly, with s = fl64(S * 2^E) and e its exact remainder."""
        cur, x = self.cur, self._x
        np.add(cur, s, out=x)
        a64 = cur.astype(np.float64)
        bb = x - a64
        ex = (a64 - (x - bb)) + (s - bb)
        r = ex + e  # the remainder v - x, up to a relative 2^-53 (sign exact)
        danger = self._cast_and_flag(x)
        # x within 8 float64 ulps of a binary32 midpoint while v != x
        tol = np.uint64(8)
        np.add(x.view(np.uint64), np.uint64((1 << 29) - (1 << 28)) + tol, out=self._i64)
        np.bitwise_and(self._i64, _LOW29, out=self._i64)
        danger |= (self._i64 <= 2 * tol) & (r != 0)
        # remainder not small against x (cancellation): |r| > ~2 ulp(x)
        danger |= (x + 0.25 * r) != x
        if self.negzero:
            danger |= s == 0
        self.negzero = False
        if not danger.any():
            return
        idx = np.flatnonzero(danger)
        a = a64[idx]
        rb = self.alt.view(np.uint32)[idx]
        keep = (s[idx] == 0) | ~np.isfinite(a)
        rb[keep] = cur.view(np.uint32)[idx][keep]
        todo = np.flatnonzero(~keep)
        if todo.size:
            # renormalize: v = y + ey + er exactly, y = fl64(x + fl64(ex + e))
            ti = idx[todo]
            rr, er = _two_sum(ex[ti], e[ti])
            y, ey = _two_sum(x[ti], rr)
            q = ey + er  # sign exact
            y32 = y.astype(np.float32)
            yb = y.view(np.uint64)
            # |ey| <= ulp(y)/2; if also |er| <= ulp(y)/4, v lies within 1 ulp(y) of y, so a
            # binary32 midpoint between or at them (other than y itself when v == y) is a
            # float64 within 1 ulp of y: check y and its neighbours. Binary32 subnormal
            # results and a large er are decided exactly.
            near_mid = ((yb + np.uint64((1 << 29) - (1 << 28) + 2)) & _LOW29) <= np.uint64(4)
            tricky = (near_mid | ((y32.view(np.uint32) & _EXP32) == 0)
                      | ((y + 2.0 * er) != y)) & (q != 0)
            rb[todo] = y32.view(np.uint32)
            for h in np.flatnonzero(tricky):
                i = ti[h]
                rb[todo[h]] = _exact_f32([a64[i]] + [tk[i] for tk in terms])
        self.alt.view(np.uint32)[idx] = rb
        self.negzero = bool((rb == _NEG0).any())


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

    def mm(x, y):
        return (x.astype(np.float64) @ y.astype(np.float64).T) > 0

    an, ai, az, asg = (ma[k][r0:r1, j, :] for k in ("nan", "inf", "zero", "neg"))
    bn, bi, bz, bsg = (mb[k][:, j, :] for k in ("nan", "inf", "zero", "neg"))
    nan = (ma["snan"][r0:r1, j, None] | mb["snan"][None, :, j] | an.any(-1)[:, None]
           | bn.any(-1)[None, :] | mm(ai, bz) | mm(az, bi))
    # Inf x (nonzero, non-NaN) products, by the sign of the product
    a_fin = ~az & ~an & ~ai
    b_any = ~bz & ~bn  # finite nonzero or Inf
    a_ip, a_in = ai & ~asg, ai & asg
    b_ip, b_in = bi & ~bsg, bi & bsg
    b_p, b_n = b_any & ~bsg, b_any & bsg
    a_p, a_n = a_fin & ~asg, a_fin & asg
    pinf = mm(a_ip, b_p) | mm(a_in, b_n) | mm(a_p, b_ip) | mm(a_n, b_in)
    ninf = mm(a_ip, b_n) | mm(a_in, b_p) | mm(a_p, b_in) | mm(a_n, b_ip)
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

# --------------------------------------------------------------------------- dot / matmul

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
    oa = _Operand(a.reshape(n, K), a_scale.reshape(n, nb), fa, False)
    ob = _Operand(b.reshape(n, K), b_scale.reshape(n, nb), fb, False)
    specials = oa.has_specials or ob.has_specials
    if specials:
        nan, pinf, ninf = _special_masks_dot(oa.masks(), ob.masks())
    # every block of every row at once, (nb, n) per term class; e5m2 against e4m3/e5m2 is
    # always split here (matmul decides per block)
    pa, pb = _split_plan(oa, ob)
    by_shift: dict[int, np.ndarray] = {}
    for sa, xa in pa:
        for sb, xb in pb:
            t = np.einsum("jik,jik->ji", xa, xb)  # exact (see _EXACT_BITS)
            k = sa + sb
            by_shift[k] = t if k not in by_shift else by_shift[k] + t  # exact
    terms = [by_shift[k] for k in sorted(by_shift)]
    for r0 in range(0, n, _CHUNK):
        r1 = min(n, r0 + _CHUNK)
        accum = _Accumulator(accf[r0:r1])
        for j in range(nb):
            sp = (nan[r0:r1, j], pinf[r0:r1, j], ninf[r0:r1, j]) if specials else None
            accum.add([t[j, r0:r1] for t in terms], sp)
        accum.finish()
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
    if M == 0 or N == 0:
        return _canonical_bits(accf)
    split = _may_need_split(fa, fb) or _may_need_split(fb, fa)
    # B is handled as N rows of K (its transpose, C-contiguous): the per-block GEMMs are
    # (rows, 32) @ (32, N) with the right operand passed as a transposed (N, 32) array.
    oa = _Operand(a, a_scale, fa, split)
    ob = _Operand(np.ascontiguousarray(b.T), np.ascontiguousarray(b_scale.T), fb, split)
    with _one_blas_thread():
        _matmul_rows(accf, oa, ob, split, nb)
    return _canonical_bits(accf)


def _workers() -> int:
    """Threads for matmul row chunks: MAIA_GOLDEN_THREADS, default 1. Measured on the 2-core
    development host (docs/numerics.md), two threads were never faster than one at any
    chunk size: the work is many short numpy calls, so the threads mostly wait for the GIL
    and share the caches."""
    env = os.environ.get("MAIA_GOLDEN_THREADS", "").strip()
    return max(1, int(env)) if env else 1


def _matmul_rows(accf, oa: _Operand, ob: _Operand, split: bool, nb: int):
    M, N = accf.shape
    rows = max(1, _CHUNK // N)
    specials = oa.has_specials or ob.has_specials
    ma, mb = (oa.masks(), ob.masks()) if specials else (None, None)
    # split plans are built once, before the threads
    if split and oa.f.name == "e5m2" and ob.f.name == "e5m2":
        # 3 pieces of A, or 2 in the blocks where B allows it (see _matmul_chunk)
        two = (oa.pieces(2), [(0, ob.full)])
        need3 = bool((ob.span_l1.max(0) + 17 > _EXACT_BITS).any())
        plan = (_split_plan(oa, ob) if need3 else None, two)
    elif split:
        plan = (_split_plan(oa, ob), None)
    else:
        plan = None
    span_b = (ob.span_max.max(0), ob.span_l1.max(0)) if split else None  # (nb,) each
    starts = list(range(0, M, rows))
    workers = min(_workers(), len(starts))

    def run(chunk_starts):
        bufs = [np.empty((min(rows, M), N)) for _ in range(4)]
        for r0 in chunk_starts:
            _matmul_chunk(accf, oa, ob, plan, nb, r0, min(M, r0 + rows), bufs, span_b, ma, mb)

    if workers <= 1:
        run(starts)
        return
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for f in [pool.submit(run, starts[w::workers]) for w in range(workers)]:
            f.result()


def _matmul_chunk(accf, oa, ob, plan, nb, r0, r1, bufs, span_b, ma, mb):
    """Output rows r0:r1, all blocks in order."""
    n = r1 - r0
    accum = _Accumulator(accf[r0:r1])
    if plan is not None:  # per block: can one GEMM of the whole operands be exact?
        amax, al1 = oa.span_max[r0:r1].max(0), oa.span_l1[r0:r1].max(0)
        bmax, bl1 = span_b
        exact_whole = np.minimum(al1 + bmax, amax + bl1) <= _EXACT_BITS
    for j in range(nb):
        if plan is None or exact_whole[j]:
            terms = [np.matmul(oa.full[j, r0:r1], ob.full[j].T, out=bufs[0][:n])]
        else:
            # e5m2 x e5m2: the 2-piece split of A (each piece below 2^17 of its own lsb)
            # is exact when 17 + log2(sum|b| / lsb_b) <= 53 for every column of block j
            pa, pb = plan[1] if plan[1] is not None and bl1[j] + 17 <= _EXACT_BITS \
                else plan[0]
            by_shift: dict[int, np.ndarray] = {}
            k = 0
            for sa, xa in pa:
                for sb, xb in pb:
                    t = np.matmul(xa[j, r0:r1], xb[j].T, out=bufs[k][:n])
                    k += 1
                    if sa + sb in by_shift:
                        by_shift[sa + sb] += t  # exact: same unit, below 2^41
                    else:
                        by_shift[sa + sb] = t
            terms = [by_shift[s] for s in sorted(by_shift)]
        sp = _special_masks_mm(ma, mb, j, r0, r1) if ma is not None else None
        accum.add(terms, sp)
    accum.finish()
