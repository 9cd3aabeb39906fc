"""Metric charts: panels of series for the run and compare pages, the leaderboard's bars.

The server draws every chart as SVG (readable without JavaScript) and embeds the
same numbers as JSON; static/js/charts.js turns each panel into an interactive
uPlot chart (hover values, zoom, smoothing, log scale, series toggles) and hides
the SVG.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from runs.training.rewards import NAMES as REWARD_NAMES

WIDTH, HEIGHT = 720, 280
PAD_LEFT, PAD_RIGHT, PAD_TOP, PAD_BOTTOM = 64, 16, 16, 36
MAX_POINTS = 1000  # per series, sent to the browser
SVG_POINTS = 400  # per series, in the no-JavaScript fallback
# Colour-blind-friendly, and distinct from one another on the page's light card.
PALETTE = ("#2f5d50", "#c0622b", "#3b6fb6", "#8a4fb0", "#b0892f", "#4c9a9a", "#b04f6a", "#6b6b6b")
DASHES = ("", "6 4", "2 3", "10 3 2 3")
TRAINED, BASELINE = "#2f5d50", "#b0892f"

Points = list[tuple[int, float]]


def readable(value: float | None) -> str:
    """A number as a person reads it: 4 significant digits, thousands grouped, never 1e+06."""
    if value is None or not math.isfinite(value):
        return "–"
    if value == 0:
        return "0"
    magnitude = abs(value)
    if magnitude >= 1e4:
        return f"{value:,.0f}"
    if magnitude >= 1e3:
        return f"{value:,.1f}".removesuffix(".0")
    if magnitude >= 1:
        return f"{value:.4g}"
    digits = 3 - math.floor(math.log10(magnitude))  # 4 significant digits after the leading zeros
    return f"{value:.{digits}f}".rstrip("0").rstrip(".")


@dataclass
class Line:
    label: str
    color: str
    dash: str
    points: str
    last: tuple[int, float] | None
    last_text: str = ""


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


def line_chart(series: Sequence[tuple[str, str, str, Points]]) -> Chart:
    """`series` is (label, colour, SVG dash pattern, [(step, value), ...]); returns what the template draws."""
    finite = [(s, v) for *_, pts in series for s, v in pts if math.isfinite(v)]
    if not finite:
        return Chart(WIDTH, HEIGHT, [], [], [], True)
    x_max = max(1, max(s for s, _ in finite))
    y_low = min(v for _, v in finite)
    y_high = max(v for _, v in finite)
    if y_high - y_low < 1e-12 * max(1.0, abs(y_high)):
        pad = abs(y_high) * 0.1 or 0.5
        y_low, y_high = y_low - pad, y_high + pad
    margin = (y_high - y_low) * 0.05
    y_low, y_high = y_low - margin, y_high + margin
    left, right, top, bottom = PAD_LEFT, WIDTH - PAD_RIGHT, PAD_TOP, HEIGHT - PAD_BOTTOM

    def x(step: float) -> float:
        return left + (right - left) * step / x_max

    def y(value: float) -> float:
        return bottom - (bottom - top) * (value - y_low) / (y_high - y_low)

    lines = []
    for label, color, dash, pts in series:
        good = [(s, v) for s, v in thin(pts, SVG_POINTS) if math.isfinite(v)]
        coords = " ".join(f"{x(s):.1f},{y(v):.1f}" for s, v in good)
        last = good[-1] if good else None
        lines.append(Line(label, color, dash, coords, last, readable(last[1]) if last else ""))
    x_ticks = [(x(t), readable(t)) for t in _ticks(0, x_max) if t == int(t)]
    y_ticks = [(y(t), readable(t)) for t in _ticks(y_low, y_high)]
    return Chart(WIDTH, HEIGHT, lines, x_ticks, y_ticks, False)


def thin(points: Points, max_points: int) -> Points:
    """Every k-th point so that at most about `max_points` are left, always with the last one."""
    if len(points) <= max_points:
        return points
    stride = -(-len(points) // max(max_points, 1))
    kept = points[::stride]
    if kept[-1] != points[-1]:
        kept.append(points[-1])
    return kept


PREFERENCE_PANELS = (
    ("reward_accuracy", "preference-accuracy", "Preference accuracy (chosen rewarded above rejected)"),
    ("reward_margin", "preference-margin", "Reward margin (chosen − rejected)"),
    ("reward_chosen", "preference-rewards", "Rewards: chosen and rejected"),
    ("reward_rejected", "preference-rewards", "Rewards: chosen and rejected"),
    ("logp_chosen", "preference-logps", "Log-probabilities: chosen and rejected"),
    ("logp_rejected", "preference-logps", "Log-probabilities: chosen and rejected"),
    ("odds_ratio", "preference-odds", "Odds ratio (ORPO)"),
)

# GRPO (runs.training.grpo's metric names): the weighted reward, each function's raw score, KL, clipping, lengths.
GRPO_PANELS: dict[str, tuple[str, str]] = {
    **dict.fromkeys(
        ("reward_mean", "reward_min", "reward_max"), ("grpo-reward", "Reward (weighted sum): mean, min, max")
    ),
    **{
        f"reward_{name}": ("grpo-reward-functions", "Reward per function (unweighted mean)")
        for name in REWARD_NAMES
    },
    "kl": ("grpo-kl", "KL divergence from the reference"),
    "clip_fraction": ("grpo-clip-fraction", "Clip fraction (policy ratio clipped)"),
    **dict.fromkeys(
        ("completion_length_mean", "completion_length_min", "completion_length_max"),
        ("grpo-completion-length", "Completion length (tokens): mean, min, max"),
    ),
}


def panel_kind(name: str) -> tuple[int, str, str]:
    """(order, key, title) of the panel a metric is drawn in: metrics that share a scale share a panel.

    Losses together, perplexities together (exp of a loss: another scale), learning rates,
    throughput (anything per second), then the preference panels (accuracy, reward margin,
    chosen vs rejected rewards and log-probabilities, train and eval together), the GRPO panels
    (weighted reward, each reward function, KL, clip fraction, completion length); every other
    metric (grad norm, ...) gets a panel of its own.
    """
    lowered = name.lower()
    if lowered in GRPO_PANELS:
        return (4, *GRPO_PANELS[lowered])
    # Preference training (DPO/ORPO): train_ and eval_ series of one quantity share a panel.
    for suffix, key, title in PREFERENCE_PANELS:
        if lowered.endswith(suffix):
            return (4, key, title)
    if "perplexity" in lowered or lowered.endswith("_ppl"):
        return (1, "perplexity", "Perplexity")
    if lowered == "loss" or lowered.endswith("_loss") or lowered.startswith("loss_"):
        return (0, "loss", "Loss")
    if lowered in ("lr", "learning_rate") or lowered.endswith(("_lr", "learning_rate")):
        return (2, "learning-rate", "Learning rate")
    if lowered.endswith(("_per_s", "_per_sec", "_per_second", "throughput")):
        return (3, "throughput", "Throughput (per second)")
    key = "".join(c if c.isalnum() or c == "-" else "-" for c in lowered)
    return (5, f"metric-{key}", name.replace("_", " "))


@dataclass
class Series:
    label: str
    metric: str
    run_id: int
    color: str
    dash: str
    points: Points


@dataclass
class Panel:
    """One chart: its series share the x axis (step) and one y scale."""

    key: str
    title: str
    series: list[Series] = field(default_factory=list)

    @property
    def data_id(self) -> str:
        return f"chart-data-{self.key}"

    @cached_property
    def svg(self) -> Chart:
        return line_chart([(s.label, s.color, s.dash, s.points) for s in self.series])

    @cached_property
    def data(self) -> dict[str, Any]:
        """What charts.js draws: steps and values per series (non-finite values as null)."""
        return {
            "kind": "line",
            "title": self.title,
            "x_label": "step",
            "series": [
                {
                    "label": s.label,
                    "color": s.color,
                    "dash": [int(d) for d in s.dash.split()],
                    "steps": [p for p, _ in s.points],
                    "values": [float(f"{v:.6g}") if math.isfinite(v) else None for _, v in s.points],
                }
                for s in self.series
            ],
        }


def metric_panels(runs: Sequence[Any], max_points: int = MAX_POINTS) -> list[Panel]:
    """Every metric the runs recorded, downsampled, grouped into panels.

    One run: a colour per metric within each panel. Several runs (compare): a colour
    per run, the same in every panel, and a dash pattern per metric.
    """
    from runs.models import RunMetric  # the model module imports nothing from here; keep it that way

    names_by_run: dict[int, set[str]] = {}
    for run_id, name in RunMetric.objects.filter(run__in=runs).values_list("run_id", "name").distinct():
        names_by_run.setdefault(run_id, set()).add(name)
    names = sorted({n for found in names_by_run.values() for n in found}, key=lambda n: (panel_kind(n), n))
    panels: dict[str, Panel] = {}
    for name in names:
        _, key, title = panel_kind(name)
        panel = panels.setdefault(key, Panel(key, title))
        metric_index = len({s.metric for s in panel.series})
        for run_index, run in enumerate(runs):
            if name not in names_by_run.get(run.pk, ()):
                continue
            metric_label = name.replace("_", " ")
            if len(runs) == 1:
                label, color, dash = metric_label, PALETTE[metric_index % len(PALETTE)], ""
            else:
                label = f"{run_label(run)} {metric_label}"
                color, dash = PALETTE[run_index % len(PALETTE)], DASHES[metric_index % len(DASHES)]
            panel.series.append(Series(label, name, run.pk, color, dash, run.metric_series(name, max_points)))
    return list(panels.values())


def run_label(run: Any) -> str:
    """How a run is named in legends: #id, and its name where it has one."""
    name = getattr(run, "name", "")
    return f"#{run.pk} {name}" if name else f"#{run.pk}"


