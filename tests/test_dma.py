"""DMA engine RTL vs golden (cocotb bench on Icarus and Verilator), CSR error paths, and
parameter checks. The golden model itself is checked in test_dma_golden.py."""

from __future__ import annotations

import dataclasses
import random
import zlib

import numpy as np
import pytest

from cosim import dma as D
from cosim.sim import default_sims
from spec import dma as S

MEM = 1 << 15
WINDOWS = [(0, 0x6000), (0x7000, 0x1000)]   # 0x6000..0x6fff is outside every window


def _mem(seed: int) -> np.ndarray:
    return np.frombuffer(random.Random(seed).randbytes(MEM), dtype=np.uint8).copy()


def _desc(src, dst, counts=(1, 1, 1), ss=None, ds=None, esize=0, **kw):
    e = 1 << esize
    return S.Descriptor(src=src, dst=dst, counts=counts, src_strides=ss or (e, 0, 0),
                        dst_strides=ds or (e, 0, 0), esize=esize, **kw)


def _assert_all(scenarios, results, **kw):
    problems = []
    for sc, res in zip(scenarios, results):
        problems += D.check(sc, res, **kw)
    assert not problems, "\n".join(problems)


# --- shapes: 1D / 2D / 3D, row and element modes, on one channel -------------------------------

def shape_scenarios() -> list[D.Scenario]:
    mem = _mem(1)
    shapes = [
        _desc(0x1000, 0x3000, (1, 1, 1)),                                   # one byte
        _desc(0x0800, 0x4800, (4096, 1, 1), irq=True),                     # 4 KiB, 2 x 4K cross
        _desc(0x1003, 0x300B, (1000, 1, 1)),                               # unaligned, congruent
        _desc(0x1001, 0x3000, (40, 1, 1)),                                 # not congruent: elements
        _desc(0x1000, 0x3400, (64, 6, 1), ss=(1, 96, 0), ds=(1, 64, 0), sem=True, sem_id=7),
        _desc(0x1100, 0x3800, (3, 4, 5), ss=(4, 20, 100), ds=(4, 12, 48), esize=2),    # 3D
        _desc(0x1200, 0x3C00, (4, 4, 1), ss=(4, 16, 0), ds=(16, 4, 0), esize=2),     # transpose
        _desc(0x1400, 0x3E00, (5, 2, 1), ss=(48, 256, 0), ds=(16, 80, 0), esize=4),  # 16-B gather
        _desc(0x1800, 0x4000, (2, 2, 1), ss=(128, 512, 0), ds=(128, 256, 0), esize=7),
        _desc(0x1900, 0x4400, (8, 3, 1), ss=(2, 0, 0), ds=(2, 16, 0), esize=1),       # broadcast
        _desc(0x1A00, 0x4600, (6, 1, 1), ss=(8, 0, 0), ds=(0, 0, 0), esize=3),        # dst stride 0
        _desc(0x2000, 0x2400, (64, 1, 1), esize=3, irq=True, sem=True, sem_id=0xA5),  # adjacent
    ]
    head = D.write_chain(mem, [(0x100 + 64 * i, d) for i, d in enumerate(shapes)])
    base = D.Scenario(mem=mem, heads=[head, None], windows=WINDOWS, note="shapes")
    return [base, dataclasses.replace(base, pause=30, seed=5, note="shapes, 30% stalls")]


@pytest.mark.sim
@pytest.mark.parametrize("sim", default_sims())
def test_shapes_single_channel(sim):
    scs = shape_scenarios()
    _assert_all(scs, D.run(scs, sim=sim))


# --- every error path, with the other channel running a normal chain --------------------------

GOOD = _desc(0x1800, 0x2000, (32, 2, 1), ss=(1, 64, 0), ds=(1, 32, 0))


def _error_case(name, bad, next_addr=0x140, bad_read=(), bad_write=()):
    mem = _mem(zlib.crc32(name.encode()))
    placed = [(0x100, GOOD)]
    if bad is not None:
        placed.append((next_addr, bad))
    head = D.write_chain(mem, placed)
    if bad is None:  # descriptor address errors: point GOOD's next at next_addr
        mem[0x100 + 4 * S.W_NEXT:0x100 + 4 * S.W_NEXT + 4] = np.frombuffer(
            next_addr.to_bytes(4, "little"), dtype=np.uint8)
    other = D.write_chain(mem, [
        (0x5000, _desc(0x4000, 0x4800, (16, 8, 2), ss=(1, 24, 200), ds=(1, 16, 128), sem=True,
                       sem_id=1)),
        (0x5040, _desc(0x4800, 0x5800, (256, 1, 1), irq=True))])
    return D.Scenario(mem=mem, heads=[head, other], windows=WINDOWS, bad_read=list(bad_read),
                      bad_write=list(bad_write), note=f"error {name}")


