"""MX block dot-product unit: one 32-element block (two for e2m1 x e2m1) per cycle.

Computes, per the numerics contract (docs/numerics.md), for a stream of blocks::

    S_j = sum_i a_i * b_i                        exact, in a fixed-point adder tree
    acc = RNE_fp32(acc + 2^(Xa_j + Xb_j) * S_j)  one rounding per block (rtl.fp32.AlignAdd)

with the contract's NaN / Inf / zero rules. A dot product of K elements is K/32 beats
(K/64 beats when both operands are e2m1); the beat flagged ``first`` starts from ``acc``,
the beat flagged ``last`` emits the result.
"""

from __future__ import annotations

from amaranth import Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from rtl.fp32 import EXP_WIDTH, AlignAdd
from spec.formats import (
    BLOCK,
    FORMATS,
    FP32_CANONICAL_NAN,
    FP32_NEG_INF,
    FP32_POS_INF,
    SCALE_BIAS,
    SCALE_NAN,
)

__all__ = ["MXDotUnit", "dot_input_layout", "dot_output_layout", "PORT_BITS", "SIG4_UNIT"]

PORT_BITS = 256  # operand port width: 32 x 8-bit codes or 64 x 4-bit e2m1 codes

# Each element is decoded to a 4-bit significand sig4 and a shift ee; value = +-sig4 * 2^ee *
# 2^SIG4_UNIT[fmt]. (e5m2 significands are 3 bits, shifted left 1; e2m1 2 bits, shifted 2.)
SIG4_UNIT = {name: f.unit - (3 - f.mbits) for name, f in FORMATS.items()}


def dot_input_layout() -> data.StructLayout:
    return data.StructLayout({
        "a": PORT_BITS,                        # codes: byte i = element i (FP8), nibble i (e2m1)
        "b": PORT_BITS,
        "a_scale": data.ArrayLayout(8, 2),     # e8m0; [1] used only for the 2nd e2m1 block
        "b_scale": data.ArrayLayout(8, 2),
        "a_fmt": 2,                            # spec.formats code: e4m3 0, e5m2 1, e2m1 2
        "b_fmt": 2,
        "acc": 32,                             # binary32 start value (used on `first` beats)
        "first": 1,
        "last": 1,
    })


def dot_output_layout() -> data.StructLayout:
    return data.StructLayout({"result": 32, "error": 1})


class _Lane:
    """Decoded element: sign, sig4, ee, and special flags."""

    def __init__(self, m: Module, code8, code4, fmt, formats, tag):
        self.sign = Signal(name=f"{tag}_s")
        self.sig = Signal(4, name=f"{tag}_sig")
        self.ee = Signal(5, name=f"{tag}_ee")
        self.nan = Signal(name=f"{tag}_nan")
        self.inf = Signal(name=f"{tag}_inf")
        self.zero = Signal(name=f"{tag}_zero")
        with m.Switch(fmt):
            if "e4m3" in formats:
                with m.Case(FORMATS["e4m3"].code):
                    e, mm = code8[3:7], code8[0:3]
                    m.d.comb += [self.sign.eq(code8[7]),
                                 self.nan.eq((e == 15) & (mm == 7)),
                                 self.sig.eq(Cat(mm, e != 0)),
                                 self.ee.eq(Mux(e == 0, 0, e - 1))]
            if "e5m2" in formats:
                with m.Case(FORMATS["e5m2"].code):
                    e, mm = code8[2:7], code8[0:2]
                    m.d.comb += [self.sign.eq(code8[7]),
                                 self.nan.eq((e == 31) & (mm != 0)),
                                 self.inf.eq((e == 31) & (mm == 0)),
                                 self.sig.eq(Cat(Const(0, 1), mm, e != 0)),
                                 self.ee.eq(Mux(e == 0, 0, e - 1))]
            if "e2m1" in formats:
                with m.Case(FORMATS["e2m1"].code):
                    e, mm = code4[1:3], code4[0]
                    m.d.comb += [self.sign.eq(code4[3]),
                                 self.sig.eq(Cat(Const(0, 2), mm, e != 0)),
                                 self.ee.eq(Mux(e == 0, 0, e - 1))]
        m.d.comb += self.zero.eq(self.sig == 0)


