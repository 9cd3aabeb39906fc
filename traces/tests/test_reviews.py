"""Human review of traces: ratings, comments and labels; filters and facets; bulk actions; exports; dataset builds."""

from __future__ import annotations

import io
import json
from typing import Any

import orjson
import pytest
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext

from traces.datasets.exporting import iter_dataset_lines
from traces.exporting import export_traces
from traces.models import Dataset, Trace, TraceLabel, TraceReview
from traces.tests.datasets_support import build, member_ids
from traces.tests.factories import make_trace
from tunixrt.tests.role_support import CsrfClient, html, token_client

pytestmark = pytest.mark.django_db

LIST = "/api/traces"


def review_url(trace: Trace) -> str:
    return f"/api/traces/{trace.pk}/review"


def post(api: Any, url: str, body: Any) -> Any:
    return api.post(url, json.dumps(body), content_type="application/json")


def listed(api: Any, **params: Any) -> list[int]:
    response = api.get(LIST, params)
    assert response.status_code == 200, response.content
    return [row["id"] for row in response.json()["results"]]


# Reviewing one trace ------------------------------------------------------------------------------


def test_a_member_rates_comments_and_labels_a_trace_with_a_token(user):
    trace = make_trace()
    api = token_client(user)

    response = post(api, review_url(trace), {"rating": "good", "comment": "clean", "labels": ["needs-review", " x "]})

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["rating"] == "good"
    assert [lab["label"] for lab in body["labels"]] == ["needs-review", "x"]
    assert body["labels"][0]["created_by"] == "alice"
    assert body["reviews"][0]["user"] == "alice"
    assert body["reviews"][0]["comment"] == "clean"
    assert body["reviews"][0]["rated_at"]
    detail = api.get(f"/api/traces/{trace.pk}").json()
    assert detail["rating"] == "good"
    assert detail["labels"] == ["needs-review", "x"]
    assert detail["reviews"][0]["user"] == "alice"
    assert [lab["created_by"] for lab in detail["label_details"]] == ["alice", "alice"]


def test_a_session_reviews_with_its_csrf_token_and_is_refused_without(user):
    trace = make_trace()
    browser = CsrfClient(user)

    refused = browser.post(review_url(trace), json.dumps({"rating": "bad"}), content_type="application/json")
    assert refused.status_code == 403
    assert "CSRF" in refused.json()["detail"]
    assert not TraceReview.objects.exists()

    response = browser.post(
        review_url(trace), json.dumps({"rating": "bad"}), content_type="application/json",
        HTTP_X_CSRFTOKEN=browser.csrf,
    )
    assert response.status_code == 200, response.content
    assert response.json()["rating"] == "bad"


def test_the_newest_rating_is_the_traces_rating_and_every_reviewer_is_kept(api, other_api):
    trace = make_trace()
    post(api, review_url(trace), {"rating": "good", "comment": "fine by me"})
    body = post(other_api, review_url(trace), {"rating": "bad", "comment": "step 2 is wrong"}).json()

    assert body["rating"] == "bad"
    assert {r["user"]: (r["rating"], r["comment"]) for r in body["reviews"]} == {
        "alice": ("good", "fine by me"),
        "bob": ("bad", "step 2 is wrong"),
    }
    # Bob clears his rating: Alice's is the newest one left. Her comment alone leaves it as it was.
    assert post(other_api, review_url(trace), {"rating": None}).json()["rating"] == "good"
    body = post(api, review_url(trace), {"comment": "still fine"}).json()
    assert body["rating"] == "good"
    assert TraceReview.objects.filter(trace=trace).count() == 2


