"""Line charts drawn server-side as SVG (no JavaScript, nothing from a CDN)."""

from __future__ import annotations

import math
from dataclasses import dataclass

WIDTH, HEIGHT = 720, 280
PAD_LEFT, PAD_RIGHT, PAD_TOP, PAD_BOTTOM = 56, 16, 16, 36


@dataclass
class Line:
    label: str
    css: str
    points: str
    last: tuple[int, float] | None


@dataclass
class Chart:
    width: int
    height: int
    lines: list[Line]
    x_ticks: list[tuple[float, str]]
    y_ticks: list[tuple[float, str]]
    empty: bool
    plot_left: int = PAD_LEFT
    plot_right: int = WIDTH - PAD_RIGHT
    plot_top: int = PAD_TOP
    plot_bottom: int = HEIGHT - PAD_BOTTOM


def _ticks(low: float, high: float, count: int = 5) -> list[float]:
    if high <= low:
        return [low]
    raw = (high - low) / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    start = math.ceil(low / step) * step
    ticks = []
    value = start
    while value <= high + step * 1e-9:
        ticks.append(round(value, 10))
        value += step
    return ticks


def line_chart(series: list[tuple[str, str, list[tuple[int, float]]]]) -> Chart:
    """`series` is (label, css class, [(step, value), ...]); returns what the template draws."""
    finite = [(s, v) for _, _, pts in series for s, v in pts if math.isfinite(v)]
    if not finite:
        return Chart(WIDTH, HEIGHT, [], [], [], True)
    x_max = max(1, max(s for s, _ in finite))
    y_low = min(v for _, v in finite)
    y_high = max(v for _, v in finite)
    if y_high - y_low < 1e-9:
        y_low, y_high = y_low - 0.5, y_high + 0.5
    margin = (y_high - y_low) * 0.05
    y_low, y_high = y_low - margin, y_high + margin
    left, right, top, bottom = PAD_LEFT, WIDTH - PAD_RIGHT, PAD_TOP, HEIGHT - PAD_BOTTOM

    def x(step: float) -> float:
        return left + (right - left) * step / x_max

    def y(value: float) -> float:
        return bottom - (bottom - top) * (value - y_low) / (y_high - y_low)

    lines = []
    for label, css, pts in series:
        good = [(s, v) for s, v in pts if math.isfinite(v)]
        coords = " ".join(f"{x(s):.1f},{y(v):.1f}" for s, v in good)
        lines.append(Line(label, css, coords, good[-1] if good else None))
    x_ticks = [(x(t), f"{int(t)}") for t in _ticks(0, x_max) if t == int(t)]
    y_ticks = [(y(t), f"{t:g}") for t in _ticks(y_low, y_high)]
    return Chart(WIDTH, HEIGHT, lines, x_ticks, y_ticks, False)
