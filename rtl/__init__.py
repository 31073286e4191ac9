"""Amaranth RTL of the accelerator. One block per module; each module that has a Verilog top
lists it in ``VERILOG_TOPS = {name: factory}`` so `make verilog` and `make lint` find it."""
