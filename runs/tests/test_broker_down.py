"""Broker down at launch: an answer at once (503, form error, command error); the run is failed, not pending."""

from __future__ import annotations

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from runs.choices import RunStatus
from runs.models import Run
from runs.tests.run_support import finished_run

# on_commit must really fire inside the request, so these tests commit.
pytestmark = pytest.mark.django_db(transaction=True)


def assert_failed_with_reason(run: Run) -> None:
    assert run.status == RunStatus.FAILED
    assert run.error.startswith("Could not queue the run: the job broker is unreachable")
    assert run.finished_at is not None
    assert run.celery_task_id == ""


def test_the_api_answers_503_and_marks_the_run_failed(api, dataset, broker_down):
    response = api.post("/api/runs", {"dataset": dataset.key, "max_steps": 10}, format="json")
    assert response.status_code == 503
    assert "job broker is unreachable" in response.json()["detail"]
    assert_failed_with_reason(Run.objects.get())


def test_the_launch_page_shows_the_reason_as_a_form_error(page, dataset, broker_down):
    form = {"dataset": dataset.key, "base_model": "tiny", "method": "full", "chat_template": "gemma"}
    response = page.post("/runs/new/", form)
    assert response.status_code == 400
    assert "job broker is unreachable" in response.content.decode()
    assert_failed_with_reason(Run.objects.get())


def test_the_command_fails_with_the_reason(dataset, broker_down):
    with pytest.raises(CommandError, match="job broker is unreachable"):
        call_command("launch_run", "--dataset", dataset.key)
    assert_failed_with_reason(Run.objects.get())


def test_retry_answers_503_too(api, user, dataset, broker_down):
    old = finished_run(dataset, RunStatus.FAILED, files=False, created_by=user)
    response = api.post(f"/api/runs/{old.pk}/retry")
    assert response.status_code == 503
    assert_failed_with_reason(Run.objects.exclude(pk=old.pk).get())


def test_the_broker_is_back_after_the_test(api, dataset, empty_queue):
    # The fixture restored the configuration: a launch is queued again.
    response = api.post("/api/runs", {"dataset": dataset.key, "max_steps": 10}, format="json")
    assert response.status_code == 201, response.content
    run = Run.objects.get()
    assert run.status == RunStatus.PENDING
    assert run.celery_task_id
