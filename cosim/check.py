"""Scoreboard helpers: compare RTL against golden as integers, with context on mismatch."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


class Mismatch(AssertionError):
    """RTL and golden disagree; the message lists the first mismatches with their inputs."""


def compare_words(what: str, expected, got, describe: Callable[[int], str] | None = None,
                  limit: int = 8, width: int = 8) -> None:
    """Raise Mismatch unless ``got == expected`` element for element (compared as integers).

    ``describe(i)`` returns the inputs of vector ``i`` (hex) for the message.
    """
    e = np.asarray(expected).astype(np.uint64).ravel()
    g = np.asarray(got).astype(np.uint64).ravel()
    if e.shape != g.shape:
        raise Mismatch(f"{what}: expected {e.size} results, RTL gave {g.size}")
    bad = np.nonzero(e != g)[0]
    if bad.size == 0:
        return
    lines = [f"{what}: {bad.size} of {e.size} results differ"]
    for i in bad[:limit]:
        ctx = f"  [{describe(int(i))}]" if describe else ""
        lines.append(f"  #{i}: expected {int(e[i]):#0{width + 2}x} got {int(g[i]):#0{width + 2}x}{ctx}")
    raise Mismatch("\n".join(lines))