def test_a_member_removes_their_own_label_but_not_anothers(api, other_api, maintainer_api):
    trace = make_trace()
    post(api, review_url(trace), {"labels": ["mine"]})
    post(other_api, review_url(trace), {"labels": ["bobs"]})

    refused = post(api, review_url(trace), {"remove_labels": ["bobs", "mine"], "rating": "good"})
    assert refused.status_code == 400
    assert "remove_labels" in refused.json()
    assert set(TraceLabel.objects.values_list("label", flat=True)) == {"mine", "bobs"}
    assert not TraceReview.objects.exists(), "nothing of a refused request is stored"

    assert post(api, review_url(trace), {"remove_labels": ["mine"]}).status_code == 200
    assert post(maintainer_api, review_url(trace), {"remove_labels": ["bobs"]}).status_code == 200
    assert not TraceLabel.objects.exists()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"rating": "great"}, "rating"),
        ({"rating": 1}, "rating"),
        ({"labels": [""]}, "labels"),
        ({"labels": ["   "]}, "labels"),
        ({"labels": ["x" * 65]}, "labels"),
        ({"labels": "not-a-list"}, "labels"),
        ({"labels": ["a\x00b"]}, "labels"),
        ({"labels": ["a,b"]}, "labels"),
        ({"labels": [f"l{i}" for i in range(21)]}, "labels"),
        ({"remove_labels": [7]}, "remove_labels"),
        ({"comment": "nul \x00 here"}, "comment"),
        ({"comment": "x" * 5001}, "comment"),
        ({"colour": "red"}, "colour"),
        ({}, "non_field_errors"),
    ],
)
def test_a_bad_review_is_a_400_naming_the_field_and_stores_nothing(api, body, field):
    trace = make_trace()
    # A valid label alongside the bad field must not be stored either.
    alongside = {} if field in ("labels", "remove_labels", "non_field_errors") else {"labels": ["kept-out"]}
    response = post(api, review_url(trace), {**body, **alongside})

    assert response.status_code == 400, response.content
    assert field in response.json()
    assert not TraceLabel.objects.exists()
    assert not TraceReview.objects.exists()


def test_reviewing_an_unknown_trace_is_a_404(api):
    assert post(api, "/api/traces/999999/review", {"rating": "good"}).status_code == 404


def test_a_viewer_may_read_reviews_but_not_review(viewer_api, api):
    trace = make_trace()
    post(api, review_url(trace), {"rating": "good"})

    response = post(viewer_api, review_url(trace), {"rating": "bad"})

    assert response.status_code == 403
    assert "member" in response.json()["detail"]
    assert viewer_api.get(f"/api/traces/{trace.pk}").json()["rating"] == "good"
    bulk = post(viewer_api, "/api/traces/bulk", {"action": "label", "ids": [trace.pk], "labels": ["x"]})
    assert bulk.status_code == 403
    assert not TraceLabel.objects.exists()


# Filters and facets --------------------------------------------------------------------------------


@pytest.fixture
def reviewed(api: Any, other_api: Any) -> dict[str, Trace]:
    good, bad, plain, flipped = (make_trace() for _ in range(4))
    post(api, review_url(good), {"rating": "good", "labels": ["arithmetic-error", "needs-review"]})
    post(api, review_url(bad), {"rating": "bad", "labels": ["needs-review"]})
    post(api, review_url(flipped), {"rating": "bad"})
    post(other_api, review_url(flipped), {"rating": "good"})  # the newer rating wins
    return {"good": good, "bad": bad, "plain": plain, "flipped": flipped}


def test_the_api_list_filters_by_rating_and_label_and_shows_them(api, reviewed):
    r = reviewed
    assert listed(api, rating="good") == [r["flipped"].pk, r["good"].pk]
    assert listed(api, rating="bad") == [r["bad"].pk]
    assert listed(api, rating="unrated") == [r["plain"].pk]
    assert listed(api, label="needs-review") == [r["bad"].pk, r["good"].pk]
    assert listed(api, label="needs-review", rating="good") == [r["good"].pk]
    assert listed(api, label="nobody-used-this") == []
    rows = {row["id"]: row for row in api.get(LIST).json()["results"]}
    assert rows[r["good"].pk]["rating"] == "good"
    assert rows[r["good"].pk]["labels"] == ["arithmetic-error", "needs-review"]
    assert rows[r["plain"].pk]["rating"] is None
    assert rows[r["plain"].pk]["labels"] == []


@pytest.mark.parametrize(
    ("params", "field"),
    [({"rating": "great"}, "rating"), ({"label": "x" * 65}, "label"), ({"label": "a\x00b"}, "label")],
)
def test_a_bad_filter_value_is_a_400_naming_the_parameter(api, params, field):
    response = api.get(LIST, params)
    assert response.status_code == 400
    assert field in response.content.decode()


def test_the_list_stays_one_query_with_reviews(api, reviewed):
    for _ in range(10):
        post(api, review_url(make_trace()), {"rating": "good", "labels": ["a", "b"]})
    with CaptureQueriesContext(connection) as ctx:
        assert len(listed(api, limit=5)) == 5
    counts_5 = len(ctx.captured_queries)
    with CaptureQueriesContext(connection) as ctx:
        assert len(listed(api, limit=14)) == 14
    assert len(ctx.captured_queries) == counts_5 <= 2


