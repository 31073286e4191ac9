"""Packet assembly and the cocotb-level scoreboard of the NoC benches (simulator-free, so it
can be unit-tested on synthetic flit streams)."""

from __future__ import annotations

from golden.noc import DeliveryModel, Packet, traffic_packet
from spec import noc as spec


class PacketAssembler:
    """Turns a flit stream (one per endpoint and class) into packets."""

    def __init__(self):
        self.cur: dict = {}

    def push(self, key, kind: int, data: int):
        """Add a flit; returns the flit list when it ends a packet, else None."""
        if kind & spec.KIND_HEAD:
            self.cur[key] = []
        self.cur.setdefault(key, []).append((kind, data))
        if kind & spec.KIND_TAIL:
            return tuple(self.cur.pop(key))
        return None


class Scoreboard:
    """Every packet once, intact, in order per flow (source, destination, class), checked
    against golden.noc.DeliveryModel; traffic packets are also checked against the packet
    the generator contract says it must send (spec.traffic_payload)."""

    def __init__(self, kx: int, ky: int, flit_width: int = 64):
        self.kx, self.ky, self.fw = kx, ky, flit_width
        self.model = DeliveryModel(kx, ky)
        self.inj, self.ej = PacketAssembler(), PacketAssembler()
        self.injected = 0
        self.errors: list[str] = []

    def coords(self, node: int) -> tuple[int, int]:
        return node % self.kx, node // self.kx

    def on_inject(self, node: int, cls: int, kind: int, data: int, cycle: int = -1):
        flits = self.inj.push((node, cls), kind, data)
        if flits is None:
            return
        p = Packet(src=self.coords(node), cls=cls, flits=flits)
        h = p.head
        if h["op"] == spec.OP_TRAFFIC:
            want = traffic_packet(p.src, p.dst, cls, h["seq"], h["len"] + 1, self.fw,
                                  h["stamp"], h["mark"])
            if want.flits != p.flits:
                self.errors.append(f"cycle {cycle}: generator at {p.src} sent {p.hex()}, "
                                   f"contract says {want.hex()}")
        self.injected += 1
        self.model.inject(p)

    def on_eject(self, node: int, cls: int, kind: int, data: int, cycle: int = -1):
        flits = self.ej.push((node, cls), kind, data)
        if flits is None:
            return
        first = flits[0][1]
        src = (spec.field_get(first, spec.HEAD_FIELDS["src_x"]),
               spec.field_get(first, spec.HEAD_FIELDS["src_y"]))
        err = self.model.deliver(self.coords(node), Packet(src=src, cls=cls, flits=flits))
        if err:
            self.errors.append(f"cycle {cycle}: {err}")

    def finish(self, drained: bool = True) -> list[str]:
        if drained and self.model.outstanding():
            lost = [(k, [p.hex() for p in q]) for k, q in self.model.pending.items() if q]
            self.errors.append(f"{self.model.outstanding()} packets never delivered: {lost[:4]}")
        return self.errors

    @property
    def delivered(self) -> int:
        return self.model.delivered
