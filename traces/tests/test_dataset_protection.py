"""Datasets are immutable: their traces cannot be deleted (API, page, admin, ORM) and the admin cannot edit them."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.admin.sites import site
from django.db.models import ProtectedError
from django.test import RequestFactory

from traces.models import Dataset, DatasetMember, Trace, TraceInUse
from traces.tests.datasets_support import build, make_trace, member_ids

# The traces here belong to nobody (as after an operator's import): only maintainers may delete them.
pytestmark = pytest.mark.django_db

@pytest.fixture
def held() -> Trace:
    """A trace that belongs to beta@v1 and alpha@v2 (not alpha@v1)."""
    trace = make_trace(meta={"source": "held"})
    make_trace(meta={"source": "other"})
    build("alpha", source="other")
    build("alpha", source="held")
    build("beta", trace_ids=[trace.pk])
    return trace


def test_api_delete_of_a_trace_in_datasets_is_409_listing_their_keys(maintainer_api, held):
    response = maintainer_api.delete(f"/api/traces/{held.pk}")
    assert response.status_code == 409
    body = response.json()
    assert body["datasets"] == ["alpha@v2", "beta@v1"]
    assert "alpha@v2, beta@v1" in body["detail"]
    assert "cannot be deleted" in body["detail"]
    assert Trace.objects.filter(pk=held.pk).exists()


def test_api_delete_of_a_trace_in_no_dataset_still_works(maintainer_api, held):
    free = make_trace()
    assert maintainer_api.delete(f"/api/traces/{free.pk}").status_code == 204
    assert not Trace.objects.filter(pk=free.pk).exists()


def test_page_delete_of_a_trace_in_datasets_is_409_with_the_message_and_keys(maintainer_page, held):
    url = f"/traces/{held.pk}/delete/"
    shown = maintainer_page.get(url)
    assert shown.status_code == 200
    assert "cannot be deleted" in shown.content.decode()
    response = maintainer_page.post(url)
    assert response.status_code == 409
    html = response.content.decode()
    assert "cannot be deleted" in html
    assert 'href="/datasets/alpha@v2/"' in html
    assert 'href="/datasets/beta@v1/"' in html
    assert "alpha@v1" not in html
    assert Trace.objects.filter(pk=held.pk).exists()


def test_the_model_refuses_to_delete_a_trace_in_a_dataset(held):
    with pytest.raises(TraceInUse) as info:
        held.delete()
    assert info.value.keys == ["alpha@v2", "beta@v1"]
    # Bulk deletes bypass Trace.delete(); the PROTECT foreign key still refuses them.
    with pytest.raises(ProtectedError):
        Trace.objects.filter(pk=held.pk).delete()
    assert Trace.objects.filter(pk=held.pk).exists()


def test_admin_refuses_to_delete_a_trace_in_a_dataset(admin_client, held):
    url = f"/admin/traces/trace/{held.pk}/delete/"
    response = admin_client.post(url, {"post": "yes"})
    assert response.status_code == 200
    assert response.context["protected"]
    assert Trace.objects.filter(pk=held.pk).exists()
    bulk = admin_client.post(
        "/admin/traces/trace/", {"action": "delete_selected", "_selected_action": [held.pk], "post": "yes"}
    )
    assert bulk.status_code == 200
    assert bulk.context["protected"]
    assert Trace.objects.filter(pk=held.pk).exists()


def test_after_its_datasets_are_deleted_the_trace_can_be_deleted(maintainer_api, maintainer_page, held):
    assert maintainer_api.delete("/api/datasets/alpha@v2").status_code == 204
    still = maintainer_api.delete(f"/api/traces/{held.pk}")
    assert still.status_code == 409
    assert still.json()["datasets"] == ["beta@v1"]
    response = maintainer_page.post("/datasets/beta@v1/delete/")
    assert response.status_code == 302
    assert response["Location"] == "/datasets/"
    assert maintainer_api.delete(f"/api/traces/{held.pk}").status_code == 204
    assert not Trace.objects.filter(pk=held.pk).exists()
    assert [d.key for d in Dataset.objects.all()] == ["alpha@v1"]


def admin_request(user: Any) -> Any:
    request = RequestFactory().get("/admin/")
    request.user = user
    return request


def test_admin_cannot_add_or_change_datasets_or_members(admin_user, held):
    request = admin_request(admin_user)
    dataset = Dataset.objects.by_key("beta@v1")
    member = DatasetMember.objects.get(dataset=dataset)
    dataset_admin = site._registry[Dataset]
    member_admin = site._registry[DatasetMember]
    assert dataset_admin.has_change_permission(request, dataset) is False
    assert dataset_admin.has_add_permission(request) is False
    assert member_admin.has_change_permission(request, member) is False
    assert member_admin.has_add_permission(request) is False
    assert member_admin.has_delete_permission(request, member) is False


def test_admin_change_form_post_is_refused_and_changes_nothing(admin_client, held):
    dataset = Dataset.objects.by_key("beta@v1")
    url = f"/admin/traces/dataset/{dataset.pk}/change/"
    view = admin_client.get(url)
    assert view.status_code == 200  # viewable, read-only
    response = admin_client.post(url, {"name": "renamed", "version": 9, "description": "edited"})
    assert response.status_code == 403
    dataset.refresh_from_db()
    assert (dataset.name, dataset.version, dataset.description) == ("beta", 1, "")
    assert member_ids(dataset) == [held.pk]
    member = DatasetMember.objects.get(dataset=dataset)
    assert admin_client.post(f"/admin/traces/datasetmember/{member.pk}/delete/", {"post": "yes"}).status_code == 403
    assert DatasetMember.objects.filter(pk=member.pk).exists()


def test_admin_lists_datasets_and_members(admin_client, held):
    assert admin_client.get("/admin/traces/dataset/").status_code == 200
    response = admin_client.get("/admin/traces/datasetmember/")
    assert response.status_code == 200
    assert f"#{held.pk}" in response.content.decode()
