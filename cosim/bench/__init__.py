"""Benchmarks. Each module ``cosim/bench/<name>.py`` defines ``run() -> dict`` returning
``{metric: {"value": v, "unit": u, "target": t}}`` (target: a string like ">= 0.95", or None)
and optional extra keys. `make bench` runs them all; `make bench BENCH=<name>` runs one.
Results go to build/bench/<name>.json with the command that made them."""
