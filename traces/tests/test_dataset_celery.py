"""Large builds go to a Celery worker: 202 pending, a real worker builds them, guarded claims, broker down."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from celery.contrib.testing.worker import start_worker
from django.utils import timezone

from traces.choices import DatasetStatus, Split
from traces.datasets.building import run_queued_build, validate_build_spec
from traces.models import Dataset, DatasetMember
from traces.tasks import build_dataset_task
from traces.tests.datasets_support import make_trace, md5_order, member_ids, wait_until_done
from tunixrt import jobs
from tunixrt.celery import app as celery_app
from tunixrt.tests.task_support import intercept_task


def reset_broker_connections() -> None:
    """Forget the app's broker connection pools so the next publish connects to the current URL.

    The pools themselves stay open: kombu keeps them in a process-wide registry
    keyed by URL, and the app finds the same one again once the URL is restored.
    """
    celery_app._pool = None  # type: ignore[attr-defined]
    celery_app.amqp._producer_pool = None  # type: ignore[attr-defined]


@pytest.fixture
def empty_queue() -> Iterator[None]:
    """No message from an earlier test is waiting, and none this test leaves behind survives it."""
    celery_app.control.purge()
    yield
    celery_app.control.purge()


@pytest.fixture
def broker_down(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The broker URL points at a closed port for the length of the test."""
    conf = celery_app.conf
    saved = {key: conf.get(key) for key in ("broker_url", "broker_transport_options")}
    reset_broker_connections()
    # Celery reads CELERY_BROKER_URL from the environment before its own configuration.
    monkeypatch.setenv("CELERY_BROKER_URL", "redis://127.0.0.1:1/0")
    conf.update(
        broker_url="redis://127.0.0.1:1/0",
        broker_transport_options={"socket_connect_timeout": 1, "socket_timeout": 1},
    )
    try:
        yield
    finally:
        reset_broker_connections()
        conf.update(saved)


def pending_row(name: str = "queued", **spec: Any) -> Dataset:
    """A dataset row exactly as build_dataset leaves it before queueing: pending, with its spec."""
    built = validate_build_spec({"name": name, **spec})
    return Dataset.objects.create(
        name=name, version=1, description=built.description, spec=built.as_json(), status=DatasetStatus.PENDING
    )



@pytest.mark.django_db(transaction=True)
def test_a_real_worker_builds_a_queued_dataset(api, page, settings, empty_queue):
    settings.DATASET_INLINE_MAX = 5
    ids = [make_trace(steps=2).pk for _ in range(8)]
    body = {"name": "big", "strategy": "random", "seed": 3, "validation_fraction": 0.25, "validation_seed": 2}
    # The worker runs in a thread of this process with its own database connection,
    # consuming from the configured broker (Redis, or the filesystem transport).
    with start_worker(celery_app, perform_ping_check=False, pool="solo", shutdown_timeout=30):
        response = api.post("/api/datasets", body, format="json")
        assert response.status_code == 202, response.content
        # Queued on commit: a fast worker may already have claimed it when the response is built.
        assert response.json()["status"] in ("pending", "building", "ready")
        assert response.json()["key"] == "big@v1"
        dataset = wait_until_done("big@v1")
    assert dataset.status == DatasetStatus.READY, dataset.error
    assert dataset.error == ""
    assert dataset.built_at is not None
    assert member_ids(dataset) == md5_order(3, ids)
    assert len(member_ids(dataset, Split.VALIDATION)) == 2
    assert dataset.stats["count"] == 8
    assert dataset.stats["steps_min"] == dataset.stats["steps_max"] == 2
    fragment = page.get("/datasets/big@v1/", {"fragment": "status"}, HTTP_HX_REQUEST="true")
    assert fragment.status_code == 286


@pytest.mark.django_db
def test_a_build_over_the_inline_limit_answers_202_pending_and_the_task_builds_it(api, settings, empty_queue):
    settings.DATASET_INLINE_MAX = 3
    ids = [make_trace().pk for _ in range(4)]
    response = api.post("/api/datasets", {"name": "big", "strategy": "all"}, format="json")
    assert response.status_code == 202
    assert response.json()["status"] == "pending"
    dataset = Dataset.objects.by_key("big@v1")
    assert dataset.status == DatasetStatus.PENDING
    assert not DatasetMember.objects.filter(dataset=dataset).exists()
    # The task body, as the worker runs it.
    assert build_dataset_task(dataset.pk) == "ready"
    dataset.refresh_from_db()
    assert dataset.status == DatasetStatus.READY
    assert member_ids(dataset) == ids


