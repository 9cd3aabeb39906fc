"""/api/preference-pairs: capture (single and batch) with the trace rules, idempotency, browse, delete."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from traces.models import Dataset, PreferenceMember, PreferencePair
from traces.tests.factories import make_pair, pair_document

pytestmark = pytest.mark.django_db

URL = "/api/preference-pairs"


def replaced(**fields: Any) -> dict[str, Any]:
    doc = pair_document(1)
    doc.update(fields)
    return doc


def without(key: str) -> dict[str, Any]:
    doc = pair_document(1)
    del doc[key]
    return doc


BAD_PAIRS = [
    pytest.param(without("prompt"), "prompt", id="prompt-missing"),
    pytest.param(replaced(prompt="  "), "prompt", id="prompt-blank"),
    pytest.param(replaced(prompt="p" * 50_001), "prompt", id="prompt-too-long"),
    pytest.param(replaced(prompt=3), "prompt", id="prompt-not-string"),
    pytest.param(replaced(prompt="a\x00b"), "prompt", id="prompt-nul"),
    pytest.param(without("chosen"), "chosen", id="chosen-missing"),
    pytest.param(replaced(chosen=""), "chosen", id="chosen-empty"),
    pytest.param(replaced(chosen="c\x00"), "chosen", id="chosen-nul"),
    pytest.param(without("rejected"), "rejected", id="rejected-missing"),
    pytest.param(replaced(rejected=None), "rejected", id="rejected-null"),
    pytest.param(replaced(rejected=pair_document(1)["chosen"]), "rejected", id="rejected-same-as-chosen"),
    pytest.param(replaced(note=5), "note", id="note-not-string"),
    pytest.param(replaced(note="n" * 2001), "note", id="note-too-long"),
    pytest.param(replaced(note="\x00"), "note", id="note-nul"),
    pytest.param(replaced(meta=[1]), "meta", id="meta-not-object"),
    pytest.param(replaced(meta={"n": 2**64}), "meta.n", id="meta-huge-int"),
    pytest.param(replaced(meta={"deep": ["\x00"]}), "meta.deep[0]", id="meta-nul"),
    pytest.param(replaced(extra=1), "extra", id="unknown-field"),
]


@pytest.mark.parametrize(("doc", "field"), BAD_PAIRS)
def test_a_bad_pair_is_refused_naming_the_field(api, doc, field):
    response = api.post(URL, doc, format="json")
    assert response.status_code == 400, response.content
    assert field in response.json()
    assert not PreferencePair.objects.exists()


def test_a_body_that_is_not_an_object_is_refused(api):
    response = api.post(URL, [1, 2], format="json")
    assert response.status_code == 400
    assert "non_field_errors" in response.json()


def test_a_pair_is_captured_with_its_provenance(api, user):
    response = api.post(URL, pair_document(1, note="clearer steps"), format="json")
    assert response.status_code == 201, response.content
    pair = PreferencePair.objects.get(pk=response.json()["id"])
    assert (pair.source, pair.note, pair.created_by) == ("api", "clearer steps", user)
    assert pair.chosen.endswith("Answer: 2")
    assert pair.meta == {"origin": "factory"}


def test_capturing_the_same_preference_again_returns_the_stored_pair(api):
    first = api.post(URL, pair_document(1), format="json")
    again = api.post(URL, pair_document(1, note="another note", meta={"x": 1}), format="json")
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["id"] == first.json()["id"]
    assert PreferencePair.objects.count() == 1
    assert PreferencePair.objects.get().note == ""  # the first capture's provenance stays


def test_an_oversized_pair_is_a_413(api, settings):
    settings.TRACE_MAX_BYTES = 1024
    response = api.post(URL, replaced(prompt="x" * 2000), format="json")
    assert response.status_code == 413
    assert not PreferencePair.objects.exists()


def test_a_batch_is_stored_in_order_with_duplicates_counted(api):
    body = {"pairs": [pair_document(1), pair_document(2), pair_document(1)]}
    response = api.post(f"{URL}/batch", body, format="json")
    assert response.status_code == 201, response.content
    data = response.json()
    assert (data["created"], data["duplicates"]) == (2, 1)
    assert data["ids"][0] == data["ids"][2] != data["ids"][1]
    again = api.post(f"{URL}/batch", [pair_document(2)], format="json")
    assert again.status_code == 200
    assert again.json() == {"ids": [data["ids"][1]], "created": 0, "duplicates": 1}


def test_a_batch_with_one_bad_pair_stores_nothing_and_names_it(api):
    body = [pair_document(1), replaced(chosen=""), pair_document(3)]
    response = api.post(f"{URL}/batch", body, format="json")
    assert response.status_code == 400
    data = response.json()
    assert data["items"] == [{"index": 1, "errors": {"chosen": ["May not be blank."]}}]
    assert "nothing was stored" in data["detail"]
    assert not PreferencePair.objects.exists()


@pytest.mark.parametrize("body", [{"pairs": "x"}, [], {"other": []}])
def test_a_batch_that_is_not_a_list_of_pairs_is_refused(api, body):
    response = api.post(f"{URL}/batch", body, format="json")
    assert response.status_code == 400
    assert "pairs" in response.json()


def test_a_batch_over_the_item_limit_is_refused(api, settings):
    settings.TRACE_BATCH_MAX_ITEMS = 2
    response = api.post(f"{URL}/batch", [pair_document(i) for i in range(3)], format="json")
    assert response.status_code == 400
    assert "between 1 and 2" in response.json()["pairs"][0]


def test_an_oversized_batch_item_is_named(api, settings):
    settings.TRACE_MAX_BYTES = 1024
    response = api.post(f"{URL}/batch", [pair_document(1), replaced(prompt="x" * 2000)], format="json")
    assert response.status_code == 400
    assert response.json()["items"][0]["index"] == 1


def test_a_viewer_may_read_but_not_capture(viewer_api):
    response = viewer_api.post(URL, pair_document(1), format="json")
    assert response.status_code == 403
    assert "member" in response.json()["detail"]
    assert viewer_api.get(URL).status_code == 200


def test_anonymous_requests_are_refused():
    assert Client().get(URL).status_code in (401, 403)


def test_a_token_captures_a_pair(user):
    from rest_framework.test import APIClient

    from tunixrt.models import ApiToken

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {ApiToken.objects.issue(user)}")
    assert client.post(URL, pair_document(1), format="json").status_code == 201


@pytest.fixture
def session(user: Any) -> tuple[Client, str]:
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    client.get("/traces/")
    return client, client.cookies["csrftoken"].value


def test_a_session_with_its_csrf_token_captures_pairs(session):
    client, token = session
    one = client.post(URL, json.dumps(pair_document(1)), content_type="application/json", HTTP_X_CSRFTOKEN=token)
    batch = client.post(
        f"{URL}/batch", json.dumps([pair_document(2)]), content_type="application/json", HTTP_X_CSRFTOKEN=token
    )
    assert (one.status_code, batch.status_code) == (201, 201)


def test_a_session_without_the_csrf_token_is_refused(session):
    client, _ = session
    response = client.post(URL, json.dumps(pair_document(1)), content_type="application/json")
    assert response.status_code == 403
    assert "CSRF" in response.json()["detail"]
    assert not PreferencePair.objects.exists()


def test_the_list_is_narrow_newest_first_and_filtered(api, user, other_member, django_assert_num_queries):
    old = make_pair(1, source="import")
    PreferencePair.objects.filter(pk=old.pk).update(created_at=timezone.now() - dt.timedelta(days=3))
    mine = make_pair(2, created_by=user, prompt="Convert 68F to Celsius")
    theirs = make_pair(3, source="compare", created_by=other_member)
    with django_assert_num_queries(1):
        rows = api.get(URL).json()["results"]
    assert [r["id"] for r in rows] == [theirs.pk, mine.pk, old.pk]
    assert "chosen" not in rows[0] and rows[0]["created_by"] == other_member.username

    def ids(**params: Any) -> list[int]:
        response = api.get(URL, params)
        assert response.status_code == 200, response.content
        return [r["id"] for r in response.json()["results"]]

    assert ids(source="import") == [old.pk]
    assert ids(created_by=user.username) == [mine.pk]
    assert ids(q="celsius") == [mine.pk]
    assert ids(q="guess 7") == [theirs.pk]  # both words from the rejected text
    after = (timezone.now() - dt.timedelta(days=1)).isoformat()
    assert ids(created_after=after) == [theirs.pk, mine.pk]
    assert ids(created_before=after) == [old.pk]


def test_bad_list_filters_name_the_parameter(api):
    response = api.get(URL, {"source": "elsewhere", "created_after": "yesterday"})
    assert response.status_code == 400
    assert set(response.json()) == {"source", "created_after"}


def test_the_detail_shows_both_answers_and_the_datasets_holding_it(api):
    pair = make_pair(1)
    data = api.get(f"{URL}/{pair.pk}").json()
    assert data["chosen"] == pair.chosen and data["rejected"] == pair.rejected
    assert data["datasets"] == []
    assert api.get(f"{URL}/999999").status_code == 404


def hold(pair: PreferencePair, name: str = "prefs") -> Dataset:
    dataset = Dataset.objects.create(name=name, version=1)
    PreferenceMember.objects.create(dataset=dataset, pair=pair, position=0)
    return dataset


def test_a_pair_is_deleted_by_its_owner(api, user, other_api):
    pair = make_pair(1, created_by=user)
    assert other_api.delete(f"{URL}/{pair.pk}").status_code == 403
    assert api.delete(f"{URL}/{pair.pk}").status_code == 204
    assert not PreferencePair.objects.exists()


def test_a_pair_a_dataset_holds_cannot_be_deleted(api, user):
    pair = make_pair(1, created_by=user)
    hold(pair)
    response = api.delete(f"{URL}/{pair.pk}")
    assert response.status_code == 409
    assert response.json()["datasets"] == ["prefs@v1"]
    assert "prefs@v1" in response.json()["detail"]
    assert PreferencePair.objects.filter(pk=pair.pk).exists()
    assert api.get(f"{URL}/{pair.pk}").json()["datasets"] == ["prefs@v1"]


def test_the_capture_answer_writes_created_at_as_the_pair_reads_do(api):
    created = api.post(URL, pair_document(3), format="json").json()
    assert created["created_at"] == api.get(f"{URL}/{created['id']}").json()["created_at"]
    assert created["created_at"].endswith("Z")
