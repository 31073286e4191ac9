"""The tray benchmark's row selection (cosim/bench/tray.py, MAIA_TRAY_RTL) and its scaling
line, without a simulator: the RTL runs and the transport model are replaced by stubs that
return fixed figures, so these tests check which rows `make bench BENCH=tray` produces and
how they are labelled, not the figures themselves (docs/tray.md "Figures")."""

from __future__ import annotations

import pytest

from cosim.bench import __main__ as bench_main
from cosim.bench import tray as B


@pytest.mark.parametrize("value,sets", [
    (None, ("perf",)),                 # unset: the default set
    ("", ("perf",)),
    ("default", ("perf",)),
    (" default ", ("perf",)),
    ("scaling", ("pair", "perf")),
    ("0", ()),
    ("1", ("pair", "tray", "perf")),
    ("pair", ("pair",)),
    ("tray", ("tray",)),
    ("perf", ("perf",)),
    ("8", ("8",)),
    ("all", ("pair", "perf", "8")),
])
def test_rtl_selection(value, sets):
    env = {} if value is None else {"MAIA_TRAY_RTL": value}
    assert B.rtl_selection(env) == sets


@pytest.mark.parametrize("value", ["2", "yes", "PERF", "pair,perf", "-1"])
def test_rtl_selection_rejects_other_values_naming_the_variable(value):
    with pytest.raises(ValueError, match=r"MAIA_TRAY_RTL must be .*'" + value):
        B.rtl_selection({"MAIA_TRAY_RTL": value})


@pytest.mark.parametrize("sel,var", [
    ("", "MAIA_TRAY_RTL_PERF_COUNT"), ("perf", "MAIA_TRAY_RTL_PERF_COUNT"),
    ("scaling", "MAIA_TRAY_RTL_PERF_COUNT"),
    ("8", "MAIA_TRAY_RTL_PERF_COUNT"), ("tray", "MAIA_TRAY_RTL_COUNT"),
    ("1", "MAIA_TRAY_RTL_COUNT")])
@pytest.mark.parametrize("bad", ["abc", "0", "-16", "100", "1.5"])
def test_rtl_selection_checks_the_chosen_sets_sizes(sel, var, bad):
    with pytest.raises(ValueError, match=f"{var} must be a positive"):
        B.rtl_selection({"MAIA_TRAY_RTL": sel, var: bad})


def test_size_variables_parse_and_unused_ones_are_not_checked():
    assert B.env_count("MAIA_TRAY_RTL_PERF_COUNT", 7, {}) == 7
    assert B.env_count("MAIA_TRAY_RTL_PERF_COUNT", 7,
                       {"MAIA_TRAY_RTL_PERF_COUNT": "16384"}) == 16384
    assert B.env_count("MAIA_TRAY_RTL_COUNT", 7, {"MAIA_TRAY_RTL_COUNT": "0x10000"}) == 65536
    # the transport-model-only run ignores the RTL sizes
    assert B.rtl_selection({"MAIA_TRAY_RTL": "0", "MAIA_TRAY_RTL_PERF_COUNT": "abc"}) == ()
    assert B.rtl_selection({"MAIA_TRAY_RTL": "pair", "MAIA_TRAY_RTL_COUNT": "abc"}) == (
        "pair",)


# ---- run() with stubbed simulations ------------------------------------------------------

def _model(n, kind=None, faults=None, seed=1, count=0):
    return dict(cycles=1000.0, busbw=1.0, frac=0.5, over_link=1.5, retransmits=0,
                timeouts=0, faults=0, est=dict(cycles=900.0, ideal_busbw=2.0, link_limit=1.0))


PERF_FRAC = {None: 0.891, "drop": 0.767}     # stub figures, 0 % and 1 % drop


