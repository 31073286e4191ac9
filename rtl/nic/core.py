"""The NIC: MAC + RoCEv2 reliable transport + memory protection + host side, one component.

``NicCore`` joins four engines around per-queue-pair state registers:

* **TX engine** (one frame at a time): ACK/NAK responses first, then queue pairs round robin.
  It fetches 32-byte WQEs over the AXI4 read channel, segments messages into MTU packets,
  builds Ethernet/IPv4/UDP/BTH/RETH/AETH headers, streams the payload from host memory (AXI4
  read bursts) behind the header, and hands the frame to the ICRC appender and the MAC.
  Retransmission regenerates packets from host memory: go-back-N restarts segmentation at
  the oldest incomplete WQE and skips (without sending) the packets before the go-back PSN.
* **RX engine**: frames come from the MAC receive buffer already checked (FCS, address, RoCE
  headers, ICRC). It parses the headers, runs the responder (PSN check, duplicate re-ACK,
  NAK PSN sequence error, opcode sequence, window protection, receive ring) and the
  requester's ACK/NAK handling, and writes payloads with AXI4 write bursts.
* **Completion engine**: writes 16-byte CQEs (requester completions in WQE order, receive
  completions) with AXI4 writes.
* **CSRs** on AXI4-Lite (spec.nic CSR map) and the 32-bit counters.

The contract is spec/nic.py and docs/nic.md; golden/nic.py is its executable twin.
"""

from __future__ import annotations

from amaranth.hdl import Array, Cat, Const, Module, Mux, ResetInserter, Signal
from amaranth.lib import data, fifo, wiring
from amaranth.lib.wiring import In, Out

from spec import nic as S

from ..axi import BURST_INCR, RESP_DECERR, RESP_OKAY, RESP_SLVERR, AXI4LiteSignature, AXI4Signature
from .counters import CounterBank
from .crc import crc_register_after
from .mac import CrcAppender, MacRx, MacTx
from .stream import AXIStreamSignature, axis_from_stream, stream_from_axis

__all__ = ["NicCore", "NicPair"]

# Record of a fetched WQE, kept per queue pair until its completion is written.
Record = data.StructLayout({
    "start_psn": 24,     # PSN of its first packet (segmentation restarts here)
    "first_psn": 24,     # PSN reported in the CQE (0 for BAD_WQE / FLUSHED before start)
    "last_psn": 24,
    "wr_id": 32,
    "opcode": 8,
    "signaled": 1,
    "length": 32,
    "status": 3,
})
# A queued response: an ACK/NAK (``read`` 0), or a whole RDMA READ response (``read`` 1:
# ceil(length / MTU) frames from ``va`` with PSNs psn, psn + 1, ...).
Resp = data.StructLayout({"qp": 8, "syn": 8, "psn": 24, "msn": 24, "read": 1, "va": 64,
                          "length": 32})
# An outstanding RDMA READ at the requester (one per READ request first sent, in PSN order).
RdRec = data.StructLayout({"start_psn": 24, "last_psn": 24, "local": 64, "length": 32})
Cqe = data.StructLayout({"qp": 8, "wr_id": 32, "status": 8, "opcode": 8, "byte_len": 32,
                         "psn": 32})

_WQE_WORDS = S.WQE_BYTES // 8


def _be(byte_list):
    """Big-endian field from a list of bytes (first = most significant)."""
    return Cat(*reversed(byte_list))


def _bytes_be(value, n):
    """n big-endian bytes of ``value`` (Amaranth value), first byte most significant."""
    return [value[8 * (n - 1 - k):8 * (n - k)] for k in range(n)]


def _psn_lt(a, b):
    """a < b in the 24-bit PSN space (signed difference)."""
    return (a - b)[S.PSN_BITS - 1]


