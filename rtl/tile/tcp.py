"""Tile control processor (TCP): fetches 32-byte command descriptors from TSRAM and runs them.

In order: FETCH (one TSRAM word) -> EXEC (checks, then dispatch or local op). Unit commands
(MATMUL -> TTU, TVP -> TVP, DMA -> tile DMA) go to a per-unit slot; a slot launches its command when the
unit is idle and, if the command waits on a semaphore, a token is available (the slot
takes it); when the unit finishes, the slot signals the command's semaphore and frees
itself. Meanwhile the TCP goes on with the next command, so units overlap. SEM_WAIT /
SEM_SIGNAL / BARRIER / NOP / END run in the TCP. Token takes in one cycle are granted in
the order TTU slot, TVP slot, TCP.

Errors: EXEC checks every descriptor (spec.tile, order as golden.tile.check_command); a
failing command is not run: the TCP waits for the slots to drain and stops in ST_ERROR
with the error code and the command index. A DMA command that finishes with a DMA error
(``dma_err``) does not signal or retire; the TCP stops the list with ERR_DMA | code and the
DMA command's index, drops unit commands still waiting in their slots and drains the
running ones. ``start`` runs a new list from any state but RUNNING.
"""

from __future__ import annotations

from amaranth import Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from rtl.tile.tsram import WORD_BITS, tsram_port
from spec import tile as T

__all__ = ["TCP"]

UNITS = ("ttu", "tvp", "dma")


def _f(word, lo, width):
    return word[lo:lo + width]


