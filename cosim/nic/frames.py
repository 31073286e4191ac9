"""Frame lists <-> numpy arrays for bench_inputs/bench_outputs."""

from __future__ import annotations

import numpy as np


def join(frames) -> tuple[np.ndarray, np.ndarray]:
    frames = [bytes(f) for f in frames]
    data = np.frombuffer(b"".join(frames), dtype=np.uint8).copy()
    return data, np.array([len(f) for f in frames], dtype=np.int64)


def split(data: np.ndarray, lengths: np.ndarray) -> list[bytes]:
    out, pos, raw = [], 0, np.asarray(data, dtype=np.uint8).tobytes()
    for n in np.asarray(lengths).tolist():
        out.append(raw[pos:pos + n])
        pos += n
    return out


def beats(frame: bytes, width: int = 8) -> list[dict]:
    """A frame as the beats of a NIC byte stream (rtl/nic: data, keep, last; ``width``
    bytes per beat), one payload dict per beat, for Amaranth-simulator testbenches."""
    parts = [frame[i:i + width] for i in range(0, len(frame), width)]
    return [{"data": int.from_bytes(p.ljust(width, b"\0"), "little"), "keep": (1 << len(p)) - 1,
             "last": k == len(parts) - 1} for k, p in enumerate(parts)]


class Reassembler:
    """Frames from the beats taken off a NIC byte stream: ``add(payload)`` per accepted beat;
    ``frames`` holds every frame completed so far (bytes, the kept bytes only)."""

    def __init__(self, width: int = 8):
        self.width = width
        self.frames: list[bytes] = []
        self._cur = bytearray()

    def add(self, payload) -> None:
        n = bin(payload["keep"]).count("1")
        self._cur.extend(payload["data"].to_bytes(self.width, "little")[:n])
        if payload["last"]:
            self.frames.append(bytes(self._cur))
            self._cur.clear()