@pytest.fixture
def stubs(monkeypatch):
    """Replace the transport model and every RTL run by stubs; record the RTL calls."""
    calls = []

    def pair():
        calls.append(("pair",))
        return dict(cycles=31976, busbw=4.1, lim=6.0,
                    est=dict(cycles=28028.0, ideal_busbw=6.0, link_limit=6.0))

    def tray(count, faults=None, seed=1, perf=False):
        calls.append(("tray", count, bool(faults), perf))
        frac = PERF_FRAC["drop" if faults else None]
        return dict(cycles=79696, frac=frac, over_link=3 * frac, retransmits=0,
                    model_frac=0.885, model_cycles=80295.0, wire_util=0.9, hbm_prof=None,
                    est=dict(cycles=80188.0, ideal_busbw=22.14, link_limit=7.38))

    def tray8(count, *, perf=False, faults=None, seed=1):
        raise AssertionError("the 8-chip rows are not in this selection")

    monkeypatch.setattr(B, "_run", _model)
    monkeypatch.setattr(B, "_rtl_pair_allreduce", pair)
    monkeypatch.setattr(B, "_rtl_tray_allreduce", tray)
    monkeypatch.setattr(B, "_rtl_tray8_allreduce", tray8)
    return calls


def _metrics(out):
    return {k: v for k, v in out.items() if isinstance(v, dict) and "value" in v}


def test_default_run_has_the_4chip_1mib_rows_and_their_scaling_rows(stubs, monkeypatch):
    monkeypatch.delenv("MAIA_TRAY_RTL", raising=False)
    monkeypatch.delenv("MAIA_TRAY_RTL_PERF_COUNT", raising=False)
    out = B.run()
    assert stubs == [("tray", 1 << 18, False, True), ("tray", 1 << 18, True, True)]
    assert out["rtl_sets"] == {"MAIA_TRAY_RTL": "(unset)", "sets": ["perf"]}
    m = _metrics(out)
    for k, v in m.items():          # the cosim.bench metric format
        assert set(v) >= {"value", "unit", "target"}, k
    assert m["rtl_perf_allreduce_4chip_1024KiB_busbw_frac_loss0"]["target"] == ">= 0.8"
    assert not [k for k in out if k.startswith("rtl_allreduce_2chip")]
    assert list(out)[-2:] == ["rtl_scaling_4chip_tray_perf_1MiB_busbw_frac_loss0",
                              "rtl_scaling_4chip_tray_perf_1MiB_busbw_frac_loss1pct"]


def test_scaling_run_has_the_pair_row_and_the_2_to_4_chip_scaling_line(stubs, monkeypatch):
    monkeypatch.setenv("MAIA_TRAY_RTL", "scaling")
    monkeypatch.delenv("MAIA_TRAY_RTL_PERF_COUNT", raising=False)
    out = B.run()
    assert stubs == [("pair",), ("tray", 1 << 18, False, True), ("tray", 1 << 18, True, True)]
    m = _metrics(out)
    for k, v in m.items():          # the cosim.bench metric format
        assert set(v) >= {"value", "unit", "target"}, k
    assert m["rtl_perf_allreduce_4chip_1024KiB_busbw_frac_loss0"]["value"] == 0.891
    assert m["rtl_perf_allreduce_4chip_1024KiB_busbw_frac_loss0"]["target"] == ">= 0.8"
    assert m["rtl_perf_allreduce_4chip_1024KiB_busbw_frac_loss1pct"]["value"] == 0.767
    # 2 chips: busbw / the 2-chip bound (the stub's 4.1 / 6.0)
    assert m["rtl_allreduce_2chip_128KiB_busbw_frac"]["value"] == round(4.1 / 6.0, 4)
    scaling = [k for k in out if k.startswith("rtl_scaling_")]
    assert scaling == ["rtl_scaling_2chip_tiny_nic_128KiB_busbw_frac_loss0",
                       "rtl_scaling_4chip_tray_perf_1MiB_busbw_frac_loss0",
                       "rtl_scaling_4chip_tray_perf_1MiB_busbw_frac_loss1pct"]
    assert list(out)[-3:] == scaling            # printed last, together
    assert [out[k]["value"] for k in scaling] == [round(4.1 / 6.0, 4), 0.891, 0.767]
    assert [out[k]["target"] for k in scaling] == [None, ">= 0.8", "reported"]
    assert [out[k]["note"].split()[2] for k in scaling] == [
        "rtl_allreduce_2chip_128KiB_busbw_frac",
        "rtl_perf_allreduce_4chip_1024KiB_busbw_frac_loss0",
        "rtl_perf_allreduce_4chip_1024KiB_busbw_frac_loss1pct"]
    assert out["rtl_sets"] == {"MAIA_TRAY_RTL": "scaling", "sets": ["pair", "perf"]}
    # the printed table shows the scaling line and judges the target row
    lines = bench_main.table("tray", out).splitlines()
    row = next(ln for ln in lines if "rtl_scaling_4chip_tray_perf_1MiB_busbw_frac_loss0" in ln)
    assert "0.891" in row and ">= 0.8" in row and row.rstrip().endswith("ok")
    assert any("rtl_scaling_2chip_tiny_nic_128KiB" in ln for ln in lines)