@dataclass
class Bar:
    label: str
    value: float
    baseline: bool
    x: float
    y: float
    height: float
    color: str


@dataclass
class BarChart:
    """Accuracy (%) per leaderboard row, in the table's order; baseline rows in their own colour."""

    bars: list[Bar]
    width: int
    bar_width: float
    y_ticks: list[tuple[float, str]]
    data: dict[str, Any]
    height: int = HEIGHT
    plot_left: int = PAD_LEFT
    plot_right: int = WIDTH - PAD_RIGHT
    plot_top: int = PAD_TOP
    plot_bottom: int = HEIGHT - PAD_BOTTOM


def accuracy_bars(rows: Iterable[tuple[str, float | None, bool]]) -> BarChart | None:
    """`rows` is (label, accuracy as a fraction, baseline?) in display order; None when nothing is scored."""
    scored = [(label, acc * 100, base) for label, acc, base in rows if acc is not None and math.isfinite(acc)]
    if not scored:
        return None
    left, right, top, bottom = PAD_LEFT, WIDTH - PAD_RIGHT, PAD_TOP, HEIGHT - PAD_BOTTOM
    slot = (right - left) / len(scored)

    def y(percent: float) -> float:
        return bottom - (bottom - top) * percent / 100

    bars = [
        Bar(label, pct, base, left + slot * (i + 0.15), y(pct), bottom - y(pct), BASELINE if base else TRAINED)
        for i, (label, pct, base) in enumerate(scored)
    ]
    kinds = (("trained", TRAINED, False), ("base model (untrained)", BASELINE, True))
    data = {
        "kind": "bars",
        "title": "Accuracy",
        "y_label": "accuracy %",
        "labels": [label for label, _, _ in scored],
        # Two series, one per kind of row, so the legend names the colours; each row has a value in one.
        "series": [
            {
                "label": name,
                "color": color,
                "values": [round(pct, 2) if base == kind else None for _, pct, base in scored],
            }
            for name, color, kind in kinds
            if any(base == kind for _, _, base in scored)
        ],
    }
    return BarChart(bars, WIDTH, slot * 0.7, [(y(t), f"{t:g}") for t in range(0, 101, 20)], data)
