"""Command processor + host interface: AXI4-Lite CSRs, host queues in HBM, dispatch to the
cluster DMAs and tiles, completion tracking, per-queue errors, counters and interrupts."""

from __future__ import annotations

from amaranth import Array, Cat, Const, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from rtl.axi import BURST_INCR, RESP_OKAY, RESP_SLVERR, AXI4LiteSignature, AXI4Signature
from rtl.tile.tsram import WORD_BITS
from spec import chip as C
from spec import dma as D
from spec import tile as T

__all__ = ["CommandProcessor", "ClusterLinkSignature", "dma_csr_addr_width"]


def dma_csr_addr_width(cfg: C.ChipConfig) -> int:
    """Address bits of the shared cluster-DMA CSR bus: a DMA's CSR address
    (spec.dma.CSR_ADDR_WIDTH bits) with the cluster index above it."""
    return D.CSR_ADDR_WIDTH + max(1, (cfg.clusters - 1).bit_length())


class ClusterLinkSignature(wiring.Signature):
    """The command processor's one link to every cluster (CP view; docs/chip.md "CP and
    clusters"). Its width does not depend on the number of clusters or tiles: the chip top
    sends every ``Out`` member to every cluster unchanged and ORs the clusters' ``In``
    members together; a cluster drives zeros on them unless it is the one selected.

    Indices are global: tile ``c * tiles + t``, semaphore ``c * n_sems + s``.

    * ``dma``: AXI4-Lite to the cluster DMAs' CSRs, ``awaddr``/``araddr`` = cluster index
      above the spec.dma CSR address (``dma_csr_addr_width``). One transaction at a time;
      the CP holds the address until the response (W goes to the cluster named by awaddr).
    * ``tile_start`` (pulse), ``tile_sel``, ``tile_cmd``: start tile ``tile_sel`` on the
      command list at ``tile_cmd``.
    * ``st_sel`` -> ``st_status``, ``st_macs`` (64-bit), ``st_ttu_busy``: the status word
      and counters of tile ``st_sel``, combinationally (same cycle).
    * ``sem_sel`` -> ``sem_value`` (the FSM's SEM_WAIT), ``hsem_sel`` -> ``hsem_value``
      (host CSR reads): semaphore values, combinationally; an index past the last
      semaphore reads 0.
    * ``take`` (pulse), ``take_count``: subtract ``take_count`` from semaphore ``sem_sel``.
    """

    def __init__(self, cfg: C.ChipConfig):
        if not isinstance(cfg, C.ChipConfig):
            raise TypeError(f"cfg: must be a spec.chip.ChipConfig, got {type(cfg).__name__}")
        self._cfg = cfg
        tiles = range(max(2, cfg.n_tiles))
        sems = range(max(2, cfg.clusters * cfg.n_sems))
        super().__init__({
            "dma": Out(AXI4LiteSignature(addr_width=dma_csr_addr_width(cfg), data_width=32)),
            "tile_start": Out(1), "tile_sel": Out(tiles), "tile_cmd": Out(32),
            "st_sel": Out(tiles), "st_status": In(32), "st_macs": In(64),
            "st_ttu_busy": In(32),
            "sem_sel": Out(sems), "sem_value": In(8), "hsem_sel": Out(sems),
            "hsem_value": In(8), "take": Out(1), "take_count": Out(8),
        })

    cfg = property(lambda self: self._cfg)

    def __eq__(self, other):
        return isinstance(other, ClusterLinkSignature) and self._cfg == other._cfg

    def __hash__(self):
        return hash((ClusterLinkSignature, self._cfg))

    def __repr__(self):
        return f"ClusterLinkSignature({self._cfg.name!r})"


