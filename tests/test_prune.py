"""cosim.prune: which stale simulator builds and Verilog files it deletes, and which it keeps."""

from __future__ import annotations

import os
import time

import pytest

from cosim import prune


def _build(root, name, sim, key, age_s, built=True):
    d = root / f"{name}-{sim}-{key:012x}"
    (d / "runs").mkdir(parents=True)
    (d / "model.so").write_bytes(b"x" * 10)
    if built:
        (d / ".built").write_text("1.0\n")
    t = time.time() - age_s
    for p in (d / "runs", d / ".built", d):
        if p.exists():
            os.utime(p, (t, t))
    return d


def test_keeps_the_newest_builds_per_design_and_simulator(tmp_path):
    hour = 3600
    a = [_build(tmp_path, "chip_tiny", "verilator", k, age_s=(k + 1) * hour) for k in range(5)]
    i = [_build(tmp_path, "chip_tiny", "icarus", k, age_s=(k + 1) * hour) for k in range(2)]
    other = _build(tmp_path, "noc_axi_2x2", "verilator", 9, age_s=10 * hour)
    unfinished = _build(tmp_path, "chip_tiny", "verilator", 7, age_s=9 * hour, built=False)
    gone = prune.stale(tmp_path, keep=2, min_age_s=60)
    assert gone == sorted(a[2:])  # the three least recently used verilator builds
    assert all(p.exists() for p in [*i, other, unfinished])


def test_recent_use_protects_an_old_build(tmp_path):
    old = _build(tmp_path, "tile", "verilator", 1, age_s=5)   # used seconds ago
    _build(tmp_path, "tile", "verilator", 2, age_s=1)
    assert prune.stale(tmp_path, keep=1, min_age_s=600) == []
    assert prune.stale(tmp_path, keep=1, min_age_s=0) == [old]


def test_verilog_cache_files_per_name(tmp_path):
    v = tmp_path / "verilog"
    v.mkdir()
    files = []
    for k in range(4):
        f = v / f"mxdot-{k:016x}.v"
        f.write_text("module m; endmodule\n")
        t = time.time() - (k + 1) * 3600
        os.utime(f, (t, t))
        files.append(f)
    assert prune.stale(tmp_path, keep=3, min_age_s=60) == [files[3]]


def test_main_deletes_and_dry_run_does_not(tmp_path, monkeypatch, capsys):
    root = tmp_path / "sim"
    root.mkdir()
    old = _build(root, "tile", "icarus", 1, age_s=7200)
    _build(root, "tile", "icarus", 2, age_s=3600)
    monkeypatch.setattr(prune, "BUILD", tmp_path)
    assert prune.main(["--keep", "1", "--dry-run"]) == 0
    assert old.exists() and "would delete" in capsys.readouterr().out
    assert prune.main(["--keep", "1"]) == 0
    assert not old.exists()


def test_keep_must_be_positive(tmp_path):
    with pytest.raises(ValueError, match="keep"):
        prune.stale(tmp_path, keep=0)