@pytest.mark.django_db
def test_a_build_at_the_inline_limit_is_built_at_once(api, settings):
    settings.DATASET_INLINE_MAX = 4
    for _ in range(4):
        make_trace()
    response = api.post("/api/datasets", {"name": "small"}, format="json")
    assert response.status_code == 201
    assert response.json()["status"] == "ready"


@pytest.mark.django_db(transaction=True)
def test_the_build_page_sends_large_builds_to_a_worker(page, settings, empty_queue):
    settings.DATASET_INLINE_MAX = 1
    make_trace()
    make_trace()
    response = page.post("/datasets/new/", {"name": "big", "strategy": "latest"})
    assert response.status_code == 302
    detail = page.get(response["Location"])
    html = detail.content.decode()
    assert "big@v1 is being built by a worker." in html
    assert 'hx-trigger="every 2s"' in html
    assert Dataset.objects.by_key("big@v1").status == DatasetStatus.PENDING


@pytest.mark.django_db
def test_run_queued_build_claims_a_pending_row_once(settings):
    ids = [make_trace().pk for _ in range(5)]
    dataset = pending_row(strategy="random", seed=11, validation_fraction=0.2)
    assert run_queued_build(dataset.pk) == "ready"
    dataset.refresh_from_db()
    assert dataset.status == DatasetStatus.READY
    assert dataset.built_at is not None
    assert dataset.stats["count"] == 5
    members = member_ids(dataset)
    assert members == md5_order(11, ids)
    # A redelivered message (acks_late) must not build it again.
    assert run_queued_build(dataset.pk) == "not pending"
    assert member_ids(dataset) == members
    assert DatasetMember.objects.filter(dataset=dataset).count() == 5


@pytest.mark.django_db
@pytest.mark.parametrize("status", [DatasetStatus.BUILDING, DatasetStatus.READY, DatasetStatus.FAILED])
def test_run_queued_build_leaves_rows_that_are_not_pending_alone(status):
    make_trace()
    dataset = pending_row()
    Dataset.objects.filter(pk=dataset.pk).update(status=status)
    assert run_queued_build(dataset.pk) == "not pending"
    dataset.refresh_from_db()
    assert dataset.status == status
    assert dataset.stats == {}
    assert not DatasetMember.objects.filter(dataset=dataset).exists()


@pytest.mark.django_db
def test_run_queued_build_of_a_deleted_dataset_is_a_no_op():
    assert run_queued_build(987654) == "not pending"


@pytest.mark.django_db
def test_a_failed_queued_build_is_marked_failed_with_the_error():
    make_trace(meta={"source": "gsm"})
    # The traces it matched when queued are gone (or never matched): nothing to build.
    dataset = pending_row(source="elsewhere")
    assert run_queued_build(dataset.pk) == "failed"
    dataset.refresh_from_db()
    assert dataset.status == DatasetStatus.FAILED
    assert "No traces match." in dataset.error
    assert not DatasetMember.objects.filter(dataset=dataset).exists()


@pytest.mark.django_db
def test_a_queued_build_with_an_unreadable_spec_is_marked_failed_not_left_building():
    make_trace()
    dataset = pending_row()
    Dataset.objects.filter(pk=dataset.pk).update(spec={**dataset.spec, "unknown_option": 1})
    assert run_queued_build(dataset.pk) == "failed"
    dataset.refresh_from_db()
    assert dataset.status == DatasetStatus.FAILED
    assert "unknown_option" in dataset.error


