"""Driver for the DMA engine's cocotb bench, the RTL-vs-golden checker and scenario helpers.

    from cosim.dma import Scenario, run, check
    results = run([scenario, ...], sim="icarus")      # RTL (cocotb bench)
    for sc, res in zip(scenarios, results):
        assert not check(sc, res), ...                # compares against golden.dma
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import numpy as np

from cosim.sim import run_bench
from spec import dma as S

MAX_FAULTS = 4


@dataclass
class Scenario:
    """One engine run: memory image, a HEAD per channel (None: not started), windows."""

    mem: np.ndarray
    heads: list
    windows: list
    bad_read: list = field(default_factory=list)
    bad_write: list = field(default_factory=list)
    seed: int = 0
    pause: int = 0          # percent of cycles each AXI channel of the RAM stalls
    watch_sems: bool = True  # per-cycle monitor of the semaphore strobe (short runs only)
    probe: bool = False     # exercise CSR error paths (channel 0 must run a long chain)
    runs: int = 1           # ring the doorbells again after each completion (same HEADs)
    note: str = ""          # what the scenario is, for messages

    def describe(self) -> str:
        lines = [f"scenario {self.note!r} seed={self.seed} pause={self.pause}% "
                 f"windows={[(hex(b), hex(s)) for b, s in self.windows]} "
                 f"bad_read={[(hex(a), hex(b)) for a, b in self.bad_read]} "
                 f"bad_write={[(hex(a), hex(b)) for a, b in self.bad_write]}"]
        for c, h in enumerate(self.heads):
            if h is None:
                continue
            lines.append(f"  channel {c} head={h:#x}: " + "; ".join(chain_text(self.mem, h)))
        return "\n".join(lines)


def chain_text(mem: np.ndarray, head: int, limit: int = 12) -> list[str]:
    """Descriptors of a chain in hex (for mismatch messages)."""
    out, addr = [], head
    while addr and len(out) < limit and addr % 64 == 0 and addr + 64 <= len(mem):
        d = S.Descriptor.unpack(bytes(mem[addr:addr + 64]))
        out.append(f"@{addr:#x}[src={d.src:#x} dst={d.dst:#x} counts={d.counts} "
                   f"ss={tuple(hex(x) for x in d.src_strides)} "
                   f"ds={tuple(hex(x) for x in d.dst_strides)} esize={d.esize} "
                   f"irq={int(d.irq)} sem={int(d.sem)}:{d.sem_id} next={d.next:#x}]")
        addr = d.next
    return out


def write_chain(mem: np.ndarray, placed: list[tuple[int, S.Descriptor]]) -> int:
    """Write descriptors at their addresses, linking each to the next; return the head."""
    import dataclasses

    for i, (addr, d) in enumerate(placed):
        nxt = placed[i + 1][0] if i + 1 < len(placed) else 0
        mem[addr:addr + S.DESC_BYTES] = np.frombuffer(
            dataclasses.replace(d, next=nxt).pack(), dtype=np.uint8)
    return placed[0][0]


def _ranges(rs) -> np.ndarray:
    a = np.zeros((MAX_FAULTS, 2), dtype=np.int64)
    if len(rs) > MAX_FAULTS:
        raise ValueError(f"at most {MAX_FAULTS} fault ranges, got {len(rs)}")
    for i, (lo, hi) in enumerate(rs):
        a[i] = (lo, hi)
    return a


def engine_params(channels=2, data_width=64, max_burst=256, fifo_depth=None, windows=2):
    return {"channels": channels, "data_width": data_width, "max_burst": max_burst,
            "fifo_depth": fifo_depth, "windows": windows}


def run(scenarios: list[Scenario], *, sim: str = "verilator", **params) -> list[dict]:
    """Run scenarios on the RTL; one simulation for the whole batch."""
    from rtl.dma import DMAEngine

    p = engine_params(**params)
    if not scenarios:
        raise ValueError("scenarios must not be empty")
    sizes = {len(sc.mem) for sc in scenarios}
    if len(sizes) != 1:
        raise ValueError(f"scenarios: all memory images must have one size, got {sizes}")
    for sc in scenarios:
        if len(sc.heads) != p["channels"]:
            raise ValueError(f"heads must have {p['channels']} entries, got {len(sc.heads)}")
        if len(sc.windows) != p["windows"]:
            raise ValueError(f"windows must have {p['windows']} entries, got {len(sc.windows)}")
    inputs = {
        "mem": np.stack([sc.mem.astype(np.uint8) for sc in scenarios]),
        "heads": np.array([[-1 if h is None else h for h in sc.heads] for sc in scenarios],
                          dtype=np.int64),
        "windows": np.array([sc.windows for sc in scenarios], dtype=np.int64),
        "bad_read": np.stack([_ranges(sc.bad_read) for sc in scenarios]),
        "bad_write": np.stack([_ranges(sc.bad_write) for sc in scenarios]),
        "cfg": np.array([[sc.seed, sc.pause, int(sc.watch_sems), int(sc.probe), sc.runs]
                         for sc in scenarios], dtype=np.int64),
    }
    out = run_bench(name="dma", toplevel="dma", make=lambda: DMAEngine(**p), params=p,
                    test_module="cosim.dma.bench", inputs=inputs, sim=sim)
    names = list(S.CH_REGS)
    results = []
    for s in range(len(scenarios)):
        regs = [{n: int(out["regs"][s, c, i]) for i, n in enumerate(names)}
                for c in range(p["channels"])]
        sems = [(int(a), int(b)) for a, b in out["sems"][s] if a >= 0]
        results.append({"mem": out["mem"][s], "regs": regs, "irq": [int(x) for x in out["irq"][s]],
                        "sems": sems, "probe": [int(x) for x in out["probe"][s]],
                        "cycles": int(out["cycles"][s])})
    return results


def golden(sc: Scenario, data_width=64, max_burst=256):
    """Golden result of a scenario. With ``runs`` > 1 the chains run again on the memory the
    previous run left; registers are the last run's (the doorbell clears the counters)
    except IRQ_STATUS, which accumulates, and the semaphore list, which spans all runs."""
    from golden import dma as G

    mem, irq, sems = sc.mem, None, None
    for _ in range(sc.runs):
        g = G.run(mem, sc.heads, sc.windows, data_width=data_width, max_burst=max_burst,
                  bad_read=sc.bad_read, bad_write=sc.bad_write)
        if irq is not None:
            for c, ch in enumerate(g.channels):
                ch.irq_status |= irq[c]
                ch.sems[:0] = sems[c]
        irq = [ch.irq_status for ch in g.channels]
        sems = [list(ch.sems) for ch in g.channels]
        mem = g.mem
    return g


def check(sc: Scenario, res: dict, *, data_width=64, max_burst=256, gold=None) -> list[str]:
    """Compare an RTL result with the golden model; return mismatch messages (empty = pass).

    Everything is compared as integers: the memory image byte for byte, every exactly
    predicted channel register, the irq pins and each channel's semaphore strobes."""
    g = gold or golden(sc, data_width=data_width, max_burst=max_burst)
    bad = []
    diff = np.flatnonzero(g.mem != res["mem"])
    if diff.size:
        shown = ", ".join(f"[{a:#x}] exp {int(g.mem[a]):#04x} got {int(res['mem'][a]):#04x} "
                          f"(init {int(sc.mem[a]):#04x})" for a in diff[:8])
        bad.append(f"memory: {diff.size} bytes differ, first {shown}")
    for c, gc in enumerate(g.channels):
        exp = gc.regs()
        for name in S.CH_EXACT_REGS:
            got = res["regs"][c][name]
            if got != exp[name]:
                bad.append(f"channel {c} {name}: expected {exp[name]:#x} got {got:#x}")
        exp_irq = int(exp["IRQ_STATUS"] != 0)  # the bench enables both IRQ sources
        if res["irq"][c] != exp_irq:
            bad.append(f"channel {c} irq pin: expected {exp_irq} got {res['irq'][c]}")
        if sc.watch_sems:
            got_s = [i for ch, i in res["sems"] if ch == c]
            if got_s != gc.sems:
                bad.append(f"channel {c} semaphore ids: expected {gc.sems} got {got_s}")
    if bad:
        bad.append(sc.describe())
    return bad


