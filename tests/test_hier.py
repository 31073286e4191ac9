"""rtl.hier: hierarchical Verilog generation (a repeated block generated once).

A parent with three identical children (registered multiply-add with a nested signature)
is written flat and hierarchically; the hierarchical text must hold one child module and
three instances, lint clean, and behave cycle for cycle like the flat text under Icarus on
random stimuli.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import numpy as np
import pytest
from amaranth import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from cosim.sim import to_verilog
from rtl import hier

SEED = int(os.environ.get("MAIA_SEED", "7"))


class Pair(wiring.Signature):
    def __init__(self):
        super().__init__({"x": Out(8), "y": Out(8)})


class Child(wiring.Component):
    def __init__(self, k: int):
        self.k = k
        super().__init__({"i": In(Pair()), "o": Out(16), "v": In(1)})

    def elaborate(self, platform):
        m = Module()
        with m.If(self.v):
            m.d.sync += self.o.eq(self.i.x * self.k + self.i.y)
        return m


class Parent(wiring.Component):
    def __init__(self):
        super().__init__({"a": In(8), "b": In(8), "v": In(1), "out": Out(16)})

    def elaborate(self, platform):
        m = Module()
        acc = self.a
        for n in range(3):
            c = m.submodules[f"c{n}"] = hier.instance(Child, 3)
            m.d.comb += [c.i.x.eq(acc), c.i.y.eq(self.b), c.v.eq(self.v)]
            acc = c.o[:8]
        m.d.comb += self.out.eq(acc)
        return m


def _tb(top: str, vectors) -> str:
    lines = ["module tb; reg clk = 0, rst = 1, v = 0; reg [7:0] a = 0, b = 0; "
             "wire [15:0] out;",
             f"  {top} dut(.clk(clk), .rst(rst), .a(a), .b(b), .v(v), .out(out));",
             "  always #5 clk = ~clk;",
             "  initial begin", "    #12 rst = 0;"]
    for x, y, w in vectors:
        lines.append(f"    a = {x}; b = {y}; v = {w}; #10 $display(\"%0d\", out);")
    lines += ["    $finish;", "  end", "endmodule"]
    return "\n".join(lines)


def test_hierarchical_generation_one_module_per_block():
    flat = to_verilog(Parent(), "parent")
    h = hier.generate_hierarchical(Parent(), "parent", to_verilog)
    mods = re.findall(r"^module (\S+)\(", h, flags=re.M)
    child = [mm for mm in mods if mm.startswith("child_")]
    assert len(child) == 1, mods
    assert len(re.findall(rf"^\s*{child[0]} \S+ \(", h, flags=re.M)) == 3
    assert "child_" not in flat  # flat: no stand-in modules
    assert hier._collect is None  # the context is closed again


def test_instance_outside_generation_is_the_component():
    c = hier.instance(Child, 3)
    assert isinstance(c, Child)
    assert "module child(" in to_verilog(c, "child")


@pytest.mark.skipif(shutil.which("iverilog") is None, reason="iverilog not installed")
def test_hierarchical_and_flat_verilog_behave_the_same(tmp_path):
    rng = np.random.default_rng(SEED)
    print(f"seed {SEED}")
    vec = [(int(a), int(b), int(v)) for a, b, v in zip(rng.integers(0, 256, 60),
                                                       rng.integers(0, 256, 60),
                                                       rng.integers(0, 2, 60))]
    outs = []
    for kind, text in (("flat", to_verilog(Parent(), "parent")),
                       ("hier", hier.generate_hierarchical(Parent(), "parent", to_verilog))):
        src = tmp_path / f"{kind}.v"
        src.write_text(text + "\n" + _tb("parent", vec))
        exe = tmp_path / f"{kind}.vvp"
        subprocess.run(["iverilog", "-g2012", "-o", str(exe), "-s", "tb", str(src)],
                       check=True, capture_output=True, text=True)
        r = subprocess.run(["vvp", "-n", str(exe)], check=True, capture_output=True, text=True)
        outs.append([ln for ln in r.stdout.splitlines() if ln.strip().isdigit()])
    assert len(outs[0]) == len(vec)
    assert outs[0] == outs[1]
    assert len(set(outs[0])) > 5  # the stimulus exercised the design


def test_hier_block_names_are_the_separately_generated_modules():
    from cosim.sim import hier_block_names

    h = hier.generate_hierarchical(Parent(), "parent", to_verilog)
    names = hier_block_names(h, "parent")
    assert len(names) == 1 and names[0].startswith("child_"), names
    assert hier_block_names(to_verilog(Parent(), "parent"), "parent") == []  # flat: none


@pytest.mark.sim
def test_verilator_hierarchical_build_matches_icarus(monkeypatch):
    """run_bench(hierarchical=True) on Verilator verilates the child once as a hier_block
    (MAIA_VERILATOR_HIER=1, the default): the model matches flat Icarus cycle for cycle."""
    from cosim.sim import build, run_bench

    rng = np.random.default_rng(SEED + 1)
    print(f"seed {SEED + 1}")
    stim = np.stack([rng.integers(0, 256, 50), rng.integers(0, 256, 50),
                     rng.integers(0, 2, 50)], axis=1)
    params = {"inputs": ["a", "b", "v"], "outputs": ["out"]}
    monkeypatch.setenv("MAIA_VERILATOR_HIER", "1")
    out = {}
    for sim, hierarchical in (("icarus", False), ("verilator", True)):
        out[sim] = run_bench(name="hier_parent", toplevel="parent", make=Parent,
                             test_module="cosim.vectors_bench", params=params,
                             inputs={"stim": stim}, sim=sim,
                             hierarchical=hierarchical)["out"][:, 0]
    bdir = build("hier_parent", "parent", Parent, params, "verilator", hierarchical=True)
    assert "hier_block" in (bdir / "public.vlt").read_text()
    assert [p.name for p in bdir.glob("Vchild_*") if p.is_dir()], "child not built on its own"
    assert len(set(out["icarus"].tolist())) > 5  # the stimulus exercised the design
    assert out["verilator"].tolist() == out["icarus"].tolist()
