"""Retry: a finished run is retried at once; a run still active asks first, as it would make two at once."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from runs.choices import RunStatus
from runs.models import Run
from runs.tests.run_support import finished_run, make_run

pytestmark = pytest.mark.django_db


def _active(dataset: Any, user: Any) -> Run:
    run = make_run(dataset, created_by=user)
    Run.objects.filter(pk=run.pk).update(status=RunStatus.RUNNING)
    run.refresh_from_db()
    return run


def test_retrying_an_active_run_asks_first_and_queues_nothing(page, dataset, sent_tasks, user):
    run = _active(dataset, user)
    detail = page.get(f"/runs/{run.pk}/").content.decode()
    assert f'<a class="button" id="retry-button" href="/runs/{run.pk}/retry/">Retry…</a>' in detail

    for response in (page.get(f"/runs/{run.pk}/retry/"), page.post(f"/runs/{run.pk}/retry/")):
        assert response.status_code == 200
        html = response.content.decode()
        assert f"Run #{run.pk} is still running." in html
        assert 'name="confirm" value="yes"' in html
    assert Run.objects.count() == 1
    assert sent_tasks == []


def test_confirming_retries_the_active_run(dataset, sent_tasks, django_capture_on_commit_callbacks, user):
    run = _active(dataset, user)
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    form = client.get(f"/runs/{run.pk}/retry/")
    token = form.cookies["csrftoken"].value
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(f"/runs/{run.pk}/retry/", {"confirm": "yes", "csrfmiddlewaretoken": token})
    new = Run.objects.exclude(pk=run.pk).get()
    assert response.status_code == 302
    assert response["Location"] == f"/runs/{new.pk}/"
    assert new.retry_of_id == run.pk
    assert sent_tasks == [(new.pk,)]


def test_a_finished_run_is_retried_without_asking(page, dataset, sent_tasks, django_capture_on_commit_callbacks, user):
    run = finished_run(dataset, RunStatus.FAILED, files=False, created_by=user)
    detail = page.get(f"/runs/{run.pk}/").content.decode()
    assert f'action="/runs/{run.pk}/retry/"' in detail and "Retry…" not in detail
    with django_capture_on_commit_callbacks(execute=True):
        response = page.post(f"/runs/{run.pk}/retry/")
    new = Run.objects.exclude(pk=run.pk).get()
    assert response["Location"] == f"/runs/{new.pk}/"


def test_the_confirmation_needs_the_right_to_change_the_run(other_page, dataset, user):
    run = _active(dataset, user)
    assert other_page.get(f"/runs/{run.pk}/retry/").status_code == 403
    assert other_page.post(f"/runs/{run.pk}/retry/", {"confirm": "yes"}).status_code == 403
    assert Run.objects.count() == 1