def error_scenarios() -> dict[int, D.Scenario]:
    return {
        S.ERR_DESC_ALIGN: _error_case("desc_align", None, next_addr=0x120),
        S.ERR_DESC_WINDOW: _error_case("desc_window", None, next_addr=0x6800),
        S.ERR_DESC_READ: _error_case("desc_read", GOOD, bad_read=[(0x160, 0x161)]),
        S.ERR_BAD_DESC: _error_case("bad_desc", dataclasses.replace(GOOD, reserved=1 << 20)),
        S.ERR_ZERO_COUNT: _error_case("zero_count", dataclasses.replace(GOOD, counts=(4, 0, 1))),
        S.ERR_MISALIGNED: _error_case("misaligned", _desc(0x1002, 0x3000, (4, 1, 1), esize=2)),
        S.ERR_SRC_WINDOW: _error_case("src_window", _desc(0x5FF0, 0x3000, (32, 1, 1))),
        S.ERR_DST_WINDOW: _error_case("dst_window", _desc(0x1000, 0x6FF8, (4, 1, 1), esize=1)),
        S.ERR_OVERLAP: _error_case("overlap", _desc(0x1000, 0x10F0, (256, 1, 1))),
        S.ERR_READ_RESP: _error_case("read_resp", _desc(0x1000, 0x3000, (256, 1, 1)),
                                     bad_read=[(0x1043, 0x1044)]),
        S.ERR_WRITE_RESP: _error_case("write_resp", _desc(0x1000, 0x3000, (64, 4, 1),
                                                          ss=(1, 64, 0), ds=(1, 80, 0)),
                                      bad_write=[(0x3085, 0x3086)]),
    }


def test_error_scenarios_cover_every_code():
    """The golden model reports the intended code for each case (so the RTL run below
    checks each error path, not just agreement)."""
    cases = error_scenarios()
    assert set(cases) == set(S.ERROR_NAMES) - {S.ERR_NONE}
    for code, sc in cases.items():
        g = D.golden(sc)
        assert g.channels[0].error == code, (S.ERROR_NAMES[code], g.channels[0])
        assert g.channels[0].err_desc == (0x140 if code not in (S.ERR_DESC_ALIGN,
                                                                 S.ERR_DESC_WINDOW)
                                          else {S.ERR_DESC_ALIGN: 0x120,
                                                S.ERR_DESC_WINDOW: 0x6800}[code])
        assert g.channels[0].desc_count == 1
        assert g.channels[1].status == S.ST_DONE and g.channels[1].error == S.ERR_NONE


@pytest.mark.sim
@pytest.mark.parametrize("sim", default_sims())
def test_every_error_path_other_channel_keeps_running(sim):
    scs = list(error_scenarios().values())
    if sim == "icarus":
        scs = scs[::2] + [scs[-1]]  # Icarus is slow: half the codes plus WRITE_RESP
    _assert_all(scs, D.run(scs, sim=sim))


@pytest.mark.sim
@pytest.mark.parametrize("sim", default_sims())
def test_doorbell_again_after_done_and_error(sim):
    """Channels are reusable: ringing again after DONE (channel 1) and after ERROR
    (channel 0) restarts the chain with cleared counters; IRQ_STATUS accumulates."""
    sc = dataclasses.replace(error_scenarios()[S.ERR_OVERLAP], runs=3, note="three runs")
    res = D.run([sc], sim=sim)
    g = D.golden(sc)
    assert g.channels[1].sems == [1, 1, 1] and g.channels[1].desc_count == 2
    _assert_all([sc], res)


# --- random descriptors and chains, several channels, random stalls ---------------------------

@pytest.mark.sim
@pytest.mark.parametrize("sim", default_sims())
def test_random_chains_against_golden(sim):
    seed = random.randrange(1 << 30)
    n = 4 if sim == "icarus" else 40
    print(f"random DMA scenarios: base seed {seed}, {n} scenarios on {sim}")
    scs = [D.random_scenario(seed + i, error_rate=0.1) for i in range(n)]
    _assert_all(scs, D.run(scs, sim=sim))


@pytest.mark.sim
@pytest.mark.slow
def test_random_chains_long_verilator():
    seed = random.randrange(1 << 30)
    print(f"random DMA scenarios: base seed {seed}")
    scs = [D.random_scenario(seed + i, error_rate=0.05, chain_len=(2, 8), max_bytes=4096)
           for i in range(300)]
    _assert_all(scs, D.run(scs, sim="verilator"))


CONFIGS = {
    # 4 channels, 128-bit bus, 16-beat bursts, 32-beat FIFOs: more splits, more arbitration,
    # FIFO-space throttling
    "4ch-128b": {"channels": 4, "data_width": 128, "max_burst": 16, "fifo_depth": 32,
                 "windows": 1},
    # 1 channel, 32-bit bus (16-beat descriptor fetch, 4-byte rotator)
    "1ch-32b": {"channels": 1, "data_width": 32, "max_burst": 64, "fifo_depth": 64,
                "windows": 1},
}