# Real commits: the build is queued on commit, which a test transaction never reaches.
@pytest.mark.django_db(transaction=True)
def test_a_build_launched_while_the_broker_is_down_waits_pending_and_the_reaper_queues_it(
    api, settings, monkeypatch, broker_down
):
    settings.DATASET_INLINE_MAX = 2
    for _ in range(3):
        make_trace()
    response = api.post("/api/datasets", {"name": "big"}, format="json")
    assert response.status_code == 202
    body = response.json()
    assert body["status"] == "pending"
    assert body["awaiting_broker"] is True
    dataset = Dataset.objects.by_key("big@v1")
    assert dataset.queued_at is None and dataset.error == ""
    assert not DatasetMember.objects.filter(dataset=dataset).exists()

    # Still down: the reaper leaves it pending and tries again later.
    Dataset.objects.filter(pk=dataset.pk).update(created_at=timezone.now() - timedelta(minutes=1))
    assert jobs.reap_kind(Dataset)["published"] == 0
    # The broker is back: the next reap publishes it and the worker builds it.
    built: list[str] = []
    intercept_task(monkeypatch, "traces.build_dataset", lambda args: built.append(run_queued_build(args[0])))
    assert jobs.reap_kind(Dataset)["published"] == 1
    assert built == ["ready"]
    dataset.refresh_from_db()
    assert dataset.status == DatasetStatus.READY and dataset.queued_at is not None
    assert dataset.stats["count"] == 3
    # The version number was not used up: the next build is v2.
    assert api.post("/api/datasets", {"name": "big"}, format="json").json()["key"] == "big@v2"


# Real commits: the build is queued on commit, which a test transaction never reaches.
@pytest.mark.django_db(transaction=True)
def test_the_build_page_says_a_build_waits_for_the_broker(page, settings, broker_down):
    settings.DATASET_INLINE_MAX = 1
    make_trace()
    make_trace()
    response = page.post("/datasets/new/", {"name": "big", "strategy": "latest"}, follow=True)
    assert response.status_code == 200
    assert "big@v1 is saved, but the job broker is unreachable" in response.content.decode()
    assert Dataset.objects.by_key("big@v1").status == DatasetStatus.PENDING


@pytest.mark.django_db(transaction=True)
def test_a_build_whose_worker_died_is_built_again_by_the_next_attempt(monkeypatch):
    for _ in range(3):
        make_trace()
    dataset = pending_row()
    stale = timezone.now() - timedelta(minutes=10)
    # The worker claimed it and died mid-build: the transaction rolled back, the row stays `building`.
    Dataset.objects.filter(pk=dataset.pk).update(status=DatasetStatus.BUILDING, heartbeat_at=stale, started_at=stale)
    built: list[str] = []
    intercept_task(monkeypatch, "traces.build_dataset", lambda args: built.append(run_queued_build(args[0])))
    assert jobs.reap_kind(Dataset)["requeued"] == 1
    assert built == ["ready"]
    dataset.refresh_from_db()
    assert dataset.status == DatasetStatus.READY
    assert dataset.attempt == 2
    assert dataset.stats["count"] == 3


@pytest.mark.django_db(transaction=True)
def test_a_build_whose_worker_died_on_the_last_attempt_fails_with_the_reason(settings, monkeypatch):
    settings.RUN_MAX_ATTEMPTS = 2
    make_trace()
    dataset = pending_row()
    Dataset.objects.filter(pk=dataset.pk).update(
        status=DatasetStatus.BUILDING, attempt=2, heartbeat_at=timezone.now() - timedelta(minutes=10),
        worker_host="worker-3",
    )
    assert jobs.reap_kind(Dataset)["failed"] == 1
    dataset.refresh_from_db()
    assert dataset.status == DatasetStatus.FAILED
    assert dataset.error.startswith("Worker worker-3 lost: no heartbeat since ")
    assert dataset.error.endswith("No attempts left.")


@pytest.mark.django_db(transaction=True)
def test_a_build_beats_its_heartbeat_from_a_thread_while_it_works(settings):
    settings.RUN_HEARTBEAT_SECONDS = 1
    make_trace()
    dataset = pending_row()
    claimed = jobs.claim(Dataset, dataset.pk)
    first = claimed.heartbeat_at
    with jobs.heartbeat_thread(claimed):
        time.sleep(2.5)  # one long statement, as far as the reaper can tell
    claimed.refresh_from_db()
    assert claimed.heartbeat_at > first
    assert jobs.reap_kind(Dataset) == {"requeued": 0, "failed": 0, "cancelled": 0, "published": 0}


@pytest.mark.django_db
def test_broker_down_does_not_affect_inline_builds(api, settings, broker_down):
    settings.DATASET_INLINE_MAX = 10
    make_trace()
    response = api.post("/api/datasets", {"name": "small"}, format="json")
    assert response.status_code == 201
    assert response.json()["status"] == "ready"
