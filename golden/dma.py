"""Golden twin of the DMA engine (docs/dma.md is the contract).

Memory image + descriptor chains + windows in -> memory image + per-channel registers
(status, error code, failing descriptor, counters, IRQ status, semaphore ids) out, bit for
bit, plus a cycle estimate from the documented performance model.

Channels are evaluated one after the other (channel 0's whole chain first). The hardware
runs them concurrently, so the result is the hardware's only when the channels' chains are
independent (no channel reads or writes bytes another channel writes), which is the
documented condition for a defined result.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from spec import dma as S

__all__ = ["ChannelResult", "DmaResult", "PerfModel", "run", "transfer_plan"]


@dataclass
class ChannelResult:
    head: int = 0
    status: int = S.ST_IDLE
    error: int = S.ERR_NONE
    err_desc: int = 0
    cur_desc: int = 0
    irq_status: int = 0
    desc_count: int = 0
    rd_beats: int = 0
    wr_beats: int = 0
    bytes: int = 0
    sem_count: int = 0
    sems: list = field(default_factory=list)     # sem_id of each strobe, in order
    est_cycles: int = 0                          # performance-model estimate of BUSY_CYCLES

    def regs(self) -> dict[str, int]:
        """The CSR values the hardware must show after the chain ends (CH_EXACT_REGS)."""
        return {"HEAD": self.head, "STATUS": self.status, "ERROR": self.error,
                "ERR_DESC": self.err_desc, "CUR_DESC": self.cur_desc,
                "IRQ_STATUS": self.irq_status, "DESC_COUNT": self.desc_count,
                "RD_BEATS": self.rd_beats & 0xFFFF_FFFF, "WR_BEATS": self.wr_beats & 0xFFFF_FFFF,
                "BYTES": self.bytes & 0xFFFF_FFFF, "SEM_COUNT": self.sem_count}


@dataclass
class DmaResult:
    mem: np.ndarray
    channels: list


@dataclass(frozen=True)
class PerfModel:
    """Cycle model of one channel running alone against a zero-wait memory (docs/dma.md).

    BUSY_CYCLES of a chain = sum over its descriptors of
        desc_overhead + desc_beats                       (fetch, decode, validate)
      + data beats of the transfer, counted on the write side
      + burst_gap * (write bursts - 1)                  (bubbles between bursts)
      + tail                                            (read latency + write response)
    An error before the transfer costs desc_overhead + desc_beats (or check_overhead when
    the descriptor address itself is rejected)."""

    desc_overhead: int = 9
    tail: int = 7
    burst_gap: float = 0.0
    check_overhead: int = 2


def _check_args(mem, heads, windows, data_width, bad_read, bad_write):
    if not isinstance(mem, np.ndarray) or mem.dtype != np.uint8 or mem.ndim != 1:
        raise ValueError("mem must be a 1-D numpy uint8 array")
    if data_width not in (32, 64, 128, 256, 512):
        raise ValueError(f"data_width must be one of 32, 64, 128, 256, 512, not {data_width!r}")
    if len(windows) > S.MAX_WINDOWS:
        raise ValueError(f"windows: at most {S.MAX_WINDOWS}, got {len(windows)}")
    for k, (base, size) in enumerate(windows):
        if not (0 <= base < 1 << 32 and 0 <= size < 1 << 32):
            raise ValueError(f"windows[{k}] base/size must be 32-bit, got {(base, size)}")
        if size and base + size > len(mem):
            raise ValueError(f"windows[{k}] = ({base:#x}, {size:#x}) ends beyond mem "
                             f"({len(mem):#x} bytes)")
    for name, ranges in (("bad_read", bad_read), ("bad_write", bad_write)):
        for r in ranges:
            if len(r) != 2 or r[0] > r[1]:
                raise ValueError(f"{name} entries must be (lo, hi) with lo <= hi, got {r!r}")
    for c, h in enumerate(heads):
        if h is not None and not (0 <= h < 1 << 32):
            raise ValueError(f"heads[{c}] must be None or a 32-bit address, got {h!r}")


def _inside(windows, lo: int, n: int) -> bool:
    return any(size and base <= lo and lo + n <= base + size for base, size in windows)


def _touches(ranges, lo: int, hi: int) -> bool:
    """Does [lo, hi) intersect any [a, b) of ranges?"""
    return any(lo < b and a < hi for a, b in ranges)


def _extent(d: dict, strides) -> int:
    return d["esize_bytes"] + sum((d["counts"][k] - 1) * strides[k] for k in range(3))


def _decode(raw: bytes) -> dict:
    w = [int.from_bytes(raw[4 * i:4 * i + 4], "little") for i in range(S.DESC_WORDS)]
    ctrl = w[S.W_CTRL]
    esize = ctrl & S.MAX_ESIZE
    return {"src": w[S.W_SRC], "dst": w[S.W_DST], "next": w[S.W_NEXT],
            "esize_bytes": 1 << esize, "irq": bool(ctrl & S.CTRL_IRQ),
            "sem": bool(ctrl & S.CTRL_SEM), "sem_id": (ctrl >> S.CTRL_SEM_ID_SHIFT) & 0xFF,
            "bad": bool(ctrl & S.CTRL_RESERVED_MASK) or bool(w[S.W_COUNT2]
                                                            & S.COUNT2_RESERVED_MASK),
            "counts": (w[S.W_COUNT01] & 0xFFFF, w[S.W_COUNT01] >> 16, w[S.W_COUNT2] & 0xFFFF),
            "ss": tuple(w[i] for i in S.W_SRC_STRIDE), "ds": tuple(w[i] for i in S.W_DST_STRIDE)}


def _validate(d: dict, windows) -> int:
    if d["bad"]:
        return S.ERR_BAD_DESC
    if 0 in d["counts"]:
        return S.ERR_ZERO_COUNT
    e = d["esize_bytes"]
    if any(x % e for x in (d["src"], d["dst"], *d["ss"], *d["ds"])):
        return S.ERR_MISALIGNED
    src_ext, dst_ext = _extent(d, d["ss"]), _extent(d, d["ds"])
    if not _inside(windows, d["src"], src_ext):
        return S.ERR_SRC_WINDOW
    if not _inside(windows, d["dst"], dst_ext):
        return S.ERR_DST_WINDOW
    if d["src"] < d["dst"] + dst_ext and d["dst"] < d["src"] + src_ext:
        return S.ERR_OVERLAP
    return S.ERR_NONE


def transfer_plan(d: dict, wbytes: int):
    """Runs of a valid descriptor: (src, dst, length) in copy order, and the mode.

    A run is a byte range contiguous on both sides. Row mode (one run per row of count0
    elements) applies when both dimension-0 strides equal the element size and every run
    starts at the same offset within a bus word on both sides (src = dst, src_stride1 =
    dst_stride1, src_stride2 = dst_stride2, all mod the bus width); otherwise each element
    is a run (element mode)."""
    e = d["esize_bytes"]
    c0, c1, c2 = d["counts"]
    ss, ds = d["ss"], d["ds"]
    row = (ss[0] == e and ds[0] == e and (d["src"] - d["dst"]) % wbytes == 0
           and (ss[1] - ds[1]) % wbytes == 0 and (ss[2] - ds[2]) % wbytes == 0)
    runs = []
    for i2 in range(c2):
        for i1 in range(c1):
            s = d["src"] + i1 * ss[1] + i2 * ss[2]
            t = d["dst"] + i1 * ds[1] + i2 * ds[2]
            if row:
                runs.append((s, t, c0 * e))
            else:
                runs.extend((s + i0 * ss[0], t + i0 * ds[0], e) for i0 in range(c0))
    return runs, ("row" if row else "element")


def _beats(addr: int, length: int, wbytes: int) -> int:
    return (addr % wbytes + length + wbytes - 1) // wbytes


def _bursts(addr: int, length: int, wbytes: int, max_burst: int) -> int:
    """Number of AXI bursts the engine splits [addr, addr+length) into."""
    n, end = 0, addr + length
    while addr < end:
        word = addr - addr % wbytes
        beats = min(_beats(addr, end - addr, wbytes), (4096 - word % 4096) // wbytes, max_burst)
        addr = min(end, word + beats * wbytes)
        n += 1
    return n


def _copy_run(mem, s, t, n, wbytes, bad_read, bad_write) -> tuple[bool, bool]:
    """Copy one run; returns (read_error, write_error). Without faults it is a slice copy."""
    if not bad_read and not bad_write:
        mem[t:t + n] = mem[s:s + n].copy()
        return False, False
    rerr = werr = False
    # beats of a run cover the same run bytes on both sides (same offset in the bus word)
    off = 0
    while off < n:
        chunk = min(n - off, wbytes - (s + off) % wbytes)
        sw = (s + off) - (s + off) % wbytes
        if _touches(bad_read, sw, sw + wbytes):
            rerr = True                      # beat poisoned: written with no strobes
        elif _touches(bad_write, t + off, t + off + chunk):
            werr = True                      # memory drops the strobed bytes, answers SLVERR
        else:
            mem[t + off:t + off + chunk] = mem[s + off:s + off + chunk].copy()
        off += chunk
    return rerr, werr


def run(mem: np.ndarray, heads, windows, *, data_width: int = 64, max_burst: int = 256,
        bad_read=(), bad_write=(), perf: PerfModel | None = None,
        max_descriptors: int = 1 << 16) -> DmaResult:
    """Run every channel's chain (``heads[c]`` is the HEAD written before the doorbell, or
    None for a channel that is not started) and return the final state.

    ``bad_read``/``bad_write``: (lo, hi) byte ranges where the memory answers SLVERR (a read
    beat whose bus word touches the range; a write beat whose strobed bytes touch it, in
    which case those bytes are not written). A chain longer than ``max_descriptors`` (a
    loop: the hardware would run forever) raises RuntimeError."""
    _check_args(mem, heads, windows, data_width, bad_read, bad_write)
    perf = perf or PerfModel()
    wb = data_width // 8
    desc_beats = S.DESC_BYTES // wb
    mem = mem.copy()
    out = []
    for head in heads:
        ch = ChannelResult()
        out.append(ch)
        if head is None:
            continue
        ch.head = head
        cur = head
        for _ in range(max_descriptors + 1):
            ch.cur_desc = cur
            err = S.ERR_NONE
            if cur % S.DESC_ALIGN:
                err = S.ERR_DESC_ALIGN
            elif not _inside(windows, cur, S.DESC_BYTES):
                err = S.ERR_DESC_WINDOW
            if err:
                ch.est_cycles += perf.check_overhead
            else:
                ch.est_cycles += perf.desc_overhead + desc_beats
                if _touches(bad_read, cur, cur + S.DESC_BYTES):
                    err = S.ERR_DESC_READ
                else:
                    d = _decode(bytes(mem[cur:cur + S.DESC_BYTES]))
                    err = _validate(d, windows)
            if not err:
                runs, _mode = transfer_plan(d, wb)
                rerr = werr = False
                nburst = 0
                for s, t, n in runs:
                    ch.rd_beats += _beats(s, n, wb)
                    ch.wr_beats += _beats(t, n, wb)
                    nburst += _bursts(t, n, wb, max_burst)
                    r, w = _copy_run(mem, s, t, n, wb, bad_read, bad_write)
                    rerr |= r
                    werr |= w
                ch.est_cycles += round(sum(_beats(t, n, wb) for s, t, n in runs)
                                       + perf.burst_gap * (nburst - 1) + perf.tail)
                err = S.ERR_READ_RESP if rerr else (S.ERR_WRITE_RESP if werr else S.ERR_NONE)
            if err:
                ch.status, ch.error, ch.err_desc = S.ST_ERROR, err, cur
                ch.irq_status |= S.IRQ_ERROR
                break
            ch.desc_count += 1
            c0, c1, c2 = d["counts"]
            ch.bytes += c0 * c1 * c2 * d["esize_bytes"]
            if d["irq"]:
                ch.irq_status |= S.IRQ_DONE
            if d["sem"]:
                ch.sems.append(d["sem_id"])
                ch.sem_count += 1
            if d["next"] == 0:
                ch.status = S.ST_DONE
                break
            cur = d["next"]
        else:
            raise RuntimeError(f"channel {len(out) - 1}: chain from {head:#x} is longer than "
                               f"max_descriptors={max_descriptors} (a loop?)")
    return DmaResult(mem=mem, channels=out)
