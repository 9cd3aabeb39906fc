"""Metric charts: downsampling, panels grouped by kind, readable numbers, the JSON the browser draws."""

from __future__ import annotations

import json
import math
import re
from typing import Any

import pytest

from runs.charts import PALETTE, Panel, Series, accuracy_bars, line_chart, metric_panels, panel_kind, readable
from runs.models import Run, RunMetric
from runs.tests.eval_support import completed_run, hand_evaluation, make_eval_set, use_eval_folders
from runs.tests.run_support import finished_run, make_run

pytestmark = pytest.mark.django_db


def record(run: Run, name: str, steps: range, value: Any = float) -> None:
    RunMetric.objects.bulk_create([RunMetric(run=run, name=name, step=s, value=value(s)) for s in steps])


def embedded(text: str, data_id: str) -> Any:
    match = re.search(rf'<script id="{data_id}" type="application/json">(.*?)</script>', text, re.S)
    assert match, f"no {data_id} block"
    return json.loads(match.group(1))


def test_a_sparse_metric_thins_evenly_and_keeps_its_last_point(dataset):
    run = make_run(dataset)
    record(run, "eval_loss", range(50, 5001, 50))  # 100 points, every 50 steps
    points = run.metric_series("eval_loss", 40)
    steps = [s for s, _ in points]
    assert steps[:4] == [50, 200, 350, 500]  # every 3rd point, not only steps divisible by 3 x something
    assert steps[-1] == 5000
    assert 34 <= len(points) <= 41
    assert all(v == float(s) for s, v in points)


def test_a_long_series_is_sent_as_at_most_about_a_thousand_points(dataset):
    run = make_run(dataset)
    record(run, "train_loss", range(1, 4502))
    (panel,) = metric_panels([run])
    (series,) = panel.series
    assert len(series.points) <= 1001
    assert series.points[0] == (1, 1.0) and series.points[-1] == (4501, 4501.0)
    strides = {b - a for (a, _), (b, _) in zip(series.points, series.points[1:-1], strict=False)}
    assert strides == {5}


def test_a_short_series_is_sent_whole(dataset):
    run = make_run(dataset)
    record(run, "grad_norm", range(0, 30, 3))
    assert run.metric_series("grad_norm", 1000) == [(s, float(s)) for s in range(0, 30, 3)]


def test_metrics_are_grouped_into_panels_by_kind(dataset):
    run = make_run(dataset)
    for name in (
        "tokens_per_s", "reward_mean", "grad_norm", "eval_perplexity", "learning_rate",
        "eval_loss", "train_perplexity", "train_loss", "accuracy",
    ):
        record(run, name, range(1, 4))
    panels = metric_panels([run])
    assert [(p.key, [s.metric for s in p.series]) for p in panels] == [
        ("loss", ["eval_loss", "train_loss"]),
        ("perplexity", ["eval_perplexity", "train_perplexity"]),
        ("learning-rate", ["learning_rate"]),
        ("throughput", ["tokens_per_s"]),
        ("grpo-reward", ["reward_mean"]),
        ("metric-accuracy", ["accuracy"]),
        ("metric-grad-norm", ["grad_norm"]),
    ]
    loss = panels[0]
    assert [s.label for s in loss.series] == ["eval loss", "train loss"]
    assert len({s.color for s in loss.series}) == 2  # one run: a colour per metric


@pytest.mark.parametrize(
    ("name", "key"),
    [("loss", "loss"), ("val_loss", "loss"), ("ppl", "metric-ppl"), ("eval_ppl", "perplexity"),
     ("lr", "learning-rate"), ("samples_per_s", "throughput"), ("kl", "grpo-kl"),
     ("reward_max", "grpo-reward"), ("reward_format", "grpo-reward-functions"), ("clip_fraction", "grpo-clip-fraction"),
     ("completion_length_min", "grpo-completion-length"), ("eval_reward_margin", "preference-margin")],
)
def test_panel_kinds_by_name(name, key):
    assert panel_kind(name)[1] == key


def test_compared_runs_keep_one_colour_each_in_every_panel(dataset):
    one, two = make_run(dataset), make_run(dataset)
    for run in (one, two):
        record(run, "train_loss", range(1, 5))
        record(run, "learning_rate", range(1, 5), lambda s: 0.001)
    record(two, "eval_loss", range(2, 5, 2))
    panels = metric_panels([one, two])
    assert [p.key for p in panels] == ["loss", "learning-rate"]
    loss = panels[0]
    assert [s.label for s in loss.series] == [f"#{two.pk} eval loss", f"#{one.pk} train loss", f"#{two.pk} train loss"]
    colours = {(s.run_id, s.color) for p in panels for s in p.series}
    assert colours == {(one.pk, PALETTE[0]), (two.pk, PALETTE[1])}
    dashes = {s.metric: s.dash for s in loss.series}
    assert dashes["train_loss"] != dashes["eval_loss"]  # and a dash pattern per metric


