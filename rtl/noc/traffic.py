"""Hardware traffic generators, checking sinks and the traffic bench top around a mesh.

Traffic is generated and checked in hardware so a long run costs cocotb nothing per
cycle: cocotb writes the configuration, pulses ``start``, waits for ``done`` and reads
the counters."""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import data, fifo, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from rtl.hier import instance
from spec import noc as spec

from .mesh import Mesh, endpoint_stream
from .router import flit_layout

__all__ = ["TrafficConfig", "TrafficGenerator", "TrafficSink", "TrafficBench"]

CLS_REQ_ONLY, CLS_RSP_ONLY, CLS_RANDOM = 0, 1, 2

TrafficConfig = data.StructLayout({
    "rate": 16,        # a packet is created in a cycle when lfsr16 < rate (rate/65536 pkt/cycle)
    "pattern": 3,      # spec.PAT_*
    "length": 8,       # flits per packet (0 is taken as 1)
    "target": 8,       # hotspot / all-to-one target: tx | ty << 4
    "hot_thresh": 8,   # hotspot: share of packets to the target, out of 256
    "cls_mode": 2,     # 0 request class only, 1 response class only, 2 random per packet
    "bp": 16,          # sinks stall a cycle when their lfsr16 < bp (random backpressure)
    "corrupt": 1,      # fault injection: node 0 flips bit 0 of its body flits
})


def lfsr_step(m: Module, seed, name: str, steps: int = 16, load=None) -> Signal:
    """A 16-bit Galois LFSR (spec.lfsr_next) advanced ``steps`` times per cycle (unrolled
    XOR logic), so successive words are not shifted copies of each other: one step per
    cycle would make ``lfsr < threshold`` fire in bursts at low thresholds.

    ``seed`` is an int (the reset value), or a Value loaded while ``load`` is high (a seed
    from an input port, so that every node's generator is the same design); a zero seed is
    taken as 1."""
    if isinstance(seed, int):
        s = Signal(16, init=seed & 0xFFFF or 1, name=name)
    else:
        s = Signal(16, init=1, name=name)
    # The LFSR is linear over GF(2): bit i of the state ``steps`` steps later is the XOR of
    # the current bits in ``deps[i]``, found by stepping each basis vector in Python. (A
    # literal unrolling nests each step's expression twice into the next: 2**steps nodes.)
    deps = [[j for j in range(16) if (_lfsr_steps(1 << j, steps) >> i) & 1] for i in range(16)]
    nxt = Cat(*(_xor_bits(s, d) for d in deps))
    if isinstance(seed, int):
        m.d.sync += s.eq(nxt)
    else:
        sv = Signal(16, name=f"{name}_seed")
        m.d.comb += sv.eq(seed)
        m.d.sync += s.eq(Mux(load, Mux(sv == 0, 1, sv), nxt))
    return s


def _seed_mix(seed, salt: int, mult: int):
    """16-bit seed of one LFSR from a node's seed port: ``salt ^ (seed * mult)`` mod 2**16."""
    return (Const(salt, 16) ^ (seed * mult)[:16])[:16]


def _lfsr_steps(state: int, steps: int) -> int:
    for _ in range(steps):
        state = spec.lfsr_next(state)
    return state


def _xor_bits(v, bits):
    acc = Const(0, 1)
    for j in bits:
        acc = acc ^ v[j]
    return acc