@pytest.mark.sim
@pytest.mark.parametrize("sim", default_sims())
@pytest.mark.parametrize("config", list(CONFIGS))
def test_other_configurations(sim, config):
    if sim == "verilator":
        pytest.skip("one more Verilator build per configuration (~1-2 min on 2 cores): "
                    "run on Verilator by test_other_configurations_verilator (make test-long)")
    _run_config(config, n=2, sim=sim)


@pytest.mark.sim
@pytest.mark.slow
@pytest.mark.parametrize("config", list(CONFIGS))
def test_other_configurations_verilator(config):
    _run_config(config, n=40, sim="verilator")


def _run_config(config, n, sim):
    p = CONFIGS[config]
    seed = random.randrange(1 << 30)
    print(f"{config} scenarios: base seed {seed}, {n} on {sim}")
    wbytes = p["data_width"] // 8
    scs = [D.random_scenario(seed + i, channels=p["channels"], max_bytes=1024, wbytes=wbytes,
                             error_rate=0.1) for i in range(n)]
    scs = [dataclasses.replace(sc, windows=[(0, MEM)]) for sc in scs]
    res = D.run(scs, sim=sim, **p)
    _assert_all(scs, res, data_width=p["data_width"], max_burst=p["max_burst"])


# --- the checker can fail ----------------------------------------------------------------

@pytest.mark.sim
def test_checker_catches_corrupted_results():
    sim = default_sims()[-1]
    sc = shape_scenarios()[0]
    res = D.run([sc], sim=sim)[0]
    assert D.check(sc, res) == []
    bad_mem = dict(res, mem=res["mem"].copy())
    bad_mem["mem"][0x3000] ^= 0x01
    msgs = D.check(sc, bad_mem)
    assert msgs and "0x3000" in msgs[0] and "memory" in msgs[0]
    bad_reg = dict(res, regs=[dict(r) for r in res["regs"]])
    bad_reg["regs"][0]["WR_BEATS"] += 1
    assert any("WR_BEATS" in m for m in D.check(sc, bad_reg))
    bad_sem = dict(res, sems=res["sems"][:-1])
    assert any("semaphore" in m for m in D.check(sc, bad_sem))


# --- CSR error paths ------------------------------------------------------------------------

@pytest.mark.sim
@pytest.mark.parametrize("sim", default_sims())
def test_csr_errors(sim):
    mem = _mem(9)
    long = [(0x100 + 64 * i, _desc(0x1000, 0x3000, (2048, 1, 1))) for i in range(4)]
    sc = D.Scenario(mem=mem, heads=[D.write_chain(mem, long), None], windows=WINDOWS,
                    probe=True, note="csr probe")
    res = D.run([sc], sim=sim)[0]
    ident, config, rd_unmapped, wr_unmapped, wr_ro, wr_partial, head_delta, db_busy = res["probe"]
    assert ident == S.ID_MAGIC
    assert config == 2 | (3 << 8) | (2 << 12) | (255 << 16)
    assert rd_unmapped == 2 and wr_unmapped == 2 and wr_ro == 2, res["probe"]
    assert wr_partial == 2 and head_delta == 0, "partial-strobe write must be refused"
    assert db_busy == 2, "doorbell while BUSY must answer SLVERR"
    _assert_all([sc], [res])   # and the running chain was not disturbed


# --- parameters and Verilog -----------------------------------------------------------------

@pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")
def test_parameter_errors():
    from rtl.dma import DMAEngine

    with pytest.raises(ValueError, match="channels"):
        DMAEngine(channels=0)
    with pytest.raises(ValueError, match="data_width"):
        DMAEngine(data_width=48)
    with pytest.raises(ValueError, match="max_burst"):
        DMAEngine(max_burst=300)
    with pytest.raises(ValueError, match="fifo_depth"):
        DMAEngine(max_burst=64, fifo_depth=32)
    with pytest.raises(TypeError, match="windows"):
        DMAEngine(windows="2")
    e = DMAEngine(channels=3)
    assert (e.channels, e.data_width, e.max_burst, e.fifo_depth, e.id_width) == (3, 64, 256,
                                                                                   512, 2)


def test_driver_argument_errors():
    sc = shape_scenarios()[0]
    with pytest.raises(ValueError, match="heads"):
        D.run([dataclasses.replace(sc, heads=[0x100])])
    with pytest.raises(ValueError, match="windows"):
        D.run([dataclasses.replace(sc, windows=[(0, MEM)])])
    with pytest.raises(ValueError, match="scenarios"):
        D.run([])
