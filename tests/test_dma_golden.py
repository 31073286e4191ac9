"""Golden DMA model against independent references (numpy index arithmetic, hand-packed
descriptor bytes) and the written contract (docs/dma.md)."""

from __future__ import annotations

import random
import struct

import numpy as np
import pytest

from cosim.dma import random_descriptor, write_chain
from golden import dma as G
from spec import dma as S

MEM = 1 << 14
WIN = [(0, MEM), (0, 0)]


def _mem(seed=0):
    return np.frombuffer(random.Random(seed).randbytes(MEM), dtype=np.uint8).copy()


def _reference_copy(mem, d: S.Descriptor) -> np.ndarray:
    """numpy fancy indexing: every element's byte addresses, row-major order."""
    e = d.elem_bytes
    i2, i1, i0, b = np.meshgrid(*(np.arange(n) for n in (d.counts[2], d.counts[1],
                                                         d.counts[0], e)), indexing="ij")
    src = d.src + i0 * d.src_strides[0] + i1 * d.src_strides[1] + i2 * d.src_strides[2] + b
    dst = d.dst + i0 * d.dst_strides[0] + i1 * d.dst_strides[1] + i2 * d.dst_strides[2] + b
    out = mem.copy()
    out[dst.ravel()] = mem[src.ravel()]
    return out


def test_descriptor_bytes_match_documented_layout():
    d = S.Descriptor(src=0x11223344, dst=0x55667788, counts=(3, 4, 5),
                     src_strides=(8, 0x100, 0x1000), dst_strides=(16, 0x200, 0x2000),
                     esize=3, next=0x9AC0, irq=True, sem=True, sem_id=0x5A)
    ctrl = 3 | (1 << 3) | (1 << 4) | (0x5A << 8)
    expected = struct.pack("<16I", 0x11223344, 0x55667788, 0x9AC0, ctrl, 3 | (4 << 16), 5,
                           8, 0x100, 0x1000, 16, 0x200, 0x2000, 0, 0, 0, 0)
    assert d.pack() == expected
    assert S.Descriptor.unpack(expected) == d


@pytest.mark.parametrize("field,kw", [
    ("src", {"src": 1 << 32}), ("counts\\[1\\]", {"counts": (1, 70000, 1)}),
    ("esize", {"esize": 8}), ("sem_id", {"sem_id": 256}),
    ("dst_strides\\[2\\]", {"dst_strides": (1, 0, -4)}), ("counts", {"counts": (1, 1)}),
])
def test_descriptor_rejects_unencodable_fields(field, kw):
    args = {"src": 0, "dst": 0x100, **kw}
    with pytest.raises(ValueError, match=field):
        S.Descriptor(**args)


@pytest.mark.parametrize("seed", range(40))
def test_random_descriptor_matches_numpy_reference(seed):
    rng = random.Random(seed)
    mem = _mem(seed)
    got = random_descriptor(rng, (2048, MEM), 8, max_bytes=1024)
    assert got is not None
    d, _ = got
    write_chain(mem, [(0x40, d)])
    res = G.run(mem, [0x40], WIN)
    ch = res.channels[0]
    assert (ch.status, ch.error, ch.desc_count) == (S.ST_DONE, S.ERR_NONE, 1), ch
    ref = _reference_copy(mem, d)
    diff = np.flatnonzero(ref != res.mem)
    assert diff.size == 0, f"seed {seed} {d}: first differing byte {diff[:4]}"
    assert ch.bytes == d.counts[0] * d.counts[1] * d.counts[2] * d.elem_bytes


def test_beat_counts_row_and_element_mode():
    mem = _mem()
    # row mode: 100 bytes from offset 3 -> words 0x1000..0x1067 -> 13 beats per side
    row = S.Descriptor(src=0x1003, dst=0x200B, counts=(100, 1, 1))
    # element mode (offsets differ mod 8): one beat per element
    elem = S.Descriptor(src=0x1003, dst=0x2004, counts=(100, 1, 1))
    for d, beats in ((row, 13), (elem, 100)):
        write_chain(mem, [(0x40, d)])
        ch = G.run(mem, [0x40], WIN).channels[0]
        assert (ch.rd_beats, ch.wr_beats) == (beats, beats), d
    # 64-bit bus vs 128-bit bus: the offset rule is modulo the bus width
    d = S.Descriptor(src=0x1008, dst=0x2000, counts=(64, 1, 1))
    write_chain(mem, [(0x40, d)])
    assert G.run(mem, [0x40], WIN, data_width=64).channels[0].wr_beats == 8
    assert G.run(mem, [0x40], WIN, data_width=128).channels[0].wr_beats == 64


def test_chain_order_later_descriptor_sees_earlier_writes():
    mem = _mem(3)
    a = S.Descriptor(src=0x1000, dst=0x2000, counts=(64, 1, 1), sem=True, sem_id=1)
    b = S.Descriptor(src=0x2000, dst=0x3000, counts=(64, 1, 1), irq=True, sem=True, sem_id=2)
    write_chain(mem, [(0x40, a), (0x80, b)])
    res = G.run(mem, [0x40], WIN)
    assert np.array_equal(res.mem[0x3000:0x3040], mem[0x1000:0x1040])
    ch = res.channels[0]
    assert (ch.desc_count, ch.cur_desc, ch.sems, ch.irq_status) == (2, 0x80, [1, 2],
                                                                     S.IRQ_DONE)


