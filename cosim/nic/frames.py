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
