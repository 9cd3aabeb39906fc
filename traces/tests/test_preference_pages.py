"""Preference pages: the compare page's "A/B is better" buttons, the pairs list and detail, delete, admin."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from traces.formats import reasoning_text
from traces.models import Dataset, PreferenceMember, PreferencePair
from traces.tests.factories import make_pair, make_trace

pytestmark = pytest.mark.django_db

HTMX = {"HX-Request": "true"}
PROMPT = "What is 2 + 3?"


@pytest.fixture
def two_answers() -> tuple[Any, Any]:
    good = make_trace(prompt=PROMPT, steps=[{"i": 0, "type": "add", "content": "2 + 3 = 5"}], final_answer="5")
    bad = make_trace(prompt=PROMPT, steps=[{"i": 0, "type": "add", "content": "2 + 3 = 6"}], final_answer="6")
    return good, bad


def prefer(client: Client, a: Any, b: Any, better: str, note: str = "", **headers: Any) -> Any:
    body = {"base": a.pk, "other": b.pk, "better": better, "note": note}
    return client.post("/preferences/from-compare/", body, headers=headers)


def test_the_compare_page_offers_the_preference_buttons_for_one_prompt(page, two_answers):
    good, bad = two_answers
    html = page.get("/traces/compare/", {"base": good.pk, "other": bad.pk}).content.decode()
    assert "A is better" in html and "B is better" in html
    other = make_trace(prompt="Something else")
    html = page.get("/traces/compare/", {"base": good.pk, "other": other.pk}).content.decode()
    assert "A is better" not in html and "answer different prompts" in html


def test_a_viewer_sees_no_preference_buttons_and_cannot_post(viewer_page, two_answers):
    good, bad = two_answers
    html = viewer_page.get("/traces/compare/", {"base": good.pk, "other": bad.pk}).content.decode()
    assert "A is better" not in html
    assert prefer(viewer_page, good, bad, "base").status_code == 403
    assert not PreferencePair.objects.exists()


def test_a_is_better_records_the_traces_rendered_as_training_targets(page, user, two_answers):
    good, bad = two_answers
    response = prefer(page, good, bad, "base", note="right sum", **HTMX)
    assert response.status_code == 201
    pair = PreferencePair.objects.get()
    assert f"preference pair #{pair.pk}" in response.content.decode()
    assert "<html" not in response.content.decode()  # the partial, not the page
    assert pair.prompt == PROMPT
    assert pair.chosen == reasoning_text(good.steps, good.final_answer) == "Reasoning:\n1. 2 + 3 = 5\nAnswer: 5"
    assert pair.rejected == "Reasoning:\n1. 2 + 3 = 6\nAnswer: 6"
    assert (pair.source, pair.note, pair.created_by) == ("compare", "right sum", user)
    assert (pair.chosen_trace, pair.rejected_trace) == (good, bad)


def test_pressing_again_finds_the_pair_and_b_is_better_reverses_it(page, two_answers):
    good, bad = two_answers
    first = prefer(page, good, bad, "base", **HTMX)
    again = prefer(page, good, bad, "base", note="twice", **HTMX)
    assert (first.status_code, again.status_code) == (201, 200)
    assert "Already recorded" in again.content.decode()
    assert PreferencePair.objects.count() == 1
    reverse = prefer(page, good, bad, "other", **HTMX)
    assert reverse.status_code == 201
    flipped = PreferencePair.objects.get(source="compare", chosen_trace=bad)
    assert flipped.rejected_trace == good


def test_traces_of_different_prompts_make_no_pair(page, two_answers):
    good, _ = two_answers
    other = make_trace(prompt="What is 9 + 9?")
    response = prefer(page, good, other, "base", **HTMX)
    assert response.status_code == 400
    assert "different prompts" in response.content.decode()
    assert not PreferencePair.objects.exists()


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"base": 1, "other": 2, "better": "both"}, "both"),
        ({"base": "x", "other": 2, "better": "base"}, "Trace A"),
        ({"base": 999999, "other": 999998, "better": "base"}, "No trace with id 999999"),
    ],
)
def test_a_bad_preference_form_is_a_400_naming_the_field(page, body, message):
    response = page.post("/preferences/from-compare/", body, headers=HTMX)
    assert response.status_code == 400
    assert message in response.content.decode()
    assert not PreferencePair.objects.exists()


def test_without_htmx_the_preference_redirects_back_to_the_comparison(page, two_answers):
    good, bad = two_answers
    response = prefer(page, good, bad, "other")
    assert response.status_code == 302
    assert response["Location"] == f"/traces/compare/?base={good.pk}&other={bad.pk}"
    follow = page.get(response["Location"]).content.decode()
    assert "Recorded preference pair" in follow


def test_the_preference_post_needs_the_csrf_token(user, two_answers):
    good, bad = two_answers
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    assert prefer(client, good, bad, "base").status_code == 403
    page = client.get("/traces/compare/", {"base": good.pk, "other": bad.pk})
    token = page.cookies["csrftoken"].value if "csrftoken" in page.cookies else client.cookies["csrftoken"].value
    assert prefer(client, good, bad, "base", **{"X-CSRFToken": token, **HTMX}).status_code == 201


def test_the_pairs_list_renders_filters_and_pages(page, user):
    pairs = [make_pair(i, created_by=user if i % 2 else None) for i in range(5)]
    html = page.get("/preferences/").content.decode()
    assert 'href="/preferences/"' in html and "Pairs" in html  # the nav link
    assert all(f"/preferences/{p.pk}/" in html for p in pairs)
    only = page.get("/preferences/", {"q": "4 + 4"}).content.decode()
    assert f"/preferences/{pairs[4].pk}/" in only and f"/preferences/{pairs[3].pk}/" not in only
    mine = page.get("/preferences/", {"created_by": user.username}, headers=HTMX)
    assert "<html" not in mine.content.decode() and mine["Vary"].count("HX-Request")
    assert f"/preferences/{pairs[1].pk}/" in mine.content.decode()
    assert f"/preferences/{pairs[2].pk}/" not in mine.content.decode()
    first = page.get("/preferences/", {"limit": 2}).content.decode()
    assert "Load more" in first and f"/preferences/{pairs[2].pk}/" not in first
    bad = page.get("/preferences/", {"source": "nowhere"})
    assert bad.status_code == 200 and "source" in bad.content.decode()


def test_the_detail_shows_the_pair_and_links_to_its_traces(page, two_answers):
    good, bad = two_answers
    prefer(page, good, bad, "base", note="correct sum", **HTMX)
    pair = PreferencePair.objects.get()
    html = page.get(f"/preferences/{pair.pk}/").content.decode()
    assert f'href="/traces/{good.pk}/" id="chosen-trace"' in html
    assert f'href="/traces/{bad.pk}/" id="rejected-trace"' in html
    assert "correct sum" in html and "2 + 3 = 6" in html
    assert page.get("/preferences/999999/").status_code == 404


def test_deleting_a_pair_from_its_page(page, user):
    pair = make_pair(1, created_by=user)
    assert "Delete pair" in page.get(f"/preferences/{pair.pk}/delete/").content.decode()
    response = page.post(f"/preferences/{pair.pk}/delete/")
    assert response.status_code == 302
    assert not PreferencePair.objects.exists()


def test_a_pair_in_a_dataset_is_not_deleted_from_its_page(page, user):
    pair = make_pair(1, created_by=user)
    dataset = Dataset.objects.create(name="prefs", version=2)
    PreferenceMember.objects.create(dataset=dataset, pair=pair, position=0)
    response = page.post(f"/preferences/{pair.pk}/delete/")
    assert response.status_code == 409
    assert "prefs@v2" in response.content.decode()
    assert PreferencePair.objects.filter(pk=pair.pk).exists()
    assert "prefs@v2" in page.get(f"/preferences/{pair.pk}/").content.decode()


def test_someone_elses_pair_is_not_theirs_to_delete(other_page, user):
    pair = make_pair(1, created_by=user)
    assert other_page.post(f"/preferences/{pair.pk}/delete/").status_code == 403


def test_the_admin_lists_and_shows_pairs(client, django_user_model):
    client.force_login(django_user_model.objects.create_superuser("root", "root@example.com", "pw"))
    pair = make_pair(1)
    listing = client.get("/admin/traces/preferencepair/")
    assert listing.status_code == 200 and f"/admin/traces/preferencepair/{pair.pk}/change/" in listing.content.decode()
    assert client.get("/admin/traces/preferencepair/", {"q": str(pair.pk)}).status_code == 200
    assert client.get(f"/admin/traces/preferencepair/{pair.pk}/change/").status_code == 200
    assert client.get("/admin/traces/preferencemember/").status_code == 200


def test_the_list_links_to_a_preference_build_with_its_filters(page, user):
    make_pair(1, source="compare", created_by=user)
    html = page.get("/preferences/", {"source": "compare"}, headers=HTMX).content.decode()
    assert 'href="/datasets/new/?kind=preference&amp;source=compare"' in html
    build = page.get("/datasets/new/", {"kind": "preference", "source": "compare"}).content.decode()
    assert '<option value="preference" selected>' in build
    assert "1</strong> preference pair match" in build