def test_facets_count_current_ratings_and_labels(api, reviewed):
    body = api.get("/api/traces/facets").json()
    assert body["ratings"] == {"good": 2, "bad": 1}
    assert body["labels"] == [{"label": "needs-review", "count": 2}, {"label": "arithmetic-error", "count": 1}]


def test_the_list_page_filters_by_rating_and_label_and_shows_chips_and_facets(page, reviewed):
    text = html(page.get("/traces/", {"rating": "good", "label": "needs-review"}))
    # Rows open the trace with the list's filters (for previous / next there).
    assert f'href="/traces/{reviewed["good"].pk}/?rating=good&amp;label=needs-review"' in text
    assert f'href="/traces/{reviewed["bad"].pk}/' not in text
    assert 'class="rating rating-good"' in text
    assert ">arithmetic-error</a>" in text
    assert 'id="facets"' in text
    assert "needs-review 2" in text
    bad = page.get("/traces/", {"rating": "great"})
    assert "rating:" in html(bad)


# Pages: detail review form, roles ----------------------------------------------------------------


def test_the_detail_page_review_form_saves_and_shows_who_said_what(user):
    trace = make_trace()
    browser = CsrfClient(user)
    response = browser.submit(
        f"/traces/{trace.pk}/review/", {"rating": "bad", "comment": "off by one", "labels": "arithmetic-error, x"},
        HTTP_HX_REQUEST="true",
    )
    assert response.status_code == 200
    text = html(response)
    assert 'id="current-rating">bad<' in text
    assert "off by one" in text and "alice" in text
    assert ">arithmetic-error</a>" in text
    assert sorted(TraceLabel.objects.values_list("label", flat=True)) == ["arithmetic-error", "x"]

    bad = browser.submit(f"/traces/{trace.pk}/review/", {"rating": "meh"}, HTTP_HX_REQUEST="true")
    assert bad.status_code == 400
    assert "rating:" in html(bad)
    assert TraceReview.objects.get().rating == "bad"


def test_a_viewer_sees_reviews_but_no_review_or_bulk_controls(viewer_page, api, viewer):
    trace = make_trace()
    post(api, review_url(trace), {"rating": "good", "comment": "nice", "labels": ["gold"]})

    detail = html(viewer_page.get(f"/traces/{trace.pk}/"))
    assert "nice" in detail and ">gold</a>" in detail
    assert "Save review" not in detail
    assert "remove label" not in detail
    listing = html(viewer_page.get("/traces/"))
    assert "Rate good" not in listing and "New dataset from selection" not in listing
    refused = CsrfClient(viewer).submit(f"/traces/{trace.pk}/review/", {"rating": "bad"})
    assert refused.status_code == 403
    assert TraceReview.objects.get().rating == "good"


def test_a_member_sees_the_controls(page):
    trace = make_trace()
    assert "Save review" in html(page.get(f"/traces/{trace.pk}/"))
    listing = html(page.get("/traces/"))
    assert "Rate good" in listing and "New dataset from selection" in listing


# Bulk actions --------------------------------------------------------------------------------------


def test_bulk_label_and_rate_through_the_api(api):
    a, b, c = (make_trace() for _ in range(3))
    response = post(api, "/api/traces/bulk", {"action": "label", "ids": [a.pk, b.pk], "labels": ["batch-1", "x"]})
    assert response.status_code == 200, response.content
    assert response.json()["added"] == 4
    assert post(api, "/api/traces/bulk", {"action": "label", "ids": [a.pk], "labels": ["x"]}).json()["added"] == 0
    assert post(api, "/api/traces/bulk", {"action": "rate", "ids": [a.pk, c.pk], "rating": "bad"}).status_code == 200
    assert listed(api, label="batch-1") == [b.pk, a.pk]
    assert listed(api, rating="bad") == [c.pk, a.pk]
    assert post(api, "/api/traces/bulk", {"action": "rate", "ids": [a.pk], "rating": ""}).status_code == 200
    assert listed(api, rating="bad") == [c.pk]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"action": "paint", "ids": [1]}, "action"),
        ({"action": "label", "ids": [], "labels": ["x"]}, "ids"),
        ({"action": "label", "ids": ["a"], "labels": ["x"]}, "ids"),
        ({"action": "label", "ids": [1, 999999], "labels": ["x"]}, "ids"),
        ({"action": "label", "ids": [1], "labels": []}, "labels"),
        ({"action": "label", "ids": [1], "labels": ["y" * 65]}, "labels"),
        ({"action": "rate", "ids": [1], "rating": "great"}, "rating"),
        ({"action": "rate", "ids": [1]}, "rating"),
        ({"action": "rate", "ids": list(range(1, 1002)), "rating": "good"}, "ids"),
    ],
)
def test_a_bad_bulk_request_is_a_400_naming_the_field_and_changes_nothing(api, body, field):
    trace = make_trace()
    body = {**body, "ids": [trace.pk if i == 1 else i for i in body["ids"]]}
    response = post(api, "/api/traces/bulk", body)
    assert response.status_code == 400, response.content
    assert field in response.json()
    assert not TraceLabel.objects.exists() and not TraceReview.objects.exists()


