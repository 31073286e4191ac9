"""Driver for the MX dot-product unit bench: vectors -> beats -> RTL -> results.

Vectors use the replay format (see cosim/replay.py): ``a``, ``b`` uint8 [N, K] codes,
``a_scale``, ``b_scale`` uint8 [N, K/32], ``acc`` uint32 [N], ``a_fmt``, ``b_fmt`` (a format
name, or an array of N names).
"""

from __future__ import annotations

import numpy as np

from spec.formats import BLOCK, FORMATS

BENCH_MODULE = "cosim.mxdot.bench"


def _fmt_codes(fmt, n: int, argname: str) -> np.ndarray:
    f = np.asarray(fmt)
    names = np.broadcast_to(f, (n,)) if f.ndim == 0 else f
    if names.shape != (n,):
        raise ValueError(f"{argname}: expected a format name or {n} names, got shape {f.shape}")
    out = np.empty(n, dtype=np.int64)
    for i, name in enumerate(names):
        name = str(name)
        if name not in FORMATS:
            raise ValueError(f"{argname}: unknown element format {name!r}; "
                             f"expected one of {list(FORMATS)}")
        out[i] = FORMATS[name].code
    return out


def _operand_bits(codes: np.ndarray, e2m1: bool) -> int:
    """32 (or 64 when e2m1) codes -> the 256-bit port value."""
    if e2m1:
        nib = [int(c) & 0xF for c in codes]
        v = 0
        for i, c in enumerate(nib):
            v |= c << (4 * i)
        return v
    return int.from_bytes(bytes(int(c) & 0xFF for c in codes), "little")


def encode_beats(vec: dict) -> tuple[list[int], int]:
    """Vectors -> (list of payload ints in dot_input_layout order, number of dot products)."""
    from rtl.mxdot import dot_input_layout

    a, b = np.asarray(vec["a"]), np.asarray(vec["b"])
    if a.ndim != 2 or a.shape != b.shape or a.shape[1] % BLOCK or a.shape[1] == 0:
        raise ValueError(f"a, b: expected equal shapes [N, K] with K a positive multiple of "
                         f"{BLOCK}, got {a.shape} and {b.shape}")
    n, K = a.shape
    nb = K // BLOCK
    sa, sb = np.asarray(vec["a_scale"]), np.asarray(vec["b_scale"])
    if sa.shape != (n, nb) or sb.shape != (n, nb):
        raise ValueError(f"a_scale, b_scale: expected shape {(n, nb)}, got {sa.shape}, {sb.shape}")
    acc = np.asarray(vec.get("acc", np.zeros(n, np.uint32))).astype(np.uint32)
    fa = _fmt_codes(vec["a_fmt"], n, "a_fmt")
    fb = _fmt_codes(vec["b_fmt"], n, "b_fmt")
    lay = dot_input_layout()
    off = {name: lay[name].offset for name in
           ("a", "b", "a_scale", "b_scale", "a_fmt", "b_fmt", "acc", "first", "last")}
    e2 = FORMATS["e2m1"].code
    beats = []
    for i in range(n):
        dual = fa[i] == e2 and fb[i] == e2
        step = 2 if dual else 1
        for j in range(0, nb, step):
            blocks = [j] if not dual else [j, j + 1]
            ca = np.concatenate([a[i, k * BLOCK:(k + 1) * BLOCK] if k < nb else
                                 np.zeros(BLOCK, np.uint8) for k in blocks])
            cb = np.concatenate([b[i, k * BLOCK:(k + 1) * BLOCK] if k < nb else
                                 np.zeros(BLOCK, np.uint8) for k in blocks])
            s_a = [int(sa[i, k]) if k < nb else 0 for k in blocks] + [0] * (2 - len(blocks))
            s_b = [int(sb[i, k]) if k < nb else 0 for k in blocks] + [0] * (2 - len(blocks))
            v = _operand_bits(ca, fa[i] == e2) << off["a"]
            v |= _operand_bits(cb, fb[i] == e2) << off["b"]
            v |= (s_a[0] | s_a[1] << 8) << off["a_scale"]
            v |= (s_b[0] | s_b[1] << 8) << off["b_scale"]
            v |= int(fa[i]) << off["a_fmt"] | int(fb[i]) << off["b_fmt"]
            v |= int(acc[i]) << off["acc"]
            v |= int(j == 0) << off["first"]
            v |= int(j + step >= nb) << off["last"]
            beats.append(v)
    return beats, n


def beats_to_array(beats: list[int], nbytes: int) -> np.ndarray:
    return np.frombuffer(b"".join(v.to_bytes(nbytes, "little") for v in beats),
                         dtype=np.uint8).reshape(len(beats), nbytes)


def run(vec: dict, sim: str = "verilator", formats=("e2m1", "e4m3", "e5m2"),
        ready_prob: float = 1.0, valid_prob: float = 1.0, seed: int = 0,
        tag: str = "mxdot") -> dict[str, np.ndarray]:
    """Run vectors through the RTL; returns {"out": uint32 [N], "error": uint8 [N], stats}."""
    from cosim.sim import run_bench
    from rtl.mxdot import MXDotUnit, dot_input_layout

    beats, n = encode_beats(vec)
    nbytes = (dot_input_layout().size + 7) // 8
    formats = tuple(formats)
    name = "mxdot" if len(formats) == 3 else "mxdot_" + "_".join(formats)
    res = run_bench(name=name, toplevel="mxdot", make=lambda: MXDotUnit(formats),
                    params={"formats": formats}, test_module=BENCH_MODULE, sim=sim, tag=tag,
                    inputs={"beats": beats_to_array(beats, nbytes),
                            "n_out": np.array(n),
                            "knobs": np.array([ready_prob, valid_prob, seed], dtype=np.float64)})
    return res
