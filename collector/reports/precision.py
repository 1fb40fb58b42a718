"""How the reports show a figure: truncated to the shown precision, never rounded up.

A system that misses its 99.5 % target by one second has an availability of 99.4999968 %;
rounded to three decimals that reads "99.500 %" beside "not met", and a reader concludes the
report is wrong. Truncating (towards minus infinity) keeps every shown figure on the same side
of a threshold as the exact value, as long as the threshold has no more decimals than are
shown: 99.499 % is below 99.5 %, and a met 99.500 % is not shown as 99.499 %.

A float is read as the shortest decimal that round-trips (`repr`), the reading
`collector.availability.exact_ratio` gives targets: 0.995 computed exactly is the float just
below 199/200 and must still show as 99.500 %. A `Fraction` is truncated exactly.

The values themselves (JSON, CSV, XLSX cells) stay exact; only the text is cut. Excel cannot
truncate in a number format, so `percent_format` gives a cell the decimals its rounding needs
to agree with the truncated text.
"""

from __future__ import annotations

import math
from decimal import ROUND_FLOOR, ROUND_HALF_UP, Decimal, localcontext
from fractions import Fraction

MOST_DECIMALS = 13
"""At most this many decimals in a percent format: 99.+13 digits is Excel's 15 significant."""


def exact_decimal(value: float | int | Fraction | Decimal) -> Decimal | None:
    """`value` as a decimal (None for NaN or infinity); a Fraction is cut to 30 decimals
    towards minus infinity, which no shown precision reaches."""
    if isinstance(value, Decimal):
        return value if value.is_finite() else None
    if isinstance(value, Fraction):
        scaled = value.numerator * 10 ** 30 // value.denominator
        return Decimal(scaled).scaleb(-30)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return Decimal(repr(value)) if isinstance(value, float) else Decimal(int(value))


def truncate(value: Decimal, places: int) -> Decimal:
    with localcontext() as ctx:
        ctx.prec = 60
        return value.quantize(Decimal(1).scaleb(-places), rounding=ROUND_FLOOR)


def percent_text(value: float | int | Fraction | Decimal, places: int = 3) -> str:
    """0.99499997 -> "99.499 %" (never "99.500 %")."""
    exact = exact_decimal(value)
    if exact is None:
        return f"{value} %"
    return f"{truncate(exact.scaleb(2), places)} %"


def number_text(value: float | int | Fraction | Decimal, least: int = 2, most: int = 6) -> str:
    """A number truncated to `most` decimals, trailing zeros dropped down to `least`:
    0.995 -> "0.995" (not "0.99"), 12.5 -> "12.50", 0.99499997 -> "0.994999"."""
    exact = exact_decimal(value)
    if exact is None:
        return str(value)
    shown = f"{truncate(exact, most):f}"
    whole, _, decimals = shown.partition(".")
    decimals = decimals.rstrip("0").ljust(least, "0")
    return f"{whole}.{decimals}" if decimals else whole


def places_needed(value: Decimal) -> int:
    """Decimals a percent needs for the target's digits to be shown: 0.995 -> 1, 0.99995 -> 3."""
    exponent = value.scaleb(2).normalize().as_tuple().exponent
    return max(0, -exponent) if isinstance(exponent, int) else 0


def percent_format(value: float | int | Fraction | Decimal, places: int = 3) -> str:
    """An Excel percent format for `value`: `places` decimals, more when Excel's rounding
    (half away from zero) would carry past the truncated figure — 0.99499997 gets
    "0.000000%" (99.499997 %), not "0.000%" (which Excel would show as 99.500 %)."""
    exact = exact_decimal(value)
    base = "0." + "0" * places + "%" if places else "0%"
    if exact is None:
        return base
    percent = exact.scaleb(2)
    floor = truncate(percent, places)
    with localcontext() as ctx:
        ctx.prec = 60
        for shown in range(places, MOST_DECIMALS + 1):
            rounded = percent.quantize(Decimal(1).scaleb(-shown), rounding=ROUND_HALF_UP)
            if truncate(rounded, places) == floor:
                return "0." + "0" * shown + "%" if shown else "0%"
    return "0." + "0" * MOST_DECIMALS + "%"
