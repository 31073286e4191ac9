"""Vector sets for the MX dot-product unit: random (with special-value injection) and edge
cases built by construction. All sets use the replay format with per-vector format names."""

from __future__ import annotations

import numpy as np

from spec.formats import BLOCK, ELEMENT_FORMATS

PAIRS = [(a, b) for a in ELEMENT_FORMATS for b in ELEMENT_FORMATS]

# handy codes
E4M3_ONE, E5M2_ONE, E2M1_ONE = 0x38, 0x3C, 0x2
E4M3_NAN, E5M2_NAN, E5M2_INF, E5M2_MAX, E4M3_MAX = 0x7F, 0x7D, 0x7C, 0x7B, 0x7E
ONE = {"e4m3": E4M3_ONE, "e5m2": E5M2_ONE, "e2m1": E2M1_ONE}


def _limit(fmt: str) -> int:
    return 16 if fmt == "e2m1" else 256


def random_vectors(rng: np.random.Generator, n: int, K: int, pairs=PAIRS,
                   special_rate: float = 0.01, scale_lo: int = 100, scale_hi: int = 154,
                   nan_scale_rate: float = 0.005) -> dict:
    """n vectors per format pair; codes uniform over finite values with a small rate of raw
    (possibly NaN/Inf) codes; scales uniform in [scale_lo, scale_hi]; random accumulators."""
    parts = []
    for fa, fb in pairs:
        def codes(fmt):
            c = rng.integers(0, _limit(fmt), (n, K)).astype(np.uint8)
            if fmt != "e2m1":  # mostly finite: clear exponent MSB, keep some raw codes
                c = np.where(rng.random((n, K)) < special_rate, c, c & 0xBF).astype(np.uint8)
            return c

        sa = rng.integers(scale_lo, scale_hi + 1, (n, K // BLOCK)).astype(np.uint8)
        sb = rng.integers(scale_lo, scale_hi + 1, (n, K // BLOCK)).astype(np.uint8)
        sa[rng.random(sa.shape) < nan_scale_rate] = 0xFF
        acc = rng.standard_normal(n).astype(np.float32).view(np.uint32)
        acc[rng.random(n) < 0.2] = 0
        parts.append(dict(a=codes(fa), b=codes(fb), a_scale=sa, b_scale=sb, acc=acc,
                          a_fmt=np.array([fa] * n), b_fmt=np.array([fb] * n)))
    return concat(parts)


def concat(parts: list[dict]) -> dict:
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


class _Builder:
    def __init__(self, K: int = 2 * BLOCK):
        self.K = K
        self.rows, self.labels = [], []

    def add(self, label, fa, fb, a=None, b=None, sa=None, sb=None, acc=0):
        K, nb = self.K, self.K // BLOCK
        av = np.zeros(K, np.uint8) if a is None else np.asarray(a, np.uint8)
        bv = np.zeros(K, np.uint8) if b is None else np.asarray(b, np.uint8)
        sav = np.full(nb, 127, np.uint8) if sa is None else np.asarray(sa, np.uint8)
        sbv = np.full(nb, 127, np.uint8) if sb is None else np.asarray(sb, np.uint8)
        self.rows.append((av, bv, sav, sbv, np.uint32(acc), fa, fb))
        self.labels.append(label)

    def vectors(self) -> dict:
        cols = list(zip(*self.rows))
        return dict(a=np.stack(cols[0]), b=np.stack(cols[1]), a_scale=np.stack(cols[2]),
                    b_scale=np.stack(cols[3]), acc=np.array(cols[4], np.uint32),
                    a_fmt=np.array(cols[5]), b_fmt=np.array(cols[6]))


def edge_vectors(K: int = 2 * BLOCK) -> tuple[dict, list[str]]:
    """Hand-built cases for every rule of the contract; returns (vectors, labels)."""
    B = _Builder(K)

    def lane(fmt, val, at=0, other=None):
        v = np.zeros(K, np.uint8) if other is None else np.array(other, np.uint8)
        v[at] = val
        return v

    for fa, fb in PAIRS:
        one_a, one_b = ONE[fa], ONE[fb]
        ones_a = np.full(K, one_a, np.uint8)
        ones_b = np.full(K, one_b, np.uint8)
        B.add(f"{fa}x{fb} ones", fa, fb, ones_a, ones_b)
        B.add(f"{fa}x{fb} nan scale a blk1", fa, fb, ones_a, ones_b, sa=[127, 255])
        B.add(f"{fa}x{fb} nan scale b blk0 zero elems", fa, fb, sb=[255, 127])
        B.add(f"{fa}x{fb} -0 acc kept by zero blocks", fa, fb, acc=0x80000000)
        B.add(f"{fa}x{fb} acc NaN", fa, fb, ones_a, ones_b, acc=0x7FC12345)
        B.add(f"{fa}x{fb} acc +Inf", fa, fb, ones_a, ones_b, acc=0x7F800000)
        B.add(f"{fa}x{fb} acc -Inf zero blocks", fa, fb, acc=0xFF800000)
        # cancellation: block 0 = +1 (one lane), block 1 = -1 -> exact zero after 2 roundings
        neg_a = one_a | (0x8 if fa == "e2m1" else 0x80)
        a = np.zeros(K, np.uint8)
        a[0], a[BLOCK] = one_a, neg_a
        B.add(f"{fa}x{fb} cancel to +0", fa, fb, a, lane(fb, one_b, 0, lane(fb, one_b, BLOCK)))
        # acc = -1.0, block adds +1 exactly -> +0
        B.add(f"{fa}x{fb} acc cancel to +0", fa, fb, lane(fa, one_a), lane(fb, one_b),
              acc=0xBF800000)
        # subnormal result: 1 * 2^-140 (scales 127-70 each)
        B.add(f"{fa}x{fb} subnormal result", fa, fb, lane(fa, one_a), lane(fb, one_b),
              sa=[57, 57], sb=[57, 57])
        # below half the smallest subnormal -> rounds to 0 (S != 0, so the +0 rule applies)
        B.add(f"{fa}x{fb} underflow to 0", fa, fb, lane(fa, one_a), lane(fb, one_b),
              sa=[0, 0], sb=[0, 0])
        # ties: acc = 1.0, add 2^-24 (tie to even: stays 1.0) and 3 * 2^-24 cases
        B.add(f"{fa}x{fb} tie to even down", fa, fb, lane(fa, one_a), lane(fb, one_b),
              sa=[103, 0], sb=[127, 0], acc=0x3F800000)
        B.add(f"{fa}x{fb} tie to even up", fa, fb, lane(fa, one_a), lane(fb, one_b),
              sa=[103, 0], sb=[127, 0], acc=0x3F800001)
        # overflow: large scales
        B.add(f"{fa}x{fb} overflow to +Inf", fa, fb, ones_a, ones_b, sa=[254, 254],
              sb=[254, 254])
        B.add(f"{fa}x{fb} overflow to -Inf", fa, fb, np.full(K, neg_a, np.uint8), ones_b,
              sa=[254, 254], sb=[254, 254])

    # specials that exist only in FP8
    for fa, fb in PAIRS:
        if "e5m2" in (fa, fb):
            inf_side = "a" if fa == "e5m2" else "b"
            other_one = ONE[fb] if inf_side == "a" else ONE[fa]
            other_fmt = fb if inf_side == "a" else fa
            inf = lane("e5m2", E5M2_INF)
            ninf = lane("e5m2", E5M2_INF | 0x80)
            nz = lane(other_fmt, other_one)
            z = np.zeros(K, np.uint8)

            def put(x, y, label, acc=0, fa=fa, fb=fb, inf_side=inf_side):
                if inf_side == "a":
                    B.add(label, fa, fb, x, y, acc=acc)
                else:
                    B.add(label, fa, fb, y, x, acc=acc)

            put(inf, nz, f"{fa}x{fb} +Inf product")
            put(ninf, nz, f"{fa}x{fb} -Inf product")
            put(inf, z, f"{fa}x{fb} Inf*0 -> NaN")
            put(inf, nz, f"{fa}x{fb} +Inf product with acc -Inf -> NaN", acc=0xFF800000)
            both = lane("e5m2", E5M2_INF | 0x80, 1, inf)
            nz2 = lane(other_fmt, other_one, 1, nz)
            put(both, nz2, f"{fa}x{fb} Infs of both signs -> NaN")
            put(lane("e5m2", E5M2_NAN), nz, f"{fa}x{fb} e5m2 NaN element")
            put(lane("e5m2", E5M2_NAN), z, f"{fa}x{fb} e5m2 NaN element times 0")
            # Inf in block 0, finite later blocks keep Inf
            put(inf, lane(other_fmt, other_one, BLOCK, nz), f"{fa}x{fb} Inf then finite")
        if "e4m3" in (fa, fb):
            nan = lane("e4m3", E4M3_NAN)
            if fa == "e4m3":
                B.add(f"{fa}x{fb} e4m3 NaN element", fa, fb, nan, np.zeros(K, np.uint8))
            else:
                B.add(f"{fa}x{fb} e4m3 NaN element", fa, fb, np.zeros(K, np.uint8), nan)
    # widest exact sums: all lanes at max magnitude, opposite signs in half the lanes
    for fa, fb, ma, mb in (("e5m2", "e5m2", E5M2_MAX, E5M2_MAX), ("e4m3", "e4m3", E4M3_MAX,
                                                                    E4M3_MAX),
                           ("e4m3", "e5m2", E4M3_MAX, E5M2_MAX)):
        a = np.full(K, ma, np.uint8)
        b = np.full(K, mb, np.uint8)
        B.add(f"{fa}x{fb} max lanes", fa, fb, a, b, sa=[140, 140], sb=[140, 140])
        a2 = a.copy()
        a2[1::2] |= 0x80
        a2[0] = 0x01  # smallest subnormal in one lane, largest elsewhere: exact sum needed
        B.add(f"{fa}x{fb} max lanes alternating + tiny", fa, fb, a2, b, acc=0x3F800000)
    return B.vectors(), B.labels


def describe(vec: dict, i: int, labels: list[str] | None = None) -> str:
    """Short hex description of vector i for mismatch messages."""
    lab = f"{labels[i]}: " if labels else ""
    nz_a = np.nonzero(vec["a"][i])[0][:4]
    nz_b = np.nonzero(vec["b"][i])[0][:4]
    return (f"{lab}{vec['a_fmt'][i]}x{vec['b_fmt'][i]} acc={int(vec['acc'][i]):#010x} "
            f"a_scale={[hex(x) for x in vec['a_scale'][i]]} "
            f"b_scale={[hex(x) for x in vec['b_scale'][i]]} "
            f"a[{list(nz_a)}]={[hex(vec['a'][i][k]) for k in nz_a]} "
            f"b[{list(nz_b)}]={[hex(vec['b'][i][k]) for k in nz_b]}")


def golden_dot(vec: dict) -> np.ndarray:
    """golden.mx.dot over a mixed-format vector set."""
    from golden import mx

    n = vec["a"].shape[0]
    out = np.empty(n, np.uint32)
    fa, fb = np.broadcast_to(vec["a_fmt"], (n,)), np.broadcast_to(vec["b_fmt"], (n,))
    for pair in sorted(set(zip(fa.tolist(), fb.tolist()))):
        sel = (fa == pair[0]) & (fb == pair[1])
        out[sel] = mx.dot(vec["a"][sel], vec["a_scale"][sel], pair[0], vec["b"][sel],
                          vec["b_scale"][sel], pair[1], vec["acc"][sel])
    return out
