"""Through a real Celery worker: launched from the API, queued after commit, trained, cancelled."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from celery.contrib.testing.worker import start_worker
from django.db import connection

from runs.choices import RunStatus
from runs.models import RunMetric
from runs.tests.run_support import FAST, LONG, log_text, output, wait_for
from tunixrt.celery import app as celery_app

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        connection.vendor == "sqlite",
        reason=(
            "real training through an in-process worker (a run and a cancelled run); it runs once, "
            "on the PostgreSQL + Redis pass"
        ),
    ),
]


@pytest.fixture
def worker(settings: Any, empty_queue: None) -> Iterator[None]:
    """A Celery worker in a thread of this process, consuming from the configured broker."""
    settings.RUN_HEARTBEAT_SECONDS = 1
    with start_worker(celery_app, perform_ping_check=False, pool="solo", shutdown_timeout=60):
        yield


def test_a_run_launched_through_the_api_is_trained_by_a_real_worker(api, dataset, worker):
    response = api.post("/api/runs", {"dataset": dataset.key, **FAST}, format="json")
    assert response.status_code == 201, response.content
    # Queued after commit: a quick worker may have claimed it before the response is written.
    assert response.json()["status"] in (RunStatus.PENDING, RunStatus.RUNNING)
    run_id = response.json()["id"]

    run = wait_for(run_id, lambda r: r.is_terminal, 180, "the run finishing")

    assert run.status == RunStatus.COMPLETED, (run.error, log_text(run)[-3000:])
    assert run.celery_task_id  # the task that ran it
    assert run.worker_host
    losses = run.metric_series("train_loss")
    assert len(losses) == FAST["max_steps"]
    assert losses[-1][1] < losses[0][1]
    for name in ("eval_loss", "grad_norm", "learning_rate", "tokens_per_s"):
        assert RunMetric.objects.filter(run=run, name=name).exists(), name
    assert (output(run) / "final" / "model.safetensors").is_file()
    assert (output(run) / "checkpoints" / str(FAST["max_steps"])).is_dir()
    detail = api.get(f"/api/runs/{run_id}").json()
    assert detail["summary"]["steps_done"] == FAST["max_steps"]
    lines = api.get(f"/api/runs/{run_id}/logs").json()["lines"]
    assert [line["seq"] for line in lines] == list(range(len(lines)))


def test_cancel_through_the_api_stops_a_run_on_a_real_worker_within_seconds(api, dataset, worker):
    body = {"dataset": dataset.key, **LONG, "checkpoint_every_steps": 5}
    run_id = api.post("/api/runs", body, format="json").json()["id"]
    wait_for(run_id, lambda r: "step 6: loss" in log_text(r), 120, "six training steps")

    requested = time.monotonic()
    response = api.post(f"/api/runs/{run_id}/cancel")
    assert response.status_code == 200
    assert response.json()["status"] == RunStatus.CANCEL_REQUESTED
    run = wait_for(run_id, lambda r: r.status == RunStatus.CANCELLED, 5.0, "cancelling within 5 s")
    assert time.monotonic() - requested < 5.0

    assert run.error == "Cancelled by request."
    # The child stopped at its next step and kept a checkpoint of it.
    steps_done = wait_for(run_id, lambda r: "steps_done" in r.summary, 5, "the summary").summary["steps_done"]
    saved = sorted(int(p.name) for p in (output(run) / "checkpoints").iterdir() if p.name.isdigit())
    assert saved[-1] == steps_done < LONG["max_steps"]
    assert api.post(f"/api/runs/{run_id}/cancel").status_code == 409
