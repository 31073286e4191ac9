"""Tile vector processor (TVP): 8 binary32 lanes working on one TSRAM word per step.

Word-serial engine (docs/tile.md "TVP"): for each word of src1 it reads src1 (and src2),
computes in the lanes, and writes dst with a byte mask so padding stays untouched. Every
op follows golden/tvp.py bit for bit: IEEE add/sub/mul (``AddFP32``, :class:`MulFP32`),
max/min with NaN -> NaN and +0 > -0, relu, x * 2^k, exp2 (piecewise polynomial, 11 steps
per word), rcp (Newton, 9 steps), row sum / row max (per-lane sequential then a fixed
pairwise tree), quantize to MX (two passes over each 32-element block) and BF16 (RNE).
"""

from __future__ import annotations

from amaranth import Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from rtl.fp32 import EXP_WIDTH, AddFP32, RoundFP32, leading_zeros
from rtl.tile.tsram import WORD_BITS, tsram_port
from spec import tile as T
from spec.formats import FORMATS, FP32_CANONICAL_NAN

__all__ = ["TVP", "MulFP32"]

L = T.LANES
NAN = FP32_CANONICAL_NAN
INF = 0x7F800000


class MulFP32(wiring.Component):
    """IEEE 754 binary32 multiplier (RNE, subnormals, overflow to Inf, NaN = 0x7FC00000).
    Combinational. Ports: ``a``, ``b`` -> ``result``."""

    def __init__(self):
        super().__init__({"a": In(32), "b": In(32), "result": Out(32)})

    def elaborate(self, platform):
        m = Module()
        rnd = m.submodules.round = RoundFP32(48)

        def unpack(x):
            e, f = x[23:31], x[:23]
            mag = Mux(e == 0, f, Cat(f, Const(1, 1)))
            exp = Signal(signed(EXP_WIDTH))
            m.d.comb += exp.eq(Mux(e == 0, -149, e.as_unsigned() - 150))
            return mag, exp, e == 0xFF, (e == 0xFF) & (f != 0), x[:31] == 0

        am, ae, a_sp, a_nan, a_z = unpack(self.a)
        bm, be, b_sp, b_nan, b_z = unpack(self.b)
        sign = self.a[31] ^ self.b[31]
        m.d.comb += [rnd.sign.eq(sign), rnd.mag.eq(am * bm), rnd.exp.eq(ae + be)]
        a_inf, b_inf = a_sp & ~a_nan, b_sp & ~b_nan
        with m.If(a_nan | b_nan | (a_inf & b_z) | (b_inf & a_z)):
            m.d.comb += self.result.eq(NAN)
        with m.Elif(a_inf | b_inf):
            m.d.comb += self.result.eq(Cat(Const(INF, 31), sign))
        with m.Else():
            m.d.comb += self.result.eq(rnd.result)
        return m


def _key(x):
    """Monotone unsigned key of a non-NaN binary32 (-0 < +0)."""
    return Mux(x[31], ~x, x | 0x80000000)


def _is_nan(x):
    return x[:31] > INF


def _f32(v: float) -> int:
    return T._f32(v)


