"""Pages offer what fits instead of bare id boxes: traces, evaluated runs, registered model names."""

from __future__ import annotations

import re
from typing import Any

import pytest

from runs.tests.eval_support import completed_run, hand_evaluation, make_eval_set
from runs.tests.run_support import build_arithmetic_dataset
from traces.tests.factories import make_trace

pytestmark = pytest.mark.django_db


def options(html: str, datalist: str) -> list[tuple[str, str]]:
    start = html.index(f'<datalist id="{datalist}">')
    block = html[start : html.index("</datalist>", start)]
    return re.findall(r'<option value="([^"]*)">([^<]*)</option>', block)


@pytest.fixture
def evaluated(user: Any) -> dict[str, Any]:
    dataset = build_arithmetic_dataset(count=8)
    quiz, other = make_eval_set("quiz"), make_eval_set("other")
    a, b, c = (completed_run(dataset, created_by=user) for _ in range(3))
    a.describe(name="sweep a")
    hand_evaluation(a, quiz, {"q1": True, "q2": True, "q3": True, "q4": False})
    hand_evaluation(b, other, {"q1": True, "q2": False, "q3": False, "q4": False})
    hand_evaluation(c, quiz, {"q1": True}, baseline=True)  # only its untrained base: not a candidate
    return {"quiz": quiz, "other": other, "a": a, "b": b, "c": c}


def test_evaluation_compare_offers_the_runs_evaluated_on_the_chosen_set(page: Any, evaluated: dict[str, Any]) -> None:
    a, b = evaluated["a"], evaluated["b"]
    html = page.get("/evaluations/compare/?eval_set=quiz").content.decode()
    assert options(html, "run-choices") == [(str(a.pk), f"#{a.pk} sweep a — quiz 75.0 %")]
    html = page.get("/evaluations/compare/?eval_set=other", headers={"HX-Request": "true"}).content.decode()
    assert options(html, "run-choices") == [(str(b.pk), f"#{b.pk} — other 25.0 %")]
    assert 'type="number" name="a"' not in html


def test_regression_forms_offer_evaluated_runs(maintainer_page: Any, evaluated: dict[str, Any]) -> None:
    html = maintainer_page.get("/regression/").content.decode()
    picked = dict(options(html, "evaluated-runs"))
    assert set(picked) == {str(evaluated["a"].pk), str(evaluated["b"].pk)}
    assert html.count('list="evaluated-runs"') == 2


def test_trace_compare_offers_the_newest_traces(page: Any) -> None:
    first, second = make_trace(prompt="Alpha question"), make_trace(prompt="Beta question")
    html = page.get(f"/traces/compare/?base={first.pk}").content.decode()
    assert options(html, "trace-choices")[:2] == [
        (str(second.pk), f"#{second.pk} Beta question"), (str(first.pk), f"#{first.pk} Alpha question")
    ]
    assert f'value="{first.pk}" required' in html


def test_promotion_offers_existing_model_names(maintainer_page: Any, evaluated: dict[str, Any]) -> None:
    run = evaluated["a"]
    assert maintainer_page.post(f"/runs/{run.pk}/promote/", {"name": "reasoner"}).status_code == 302
    html = maintainer_page.get(f"/runs/{evaluated['b'].pk}/").content.decode()
    assert options(html, "registered-names") == [("reasoner", "")]
