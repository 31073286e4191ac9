"""CRC-32 (IEEE 802.3: reflected, polynomial 0x04C11DB7, init and final XOR 0xFFFFFFFF)
over the enabled byte lanes of a beat, as combinational XOR networks.

The byte update is a linear map of (crc, byte); its XOR equations are derived here in Python
by pushing symbolic bits through the bit-serial algorithm, so the hardware and the derivation
share no table that could be wrong in the same way."""

from __future__ import annotations

import functools

from amaranth.hdl import Cat, Mux, Signal

POLY_REFLECTED = 0xEDB88320
CRC_INIT = 0xFFFFFFFF
RESIDUE = 0xDEBB20E3   # register value after a frame followed by its own FCS (not inverted)


@functools.cache
def byte_equations() -> tuple[tuple[tuple[int, ...], tuple[int, ...]], ...]:
    """For each of the 32 next-state bits: (crc bits, data bits) whose XOR it is."""
    st = [frozenset({("c", i)}) for i in range(32)]
    for j in range(8):
        st[j] = st[j] ^ {("d", j)}
    for _ in range(8):
        lsb = st[0]
        st = [st[i + 1] for i in range(31)] + [frozenset()]
        st = [s ^ lsb if (POLY_REFLECTED >> i) & 1 else s for i, s in enumerate(st)]
    return tuple((tuple(sorted(i for k, i in s if k == "c")), tuple(sorted(i for k, i in s if k == "d")))
                 for s in st)


def crc_byte_py(crc: int, byte: int) -> int:
    """The same equations evaluated in Python (used by unit tests)."""
    out = 0
    for i, (cs, ds) in enumerate(byte_equations()):
        bit = 0
        for c in cs:
            bit ^= (crc >> c) & 1
        for d in ds:
            bit ^= (byte >> d) & 1
        out |= bit << i
    return out


def crc_register_after(data: bytes, crc: int = CRC_INIT) -> int:
    for b in data:
        crc = crc_byte_py(crc, b)
    return crc


def crc_byte(crc, byte):
    """Amaranth expression: CRC register after one more byte."""
    bits = []
    for cs, ds in byte_equations():
        terms = [crc[c] for c in cs] + [byte[d] for d in ds]
        bits.append(Cat(*terms).xor())
    return Cat(*bits)


def crc_lanes(m, crc, data, enable, name: str = "crc"):
    """CRC register after the bytes of ``data`` whose ``enable`` bit is set, lane 0 first.
    Each lane's result is a combinational Signal added to ``m`` (so the XOR networks of the
    lanes are shared, not duplicated into one exponential expression tree)."""
    for i in range(len(enable)):
        lane = Signal(32, name=f"{name}_lane{i}")
        byte = Signal(8, name=f"{name}_byte{i}")
        en = Signal(name=f"{name}_en{i}")
        m.d.comb += [byte.eq(data[8 * i:8 * i + 8]), en.eq(enable[i]),
                     lane.eq(Mux(en, crc_byte(crc, byte), crc))]
        crc = lane
    return crc
