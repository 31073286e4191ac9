"""Reusable binary32 arithmetic: leading-zero count, exact align-add, normalize/round.

All components here are combinational (no clock); callers place registers around them.

* :class:`RoundFP32` rounds an exact value ``(-1)^sign * mag * 2^exp`` (``mag`` an unsigned
  integer whose LSB may be a sticky bit) to binary32 with round-to-nearest-even, keeping
  subnormals and overflowing to +-Inf.
* :class:`AlignAdd` computes ``RNE_fp32(x + y)`` exactly for two operands given as
  (sign, unsigned integer, exponent of its LSB) of any widths; this is the accumulate step of
  the MX dot-product unit and the core of :class:`AddFP32`.
* :class:`AddFP32` is an IEEE 754 binary32 adder (RNE, subnormals in and out, overflow to Inf,
  NaN out = 0x7FC00000, x + (-x) = +0, -0 + -0 = -0).

Exactness argument for AlignAdd (see docs/mxdot.md): both operands are normalized so their
MSBs sit at the top of a common width ``W``; the one with the smaller MSB exponent is shifted
right by the exponent difference ``d`` into a window of ``W + 3`` bits plus one sticky bit.
If ``d <= 1`` nothing is lost and the sum is exact. If ``d >= 2`` the result keeps its MSB
within one position of the top, so the round bit lies at least two positions above the
sticky bit, and a sticky bit standing for "some nonzero bits strictly below" gives the same
rounding as the exact value.
"""

from __future__ import annotations

from amaranth import Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = ["leading_zeros", "RoundFP32", "AlignAdd", "AddFP32", "EXP_WIDTH"]

EXP_WIDTH = 12  # signed exponent width used for all LSB exponents (covers -2048..2047)


def leading_zeros(m: Module, value, name: str = "lz"):
    """Count leading zeros of ``value`` (returns a Signal; equals len(value) if value == 0)."""
    width = len(value)
    lz = Signal(range(width + 1), name=name)
    # priority encoder from the LSB up: the last assignment (highest set bit) wins
    m.d.comb += lz.eq(width)
    for i in range(width):
        with m.If(value[i]):
            m.d.comb += lz.eq(width - 1 - i)
    return lz


class RoundFP32(wiring.Component):
    """Round ``(-1)^sign * mag * 2^exp`` to binary32 (RNE, subnormals, overflow to Inf).

    ``mag`` is exact except that its LSB may be a sticky bit (the caller guarantees the
    round position lies above it). ``mag == 0`` gives a zero of sign ``sign``.
    Combinational.

    Ports: ``sign`` (1), ``mag`` (``width``), ``exp`` (signed ``EXP_WIDTH``) -> ``result`` (32).
    """

    def __init__(self, width: int):
        if not isinstance(width, int) or width < 2:
            raise ValueError(f"width must be an integer >= 2, not {width!r}")
        self._width = width
        super().__init__({"sign": In(1), "mag": In(width), "exp": In(signed(EXP_WIDTH)),
                          "result": Out(32)})

    width = property(lambda self: self._width)

    def elaborate(self, platform):
        m = Module()
        W = self._width
        ext = max(W, 26)  # at least 24 result bits + round + one bit below
        mag = Signal(ext)
        m.d.comb += mag.eq(self.mag << (ext - W))  # left-align; LSB exponent moves down
        lz = leading_zeros(m, mag)
        norm = Signal(ext)
        m.d.comb += norm.eq(mag << lz)
        # exponent of the MSB of norm
        msb_exp = Signal(signed(EXP_WIDTH + 2))
        m.d.comb += msb_exp.eq(self.exp - (ext - W) + (ext - 1) - lz)
        # subnormal: shift right so the MSB exponent becomes -126 (LSB exponent -149)
        sub_shift = Signal(range(ext + 1))
        deficit = Signal(signed(EXP_WIDTH + 3))
        m.d.comb += deficit.eq(-126 - msb_exp)
        with m.If(deficit <= 0):
            m.d.comb += sub_shift.eq(0)
        with m.Elif(deficit >= ext):
            m.d.comb += sub_shift.eq(ext)
        with m.Else():
            m.d.comb += sub_shift.eq(deficit)
        shifted = Signal(ext)
        lost = Signal()
        m.d.comb += [
            shifted.eq(norm >> sub_shift),
            lost.eq((norm & ((Const(1, ext + 1) << sub_shift) - 1)[:ext]) != 0),
        ]
        q = shifted[ext - 24:]
        rnd = shifted[ext - 25]
        sticky = Signal()
        m.d.comb += sticky.eq((shifted[:ext - 25] != 0) | lost)
        inc = rnd & (sticky | q[0])
        q2 = Signal(25)
        m.d.comb += q2.eq(q + inc)
        # biased exponent minus one for normals (hidden bit in q2 adds the one), 0 for subnormals
        base = Signal(signed(EXP_WIDTH + 3))
        m.d.comb += base.eq(Mux(deficit > 0, 0, msb_exp + 126))
        total = Signal(signed(EXP_WIDTH + 3 + 24))
        m.d.comb += total.eq((base << 23) + q2)
        mag31 = Signal(31)
        with m.If(norm == 0):
            m.d.comb += mag31.eq(0)
        with m.Elif(total >= 0x7F800000):
            m.d.comb += mag31.eq(0x7F800000)
        with m.Else():
            m.d.comb += mag31.eq(total[:31])
        m.d.comb += self.result.eq(Cat(mag31, self.sign))
        return m


