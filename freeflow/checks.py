"""Checks that frozen settings make of themselves on construction (imports nothing else of
freeflow, so every layer may use it)."""

from __future__ import annotations

__all__ = ["check_whole_numbers"]


def check_whole_numbers(settings, minimums: dict[str, int], optional: tuple = ()) -> None:
    """Refuse a field of ``settings`` named in ``minimums`` that is not a whole number at
    least its minimum (``None`` is allowed for the names in ``optional``), in one line naming
    the field, the bound and the value. ``True`` and ``2.0`` are not whole numbers here."""
    for name, least in minimums.items():
        value = getattr(settings, name)
        if value is None and name in optional:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise ValueError(f"{name} must be a whole number >= {least}; got {value!r}")