def test_a_figure_below_the_target_is_marked_miss(stubs, monkeypatch):
    monkeypatch.setenv("MAIA_TRAY_RTL", "perf")
    monkeypatch.setitem(PERF_FRAC, None, 0.79)
    out = B.run()
    lines = bench_main.table("tray", out).splitlines()
    row = next(ln for ln in lines if "rtl_scaling_4chip_tray_perf_1MiB_busbw_frac_loss0" in ln)
    assert "0.79" in row and row.rstrip().endswith("MISS"), row


def test_a_failed_rtl_run_is_a_failed_row_in_the_scaling_line(stubs, monkeypatch):
    monkeypatch.setenv("MAIA_TRAY_RTL", "perf")

    def wrong(count, faults=None, seed=1, perf=False):
        raise RuntimeError("tray bench: RTL tray all-reduce result of rank 2 differs from golden")

    monkeypatch.setattr(B, "_rtl_tray_allreduce", wrong)
    out = B.run()
    for loss in ("loss0", "loss1pct"):
        row = out[f"rtl_perf_allreduce_4chip_1024KiB_busbw_frac_{loss}"]
        assert row["value"] is None and "rank 2 differs" in row["error"]
        sc = out[f"rtl_scaling_4chip_tray_perf_1MiB_busbw_frac_{loss}"]
        assert sc["value"] is None and "FAILED" in sc["note"]
    table = bench_main.table("tray", out)
    assert " ok" not in table.split("rtl_scaling_4chip_tray_perf_1MiB_busbw_frac_loss0")[1]


def test_transport_model_only_runs_no_rtl(stubs, monkeypatch):
    monkeypatch.setenv("MAIA_TRAY_RTL", "0")
    out = B.run()
    assert stubs == []
    assert not [k for k in out if k.startswith("rtl_") and k != "rtl_sets"]
    assert out["allreduce_4chip_1MiB_busbw_frac_loss0"]["target"] == ">= 0.8"


def test_a_bad_value_fails_before_any_run(stubs, monkeypatch):
    def no_model(*a, **k):
        raise AssertionError("the transport model ran before the check")

    monkeypatch.setattr(B, "_run", no_model)
    monkeypatch.setenv("MAIA_TRAY_RTL", "4")
    with pytest.raises(ValueError, match="MAIA_TRAY_RTL must be"):
        B.run()
    monkeypatch.setenv("MAIA_TRAY_RTL", "perf")
    monkeypatch.setenv("MAIA_TRAY_RTL_PERF_COUNT", "1MiB")
    with pytest.raises(ValueError, match="MAIA_TRAY_RTL_PERF_COUNT must be"):
        B.run()
    assert stubs == []


def test_bench_command_records_the_maia_variables():
    """build/bench/<name>.json's command names the MAIA_* variables that chose the rows."""
    env = {"MAIA_TRAY_RTL": "8", "MAIA_TRAY_RTL_8_CFG": "tray4_perf", "MAIA_WAVES": "",
           "PATH": "/bin", "MAIA_VERILATOR_OPT": "-O2 -g"}
    assert bench_main.command("tray", env) == ("MAIA_TRAY_RTL=8 MAIA_TRAY_RTL_8_CFG=tray4_perf "
                                               "MAIA_VERILATOR_OPT='-O2 -g' make bench BENCH=tray")
    assert bench_main.command("noc", {}) == "make bench BENCH=noc"