def test_the_embedded_data_is_valid_json_without_nan():
    # PostgreSQL stores NaN and infinity (SQLite cannot): the JSON must still parse.
    points = [(1, 2.0), (2, math.nan), (3, math.inf), (4, 1.234567891)]
    panel = Panel("loss", "Loss", [Series("train loss", "train_loss", 1, PALETTE[0], "", points)])
    data = json.loads(json.dumps(panel.data, allow_nan=False))
    assert data["series"][0]["steps"] == [1, 2, 3, 4]
    assert data["series"][0]["values"] == [2.0, None, None, 1.23457]
    assert panel.svg.lines[0].points.count(",") == 2  # the SVG skips what it cannot draw


@pytest.mark.parametrize(
    ("value", "text"),
    [(1_000_000.0, "1,000,000"), (12345.6, "12,346"), (1234.56, "1,234.6"), (3.14159, "3.142"), (0.00002, "0.00002"),
     (0.012345, "0.01235"), (0.0, "0"), (-0.5, "-0.5"), (math.nan, "–")],
)
def test_numbers_read_as_people_write_them(value, text):
    assert readable(value) == text


def test_axis_ticks_never_use_exponents():
    chart = line_chart([("tokens per s", "#000", "", [(1, 1_200_000.0), (2, 2_400_000.0)])])
    labels = [label for _, label in chart.y_ticks]
    assert labels and not any("e" in label for label in labels)
    assert "2,000,000" in labels
    small = line_chart([("learning rate", "#000", "", [(1, 0.00001), (2, 0.00005)])])
    assert not any("e" in label for _, label in small.y_ticks)


def test_the_run_page_embeds_every_metric_panel_and_keeps_the_svg(page, dataset):
    run = finished_run(dataset, files=False)
    record(run, "tokens_per_s", range(1, 21), lambda s: 5000.0 + s)
    text = page.get(f"/runs/{run.pk}/").content.decode()
    assert [m for m in re.findall(r'data-chart="([\w-]+)"', text)] == ["loss", "learning-rate", "throughput"]
    loss = embedded(text, "chart-data-loss")
    assert [s["label"] for s in loss["series"]] == ["eval loss", "train loss"]
    assert loss["series"][1]["steps"] == list(range(1, 21))
    assert text.count('<svg class="chart"') == 3
    assert "vendor/uplot/uPlot.iife.min.js" in text and "js/charts.js" in text
    # The polled fragment carries the same panels (the browser moves its chart into them).
    fragment = page.get(f"/runs/{run.pk}/", {"fragment": "chart"}, HTTP_HX_REQUEST="true").content.decode()
    assert embedded(fragment, "chart-data-loss") == loss


def test_the_compare_page_overlays_each_metric_of_every_run(page, dataset):
    one = finished_run(dataset, files=False)
    two = finished_run(dataset, files=False)
    text = page.get("/runs/compare/", {"id": [one.pk, two.pk]}).content.decode()
    loss = embedded(text, "chart-data-loss")
    assert [s["label"] for s in loss["series"]] == [
        f"#{one.pk} eval loss", f"#{two.pk} eval loss", f"#{one.pk} train loss", f"#{two.pk} train loss",
    ]
    assert embedded(text, "chart-data-learning-rate")["series"][1]["label"] == f"#{two.pk} learning rate"


def test_accuracy_bars_keep_the_order_and_mark_baselines():
    chart = accuracy_bars([("#3", 0.75, False), ("#1 base model", 0.25, True), ("#2", None, False)])
    assert chart is not None
    assert [(b.label, b.value, b.baseline) for b in chart.bars] == [("#3", 75.0, False), ("#1 base model", 25.0, True)]
    assert chart.data["labels"] == ["#3", "#1 base model"]
    assert [(s["label"], s["values"]) for s in chart.data["series"]] == [
        ("trained", [75.0, None]), ("base model (untrained)", [None, 25.0]),
    ]
    assert accuracy_bars([]) is None


def test_the_leaderboard_draws_accuracy_per_run_in_the_table_order(page, dataset, settings, tmp_path):
    use_eval_folders(settings, tmp_path)
    quiz = make_eval_set("quiz")
    a, b = completed_run(dataset), completed_run(dataset)
    hand_evaluation(a, quiz, {"q1": True, "q2": False, "q3": False, "q4": False})
    hand_evaluation(b, quiz, {"q1": True, "q2": True, "q3": True, "q4": False})
    text = page.get("/leaderboard/", {"eval_set": "quiz"}).content.decode()
    data = embedded(text, "chart-data-accuracy")
    assert data["labels"] == [f"#{b.pk}", f"#{a.pk}"]
    assert data["series"] == [{"label": "trained", "color": data["series"][0]["color"], "values": [75.0, 25.0]}]
    assert "<rect" in text and "75.0%" in text  # the SVG, for pages read without JavaScript
    hand_evaluation(a, quiz, {"q1": True, "q2": True, "q3": False, "q4": False}, baseline=True)
    baselines = page.get("/leaderboard/", {"eval_set": "quiz", "baseline": "1"}).content.decode()
    base = embedded(baselines, "chart-data-accuracy")
    assert base["labels"] == [f"#{a.pk} base model"]
    assert base["series"][0]["label"] == "base model (untrained)"