def test_bulk_delete_refuses_traces_in_a_dataset_and_others_work_and_deletes_the_rest(api, user, other_member):
    mine_free, mine_kept = make_trace(created_by=user), make_trace(created_by=user)
    bobs = make_trace(created_by=other_member)
    build("keep", trace_ids=[mine_kept.pk])

    response = post(api, "/api/traces/bulk", {"action": "delete", "ids": [mine_free.pk, mine_kept.pk, bobs.pk]})

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["deleted"] == [mine_free.pk]
    refused = {r["id"]: r for r in body["refused"]}
    assert refused[mine_kept.pk]["datasets"] == ["keep@v1"]
    assert "keep@v1" in refused[mine_kept.pk]["reason"]
    assert "owner" in refused[bobs.pk]["reason"]
    assert set(Trace.objects.values_list("pk", flat=True)) == {mine_kept.pk, bobs.pk}


def test_the_list_page_bulk_actions_label_rate_and_delete(user):
    a, b = make_trace(created_by=user), make_trace(created_by=user)
    kept = make_trace(created_by=user)
    build("held", trace_ids=[kept.pk])
    browser = CsrfClient(user)

    response = browser.submit("/traces/bulk/", {"action": "label", "id": [a.pk, b.pk], "labels": "gold, x"},
                              HTTP_HX_REQUEST="true")
    assert response.status_code == 204 and response["HX-Refresh"] == "true"
    assert TraceLabel.objects.filter(label="gold").count() == 2
    assert browser.submit("/traces/bulk/", {"action": "good", "id": [a.pk]}).status_code == 302
    assert TraceReview.objects.get().rating == "good"

    bad = browser.submit("/traces/bulk/", {"action": "label", "id": [a.pk], "labels": ""}, HTTP_HX_REQUEST="true")
    assert bad.status_code == 400 and "labels:" in html(bad)

    response = browser.submit("/traces/bulk/", {"action": "delete", "id": [b.pk, kept.pk]}, follow=True)
    text = html(response)
    assert "Deleted 1 trace." in text
    assert f"Trace {kept.pk} was not deleted" in text and "held@v1" in text
    assert set(Trace.objects.values_list("pk", flat=True)) == {a.pk, kept.pk}


def test_new_dataset_from_selection_opens_the_build_page_with_the_ids(page, user):
    a, b = make_trace(), make_trace()
    text = html(page.get("/datasets/new/", {"id": [a.pk, b.pk]}))
    assert f"{a.pk}, {b.pk}</textarea>" in text
    assert 'class="match-count">2<' in text

    browser = CsrfClient(user)
    form = {"name": "picked", "trace_ids": f"{a.pk}, {b.pk}", "strategy": "latest"}
    response = browser.submit("/datasets/new/", form)
    assert response.status_code == 302, html(response)
    assert sorted(member_ids(Dataset.objects.get(name="picked"))) == sorted([a.pk, b.pk])
    bad = browser.submit("/datasets/new/", {"name": "picked", "trace_ids": "1, two", "strategy": "latest"})
    assert bad.status_code == 400 and "whole numbers" in html(bad)


# Dataset builds and exports ------------------------------------------------------------------------


def test_a_dataset_built_from_rating_good_holds_only_good_traces_and_says_so(api, reviewed):
    response = post(api, "/api/datasets", {"name": "good-only", "rating": "good", "label": "needs-review"})
    assert response.status_code == 201, response.content
    assert response.json()["spec"]["filters"] == {"rating": "good", "label": "needs-review"}
    dataset = Dataset.objects.get(name="good-only")
    assert member_ids(dataset) == [reviewed["good"].pk]

    assert member_ids(build("good-all", rating="good")) == [reviewed["flipped"].pk, reviewed["good"].pk]
    bad = post(api, "/api/datasets", {"name": "x", "rating": "great"})
    assert bad.status_code == 400 and "rating" in bad.json()


