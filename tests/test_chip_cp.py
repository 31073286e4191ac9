"""The command processor's link to the clusters (docs/chip.md "CP and clusters"): port
widths that do not grow with the tile count, and a multi-cluster, multi-tile chip on RTL
against golden (tile starts, tile status, DMA CSRs and semaphores of every cluster go over
the shared link).

    .venv/bin/pytest -n 0 -m "not slow" tests/test_chip_cp.py
"""

from __future__ import annotations

import numpy as np
import pytest
from amaranth.hdl import Shape

from cosim.chip.fuzz import random_program
from cosim.chip.program import compare, random_gemm
from rtl.chip.cluster import Cluster
from rtl.chip.cp import ClusterLinkSignature, CommandProcessor, dma_csr_addr_width
from spec import chip as C
from spec import dma as D

# two clusters of two 1x1-cell tiles: the smallest chip where the link's cluster and tile
# decoding matters (a 2 x 2 NoC mesh with two HBM nodes)
TINY_2X2 = C.TINY.with_(name="tiny_2x2", mesh_x=2, tiles=2)


def _ports(component):
    """The signature of a component built only to count its ports (never elaborated)."""
    component._MustUse__used = True
    return component.signature


def _bits(sig) -> int:
    """Total port bits of a wiring.Signature."""
    return sum(Shape.cast(m.shape).width for _, m, _ in sig.flatten(sig.create()))


def test_cp_and_cluster_ports_do_not_grow_with_the_tile_count():
    # The former CP took 128 status/counter bits per tile, 8 per semaphore and one
    # AXI4-Lite port per cluster: over 100,000 port bits on maia200, more than the 65,536
    # Amaranth allows a module. The link grows with log2 of the counts only.
    link = {cfg.name: _bits(ClusterLinkSignature(cfg)) for cfg in (C.TINY, C.DEFAULT, C.MAIA200)}
    assert link == {"tiny": 306, "default": 316, "maia200": 358}, link
    cp_tiny = _bits(_ports(CommandProcessor(C.TINY)))
    cp_maia = _bits(_ports(CommandProcessor(C.MAIA200)))
    cl_maia = _bits(_ports(Cluster(C.MAIA200)))
    # the CP: the link, the host AXI4-Lite, the HBM AXI4 manager, irq
    assert cp_maia - cp_tiny == link["maia200"] - link["tiny"], (cp_tiny, cp_maia)
    assert cp_maia < 2_000 and cl_maia < 2_000, (cp_maia, cl_maia)
    assert dma_csr_addr_width(C.MAIA200) == D.CSR_ADDR_WIDTH + 8     # 160 clusters
    assert dma_csr_addr_width(C.TINY) == D.CSR_ADDR_WIDTH + 1


def test_link_signature_rejects_a_non_config():
    with pytest.raises(TypeError, match="cfg"):
        ClusterLinkSignature("maia200")


@pytest.mark.sim
@pytest.mark.slow
def test_rtl_two_cluster_chip_matches_golden():
    # Verilator, hierarchical build (one cluster module, one tile module). A GEMM dealt over
    # all four tiles (tile starts and status polls of both clusters), then seeded random
    # programs (DMA CSRs of both clusters, semaphores, every error path).
    p, h, ref = random_gemm(TINY_2X2, 32, 32, 64, "e4m3", "e4m3", seed=7, bn=8)
    g = p.run("golden")
    r = p.run("verilator")
    errs = compare(g, r)
    assert not errs, "RTL (verilator, tiny_2x2) vs golden:\n" + "\n".join(errs)
    got = h.read(r)
    bad = np.argwhere(got != ref)
    assert bad.size == 0, (f"{len(bad)} elements differ, first {tuple(bad[0])}: expected "
                           f"{ref[tuple(bad[0])]:#010x} got {got[tuple(bad[0])]:#010x}")
    assert r.regs["TILE_DISPATCH"] >= 4, r.regs
    print(f"tiny_2x2 GEMM: RTL {r.cycles} cycles, golden estimate {g.cycles}")
    for seed in (21, 22):
        print(f"random program seed {seed} on tiny_2x2, verilator")
        p = random_program(TINY_2X2, seed, steps=30)
        g, r = p.run("golden"), p.run("verilator")
        errs = compare(g, r)
        assert not errs, f"seed {seed}: RTL vs golden:\n" + "\n".join(errs)
