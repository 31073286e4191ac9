"""RTL tile vs golden tile through the cocotb bench (Icarus: tiny 1x1 config; Verilator: the
default 2x2 config).

Every test compares the whole TSRAM image, the status words and the exact counters with
golden.tile (cosim.tile.programs.compare); messages carry the word address and both values.
"""

from __future__ import annotations

import numpy as np
import pytest

import cosim.tile as tile
from cosim.sim import default_sims
from cosim.tile import programs as P
from golden import tvp
from golden.tile import GoldenTile, read_matrix_f32
from spec import tile as T

# Icarus runs the tiny 1x1 configuration, Verilator the default 2x2 one. (Since the runner
# makes only top-level ports public, the 2x2 Verilator build takes about 3 minutes on two
# loaded cores instead of the half hour GCC spent on cocotb's full VPI symbol tables.)
SIMS = default_sims()
SIM_PARAMS = list(SIMS)
SMALL = T.TileConfig(rows=1, cols=1, banks=4, tsram_bytes=16384, window=2, max_k=256,
                     n_sems=4)
DEFAULT = T.TileConfig()


def cfg_for(sim):
    return SMALL if sim == "icarus" else DEFAULT


def check(cfg, image, addrs, sim, tag):
    gold = GoldenTile(cfg).run_lists(image, addrs)
    rtl = tile.run(image, cfg, sim=sim, cmd_addr=addrs, tag=tag)
    msgs = P.compare(cfg, image, addrs, rtl, gold)
    assert not msgs, f"{tag} on {sim}: RTL != golden\n" + "\n".join(msgs)
    return gold, rtl


@pytest.mark.sim
@pytest.mark.parametrize("sim", SIM_PARAMS)
def test_gemm_shapes_and_formats(sim):
    cfg = cfg_for(sim)
    seed = 101
    print(f"seed={seed}")
    if sim == "icarus":
        shapes = [(2, 3, 64)]
        pairs = [("e4m3", "e2m1"), ("e2m1", "e2m1")]
    else:
        shapes = [(5, 7, 96), (4, 8, 32), (3, 3, 1024)]   # edge tiles, K = 1 block, 32 blocks
        pairs = P.PAIRS
    image, addrs, _ = P.gemm_program(cfg, seed, shapes, pairs)
    gold, rtl = check(cfg, image, addrs, sim, "gemm")
    assert rtl["status"] == T.status_word(T.ST_DONE, 0, len(shapes) * len(pairs))


@pytest.mark.sim
@pytest.mark.parametrize("sim", SIM_PARAMS)
def test_tvp_every_op(sim):
    cfg = cfg_for(sim)
    rows, n = (2, 12) if sim == "icarus" else (3, 40)
    image, addrs, _ = P.tvp_program(cfg, 7, rows, n)
    check(cfg, image, addrs, sim, "tvp")


@pytest.mark.sim
@pytest.mark.parametrize("sim", SIM_PARAMS)
def test_quantize_matmul_softmax_with_semaphores(sim):
    cfg = cfg_for(sim)
    M, N, K = (2, 8, 32) if sim == "icarus" else (4, 16, 64)
    image, addrs, info = P.pipeline_program(cfg, 3, M, N, K)
    gold, rtl = check(cfg, image, addrs, sim, "pipeline")
    out, M, N = info["softmax"]
    sm = read_matrix_f32(rtl["image"], out, M, N).view(np.float32)
    np.testing.assert_allclose(sm.sum(axis=1), 1.0, rtol=1e-5)


@pytest.mark.sim
@pytest.mark.parametrize("sim", SIM_PARAMS)
def test_every_error_path_and_recovery(sim):
    cfg = cfg_for(sim)
    image, addrs, info = P.error_program(cfg)
    gold, rtl = check(cfg, image, addrs, sim, "errors")
    codes = [T.status_fields(s)[1] for s in rtl["statuses"]]
    assert codes == [T.ERR_BAD_OPCODE, T.ERR_BAD_OPCODE, T.ERR_BAD_FORMAT, T.ERR_BAD_SHAPE,
                     T.ERR_ADDR_RANGE, T.ERR_ADDR_ALIGN, T.ERR_BAD_SEM, T.ERR_BAD_TVP_OP,
                     T.ERR_BAD_SHAPE, T.ERR_NONE]
    assert all(T.status_fields(s)[2] == 1 for s in rtl["statuses"][:-1])
    src = np.linspace(-4, 4, 16, dtype=np.float32).reshape(2, 8).view(np.uint32)
    np.testing.assert_array_equal(read_matrix_f32(rtl["image"], info["dst"], 2, 8),
                                  tvp.exp2(src))


def check_dma(cfg, image, addrs, ext, sim, tag):
    gold = GoldenTile(cfg).run_lists(image, addrs, ext=ext)
    rtl = tile.run(image, cfg, sim=sim, cmd_addr=addrs, tag=tag, ext=ext)
    msgs = P.compare(cfg, image, addrs, rtl, gold, ext=ext)
    assert not msgs, f"{tag} on {sim}: RTL != golden\n" + "\n".join(msgs)
    return gold, rtl


