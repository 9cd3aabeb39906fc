"""Template filters for run pages."""

from __future__ import annotations

from typing import Any

from django import template

from runs.presentation import label as people_label

register = template.Library()


@register.filter
def number(value: Any) -> Any:
    """A number as people read it: thousands separated; floats with four decimals at most, no trailing zeros.

    Tiny magnitudes keep their significant digits (2.5e-05); everything that is not a
    number (text, lists, None) is returned unchanged.
    """
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    if not isinstance(value, float) or value != value or value in (float("inf"), float("-inf")):
        return value
    if value != 0 and abs(value) < 1e-3:
        return f"{value:.2e}"
    text = f"{value:,.4f}".rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


@register.filter
def thousands(value: Any) -> Any:
    """A whole number with thousands separated (12,345); anything else unchanged."""
    if isinstance(value, bool) or not isinstance(value, int):
        return value
    return f"{value:,}"


@register.filter
def percent(value: Any) -> Any:
    """A fraction (0–1) as a percentage with one decimal: 0.4567 → "45.7 %"; None stays None."""
    if not isinstance(value, (int, float)) or isinstance(value, bool) or value != value:
        return value
    return f"{value * 100:.1f} %"


@register.filter
def duration(seconds: Any) -> Any:
    """Seconds as people read a duration: "45 s", "3 min 05 s", "2 h 07 min"; None stays None."""
    if not isinstance(seconds, (int, float)) or isinstance(seconds, bool) or seconds != seconds:
        return seconds
    total = round(seconds)
    if total < 60:
        return f"{total} s"
    minutes, secs = divmod(total, 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes:02d} min"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h"


@register.filter
def label(key: Any) -> Any:
    """A summary or config key as people write it ("final_train_loss" → "Final train loss")."""
    return people_label(key) if isinstance(key, str) else key
