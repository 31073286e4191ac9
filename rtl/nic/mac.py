"""Ethernet MAC of the NIC: transmit (pad, FCS, inter-frame gap) and receive (FCS check,
store-and-forward buffer, drops of bad FCS, runts, oversize and foreign frames).

Both sides carry frames as :data:`rtl.nic.stream.Beat` streams without preamble/SFD (the
stream models the XGMII-side bytes after the SFD); the inter-frame gap is modeled as idle
beats on the transmit side."""


from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import data, fifo, memory, wiring
from amaranth.lib.wiring import In, Out

from spec import nic as S

from .crc import CRC_INIT, RESIDUE, crc_lanes, crc_register_after
from .stream import (
    AXIStreamSignature,
    BeatStream,
    axis_from_stream,
    keep_mask,
    popcount,
    stream_from_axis,
)

__all__ = ["CrcAppender", "Padder", "IfgGap", "MacTx", "MacRx", "MacTop"]


def _masked(d, keep):
    """Data with the bytes outside ``keep`` forced to zero."""
    return Cat(*[Mux(keep[i], d[8 * i:8 * i + 8], 0) for i in range(len(keep))])


class CrcAppender(wiring.Component):
    """Append a CRC-32 (little-endian, inverted) to every frame of a Beat stream.

    Parameters
    ----------
    start : int
        First frame byte covered by the CRC (0 for the FCS, 14 for the RoCE ICRC).
    force_ff : tuple of int
        Frame byte offsets that enter the CRC as 0xFF (ICRC masked fields); the data
        passed downstream is unchanged.
    init : int
        Initial CRC register (0xFFFFFFFF; the ICRC starts after 8 bytes of 0xFF).

    Latency 0 (combinational), throughput one beat per cycle, plus one extra beat for frames
    whose last beat holds more than 4 bytes. Bytes outside ``keep`` are output as zero.
    """

    i: In(BeatStream)
    o: Out(BeatStream)

    def __init__(self, *, start: int = 0, force_ff: tuple = (), init: int = CRC_INIT):
        if start < 0 or any(off < start for off in force_ff):
            raise ValueError("start must be >= 0 and every force_ff offset >= start")
        self._start, self._force, self._init = start, tuple(force_ff), init
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        i, o = self.i, self.o
        last_beat = max([self._start, *self._force]) // 8 + 1
        beat = Signal(range(last_beat + 1))
        crc = Signal(32, init=self._init)
        extra = Signal()
        rem = Signal(32)
        rem_n = Signal(3)

        d, keep = i.payload.data, i.payload.keep
        en, dcrc = [], []
        for lane in range(8):
            first = -(-(self._start - lane) // 8)          # first beat where this lane counts
            en.append(keep[lane] if first <= 0 else keep[lane] & (beat >= first))
            force = Const(0, 1)
            for off in self._force:
                if off % 8 == lane:
                    force = force | (beat == off // 8)
            dcrc.append(Mux(force, 0xFF, d[8 * lane:8 * lane + 8]))
        nxt = crc_lanes(m, crc, Cat(*dcrc), Cat(*en))
        fcs = Signal(32, name="crc_out")
        m.d.comb += fcs.eq(~nxt)
        n = popcount(m, keep)
        shifted = Signal(96)
        m.d.comb += shifted.eq(Cat(fcs, Const(0, 64)) << (n * 8))
        done = i.valid & i.ready

        with m.If(extra):
            m.d.comb += [o.valid.eq(1), o.payload.data.eq(rem), o.payload.keep.eq(keep_mask(rem_n)),
                         o.payload.last.eq(1)]
            with m.If(o.ready):
                m.d.sync += extra.eq(0)
        with m.Else():
            m.d.comb += [o.valid.eq(i.valid), i.ready.eq(o.ready)]
            with m.If(i.payload.last):
                m.d.comb += o.payload.data.eq(_masked(d, keep) | shifted[:64])
                with m.If(n <= 4):
                    m.d.comb += [o.payload.keep.eq(keep_mask(n + 4)), o.payload.last.eq(1)]
                with m.Else():
                    m.d.comb += [o.payload.keep.eq(0xFF), o.payload.last.eq(0)]
                    with m.If(done):
                        m.d.sync += [extra.eq(1), rem.eq(shifted[64:96]), rem_n.eq(n - 4)]
            with m.Else():
                m.d.comb += [o.payload.data.eq(_masked(d, keep)), o.payload.keep.eq(keep),
                             o.payload.last.eq(0)]
        with m.If(done):
            m.d.sync += [crc.eq(Mux(i.payload.last, self._init, nxt)),
                         beat.eq(Mux(i.payload.last, 0, Mux(beat == last_beat, beat, beat + 1)))]
        return m


class Padder(wiring.Component):
    """Pad frames shorter than ``min_bytes`` (60: the 64-byte minimum without FCS) with zero
    bytes. Latency 0; one beat per cycle; padding beats stall the input."""

    i: In(BeatStream)
    o: Out(BeatStream)

    def __init__(self, min_bytes: int = S.ETH_MIN_FRAME - S.ETH_FCS):
        if min_bytes < 8:
            raise ValueError(f"min_bytes must be >= 8, not {min_bytes}")
        self._min = min_bytes
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        i, o = self.i, self.o
        last_idx, last_n = (self._min - 1) // 8, self._min - 8 * ((self._min - 1) // 8)
        beat = Signal(range(last_idx + 2))
        pad = Signal(name="padding")
        n = popcount(m, i.payload.keep)
        short = (beat * 8 + n) < self._min
        with m.If(pad):
            is_last = beat == last_idx
            m.d.comb += [o.valid.eq(1), o.payload.data.eq(0),
                         o.payload.keep.eq(Mux(is_last, keep_mask(last_n), 0xFF)),
                         o.payload.last.eq(is_last)]
            with m.If(o.ready):
                m.d.sync += beat.eq(Mux(is_last, 0, beat + 1))
                with m.If(is_last):
                    m.d.sync += pad.eq(0)
        with m.Else():
            m.d.comb += [o.valid.eq(i.valid), i.ready.eq(o.ready),
                         o.payload.data.eq(_masked(i.payload.data, i.payload.keep)),
                         o.payload.keep.eq(i.payload.keep), o.payload.last.eq(i.payload.last)]
            with m.If(i.payload.last & short):
                with m.If(beat == last_idx):
                    m.d.comb += o.payload.keep.eq(keep_mask(last_n))
                with m.Else():
                    m.d.comb += [o.payload.keep.eq(0xFF), o.payload.last.eq(0)]
            with m.If(i.valid & i.ready):
                with m.If(i.payload.last & short & (beat != last_idx)):
                    m.d.sync += [pad.eq(1), beat.eq(beat + 1)]
                with m.Elif(i.payload.last):
                    m.d.sync += beat.eq(0)
                with m.Elif(beat <= last_idx):
                    m.d.sync += beat.eq(beat + 1)
        return m


class IfgGap(wiring.Component):
    """Hold the stream idle for ``beats`` cycles after every frame (preamble + IFG)."""

    i: In(BeatStream)
    o: Out(BeatStream)

    def __init__(self, beats: int = S.MAC_IFG_BEATS):
        self._beats = beats
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        gap = Signal(range(self._beats + 1))
        with m.If(gap != 0):
            m.d.sync += gap.eq(gap - 1)
        with m.Else():
            m.d.comb += [self.o.valid.eq(self.i.valid), self.i.ready.eq(self.o.ready),
                         self.o.payload.eq(self.i.payload)]
            with m.If(self.i.valid & self.o.ready & self.i.payload.last):
                m.d.sync += gap.eq(self._beats)
        return m


class MacTx(wiring.Component):
    """MAC transmit: pad to 60 bytes, append the FCS, insert the inter-frame gap.

    ``i`` carries frames from the destination MAC up to the end of the payload (no FCS);
    ``o`` goes to the wire. Latency 0 cycles (combinational), throughput one beat per cycle;
    per frame it adds the padding beats, at most one FCS beat and ``MAC_IFG_BEATS`` idle
    beats. ``frame_done`` pulses with ``frame_bytes`` (FCS included) when a frame's last beat
    leaves."""

    i: In(BeatStream)
    o: Out(BeatStream)
    frame_done: Out(1)
    frame_bytes: Out(16)
    beat_bytes: Out(4)

    def elaborate(self, platform):
        m = Module()
        m.submodules.pad = pad = Padder()
        m.submodules.fcs = fcs = CrcAppender()
        m.submodules.ifg = ifg = IfgGap()
        wiring.connect(m, wiring.flipped(self.i), pad.i)
        wiring.connect(m, pad.o, fcs.i)
        wiring.connect(m, fcs.o, ifg.i)
        wiring.connect(m, ifg.o, wiring.flipped(self.o))
        count = Signal(16)
        n = popcount(m, self.o.payload.keep)
        with m.If(self.o.valid & self.o.ready):
            m.d.comb += self.beat_bytes.eq(n)
            m.d.sync += count.eq(Mux(self.o.payload.last, 0, count + n))
            with m.If(self.o.payload.last):
                m.d.comb += [self.frame_done.eq(1), self.frame_bytes.eq(count + n)]
        return m


class MacRx(wiring.Component):
    """MAC receive: checks every frame while storing it, forwards only good frames.

    ``i`` comes from the wire and is always ready (a wire cannot be stalled). A frame is
    dropped, and exactly one of the ``drop_*`` strobes pulses at its last beat, when (in this
    order) it is shorter than 64 bytes (runt), longer than ``max_frame`` (oversize), its FCS
    is wrong, its destination MAC is neither ``mac_addr`` nor broadcast (foreign), or the
    buffer (``depth`` words of 8 bytes) or the frame queue is full (overflow). Good frames
    pulse ``ok`` with ``frame_bytes`` and leave on ``o`` without their FCS.

    Latency: store-and-forward, first output beat 3 cycles after the last input beat.
    Throughput: one beat per cycle, plus one idle output cycle per frame.
    """

    i: In(BeatStream)
    o: Out(BeatStream)
    mac_addr: In(48)
    ok: Out(1)
    frame_bytes: Out(16)
    drop_runt: Out(1)
    drop_oversize: Out(1)
    drop_fcs: Out(1)
    drop_foreign: Out(1)
    drop_overflow: Out(1)
    drop_not_roce: Out(1)
    drop_icrc: Out(1)

    def __init__(self, *, max_frame: int = S.NicParams().max_frame, depth: int = 512,
                 frames: int = 16, roce: bool = False):
        if depth & (depth - 1) or depth < 2 * (-(-max_frame // 8)):
            raise ValueError(f"depth must be a power of two holding two maximum frames, not {depth}")
        if not S.ETH_MIN_FRAME <= max_frame < 1 << 15:
            raise ValueError(f"max_frame must be in [64, 32768), not {max_frame}")
        self._max, self._depth, self._frames = max_frame, depth, frames
        self._roce = bool(roce)
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        i, o = self.i, self.o
        depth = self._depth
        aw = depth.bit_length() - 1
        m.submodules.mem = mem = memory.Memory(shape=64, depth=depth, init=[])
        wp = mem.write_port()
        rp = mem.read_port()
        m.submodules.desc = desc = fifo.SyncFIFOBuffered(width=16, depth=self._frames)

        # --- write side ---
        wr_cur = Signal(aw + 1)
        wr_base = Signal(aw + 1)
        rd_ptr = Signal(aw + 1)          # start of the oldest frame not yet read out
        crc = Signal(32, init=CRC_INIT)
        nbytes = Signal(16)
        first = Signal(init=1)
        foreign = Signal()
        overflow = Signal()
        d, keep = i.payload.data, i.payload.keep
        n = popcount(m, keep)
        nxt = crc_lanes(m, crc, d, keep)
        total = nbytes + n
        # occupancy modulo the pointers' 2 x depth range (a plain difference is signed: it
        # read negative, never full, once wr_cur had wrapped past rd_ptr's value)
        full = (wr_cur - rd_ptr)[:aw + 1] >= depth
        dst = Cat(*[d[8 * (5 - k):8 * (6 - k)] for k in range(6)])
        is_foreign = (dst != self.mac_addr) & (dst != S.BROADCAST_MAC)
        m.d.comb += i.ready.eq(1)
        roce_drop = Signal()
        if self._roce:
            roce_bad = self._roce_checks(m, d, keep, n, total, first, roce_drop)
        else:
            roce_bad = Const(0, 1)
        beat_ok = ~full & (nbytes < self._max + 8) & ~overflow
        with m.If(i.valid):
            m.d.comb += [wp.addr.eq(wr_cur[:aw]), wp.data.eq(d), wp.en.eq(beat_ok)]
            with m.If(beat_ok):
                m.d.sync += wr_cur.eq(wr_cur + 1)
            m.d.sync += [crc.eq(nxt), nbytes.eq(Mux(total > 0xFFF0, 0xFFF0, total)), first.eq(0)]
            with m.If(~beat_ok):
                m.d.sync += overflow.eq(overflow | full)
            with m.If(first):
                m.d.sync += foreign.eq(is_foreign)
            fgn = Mux(first, is_foreign, foreign)
            with m.If(i.payload.last):
                m.d.sync += [crc.eq(CRC_INIT), nbytes.eq(0), first.eq(1), overflow.eq(0)]
                runt = total < S.ETH_MIN_FRAME
                over = total > self._max
                bad = nxt != RESIDUE
                ovf = overflow | full | ~desc.w_rdy
                with m.If(runt):
                    m.d.comb += self.drop_runt.eq(1)
                with m.Elif(over):
                    m.d.comb += self.drop_oversize.eq(1)
                with m.Elif(bad):
                    m.d.comb += self.drop_fcs.eq(1)
                with m.Elif(fgn):
                    m.d.comb += self.drop_foreign.eq(1)
                with m.Elif(ovf):
                    m.d.comb += self.drop_overflow.eq(1)
                with m.Else():
                    m.d.comb += [self.ok.eq(1), self.frame_bytes.eq(total)]
                    with m.If(roce_bad):
                        m.d.comb += roce_drop.eq(1)
                    with m.Else():
                        m.d.comb += [desc.w_en.eq(1), desc.w_data.eq(total - S.ETH_FCS)]
                        m.d.sync += [wr_base.eq(wr_cur + 1), wr_cur.eq(wr_cur + 1)]
                with m.If(runt | over | bad | fgn | ovf | roce_bad):
                    m.d.sync += wr_cur.eq(wr_base)

        # --- read side ---
        active = Signal()
        left = Signal(16)
        rd_addr = Signal(aw + 1)
        start = Signal(aw + 1)
        words = Signal(16)
        o_valid = Signal()
        o_keep = Signal(8)
        o_last = Signal()
        advance = ~o_valid | o.ready
        m.d.comb += [o.valid.eq(o_valid), o.payload.data.eq(rp.data), o.payload.keep.eq(o_keep),
                     o.payload.last.eq(o_last), rp.addr.eq(rd_addr[:aw]), rp.en.eq(advance)]
        with m.If(advance):
            with m.If(active):
                m.d.sync += [o_valid.eq(1), o_keep.eq(Mux(left >= 8, 0xFF, keep_mask(left[:4]))),
                             o_last.eq(left <= 8), left.eq(left - 8), rd_addr.eq(rd_addr + 1)]
                with m.If(left <= 8):
                    m.d.sync += [active.eq(0), rd_addr.eq(start + words), rd_ptr.eq(start + words)]
            with m.Else():
                m.d.sync += o_valid.eq(0)
                with m.If(desc.r_rdy):
                    m.d.comb += desc.r_en.eq(1)
                    m.d.sync += [active.eq(1), left.eq(desc.r_data), start.eq(rd_addr),
                                 words.eq((desc.r_data + S.ETH_FCS + 7) >> 3)]
        return m


    def _roce_checks(self, m, d, keep, n, total, first, strobe):
        """RoCE checks of the frame being received (spec order, see golden.parse_frame):
        header fields (EtherType, IPv4 version/IHL, protocol UDP, port 4791, IP total length
        equal to the frame), then the ICRC, then opcode and payload length. Returns the
        'drop at the last beat' condition and drives drop_not_roce / drop_icrc from
        ``strobe``. The ICRC runs one beat behind the input so that the FCS bytes, whose
        lanes are only known at the last beat, can be left out."""
        i = self.i
        byte = [d[8 * k:8 * k + 8] for k in range(8)]
        beat = Signal(3)                 # index of the current beat, saturating at 7
        hdr_bad = Signal()
        ip_total = Signal(16)
        opcode = Signal(8)
        with m.If(i.valid):
            m.d.sync += beat.eq(Mux(i.payload.last, 0, Mux(beat == 7, 7, beat + 1)))
            hb = Mux(first, 0, hdr_bad)
            chk = (((beat == 1) & ((Cat(byte[5], byte[4]) != S.ETHERTYPE_IPV4)
                                   | (byte[6] != 0x45)))
                   | ((beat == 2) & (byte[7] != S.IP_PROTO_UDP))
                   | ((beat == 4) & (Cat(byte[5], byte[4]) != S.ROCE_UDP_PORT)))
            with m.If(beat == 2):
                m.d.sync += ip_total.eq(Cat(byte[1], byte[0]))
            with m.If(beat == 5):
                m.d.sync += opcode.eq(byte[2])
            m.d.sync += hdr_bad.eq(hb | chk)
        # ICRC, one beat behind
        icrc_init = crc_register_after(b"\xff" * 8)
        icrc = Signal(32, init=icrc_init)
        prev = Signal(64)
        prev_beat = Signal(3)
        have_prev = Signal()

        def masked(data, idx):
            out = []
            for lane in range(8):
                force = Const(0, 1)
                for off in S.ICRC_MASK_OFFSETS:
                    if off % 8 == lane:
                        force = force | (idx == off // 8)
                out.append(Mux(force, 0xFF, data[8 * lane:8 * lane + 8]))
            return Cat(*out)

        def lane_en(idx, limit):
            # lanes at frame offset >= ICRC_START (byte 14) and lane < limit
            out = []
            for lane in range(8):
                inside = (idx >= 2) | (idx == 1) if lane >= S.ICRC_START - 8 else (idx >= 2)
                out.append(inside & (lane < limit))
            return Cat(*out)

        last = i.payload.last
        lim_prev = Mux(last & (n < 4), n + 4, 8)
        en_prev = Mux(have_prev, lane_en(prev_beat, lim_prev), 0)
        mid = crc_lanes(m, icrc, masked(prev, prev_beat), en_prev, name="icrc_p")
        lim_cur = Mux(n > 4, n - 4, 0)
        fin = crc_lanes(m, mid, d, Cat(*[lane < lim_cur for lane in range(8)]), name="icrc_c")
        with m.If(i.valid):
            m.d.sync += [prev.eq(d), prev_beat.eq(beat), have_prev.eq(~last),
                         icrc.eq(Mux(last, icrc_init, mid))]
        # decisions at the last beat
        body = total - S.ETH_FCS
        op = Mux(beat == 5, byte[2], opcode)
        valid_op = Cat(*[op == o for o in S.OPCODE_NAMES]).any()
        ext = Mux(Cat(*[op == o for o in S.OPS_WITH_RETH]).any(), S.RETH_LEN,
                  Mux(Cat(*[op == o for o in S.OPS_WITH_AETH]).any(), S.AETH_LEN, 0))
        fixed = S.IPV4_HDR + S.UDP_HDR + S.BTH_LEN + S.ICRC_LEN
        pay = Signal(17)
        m.d.comb += pay.eq(ip_total - fixed - ext)
        early_bad = (hdr_bad | (body < S.HDR_BASE + S.ICRC_LEN)
                     | (ip_total + S.ETH_HDR != body) | (ip_total < fixed))
        icrc_bad = fin != RESIDUE
        late_bad = ~valid_op | (ip_total < fixed + ext) | (pay[:3] != 0)
        with m.If(strobe):
            with m.If(early_bad):
                m.d.comb += self.drop_not_roce.eq(1)
            with m.Elif(icrc_bad):
                m.d.comb += self.drop_icrc.eq(1)
            with m.Else():
                m.d.comb += self.drop_not_roce.eq(1)
        return early_bad | icrc_bad | late_bad


class MacTop(wiring.Component):
    """Verilog top ``nic_mac`` for the MAC bench: host-side transmit stream ``tx`` (frames
    without FCS) -> ``wire_tx``; ``wire_rx`` -> ``rx`` (good frames without FCS). Flat
    AXI-Stream ports; counters in spec.nic.COUNTERS order as 32-bit words."""

    def __init__(self, *, max_frame: int = S.NicParams().max_frame):
        self._max = max_frame
        super().__init__({
            "tx": In(AXIStreamSignature()), "wire_tx": Out(AXIStreamSignature()),
            "wire_rx": In(AXIStreamSignature()), "rx": Out(AXIStreamSignature()),
            "mac_addr": In(48),
            "counters": Out(data.ArrayLayout(32, len(S.COUNTERS))),
        })

    def elaborate(self, platform):
        from .counters import CounterBank

        m = Module()
        m.submodules.mtx = mtx = MacTx()
        m.submodules.mrx = mrx = MacRx(max_frame=self._max)
        m.submodules.cnt = cnt = CounterBank()
        stream_from_axis(m, mtx.i, self.tx)
        axis_from_stream(m, self.wire_tx, mtx.o)
        stream_from_axis(m, mrx.i, self.wire_rx)
        axis_from_stream(m, self.rx, mrx.o)
        m.d.comb += [mrx.mac_addr.eq(self.mac_addr), self.counters.eq(cnt.values)]
        cnt.connect_mac(m, mtx, mrx)
        return m