class AlignAdd(wiring.Component):
    """Exact ``RNE_fp32(x + y)`` of two finite operands ``(-1)^s * m * 2^e``.

    Ports: ``x_sign``, ``x_mag`` (``x_width``), ``x_exp`` (signed EXP_WIDTH), same for ``y``;
    outputs ``result`` (32). An exact zero sum gives +0, except that when both operands are
    zero the result is ``-0`` if both signs are negative, else ``+0`` (IEEE RNE rule).
    Combinational.
    """

    GUARD = 3

    def __init__(self, x_width: int, y_width: int):
        for n, w in (("x_width", x_width), ("y_width", y_width)):
            if not isinstance(w, int) or w < 1:
                raise ValueError(f"{n} must be a positive integer, not {w!r}")
        self._xw, self._yw = x_width, y_width
        super().__init__({
            "x_sign": In(1), "x_mag": In(x_width), "x_exp": In(signed(EXP_WIDTH)),
            "y_sign": In(1), "y_mag": In(y_width), "y_exp": In(signed(EXP_WIDTH)),
            "result": Out(32),
        })

    def elaborate(self, platform):
        m = Module()
        W = max(self._xw, self._yw, 24)
        G = self.GUARD
        WIN = W + G + 1  # window: W significant bits, G guard bits, one sticky bit

        def normalize(mag, exp, width, tag):
            lz = leading_zeros(m, mag, name=f"{tag}_lz")
            n = Signal(W, name=f"{tag}_norm")
            m.d.comb += n.eq((mag << lz) << (W - width))
            msb = Signal(signed(EXP_WIDTH + 2), name=f"{tag}_msb")
            m.d.comb += msb.eq(exp + (width - 1) - lz)
            return n, msb

        xn, xmsb = normalize(self.x_mag, self.x_exp, self._xw, "x")
        yn, ymsb = normalize(self.y_mag, self.y_exp, self._yw, "y")
        x_zero, y_zero = self.x_mag == 0, self.y_mag == 0

        # big = operand with the larger MSB exponent (a zero operand is never big unless both are)
        swap = Signal()
        m.d.comb += swap.eq(~y_zero & (x_zero | (ymsb > xmsb)))
        big, small = Signal(W), Signal(W)
        bmsb, smsb = Signal(signed(EXP_WIDTH + 2)), Signal(signed(EXP_WIDTH + 2))
        bsign, ssign = Signal(), Signal()
        m.d.comb += [
            big.eq(Mux(swap, yn, xn)), small.eq(Mux(swap, xn, yn)),
            bmsb.eq(Mux(swap, ymsb, xmsb)), smsb.eq(Mux(swap, xmsb, ymsb)),
            bsign.eq(Mux(swap, self.y_sign, self.x_sign)),
            ssign.eq(Mux(swap, self.x_sign, self.y_sign)),
        ]
        small_zero = Signal()
        m.d.comb += small_zero.eq(Mux(swap, x_zero, y_zero))
        diff = Signal(signed(EXP_WIDTH + 3))
        m.d.comb += diff.eq(bmsb - smsb)
        d = Signal(range(WIN + 1))
        with m.If(small_zero | (diff >= WIN)):
            m.d.comb += d.eq(WIN)
        with m.Else():
            m.d.comb += d.eq(diff)
        small_w = Signal(WIN)
        m.d.comb += small_w.eq(small << (G + 1))
        small_sh = Signal(WIN)
        lost = Signal()
        m.d.comb += [
            small_sh.eq(small_w >> d),
            lost.eq(~small_zero & ((small_w & ((Const(1, WIN + 1) << d) - 1)[:WIN]) != 0)),
        ]
        big_w = Signal(WIN)
        m.d.comb += big_w.eq(big << (G + 1))
        sub = bsign ^ ssign
        acc = Signal(signed(WIN + 2))
        small_op = Signal(WIN)
        m.d.comb += small_op.eq(small_sh | lost)
        m.d.comb += acc.eq(Mux(sub, big_w - small_op, big_w + small_op))
        neg = acc < 0
        mag = Signal(WIN + 1)
        m.d.comb += mag.eq(Mux(neg, -acc, acc))

        rnd = m.submodules.round = RoundFP32(WIN + 1)
        both_zero = x_zero & y_zero
        with m.If(both_zero):
            m.d.comb += rnd.sign.eq(self.x_sign & self.y_sign)
        with m.Elif(mag == 0):
            m.d.comb += rnd.sign.eq(0)  # exact cancellation gives +0
        with m.Else():
            m.d.comb += rnd.sign.eq(bsign ^ neg)
        m.d.comb += [
            rnd.mag.eq(mag),
            rnd.exp.eq(bmsb - (W - 1) - (G + 1)),
            self.result.eq(rnd.result),
        ]
        return m