def test_error_priority_and_no_write_on_validation_error():
    mem = _mem(4)
    # zero count and misaligned: ZERO_COUNT is checked first; nothing is written
    d = S.Descriptor(src=0x1001, dst=0x2000, counts=(0, 1, 1), esize=2)
    write_chain(mem, [(0x40, d)])
    res = G.run(mem, [0x40], WIN)
    assert res.channels[0].error == S.ERR_ZERO_COUNT
    assert np.array_equal(res.mem, mem)
    # both windows: a range inside the second one is fine, one straddling both is not
    win = [(0, 0x1000), (0x1000, 0x1000)]
    for dst, code in ((0x1800, S.ERR_NONE), (0x0FF0, S.ERR_DST_WINDOW)):
        d = S.Descriptor(src=0x100, dst=dst, counts=(32, 1, 1))
        write_chain(mem, [(0x40, d)])
        assert G.run(mem, [0x40], win).channels[0].error == code


def test_read_fault_poisons_whole_beats_only():
    mem = _mem(5)
    d = S.Descriptor(src=0x1000, dst=0x3000, counts=(64, 1, 1))
    write_chain(mem, [(0x40, d)])
    res = G.run(mem, [0x40], WIN, bad_read=[(0x1012, 0x1013)])
    ch = res.channels[0]
    assert (ch.error, ch.err_desc, ch.desc_count) == (S.ERR_READ_RESP, 0x40, 0)
    expect = mem.copy()
    expect[0x3000:0x3010] = mem[0x1000:0x1010]     # beats before the faulty word
    expect[0x3018:0x3040] = mem[0x1018:0x1040]     # beats after it (descriptor completes)
    assert np.array_equal(res.mem, expect)


def test_write_fault_drops_only_that_beat():
    mem = _mem(6)
    d = S.Descriptor(src=0x1004, dst=0x3004, counts=(32, 1, 1))  # row mode
    write_chain(mem, [(0x40, d)])
    res = G.run(mem, [0x40], WIN, bad_write=[(0x3009, 0x300A)])
    assert res.channels[0].error == S.ERR_WRITE_RESP
    expect = mem.copy()
    expect[0x3004:0x3024] = mem[0x1004:0x1024]
    expect[0x3008:0x3010] = mem[0x3008:0x3010]     # the beat at 0x3008 was refused
    assert np.array_equal(res.mem, expect)
    # element mode (offsets differ): every byte is its own beat, only 0x3009 is lost
    d = S.Descriptor(src=0x1000, dst=0x3004, counts=(32, 1, 1))
    write_chain(mem, [(0x40, d)])
    res = G.run(mem, [0x40], WIN, bad_write=[(0x3009, 0x300A)])
    expect = mem.copy()
    expect[0x3004:0x3024] = mem[0x1000:0x1020]
    expect[0x3009] = mem[0x3009]
    assert np.array_equal(res.mem, expect)


def test_run_argument_errors():
    mem = _mem()
    with pytest.raises(ValueError, match="mem"):
        G.run(mem.astype(np.int16), [0], WIN)
    with pytest.raises(ValueError, match="data_width"):
        G.run(mem, [0], WIN, data_width=48)
    with pytest.raises(ValueError, match=r"windows\[0\]"):
        G.run(mem, [0], [(0, MEM + 1)])
    with pytest.raises(ValueError, match=r"heads\[1\]"):
        G.run(mem, [0, -5], WIN)
    with pytest.raises(ValueError, match="bad_read"):
        G.run(mem, [0], WIN, bad_read=[(5, 1)])


def test_docs_tables_match_spec():
    """docs/dma.md's CSR and error tables name the same offsets, access types and codes as
    spec/dma.py."""
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "docs" / "dma.md").read_text()
    regs = {name: (int(off, 16), acc) for off, name, acc in
            re.findall(r"^\| (0x[0-9A-F]{2}) \| ([A-Z_]+) \| (RO|RW|WO|RW1C) \|", text, re.M)}
    assert regs == S.CH_REGS
    errs = {int(code): name for code, name in
            re.findall(r"^\| (\d+) \| ([A-Z_]+) \|", text, re.M)}
    assert errs == S.ERROR_NAMES


def test_looping_chain_is_reported():
    mem = _mem(7)
    d = S.Descriptor(src=0x1000, dst=0x2000, counts=(8, 1, 1), next=0x40)
    write_chain(mem, [(0x40, d)])
    mem[0x48:0x4C] = np.frombuffer((0x40).to_bytes(4, "little"), dtype=np.uint8)
    with pytest.raises(RuntimeError, match="loop"):
        G.run(mem, [0x40], WIN, max_descriptors=100)
