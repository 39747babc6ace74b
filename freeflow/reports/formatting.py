"""Numbers as the reports print them: a value with its error in parenthesised notation
(``3.1080(1)`` is 3.1080 +- 0.0001), durations and counts."""

from __future__ import annotations

import decimal
import math

__all__ = ["format_count", "format_duration", "format_value_error"]


def format_value_error(value: float, stderr: float, error_digits: int = 1) -> str:
    """``value`` with its standard error in parenthesised notation.

    Rule: the error is rounded (half up) to ``error_digits`` significant digits (default one)
    and the value is rounded to the same decimal place; a rounding carry moves the place
    (0.00096 -> 0.001). Examples: ``(3.107965, 0.000012) -> "3.10797(1)"``,
    ``(3.10797, 0.00012) -> "3.1080(1)"``, ``(2.91916, 0.00091) -> "2.9192(9)"``,
    ``(-25.1749, 0.0010) -> "-25.175(1)"``, ``(1234.5, 23) -> "1230(20)"``.

    Special cases: a NaN or infinite value prints as ``"nan"``, ``"inf"``, ``"-inf"``; a zero
    error prints the value with 6 decimals and no parentheses; a NaN error prints
    ``"<value to 6 decimals>(?)"`` and an infinite one ``"<value>(inf)"``.

    Raises:
      ValueError: for a negative error or ``error_digits < 1``.
    """
    value, stderr = float(value), float(stderr)
    if error_digits < 1:
        raise ValueError(f"error_digits must be at least 1; got {error_digits}")
    if not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if math.isnan(stderr):
        return f"{value:.6f}(?)"
    if stderr < 0:
        raise ValueError(f"a standard error cannot be negative; got {stderr}")
    if math.isinf(stderr):
        return f"{value:.6f}(inf)"
    if stderr == 0:
        return f"{value:.6f}"
    # Decimal of the shortest repr: 0.0010 must count as 1e-3, not 9.99...e-4.
    err = decimal.Decimal(repr(stderr))
    place = err.adjusted() - (error_digits - 1)
    digits = int((err.scaleb(-place)).quantize(decimal.Decimal(1), decimal.ROUND_HALF_UP))
    if digits >= 10**error_digits:  # carry: 9.6 -> 10
        place += 1
        digits //= 10
    quantum = decimal.Decimal(1).scaleb(place)
    with decimal.localcontext(prec=400):  # room for any float at any error's place
        rounded = decimal.Decimal(repr(value)).quantize(quantum, decimal.ROUND_HALF_UP)
    if rounded == 0:
        rounded = abs(rounded)  # no "-0.000"
    if place >= 0:
        return f"{int(rounded)}({digits * 10**place})"
    return f"{rounded:f}({digits})"


def format_duration(seconds: float | None) -> str:
    """``"12.3 s"``, ``"4.5 min"``, ``"2.1 h"``; ``"-"`` for ``None`` or NaN."""
    if seconds is None or not math.isfinite(seconds):
        return "-"
    if seconds < 60:
        return f"{seconds:.3g} s"
    if seconds < 3600:
        return f"{seconds / 60:.3g} min"
    return f"{seconds / 3600:.3g} h"


def format_count(count: int | float | None) -> str:
    """Integers below 10^4 in full, larger ones as ``"1.0e7"``; ``"-"`` for ``None``."""
    if count is None or (isinstance(count, float) and not math.isfinite(count)):
        return "-"
    count = int(count)
    if abs(count) < 10_000:
        return str(count)
    mantissa, exponent = f"{count:.1e}".split("e")
    return f"{mantissa}e{int(exponent)}"
