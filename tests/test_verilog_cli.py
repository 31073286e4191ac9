"""cosim.verilog: writing Verilog tops, and keeping those whose sources did not change."""

from __future__ import annotations

import pytest

from cosim import verilog


def test_generate_writes_then_keeps_unchanged_top(tmp_path, capsys):
    out = verilog.generate(["mxdot"], out=tmp_path)
    path = out["mxdot"]
    assert path == tmp_path / "mxdot.v"
    assert "module mxdot(" in path.read_text()
    key = tmp_path / ".mxdot.key"
    assert key.exists()
    path.write_text("// marker: must survive an unchanged-sources run\n")
    verilog.generate(["mxdot"], out=tmp_path)
    assert path.read_text().startswith("// marker")
    assert "unchanged sources" in capsys.readouterr().out
    key.write_text("stale\n")  # a different source fingerprint forces regeneration
    verilog.generate(["mxdot"], out=tmp_path)
    assert "module mxdot(" in path.read_text()


def test_unknown_top_is_a_clear_error(tmp_path):
    with pytest.raises(SystemExit, match="unknown Verilog top"):
        verilog.generate(["no_such_top"], out=tmp_path)


def test_all_includes_large_tops():
    regular = set(verilog.discover())
    every = set(verilog.discover(large=True))
    assert {"chip", "chip_maia200", "tray_tiny"} <= every - regular
    assert "mxdot" in regular