# --- random scenarios ---------------------------------------------------------------------

def random_descriptor(rng: random.Random, area: tuple[int, int], wbytes: int,
                      prev_dst: tuple[int, int] | None = None, max_bytes: int = 1024):
    """A valid random descriptor inside ``area`` = (lo, hi) with non-overlapping source and
    destination bounding ranges. Returns (descriptor, (dst_lo, dst_hi)) or None."""
    lo, hi = area
    for _ in range(50):
        esize = rng.choice([0, 0, 1, 2, 3, 3, 3, 4])
        e = 1 << esize
        kind = rng.choice(["1d", "2d", "3d", "gather", "transpose"])
        c = [1, 1, 1]
        if kind == "1d":
            c[0] = rng.randint(1, max(1, max_bytes // e))
        else:
            c[0] = rng.randint(1, 12)
            c[1] = rng.randint(1, 6)
            if kind == "3d":
                c[2] = rng.randint(1, 4)
        ss, ds = [e, 0, 0], [e, 0, 0]
        if kind == "gather":
            ss[0] = e * rng.randint(1, 4)
            ds[0] = e * rng.randint(1, 3)
        if kind == "transpose":
            ss[0], ds[0] = e, e * c[1]
            ss[1], ds[1] = e * c[0] + e * rng.randint(0, 3), e
        else:
            ss[1] = ss[0] * c[0] + e * rng.choice([0, 0, 1, 3, 8])
            ds[1] = ds[0] * c[0] + e * rng.choice([0, 1, 2, 5])
        ss[2] = ss[1] * c[1] + e * rng.randint(0, 4)
        ds[2] = ds[1] * c[1] + e * rng.randint(0, 4)
        if c[1] == 1 and rng.random() < 0.3:
            ss[1] = ds[1] = 0
        ext_s = e + sum((c[k] - 1) * ss[k] for k in range(3))
        ext_d = e + sum((c[k] - 1) * ds[k] for k in range(3))
        if ext_s * c[0] > max_bytes * 8 or ext_s + ext_d > (hi - lo) // 2:
            continue
        if prev_dst and rng.random() < 0.4 and prev_dst[0] + ext_s <= hi:
            src = prev_dst[0] - prev_dst[0] % e   # read what the previous descriptor wrote
        else:
            src = lo + e * rng.randrange(max(1, (hi - lo - ext_s) // e))
        r = rng.random()
        if r < 0.2 and src + ext_s + ext_d <= hi:
            dst = src + ext_s + (-(src + ext_s)) % e    # adjacent (above)
        elif r < 0.3 and src - ext_d >= lo:
            dst = src - ext_d - (src - ext_d) % e       # adjacent (below) or close
        elif r < 0.6:
            # same offset within the bus word as src (row mode when strides allow)
            dst = lo + wbytes * rng.randrange(max(1, (hi - lo - ext_d) // wbytes)) + src % wbytes
        else:
            dst = lo + e * rng.randrange(max(1, (hi - lo - ext_d) // e))
        dst -= dst % e
        if dst < lo or dst + ext_d > hi or src + ext_s > hi:
            continue
        if src < dst + ext_d and dst < src + ext_s:
            continue
        d = S.Descriptor(src=src, dst=dst, counts=tuple(c), src_strides=tuple(ss),
                         dst_strides=tuple(ds), esize=esize, irq=rng.random() < 0.3,
                         sem=rng.random() < 0.4, sem_id=rng.randrange(256))
        return d, (dst, dst + ext_d)
    return None


def random_scenario(seed: int, *, channels=2, mem_size=1 << 15, chain_len=(1, 4),
                    pause=None, wbytes=8, max_bytes=512, error_rate=0.0) -> Scenario:
    """Random chains, one per channel, each in its own slice of memory."""
    rng = random.Random(seed)
    mem = np.frombuffer(rng.randbytes(mem_size), dtype=np.uint8).copy()
    part = mem_size // channels
    heads = []
    for c in range(channels):
        base = c * part
        desc_area = base                       # descriptors in the first 1 KiB of the slice
        data = (base + 1024, base + part)
        placed, prev = [], None
        for k in range(rng.randint(*chain_len)):
            got = random_descriptor(rng, data, wbytes, prev, max_bytes=max_bytes)
            if got is None:
                break
            d, prev = got
            if rng.random() < error_rate:
                import dataclasses
                d = dataclasses.replace(d, **rng.choice([
                    {"counts": (d.counts[0], 0, d.counts[2])},
                    {"src": mem_size + 0x100},
                    {"esize": 3, "src": d.src | 1}]))
            placed.append((desc_area + 64 * k, d))
        heads.append(write_chain(mem, placed) if placed else None)
    return Scenario(mem=mem, heads=heads, windows=[(0, mem_size), (0, 0)], seed=seed,
                    pause=rng.choice([0, 10, 30]) if pause is None else pause,
                    note=f"random seed {seed}")
