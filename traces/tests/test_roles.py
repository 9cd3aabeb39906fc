"""Roles for traces and datasets: who may capture, build, score and delete, through the API, pages and commands."""

from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command

from traces.models import Dataset, Trace
from traces.tests.datasets_support import build, make_trace
from traces.tests.factories import trace_document
from tunixrt.tests.role_support import (
    ROLES,
    CsrfClient,
    actor,
    change_allowed,
    html,
    owner_of,
    token_client,
)

pytestmark = pytest.mark.django_db

WHOSE = ("own", "other", "nobody")


def _trace(owner):
    return make_trace(created_by=owner)


def _dataset(owner):
    make_trace()
    return build("owned", owner)


@pytest.mark.parametrize("whose", WHOSE)
@pytest.mark.parametrize("role", ROLES)
def test_deleting_a_trace_through_the_api(request, role, whose):
    user = actor(request, role)
    trace = _trace(owner_of(request, user, whose))
    response = token_client(user).delete(f"/api/traces/{trace.pk}")
    if change_allowed(role, whose):
        assert response.status_code == 204
        assert not Trace.objects.filter(pk=trace.pk).exists()
    else:
        assert response.status_code == 403
        assert "maintainer" in response.json()["detail"]
        assert Trace.objects.filter(pk=trace.pk).exists()


@pytest.mark.parametrize("whose", WHOSE)
@pytest.mark.parametrize("role", ROLES)
def test_deleting_a_trace_through_the_page(request, role, whose):
    user = actor(request, role)
    trace = _trace(owner_of(request, user, whose))
    browser = CsrfClient(user)
    confirm = browser.get(f"/traces/{trace.pk}/delete/")
    response = browser.submit(f"/traces/{trace.pk}/delete/")
    if change_allowed(role, whose):
        assert confirm.status_code == 200
        assert response.status_code == 302
        assert not Trace.objects.filter(pk=trace.pk).exists()
    else:
        assert confirm.status_code == response.status_code == 403
        assert "maintainer" in html(response)
        assert Trace.objects.filter(pk=trace.pk).exists()


@pytest.mark.parametrize("whose", WHOSE)
@pytest.mark.parametrize("role", ROLES)
def test_deleting_a_dataset_through_the_api(request, role, whose):
    user = actor(request, role)
    dataset = _dataset(owner_of(request, user, whose))
    response = token_client(user).delete(f"/api/datasets/{dataset.key}")
    assert response.status_code == (204 if change_allowed(role, whose) else 403)
    assert Dataset.objects.filter(pk=dataset.pk).exists() is not change_allowed(role, whose)


@pytest.mark.parametrize("whose", WHOSE)
@pytest.mark.parametrize("role", ROLES)
def test_deleting_a_dataset_through_the_page(request, role, whose):
    user = actor(request, role)
    dataset = _dataset(owner_of(request, user, whose))
    response = CsrfClient(user).submit(f"/datasets/{dataset.key}/delete/")
    assert response.status_code == (302 if change_allowed(role, whose) else 403)
    assert Dataset.objects.filter(pk=dataset.pk).exists() is not change_allowed(role, whose)


@pytest.mark.parametrize("role", ROLES)
def test_capturing_traces_through_the_api_needs_a_member(request, role):
    user = actor(request, role)
    client = token_client(user)
    one = client.post("/api/traces", trace_document(1), format="json")
    batch = client.post("/api/traces/batch", [trace_document(2), trace_document(3)], format="json")
    if role == "viewer":
        assert one.status_code == batch.status_code == 403
        assert not Trace.objects.exists()
    else:
        assert one.status_code == batch.status_code == 201
        assert set(Trace.objects.values_list("created_by", flat=True)) == {user.pk}


@pytest.mark.parametrize("role", ROLES)
def test_building_a_dataset_through_the_api_needs_a_member(request, role):
    user = actor(request, role)
    make_trace()
    response = token_client(user).post("/api/datasets", {"name": "fresh"}, format="json")
    if role == "viewer":
        assert response.status_code == 403
        assert not Dataset.objects.exists()
    else:
        assert response.status_code == 201
        assert Dataset.objects.get().created_by == user


@pytest.mark.parametrize("role", ROLES)
def test_scoring_a_trace_needs_a_member(request, role):
    user = actor(request, role)
    trace = make_trace()
    api = token_client(user).post(f"/api/traces/{trace.pk}/score", {}, format="json")
    page = CsrfClient(user).submit(f"/traces/{trace.pk}/score/")
    assert (api.status_code, page.status_code) == ((403, 403) if role == "viewer" else (200, 302))


def test_a_viewer_reads_lists_compares_and_exports(viewer):
    first, second = make_trace(), make_trace()
    dataset = build("readable")
    api = token_client(viewer)
    assert api.get("/api/traces").status_code == 200
    assert api.get(f"/api/traces/{first.pk}").status_code == 200
    assert api.get("/api/traces/compare", {"base": first.pk, "other": second.pk}).status_code == 200
    assert api.get(f"/api/datasets/{dataset.key}").status_code == 200
    assert api.get(f"/api/datasets/{dataset.key}/export").status_code == 200
    browser = CsrfClient(viewer)
    for url in ("/traces/", f"/traces/{first.pk}/", "/datasets/", f"/datasets/{dataset.key}/"):
        assert browser.get(url).status_code == 200, url
    assert browser.get(f"/datasets/{dataset.key}/export/").status_code == 200