class NicCore(wiring.Component):
    """One NIC: wire side (AXI-Stream, 64-bit beats with FCS), AXI4 master to host memory,
    AXI4-Lite CSRs.

    Parameters
    ----------
    params : spec.nic.NicParams
        Queue pairs (at most 8 with this CSR map), windows, MTU, window, max message.
    mem_bytes : int
        Size of the host memory the WQEs may point into (local buffers must lie below it;
        the golden twin's ``mem_size``).

    Ports: ``wire_tx``/``wire_rx`` (flat AXI-Stream, frames with FCS; ``wire_rx.tready`` is
    always 1), ``m_axi`` (AXI4, 64-bit data, IDs 0), ``s_axil`` (AXI4-Lite, 12-bit address,
    spec.nic CSR map), ``idle`` (1 when no work is pending anywhere in the NIC),
    ``cq_event`` (1 for one cycle each time a CQE's last beat is accepted by the memory; an
    interrupt source for the chip: send and receive completions of every queue pair).

    Latency and throughput: see docs/nic.md (measured by ``make bench BENCH=nic``).
    Errors: bad WQEs complete with CQ_BAD_WQE; remote errors as in the contract; CSR accesses
    to unmapped addresses answer DECERR, writes to read-only registers SLVERR.
    """

    def __init__(self, params: S.NicParams | None = None, *, mem_bytes: int = 1 << 17,
                 addr_width: int = 32):
        params = params or S.NicParams()
        if not isinstance(params, S.NicParams):
            raise TypeError(f"params must be a spec.nic.NicParams, not {type(params).__name__}")
        if params.n_qps > 8:
            raise ValueError(f"params.n_qps must be at most 8 with the CSR map, not {params.n_qps}")
        if params.window > 64:
            raise ValueError(f"params.window must be at most 64, not {params.window}")
        if not isinstance(mem_bytes, int) or mem_bytes <= 0 or mem_bytes % 8 or mem_bytes > 1 << addr_width:
            raise ValueError(f"mem_bytes must be a positive multiple of 8 within the address "
                             f"space, not {mem_bytes!r}")
        self._p, self._mem, self._aw = params, mem_bytes, addr_width
        super().__init__({
            "wire_tx": Out(AXIStreamSignature()), "wire_rx": In(AXIStreamSignature()),
            "m_axi": Out(AXI4Signature(addr_width=addr_width, data_width=64, id_width=4)),
            "s_axil": In(AXI4LiteSignature(addr_width=12, data_width=32)),
            "idle": Out(1), "cq_event": Out(1),
        })

    params = property(lambda self: self._p)
    mem_bytes = property(lambda self: self._mem)

    # ------------------------------------------------------------------------------------
    def elaborate(self, platform):
        m = Module()
        p = self._p
        nq = p.n_qps
        mtu_log2 = p.mtu.bit_length() - 1
        aw = self._aw
        axi = self.m_axi
        inc: dict[str, list] = {k: [] for k in S.COUNTERS}

        def count(name, amount=1):
            """Add ``amount`` (1 bit) to counter ``name`` when the current m.If path is taken."""
            s = Signal(name=f"ev_{name}_{len(inc[name])}")
            m.d.comb += s.eq(amount)
            inc[name].append(s)

        # --- MAC and ICRC -----------------------------------------------------------------
        m.submodules.mtx = mtx = MacTx()
        m.submodules.mrx = mrx = MacRx(max_frame=p.max_frame,
                                       depth=max(512, 1 << (4 * (-(-p.max_frame // 8))).bit_length()),
                                       roce=True)
        m.submodules.icrc = icrc = CrcAppender(start=S.ICRC_START, force_ff=S.ICRC_MASK_OFFSETS,
                                               init=crc_register_after(b"\xff" * 8))
        m.submodules.cnt = cnt = CounterBank()
        wiring.connect(m, icrc.o, mtx.i)
        axis_from_stream(m, self.wire_tx, mtx.o)
        stream_from_axis(m, mrx.i, self.wire_rx)
        cnt.connect_mac(m, mtx, mrx)
        txs = icrc.i            # frames from the TX engine (no ICRC, no FCS)
        rxs = mrx.o             # checked RoCE frames (ICRC still attached, no FCS)

        # --- global CSRs --------------------------------------------------------------------
        enable = Signal(init=1)
        my_mac = Signal(48)
        my_ip = Signal(32)
        timeout = Signal(32, init=4096)
        retry_limit = Signal(8, init=16)
        m.d.comb += mrx.mac_addr.eq(my_mac)

        # --- per queue pair state -------------------------------------------------------------
        def qsig(name, width, init=0):
            return [Signal(width, name=f"qp{q}_{name}", init=init) for q in range(nq)]

        Q = {}
        for name, width in (("ready", 1), ("dest_qpn", 24), ("dest_mac", 48), ("dest_ip", 32),
                            ("sq_base", 64), ("sq_log2", 5), ("sq_prod", 32), ("sq_cons", 32),
                            ("cq_base", 64), ("cq_log2", 5), ("cq_prod", 32), ("sq_psn", 24),
                            ("rq_psn", 24), ("rq_base", 64), ("rq_log2", 5), ("rq_slot_log2", 5),
                            # requester
                            ("err", 1), ("err_status", 3), ("err_first", 1),
                            ("psn_next", 24), ("psn_max", 24), ("una", 24), ("skip_until", 24),
                            ("seg_valid", 1), ("seg_idx", 32), ("seg_off", 32),
                            ("seg_opcode", 8), ("seg_local", 64), ("seg_remote", 64),
                            ("seg_len", 32), ("seg_rkey", 32), ("comp_idx", 32),
                            ("restart", 1), ("restart_psn", 24), ("tmr", 32), ("retries", 8),
                            ("rcnt", 24), ("rd_extra", 24), ("rd_gap", 1),
                            # responder
                            ("epsn", 24), ("msn", 24), ("nak_sent", 1), ("in_msg", 2),
                            ("wr_va", 64), ("wr_left", 32), ("rq_idx", 32), ("rq_fill", 32),
                            ("rq_first_psn", 24)):
            Q[name] = qsig(name, width)
        A = {k: Array(v) for k, v in Q.items()}

        def qset(idx, name, value):
            """Synchronous write of queue pair ``idx``'s field (idx: Value or int)."""
            for q in range(nq):
                with m.If(idx == q):
                    m.d.sync += Q[name][q].eq(value)

        # record FIFOs (one per queue pair), reset when the queue pair is (re)initialised
        qp_init = [Signal(name=f"qp{q}_init") for q in range(nq)]
        rec = []
        for q in range(nq):
            f = ResetInserter(qp_init[q])(fifo.SyncFIFOBuffered(width=Record.size,
                                                                depth=p.window + 2))
            m.submodules[f"rec{q}"] = f
            rec.append(f)
        # outstanding READs (oldest incomplete READ at the head), reset with the queue pair
        rdq = []
        for q in range(nq):
            f = ResetInserter(qp_init[q])(fifo.SyncFIFOBuffered(width=RdRec.size, depth=p.window))
            m.submodules[f"rdq{q}"] = f
            rdq.append(f)
        rd_head = [RdRec(f.r_data) for f in rdq]
        rec_head = [Record(f.r_data) for f in rec]
        rec_rdy = Array([f.r_rdy for f in rec])
        rec_start = Array([h.start_psn for h in rec_head])

        m.submodules.resp = resp_f = fifo.SyncFIFOBuffered(width=Resp.size, depth=8)
        m.submodules.rcqe = rcqe_f = fifo.SyncFIFOBuffered(width=Cqe.size, depth=4)

        # per-QP derived conditions
        outstanding = [Q["una"][q] != Q["psn_max"][q] for q in range(nq)]
        # The window counts outstanding request packets like the contract: a READ request is
        # one, however many response PSNs it spans (rd_extra = sum of npsn - 1 over the
        # outstanding READs; TX adds when a READ is first sent, RX subtracts when it completes).
        rdx_add = [Signal(24, name=f"qp{q}_rdx_add") for q in range(nq)]
        rdx_sub = [Signal(24, name=f"qp{q}_rdx_sub") for q in range(nq)]
        for q in range(nq):
            m.d.sync += Q["rd_extra"][q].eq(Q["rd_extra"][q] + rdx_add[q] - rdx_sub[q])
        win_ok = [(Q["psn_max"][q] - Q["una"][q] - Q["rd_extra"][q])[:S.PSN_BITS] < p.window
                  for q in range(nq)]
        have_new = [Q["sq_cons"][q] != Q["sq_prod"][q] for q in range(nq)]
        can_fetch = []
        can_send = []
        for q in range(nq):
            cf = Signal(name=f"qp{q}_can_fetch")
            cs = Signal(name=f"qp{q}_can_send")
            refetch = Q["seg_idx"][q] != Q["sq_cons"][q]
            normal = (~Q["err"][q] & ~Q["seg_valid"][q] & ~Q["restart"][q]
                      & (refetch | (have_new[q] & win_ok[q] & rec[q].w_rdy)))
            flush = Q["err"][q] & have_new[q] & rec[q].w_rdy
            new_read = ((Q["seg_opcode"][q] == S.WR_READ)
                        & ~_psn_lt(Q["psn_next"][q], Q["psn_max"][q]))
            m.d.comb += [cf.eq(Q["ready"][q] & (normal | flush)),
                         cs.eq(Q["ready"][q] & ~Q["err"][q] & Q["seg_valid"][q] & ~Q["restart"][q]
                               & (win_ok[q] | _psn_lt(Q["psn_next"][q], Q["psn_max"][q]))
                               & ~(new_read & ~rdq[q].w_rdy))]
            can_fetch.append(cf)
            can_send.append(cs)
        can_fetch_a, can_send_a = Array(can_fetch), Array(can_send)

        # write-channel ownership: 0 free, 1 RX payload, 2 completion engine
        wlock = Signal(2)

        # AXI constant fields
        m.d.comb += [axi.awsize.eq(3), axi.awburst.eq(BURST_INCR), axi.arsize.eq(3),
                     axi.arburst.eq(BURST_INCR), axi.wstrb.eq(0xFF), axi.bready.eq(1)]

        # ================================ TX engine ==========================================
        f_qp = Signal(range(max(nq, 2)))
        f_op = Signal(8)
        f_psn = Signal(24)
        f_ackreq = Signal()
        f_va = Signal(64)
        f_rkey = Signal(32)
        f_dlen = Signal(32)
        f_syn = Signal(8)
        f_msn = Signal(24)
        f_plen = Signal(16)           # payload bytes
        f_paddr = Signal(aw)
        tx_rr = Signal(range(max(nq, 2)))
        hb = Signal(4)                # header beat being sent
        carry = Signal(48)
        words_left = Signal(14)
        ar_addr = Signal(aw)
        ar_left = Signal(14)
        # payload read-ahead (docs/nic.md "TX engine"): payload words land in pfifo; while
        # one frame is sent, the payload of the frame predicted to follow (the next segment
        # of the same WQE / READ response) is already requested.
        pf_depth = 2 * (p.mtu // 8)
        m.submodules.pfifo = pfifo = fifo.SyncFIFOBuffered(width=64, depth=pf_depth)
        inflight = Signal(range(pf_depth + 1))   # payload words requested, not yet landed
        drop = Signal(range(2 * pf_depth + 1))   # words at the FIFO head to discard
        pf_valid, pf_addr, pf_words = Signal(), Signal(aw), Signal(14)   # requested ahead
        nx_valid, nx_addr, nx_words = Signal(), Signal(aw), Signal(14)   # to request next
        dec_valid, dec_addr, dec_words = Signal(), Signal(aw), Signal(14)  # frame decided now
        dec_nvalid, dec_naddr, dec_nwords = Signal(), Signal(aw), Signal(14)  # its successor
        pay_take = Signal()
        iss_idle = (ar_left == 0) & ~nx_valid
        pf_kill = Signal()
        # fetch
        fq = Signal(range(max(nq, 2)))
        f_new = Signal()
        f_psn0 = Signal(24)
        fw = [Signal(64, name=f"fetch_w{k}") for k in range(_WQE_WORDS)]
        fcount = Signal(3)

        has_reth = Cat(*[f_op == o for o in S.OPS_WITH_RETH]).any()
        has_aeth = Cat(*[f_op == o for o in S.OPS_WITH_AETH]).any()
        ext = Mux(has_reth, S.RETH_LEN, Mux(has_aeth, S.AETH_LEN, 0))
        ip_total = Signal(16)
        m.d.comb += ip_total.eq(S.IPV4_HDR + S.UDP_HDR + S.BTH_LEN + S.ICRC_LEN + ext + f_plen)
        udp_len = ip_total - S.IPV4_HDR
        dmac = A["dest_mac"][f_qp]
        dip = A["dest_ip"][f_qp]
        dqpn = A["dest_qpn"][f_qp]
        # IPv4 header checksum
        words = [0x4500, ip_total, 0x0000, S.IPV4_FLAGS_DF, (S.IPV4_TTL << 8) | S.IP_PROTO_UDP,
                 my_ip[16:32], my_ip[:16], dip[16:32], dip[:16]]
        csum32 = Signal(20)
        m.d.comb += csum32.eq(sum(Cat(w) if not isinstance(w, int) else Const(w, 16) for w in words))
        fold1 = Signal(17)
        m.d.comb += fold1.eq(csum32[:16] + csum32[16:])
        csum = Signal(16)
        m.d.comb += csum.eq(~(fold1[:16] + fold1[16]))
        ext_bytes = [Mux(has_reth, b_r, b_a) for b_r, b_a in zip(
            _bytes_be(f_va, 8) + _bytes_be(f_rkey, 4) + _bytes_be(f_dlen, 4),
            [f_syn] + _bytes_be(f_msn, 3) + [Const(0, 8)] * 12)]
        hdr = (_bytes_be(dmac, 6) + _bytes_be(my_mac, 6) + _bytes_be(Const(S.ETHERTYPE_IPV4, 16), 2)
               + [Const(0x45, 8), Const(0, 8)] + _bytes_be(ip_total, 2) + [Const(0, 8)] * 2
               + _bytes_be(Const(S.IPV4_FLAGS_DF, 16), 2) + [Const(S.IPV4_TTL, 8), Const(S.IP_PROTO_UDP, 8)]
               + _bytes_be(csum, 2) + _bytes_be(my_ip, 4) + _bytes_be(dip, 4)
               + _bytes_be(Cat(f_qp, Const(0, 14 - len(f_qp)), Const(0b11, 2)), 2)
               + _bytes_be(Const(S.ROCE_UDP_PORT, 16), 2) + _bytes_be(udp_len, 2) + [Const(0, 8)] * 2
               + [f_op, Const(0, 8)] + _bytes_be(Const(S.PKEY_DEFAULT, 16), 2) + [Const(0, 8)]
               + _bytes_be(dqpn, 3) + [Cat(Const(0, 7), f_ackreq)] + _bytes_be(f_psn, 3)
               + ext_bytes + [Const(0, 8)] * 2)
        assert len(hdr) == 72
        hdr_beats = Array([Cat(*hdr[8 * k:8 * k + 8]) for k in range(9)])
        n_full = Mux(has_reth, 8, Mux(has_aeth, 7, 6))      # full header beats
        r6 = ~has_aeth                                      # header length % 8 == 6 (else 2)
        tail = hdr_beats[n_full][:48]

        # payload read-address issue (runs during HDR/PAY)
        to4k = (1 << 9) - ar_addr[3:12]
        blen0 = Signal(14)
        blen = Signal(14)
        m.d.comb += [blen0.eq(Mux(ar_left < to4k, ar_left, to4k)),
                     blen.eq(Mux(blen0 > 128, 128, blen0))]

        # segmentation of the selected queue pair (tx_rr)
        s_len = A["seg_len"][tx_rr]
        s_off = A["seg_off"][tx_rr]
        s_rem = s_len - s_off
        s_n = Signal(16)
        m.d.comb += s_n.eq(Mux(s_rem > p.mtu, p.mtu, s_rem))
        s_first = s_off == 0
        s_last = s_rem <= p.mtu
        s_opc = A["seg_opcode"][tx_rr]
        s_op = Signal(8)
        with m.If(s_opc == S.WR_WRITE):
            m.d.comb += s_op.eq(Mux(s_first, Mux(s_last, S.OP_WRITE_ONLY, S.OP_WRITE_FIRST),
                                    Mux(s_last, S.OP_WRITE_LAST, S.OP_WRITE_MIDDLE)))
        with m.Elif(s_opc == S.WR_SEND):
            m.d.comb += s_op.eq(Mux(s_first, Mux(s_last, S.OP_SEND_ONLY, S.OP_SEND_FIRST),
                                    Mux(s_last, S.OP_SEND_LAST, S.OP_SEND_MIDDLE)))
        with m.Else():
            m.d.comb += s_op.eq(S.OP_READ_REQUEST)
        s_is_read = s_opc == S.WR_READ
        s_psn = A["psn_next"][tx_rr]
        s_npsn = Mux(s_is_read, (s_len + p.mtu - 1) >> mtu_log2, 1)
        s_skip = _psn_lt(s_psn, A["skip_until"][tx_rr])
        s_retx = _psn_lt(s_psn, A["psn_max"][tx_rr])
        s_done = s_is_read | s_last

        # fetched WQE fields
        w_opcode, w_flags, w_wrid = fw[0][0:8], fw[0][8:16], fw[0][32:64]
        w_local, w_remote, w_len, w_rkey = fw[1], fw[2], fw[3][0:32], fw[3][32:64]
        w_bad = ((w_opcode > S.WR_READ) | (w_len < 8) | (w_len > p.max_msg) | (w_len[:3] != 0)
                 | (w_local[:3] != 0) | (w_remote[:3] != 0)
                 | ((w_local + w_len) > self._mem))
        w_npsn = (w_len + p.mtu - 1) >> mtu_log2

        # READ response being sent (responder): offset of the next response frame
        rs_off = Signal(32)
        resp_head = Resp(resp_f.r_data)
        rs_rem = resp_head.length - rs_off
        rs_n = Signal(16)
        m.d.comb += rs_n.eq(Mux(rs_rem > p.mtu, p.mtu, rs_rem))
        rs_first = rs_off == 0
        rs_last = rs_rem <= p.mtu
        rs_op = Mux(rs_first, Mux(rs_last, S.OP_READ_RESP_ONLY, S.OP_READ_RESP_FIRST),
                    Mux(rs_last, S.OP_READ_RESP_LAST, S.OP_READ_RESP_MIDDLE))

        m.d.comb += [txs.payload.keep.eq(0xFF)]
        with m.FSM(name="tx"):
            with m.State("IDLE"):
                with m.If(~iss_idle | pf_kill):
                    pass                    # the payload read issuer is still busy
                with m.Elif(resp_f.r_rdy & enable):
                    r = resp_head
                    with m.If(r.read):
                        # one READ response frame; the entry leaves the FIFO with the last one
                        m.d.sync += [f_qp.eq(r.qp), f_op.eq(rs_op),
                                     f_psn.eq(r.psn + (rs_off >> mtu_log2)[:24]), f_ackreq.eq(0),
                                     f_syn.eq(S.AETH_ACK), f_msn.eq(r.msn), f_plen.eq(rs_n),
                                     words_left.eq(rs_n >> 3), hb.eq(0)]
                        rs_nn = rs_rem - rs_n
                        m.d.comb += [dec_valid.eq(1), dec_addr.eq(r.va + rs_off),
                                     dec_words.eq(rs_n >> 3), dec_nvalid.eq(~rs_last),
                                     dec_naddr.eq(r.va + rs_off + rs_n),
                                     dec_nwords.eq(Mux(rs_nn > p.mtu, p.mtu, rs_nn) >> 3)]
                        with m.If(rs_last):
                            m.d.comb += resp_f.r_en.eq(1)
                            m.d.sync += rs_off.eq(0)
                        with m.Else():
                            m.d.sync += rs_off.eq(rs_off + rs_n)
                    with m.Else():
                        m.d.comb += resp_f.r_en.eq(1)
                        m.d.sync += [f_qp.eq(r.qp), f_op.eq(S.OP_ACK), f_psn.eq(r.psn),
                                     f_ackreq.eq(0), f_syn.eq(r.syn), f_msn.eq(r.msn),
                                     f_plen.eq(0), hb.eq(0)]
                    m.next = "HDR"
                with m.Elif(enable & A["restart"][tx_rr]):
                    # go back: restart segmentation at the oldest incomplete WQE
                    qset(tx_rr, "restart", 0)
                    qset(tx_rr, "seg_valid", 0)
                    qset(tx_rr, "seg_idx", A["comp_idx"][tx_rr])
                    qset(tx_rr, "psn_next", rec_start[tx_rr])
                    qset(tx_rr, "skip_until", A["restart_psn"][tx_rr])
                with m.Elif(enable & can_fetch_a[tx_rr]):
                    idx = Mux(A["err"][tx_rr], A["sq_cons"][tx_rr], A["seg_idx"][tx_rr])
                    slot = idx & ((Const(1, 32) << A["sq_log2"][tx_rr]) - 1)
                    with m.If(inflight == 0):    # the WQE's R beats must not follow payload
                        m.d.sync += [fq.eq(tx_rr), f_new.eq(idx == A["sq_cons"][tx_rr]),
                                     f_psn0.eq(A["psn_next"][tx_rr]), fcount.eq(0),
                                     ar_addr.eq(A["sq_base"][tx_rr] + (slot << 5))]
                        m.next = "FETCH_AR"
                with m.Elif(enable & can_send_a[tx_rr]):
                    qset(tx_rr, "psn_next", (s_psn + s_npsn)[:24])
                    qset(tx_rr, "seg_off", s_off + s_n)
                    with m.If(s_done):
                        qset(tx_rr, "seg_valid", 0)
                        qset(tx_rr, "seg_idx", A["seg_idx"][tx_rr] + 1)
                    with m.If(~(s_retx | s_skip)):
                        qset(tx_rr, "psn_max", (s_psn + s_npsn)[:24])
                        with m.If(s_is_read):
                            # first transmission of a READ request: track its responses
                            rd_in = Signal(RdRec)
                            m.d.comb += [rd_in.start_psn.eq(s_psn),
                                         rd_in.last_psn.eq(s_psn + s_npsn - 1),
                                         rd_in.local.eq(A["seg_local"][tx_rr]),
                                         rd_in.length.eq(s_len)]
                            for q in range(nq):
                                with m.If(tx_rr == q):
                                    m.d.comb += [rdq[q].w_en.eq(1), rdq[q].w_data.eq(rd_in),
                                                 rdx_add[q].eq(s_npsn - 1)]
                    with m.If(~s_skip):
                        m.d.sync += [f_qp.eq(tx_rr), f_op.eq(s_op), f_psn.eq(s_psn),
                                     f_ackreq.eq(1), f_va.eq(A["seg_remote"][tx_rr]),
                                     f_rkey.eq(A["seg_rkey"][tx_rr]), f_dlen.eq(s_len),
                                     f_plen.eq(Mux(s_is_read, 0, s_n)),
                                     f_paddr.eq(A["seg_local"][tx_rr] + s_off),
                                     words_left.eq(Mux(s_is_read, 0, s_n >> 3)), hb.eq(0)]
                        s_nn = s_rem - s_n
                        m.d.comb += [dec_valid.eq(~s_is_read),
                                     dec_addr.eq(A["seg_local"][tx_rr] + s_off),
                                     dec_words.eq(s_n >> 3), dec_nvalid.eq(~s_done),
                                     dec_naddr.eq(A["seg_local"][tx_rr] + s_off + s_n),
                                     dec_nwords.eq(Mux(s_nn > p.mtu, p.mtu, s_nn) >> 3)]
                        count("retransmits", s_retx)
                        m.next = "HDR"
                with m.Else():
                    m.d.sync += tx_rr.eq(Mux(tx_rr == nq - 1, 0, tx_rr + 1))

            with m.State("FETCH_AR"):
                m.d.comb += [axi.arvalid.eq(1), axi.araddr.eq(ar_addr), axi.arlen.eq(_WQE_WORDS - 1)]
                with m.If(axi.arready):
                    m.next = "FETCH_R"
            with m.State("FETCH_R"):
                m.d.comb += axi.rready.eq(1)
                with m.If(axi.rvalid):
                    for k in range(_WQE_WORDS):
                        with m.If(fcount == k):
                            m.d.sync += fw[k].eq(axi.rdata)
                    m.d.sync += fcount.eq(fcount + 1)
                    with m.If(axi.rlast):
                        m.next = "FETCH_DONE"
            with m.State("FETCH_DONE"):
                err = A["err"][fq]
                status = Mux(w_bad, S.CQ_BAD_WQE, Mux(err, S.CQ_FLUSHED, S.CQ_OK))
                with m.If(f_new):
                    rec_in = Signal(Record)
                    m.d.comb += [rec_in.start_psn.eq(f_psn0),
                                 rec_in.first_psn.eq(Mux(w_bad | err, 0, f_psn0)),
                                 rec_in.last_psn.eq(f_psn0 + w_npsn - 1), rec_in.wr_id.eq(w_wrid),
                                 rec_in.opcode.eq(w_opcode),
                                 rec_in.signaled.eq(w_flags[0]), rec_in.length.eq(w_len),
                                 rec_in.status.eq(status)]
                    for q in range(nq):
                        with m.If(fq == q):
                            m.d.comb += [rec[q].w_en.eq(1), rec[q].w_data.eq(rec_in)]
                    qset(fq, "sq_cons", A["sq_cons"][fq] + 1)
                with m.If(~err & ~A["restart"][fq]):
                    with m.If(w_bad):
                        qset(fq, "seg_idx", A["seg_idx"][fq] + 1)
                    with m.Else():
                        qset(fq, "seg_valid", 1)
                        qset(fq, "seg_off", 0)
                        qset(fq, "seg_opcode", w_opcode)
                        qset(fq, "seg_local", w_local)
                        qset(fq, "seg_remote", w_remote)
                        qset(fq, "seg_len", w_len)
                        qset(fq, "seg_rkey", w_rkey)
                m.next = "IDLE"

            with m.State("HDR"):
                m.d.comb += [txs.valid.eq(1), txs.payload.data.eq(hdr_beats[hb])]
                with m.If(txs.ready):
                    m.d.sync += hb.eq(hb + 1)
                    with m.If(hb == n_full - 1):
                        m.d.sync += carry.eq(tail)
                        with m.If(f_plen == 0):
                            m.next = "TAIL"
                        with m.Else():
                            m.next = "PAY"
            with m.State("PAY"):
                rd = pfifo.r_data
                have = pfifo.r_rdy & (drop == 0)
                m.d.comb += [txs.valid.eq(have), pay_take.eq(txs.ready),
                             txs.payload.data.eq(Mux(r6, Cat(carry[:48], rd[:16]),
                                                     Cat(carry[:16], rd[:48])))]
                with m.If(have & txs.ready):
                    m.d.sync += [carry.eq(Mux(r6, rd[16:64], rd[48:64])), words_left.eq(words_left - 1)]
                    with m.If(words_left == 1):
                        m.next = "TAIL"
            with m.State("TAIL"):
                m.d.comb += [txs.valid.eq(1), txs.payload.data.eq(carry),
                             txs.payload.keep.eq(Mux(r6, 0x3F, 0x03)), txs.payload.last.eq(1)]
                with m.If(txs.ready):
                    m.next = "IDLE"

        # payload AR issue: whenever ar_left != 0 and the FIFO has room for the burst
        ar_take = Signal()
        credit_ok = (pfifo.level + inflight + blen) <= pf_depth
        with m.If((ar_left != 0) & credit_ok):
            m.d.comb += [axi.arvalid.eq(1), axi.araddr.eq(ar_addr), axi.arlen.eq(blen - 1)]
            with m.If(axi.arready):
                m.d.comb += ar_take.eq(1)
        # payload R beats into the FIFO (a WQE fetch only starts with none in flight)
        r_push = Signal()
        with m.If(inflight != 0):
            m.d.comb += [axi.rready.eq(pfifo.w_rdy), pfifo.w_en.eq(axi.rvalid),
                         pfifo.w_data.eq(axi.rdata), r_push.eq(axi.rvalid & pfifo.w_rdy)]
        m.d.sync += inflight.eq(inflight + Mux(ar_take, blen, 0) - r_push)
        drop_pop = (drop != 0) & pfifo.r_rdy
        m.d.comb += pfifo.r_en.eq(Mux(drop != 0, 1, pay_take))
        drop_add = Signal.like(drop)
        m.d.sync += drop.eq(drop + drop_add - drop_pop)
        # a frame with payload decided in IDLE (the issuer is idle then): if its payload is
        # the one requested ahead, request its successor at once; otherwise discard the
        # words requested ahead, request this one and queue the successor behind it.
        # Re-initialising a queue pair discards the words requested ahead (the buffers may be
        # rewritten before the queue pair is used again).
        m.d.comb += pf_kill.eq(Cat(*qp_init).any() & (pf_valid | nx_valid))
        match = pf_valid & (pf_addr == dec_addr) & (pf_words == dec_words)
        with m.If(pf_kill):
            m.d.comb += drop_add.eq(Mux(pf_valid, pf_words, 0))
            m.d.sync += [pf_valid.eq(0), nx_valid.eq(0)]
            with m.If(ar_take):
                m.d.sync += [ar_addr.eq(ar_addr + (blen << 3)), ar_left.eq(ar_left - blen)]
        with m.Elif(dec_valid & match):
            m.d.sync += [ar_addr.eq(dec_naddr), ar_left.eq(Mux(dec_nvalid, dec_nwords, 0)),
                         pf_valid.eq(dec_nvalid), pf_addr.eq(dec_naddr),
                         pf_words.eq(dec_nwords)]
        with m.Elif(dec_valid):
            m.d.comb += drop_add.eq(Mux(pf_valid, pf_words, 0))
            m.d.sync += [ar_addr.eq(dec_addr), ar_left.eq(dec_words), pf_valid.eq(0),
                         nx_valid.eq(dec_nvalid), nx_addr.eq(dec_naddr),
                         nx_words.eq(dec_nwords)]
        with m.Elif(ar_take):
            m.d.sync += [ar_addr.eq(ar_addr + (blen << 3)), ar_left.eq(ar_left - blen)]
        with m.Elif((ar_left == 0) & nx_valid):
            m.d.sync += [ar_addr.eq(nx_addr), ar_left.eq(nx_words), nx_valid.eq(0),
                         pf_valid.eq(1), pf_addr.eq(nx_addr), pf_words.eq(nx_words)]

        # ================================ RX engine ==========================================
        h = [Signal(64, name=f"rx_h{k}") for k in range(9)]
        hbyte = [h[k // 8][8 * (k % 8):8 * (k % 8) + 8] for k in range(72)]
        rb = Signal(4)
        seen_last = Signal()
        r_op = hbyte[42]
        r_reth = Cat(*[r_op == o for o in S.OPS_WITH_RETH]).any()
        r_aeth = Cat(*[r_op == o for o in S.OPS_WITH_AETH]).any()
        r_hlast = Mux(r_reth, 8, Mux(r_aeth, 7, 6))
        r_r6 = ~r_aeth
        r_total = _be(hbyte[16:18])
        r_dqpn = _be(hbyte[47:50])
        r_ackreq = hbyte[50][7]
        r_psn = _be(hbyte[51:54])
        r_va = _be(hbyte[54:62])
        r_rkey = _be(hbyte[62:66])
        r_dlen = _be(hbyte[66:70])
        r_syn = hbyte[54]
        r_n = Signal(16)
        m.d.comb += r_n.eq(r_total - (S.IPV4_HDR + S.UDP_HDR + S.BTH_LEN + S.ICRC_LEN)
                           - Mux(r_reth, S.RETH_LEN, Mux(r_aeth, S.AETH_LEN, 0)))
        rq = Signal(range(max(nq, 2)))
        r_qidx = (r_dqpn - S.QPN_BASE)[:24]
        m.d.comb += rq.eq(r_qidx)
        r_badqp = (r_dqpn < S.QPN_BASE) | (r_qidx >= nq) | ~A["ready"][rq]
        r_is_req = Cat(*[r_op == o for o in S.OPS_REQUEST]).any()
        is_write = Cat(*[r_op == o for o in (S.OP_WRITE_FIRST, S.OP_WRITE_MIDDLE, S.OP_WRITE_LAST,
                                             S.OP_WRITE_ONLY)]).any()
        is_send = Cat(*[r_op == o for o in (S.OP_SEND_FIRST, S.OP_SEND_MIDDLE, S.OP_SEND_LAST,
                                            S.OP_SEND_ONLY)]).any()
        is_readreq = r_op == S.OP_READ_REQUEST
        starts = Cat(*[r_op == o for o in (S.OP_WRITE_FIRST, S.OP_WRITE_ONLY, S.OP_SEND_FIRST,
                                           S.OP_SEND_ONLY, S.OP_READ_REQUEST)]).any()
        ends = Cat(*[r_op == o for o in (S.OP_WRITE_LAST, S.OP_WRITE_ONLY, S.OP_SEND_LAST,
                                         S.OP_SEND_ONLY, S.OP_READ_REQUEST)]).any()
        family = Mux(is_write, 1, Mux(is_send, 2, 3))

        # protection windows (CSR state)
        nw = p.n_windows
        W = {k: [Signal(wd, name=f"win{w}_{k}") for w in range(nw)]
             for k, wd in (("base", 64), ("length", 32), ("key", 32), ("perm", 3))}

        def window_ok(rkey, va, length, perm):
            hits = []
            for w in range(nw):
                end = Cat(va, Const(0, 1)) + length
                hits.append((W["perm"][w][2]) & (W["key"][w] == rkey) & (W["perm"][w] & perm).any()
                            & (va >= W["base"][w])
                            & (end <= Cat(W["base"][w], Const(0, 1)) + W["length"][w]))
            return Cat(*hits).any()

        epsn = A["epsn"][rq]
        msn = A["msn"][rq]
        d_psn = (r_psn - epsn)[:24]
        r_dup = d_psn[23]
        r_ahead = (d_psn != 0) & ~d_psn[23]
        in_msg = A["in_msg"][rq]
        seq_bad = (starts != (in_msg == 0)) | (~starts & (in_msg != family))
        wl = Mux(starts, r_dlen, A["wr_left"][rq])
        fill = Mux(starts, 0, A["rq_fill"][rq])
        # one window comparator for WRITE first/only (remote write) and READ (remote read)
        w_win = window_ok(r_rkey, r_va, r_dlen,
                          Mux(is_readreq, S.PERM_REMOTE_READ, S.PERM_REMOTE_WRITE))
        rd_bad = ((r_dlen[:3] != 0) | (r_dlen < 8) | (r_dlen > p.max_msg) | (r_va[:3] != 0))
        rd_npsn = ((r_dlen + p.mtu - 1) >> mtu_log2)[:24]
        nak = Signal(8)          # 0: execute
        with m.If(seq_bad):
            m.d.comb += nak.eq(S.AETH_NAK_INVALID_REQ)
        with m.Elif(is_readreq):
            with m.If(rd_bad):
                m.d.comb += nak.eq(S.AETH_NAK_INVALID_REQ)
            with m.Elif(~w_win):
                m.d.comb += nak.eq(S.AETH_NAK_REMOTE_ACCESS)
        with m.Elif(is_write):
            with m.If(starts & ~w_win):
                m.d.comb += nak.eq(S.AETH_NAK_REMOTE_ACCESS)
            with m.Elif((r_n > wl) | (ends & (r_n != wl)) | (~ends & (r_n != p.mtu))):
                m.d.comb += nak.eq(S.AETH_NAK_INVALID_REQ)
        with m.Else():
            slot_size = Const(1, 33) << A["rq_slot_log2"][rq]
            with m.If((fill + r_n > slot_size) | (~ends & (r_n != p.mtu))):
                m.d.comb += nak.eq(S.AETH_NAK_INVALID_REQ)
        slot_addr = (A["rq_base"][rq] + ((A["rq_idx"][rq] & ((Const(1, 32) << A["rq_log2"][rq]) - 1))
                                         << A["rq_slot_log2"][rq]))
        dest = Mux(is_write, Mux(starts, r_va, A["wr_va"][rq]), slot_addr + fill)
        msn_new = Mux(ends, msn + 1, msn)[:24]

        # requester side of an ACK
        una = A["una"][rq]
        pmax = A["psn_max"][rq]
        r_syn_ack = r_syn[5:8] == 0
        r_syn_seq = r_syn == S.AETH_NAK_PSN_SEQ
        is_rresp = Cat(*[r_op == o for o in (S.OP_READ_RESP_FIRST, S.OP_READ_RESP_MIDDLE,
                                             S.OP_READ_RESP_LAST, S.OP_READ_RESP_ONLY)]).any()
        # an ACK retires through its PSN; a NAK or a READ response through the PSN before it
        through = Mux(r_syn_ack & ~is_rresp, r_psn, (r_psn - 1)[:24])
        una_raw = Mux(~_psn_lt(through, (pmax - 1)[:24]), pmax,
                      Mux(~_psn_lt(through, una), (through + 1)[:24], una))
        # ... but never past the oldest incomplete READ (complete only when all its responses
        # arrived in order)
        rd_rdy_a = Array([f.r_rdy for f in rdq])
        rd_h = Array(rd_head)[rq]
        rd_pending = rd_rdy_a[rq]
        past_read = rd_pending & ((una_raw - una)[:24] > (rd_h.start_psn - una)[:24])
        una_new = Signal(24)
        m.d.comb += una_new.eq(Mux(past_read, rd_h.start_psn, una_raw))
        # READ response acceptance: the next response of the oldest incomplete READ, with the
        # expected payload length
        rd_next = (rd_h.start_psn + A["rcnt"][rq])[:24]
        rd_off = Signal(32)
        m.d.comb += rd_off.eq(Cat(Const(0, mtu_log2), A["rcnt"][rq]))
        rd_is_last = r_psn == rd_h.last_psn
        rd_exp = Mux(rd_is_last, rd_h.length - rd_off, p.mtu)
        rd_live = ~A["err"][rq] & (una != pmax) & rd_pending
        rd_accept = rd_live & (r_psn == rd_next) & (r_n == rd_exp[:16]) & (rd_exp[16:] == 0)
        # a response beyond the next expected one of the head READ: one was lost
        rd_ahead_d = (r_psn - rd_next)[:24]
        rd_ahead = rd_live & (rd_ahead_d != 0) & (rd_ahead_d <= (rd_h.last_psn - rd_next)[:24])

        # payload write bookkeeping
        wr_addr = Signal(aw)
        wr_words = Signal(14)
        wr_burst = Signal(9)
        rcarry = Signal(48)
        rr6 = Signal()
        wblen = Signal(14)
        wto4k = (1 << 9) - wr_addr[3:12]
        wblen0 = Signal(14)
        m.d.comb += [wblen0.eq(Mux(wr_words < wto4k, wr_words, wto4k)),
                     wblen.eq(Mux(wblen0 > 128, 128, wblen0))]

        rx_decide = Signal()
        rx_needs_write = Signal()
        cqe_in = Signal(Cqe)
        resp_in = Signal(Resp)
        m.d.comb += [resp_f.w_data.eq(resp_in), rcqe_f.w_data.eq(cqe_in)]

        def read_respond(psn):
            """Queue the READ responses for the request in the header (PSNs from ``psn``)."""
            m.d.comb += [resp_in.qp.eq(rq), resp_in.read.eq(1), resp_in.psn.eq(psn),
                         resp_in.msn.eq(msn), resp_in.syn.eq(S.AETH_ACK), resp_in.va.eq(r_va),
                         resp_in.length.eq(r_dlen), resp_f.w_en.eq(1)]

        def respond(syn, psn, msn_v):
            m.d.comb += [resp_in.qp.eq(rq), resp_in.syn.eq(syn), resp_in.psn.eq(psn),
                         resp_in.msn.eq(msn_v), resp_f.w_en.eq(1)]
            name = {S.AETH_ACK: "tx_ack", S.AETH_NAK_PSN_SEQ: "tx_nak_seq",
                    S.AETH_NAK_REMOTE_ACCESS: "tx_nak_access"}
            if isinstance(syn, int):
                count(name.get(syn, "tx_nak_inv"))
            else:
                count("tx_nak_access", syn == S.AETH_NAK_REMOTE_ACCESS)
                count("tx_nak_inv", syn == S.AETH_NAK_INVALID_REQ)

        m.d.comb += rxs.ready.eq(0)
        with m.FSM(name="rx"):
            with m.State("HDR"):
                m.d.comb += rxs.ready.eq(1)
                with m.If(rxs.valid):
                    for k in range(9):
                        with m.If(rb == k):
                            m.d.sync += h[k].eq(rxs.payload.data)
                    m.d.sync += [rb.eq(rb + 1), seen_last.eq(rxs.payload.last)]
                    # header complete at beat r_hlast (r_op is known from beat 5 on)
                    with m.If((rb >= 6) & (rb == r_hlast)):
                        m.next = "DECIDE"
                    with m.Elif(rxs.payload.last):
                        m.d.sync += rb.eq(0)          # cannot happen for checked frames
            with m.State("DECIDE"):
                m.d.comb += rx_decide.eq(1)
                fire = resp_f.w_rdy & rcqe_f.w_rdy
                m.d.sync += [rcarry.eq(Mux(r_r6, Array(h)[r_hlast][48:64], Array(h)[r_hlast][16:64])),
                             rr6.eq(r_r6)]
                goto_drain = Signal()
                with m.If(r_badqp):
                    count("rx_bad_qp", 1)
                    m.d.comb += goto_drain.eq(1)
                with m.Elif(r_is_req):
                    with m.If(r_dup):
                        with m.If(fire):
                            count("rx_dup", 1)
                            with m.If(is_readreq):
                                # a duplicate READ is executed again (same PSNs)
                                with m.If(w_win & (r_dlen != 0)):
                                    read_respond(r_psn)
                            with m.Elif(r_ackreq):
                                respond(S.AETH_ACK, (epsn - 1)[:24], msn)
                            m.d.comb += goto_drain.eq(1)
                    with m.Elif(r_ahead):
                        with m.If(fire):
                            count("rx_seq_err", 1)
                            with m.If(~A["nak_sent"][rq]):
                                qset(rq, "nak_sent", 1)
                                respond(S.AETH_NAK_PSN_SEQ, epsn, msn)
                            m.d.comb += goto_drain.eq(1)
                    with m.Elif(nak != 0):
                        with m.If(fire):
                            qset(rq, "in_msg", 0)
                            qset(rq, "nak_sent", 1)
                            with m.If(is_write & starts & w_win):
                                qset(rq, "wr_va", r_va)
                                qset(rq, "wr_left", r_dlen)
                            with m.If(is_send & starts):
                                qset(rq, "rq_fill", 0)
                                qset(rq, "rq_first_psn", r_psn)
                            respond(nak, r_psn, msn)
                            m.d.comb += goto_drain.eq(1)
                    with m.Else():
                        m.d.comb += rx_needs_write.eq(r_n != 0)
                        with m.If(fire & ((r_n == 0) | (wlock == 0))):
                            qset(rq, "nak_sent", 0)
                            qset(rq, "in_msg", Mux(ends, 0, family))
                            qset(rq, "epsn", (epsn + Mux(is_readreq, rd_npsn, 1))[:24])
                            qset(rq, "msn", msn_new)
                            with m.If(is_write):
                                qset(rq, "wr_va", dest + r_n)
                                qset(rq, "wr_left", wl - r_n)
                            with m.Elif(is_send):
                                qset(rq, "rq_fill", fill + r_n)
                                with m.If(starts):
                                    qset(rq, "rq_first_psn", r_psn)
                            with m.Else():
                                read_respond(r_psn)     # READ: the responses are the answer
                            with m.If(is_send & ends):
                                m.d.comb += [cqe_in.qp.eq(rq),
                                             cqe_in.wr_id.eq(A["rq_idx"][rq] & ((Const(1, 32) << A["rq_log2"][rq]) - 1)),
                                             cqe_in.status.eq(S.CQ_OK), cqe_in.opcode.eq(S.CQE_RECV),
                                             cqe_in.byte_len.eq(fill + r_n),
                                             cqe_in.psn.eq(Mux(starts, r_psn, A["rq_first_psn"][rq])),
                                             rcqe_f.w_en.eq(1)]
                                qset(rq, "rq_idx", A["rq_idx"][rq] + 1)
                            with m.If(r_ackreq & ~is_readreq):
                                respond(S.AETH_ACK, r_psn, msn_new)
                            with m.If(r_n != 0):
                                m.d.sync += [wlock.eq(1), wr_addr.eq(dest), wr_words.eq(r_n >> 3)]
                                m.next = "AW"
                            with m.Else():
                                m.d.comb += goto_drain.eq(1)
                with m.Elif(is_rresp):
                    # READ response for our request: implicit ACK of the requests before it,
                    # then its payload lands in the local buffer if it is the next one expected
                    m.d.comb += rx_needs_write.eq(rd_accept)
                    with m.If(fire & (~rd_accept | (wlock == 0))):
                        with m.If(~A["err"][rq] & (una != pmax)):
                            with m.If(rd_accept & rd_is_last):
                                qset(rq, "una", (r_psn + 1)[:24])
                            with m.Else():
                                qset(rq, "una", una_new)
                            with m.If(rd_accept | (una_new != una)):
                                qset(rq, "tmr", 0)
                                qset(rq, "retries", 0)
                        with m.If(rd_ahead & ~A["rd_gap"][rq]):
                            # go back to the READ at once (once until a response is taken)
                            qset(rq, "rd_gap", 1)
                            qset(rq, "restart", 1)
                            qset(rq, "restart_psn", rd_h.start_psn)
                        with m.If(rd_accept):
                            qset(rq, "rd_gap", 0)
                            with m.If(rd_is_last):
                                qset(rq, "rcnt", 0)
                                for q in range(nq):
                                    with m.If(rq == q):
                                        m.d.comb += [rdq[q].r_en.eq(1),
                                                     rdx_sub[q].eq(rd_h.last_psn - rd_h.start_psn)]
                            with m.Else():
                                qset(rq, "rcnt", A["rcnt"][rq] + 1)
                            m.d.sync += [wlock.eq(1), wr_addr.eq(rd_h.local + rd_off),
                                         wr_words.eq(r_n >> 3)]
                            m.next = "AW"
                        with m.Else():
                            m.d.comb += goto_drain.eq(1)
                with m.Else():
                    # ACK / NAK for our requests
                    with m.If(fire):
                        m.d.comb += goto_drain.eq(1)
                        with m.If(~A["err"][rq] & (una != pmax) & (r_op == S.OP_ACK)):
                            with m.If(~r_syn_ack):
                                count("rx_nak", 1)
                            qset(rq, "una", una_new)
                            with m.If(una_new != una):
                                qset(rq, "tmr", 0)
                                qset(rq, "retries", 0)
                            with m.If(r_syn_seq):
                                inside = ~_psn_lt(r_psn, una_new) & _psn_lt(r_psn, pmax)
                                qset(rq, "restart", 1)
                                qset(rq, "restart_psn", Mux(inside, r_psn, una_new))
                            with m.Elif(~r_syn_ack & (una_new == r_psn) & (una_new != pmax)):
                                qset(rq, "err", 1)
                                qset(rq, "err_first", 1)
                                qset(rq, "err_status", Mux(r_syn == S.AETH_NAK_REMOTE_ACCESS,
                                                           S.CQ_REMOTE_ACCESS_ERR,
                                                           S.CQ_REMOTE_INVALID_REQ))
                with m.If(goto_drain):
                    m.next = "DRAIN"
            with m.State("AW"):
                m.d.comb += [axi.awvalid.eq(1), axi.awaddr.eq(wr_addr), axi.awlen.eq(wblen - 1)]
                with m.If(axi.awready):
                    m.d.sync += [wr_burst.eq(wblen), wr_addr.eq(wr_addr + (wblen << 3)),
                                 wr_words.eq(wr_words - wblen)]
                    m.next = "W"
            with m.State("W"):
                d = rxs.payload.data
                m.d.comb += [axi.wvalid.eq(rxs.valid), rxs.ready.eq(axi.wready),
                             axi.wdata.eq(Mux(rr6, Cat(rcarry[:16], d[:48]), Cat(rcarry[:48], d[:16]))),
                             axi.wlast.eq(wr_burst == 1)]
                with m.If(rxs.valid & axi.wready):
                    m.d.sync += [rcarry.eq(Mux(rr6, d[48:64], d[16:64])), wr_burst.eq(wr_burst - 1),
                                 seen_last.eq(rxs.payload.last)]
                    with m.If(wr_burst == 1):
                        with m.If(wr_words != 0):
                            m.next = "AW"
                        with m.Else():
                            m.d.sync += wlock.eq(0)
                            m.next = "DRAIN"
            with m.State("DRAIN"):
                with m.If(seen_last):
                    m.d.sync += [rb.eq(0), seen_last.eq(0)]
                    m.next = "HDR"
                with m.Else():
                    m.d.comb += rxs.ready.eq(1)
                    with m.If(rxs.valid & rxs.payload.last):
                        m.d.sync += rb.eq(0)
                        m.next = "HDR"

        # ================================ timers =============================================
        for q in range(nq):
            t = Q["tmr"][q]
            active = Q["ready"][q] & ~Q["err"][q] & outstanding[q]
            rx_touch = rx_decide & (rq == q)
            with m.If(~active):
                m.d.sync += t.eq(0)
            with m.Elif(~rx_touch):
                with m.If(t + 1 >= timeout):
                    m.d.sync += [t.eq(0), Q["retries"][q].eq(Q["retries"][q] + 1)]
                    count("timeouts", 1)
                    with m.If(Q["retries"][q] >= retry_limit):
                        m.d.sync += [Q["err"][q].eq(1), Q["err_first"][q].eq(1),
                                     Q["err_status"][q].eq(S.CQ_RETRY_EXCEEDED)]
                    with m.Else():
                        m.d.sync += [Q["restart"][q].eq(1), Q["restart_psn"][q].eq(Q["una"][q])]
                with m.Else():
                    m.d.sync += t.eq(t + 1)

        # ================================ completion engine ==================================
        cq_rr = Signal(range(max(nq, 2)))
        c = Signal(Cqe)
        c_recv = Signal()
        head = Array(rec_head)[cq_rr]
        c_err = A["err"][cq_rr]
        acked = ~head.status.any() & _psn_lt(head.last_psn, A["una"][cq_rr])
        c_status = Signal(3)
        m.d.comb += c_status.eq(Mux(head.status != S.CQ_OK, head.status,
                                    Mux(acked, S.CQ_OK,
                                        Mux(A["err_first"][cq_rr], A["err_status"][cq_rr],
                                            S.CQ_FLUSHED))))
        retire = rec_rdy[cq_rr] & ~A["restart"][cq_rr] & ((head.status != S.CQ_OK) | acked | c_err)
        beat0 = Cat(c.wr_id, c.status, c.opcode, c.qp, Const(0, 8))
        with m.FSM(name="cq"):
            with m.State("IDLE"):
                with m.If(rcqe_f.r_rdy):
                    m.d.comb += rcqe_f.r_en.eq(1)
                    m.d.sync += [c.eq(rcqe_f.r_data), c_recv.eq(1)]
                    m.next = "LOCK"
                with m.Elif(retire):
                    for q in range(nq):
                        with m.If(cq_rr == q):
                            m.d.comb += rec[q].r_en.eq(1)
                    qset(cq_rr, "comp_idx", A["comp_idx"][cq_rr] + 1)
                    with m.If(~head.status.any() & ~acked & c_err):
                        qset(cq_rr, "err_first", 0)
                    m.d.sync += [c.qp.eq(cq_rr), c.wr_id.eq(head.wr_id), c.status.eq(c_status),
                                 c.opcode.eq(head.opcode),
                                 c.byte_len.eq(Mux(c_status == S.CQ_OK, head.length, 0)),
                                 c.psn.eq(Mux(c_status == S.CQ_FLUSHED, 0, head.first_psn)),
                                 c_recv.eq(0)]
                    with m.If((c_status != S.CQ_OK) | head.signaled):
                        m.next = "LOCK"
                with m.Else():
                    m.d.sync += cq_rr.eq(Mux(cq_rr == nq - 1, 0, cq_rr + 1))
            with m.State("LOCK"):
                with m.If((wlock == 0) & ~(rx_decide & rx_needs_write)):
                    m.d.sync += wlock.eq(2)
                    m.next = "AW"
            with m.State("AW"):
                cq = c.qp[:len(cq_rr)] if nq > 1 else Const(0, 1)
                slot = A["cq_prod"][cq] & ((Const(1, 32) << A["cq_log2"][cq]) - 1)
                m.d.comb += [axi.awvalid.eq(1), axi.awaddr.eq(A["cq_base"][cq] + (slot << 4)),
                             axi.awlen.eq(1)]
                with m.If(axi.awready):
                    m.next = "W0"
            with m.State("W0"):
                cq = c.qp[:len(cq_rr)] if nq > 1 else Const(0, 1)
                phase = ~(A["cq_prod"][cq] >> A["cq_log2"][cq])[0]
                m.d.comb += [axi.wvalid.eq(1), axi.wdata.eq(beat0 | (phase.as_unsigned() << 56))]
                with m.If(axi.wready):
                    m.next = "W1"
            with m.State("W1"):
                cq = c.qp[:len(cq_rr)] if nq > 1 else Const(0, 1)
                m.d.comb += [axi.wvalid.eq(1), axi.wdata.eq(Cat(c.byte_len, c.psn)), axi.wlast.eq(1)]
                with m.If(axi.wready):
                    qset(cq, "cq_prod", A["cq_prod"][cq] + 1)
                    count("recv_done", c_recv)
                    count("wqe_done", ~c_recv)
                    m.d.comb += self.cq_event.eq(1)
                    m.d.sync += wlock.eq(0)
                    m.next = "IDLE"

        # ================================ CSRs ===============================================
        lite = self.s_axil
        rdata = Signal(32)
        rresp = Signal(2)
        rvalid = Signal()
        bvalid = Signal()
        bresp = Signal(2)
        m.d.comb += [lite.rdata.eq(rdata), lite.rresp.eq(rresp), lite.rvalid.eq(rvalid),
                     lite.bvalid.eq(bvalid), lite.bresp.eq(bresp)]
        counters = cnt.values
        ro_qp = {"sq_cons", "cq_prod"}
        regs64 = {"sq_base", "cq_base", "rq_base"}

        def qp_fields(q):
            """(offset, read value, writable target or None)"""
            out = []
            for name, off in S.QP_REGS.items():
                if name == "ctrl":
                    out.append((off, Q["ready"][q], "ctrl"))
                elif name == "dest_mac_lo":
                    out.append((off, Q["dest_mac"][q][:32], (Q["dest_mac"][q], 0, 32)))
                elif name == "dest_mac_hi":
                    out.append((off, Q["dest_mac"][q][32:], (Q["dest_mac"][q], 32, 16)))
                elif name.endswith("_lo") and name[:-3] in regs64:
                    s = Q[name[:-3]][q]
                    out.append((off, s[:32], (s, 0, 32)))
                elif name.endswith("_hi") and name[:-3] in regs64:
                    s = Q[name[:-3]][q]
                    out.append((off, s[32:], (s, 32, 32)))
                else:
                    s = Q[name][q]
                    out.append((off, s, None if name in ro_qp else (s, 0, len(s))))
            return out

        # read
        with m.If(rvalid):
            with m.If(lite.rready):
                m.d.sync += rvalid.eq(0)
        with m.Elif(lite.arvalid):
            m.d.comb += lite.arready.eq(1)
            m.d.sync += [rvalid.eq(1), rresp.eq(RESP_OKAY), rdata.eq(0)]
            a = lite.araddr
            with m.Switch(a):
                with m.Case(S.CSR_ID):
                    m.d.sync += rdata.eq(S.CSR_ID_VALUE)
                with m.Case(S.CSR_CTRL):
                    m.d.sync += rdata.eq(enable)
                with m.Case(S.CSR_MAC_LO):
                    m.d.sync += rdata.eq(my_mac[:32])
                with m.Case(S.CSR_MAC_HI):
                    m.d.sync += rdata.eq(my_mac[32:])
                with m.Case(S.CSR_IP):
                    m.d.sync += rdata.eq(my_ip)
                with m.Case(S.CSR_RETX_TIMEOUT):
                    m.d.sync += rdata.eq(timeout)
                with m.Case(S.CSR_RETRY_LIMIT):
                    m.d.sync += rdata.eq(retry_limit)
                for k in range(len(S.COUNTERS)):
                    with m.Case(S.CSR_COUNTER_BASE + 4 * k):
                        m.d.sync += rdata.eq(counters[k])
                for q in range(nq):
                    for off, val, _ in qp_fields(q):
                        with m.Case(S.CSR_QP_BASE + q * S.CSR_QP_STRIDE + off):
                            m.d.sync += rdata.eq(val)
                for w in range(nw):
                    for name in S.WIN_REGS:
                        with m.Case(S.win_reg(w, name)):
                            if name == "base_lo":
                                src = W["base"][w][:32]
                            elif name == "base_hi":
                                src = W["base"][w][32:]
                            else:
                                src = W[name][w]
                            m.d.sync += rdata.eq(src)
                with m.Default():
                    m.d.sync += rresp.eq(RESP_DECERR)
        # write (address and data together)
        with m.If(bvalid):
            with m.If(lite.bready):
                m.d.sync += bvalid.eq(0)
        with m.Elif(lite.awvalid & lite.wvalid):
            m.d.comb += [lite.awready.eq(1), lite.wready.eq(1)]
            m.d.sync += [bvalid.eq(1), bresp.eq(RESP_OKAY)]
            a, v = lite.awaddr, lite.wdata
            full_strobe = lite.wstrb == 0xF
            with m.If(~full_strobe):
                m.d.sync += bresp.eq(RESP_SLVERR)
            with m.Else():
                with m.Switch(a):
                    with m.Case(S.CSR_CTRL):
                        m.d.sync += enable.eq(v[0])
                    with m.Case(S.CSR_MAC_LO):
                        m.d.sync += my_mac[:32].eq(v)
                    with m.Case(S.CSR_MAC_HI):
                        m.d.sync += my_mac[32:].eq(v[:16])
                    with m.Case(S.CSR_IP):
                        m.d.sync += my_ip.eq(v)
                    with m.Case(S.CSR_RETX_TIMEOUT):
                        m.d.sync += timeout.eq(v)
                    with m.Case(S.CSR_RETRY_LIMIT):
                        m.d.sync += retry_limit.eq(v[:8])
                    with m.Case(S.CSR_ID, *[S.CSR_COUNTER_BASE + 4 * k for k in range(len(S.COUNTERS))]):
                        m.d.sync += bresp.eq(RESP_SLVERR)
                    for q in range(nq):
                        for off, _, tgt in qp_fields(q):
                            with m.Case(S.CSR_QP_BASE + q * S.CSR_QP_STRIDE + off):
                                if tgt is None:
                                    m.d.sync += bresp.eq(RESP_SLVERR)
                                elif tgt == "ctrl":
                                    m.d.sync += Q["ready"][q].eq(v[0])
                                    with m.If(v[0]):
                                        self._qp_init(m, Q, q, qp_init[q])
                                else:
                                    sig, lo, width = tgt
                                    m.d.sync += sig[lo:lo + width].eq(v[:width])
                    for w in range(nw):
                        for name in S.WIN_REGS:
                            with m.Case(S.win_reg(w, name)):
                                if name == "base_lo":
                                    m.d.sync += W["base"][w][:32].eq(v)
                                elif name == "base_hi":
                                    m.d.sync += W["base"][w][32:].eq(v)
                                else:
                                    sig = W[name][w]
                                    m.d.sync += sig.eq(v[:len(sig)])
                    with m.Default():
                        m.d.sync += bresp.eq(RESP_DECERR)

        # ================================ counters and idle =================================
        for name, srcs in inc.items():  # noqa: B007
            if srcs:
                cnt.add(m, name, sum(srcs))
        for name, sig in (("rx_not_roce", mrx.drop_not_roce), ("rx_icrc_err", mrx.drop_icrc)):
            cnt.add(m, name, sig)

        busy_q = []
        for q in range(nq):
            busy_q.append(Q["ready"][q] & (
                (~Q["err"][q] & (outstanding[q] | Q["seg_valid"][q] | Q["restart"][q]
                                 | (Q["seg_idx"][q] != Q["sq_prod"][q])))
                | (Q["err"][q] & have_new[q]) | rec[q].r_rdy))
        m.d.comb += self.idle.eq(~Cat(*busy_q).any() & ~resp_f.r_rdy & ~rcqe_f.r_rdy
                                 & ~rxs.valid & (wlock == 0) & ~txs.valid & ~mtx.o.valid
                                 & (ar_left == 0) & ~nx_valid & (inflight == 0) & (drop == 0))
        return m

    @staticmethod
    def _qp_init(m, Q, q, init_strobe):
        """ctrl.ready written 1: restart the queue pair from its configured PSNs."""
        m.d.comb += init_strobe.eq(1)
        for name in ("sq_prod", "sq_cons", "cq_prod", "err", "err_first", "seg_valid", "seg_idx",
                     "seg_off", "comp_idx", "restart", "tmr", "retries", "rcnt", "rd_extra", "rd_gap",
                     "msn", "nak_sent", "in_msg", "rq_idx", "rq_fill", "wr_left"):
            m.d.sync += Q[name][q].eq(0)
        for name in ("psn_next", "psn_max", "una", "skip_until"):
            m.d.sync += Q[name][q].eq(Q["sq_psn"][q])
        m.d.sync += Q["epsn"][q].eq(Q["rq_psn"][q])


class NicPair(wiring.Component):
    """Verilog top ``nic_pair``: two NICs, ``a`` and ``b``, side by side with separate ports
    (``a_m_axi``, ``a_s_axil``, ``a_wire_tx``, ``a_wire_rx``, ``a_idle`` and the same for
    ``b``). The wires are not connected inside: the cocotb bench joins them through its link
    model (loss, duplication, reordering, corruption)."""

    def __init__(self, params: S.NicParams | None = None, *, mem_bytes: int = 1 << 17):
        self._a = NicCore(params, mem_bytes=mem_bytes)
        self._b = NicCore(params, mem_bytes=mem_bytes)
        sig = {}
        for n, core in (("a", self._a), ("b", self._b)):
            for name, member in core.signature.members.items():
                sig[f"{n}_{name}"] = member
        super().__init__(sig)

    def elaborate(self, platform):
        m = Module()
        m.submodules.a = self._a
        m.submodules.b = self._b
        for n, core in (("a", self._a), ("b", self._b)):
            for name in core.signature.members:
                outer = getattr(self, f"{n}_{name}")
                inner = getattr(core, name)
                if name in ("idle", "cq_event"):
                    m.d.comb += outer.eq(inner)
                else:
                    _connect_flat(m, outer, inner, core.signature.members[name])
        return m


def _connect_flat(m, outer, inner, member):
    """Connect a port of the wrapper to the same port of an inner core, leaf by leaf."""
    sig = wiring.Signature({"p": member})
    outer_leaves = {path: v for path, _, v in sig.flatten(_Holder(outer))}
    for path, leaf, v in sig.flatten(_Holder(inner)):
        if leaf.flow == wiring.Out:
            m.d.comb += outer_leaves[path].eq(v)
        else:
            m.d.comb += v.eq(outer_leaves[path])


class _Holder:
    def __init__(self, p):
        self.p = p