class TCP(wiring.Component):
    """Command sequencer with hardware semaphores.

    Ports: ``start`` / ``cmd_addr`` (byte address of the list), ``state``, ``error``,
    ``index``, ``retired`` (pulse per retired command), ``stall`` (EXEC or drain cycle that
    could not proceed); ``fetch`` TSRAM lane; per unit ``<u>_start`` (pulse), ``<u>_desc``
    (the descriptor, stable while the unit runs), ``<u>_busy``, ``<u>_done``.
    """

    def __init__(self, cfg: T.TileConfig, addr_width: int):
        self._cfg = cfg
        self._aw = addr_width
        ports = {"start": In(1), "cmd_addr": In(32), "state": Out(2), "error": Out(8),
                 "index": Out(16), "retired": Out(2), "stall": Out(1), "running": Out(1),
                 "fetch": Out(tsram_port(addr_width)),
                 "sems": Out(8 * cfg.n_sems)}
        for u in UNITS:
            ports[f"{u}_start"] = Out(1)
            ports[f"{u}_desc"] = Out(WORD_BITS)
            ports[f"{u}_busy"] = In(1)
            ports[f"{u}_done"] = In(1)
        ports["dma_err"] = In(8)      # valid with dma_done: spec.dma error code, 0 = OK
        super().__init__(ports)

    # ------------------------------------------------------------------ checks
    def _check(self, m, d):
        """Error code (comb) of descriptor ``d`` (256 bits), as golden.tile.check_command."""
        cfg = self._cfg
        words = cfg.words
        w = [d[32 * i:32 * i + 32] for i in range(8)]
        op = _f(w[0], 0, 8)
        extra = (w[0] & ~Const(0x1F1FFF, 32)) != 0
        wait_en, wait_sem = w[0][12], _f(w[0], 8, 4)
        sig_en, sig_sem = w[0][20], _f(w[0], 16, 4)
        implemented = Cat(*[op == o for o in T.IMPLEMENTED_OPCODES]).any()
        unit = Cat(*[op == o for o in T.UNIT_OPCODES]).any()
        ns = cfg.n_sems
        err = Signal(8, name="chk_err")

        def wds(v):   # ceil(bytes / 32) of a byte count
            return (v + 31) >> 5

        def fits(addr, nwords):
            return (addr[5:] + nwords) <= words

        def aligned(addr):
            return addr[:5] == 0

        # MATMUL
        M, N, K = _f(w[6], 0, 16), _f(w[6], 16, 16), _f(w[7], 0, 16)
        fa, fb = _f(w[7], 16, 2), _f(w[7], 18, 2)
        nb = K[5:]
        aw = Mux(fa == 2, (nb + 1) >> 1, nb)
        bw = Mux(fb == 2, (nb + 1) >> 1, nb)
        sw = (nb + 31) >> 5
        cp = (N + 7) >> 3
        mm_addrs = (w[1], w[2], w[3], w[4], w[5])
        mm_sizes = (M * aw, M * sw, N * bw, N * sw, M * cp)
        # TVP
        top = _f(w[6], 0, 8)
        mode = _f(w[6], 8, 2)
        qf = _f(w[6], 12, 2)
        rows, n = _f(w[5], 0, 16), _f(w[5], 16, 16)
        binary = Cat(*[top == o for o in T.TVP_BINARY]).any()
        elem = Cat(*[top == o for o in T.TVP_ELEMENTWISE]).any()
        rowop = Cat(*[top == o for o in T.TVP_ROW]).any()
        imm = w[4].as_signed()
        src_w = rows * ((n + 7) >> 3)
        vec_w = (rows + 7) >> 3
        q_w = rows * Mux(qf == 2, (n + 63) >> 6, (n + 31) >> 5)
        qs_w = rows * ((n + 1023) >> 10)
        bf_w = rows * ((n + 15) >> 4)
        # (address, words, used) of every TVP region, as golden.tile.tvp_regions
        tv = [(w[1], src_w, 1),
              (w[2], src_w, binary & (mode == T.SRC2_VECTOR)),
              (w[2], vec_w, binary & (mode == T.SRC2_ROW)),
              (w[3], src_w, elem), (w[3], vec_w, rowop),
              (w[3], q_w, top == T.TVP_QUANT), (w[2], qs_w, top == T.TVP_QUANT),
              (w[3], bf_w, top == T.TVP_BF16)]

        with m.If(~implemented | extra):
            m.d.comb += err.eq(T.ERR_BAD_OPCODE)
        with m.Elif(~unit & (wait_en | sig_en | (wait_sem != 0) | (sig_sem != 0))):
            m.d.comb += err.eq(T.ERR_BAD_OPCODE)
        with m.Elif(unit & ((wait_en & (wait_sem >= ns)) | (sig_en & (sig_sem >= ns)))):
            m.d.comb += err.eq(T.ERR_BAD_SEM)
        with m.Elif((op == T.OP_SEM_WAIT) | (op == T.OP_SEM_SIGNAL)):
            with m.If((w[1] >= ns) | (w[2] == 0) | (w[2] > 255)):
                m.d.comb += err.eq(T.ERR_BAD_SEM)
        with m.Elif(op == T.OP_DMA):
            with m.If(w[1][:6] != 0):
                m.d.comb += err.eq(T.ERR_ADDR_ALIGN)
            with m.Elif(w[1] + T.DMA_DESC_BYTES > cfg.tsram_bytes):
                m.d.comb += err.eq(T.ERR_ADDR_RANGE)
        with m.Elif(op == T.OP_MATMUL):
            with m.If((fa > 2) | (fb > 2)):
                m.d.comb += err.eq(T.ERR_BAD_FORMAT)
            with m.Elif((M == 0) | (N == 0) | (K == 0) | (K[:5] != 0) | (K > cfg.max_k)):
                m.d.comb += err.eq(T.ERR_BAD_SHAPE)
            with m.Elif(~Cat(*[aligned(a) for a in mm_addrs]).all()):
                m.d.comb += err.eq(T.ERR_ADDR_ALIGN)
            with m.Elif(~Cat(*[fits(a, s) for a, s in zip(mm_addrs, mm_sizes)]).all()):
                m.d.comb += err.eq(T.ERR_ADDR_RANGE)
        with m.Elif(op == T.OP_TVP):
            with m.If((top >= len(T.TVP_OPS)) | (binary & (mode == 3))):
                m.d.comb += err.eq(T.ERR_BAD_TVP_OP)
            with m.Elif((top == T.TVP_SCALE2) & ((imm < T.SCALE2_MIN) | (imm > T.SCALE2_MAX))):
                m.d.comb += err.eq(T.ERR_BAD_TVP_OP)
            with m.Elif((top == T.TVP_QUANT) & (qf > 2)):
                m.d.comb += err.eq(T.ERR_BAD_FORMAT)
            with m.Elif((rows == 0) | (n == 0) | ((top == T.TVP_QUANT) & (n[:5] != 0))):
                m.d.comb += err.eq(T.ERR_BAD_SHAPE)
            with m.Elif(~Cat(*[~u | aligned(a) for a, _, u in tv]).all()):
                m.d.comb += err.eq(T.ERR_ADDR_ALIGN)
            with m.Elif(~Cat(*[~u | fits(a, s) for a, s, u in tv]).all()):
                m.d.comb += err.eq(T.ERR_ADDR_RANGE)
        return err

    # ------------------------------------------------------------------ main
    def elaborate(self, platform):
        m = Module()
        cfg = self._cfg
        ns = cfg.n_sems
        S_IDLE, S_FETCH, S_WAIT, S_EXEC, S_DRAIN = range(5)
        fsm = Signal(3, init=S_IDLE)
        state = Signal(2, init=T.ST_IDLE)
        error = Signal(8)
        index = Signal(16)
        base = Signal(27)
        desc = Signal(WORD_BITS)
        m.d.comb += [self.state.eq(state), self.error.eq(error), self.index.eq(index),
                     self.running.eq(state == T.ST_RUNNING)]
        sems = [Signal(8, name=f"sem{i}") for i in range(ns)]
        m.d.comb += self.sems.eq(Cat(*sems))

        # unit slots
        slot = {}
        for u in UNITS:
            s = {"pending": Signal(name=f"{u}_pending"), "running": Signal(name=f"{u}_running"),
                 "desc": Signal(WORD_BITS, name=f"{u}_slot_desc")}
            slot[u] = s
            m.d.comb += getattr(self, f"{u}_desc").eq(s["desc"])

        # tile-DMA failure: latched when the DMA slot finishes with an error
        fail = Signal()
        fail_err = Signal(8)
        fail_idx = Signal(16)
        dma_idx = Signal(16)
        dma_ok = self.dma_err == 0

        # semaphore token arbitration: TTU slot, TVP slot, DMA slot, TCP
        take = {}      # (who) -> (signal want, sem index, amount)
        retire_units = []
        inc = [[] for _ in range(ns)]
        dec = [[] for _ in range(ns)]
        used = [Const(0, 9) for _ in range(ns)]
        for u in UNITS:
            s = slot[u]
            d0 = s["desc"][:32]
            wen, wsem = d0[12], d0[8:12]
            sen, ssem = d0[20], d0[16:20]
            launch = Signal(name=f"{u}_launch")
            idle = ~getattr(self, f"{u}_busy")
            ok_tok = Signal(name=f"{u}_tok_ok")
            for i in range(ns):
                hit = wen & (wsem == i)
                with m.If(hit & (sems[i] > used[i])):
                    m.d.comb += ok_tok.eq(1)
                new_used = Signal(9, name=f"used_{u}_{i}")
                m.d.comb += new_used.eq(used[i] + (launch & hit))
                used[i] = new_used
                dec[i].append(launch & hit)
                ok = dma_ok if u == "dma" else 1
                inc[i].append(getattr(self, f"{u}_done") & s["running"] & sen & (ssem == i)
                              & ok)
            m.d.comb += [launch.eq(s["pending"] & ~s["running"] & idle & (~wen | ok_tok)
                                   & ~fail),
                         getattr(self, f"{u}_start").eq(launch)]
            with m.If(launch):
                m.d.sync += [s["pending"].eq(0), s["running"].eq(1)]
            fin = getattr(self, f"{u}_done") & s["running"]
            with m.If(fin):
                m.d.sync += s["running"].eq(0)
            with m.If(fail & s["pending"] & ~s["running"]):
                m.d.sync += s["pending"].eq(0)      # dropped: the list stopped on a DMA error
            if u == "dma":
                with m.If(fin & ~dma_ok):
                    m.d.sync += [fail.eq(1), fail_err.eq(T.ERR_DMA | self.dma_err[:4]),
                                 fail_idx.eq(dma_idx)]
                fin = fin & dma_ok
            retire_units.append(fin)
            take[u] = launch
        slots_free = {u: ~slot[u]["pending"] & ~slot[u]["running"] for u in UNITS}
        all_free = slots_free["ttu"] & slots_free["tvp"] & slots_free["dma"]

        # TCP local ops
        w = [desc[32 * i:32 * i + 32] for i in range(8)]
        op = w[0][:8]
        chk = self._check(m, desc)
        tcp_retire = Signal()
        tcp_dec = Signal(8)
        tcp_inc = Signal(8)
        tcp_sem = Signal(range(max(ns, 2)))
        m.d.comb += tcp_sem.eq(w[1][:max(1, (ns - 1).bit_length())])
        sem_val = Signal(8)
        used_sel = Signal(9)
        with m.Switch(tcp_sem):
            for i in range(ns):
                with m.Case(i):
                    m.d.comb += [sem_val.eq(sems[i]), used_sel.eq(used[i])]
        stall = Signal()
        m.d.comb += self.stall.eq(stall)

        def next_cmd():
            m.d.sync += [index.eq(index + 1), fsm.eq(S_FETCH)]

        fetch = self.fetch
        waddr = Signal(28)
        m.d.comb += [waddr.eq(base + index), fetch.addr.eq(waddr), fetch.we.eq(0)]
        with m.Switch(fsm):
            with m.Case(S_IDLE):
                pass
            with m.Case(S_FETCH):
                with m.If(waddr >= cfg.words):
                    m.d.sync += [error.eq(T.ERR_CMD_RANGE), fsm.eq(S_DRAIN)]
                with m.Else():
                    m.d.comb += fetch.valid.eq(1)
                    with m.If(fetch.ready):
                        m.d.sync += fsm.eq(S_WAIT)
            with m.Case(S_WAIT):
                with m.If(fetch.rvalid):
                    m.d.sync += [desc.eq(fetch.rdata), fsm.eq(S_EXEC)]
            with m.Case(S_EXEC):
                with m.If(fail):
                    pass                     # the list stops on a DMA error (below)
                with m.Elif(chk != 0):
                    m.d.sync += [error.eq(chk), fsm.eq(S_DRAIN)]
                with m.Elif(op == T.OP_MATMUL):
                    with m.If(slots_free["ttu"]):
                        m.d.sync += [slot["ttu"]["pending"].eq(1), slot["ttu"]["desc"].eq(desc)]
                        next_cmd()
                    with m.Else():
                        m.d.comb += stall.eq(1)
                with m.Elif(op == T.OP_TVP):
                    with m.If(slots_free["tvp"]):
                        m.d.sync += [slot["tvp"]["pending"].eq(1), slot["tvp"]["desc"].eq(desc)]
                        next_cmd()
                    with m.Else():
                        m.d.comb += stall.eq(1)
                with m.Elif(op == T.OP_DMA):
                    with m.If(slots_free["dma"]):
                        m.d.sync += [slot["dma"]["pending"].eq(1), slot["dma"]["desc"].eq(desc),
                                     dma_idx.eq(index)]
                        next_cmd()
                    with m.Else():
                        m.d.comb += stall.eq(1)
                with m.Elif(op == T.OP_SEM_WAIT):
                    with m.If(sem_val >= used_sel + w[2][:8]):
                        m.d.comb += [tcp_dec.eq(w[2][:8]), tcp_retire.eq(1)]
                        next_cmd()
                    with m.Else():
                        m.d.comb += stall.eq(1)
                with m.Elif(op == T.OP_SEM_SIGNAL):
                    m.d.comb += [tcp_inc.eq(w[2][:8]), tcp_retire.eq(1)]
                    next_cmd()
                with m.Elif(op == T.OP_BARRIER):
                    with m.If(all_free):
                        m.d.comb += tcp_retire.eq(1)
                        next_cmd()
                    with m.Else():
                        m.d.comb += stall.eq(1)
                with m.Elif(op == T.OP_END):
                    m.d.sync += fsm.eq(S_DRAIN)
                with m.Else():  # NOP
                    m.d.comb += tcp_retire.eq(1)
                    next_cmd()
            with m.Case(S_DRAIN):
                with m.If(all_free):
                    m.d.sync += [fsm.eq(S_IDLE),
                                 state.eq(Mux((error != 0) | fail, T.ST_ERROR, T.ST_DONE))]
                    with m.If((error == 0) & ~fail):
                        m.d.comb += tcp_retire.eq(1)   # END retires
                with m.Else():
                    m.d.comb += stall.eq(1)
                with m.If(fail & (error == 0)):      # a DMA error while draining after END
                    m.d.sync += [error.eq(fail_err), index.eq(fail_idx)]
        # a DMA error stops the list (first error wins); running units drain
        with m.If(fail & (error == 0) & ((fsm == S_FETCH) | (fsm == S_WAIT) | (fsm == S_EXEC))):
            m.d.sync += [error.eq(fail_err), index.eq(fail_idx), fsm.eq(S_DRAIN)]

        # semaphore update
        for i in range(ns):
            here = tcp_sem == i
            delta = Signal(signed(11), name=f"sem_delta{i}")
            m.d.comb += delta.eq(sum(inc[i]) - sum(dec[i]) + Mux(here, tcp_inc, 0)
                                 - Mux(here, tcp_dec, 0))
            m.d.sync += sems[i].eq(sems[i] + delta)
        m.d.comb += self.retired.eq(tcp_retire + sum(retire_units))

        with m.If(self.start & (state != T.ST_RUNNING)):
            m.d.sync += [state.eq(T.ST_RUNNING), error.eq(0), index.eq(0),
                         base.eq(self.cmd_addr[5:])]
            m.d.sync += [s.eq(0) for s in sems]
            m.d.sync += fail.eq(0)
            with m.If(self.cmd_addr[:5] != 0):
                m.d.sync += [error.eq(T.ERR_ADDR_ALIGN), fsm.eq(S_DRAIN)]
            with m.Else():
                m.d.sync += fsm.eq(S_FETCH)
        return m