def payload_hw(me, other, seq, idx, width: int, swap: bool = False):
    """Hardware form of spec.traffic_payload. ``me`` is this node's coordinate byte
    (an int or a Value), ``other`` the peer's (a Value): the source's own byte in a
    generator, or the destination's own byte in a sink (``swap=True``)."""
    mine = Const(me & 0xFF, 8) if isinstance(me, int) else me[:8]
    src, dst = (other[:8], mine) if swap else (mine, other[:8])
    base = Cat(seq[:16], dst, src)
    chunks = []
    for j in range((width + 31) // 32):
        c = base ^ (idx[:8] << (8 * (j % 4)))[:32] ^ Const(spec.PAYLOAD_SALT, 32)
        r = j % 32
        chunks.append(c.rotate_left(r) if r else c)
    return Cat(*chunks)[:width]


class TrafficGenerator(wiring.Component):
    """Open-loop packet source of node (``pos_x``, ``pos_y``) with a source queue per class.

    The position and ``seed`` are inputs (constant in a bench), so the generators of every
    node are one design, generated once (``rtl.hier.instance``); the LFSRs load their seeds
    (derived from ``seed``) while ``reseed`` is high.

    Every cycle with ``enable``, a packet is *created* with probability ``rate``/65536
    (LFSR), its destination drawn per ``pattern``; it waits in a ``queue``-entry source
    queue of its class (if full, the packet is not created and ``throttled`` counts it).
    The head flit carries src, dst, op=OP_TRAFFIC, len, a per-(destination, class) sequence
    number and the creation cycle (``stamp``); ``mark`` is set when created while
    ``window``. Body flits carry spec.traffic_payload. Latency 1 cycle from creation to
    the head flit offered; one flit per cycle per class.
    """

    def __init__(self, *, kx: int, ky: int, flit_width: int = 64, queue: int = 16):
        spec.check_mesh(kx, ky)
        if flit_width < spec.HEAD_MIN_FLIT_WIDTH:
            raise ValueError(f"flit_width must be >= {spec.HEAD_MIN_FLIT_WIDTH} for traffic "
                             f"packets, not {flit_width!r}")
        self._kx, self._ky = kx, ky
        self._fw, self._queue = flit_width, queue
        es = endpoint_stream(flit_width)
        super().__init__({"pos_x": In(spec.COORD_BITS), "pos_y": In(spec.COORD_BITS),
                          "seed": In(16), "reseed": In(1),
                          "cfg": In(TrafficConfig), "enable": In(1), "window": In(1),
                          "now": In(32), "inj": Out(es).array(spec.N_CLASSES),
                          "created": Out(32), "created_marked": Out(32),
                          "throttled": Out(32)})

    def elaborate(self, platform):
        m = Module()
        x, y, kx, ky, W = self.pos_x, self.pos_y, self._kx, self._ky, self._fw
        cfg = self.cfg
        sd, ld = self.seed, self.reseed
        r_rate = lfsr_step(m, _seed_mix(sd, 0xACE1, 0x9E37), "lfsr_rate", load=ld)
        r_dst = lfsr_step(m, _seed_mix(sd, 0x1D87, 0x7F4B), "lfsr_dst", load=ld)
        # hotspot choice from its own LFSR: r_rate is correlated with the creation decision
        # (r_rate < rate), so its high byte sent nearly every packet to the hot node
        r_hot = lfsr_step(m, _seed_mix(sd, 0x6B2D, 0x3C6F), "lfsr_hot", load=ld)
        ux = ((r_dst[0:8] * kx) >> 8)[:4]
        uy = ((r_dst[8:16] * ky) >> 8)[:4]
        tx, ty = cfg.target[0:4], cfg.target[4:8]
        dx, dy, ok = Signal(4), Signal(4), Signal()
        m.d.comb += [dx.eq(ux), dy.eq(uy), ok.eq(1)]
        with m.Switch(cfg.pattern):
            with m.Case(spec.PAT_TRANSPOSE):
                m.d.comb += [dx.eq(y), dy.eq(x), ok.eq((x != y) if kx == ky else 0)]
            with m.Case(spec.PAT_BITCOMP):
                m.d.comb += [dx.eq((kx - 1 - x)[:4]), dy.eq((ky - 1 - y)[:4])]
            with m.Case(spec.PAT_HOTSPOT):
                with m.If(r_hot[8:16] < cfg.hot_thresh):
                    m.d.comb += [dx.eq(tx), dy.eq(ty)]
            with m.Case(spec.PAT_ALL_TO_ONE):
                m.d.comb += [dx.eq(tx), dy.eq(ty), ok.eq((tx != x) | (ty != y))]
        cls = Signal()
        with m.Switch(cfg.cls_mode):
            with m.Case(CLS_REQ_ONLY):
                m.d.comb += cls.eq(spec.CLASS_REQ)
            with m.Case(CLS_RSP_ONLY):
                m.d.comb += cls.eq(spec.CLASS_RSP)
            with m.Default():
                m.d.comb += cls.eq(r_dst[3] ^ r_rate[5])
        create = Signal()
        m.d.comb += create.eq(self.enable & (r_rate < cfg.rate) & ok)

        entry = data.StructLayout({"dx": 4, "dy": 4, "mark": 1, "stamp": spec.STAMP_BITS})
        n_idx = max(1, (kx * ky - 1).bit_length())
        full_any = Signal()
        for c in range(spec.N_CLASSES):
            q = fifo.SyncFIFO(width=entry.size, depth=self._queue)
            m.submodules[f"queue{c}"] = q
            e = entry(q.w_data)
            m.d.comb += [e.dx.eq(dx), e.dy.eq(dy), e.mark.eq(self.window),
                         e.stamp.eq(self.now[:spec.STAMP_BITS]),
                         q.w_en.eq(create & (cls == c))]
            with m.If(create & (cls == c) & ~q.w_rdy):
                m.d.comb += full_any.eq(1)
            seqmem = Memory(shape=spec.SEQ_BITS, depth=1 << n_idx, init=[])
            m.submodules[f"seq{c}"] = seqmem
            rd = seqmem.read_port(domain="comb")
            wr = seqmem.write_port()
            h = entry(q.r_data)
            busy = Signal(name=f"busy{c}")
            idx = Signal(8, name=f"idx{c}")
            last = Signal(8, name=f"last{c}")
            cur_d = Signal(8, name=f"dst{c}")
            cur_seq = Signal(16, name=f"seq{c}")
            m.d.comb += rd.addr.eq((h.dy * kx + h.dx)[:n_idx])
            length = Mux(cfg.length == 0, 1, cfg.length)
            inj = self.inj[c]
            hd = Signal(W, name=f"head{c}")
            m.d.comb += hd.eq(Cat(h.dx, h.dy, x, y, Const(spec.OP_TRAFFIC, 3),
                                  h.mark, (length - 1)[:8], rd.data, h.stamp))
            body = payload_hw(Cat(x, y), cur_d, cur_seq, idx, W)
            if c == 0:      # fault injection at node 0 only
                body = body ^ (cfg.corrupt & (x == 0) & (y == 0))
            with m.If(~busy):
                m.d.comb += [inj.valid.eq(q.r_rdy), inj.payload.data.eq(hd),
                             inj.payload.kind.eq(Mux(length == 1, spec.KIND_HEADTAIL,
                                                     spec.KIND_HEAD))]
                with m.If(inj.valid & inj.ready):
                    m.d.comb += [q.r_en.eq(1), wr.en.eq(1), wr.addr.eq(rd.addr),
                                 wr.data.eq(rd.data + 1)]
                    m.d.sync += [busy.eq(length != 1), idx.eq(1), last.eq(length - 1),
                                 cur_d.eq(Cat(h.dx, h.dy)), cur_seq.eq(rd.data)]
            with m.Else():
                m.d.comb += [inj.valid.eq(1), inj.payload.data.eq(body),
                             inj.payload.kind.eq(Mux(idx == last, spec.KIND_TAIL,
                                                     spec.KIND_BODY))]
                with m.If(inj.ready):
                    m.d.sync += idx.eq(idx + 1)
                    with m.If(idx == last):
                        m.d.sync += busy.eq(0)
        with m.If(create & ~full_any):
            m.d.sync += self.created.eq(self.created + 1)
            with m.If(self.window):
                m.d.sync += self.created_marked.eq(self.created_marked + 1)
        with m.If(full_any):
            m.d.sync += self.throttled.eq(self.throttled + 1)
        return m


class TrafficSink(wiring.Component):
    """Checking sink for one class at node (``pos_x``, ``pos_y``); position and ``seed``
    (backpressure LFSR, loaded while ``reseed``) are inputs, as in :class:`TrafficGenerator`.

    Checks every packet: the head names this node (else ``err_route``), op is OP_TRAFFIC,
    its sequence number is the next one of its flow (source, class) (else ``err_seq``),
    body flits match spec.traffic_payload (else ``err_payload``), and the flit kinds frame
    exactly ``len`` flits after the head (else ``err_frame``). Counts packets and flits,
    flits during ``window``, and for marked packets the latency ``now - stamp`` at the tail
    (sum and max). Random backpressure: not ready in a cycle when lfsr16 < ``bp``.
    """

    def __init__(self, *, kx: int, ky: int, flit_width: int = 64):
        spec.check_mesh(kx, ky)
        self._kx, self._ky = kx, ky
        self._fw = flit_width
        super().__init__({"pos_x": In(spec.COORD_BITS), "pos_y": In(spec.COORD_BITS),
                          "seed": In(16), "reseed": In(1),
                          "ej": In(endpoint_stream(flit_width)), "bp": In(16),
                          "window": In(1), "now": In(32),
                          "packets": Out(32), "flits": Out(32), "flits_window": Out(32),
                          "marked": Out(32), "lat_sum": Out(48), "lat_max": Out(20),
                          "err_route": Out(16), "err_seq": Out(16), "err_payload": Out(16),
                          "err_frame": Out(16)})

    def elaborate(self, platform):
        m = Module()
        x, y, kx, ky, W = self.pos_x, self.pos_y, self._kx, self._ky, self._fw
        r_bp = lfsr_step(m, _seed_mix(self.seed, 0x3C5A, 0x5BD1), "lfsr_bp", load=self.reseed)
        ej = self.ej
        m.d.comb += ej.ready.eq(~(r_bp < self.bp))
        fl = ej.payload
        fire = ej.valid & ej.ready
        n_idx = max(1, (kx * ky - 1).bit_length())
        seqmem = Memory(shape=spec.SEQ_BITS, depth=1 << n_idx, init=[])
        m.submodules.seq = seqmem
        rd = seqmem.read_port(domain="comb")
        wr = seqmem.write_port()
        hf = {k: fl.data[lo:hi] for k, (lo, hi) in {**spec.HEAD_FIELDS,
                                                     **spec.TRAFFIC_FIELDS}.items()}
        m.d.comb += rd.addr.eq((hf["src_y"] * kx + hf["src_x"])[:n_idx])
        in_pkt = Signal()
        idx = Signal(8)
        last = Signal(8)
        src = Signal(8)
        seq = Signal(16)
        mark = Signal()
        stamp = Signal(spec.STAMP_BITS)

        def bump(ctr):
            with m.If(ctr != (1 << len(ctr)) - 1):
                m.d.sync += ctr.eq(ctr + 1)

        with m.If(fire):
            m.d.sync += self.flits.eq(self.flits + 1)
            with m.If(self.window):
                m.d.sync += self.flits_window.eq(self.flits_window + 1)
            is_head, is_tail = fl.kind[0], fl.kind[1]
            with m.If(is_head):
                with m.If(in_pkt):
                    bump(self.err_frame)       # previous packet lost its tail
                with m.If((hf["dst_x"] != x) | (hf["dst_y"] != y)):
                    bump(self.err_route)
                with m.If((hf["op"] != spec.OP_TRAFFIC) | (rd.data != hf["seq"])):
                    bump(self.err_seq)
                m.d.comb += [wr.en.eq(1), wr.addr.eq(rd.addr), wr.data.eq(hf["seq"] + 1)]
                m.d.sync += [src.eq(Cat(hf["src_x"], hf["src_y"])), seq.eq(hf["seq"]),
                             mark.eq(hf["mark"]), stamp.eq(hf["stamp"]), idx.eq(1),
                             last.eq(hf["len"])]
                with m.If(is_tail != (hf["len"] == 0)):
                    bump(self.err_frame)
                m.d.sync += in_pkt.eq(~is_tail)
            with m.Else():
                with m.If(~in_pkt):
                    bump(self.err_frame)
                with m.Else():
                    exp = Signal(W, name="exp_payload")
                    m.d.comb += exp.eq(payload_hw(Cat(x, y), src, seq, idx, W, swap=True))
                    with m.If(fl.data != exp):
                        bump(self.err_payload)
                    with m.If(is_tail != (idx == last)):
                        bump(self.err_frame)
                m.d.sync += idx.eq(idx + 1)
                with m.If(is_tail):
                    m.d.sync += in_pkt.eq(0)
        # packet completion and latency (head-tail or tail flit accepted)
        done = fire & fl.kind[1]
        is_ht = fl.kind[0]
        p_mark = Mux(is_ht, hf["mark"], mark)
        p_stamp = Mux(is_ht, hf["stamp"], stamp)
        lat = Signal(spec.STAMP_BITS)
        m.d.comb += lat.eq(self.now[:spec.STAMP_BITS] - p_stamp)
        with m.If(done):
            m.d.sync += self.packets.eq(self.packets + 1)
            with m.If(p_mark):
                m.d.sync += [self.marked.eq(self.marked + 1),
                             self.lat_sum.eq(self.lat_sum + lat)]
                with m.If(lat > self.lat_max):
                    m.d.sync += self.lat_max.eq(lat)
        return m


SINK_COUNTERS = ("packets", "flits", "flits_window", "marked", "lat_sum", "err_route",
                 "err_seq", "err_payload", "err_frame")
GEN_COUNTERS = ("created", "created_marked", "throttled")


class TrafficBench(wiring.Component):
    """Bench top: a :class:`Mesh` with a :class:`TrafficGenerator` and two
    :class:`TrafficSink` (one per class) at every node, plus the run controller.

    cocotb (or any driver) sets ``cfg``, ``warmup``, ``measure``, ``drain_max``, pulses
    ``start`` and waits for ``done``. Phases: warm-up (generators on, packets unmarked),
    measurement (``measure`` cycles, packets marked, sinks count flits), drain (generators
    on until every marked packet has arrived), stop (generators off until every created
    packet has arrived). ``timed_out`` is set if a drain phase exceeded ``drain_max``
    cycles (saturation, or a lost packet). ``tot_*`` are sums over all nodes; ``sel``
    selects the node shown on ``node_*``. With ``monitor=True`` the injection and
    ejection handshakes of every (node, class) are exported for a cocotb scoreboard.
    """

    def __init__(self, *, kx: int = 4, ky: int = 4, flit_width: int = 64,
                 vcs_per_class: int = 1, depth: int = 4, queue: int = 16,
                 monitor: bool = False):
        spec.check_mesh(kx, ky)
        self._kx, self._ky, self._fw = kx, ky, flit_width
        self._mesh_kw = dict(flit_width=flit_width, vcs_per_class=vcs_per_class, depth=depth)
        self._queue, self._monitor = queue, monitor
        n, C = kx * ky, spec.N_CLASSES
        ports = {"cfg": In(TrafficConfig), "start": In(1), "warmup": In(32),
                 "measure": In(32), "drain_max": In(32), "done": Out(1),
                 "timed_out": Out(1), "now": Out(32), "sel": In(8),
                 "tot_lat_sum": Out(64), "tot_lat_max": Out(20), "tot_err_router": Out(32),
                 "node_packets": Out(32), "node_created": Out(32), "node_errors": Out(32)}
        for k in (*SINK_COUNTERS, *GEN_COUNTERS):
            if k != "lat_sum":
                ports[f"tot_{k}"] = Out(32)
        if monitor:
            ports.update({"mon_inj_fire": Out(n * C), "mon_ej_fire": Out(n * C),
                          "mon_inj_flit": Out(flit_layout(flit_width)).array(n * C),
                          "mon_ej_flit": Out(flit_layout(flit_width)).array(n * C)})
        super().__init__(ports)

    def elaborate(self, platform):
        m = Module()
        kx, ky, W = self._kx, self._ky, self._fw
        n, C = kx * ky, spec.N_CLASSES
        m.submodules.mesh = mesh = Mesh(kx=kx, ky=ky, **self._mesh_kw)
        m.d.sync += self.now.eq(self.now + 1)

        enable, window, idle = Signal(), Signal(), Signal()
        gens, sinks = [], []
        for y in range(ky):
            for x in range(kx):
                i = y * kx + x
                # one generator / sink design for every node: position and seed are inputs
                g = instance(TrafficGenerator, kx=kx, ky=ky, flit_width=W, queue=self._queue)
                m.submodules[f"gen_{x}_{y}"] = g
                gens.append(g)
                m.d.comb += [g.cfg.eq(self.cfg), g.enable.eq(enable), g.window.eq(window),
                             g.now.eq(self.now), g.pos_x.eq(x), g.pos_y.eq(y),
                             g.seed.eq(i + 1), g.reseed.eq(idle)]
                for c in range(C):
                    s = instance(TrafficSink, kx=kx, ky=ky, flit_width=W)
                    m.submodules[f"sink_{x}_{y}_{c}"] = s
                    sinks.append(s)
                    m.d.comb += [s.bp.eq(self.cfg.bp), s.window.eq(window), s.now.eq(self.now),
                                 s.pos_x.eq(x), s.pos_y.eq(y), s.seed.eq(2 * i + c + 7),
                                 s.reseed.eq(idle)]
                    wiring.connect(m, g.inj[c], mesh.inj[i][c])
                    wiring.connect(m, mesh.ej[i][c], s.ej)
                    if self._monitor:
                        k = i * C + c
                        m.d.comb += [
                            self.mon_inj_fire[k].eq(g.inj[c].valid & g.inj[c].ready),
                            self.mon_inj_flit[k].eq(g.inj[c].payload),
                            self.mon_ej_fire[k].eq(s.ej.valid & s.ej.ready),
                            self.mon_ej_flit[k].eq(s.ej.payload)]

        def total(objs, name, width=32):
            t = Signal(width, name=f"sum_{name}")
            m.d.comb += t.eq(sum((getattr(o, name) for o in objs), Const(0, width)))
            return t

        tots = {}
        for k in SINK_COUNTERS:
            tots[k] = total(sinks, k, 64 if k == "lat_sum" else 32)
        for k in GEN_COUNTERS:
            tots[k] = total(gens, k)
        for k, v in tots.items():
            port = self.tot_lat_sum if k == "lat_sum" else getattr(self, f"tot_{k}")
            m.d.comb += port.eq(v)
        m.d.comb += self.tot_err_router.eq(sum((e for e in mesh.errors), Const(0, 32)))
        lat_max = Const(0, 20)
        for j, s in enumerate(sinks):      # a Signal per step: no exponential expression
            step = Signal(20, name=f"lat_max_{j}")
            m.d.comb += step.eq(Mux(s.lat_max > lat_max, s.lat_max, lat_max))
            lat_max = step
        m.d.comb += self.tot_lat_max.eq(lat_max)
        # per-node readout
        with m.Switch(self.sel):
            for i in range(n):
                with m.Case(i):
                    ss = sinks[i * C:(i + 1) * C]
                    errs = sum((getattr(s, e) for s in ss for e in
                                ("err_route", "err_seq", "err_payload", "err_frame")),
                               Const(0, 32)) + mesh.errors[i]
                    m.d.comb += [self.node_packets.eq(sum((s.packets for s in ss), Const(0, 32))),
                                 self.node_created.eq(gens[i].created),
                                 self.node_errors.eq(errs)]

        # run controller
        cnt = Signal(32)
        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += idle.eq(1)        # LFSRs (re)load their seeds
                with m.If(self.start):
                    m.d.sync += cnt.eq(0)
                    m.next = "WARMUP"
            with m.State("WARMUP"):
                m.d.comb += enable.eq(1)
                m.d.sync += cnt.eq(cnt + 1)
                with m.If(cnt + 1 >= self.warmup):
                    m.d.sync += cnt.eq(0)
                    m.next = "MEASURE"
            with m.State("MEASURE"):
                m.d.comb += [enable.eq(1), window.eq(1)]
                m.d.sync += cnt.eq(cnt + 1)
                with m.If(cnt + 1 >= self.measure):
                    m.d.sync += cnt.eq(0)
                    m.next = "DRAIN"
            with m.State("DRAIN"):
                m.d.comb += enable.eq(1)
                m.d.sync += cnt.eq(cnt + 1)
                with m.If(tots["marked"] == tots["created_marked"]):
                    m.d.sync += cnt.eq(0)
                    m.next = "STOP"
                with m.Elif(cnt >= self.drain_max):
                    m.d.sync += [cnt.eq(0), self.timed_out.eq(1)]
                    m.next = "STOP"
            with m.State("STOP"):
                m.d.sync += cnt.eq(cnt + 1)
                with m.If(tots["packets"] == tots["created"]):
                    m.next = "DONE"
                with m.Elif(cnt >= self.drain_max):
                    m.d.sync += self.timed_out.eq(1)
                    m.next = "DONE"
            with m.State("DONE"):
                m.d.comb += self.done.eq(1)
        return m
