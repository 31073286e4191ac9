"""MX element and scale formats (OCP MX v1.0 / OFP8), defined once for rtl/, golden/ and docs.

See docs/numerics.md for the contract. Integer view used by the dot product: a finite element
with sign s, exponent field e and mantissa field m has the value

    (-1)^s * sig * 2^ee * 2^unit,   sig = (e > 0) << mbits | m,  ee = max(e, 1) - 1,
                                    unit = 1 - bias - mbits

so every element is an integer multiple of 2^unit and products of two elements are exact
integers in units of 2^(unit_a + unit_b).
"""

from __future__ import annotations

from dataclasses import dataclass

BLOCK = 32  # elements per MX block (OCP MX v1.0 k)
SCALE_BIAS = 127  # e8m0
SCALE_NAN = 0xFF
FP32_CANONICAL_NAN = 0x7FC00000
FP32_POS_INF = 0x7F800000
FP32_NEG_INF = 0xFF800000


@dataclass(frozen=True)
class ElementFormat:
    name: str
    bits: int
    ebits: int
    mbits: int
    bias: int
    max_finite: float
    emax: int          # exponent of the largest power of two representable (quantize step 3)
    has_inf: bool      # e5m2 only: S.11111.00
    nan_all_ones: bool  # e4m3: only S.1111.111 is NaN; e5m2: exponent all ones, mantissa != 0
    code: int          # runtime format select code used by the RTL and the command formats

    @property
    def unit(self) -> int:
        """Exponent of the element LSB (value of mantissa LSB at the smallest exponent)."""
        return 1 - self.bias - self.mbits

    @property
    def ee_max(self) -> int:
        """Largest ee = max(e,1)-1 over finite codes."""
        emax_field = (1 << self.ebits) - 1
        if self.has_inf or (not self.nan_all_ones and self.name != "e2m1"):
            emax_field -= 1
        return max(emax_field, 1) - 1

    @property
    def sig_bits(self) -> int:
        return self.mbits + 1


FORMATS: dict[str, ElementFormat] = {
    "e4m3": ElementFormat("e4m3", 8, 4, 3, 7, 448.0, 8, False, True, 0),
    "e5m2": ElementFormat("e5m2", 8, 5, 2, 15, 57344.0, 15, True, False, 1),
    "e2m1": ElementFormat("e2m1", 4, 2, 1, 1, 6.0, 2, False, False, 2),
}
ELEMENT_FORMATS = tuple(FORMATS)
SCALE_FORMAT = "e8m0"
ALL_FORMATS = (*ELEMENT_FORMATS, SCALE_FORMAT)
FORMAT_BY_CODE = {f.code: f for f in FORMATS.values()}


def element_format(name: str, argname: str = "fmt") -> ElementFormat:
    """Look up an element format by name with a clear error."""
    try:
        return FORMATS[name]
    except (KeyError, TypeError):
        raise ValueError(f"{argname}: unknown element format {name!r}; "
                         f"expected one of {list(FORMATS)}") from None
