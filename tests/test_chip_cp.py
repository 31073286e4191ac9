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
from cosim.lint import lint_in_parts
from cosim.lint import modules as _modules
from cosim.lint import stub as _stub
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


# ------------------------------------------------- the maia200 chip top, linted in parts ----
# (cosim.lint.LINT_IN_PARTS: one Verilator run over the whole top needs more than 23 GB)


def test_stub_keeps_the_ports_and_ties_outputs_to_zero():
    mod = ("module t(a, b, c);\n  input [3:0] a;\n  wire [3:0] a;\n  output [7:0] b;\n"
           "  reg [7:0] b;\n  output c;\n  assign c = a[0];\nendmodule")
    st = _stub(mod)
    assert st.startswith("module t(a, b, c);") and st.endswith("endmodule")
    assert "  input [3:0] a;" in st and "  output [7:0] b;" in st
    assert "assign b = '0;" in st and "assign c = '0;" in st and "a[0]" not in st
    assert _modules("x\n" + mod + "\nmodule \\t.u(q);\nendmodule\n").keys() == {"t", "t.u"}


_TWO_PART = """module tile_0123456789(clk, a, y);
  input clk;
  wire clk;
  input [7:0] a;
  wire [7:0] a;
  output [7:0] y;
  reg [7:0] y = 8'h00;
  always @(posedge clk) y <= a + 8'h01;
endmodule
module top(clk, a, y);
  input clk;
  wire clk;
  input [7:0] a;
  wire [7:0] a;
  output [7:0] y;
  wire [7:0] y;
  wire [7:0] m;
  tile_0123456789 t0 (.clk(clk), .a(a), .y(m));
  tile_0123456789 t1 (.clk(clk), .a(m), .y(y));
endmodule
"""


def test_lint_in_parts_is_clean_and_finds_a_problem_in_either_part(tmp_path):
    from cosim.sim import setup_verilator

    verilator = setup_verilator()
    good = tmp_path / "good.v"
    good.write_text(_TWO_PART)
    assert lint_in_parts(verilator, good, "top", r"tile_[0-9a-f]{10}", tmp_path) == []
    # an undriven wire inside the tile: found by the tile's own run
    bad_tile = tmp_path / "bad_tile.v"
    bad_tile.write_text(_TWO_PART.replace("y <= a + 8'h01;", "y <= a + q;").replace(
        "  reg [7:0] y = 8'h00;", "  reg [7:0] y = 8'h00;\n  wire [7:0] q;"))
    found = lint_in_parts(verilator, bad_tile, "top", r"tile_[0-9a-f]{10}", tmp_path)
    assert [t for t, _ in found] == ["tile_0123456789"], found
    # an undriven wire in the top: found by the stubbed run
    bad_top = tmp_path / "bad_top.v"
    bad_top.write_text(_TWO_PART.replace("  wire [7:0] m;", "  wire [7:0] m;\n  wire [7:0] n;\n"
                                         "  wire [7:0] u = n;"))
    found = lint_in_parts(verilator, bad_top, "top", r"tile_[0-9a-f]{10}", tmp_path)
    assert [t for t, _ in found] == ["top"], found
    with pytest.raises(ValueError, match="part"):
        lint_in_parts(verilator, good, "top", r"router_\w+", tmp_path)


@pytest.mark.slow
def test_maia200_chip_top_generates_and_lints_clean_in_parts(tmp_path):
    # `make verilog-large` writes chip_maia200 (about 30 minutes on the shared 2-core host,
    # 2.3 GB); the lint runs take about 15 GB and 10+ minutes (docs/chip.md "Status")
    from cosim.lint import LINT_IN_PARTS
    from cosim.sim import setup_verilator
    from cosim.verilog import generate

    path = generate(["chip_maia200"], quiet=True)["chip_maia200"]
    bad = lint_in_parts(setup_verilator(), path, "chip_maia200", LINT_IN_PARTS["chip_maia200"],
                        tmp_path)
    assert not bad, "\n".join(f"lint {top}:\n{err}" for top, err in bad)