def test_the_build_page_builds_from_a_rating(user, reviewed):
    browser = CsrfClient(user)
    response = browser.submit("/datasets/new/", {"name": "rated", "rating": "bad", "strategy": "latest"})
    assert response.status_code == 302
    assert member_ids(Dataset.objects.get(name="rated")) == [reviewed["bad"].pk]
    assert "&quot;rating&quot;: &quot;bad&quot;" in html(browser.get("/datasets/rated@v1/"))


def test_the_trace_export_carries_the_review_in_metadata_and_leaves_others_as_they_were(api, reviewed):
    dataset = build("all", strategy="all")
    before = {
        json.loads(line)["id"]: line
        for line in iter_dataset_lines(build("untouched", trace_ids=[reviewed["plain"].pk]), "trace")
    }
    records = {json.loads(line)["id"]: json.loads(line) for line in iter_dataset_lines(dataset, "trace")}

    good = records[reviewed["good"].pk]["metadata"]
    assert good["human_review"] == {"rating": "good", "labels": ["arithmetic-error", "needs-review"]}
    assert records[reviewed["flipped"].pk]["metadata"]["human_review"] == {"rating": "good", "labels": []}
    plain = Trace.objects.get(pk=reviewed["plain"].pk)  # meta as the database gives it back (jsonb orders keys)
    assert "human_review" not in records[plain.pk]["metadata"]
    expected = orjson.dumps(
        {"id": plain.pk, "prompts": plain.prompt, "trace_steps": [s["content"] for s in plain.steps],
         "final_answer": plain.final_answer, "metadata": plain.meta}
    ) + b"\n"
    assert before[plain.pk] == expected
    # Other formats carry no metadata, and do not change.
    assert all("human_review" not in line.decode() for line in iter_dataset_lines(dataset, "chat"))


def test_the_trace_export_reads_reviews_per_chunk_not_per_row(api, monkeypatch):
    traces = [make_trace() for _ in range(9)]
    for t in traces:
        post(api, review_url(t), {"rating": "good", "labels": ["x"]})
    dataset = build("chunks", strategy="all")
    monkeypatch.setattr("traces.datasets.exporting.EXPORT_CHUNK", 4)
    with CaptureQueriesContext(connection) as ctx:
        lines = list(iter_dataset_lines(dataset, "trace"))
    assert len(lines) == 9
    assert all(json.loads(line)["metadata"]["human_review"]["labels"] == ["x"] for line in lines)
    review_queries = [q for q in ctx.captured_queries if "traces_tracelabel" in q["sql"]]
    assert len(review_queries) == 3  # positions 0-3, 4-7, 8


def test_export_traces_adds_reviews_only_when_asked(api, reviewed, tmp_path):
    plain_out, review_out = io.BytesIO(), io.BytesIO()
    export_traces(plain_out)
    export_traces(review_out, reviews=True)
    plain = [json.loads(line) for line in plain_out.getvalue().splitlines()]
    with_reviews = [json.loads(line) for line in review_out.getvalue().splitlines()]

    assert all("human_review" not in doc["meta"] for doc in plain)
    by_prompt = {doc["prompt"]: doc["meta"] for doc in with_reviews}
    assert by_prompt[reviewed["bad"].prompt]["human_review"] == {"rating": "bad", "labels": ["needs-review"]}
    assert "human_review" not in by_prompt[reviewed["plain"].prompt]
    out = tmp_path / "out.jsonl"
    call_command("export_traces", str(out), "--reviews", stderr=io.StringIO())
    assert out.read_bytes() == review_out.getvalue()


# Admin ---------------------------------------------------------------------------------------------


def test_the_admin_shows_reviews_and_labels(client, django_user_model, api, reviewed):
    admin = django_user_model.objects.create_superuser("root", "root@example.com", "pw")
    client.force_login(admin)
    change = html(client.get(f"/admin/traces/trace/{reviewed['good'].pk}/change/"))
    assert "arithmetic-error" in change and "needs-review" in change
    reviews = client.get("/admin/traces/tracereview/", {"rating__exact": "bad"})
    assert reviews.status_code == 200
    assert html(client.get("/admin/traces/tracelabel/", {"q": "needs-review"})).count("needs-review") >= 2
