"""cosim.sim's Verilog cache key: the sources a factory reaches through static imports."""

from __future__ import annotations

from cosim import sim
from cosim.sim import ROOT, source_files, source_fingerprint
from rtl.chip import VERILOG_TOPS as CHIP_TOPS
from rtl.mxdot import VERILOG_TOPS as MXDOT_TOPS


def _rel(files):
    return {p.relative_to(ROOT).as_posix() for p in files}


def test_mxdot_depends_on_its_own_sources_only():
    files = _rel(source_files(next(iter(MXDOT_TOPS.values()))))
    assert {"rtl/mxdot.py", "rtl/fp32.py", "spec/formats.py"} <= files
    assert not any(f.startswith(("rtl/chip/", "rtl/noc/", "rtl/nic/", "golden/")) for f in files)


def test_relative_and_package_imports_are_followed():
    files = _rel(source_files(next(iter(CHIP_TOPS.values()))))
    # rtl/noc/mesh.py imports the router with "from .router import"; rtl/nic/core.py uses
    # "from ..axi import"; the chip imports its tiles through the rtl.tile package
    assert {"rtl/noc/router.py", "rtl/axi.py", "rtl/nic/crc.py", "rtl/tile/ttu.py",
            "rtl/chip/top.py", "rtl/__init__.py"} <= files
    assert "rtl/noc/traffic.py" not in files  # not imported by the chip


def test_fingerprint_follows_a_dependency_edit(monkeypatch):
    make = next(iter(MXDOT_TOPS.values()))
    before = source_fingerprint(make)
    fp32 = ROOT / "rtl" / "fp32.py"
    real = type(fp32).read_bytes

    def edited(self):
        data = real(self)
        return data + b"\n# edit\n" if self == fp32 else data

    monkeypatch.setattr(type(fp32), "read_bytes", edited)
    assert source_fingerprint(make) != before


def test_unknown_factory_falls_back_to_all_sources():
    class NoModule:
        __module__ = None

        def __call__(self):
            raise AssertionError("not called")

    assert source_fingerprint(NoModule()) == sim.rtl_fingerprint()
