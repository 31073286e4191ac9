"""Co-simulation: cocotb benches, drivers, runner glue and command-line tools."""