class AddFP32(wiring.Component):
    """IEEE 754 binary32 adder, RNE, subnormals kept, overflow to +-Inf. Combinational.

    Ports: ``a`` (32), ``b`` (32) -> ``result`` (32). NaN results are 0x7FC00000; Inf + -Inf
    is NaN; x + (-x) = +0.
    """

    def __init__(self):
        super().__init__({"a": In(32), "b": In(32), "result": Out(32)})

    def elaborate(self, platform):
        m = Module()
        core = m.submodules.core = AlignAdd(24, 24)

        def unpack(x, tag):
            e = x[23:31]
            frac = x[:23]
            mag = Signal(24, name=f"{tag}_mag")
            exp = Signal(signed(EXP_WIDTH), name=f"{tag}_exp")
            m.d.comb += [
                mag.eq(Mux(e == 0, frac, Cat(frac, Const(1, 1)))),
                exp.eq(Mux(e == 0, -149, e.as_unsigned() - 150)),
            ]
            return mag, exp, x[31], e == 0xFF, (e == 0xFF) & (frac != 0)

        am, ae, asg, a_special, a_nan = unpack(self.a, "a")
        bm, be, bsg, b_special, b_nan = unpack(self.b, "b")
        m.d.comb += [core.x_sign.eq(asg), core.x_mag.eq(am), core.x_exp.eq(ae),
                     core.y_sign.eq(bsg), core.y_mag.eq(bm), core.y_exp.eq(be)]
        a_inf = a_special & ~a_nan
        b_inf = b_special & ~b_nan
        with m.If(a_nan | b_nan | (a_inf & b_inf & (asg != bsg))):
            m.d.comb += self.result.eq(0x7FC00000)
        with m.Elif(a_inf):
            m.d.comb += self.result.eq(self.a)
        with m.Elif(b_inf):
            m.d.comb += self.result.eq(self.b)
        with m.Else():
            m.d.comb += self.result.eq(core.result)
        return m