class MXDotUnit(wiring.Component):
    """MX block dot-product unit (e2m1 / e4m3 / e5m2 operands, e8m0 scales, binary32 acc).

    Parameters
    ----------
    formats : tuple of str
        Element formats built into the datapath (any of "e2m1", "e4m3", "e5m2"); the format of
        each operand is still chosen at run time per beat. Fewer formats give a narrower
        adder tree (e5m2 needs ~72 bits, e4m3 ~42, e2m1 ~14).

    Ports
    -----
    i : In(stream.Signature(dot_input_layout()))
        One beat = one block of A and B (a_fmt, b_fmt any mix); when both formats are e2m1 a
        beat carries two consecutive blocks (codes 0..31 and 32..63, scales [0] and [1]).
        Mixed e2m1 x FP8 beats use the low 32 nibbles of the e2m1 operand.
    o : Out(stream.Signature(dot_output_layout()))
        One beat per dot product (on the input beat flagged ``last``): ``result`` binary32
        bits; ``error`` = 1 if any beat of that dot product named a format code that is not
        built in (the result is then 0x7FC00000).
    stat_blocks : Out(32)
        Count of blocks accumulated since reset (wraps), for utilization counters.

    Latency and throughput
    ----------------------
    Fully pipelined: one beat per cycle (32 MACs, or 64 for e2m1 x e2m1). The result of a
    beat flagged ``last`` accepted in cycle t is valid in cycle t + 3 (three register
    stages: products, block sum, accumulate). Backpressure: when ``o.valid & ~o.ready`` the
    whole pipeline holds and ``i.ready`` is low.
    """

    LATENCY = 3

    def __init__(self, formats=("e2m1", "e4m3", "e5m2")):
        formats = tuple(formats)
        if not formats or any(f not in FORMATS for f in formats) or len(set(formats)) != len(formats):
            raise ValueError(f"formats must be a non-empty tuple of distinct names from "
                             f"{list(FORMATS)}, not {formats!r}")
        self._formats = tuple(f for f in FORMATS if f in formats)
        super().__init__({
            "i": In(stream.Signature(dot_input_layout())),
            "o": Out(stream.Signature(dot_output_layout())),
            "stat_blocks": Out(32),
        })

    formats = property(lambda self: self._formats)

    @property
    def sum_width(self) -> int:
        """Width of the signed block-sum register (exact for 32 products)."""
        ee_max = max(FORMATS[f].ee_max for f in self._formats)
        return 8 + 2 * ee_max + 5 + 1

    def elaborate(self, platform):
        m = Module()
        fmts = self._formats
        has_e2m1 = "e2m1" in fmts
        SW = self.sum_width
        PW = 8 + 2 * max(FORMATS[f].ee_max for f in fmts)  # product magnitude width
        NW = 14  # e2m1 x e2m1 block sum: 32 * 144 < 2^13, signed

        p = self.i.payload
        advance = Signal()
        m.d.comb += [advance.eq(~self.o.valid | self.o.ready), self.i.ready.eq(advance)]

        # ---------------- stage 1: decode, products, specials (registered) -------------
        def fmt_ok(code):
            return Cat(*[code == FORMATS[f].code for f in fmts]).any()

        dual = Signal()
        if has_e2m1:
            m.d.comb += dual.eq((p.a_fmt == FORMATS["e2m1"].code)
                                & (p.b_fmt == FORMATS["e2m1"].code))
        bad_fmt = ~fmt_ok(p.a_fmt) | ~fmt_ok(p.b_fmt)

        r1_prod = [Signal(signed(PW + 1), name=f"r1_prod{i}") for i in range(BLOCK)]
        r1_nprod = [Signal(signed(10), name=f"r1_nprod{i}") for i in range(BLOCK)]
        r1 = {n: Signal(w, name=f"r1_{n}") for n, w in (
            ("valid", 1), ("nan0", 1), ("pinf0", 1), ("ninf0", 1), ("nan1", 1), ("dual", 1),
            ("first", 1), ("last", 1), ("err", 1), ("acc", 32))}
        r1_e0 = Signal(signed(EXP_WIDTH), name="r1_e0")
        r1_e1 = Signal(signed(EXP_WIDTH), name="r1_e1")

        nan_l, pinf_l, ninf_l = [], [], []
        for i in range(BLOCK):
            la = _Lane(m, p.a[8 * i:8 * i + 8], p.a[4 * i:4 * i + 4], p.a_fmt, fmts, f"a{i}")
            lb = _Lane(m, p.b[8 * i:8 * i + 8], p.b[4 * i:4 * i + 4], p.b_fmt, fmts, f"b{i}")
            prod = Signal(PW, name=f"prod{i}")
            m.d.comb += prod.eq((la.sig * lb.sig) << (la.ee + lb.ee))
            finite = ~(la.nan | la.inf | lb.nan | lb.inf)
            neg = la.sign ^ lb.sign
            with m.If(advance):
                m.d.sync += r1_prod[i].eq(Mux(finite, Mux(neg, -prod, prod), 0))
            nan_l.append(la.nan | lb.nan | (la.inf & lb.zero) | (la.zero & lb.inf))
            inf_i = (la.inf & ~lb.zero & ~lb.nan) | (lb.inf & ~la.zero & ~la.nan)
            pinf_l.append(inf_i & ~neg)
            ninf_l.append(inf_i & neg)
            if has_e2m1:  # second e2m1 block in the high nibbles (e2m1 x e2m1 beats only)
                ca, cb = p.a[128 + 4 * i:132 + 4 * i], p.b[128 + 4 * i:132 + 4 * i]
                sa_, sb_ = Signal(2, name=f"na_sig{i}"), Signal(2, name=f"nb_sig{i}")
                ea_, eb_ = Signal(2, name=f"na_ee{i}"), Signal(2, name=f"nb_ee{i}")
                m.d.comb += [sa_.eq(Cat(ca[0], ca[1:3] != 0)), sb_.eq(Cat(cb[0], cb[1:3] != 0)),
                             ea_.eq(Mux(ca[1:3] == 0, 0, ca[1:3] - 1)),
                             eb_.eq(Mux(cb[1:3] == 0, 0, cb[1:3] - 1))]
                nprod = Signal(8, name=f"nprod{i}")
                m.d.comb += nprod.eq((sa_ * sb_) << (ea_ + eb_))
                with m.If(advance):
                    m.d.sync += r1_nprod[i].eq(Mux(ca[3] ^ cb[3], -nprod, nprod))

        def unit_of(code):
            u = Signal(signed(8))
            with m.Switch(code):
                for f in fmts:
                    with m.Case(FORMATS[f].code):
                        m.d.comb += u.eq(SIG4_UNIT[f])
            return u

        ua, ub = unit_of(p.a_fmt), unit_of(p.b_fmt)
        e2 = FORMATS["e2m1"].unit
        with m.If(advance):
            m.d.sync += [
                r1["valid"].eq(self.i.valid),
                r1["nan0"].eq(Cat(*nan_l).any() | (p.a_scale[0] == SCALE_NAN)
                              | (p.b_scale[0] == SCALE_NAN)),
                r1["pinf0"].eq(Cat(*pinf_l).any()),
                r1["ninf0"].eq(Cat(*ninf_l).any()),
                r1["nan1"].eq((p.a_scale[1] == SCALE_NAN) | (p.b_scale[1] == SCALE_NAN)),
                r1["dual"].eq(dual),
                r1["first"].eq(p.first), r1["last"].eq(p.last), r1["err"].eq(bad_fmt),
                r1["acc"].eq(p.acc),
                r1_e0.eq(p.a_scale[0] + p.b_scale[0] - 2 * SCALE_BIAS + ua + ub),
                r1_e1.eq(p.a_scale[1] + p.b_scale[1] - 2 * SCALE_BIAS + 2 * e2),
            ]

        # ---------------- stage 2: exact block sums (registered) ----------------------
        r2 = {n: Signal(w, name=f"r2_{n}") for n, w in (
            ("valid", 1), ("nan0", 1), ("pinf0", 1), ("ninf0", 1), ("nan1", 1), ("dual", 1),
            ("first", 1), ("last", 1), ("err", 1), ("acc", 32))}
        r2_s0 = Signal(signed(SW), name="r2_s0")
        r2_s1 = Signal(signed(NW), name="r2_s1")
        r2_e0 = Signal(signed(EXP_WIDTH), name="r2_e0")
        r2_e1 = Signal(signed(EXP_WIDTH), name="r2_e1")

        def tree(values, width):
            level = list(values)
            while len(level) > 1:
                nxt = []
                for k in range(0, len(level), 2):
                    s = Signal(signed(width))
                    m.d.comb += s.eq(level[k] + level[k + 1])
                    nxt.append(s)
                level = nxt
            return level[0]

        sum0 = tree(r1_prod, SW)
        sum1 = tree(r1_nprod, NW) if has_e2m1 else 0
        with m.If(advance):
            m.d.sync += [r2[n].eq(r1[n]) for n in r1]
            m.d.sync += [r2_s0.eq(sum0), r2_e0.eq(r1_e0), r2_e1.eq(r1_e1)]
            if has_e2m1:
                m.d.sync += r2_s1.eq(sum1)

        # ---------------- stage 3: accumulate (one or two rounding steps) -----------------
        acc = Signal(32)
        err = Signal()
        acc_in = Mux(r2["first"], r2["acc"], acc)
        err_in = Mux(r2["first"], 0, err) | r2["err"]

        def step(tag, cur, s, s_width, e, nan, pinf, ninf):
            add = m.submodules[f"add_{tag}"] = AlignAdd(24, s_width - 1)
            ce, cf = cur[23:31], cur[:23]
            c_nan = (ce == 0xFF) & (cf != 0)
            c_pinf = cur == FP32_POS_INF
            c_ninf = cur == FP32_NEG_INF
            m.d.comb += [
                add.x_sign.eq(cur[31]),
                add.x_mag.eq(Mux(ce == 0, cf, Cat(cf, Const(1, 1)))),
                add.x_exp.eq(Mux(ce == 0, -149, ce.as_unsigned() - 150)),
                add.y_sign.eq(s < 0),
                add.y_mag.eq(Mux(s < 0, -s, s)),
                add.y_exp.eq(e),
            ]
            out = Signal(32, name=f"acc_{tag}")
            p_any, n_any = pinf | c_pinf, ninf | c_ninf
            with m.If(c_nan | nan | (p_any & n_any)):
                m.d.comb += out.eq(FP32_CANONICAL_NAN)
            with m.Elif(p_any):
                m.d.comb += out.eq(FP32_POS_INF)
            with m.Elif(n_any):
                m.d.comb += out.eq(FP32_NEG_INF)
            with m.Elif(s == 0):
                m.d.comb += out.eq(cur)
            with m.Else():
                m.d.comb += out.eq(add.result)
            return out

        acc0 = step("b0", acc_in, r2_s0, SW, r2_e0, r2["nan0"], r2["pinf0"], r2["ninf0"])
        if has_e2m1:
            acc1 = step("b1", acc0, r2_s1, NW, r2_e1, r2["nan1"], 0, 0)
            acc_next = Mux(r2["dual"], acc1, acc0)
        else:
            acc_next = acc0

        blocks = Signal(32)
        m.d.comb += self.stat_blocks.eq(blocks)
        with m.If(advance & r2["valid"]):
            m.d.sync += [acc.eq(acc_next), err.eq(err_in),
                         blocks.eq(blocks + 1 + r2["dual"])]
        with m.If(advance):
            m.d.sync += [
                self.o.valid.eq(r2["valid"] & r2["last"]),
                self.o.payload.result.eq(Mux(err_in, FP32_CANONICAL_NAN, acc_next)),
                self.o.payload.error.eq(err_in),
            ]
        return m


VERILOG_TOPS = {
    "mxdot": lambda: MXDotUnit(),
    "mxdot_fp8": lambda: MXDotUnit(("e4m3", "e5m2")),
    "mxdot_e4m3": lambda: MXDotUnit(("e4m3",)),
    "mxdot_e2m1": lambda: MXDotUnit(("e2m1",)),
}
