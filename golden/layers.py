"""Layer definitions: the exact binary32 operation sequences the chip's layer programs run.

Each function composes the contracts of the MX numerics (``golden.mx``) and of the tile
vector processor (``golden.tvp``) in a fixed order, so a layer has one bit-exact answer
whatever machine computes it. ``cosim.chip.layers`` builds whole-chip programs for the same
layers (rows dealt to every tile); their results must equal these functions bit for bit,
on the golden chip model and on the RTL. docs/chip.md "Layer programs" is the prose form.

Inputs and outputs are binary32 bit patterns (uint32) and MX codes/scales (uint8), like
the rest of golden/. B operands are given as B^T (N rows of K codes), the layout the tile
reads.
"""

from __future__ import annotations

import numpy as np

from golden import mx, tvp
from spec import tile as T

__all__ = ["LOG2E_BITS", "softmax", "mlp", "attention", "inv_sqrt_bits"]

LOG2E_BITS = int(np.float32(np.log2(np.e)).view(np.uint32))  # 0x3FB8AA3B


def _bits(x, name) -> np.ndarray:
    a = np.asarray(x)
    if a.dtype == np.float32:
        a = a.view(np.uint32)
    if a.dtype != np.uint32 or a.ndim != 2:
        raise ValueError(f"{name}: must be a 2-D uint32 (binary32 bits) or float32 array, "
                         f"got {a.dtype} with shape {a.shape}")
    return a


def inv_sqrt_bits(d: int) -> int:
    """binary32 bits of RN(1/sqrt(d)), the attention score scale."""
    if not isinstance(d, int) or d < 1:
        raise ValueError(f"d: must be a positive int, got {d!r}")
    return int(np.float32(1.0 / np.sqrt(np.float64(d))).view(np.uint32))


def softmax(x) -> np.ndarray:
    """Row softmax of binary32 x (R, n), in this order (every step binary32, TVP ops):
    m = rowmax(x); t = x - m; t = t * LOG2E; e = exp2(t); s = rowsum(e); r = rcp(s);
    y = e * r."""
    x = _bits(x, "x")
    m = tvp.rowmax(x)
    t = tvp.binary(T.TVP_SUB, x, m[:, None])
    t = tvp.binary(T.TVP_MUL, t, np.uint32(LOG2E_BITS))
    e = tvp.exp2(t)
    r = tvp.rcp(tvp.rowsum(e))
    return tvp.binary(T.TVP_MUL, e, r[:, None])


def mlp(x, x_scale, w1t, w1t_scale, w2t, w2t_scale, x_fmt="e4m3", w_fmt="e4m3",
        h_fmt="e4m3") -> np.ndarray:
    """Quantized two-layer MLP: h = relu(X W1) (binary32), quantized to MX ``h_fmt`` along
    its rows, then Y = h_q W2 (binary32 bits, (M, D2)). x (M, D) codes with scales
    (M, D/32); w1t (H, D) = W1^T codes with scales (H, D/32); w2t (D2, H) = W2^T."""
    c1 = mx.matmul(x, x_scale, x_fmt, np.asarray(w1t).T, np.asarray(w1t_scale).T, w_fmt)
    h = tvp.unary(T.TVP_RELU, c1)
    hq, hs = mx.quantize(h.view(np.float32), h_fmt)
    return mx.matmul(hq, hs, h_fmt, np.asarray(w2t).T, np.asarray(w2t_scale).T, w_fmt)


def attention(q, q_scale, k, k_scale, vt, vt_scale, fmt="e4m3", p_fmt="e4m3") -> np.ndarray:
    """One attention head, no mask: S = Q K^T (MX GEMM, binary32); S = S * RN(1/sqrt(d));
    P = softmax(S) (above); P quantized to MX ``p_fmt`` along its rows; O = P_q V.
    q (L, d) and k (Lk, d) codes with scales along d; vt (d, Lk) = V^T codes with scales
    along Lk. Returns O as binary32 bits (L, d)."""
    q, k, vt = (np.asarray(v) for v in (q, k, vt))
    d = q.shape[1]
    s = mx.matmul(q, q_scale, fmt, k.T, np.asarray(k_scale).T, fmt)
    s = tvp.binary(T.TVP_MUL, s, np.uint32(inv_sqrt_bits(d)))
    p = softmax(s)
    pq, ps = mx.quantize(p.view(np.float32), p_fmt)
    return mx.matmul(pq, ps, p_fmt, vt.T, np.asarray(vt_scale).T, fmt)