@pytest.mark.sim
@pytest.mark.parametrize("sim", SIM_PARAMS)
def test_dma_overlaps_matmul_through_semaphores(sim):
    """Operands in by DMA, results out by DMA; the second load and the first store run
    while a MATMUL runs (semaphores order the data)."""
    cfg = cfg_for(sim)
    seed = 17
    print(f"seed={seed}")
    M, N, K = (2, 4, 64) if sim == "icarus" else (8, 8, 256)
    image, addrs, info = P.dma_program(cfg, seed, M, N, K)
    gold, rtl = check_dma(cfg, image, addrs, info["ext"], sim, "dma")
    assert rtl["status"] == T.status_word(T.ST_DONE, 0, 7)
    for g in range(2):   # results reached external memory, row padding stripped
        o = info["ext_out"][g]
        c = read_matrix_f32(rtl["image"], info["c"][g], M, N)
        np.testing.assert_array_equal(rtl["ext"][o:o + 4 * M * N].view("<u4").reshape(M, N),
                                      c)
        assert c.any()
    cnt = rtl["counters"]
    assert cnt["dma_bytes"] == gold[-1].counters["dma_bytes"] > 0
    if sim != "icarus":
        # concurrency: the units were busy for more cycles than the whole run took
        assert cnt["ttu_busy"] + cnt["dma_busy"] > cnt["cycles"], cnt


@pytest.mark.sim
@pytest.mark.parametrize("sim", SIM_PARAMS)
def test_dma_error_paths_and_recovery(sim):
    cfg = cfg_for(sim)
    image, addrs, info = P.dma_error_program(cfg)
    gold, rtl = check_dma(cfg, image, addrs, info["ext"], sim, "dma_errors")
    codes = [T.status_fields(s)[1] for s in rtl["statuses"]]
    assert codes == info["codes"], [hex(c) for c in codes]
    assert all(T.status_fields(s)[2] == 1 for s in rtl["statuses"][:-1])
    assert T.status_fields(rtl["statuses"][-1])[0] == T.ST_DONE
    b, b2 = info["buf"], info["buf2"]
    np.testing.assert_array_equal(rtl["image"][b:b + 256], info["ext"][512:768])
    np.testing.assert_array_equal(rtl["image"][b2:b2 + 128],
                                  info["ext"][512:768].reshape(32, 8)[:, :4].ravel())


def test_checker_catches_corruption():
    """compare() must report a flipped result bit, a wrong status and a wrong counter."""
    cfg = SMALL
    image, addrs, info = P.gemm_program(cfg, 5, [(2, 2, 32)], [("e4m3", "e4m3")],
                                        specials=False)
    gold = GoldenTile(cfg).run_lists(image, addrs)
    fake = {"image": gold[-1].tsram.copy(), "statuses": [g.status for g in gold],
            "all_counters": [dict(g.counters) for g in gold]}
    assert P.compare(cfg, image, addrs, fake, gold) == []
    _, pc, M, N = info["outputs"][0]
    fake["image"][pc + 1] ^= 0x01
    msgs = P.compare(cfg, image, addrs, fake, gold)
    assert len(msgs) == 1 and f"byte {pc:#x}" in msgs[0] and "expected" in msgs[0]
    fake["image"][pc + 1] ^= 0x01
    fake["statuses"][0] ^= 1
    fake["all_counters"][0]["macs_lo"] += 1
    msgs = P.compare(cfg, image, addrs, fake, gold)
    assert any("status" in m for m in msgs) and any("macs_lo" in m for m in msgs)


def test_checker_catches_external_memory_corruption():
    """compare() must report a flipped byte in the tile DMA's external memory."""
    cfg = SMALL
    image, addrs, info = P.dma_program(cfg, 4, 2, 4, 64)
    gold = GoldenTile(cfg).run_lists(image, addrs, ext=info["ext"])
    fake = {"image": gold[-1].tsram.copy(), "statuses": [g.status for g in gold],
            "all_counters": [dict(g.counters) for g in gold], "ext": gold[-1].ext.copy()}
    assert P.compare(cfg, image, addrs, fake, gold, ext=info["ext"]) == []
    o = info["ext_out"][1]
    fake["ext"][o + 5] ^= 0x80
    msgs = P.compare(cfg, image, addrs, fake, gold, ext=info["ext"])
    assert len(msgs) == 1 and f"byte {o + 5:#x}" in msgs[0] and "expected" in msgs[0]
    fake["ext"][o + 5] ^= 0x80
    fake["all_counters"][0]["dma_bytes"] -= 32
    msgs = P.compare(cfg, image, addrs, fake, gold, ext=info["ext"])
    assert len(msgs) == 1 and "dma_bytes" in msgs[0]


def test_driver_rejects_bad_image():
    with pytest.raises(ValueError, match="image"):
        tile.run(np.zeros(10, np.uint8), SMALL, sim="icarus")
    with pytest.raises(ValueError, match="cmd_addr"):
        tile.run(np.zeros(SMALL.tsram_bytes, np.uint8), SMALL, sim="icarus", cmd_addr=-1)
    with pytest.raises(ValueError, match="ext"):
        tile.run(np.zeros(SMALL.tsram_bytes, np.uint8), SMALL, sim="icarus",
                 ext=np.zeros(100, np.uint8))


@pytest.mark.sim
def test_replay_cli(tmp_path):
    """python -m cosim.replay tile PROGRAM.npz OUT.npz --check on the smallest config (a
    program with DMA to and from the external memory held in PROGRAM.npz)."""
    import dataclasses
    import json

    from cosim.replay import main

    sim = SIMS[0]
    cfg = cfg_for(sim)
    image, addrs, info = P.dma_program(cfg, 21, 2, 2, 64, ("e5m2", "e2m1"))
    prog = tmp_path / "prog.npz"
    np.savez(prog, image=image, cmd_addr=np.array(addrs), ext=info["ext"],
             config=np.array(json.dumps(dataclasses.asdict(cfg))))
    out = tmp_path / "out.npz"
    assert main(["tile", str(prog), str(out), "--sim", sim, "--check"]) == 0
    with np.load(out) as z:
        gold = GoldenTile(cfg).run(image, ext=info["ext"])
        np.testing.assert_array_equal(z["image"], gold.tsram)
        np.testing.assert_array_equal(z["ext"], gold.ext)
        assert int(z["mismatches"]) == 0
        assert int(z["status"][0]) == gold.status