def test_a_viewer_cannot_open_or_post_the_upload_and_build_pages(viewer):
    browser = CsrfClient(viewer)
    assert browser.get("/traces/upload/").status_code == 403
    assert browser.submit("/traces/upload/", {"payload": json.dumps(trace_document(1))}).status_code == 403
    upload = SimpleUploadedFile("t.jsonl", json.dumps(trace_document(2)).encode())
    assert browser.submit("/traces/upload/file/", {"file": upload}).status_code == 403
    assert browser.get("/datasets/new/").status_code == 403
    make_trace()
    assert browser.submit("/datasets/new/", {"name": "nope"}).status_code == 403
    assert not Trace.objects.exclude(created_by=None).exists()
    assert not Dataset.objects.exists()


def test_traces_uploaded_on_the_page_belong_to_the_uploader(user):
    browser = CsrfClient(user)
    assert browser.submit("/traces/upload/", {"payload": json.dumps(trace_document(1))}).status_code == 200
    upload = SimpleUploadedFile("t.jsonl", json.dumps(trace_document(2)).encode())
    assert browser.submit("/traces/upload/file/", {"file": upload}).status_code == 200
    assert list(Trace.objects.values_list("created_by", flat=True)) == [user.pk, user.pk]


def test_the_viewer_sees_no_upload_build_score_or_delete_controls(viewer):
    trace = make_trace(created_by=viewer)  # even their own, from before they became a viewer
    dataset = build("shown", viewer)
    browser = CsrfClient(viewer)
    pages = {
        "dashboard": html(browser.get("/")),
        "list": html(browser.get("/traces/")),
        "detail": html(browser.get(f"/traces/{trace.pk}/")),
        "datasets": html(browser.get("/datasets/")),
        "dataset": html(browser.get(f"/datasets/{dataset.key}/")),
    }
    for name, text in pages.items():
        assert 'href="/traces/upload/"' not in text, name
        assert 'href="/datasets/new/' not in text, name
        assert 'href="/runs/new/' not in text, name
        assert "/delete/" not in text, name
    assert "Score (baseline)" not in pages["detail"]
    assert 'href="/traces/"' in pages["dashboard"]  # the rest of the navigation stays


def test_a_member_sees_delete_only_on_their_own_trace_and_dataset(user, other_member):
    mine, theirs = make_trace(created_by=user), make_trace(created_by=other_member)
    my_set, their_set = build("mine", user), build("theirs", other_member)
    browser = CsrfClient(user)
    assert f'href="/traces/{mine.pk}/delete/"' in html(browser.get(f"/traces/{mine.pk}/"))
    assert "/delete/" not in html(browser.get(f"/traces/{theirs.pk}/"))
    assert f'href="/datasets/{my_set.key}/delete/"' in html(browser.get(f"/datasets/{my_set.key}/"))
    their_page = html(browser.get(f"/datasets/{their_set.key}/"))
    assert "/delete/" not in their_page
    assert "Build next version" in their_page  # building is for every member
    assert 'href="/traces/upload/"' in html(browser.get("/traces/"))


def test_a_maintainer_sees_delete_on_everyones_trace(maintainer, other_member):
    theirs, nobodys = make_trace(created_by=other_member), make_trace()
    browser = CsrfClient(maintainer)
    for trace in (theirs, nobodys):
        assert f'href="/traces/{trace.pk}/delete/"' in html(browser.get(f"/traces/{trace.pk}/"))


def _import(tmp_path, *options: str) -> str:
    path = tmp_path / "traces.jsonl"
    path.write_text("\n".join(json.dumps(trace_document(n)) for n in range(3)) + "\n")
    out = StringIO()
    call_command("import_traces", str(path), "--quiet-progress", *options, stdout=out, stderr=StringIO())
    return out.getvalue()


def test_import_traces_for_a_user_makes_them_the_owner(user, tmp_path):
    _import(tmp_path, "--user", "alice")
    assert list(Trace.objects.values_list("created_by", flat=True)) == [user.pk] * 3


def test_import_traces_without_a_user_stores_traces_nobody_owns(user, tmp_path):
    _import(tmp_path)
    assert list(Trace.objects.values_list("created_by", flat=True)) == [None] * 3


@pytest.mark.parametrize(
    ("username", "message"),
    [("victor", "needs the member role; you are a viewer"), ("nobody", "No user 'nobody'.")],
)
def test_import_traces_refuses_a_viewer_or_an_unknown_user(viewer, tmp_path, username, message):
    with pytest.raises(CommandError, match=message):
        _import(tmp_path, "--user", username)
    assert not Trace.objects.exists()


def test_build_dataset_for_a_user_checks_the_role_and_sets_the_owner(user, viewer):
    make_trace()
    with pytest.raises(CommandError, match="you are a viewer"):
        call_command("build_dataset", "refused", "--user", "victor", stdout=StringIO())
    call_command("build_dataset", "kept", "--user", "alice", stdout=StringIO())
    assert [(d.name, d.created_by) for d in Dataset.objects.all()] == [("kept", user)]