class TVP(wiring.Component):
    """Tile vector processor. Ports: ``start`` (pulse) with ``desc`` (the TVP descriptor,
    stable while busy), ``busy``, ``done`` (pulse), ``mem`` TSRAM lane, ``word`` (pulse per
    src1 word read, the ``tvp_words`` counter)."""

    def __init__(self, cfg: T.TileConfig, addr_width: int):
        self._cfg = cfg
        self._aw = addr_width
        super().__init__({"start": In(1), "desc": In(WORD_BITS), "busy": Out(1),
                          "done": Out(1), "word": Out(1), "mem": Out(tsram_port(addr_width))})

    def elaborate(self, platform):
        m = Module()
        AW = self._aw
        d = self.desc
        w = [d[32 * i:32 * i + 32] for i in range(8)]
        op = w[6][:8]
        mode = w[6][8:10]
        qf = w[6][12:14]
        rows, n = w[5][:16], w[5][16:32]
        imm = w[4]
        src1, src2, dst = w[1][5:], w[2][5:], w[3][5:]
        rw = Signal(14)                      # words per fp32 row
        m.d.comb += rw.eq((n + 7) >> 3)
        qrw = Signal(14)
        m.d.comb += qrw.eq(Mux(qf == 2, (n + 63) >> 6, (n + 31) >> 5))
        srw = Signal(8)
        m.d.comb += srw.eq((n + 1023) >> 10)
        brw = Signal(14)
        m.d.comb += brw.eq((n + 15) >> 4)

        r = Signal(16)
        j = Signal(14)                       # word within the row (or block for QUANT)
        q = Signal(3)                        # word within a quantize block
        step = Signal(4)
        mem = self.mem
        busy = Signal()
        m.d.comb += self.busy.eq(busy)

        # ------------------------------------------------------------ lanes
        X = [Signal(32, name=f"x{i}") for i in range(L)]
        Y = [Signal(32, name=f"y{i}") for i in range(L)]
        P = [Signal(32, name=f"p{i}") for i in range(L)]
        F = [Signal(32, name=f"f{i}") for i in range(L)]
        Tt = [Signal(32, name=f"t{i}") for i in range(L)]
        Nn = [Signal(signed(9), name=f"n{i}") for i in range(L)]
        Ss = [Signal(3, name=f"s{i}") for i in range(L)]
        Rr = [Signal(32, name=f"r{i}") for i in range(L)]
        add_a = [Signal(32, name=f"adda{i}") for i in range(L)]
        add_b = [Signal(32, name=f"addb{i}") for i in range(L)]
        mul_a = [Signal(32, name=f"mula{i}") for i in range(L)]
        mul_b = [Signal(32, name=f"mulb{i}") for i in range(L)]
        addr_ = []
        mulr = []
        for i in range(L):
            ad = m.submodules[f"add{i}"] = AddFP32()
            mu = m.submodules[f"mul{i}"] = MulFP32()
            m.d.comb += [ad.a.eq(add_a[i]), ad.b.eq(add_b[i]), mu.a.eq(mul_a[i]),
                         mu.b.eq(mul_b[i])]
            addr_.append(ad.result)
            mulr.append(mu.result)

        def fmax(a, b):
            return Mux(_is_nan(a) | _is_nan(b), NAN, Mux(_key(a) >= _key(b), a, b))

        def fmin(a, b):
            return Mux(_is_nan(a) | _is_nan(b), NAN, Mux(_key(a) <= _key(b), a, b))

        # exp2 helpers (comb, per lane)
        coef = T.EXP2_COEFFS
        k128, km149 = _f32(128.0), _f32(-149.0)
        n_comb, nf_comb, s_comb, s8neg, two_n, cf = [], [], [], [], [], []
        for i in range(L):
            x = X[i]
            e, sig = x[23:31], Cat(x[:23], Const(1, 1))
            sh = Signal(8, name=f"sh{i}")
            m.d.comb += sh.eq(150 - e)
            ip = Signal(9, name=f"ip{i}")
            fnz = Signal(name=f"fnz{i}")
            with m.If(e < 127):
                m.d.comb += [ip.eq(0), fnz.eq(x[:31] != 0)]
            with m.Else():
                m.d.comb += [ip.eq(sig >> sh),
                             fnz.eq((sig & ((Const(1, 25) << sh) - 1)[:24]) != 0)]
            nv = Signal(signed(10), name=f"nv{i}")
            m.d.comb += nv.eq(Mux(x[31], -(ip + fnz), ip))
            n_comb.append(nv)
            cv = m.submodules[f"i2f{i}"] = RoundFP32(8)
            m.d.comb += [cv.sign.eq(nv < 0), cv.mag.eq(Mux(nv < 0, -nv, nv)), cv.exp.eq(0)]
            nf_comb.append(cv.result)
            fv = F[i]
            ef = fv[23:31]
            sv = Signal(3, name=f"sv{i}")
            fsig = Cat(fv[:23], Const(1, 1))
            with m.If(fv[31] | (ef < 124)):
                m.d.comb += sv.eq(0)
            with m.Elif(ef >= 127):
                m.d.comb += sv.eq(7)
            with m.Else():
                shs = Signal(8, name=f"shs{i}")
                m.d.comb += [shs.eq(147 - ef), sv.eq(fsig >> shs)]
            s_comb.append(sv)
            s8 = Signal(32, name=f"s8n{i}")
            with m.Switch(sv):
                for s in range(8):
                    with m.Case(s):
                        m.d.comb += s8.eq(_f32(s / 8) | 0x80000000)
            s8neg.append(s8)
            tn = Signal(32, name=f"twon{i}")
            nn = Nn[i]
            m.d.comb += tn.eq(Mux(nn >= -126, ((nn + 127)[:8]) << 23,
                                  Const(1, 32) << (nn + 149)[:5]))
            two_n.append(tn)
            cks = []
            for k in range(T.EXP2_DEGREE + 1):
                c = Signal(32, name=f"c{k}_{i}")
                with m.Switch(Ss[i]):
                    for s in range(8):
                        with m.Case(s):
                            m.d.comb += c.eq(coef[s][k])
                cks.append(c)
            cf.append(cks)

        # ------------------------------------------------------------ quantize helpers
        amax = Signal(31)
        qspecial = Signal()
        qX = Signal(signed(9))
        codes = Signal(WORD_BITS)
        flog = Signal(signed(10))
        lz_a = leading_zeros(m, amax[:23], name="lz_amax")
        m.d.comb += flog.eq(Mux(amax[23:31] != 0, amax[23:31] - 127, (22 - lz_a) - 149))
        emax = Signal(5)
        with m.Switch(qf):
            for f in FORMATS.values():
                with m.Case(f.code):
                    m.d.comb += emax.eq(f.emax)
        xcalc = Signal(signed(11))
        m.d.comb += xcalc.eq(flog - emax)
        xcl = Signal(signed(9))
        with m.If(amax == 0):
            m.d.comb += xcl.eq(-127)
        with m.Elif(xcalc < -127):
            m.d.comb += xcl.eq(-127)
        with m.Elif(xcalc > 127):
            m.d.comb += xcl.eq(127)
        with m.Else():
            m.d.comb += xcl.eq(xcalc)

        def qconv(x, fmtc, tag):
            """binary32 x / 2^qX -> element code (RNE, subnormals, saturating)."""
            out = Signal(8, name=f"q_{tag}")
            e, fr = x[23:31], x[:23]
            sig = Signal(24, name=f"qsig_{tag}")
            lsb = Signal(signed(12), name=f"qlsb_{tag}")
            m.d.comb += [sig.eq(Mux(e == 0, fr, Cat(fr, Const(1, 1)))),
                         lsb.eq(Mux(e == 0, -149, e.as_unsigned() - 150) - qX)]
            lz = leading_zeros(m, sig, name=f"qlz_{tag}")
            msb = Signal(signed(12), name=f"qmsb_{tag}")
            m.d.comb += msb.eq(lsb + 23 - lz)
            for f in FORMATS.values():
                with m.If(fmtc == f.code):
                    mb, u = f.mbits, f.unit
                    emf = (1 << f.ebits) - 1 if f.name == "e4m3" else (
                        (1 << f.ebits) - 2 if f.name == "e5m2" else (1 << f.ebits) - 1)
                    mmax = (1 << mb) - 2 if f.name == "e4m3" else (1 << mb) - 1
                    qe = Signal(signed(12), name=f"qe_{tag}_{f.name}")
                    m.d.comb += qe.eq(Mux(msb - mb > u, msb - mb, u))
                    shift = Signal(signed(13), name=f"qsh_{tag}_{f.name}")
                    m.d.comb += shift.eq(qe - lsb)
                    nq = Signal(26, name=f"qn_{tag}_{f.name}")
                    with m.If(shift <= 0):
                        m.d.comb += nq.eq(sig << (-shift)[:2])
                    with m.Else():
                        sh = Signal(6, name=f"qs_{tag}_{f.name}")
                        m.d.comb += sh.eq(Mux(shift > 26, 26, shift))
                        wide = Signal(51, name=f"qw_{tag}_{f.name}")
                        m.d.comb += wide.eq(Cat(Const(0, 26), sig) >> sh)
                        qv = wide[26:]
                        rb = wide[25]
                        st = wide[:25] != 0
                        m.d.comb += nq.eq(qv + (rb & (st | qv[0])))
                    ee = Signal(signed(12), name=f"qee_{tag}_{f.name}")
                    m.d.comb += ee.eq(qe - u)
                    carry = nq >= (1 << (mb + 1))
                    n2 = Signal(26, name=f"qn2_{tag}_{f.name}")
                    E = Signal(signed(13), name=f"qE_{tag}_{f.name}")
                    m.d.comb += [n2.eq(Mux(carry, nq >> 1, nq)), E.eq(ee + carry)]
                    ef = Signal(signed(13), name=f"qef_{tag}_{f.name}")
                    mf = Signal(26, name=f"qmf_{tag}_{f.name}")
                    with m.If(n2 >= (1 << mb)):
                        m.d.comb += [ef.eq(E + 1), mf.eq(n2 - (1 << mb))]
                    with m.Else():
                        m.d.comb += [ef.eq(0), mf.eq(n2)]
                    sat = (ef > emf) | ((ef == emf) & (mf > mmax))
                    mag = Mux(sat, (emf << mb) | mmax, (ef[:f.ebits] << mb) | mf[:mb])
                    m.d.comb += out.eq(Cat(mag[:f.bits - 1], x[31]))
            return out

        qcodes = [qconv(X[i], qf, str(i)) for i in range(L)]

        # ------------------------------------------------------------ bf16
        bf = []
        for i in range(L):
            x = X[i]
            up = x[16:32]
            inc = x[15] & ((x[:15] != 0) | up[0])
            b = Signal(16, name=f"bf{i}")
            m.d.comb += b.eq(Mux(_is_nan(x), 0x7FC0, up + inc))
            bf.append(b)

        # ------------------------------------------------------------ FSM
        is_bin = Cat(*[op == o for o in T.TVP_BINARY]).any()
        is_row = Cat(*[op == o for o in T.TVP_ROW]).any()
        lanes_valid = Signal(L)
        rem = Signal(17)
        m.d.comb += rem.eq(n - (j << 3))
        for i in range(L):
            m.d.comb += lanes_valid[i].eq(rem > i)
        row_base = Signal(AW + 16)
        m.d.comb += row_base.eq(src1 + r * rw)
        last_row = r + 1 == rows
        m.d.comb += [mem.wmask.eq(0), mem.we.eq(0), mem.valid.eq(0), self.done.eq(0),
                     self.word.eq(0)]
        imm_s = imm.as_signed()
        two_imm = Signal(32)
        m.d.comb += two_imm.eq(((imm_s + 127)[:8]) << 23)
        rcp_a = [X[i][:31] for i in range(L)]
        nblocks = n >> 5

        def finish_word(next_state_same):
            """advance j / r after a word; done at the end."""
            with m.If(j + 1 < rw):
                m.d.sync += j.eq(j + 1)
                m.next = next_state_same
            with m.Elif(~last_row):
                m.d.sync += [j.eq(0), r.eq(r + 1)]
                m.next = next_state_same
            with m.Else():
                m.next = "FINISH"

        with m.FSM(name="tvp"):
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += [busy.eq(1), r.eq(0), j.eq(0), q.eq(0), step.eq(0)]
                    with m.If(is_row):
                        m.next = "ROWINIT"
                    with m.Elif(op == T.TVP_QUANT):
                        m.next = "Q1"
                    with m.Else():
                        m.next = "RD1"
            # ---------------- elementwise ----------------
            with m.State("RD1"):
                m.d.comb += [mem.valid.eq(1), mem.addr.eq(row_base + j)]
                with m.If(mem.ready):
                    m.d.comb += self.word.eq(1)
                    m.next = "RD1W"
            with m.State("RD1W"):
                with m.If(mem.rvalid):
                    m.d.sync += [X[i].eq(mem.rdata[32 * i:32 * i + 32]) for i in range(L)]
                    with m.If(is_row):
                        m.next = "ROWACC"
                    with m.Elif(is_bin & (mode == T.SRC2_VECTOR)):
                        m.next = "RD2"
                    with m.Elif(is_bin & (mode == T.SRC2_ROW)):
                        m.next = "RD2"
                    with m.Elif(op == T.TVP_BF16):
                        m.next = "BFWR"
                    with m.Else():
                        m.d.sync += [Y[i].eq(imm) for i in range(L)]
                        m.d.sync += step.eq(0)
                        m.next = "EXEC"
            with m.State("RD2"):
                a2 = Mux(mode == T.SRC2_VECTOR, src2 + r * rw + j, src2 + (r >> 3))
                m.d.comb += [mem.valid.eq(1), mem.addr.eq(a2)]
                with m.If(mem.ready):
                    m.next = "RD2W"
            with m.State("RD2W"):
                with m.If(mem.rvalid):
                    with m.If(mode == T.SRC2_VECTOR):
                        m.d.sync += [Y[i].eq(mem.rdata[32 * i:32 * i + 32]) for i in range(L)]
                    with m.Else():
                        with m.Switch(r[:3]):
                            for k in range(L):
                                with m.Case(k):
                                    m.d.sync += [Y[i].eq(mem.rdata[32 * k:32 * k + 32])
                                                 for i in range(L)]
                    m.d.sync += step.eq(0)
                    m.next = "EXEC"
            with m.State("EXEC"):
                m.d.sync += step.eq(step + 1)
                for i in range(L):
                    x, y = X[i], Y[i]
                    with m.Switch(op):
                        with m.Case(T.TVP_ADD):
                            m.d.comb += [add_a[i].eq(x), add_b[i].eq(y)]
                            m.d.sync += Rr[i].eq(addr_[i])
                        with m.Case(T.TVP_SUB):
                            m.d.comb += [add_a[i].eq(x), add_b[i].eq(y ^ 0x80000000)]
                            m.d.sync += Rr[i].eq(addr_[i])
                        with m.Case(T.TVP_MUL):
                            m.d.comb += [mul_a[i].eq(x), mul_b[i].eq(y)]
                            m.d.sync += Rr[i].eq(mulr[i])
                        with m.Case(T.TVP_MAX):
                            m.d.sync += Rr[i].eq(fmax(x, y))
                        with m.Case(T.TVP_MIN):
                            m.d.sync += Rr[i].eq(fmin(x, y))
                        with m.Case(T.TVP_RELU):
                            pos = ~x[31] & (x[:31] != 0)
                            m.d.sync += Rr[i].eq(Mux(_is_nan(x), NAN, Mux(pos, x, 0)))
                        with m.Case(T.TVP_SCALE2):
                            m.d.comb += [mul_a[i].eq(x), mul_b[i].eq(two_imm)]
                            m.d.sync += Rr[i].eq(mulr[i])
                        with m.Case(T.TVP_COPY):
                            m.d.sync += Rr[i].eq(x)
                        with m.Case(T.TVP_EXP2):
                            with m.Switch(step):
                                with m.Case(0):
                                    m.d.comb += [add_a[i].eq(x),
                                                 add_b[i].eq(nf_comb[i] ^ 0x80000000)]
                                    m.d.sync += [F[i].eq(addr_[i]), Nn[i].eq(n_comb[i])]
                                with m.Case(1):
                                    m.d.comb += [add_a[i].eq(F[i]), add_b[i].eq(s8neg[i])]
                                    m.d.sync += [Tt[i].eq(addr_[i]), Ss[i].eq(s_comb[i])]
                                with m.Case(2):
                                    m.d.comb += [mul_a[i].eq(cf[i][4]), mul_b[i].eq(Tt[i])]
                                    m.d.sync += P[i].eq(mulr[i])
                                for k, st in ((3, 3), (5, 2), (7, 1), (9, 0)):
                                    with m.Case(k):
                                        m.d.comb += [add_a[i].eq(P[i]), add_b[i].eq(cf[i][st])]
                                        m.d.sync += P[i].eq(addr_[i])
                                with m.Case(4, 6, 8):
                                    m.d.comb += [mul_a[i].eq(P[i]), mul_b[i].eq(Tt[i])]
                                    m.d.sync += P[i].eq(mulr[i])
                                with m.Case(10):
                                    m.d.comb += [mul_a[i].eq(P[i]), mul_b[i].eq(two_n[i])]
                                    kx = _key(x)
                                    res = Mux(_is_nan(x), NAN,
                                              Mux(kx >= _key(Const(k128, 32)), INF,
                                                  Mux(kx < _key(Const(km149, 32)), 0,
                                                      mulr[i])))
                                    m.d.sync += Rr[i].eq(res)
                        with m.Case(T.TVP_RCP):
                            a = Cat(rcp_a[i], Const(0, 1))
                            with m.Switch(step):
                                for it in range(T.RCP_STEPS):
                                    yv = Mux(step == 0, (T.RCP_MAGIC - a)[:32], Y[i])
                                    with m.Case(3 * it):
                                        m.d.comb += [mul_a[i].eq(a), mul_b[i].eq(yv)]
                                        m.d.sync += [P[i].eq(mulr[i]), Y[i].eq(yv)]
                                    with m.Case(3 * it + 1):
                                        m.d.comb += [add_a[i].eq(_f32(2.0)),
                                                     add_b[i].eq(P[i] ^ 0x80000000)]
                                        m.d.sync += P[i].eq(addr_[i])
                                    with m.Case(3 * it + 2):
                                        m.d.comb += [mul_a[i].eq(Y[i]), mul_b[i].eq(P[i])]
                                        m.d.sync += Y[i].eq(mulr[i])
                                with m.Case(3 * T.RCP_STEPS):
                                    sg = x[31]
                                    res = Mux(_is_nan(x), NAN,
                                              Mux(rcp_a[i] < 0x00800000, Cat(Const(INF, 31), sg),
                                                  Mux(rcp_a[i] > 0x7E800000,
                                                      Cat(Const(0, 31), sg),
                                                      Y[i] | (sg << 31))))
                                    m.d.sync += Rr[i].eq(res)
                nsteps = Mux(op == T.TVP_EXP2, 11, Mux(op == T.TVP_RCP, 3 * T.RCP_STEPS + 1, 1))
                with m.If(step + 1 == nsteps):
                    m.next = "WR"
            with m.State("WR"):
                mask = Cat(*[Mux(lanes_valid[i], 0xF, 0) for i in range(L)])
                m.d.comb += [mem.valid.eq(1), mem.we.eq(1), mem.addr.eq(dst + r * rw + j),
                             mem.wdata.eq(Cat(*Rr)), mem.wmask.eq(mask)]
                with m.If(mem.ready):
                    finish_word("RD1")
            with m.State("BFWR"):
                half = j[0]
                bmask = Cat(*[Mux(lanes_valid[i], 0x3, 0) for i in range(L)])
                m.d.comb += [mem.valid.eq(1), mem.we.eq(1),
                             mem.addr.eq(dst + r * brw + (j >> 1)),
                             mem.wdata.eq(Mux(half, Cat(Const(0, 128), *bf), Cat(*bf))),
                             mem.wmask.eq(Mux(half, bmask << 16, bmask))]
                with m.If(mem.ready):
                    finish_word("RD1")
            # ---------------- row reductions ----------------
            with m.State("ROWINIT"):
                init = Mux(op == T.TVP_ROWSUM, 0x80000000, 0xFF800000)
                m.d.sync += [P[i].eq(init) for i in range(L)]
                m.next = "RD1"
            with m.State("ROWACC"):
                for i in range(L):
                    m.d.comb += [add_a[i].eq(P[i]), add_b[i].eq(X[i])]
                    res = Mux(op == T.TVP_ROWSUM, addr_[i], fmax(P[i], X[i]))
                    with m.If(lanes_valid[i]):
                        m.d.sync += P[i].eq(res)
                with m.If(j + 1 < rw):
                    m.d.sync += j.eq(j + 1)
                    m.next = "RD1"
                with m.Else():
                    m.d.sync += step.eq(0)
                    m.next = "TREE"
            with m.State("TREE"):
                m.d.sync += step.eq(step + 1)
                for lvl, width in enumerate((4, 2, 1)):
                    with m.If(step == lvl):
                        for k in range(width):
                            a, b = P[2 * k], P[2 * k + 1]
                            m.d.comb += [add_a[k].eq(a), add_b[k].eq(b)]
                            m.d.sync += P[k].eq(Mux(op == T.TVP_ROWSUM, addr_[k], fmax(a, b)))
                with m.If(step == 2):
                    m.next = "ROWWR"
            with m.State("ROWWR"):
                lane = r[:3]
                m.d.comb += [mem.valid.eq(1), mem.we.eq(1), mem.addr.eq(dst + (r >> 3)),
                             mem.wdata.eq(Cat(*([P[0]] * L))),
                             mem.wmask.eq(Const(0xF, 32) << (lane << 2))]
                with m.If(mem.ready):
                    m.d.sync += j.eq(0)
                    with m.If(last_row):
                        m.next = "FINISH"
                    with m.Else():
                        m.d.sync += r.eq(r + 1)
                        m.next = "ROWINIT"
            # ---------------- quantize ----------------
            # j = block within the row, q = word within the block (0..3)
            with m.State("Q1"):
                m.d.sync += [amax.eq(0), qspecial.eq(0), q.eq(0)]
                m.next = "Q1RD"
            for pas in (1, 2):
                with m.State(f"Q{pas}RD"):
                    m.d.comb += [mem.valid.eq(1), mem.addr.eq(row_base + (j << 2) + q)]
                    with m.If(mem.ready):
                        m.d.comb += self.word.eq(1)
                        m.next = f"Q{pas}W"
                with m.State(f"Q{pas}W"):
                    with m.If(mem.rvalid):
                        m.d.sync += [X[i].eq(mem.rdata[32 * i:32 * i + 32]) for i in range(L)]
                        m.next = f"Q{pas}ACC"
                with m.State(f"Q{pas}ACC"):
                    if pas == 1:
                        mx = amax
                        sp = qspecial
                        for i in range(L):
                            a = X[i][:31]
                            special = a >= INF
                            nmx = Signal(31, name=f"amax_l{i}")
                            m.d.comb += nmx.eq(Mux(~special & (a > mx), a, mx))
                            mx = nmx
                            sp = sp | special
                        m.d.sync += [amax.eq(mx), qspecial.eq(sp)]
                        with m.If(q == 3):
                            m.d.sync += q.eq(0)
                            m.next = "QX"
                        with m.Else():
                            m.d.sync += q.eq(q + 1)
                            m.next = "Q1RD"
                    else:
                        with m.If(qf == 2):
                            for k in range(4):
                                with m.If(q == k):
                                    m.d.sync += codes[32 * k:32 * k + 32].eq(
                                        Cat(*[qcodes[i][:4] for i in range(L)]))
                        with m.Else():
                            for k in range(4):
                                with m.If(q == k):
                                    m.d.sync += codes[64 * k:64 * k + 64].eq(Cat(*qcodes))
                        with m.If(q == 3):
                            m.next = "QWC"
                        with m.Else():
                            m.d.sync += q.eq(q + 1)
                            m.next = "Q2RD"
            with m.State("QX"):
                m.d.sync += qX.eq(xcl)
                m.next = "Q2RD"
            with m.State("QWC"):
                e2 = qf == 2
                cw = Mux(qspecial, 0, codes)
                m.d.comb += [mem.valid.eq(1), mem.we.eq(1),
                             mem.addr.eq(dst + r * qrw + Mux(e2, j >> 1, j)),
                             mem.wdata.eq(Mux(e2 & j[0], cw << 128, cw)),
                             mem.wmask.eq(Mux(e2, Mux(j[0], 0xFFFF0000, 0x0000FFFF),
                                              0xFFFFFFFF))]
                with m.If(mem.ready):
                    m.next = "QWS"
            with m.State("QWS"):
                sc = Mux(qspecial, 0xFF, (qX + 127)[:8])
                m.d.comb += [mem.valid.eq(1), mem.we.eq(1),
                             mem.addr.eq(src2 + r * srw + (j >> 5)),
                             mem.wdata.eq(Cat(*([sc] * 32))),
                             mem.wmask.eq(Const(1, 32) << j[:5])]
                with m.If(mem.ready):
                    with m.If(j + 1 < nblocks):
                        m.d.sync += j.eq(j + 1)
                        m.next = "Q1"
                    with m.Elif(~last_row):
                        m.d.sync += [j.eq(0), r.eq(r + 1)]
                        m.next = "Q1"
                    with m.Else():
                        m.next = "FINISH"
            with m.State("FINISH"):
                m.d.comb += self.done.eq(1)
                m.d.sync += busy.eq(0)
                m.next = "IDLE"
        return m
