"""Hierarchical Verilog generation: a component repeated many times is generated once.

Amaranth elaborates every instance of a component on its own and writes one Verilog module
per instance. For designs with many identical large blocks (the tiles of a chip) that makes
generation time grow with the instance count: one default tile takes about two minutes.

``instance(factory, *args)`` builds ``factory(*args)`` as usual; only while
``separate_modules()`` is active (``generate_hierarchical``) does it return a stand-in with
the same signature that elaborates to an ``Instance`` of a module generated once per distinct
``(factory, args)``. The result is the same design, written as a top module plus one module
per distinct block, which Icarus and Verilator accept as one file.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable

from amaranth import ClockSignal, ResetSignal
from amaranth.hdl import Instance
from amaranth.lib import wiring
from amaranth.lib.wiring import In

__all__ = ["instance", "separate_modules", "generate_hierarchical", "Separate",
           "forward_member"]

_collect: dict | None = None


class Separate(wiring.Component):
    """Stands for ``inner``, generated separately as Verilog module ``module``: same ports
    (Amaranth's ``a__b`` names, plus clk and rst); other attributes come from ``inner``."""

    def __init__(self, inner: wiring.Component, module: str):
        self._inner = inner
        self._module = module
        self._ready = False  # ports are created by Component.__init__, not delegated
        super().__init__(inner.signature)
        self._ready = True

    def __getattr__(self, name):
        if name.startswith("_") or not self.__dict__.get("_ready"):
            raise AttributeError(name)
        return getattr(self._inner, name)

    def elaborate(self, platform):
        kw = {"i_clk": ClockSignal(), "i_rst": ResetSignal()}
        for path, member, value in self.signature.flatten(self):
            port = "__".join(str(p) for p in path)
            kw[("i_" if member.flow == In else "o_") + port] = value
        return Instance(self._module, **kw)


def instance(factory: Callable, *args, **kwargs):
    """``factory(*args, **kwargs)``, or its stand-in while separate_modules() is active."""
    if _collect is None:
        return factory(*args, **kwargs)
    key = f"{factory.__module__}.{factory.__qualname__}{args!r}{sorted(kwargs.items())!r}"
    name = f"{factory.__name__.lower()}_{hashlib.sha256(key.encode()).hexdigest()[:10]}"
    if name not in _collect:  # one component per distinct block: generated once
        _collect[name] = factory(*args, **kwargs)
    return Separate(_collect[name], name)


@contextlib.contextmanager
def separate_modules():
    """Collect {module name: component} of every ``instance`` built inside."""
    global _collect
    prev, _collect = _collect, {}
    try:
        yield _collect
    finally:
        _collect = prev


def generate_hierarchical(component, name: str, convert: Callable, progress=None) -> str:
    """Verilog text of ``component`` as module ``name``, with every ``instance`` block
    generated once (``convert(component, name) -> str``, e.g. cosim.sim.to_verilog)."""
    done: dict[str, str] = {}
    with separate_modules() as mods:
        parts = [convert(component, name)]
        while len(done) < len(mods):
            for mod, comp in list(mods.items()):
                if mod not in done:
                    if progress:
                        progress(mod)
                    done[mod] = convert(comp, mod)
    return "\n".join(parts + [done[m] for m in sorted(done)])


def forward_member(m, member, outer, inner) -> None:
    """Join a parent's port group ``outer`` to the same-signature member ``inner`` of a
    child (``member``: the child's signature member): outputs of the child drive the
    parent's outputs, the parent's inputs drive the child's inputs."""
    if member.is_port:
        if member.flow == wiring.Out:
            m.d.comb += outer.eq(inner)
        else:
            m.d.comb += inner.eq(outer)
        return
    # member.signature is already flipped for In members: leaf.flow is the child's view
    for path, leaf, i in member.signature.flatten(inner):
        o = outer
        for part in path:
            o = getattr(o, part)
        if leaf.flow == wiring.Out:
            m.d.comb += o.eq(i)
        else:
            m.d.comb += i.eq(o)