class CommandProcessor(wiring.Component):
    """The chip's command processor (CP) and host CSR block (docs/chip.md).

    At reset the CP programs every cluster DMA's address windows (HBM, CSRAM, TSRAMs) over
    its AXI4-Lite ports, then sets STATUS.ready. After that it alternates between polling
    one dispatched unit (round-robin) and taking one step on one host queue (round-robin):
    an entry is fetched from HBM into the queue's entry register (one 256-bit beat on
    ``m_axi``), checked (spec.chip.check_entry), and executed:

    * DMA: when the channel is idle, write its HEAD and DOORBELL (asynchronous).
    * TILE: when the tile is idle, pulse its ``start`` with the list address (asynchronous).
    * FENCE: retires when no unit dispatched by this queue is in flight.
    * SEM_WAIT: retires when the cluster semaphore >= count, subtracting count.
    * NOP: retires at once.
    * COLLECTIVE (only with NIC ports): when the collective engine (rtl.chip.collective) is
      idle, start it on the entry (asynchronous, one more unit; its static checks are the
      engine's ``coll_check``; REG_TRAY_RANK feeds ``coll_rank``/``coll_two_trays``).

    An entry that cannot proceed stays in its register and the CP moves on to other
    queues (queues never block each other). A dispatched DMA chain or tile list retires
    when the poll sees it finished; an error is charged to the queue that dispatched it.

    Ports
    -----
    s_axil : host AXI4-Lite (12-bit addresses, spec.chip CSR map).
    m_axi : AXI4 manager to HBM (queue entries; reads only, one beat per entry).
    clusters : Out(ClusterLinkSignature(cfg)), the link to every cluster: DMA CSR bus, tile
        start, selected tile status and counters, selected semaphores, semaphore take. Its
        width grows only with the logarithm of the cluster and tile counts.
    irq : Out(1), ``IRQ_STATUS & IRQ_ENABLE != 0``.
    """

    def __init__(self, cfg: C.ChipConfig, id_width: int = 1):
        if not isinstance(cfg, C.ChipConfig):
            raise TypeError(f"cfg: must be a spec.chip.ChipConfig, got {type(cfg).__name__}")
        self._cfg = cfg
        ports = {
            "s_axil": In(AXI4LiteSignature(addr_width=C.CSR_ADDR_WIDTH, data_width=32)),
            "m_axi": Out(AXI4Signature(addr_width=32, data_width=WORD_BITS,
                                       id_width=id_width)),
            "irq": Out(1),
        }
        if cfg.nic_ports:
            ports["nic_idle"] = In(cfg.nic_ports)     # STATUS bit 2: every NIC port idle
            ports["nic_cq"] = In(cfg.nic_ports)       # a CQE written: IRQ_STATUS bit 16 + p
            # the collective engine (rtl.chip.collective; docs/tray.md): the entry and its
            # static check, the start pulse, busy, the result; REG_TRAY_RANK
            ports.update({"coll_entry": Out(WORD_BITS), "coll_check": In(8),
                          "coll_start": Out(1), "coll_busy": In(1), "coll_err": In(8),
                          "coll_detail": In(32), "coll_rank": Out(3), "coll_two_trays": Out(1),
                          # REG_TRAY_RESYNC (docs/tray.md "After an error")
                          "coll_resync": Out(1), "coll_resync_mask": Out(8),
                          "coll_resync_seq": Out(1), "coll_resync_ok": In(1),
                          "coll_seq": In(16)})
        ports["clusters"] = Out(ClusterLinkSignature(cfg))
        super().__init__(ports)

    cfg = property(lambda self: self._cfg)

    def elaborate(self, platform):  # noqa: C901 - one FSM, kept in one place on purpose
        m = Module()
        cfg = self._cfg
        NC, NT, NCH, NQ, NS = cfg.clusters, cfg.tiles, cfg.dma_channels, cfg.queues, cfg.n_sems
        n_dma, n_tile = NC * NCH, NC * NT
        n_units = n_dma + n_tile
        coll_u = n_units              # the collective engine: the last unit (NIC ports only)
        if cfg.nic_ports:
            n_units += 1

        # ---------------- per-queue state ----------------
        def qarr(name, width, init=0):
            return Array(Signal(width, name=f"q{q}_{name}", init=init) for q in range(NQ))
        q_ring, q_size, q_tail, q_head = qarr("ring", 32), qarr("size", 16), qarr("tail", 16), \
            qarr("head", 16)
        q_seq, q_err, q_err_seq, q_err_detail = qarr("seq", 32), qarr("err", 8), \
            qarr("err_seq", 32), qarr("err_detail", 32)
        q_err_count, q_done = qarr("err_count", 32), qarr("done", 32)
        q_cached, q_entry = qarr("cached", 1), qarr("entry", WORD_BITS)
        # IRQ_STATUS: bits 2q, 2q+1 per queue; NIC port p at IRQ_NIC_BASE + p (if any)
        NIRQ = C.IRQ_NIC_BASE + cfg.nic_ports if cfg.nic_ports else 2 * NQ
        irq_status, irq_enable = Signal(NIRQ), Signal(NIRQ)
        cycles, busy_cycles = Signal(32), Signal(32)
        dma_disp, tile_disp, macs, ttu_busy = Signal(32), Signal(32), Signal(64), Signal(32)
        ready = Signal()

        # ---------------- per-unit state (DMA channels first, then tiles) ----------------
        # in flight and owner are flops (every queue's pending bit reads all of them); the
        # dispatching entry's sequence number, irq flag and owner are also kept in a unit
        # table (a memory, read for the unit being completed: always cur_u), so maia200's
        # 1,280 units do not become 1,280 x 36 flops with wide multiplexers
        u_fly = Signal(n_units, name="u_fly")
        u_owner = Array(Signal(range(max(2, NQ)), name=f"u{u}_owner") for u in range(n_units))
        qbits = max(1, (NQ - 1).bit_length())
        m.submodules.unit_table = utab = Memory(shape=33 + qbits, depth=max(2, n_units),
                                                init=[])
        ut_w, ut_r = utab.write_port(), utab.read_port(domain="comb")
        disp_en, disp_u = Signal(), Signal(range(max(2, n_units)))
        done_en = Signal()

        link = self.clusters     # selected tile status / semaphores come back on it

        pending = Signal(NQ)
        for q in range(NQ):
            # a reduction, not a chain of ORs: maia200 has 640 tiles (expression depth)
            owned = Cat(u_fly[u] & (u_owner[u] == q) for u in range(n_units)).any()
            m.d.comb += pending[q].eq((q_head[q] != q_tail[q]) | owned)
        m.d.sync += [cycles.eq(cycles + 1), busy_cycles.eq(busy_cycles + pending.any())]
        m.d.comb += self.irq.eq((irq_status & irq_enable).any())

        # error / retire helpers (the FSM does at most one of each per cycle)
        rec = {"en": Signal(name="rec_en"), "q": Signal(range(max(2, NQ)), name="rec_q"),
               "seq": Signal(32, name="rec_seq"), "code": Signal(8, name="rec_code"),
               "detail": Signal(32, name="rec_detail")}
        ret = {"en": Signal(name="ret_en"), "q": Signal(range(max(2, NQ)), name="ret_q"),
               "irq": Signal(name="ret_irq")}
        adv = {"en": Signal(name="adv_en"), "q": Signal(range(max(2, NQ)), name="adv_q")}
        irq_set = Signal(NIRQ)
        with m.If(rec["en"]):
            q = rec["q"]
            with m.If((q_err_count[q] == 0) | (rec["seq"] < q_err_seq[q])):
                m.d.sync += [q_err[q].eq(rec["code"]), q_err_seq[q].eq(rec["seq"]),
                             q_err_detail[q].eq(rec["detail"])]
            m.d.sync += q_err_count[q].eq(q_err_count[q] + 1)
        with m.If(ret["en"]):
            m.d.sync += q_done[ret["q"]].eq(q_done[ret["q"]] + 1)
        for q in range(NQ):
            m.d.comb += [irq_set[2 * q].eq(ret["en"] & ret["irq"] & (ret["q"] == q)),
                         irq_set[2 * q + 1].eq(rec["en"] & (rec["q"] == q))]
        if cfg.nic_ports:
            # NIC port p wrote a completion (send or receive CQE)
            m.d.comb += irq_set[C.IRQ_NIC_BASE:].eq(self.nic_cq)
        with m.If(adv["en"]):
            q = adv["q"]
            m.d.sync += [q_head[q].eq(Mux(q_head[q] + 1 >= q_size[q], 0, q_head[q] + 1)),
                         q_seq[q].eq(q_seq[q] + 1), q_cached[q].eq(0)]

        # ---------------- AXI4-Lite manager to the cluster DMAs ----------------
        ax_go, ax_we = Signal(), Signal()
        ax_c = Signal(range(max(2, NC)))
        ax_addr, ax_wdata, ax_rdata = Signal(D.CSR_ADDR_WIDTH), Signal(32), Signal(32)
        ax_done = Signal()
        sel = link.dma      # one bus; the cluster index sits above the DMA's CSR address
        m.d.comb += [sel.awaddr.eq(Cat(ax_addr, ax_c)), sel.araddr.eq(Cat(ax_addr, ax_c)),
                     sel.wdata.eq(ax_wdata), sel.wstrb.eq(0xF), sel.awprot.eq(0),
                     sel.arprot.eq(0)]
        aw_ok, w_ok = Signal(), Signal()
        with m.FSM(name="axil"):
            with m.State("IDLE"):
                with m.If(ax_go):
                    m.d.sync += [aw_ok.eq(0), w_ok.eq(0)]
                    with m.If(ax_we):
                        m.next = "WRITE"
                    with m.Else():
                        m.next = "READ"
            with m.State("WRITE"):
                m.d.comb += [sel.awvalid.eq(~aw_ok), sel.wvalid.eq(~w_ok)]
                with m.If(sel.awready):
                    m.d.sync += aw_ok.eq(1)
                with m.If(sel.wready):
                    m.d.sync += w_ok.eq(1)
                with m.If((aw_ok | sel.awready) & (w_ok | sel.wready)):
                    m.next = "BRESP"
            with m.State("BRESP"):
                m.d.comb += sel.bready.eq(1)
                with m.If(sel.bvalid):
                    m.next = "DONE"
            with m.State("READ"):
                m.d.comb += sel.arvalid.eq(1)
                with m.If(sel.arready):
                    m.next = "RRESP"
            with m.State("RRESP"):
                m.d.comb += sel.rready.eq(1)
                with m.If(sel.rvalid):
                    m.d.sync += ax_rdata.eq(sel.rdata)
                    m.next = "DONE"
            with m.State("DONE"):
                m.d.comb += ax_done.eq(1)
                m.next = "IDLE"

        # ---------------- HBM reads of queue entries ----------------
        hb = self.m_axi
        m.d.comb += [hb.arid.eq(0), hb.arlen.eq(0), hb.arsize.eq(5), hb.arburst.eq(BURST_INCR),
                     hb.arcache.eq(0b0011), hb.arlock.eq(0), hb.arprot.eq(0),
                     hb.awvalid.eq(0), hb.wvalid.eq(0), hb.bready.eq(1), hb.awid.eq(0),
                     hb.awaddr.eq(0), hb.awlen.eq(0), hb.awsize.eq(5), hb.awburst.eq(BURST_INCR),
                     hb.awcache.eq(0), hb.awlock.eq(0), hb.awprot.eq(0), hb.wdata.eq(0),
                     hb.wstrb.eq(0), hb.wlast.eq(0)]

        # ---------------- tile and semaphore outputs ----------------
        # (tile_start / tile_sel / tile_cmd are driven by the EXEC state below; take applies
        # to the semaphore named by sem_sel, the entry's cluster and unit)

        # ---------------- main FSM ----------------
        init_c = Signal(range(max(2, NC)))
        init_k = Signal(range(2 * (2 + NT) + 1))
        win_regs = []   # (register, value-for-cluster-0, per-cluster increment)
        for k, (base, size) in enumerate(cfg.dma_windows(0)):
            inc = 0 if k == 0 else cfg.cluster_stride
            win_regs.append((D.win_base_reg(k), base, inc))
            win_regs.append((D.win_size_reg(k), size, 0))
        poll = Signal(range(max(2, n_units)))
        qp = Signal(range(max(2, NQ)))
        phase = Signal()
        cur_u = Signal(range(max(2, n_units)))
        cur_q = Signal(range(max(2, NQ)))
        ent = Signal(WORD_BITS)
        w = [ent[32 * i:32 * i + 32] for i in range(8)]
        op, ecl, eun, eirq = w[0][0:8], w[0][8:16], w[0][16:20], w[0][20]
        arg = w[1]
        seqv = Signal(32)

        # static entry check (spec.chip.check_entry)
        chk = Signal(8)
        uses_arg = (op == C.OP_DMA) | (op == C.OP_TILE) | (op == C.OP_SEM_WAIT) | (op == C.OP_WAIT)
        unused_nz = (Cat(*w[2:]) != 0) | (~uses_arg & (arg != 0))
        limit = Mux((op == C.OP_DMA) | ((op == C.OP_WAIT) & (arg == C.WAIT_DMA)), NCH,
                    Mux((op == C.OP_TILE) | (op == C.OP_WAIT), NT, NS))
        lo = Signal(33)
        m.d.comb += lo.eq(cfg.local_base + ecl * cfg.cluster_stride)
        dma_addr_ok = (arg[:6] == 0) & ((arg + D.DESC_BYTES <= cfg.hbm_window)
                                       | ((arg >= lo) & (arg < lo + cfg.cluster_stride)))
        tile_addr_ok = (arg[:5] == 0) & (arg < cfg.tile.tsram_bytes)
        with m.If(op > C.OP_WAIT):
            m.d.comb += chk.eq(C.ERR_BAD_OPCODE)
        with m.Elif((w[0] & C.W0_RESERVED_MASK != 0) | unused_nz):
            m.d.comb += chk.eq(C.ERR_BAD_ENTRY)
        with m.Elif((op == C.OP_NOP) | (op == C.OP_FENCE)):
            m.d.comb += chk.eq(Mux((ecl != 0) | (eun != 0), C.ERR_BAD_UNIT, 0))
        with m.Elif((op == C.OP_SEM_WAIT) & ((arg == 0) | (arg > 255))):
            m.d.comb += chk.eq(C.ERR_BAD_ENTRY)
        with m.Elif((op == C.OP_WAIT) & (arg > C.WAIT_TILE)):
            m.d.comb += chk.eq(C.ERR_BAD_ENTRY)
        with m.Elif((ecl >= NC) | (eun >= limit)):
            m.d.comb += chk.eq(C.ERR_BAD_UNIT)
        with m.Elif((op == C.OP_DMA) & ~dma_addr_ok):
            m.d.comb += chk.eq(C.ERR_BAD_ADDRESS)
        with m.Elif((op == C.OP_TILE) & ~tile_addr_ok):
            m.d.comb += chk.eq(C.ERR_BAD_ADDRESS)
        if cfg.nic_ports:   # COLLECTIVE: the engine's checks (spec.tray.check_chip)
            tray_rank = Signal(4)
            m.d.comb += [self.coll_entry.eq(ent), self.coll_rank.eq(tray_rank[:3]),
                         self.coll_two_trays.eq(tray_rank[3])]
            with m.If(op == C.OP_COLLECTIVE):
                m.d.comb += chk.eq(self.coll_check)

        dma_u = Signal(range(max(2, n_units)))
        tile_u = Signal(range(max(2, n_tile)))
        m.d.comb += [dma_u.eq(ecl * NCH + eun), tile_u.eq(ecl * NT + eun),
                     link.tile_sel.eq(tile_u), link.tile_cmd.eq(arg),
                     link.st_sel.eq(cur_u - n_dma)]
        owned_by_cur = Cat(u_fly[u] & (u_owner[u] == cur_q) for u in range(n_units)).any()
        m.d.comb += link.sem_sel.eq(ecl * NS + eun)
        sem_val = link.sem_value
        fetch_addr = Signal(33)
        m.d.comb += fetch_addr.eq(Cat(Const(0, 5), q_ring[cur_q][5:]) + (q_head[cur_q] << 5))

        u_seq_cur, u_irq_cur, u_owner_cur = ut_r.data[:32], ut_r.data[32], ut_r.data[33:]
        m.d.comb += [ut_r.addr.eq(cur_u), ut_w.en.eq(disp_en), ut_w.addr.eq(disp_u),
                     ut_w.data.eq(Cat(seqv, eirq, cur_q[:qbits]))]
        for u in range(n_units):    # dispatch and completion are in different states
            with m.If(disp_en & (disp_u == u)):
                m.d.sync += [u_fly[u].eq(1), u_owner[u].eq(cur_q)]
            with m.If(done_en & (cur_u == u)):
                m.d.sync += u_fly[u].eq(0)

        def dispatch(u):
            m.d.comb += [disp_en.eq(1), disp_u.eq(u), adv["en"].eq(1), adv["q"].eq(cur_q)]

        def retire_now(q, irq):
            m.d.comb += [ret["en"].eq(1), ret["q"].eq(q), ret["irq"].eq(irq)]

        def complete_unit(code, detail):
            """Unit cur_u (the polled one) has finished: retire its entry, record an error."""
            m.d.comb += [done_en.eq(1), ret["en"].eq(1), ret["q"].eq(u_owner_cur),
                         ret["irq"].eq(u_irq_cur)]
            if isinstance(code, int) and code == 0:
                return
            with m.If(code != 0):
                m.d.comb += [rec["en"].eq(1), rec["q"].eq(u_owner_cur),
                             rec["seq"].eq(u_seq_cur), rec["code"].eq(code),
                             rec["detail"].eq(detail)]

        with m.FSM(name="cp"):
            with m.State("INIT"):
                with m.Switch(init_k):
                    for k, (reg, val, inc) in enumerate(win_regs):
                        with m.Case(k):
                            m.d.sync += [ax_addr.eq(reg), ax_wdata.eq(val + init_c * inc)]
                m.d.sync += [ax_c.eq(init_c), ax_we.eq(1)]
                m.next = "INIT_GO"
            with m.State("INIT_GO"):
                m.d.comb += ax_go.eq(1)
                m.next = "INIT_WAIT"
            with m.State("INIT_WAIT"):
                with m.If(ax_done):
                    with m.If(init_k == len(win_regs) - 1):
                        m.d.sync += init_k.eq(0)
                        with m.If(init_c == NC - 1):
                            m.d.sync += ready.eq(1)
                            m.next = "SCHED"
                        with m.Else():
                            m.d.sync += init_c.eq(init_c + 1)
                            m.next = "INIT"
                    with m.Else():
                        m.d.sync += init_k.eq(init_k + 1)
                        m.next = "INIT"

            with m.State("SCHED"):
                m.d.sync += phase.eq(~phase)
                with m.If(phase == 0):
                    m.d.sync += [cur_u.eq(poll),
                                 poll.eq(Mux(poll == n_units - 1, 0, poll + 1))]
                    with m.If(u_fly.bit_select(poll, 1)):
                        m.next = "POLL"
                with m.Else():
                    m.d.sync += [cur_q.eq(qp), qp.eq(Mux(qp == NQ - 1, 0, qp + 1))]
                    with m.If((q_size[qp] != 0) & (q_head[qp] != q_tail[qp])):
                        with m.If(q_cached[qp]):
                            m.next = "LOAD"
                        with m.Else():
                            m.next = "FETCH"

            # --- polling a dispatched unit ---
            with m.State("POLL"):
                tile_branch = m.If
                if cfg.nic_ports:     # the collective engine: done when no longer busy
                    with m.If(cur_u == coll_u):
                        with m.If(~self.coll_busy):
                            complete_unit(self.coll_err, self.coll_detail)
                        m.next = "SCHED"
                    tile_branch = m.Elif
                with tile_branch(cur_u >= n_dma):
                    st = link.st_status      # st_sel = cur_u - n_dma (below)
                    with m.If(st[:2] != T.ST_RUNNING):
                        complete_unit(Mux(st[:2] == T.ST_ERROR, C.ERR_TILE, 0), st)
                        m.d.sync += [macs.eq(macs + link.st_macs),
                                     ttu_busy.eq(ttu_busy + link.st_ttu_busy)]
                    m.next = "SCHED"
                with m.Else():
                    m.d.sync += ax_we.eq(0)
                    for u in range(n_dma):
                        with m.If(cur_u == u):
                            m.d.sync += [ax_c.eq(u // NCH),
                                         ax_addr.eq(D.ch_reg(u % NCH, D.CH_STATUS))]
                    m.next = "POLL_GO"
            with m.State("POLL_GO"):
                m.d.comb += ax_go.eq(1)
                m.next = "POLL_WAIT"
            with m.State("POLL_WAIT"):
                with m.If(ax_done):
                    with m.If(ax_rdata[:2] == D.ST_BUSY):
                        m.next = "SCHED"
                    with m.Elif(ax_rdata[:2] == D.ST_ERROR):
                        m.d.sync += ax_addr.eq(ax_addr - D.CH_STATUS + D.CH_ERROR)
                        m.next = "POLL_ERR_GO"
                    with m.Else():
                        complete_unit(0, 0)
                        m.next = "SCHED"
            with m.State("POLL_ERR_GO"):
                m.d.comb += ax_go.eq(1)
                m.next = "POLL_ERR_WAIT"
            with m.State("POLL_ERR_WAIT"):
                with m.If(ax_done):
                    complete_unit(C.ERR_DMA, ax_rdata)
                    m.next = "SCHED"

            # --- taking an entry ---
            with m.State("FETCH"):
                with m.If(fetch_addr + C.ENTRY_BYTES > cfg.hbm_window):
                    m.d.comb += [rec["en"].eq(1), rec["q"].eq(cur_q),
                                 rec["seq"].eq(q_seq[cur_q]), rec["code"].eq(C.ERR_FETCH),
                                 rec["detail"].eq(fetch_addr)]
                    retire_now(cur_q, 0)
                    m.d.comb += [adv["en"].eq(1), adv["q"].eq(cur_q)]
                    m.next = "SCHED"
                with m.Else():
                    m.d.comb += [hb.arvalid.eq(1), hb.araddr.eq(fetch_addr)]
                    with m.If(hb.arready):
                        m.next = "FETCH_R"
            with m.State("FETCH_R"):
                m.d.comb += hb.rready.eq(1)
                with m.If(hb.rvalid):
                    with m.If(hb.rresp != RESP_OKAY):
                        m.d.comb += [rec["en"].eq(1), rec["q"].eq(cur_q),
                                     rec["seq"].eq(q_seq[cur_q]), rec["code"].eq(C.ERR_FETCH),
                                     rec["detail"].eq(fetch_addr)]
                        retire_now(cur_q, 0)
                        m.d.comb += [adv["en"].eq(1), adv["q"].eq(cur_q)]
                        m.next = "SCHED"
                    with m.Else():
                        m.d.sync += [q_entry[cur_q].eq(hb.rdata), q_cached[cur_q].eq(1)]
                        m.next = "LOAD"
            with m.State("LOAD"):
                m.d.sync += [ent.eq(q_entry[cur_q]), seqv.eq(q_seq[cur_q])]
                m.next = "EXEC"
            with m.State("EXEC"):
                with m.If(chk != 0):
                    m.d.comb += [rec["en"].eq(1), rec["q"].eq(cur_q), rec["seq"].eq(seqv),
                                 rec["code"].eq(chk), rec["detail"].eq(0)]
                    retire_now(cur_q, eirq)
                    m.d.comb += [adv["en"].eq(1), adv["q"].eq(cur_q)]
                    m.next = "SCHED"
                with m.Elif(op == C.OP_NOP):
                    retire_now(cur_q, eirq)
                    m.d.comb += [adv["en"].eq(1), adv["q"].eq(cur_q)]
                    m.next = "SCHED"
                with m.Elif(op == C.OP_FENCE):
                    with m.If(~owned_by_cur):
                        retire_now(cur_q, eirq)
                        m.d.comb += [adv["en"].eq(1), adv["q"].eq(cur_q)]
                    m.next = "SCHED"
                with m.Elif(op == C.OP_SEM_WAIT):
                    with m.If(sem_val >= arg[:8]):
                        m.d.comb += [link.take.eq(1), link.take_count.eq(arg[:8])]
                        retire_now(cur_q, eirq)
                        m.d.comb += [adv["en"].eq(1), adv["q"].eq(cur_q)]
                    m.next = "SCHED"
                with m.Elif(op == C.OP_WAIT):
                    with m.If(~u_fly.bit_select(Mux(arg[0], n_dma + tile_u, dma_u), 1)):
                        retire_now(cur_q, eirq)
                        m.d.comb += [adv["en"].eq(1), adv["q"].eq(cur_q)]
                    m.next = "SCHED"
                with m.Elif(op == C.OP_TILE):
                    with m.If(~u_fly.bit_select(n_dma + tile_u, 1)):
                        m.d.comb += link.tile_start.eq(1)
                        m.d.sync += tile_disp.eq(tile_disp + 1)
                        dispatch(n_dma + tile_u)
                    m.next = "SCHED"
                if cfg.nic_ports:
                    with m.Elif(op == C.OP_COLLECTIVE):
                        with m.If(~u_fly[coll_u]):
                            m.d.comb += self.coll_start.eq(1)
                            dispatch(coll_u)
                        m.next = "SCHED"
                with m.Else():   # DMA
                    with m.If(~u_fly.bit_select(dma_u, 1)):
                        m.d.sync += [ax_c.eq(ecl), ax_we.eq(1),
                                     ax_addr.eq(D.ch_reg(0, D.CH_HEAD) + eun * D.CH_STRIDE),
                                     ax_wdata.eq(arg), cur_u.eq(dma_u)]
                        m.next = "DMA_HEAD"
                    with m.Else():
                        m.next = "SCHED"
            with m.State("DMA_HEAD"):
                m.d.comb += ax_go.eq(1)
                m.next = "DMA_HEAD_WAIT"
            with m.State("DMA_HEAD_WAIT"):
                with m.If(ax_done):
                    m.d.sync += ax_addr.eq(ax_addr - D.CH_HEAD + D.CH_DOORBELL)
                    m.next = "DMA_BELL"
            with m.State("DMA_BELL"):
                m.d.comb += ax_go.eq(1)
                m.next = "DMA_BELL_WAIT"
            with m.State("DMA_BELL_WAIT"):
                with m.If(ax_done):
                    m.d.sync += dma_disp.eq(dma_disp + 1)
                    dispatch(cur_u)
                    m.next = "SCHED"

        # ---------------- host CSRs (AXI4-Lite subordinate) ----------------
        s = self.s_axil
        rd_data = Signal(32)
        rd_ok = Signal()
        sem_index = Signal(range(max(2, NC * NS)))   # REG_SEM_INDEX
        ra = s.araddr
        with m.Switch(ra):
            for name, reg in C.GLOBAL_REGS.items():
                with m.Case(reg):
                    val = {"ID": C.ID_MAGIC, "CONFIG": cfg.config_word(),
                           "STATUS": (Cat(ready, pending.any(), self.nic_idle.all())
                                      if cfg.nic_ports else Cat(ready, pending.any())),
                           "IRQ_STATUS": irq_status,
                           "IRQ_ENABLE": irq_enable, "CYCLES": cycles,
                           "BUSY_CYCLES": busy_cycles, "DMA_DISPATCH": dma_disp,
                           "TILE_DISPATCH": tile_disp, "MACS_LO": macs[:32],
                           "MACS_HI": macs[32:], "TTU_BUSY": ttu_busy}[name]
                    m.d.comb += [rd_data.eq(val), rd_ok.eq(1)]
            for i in range(min(NC * NS, C.SEM_DIRECT_MAX)):
                with m.Case(C.REG_SEM_BASE + 4 * i):
                    m.d.comb += [link.hsem_sel.eq(i), rd_data.eq(link.hsem_value),
                                 rd_ok.eq(1)]
            with m.Case(C.REG_SEM_INDEX):
                m.d.comb += [rd_data.eq(sem_index), rd_ok.eq(1)]
            with m.Case(C.REG_SEM_VALUE):
                # an index past the last semaphore selects no cluster: reads 0
                m.d.comb += [link.hsem_sel.eq(sem_index), rd_data.eq(link.hsem_value),
                             rd_ok.eq(1)]
            if cfg.nic_ports:
                with m.Case(C.REG_TRAY_RANK):
                    m.d.comb += [rd_data.eq(tray_rank), rd_ok.eq(1)]
                with m.Case(C.REG_TRAY_RESYNC):
                    m.d.comb += [rd_data.eq(Cat(self.coll_busy, Const(0, 15), self.coll_seq)),
                                 rd_ok.eq(1)]
            for q in range(NQ):
                for name, off in C.Q_REGS.items():
                    with m.Case(C.q_reg(q, off)):
                        val = {"RING": Cat(Const(0, 5), q_ring[q][5:]), "SIZE": q_size[q],
                               "TAIL": q_tail[q], "HEAD": q_head[q], "STATUS": pending[q],
                               "ERROR": q_err[q], "ERR_SEQ": q_err_seq[q],
                               "ERR_DETAIL": q_err_detail[q], "ERR_COUNT": q_err_count[q],
                               "DONE_COUNT": q_done[q], "SEQ": q_seq[q]}[name]
                        m.d.comb += [rd_data.eq(val), rd_ok.eq(1)]
        r_pend = Signal()
        with m.If(~r_pend):
            m.d.comb += s.arready.eq(1)
            with m.If(s.arvalid):
                m.d.sync += [r_pend.eq(1), s.rdata.eq(rd_data),
                             s.rresp.eq(Mux(rd_ok, RESP_OKAY, RESP_SLVERR))]
        with m.Else():
            m.d.comb += s.rvalid.eq(1)
            with m.If(s.rready):
                m.d.sync += r_pend.eq(0)

        b_pend = Signal()
        wa, wd = s.awaddr, s.wdata
        w_ok = Signal()
        with m.If(~b_pend & s.awvalid & s.wvalid):
            m.d.comb += [s.awready.eq(1), s.wready.eq(1)]
            m.d.sync += b_pend.eq(1)
            full = s.wstrb == 0xF
            with m.If(full & (wa == C.REG_IRQ_ENABLE)):
                m.d.comb += w_ok.eq(1)
                m.d.sync += irq_enable.eq(wd)
            with m.If(full & (wa == C.REG_IRQ_STATUS)):
                m.d.comb += w_ok.eq(1)
            with m.If(full & (wa == C.REG_SEM_INDEX)):
                m.d.comb += w_ok.eq(1)
                m.d.sync += sem_index.eq(wd)
            if cfg.nic_ports:
                with m.If(full & (wa == C.REG_TRAY_RANK)):
                    m.d.comb += w_ok.eq(1)
                    m.d.sync += tray_rank.eq(wd[:4])
                # applied by the engine in this cycle only while it is idle, else SLVERR
                m.d.comb += [self.coll_resync_mask.eq(wd[:8]), self.coll_resync_seq.eq(wd[8])]
                with m.If(full & (wa == C.REG_TRAY_RESYNC)):
                    m.d.comb += [self.coll_resync.eq(1), w_ok.eq(self.coll_resync_ok)]
            for q in range(NQ):
                with m.If(full & (wa == C.q_reg(q, C.Q_RING))):
                    m.d.comb += w_ok.eq(1)
                    m.d.sync += q_ring[q].eq(wd)
                with m.If(full & (wa == C.q_reg(q, C.Q_SIZE)) & (wd <= C.QUEUE_MAX_SIZE)):
                    m.d.comb += w_ok.eq(1)
                    m.d.sync += q_size[q].eq(wd)
                with m.If(full & (wa == C.q_reg(q, C.Q_TAIL)) & (wd < q_size[q])):
                    m.d.comb += w_ok.eq(1)
                    m.d.sync += q_tail[q].eq(wd)
                with m.If(full & (wa == C.q_reg(q, C.Q_CTRL)) & (wd[0] == 1)):
                    m.d.comb += w_ok.eq(1)
                    m.d.sync += [q_head[q].eq(0), q_tail[q].eq(0), q_seq[q].eq(0),
                                 q_err[q].eq(0), q_err_seq[q].eq(0), q_err_detail[q].eq(0),
                                 q_err_count[q].eq(0), q_done[q].eq(0), q_cached[q].eq(0)]
            m.d.sync += s.bresp.eq(Mux(w_ok, RESP_OKAY, RESP_SLVERR))
        with m.If(b_pend):
            m.d.comb += s.bvalid.eq(1)
            with m.If(s.bready):
                m.d.sync += b_pend.eq(0)
        # IRQ_STATUS: set by events, write-1-to-clear by the host (a set wins)
        clr = Signal(NIRQ)
        with m.If(~b_pend & s.awvalid & s.wvalid & (s.wstrb == 0xF)
                  & (wa == C.REG_IRQ_STATUS)):
            m.d.comb += clr.eq(wd)
        m.d.sync += irq_status.eq((irq_status & ~clr) | irq_set)
        return m
