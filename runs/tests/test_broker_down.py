"""Broker down at launch: the job is kept pending (nothing lost, the caller told) and the reaper queues it later."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone

from runs.choices import RunStatus
from runs.models import Run
from runs.tests.run_support import finished_run
from tunixrt import jobs
from tunixrt.tests.task_support import intercept_task

# on_commit must really fire inside the request, so these tests commit.
pytestmark = pytest.mark.django_db(transaction=True)
NOTICE = "is saved, but the job broker is unreachable: it will be queued automatically"


def assert_waiting_for_the_broker(run: Run) -> None:
    assert run.status == RunStatus.PENDING
    assert run.awaiting_broker
    assert run.queued_at is None
    assert run.celery_task_id == ""
    assert run.finished_at is None


def test_the_api_keeps_the_run_pending_and_says_so(api, dataset, broker_down):
    response = api.post("/api/runs", {"dataset": dataset.key, "max_steps": 10}, format="json")
    assert response.status_code == 201
    assert response.json()["awaiting_broker"] is True
    assert response.json()["status"] == "pending"
    assert_waiting_for_the_broker(Run.objects.get())


def test_the_launch_page_says_the_run_waits_for_the_broker(page, dataset, broker_down):
    form = {"dataset": dataset.key, "base_model": "tiny", "method": "full", "chat_template": "gemma"}
    response = page.post("/runs/new/", form, follow=True)
    assert response.status_code == 200
    run = Run.objects.get()
    assert f"Run {run.pk} {NOTICE}" in response.content.decode()
    assert_waiting_for_the_broker(run)


def test_the_command_says_the_run_waits_for_the_broker(dataset, broker_down, capsys):
    call_command("launch_run", "--dataset", dataset.key)
    run = Run.objects.get()
    assert f"Run {run.pk} {NOTICE}" in capsys.readouterr().err
    assert_waiting_for_the_broker(run)


def test_retry_keeps_the_new_run_pending_too(api, user, dataset, broker_down):
    old = finished_run(dataset, RunStatus.FAILED, files=False, created_by=user)
    response = api.post(f"/api/runs/{old.pk}/retry")
    assert response.status_code == 201
    assert_waiting_for_the_broker(Run.objects.exclude(pk=old.pk).get())


def test_the_reaper_queues_a_waiting_run_once_the_broker_is_back(api, dataset, monkeypatch, broker_down):
    api.post("/api/runs", {"dataset": dataset.key, "max_steps": 10}, format="json")
    run = Run.objects.get()
    # Younger than the publish grace: it may be between its commit and its publish, left alone.
    assert jobs.reap_kind(Run)["published"] == 0
    Run.objects.filter(pk=run.pk).update(created_at=timezone.now() - timedelta(minutes=1))
    # Still down: nothing sent, still waiting.
    assert jobs.reap_kind(Run)["published"] == 0
    run.refresh_from_db()
    assert_waiting_for_the_broker(run)

    sent: list[tuple[int, ...]] = []

    def record(args: tuple[int, ...]) -> str:
        sent.append(args)
        return "task-after-outage"

    intercept_task(monkeypatch, "runs.execute_run", record)
    assert jobs.reap_kind(Run)["published"] == 1
    assert sent == [(run.pk,)]
    run.refresh_from_db()
    assert run.status == RunStatus.PENDING and not run.awaiting_broker
    assert run.celery_task_id == "task-after-outage"
    # Sent once: the next reap leaves it to the queue.
    assert jobs.reap_kind(Run)["published"] == 0


def test_a_pending_run_whose_message_was_lost_is_sent_again(dataset, settings, monkeypatch):
    settings.JOB_REQUEUE_SECONDS = 60
    run = Run.objects.create(dataset=dataset, base_model="tiny", queued_at=timezone.now() - timedelta(minutes=5))
    sent: list[tuple[int, ...]] = []
    intercept_task(monkeypatch, "runs.execute_run", sent.append)
    assert jobs.reap_kind(Run)["published"] == 1
    assert sent == [(run.pk,)]


def test_the_broker_is_back_after_the_test(api, dataset, empty_queue):
    # The fixture restored the configuration: a launch is queued again.
    response = api.post("/api/runs", {"dataset": dataset.key, "max_steps": 10}, format="json")
    assert response.status_code == 201, response.content
    run = Run.objects.get()
    assert run.status == RunStatus.PENDING
    assert run.celery_task_id
    assert run.queued_at is not None
    assert response.json()["awaiting_broker"] is False
