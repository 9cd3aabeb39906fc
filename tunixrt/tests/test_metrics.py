"""Prometheus metrics at /metrics: who may read them, and each family with plausible values."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.db import connection
from django.test import Client, override_settings
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from runs.choices import RunStatus
from runs.models import Evaluation, Run, RunMetric
from runs.tests.eval_support import make_eval_set
from runs.tests.run_support import build_arithmetic_dataset, make_run
from traces.choices import DatasetStatus
from traces.models import Dataset
from traces.tests.factories import TraceFactory
from tunixrt import metrics
from tunixrt.health import training_versions
from tunixrt.models import WorkerHeartbeat
from tunixrt.roles import Role, grant

pytestmark = pytest.mark.django_db

TOKEN = "prometheus-scrape-token-0123456789"
BASE_DIR = Path(__file__).resolve().parents[2]

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@pytest.fixture
def token(settings: Any) -> str:
    settings.METRICS_TOKEN = TOKEN
    return TOKEN


def scrape(client: Client | None = None, token: str = TOKEN) -> Samples:
    response = (client or Client()).get("/metrics", HTTP_AUTHORIZATION=f"Bearer {token}")
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain; version=")
    samples: Samples = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def names(samples: Samples) -> set[str]:
    return {name for name, _ in samples}


def requests_of(samples: Samples, **labels: str) -> float:
    return value(samples, "tunixrt_http_requests_total", **labels) or 0.0


# Access


@pytest.mark.parametrize("debug", [True, False])
def test_anonymous_callers_get_a_json_403_not_a_login_redirect(debug):
    with override_settings(DEBUG=debug):
        response = Client().get("/metrics")

    assert response.status_code == 403
    assert "maintainers" in response.json()["detail"]
    assert b"tunixrt_" not in response.content


def test_a_plain_user_is_refused(user):
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)

    response = client.get("/metrics")

    assert response.status_code == 403
    assert "detail" in response.json()


def test_a_member_of_the_maintainer_group_can_read_them(user):
    grant(user, Role.MAINTAINER)
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)

    response = client.get("/metrics")

    assert response.status_code == 200
    assert b"tunixrt_jobs" in response.content


def test_a_superuser_can_read_them(django_user_model):
    admin = django_user_model.objects.create_superuser("root", password="pw")
    client = Client(enforce_csrf_checks=True)
    client.force_login(admin)

    assert client.get("/metrics").status_code == 200


@pytest.mark.parametrize("debug", [True, False])
def test_the_configured_bearer_token_is_accepted_and_a_wrong_one_refused(token, debug):
    with override_settings(DEBUG=debug):
        assert "tunixrt_build_info" in names(scrape())
        wrong = Client().get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN[:-1]}x")
        prefix = Client().get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN[:-1]}")

    assert wrong.status_code == prefix.status_code == 403
    assert wrong.json() == {"detail": "Invalid metrics token."}


def test_a_wrong_token_is_refused_even_to_a_maintainers_session(token, django_user_model):
    admin = django_user_model.objects.create_superuser("root", password="pw")
    client = Client()
    client.force_login(admin)

    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer nope").status_code == 403


def test_no_token_is_accepted_when_none_is_configured(settings):
    settings.METRICS_TOKEN = ""

    for header in ("Bearer ", "Bearer anything-at-all-0123456789"):
        assert Client().get("/metrics", HTTP_AUTHORIZATION=header).status_code == 403


def test_only_reads_are_allowed(token):
    response = Client().post("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")

    assert response.status_code == 405


# HTTP requests


def test_requests_are_counted_by_view_method_and_status(token):
    before = scrape()

    assert Client().get("/accounts/login/").status_code == 200
    assert Client().get("/no/such/page").status_code == 404
    after = scrape()

    assert requests_of(after, view="login", method="GET", status="200") == (
        requests_of(before, view="login", method="GET", status="200") + 1
    )
    assert requests_of(after, view="unmatched", method="GET", status="404") == (
        requests_of(before, view="unmatched", method="GET", status="404") + 1
    )
    # The scrape before this one was counted too.
    assert requests_of(after, view="metrics", method="GET", status="200") >= 1
    count = value(after, "tunixrt_http_request_duration_seconds_count", view="login", method="GET")
    assert count == (value(before, "tunixrt_http_request_duration_seconds_count", view="login", method="GET") or 0) + 1
    assert value(after, "tunixrt_http_request_duration_seconds_bucket", view="login", method="GET", le="+Inf") == count
    assert (value(after, "tunixrt_http_request_duration_seconds_sum", view="login", method="GET") or 0) > 0


def test_views_are_labelled_by_url_name_never_by_path(token, api):
    api.get("/api/traces/987654321")
    api.get("/api/runs/987654321")
    api.generic("BREW", "/api/traces")

    samples = scrape()
    views = {dict(labels).get("view", "") for name, labels in samples if name == "tunixrt_http_requests_total"}

    assert {"api-trace-detail", "api-run-detail"} <= views
    assert not any("987654321" in view or "/" in view for view in views)
    assert requests_of(samples, view="api-trace-list", method="other", status="405") == 1


# Jobs


def test_jobs_are_counted_by_kind_and_status(token):
    dataset = build_arithmetic_dataset(count=8)
    Dataset.objects.create(name="queued", version=1, status=DatasetStatus.PENDING)
    Dataset.objects.create(name="broken", version=1, status=DatasetStatus.FAILED)
    runs = [make_run(dataset) for _ in range(4)]
    Run.objects.filter(pk__in=[runs[0].pk, runs[1].pk]).update(status=RunStatus.RUNNING)
    Run.objects.filter(pk=runs[2].pk).update(status=RunStatus.COMPLETED)
    eval_set = make_eval_set()
    for status in (RunStatus.COMPLETED, RunStatus.COMPLETED, RunStatus.FAILED):
        Evaluation.objects.create(run=runs[2], eval_set=eval_set, status=status)

    samples = scrape()

    def jobs(kind: str, status: str) -> float | None:
        return value(samples, "tunixrt_jobs", kind=kind, status=status)

    assert (jobs("run", "pending"), jobs("run", "running"), jobs("run", "completed")) == (1, 2, 1)
    assert jobs("run", "failed") == 0  # every status is present, zeros included
    assert (jobs("evaluation", "completed"), jobs("evaluation", "failed"), jobs("evaluation", "pending")) == (2, 1, 0)
    assert (jobs("dataset_build", "ready"), jobs("dataset_build", "pending")) == (1, 1)
    assert (jobs("dataset_build", "failed"), jobs("dataset_build", "building")) == (1, 0)


# Queue depth


def test_the_filesystem_broker_queue_depth_counts_its_message_files(token, settings, tmp_path):
    settings.CELERY_BROKER_URL = "filesystem://"
    settings.CELERY_BROKER_TRANSPORT_OPTIONS = {"data_folder_in": str(tmp_path)}
    for n in range(3):
        (tmp_path / f"{1000 + n}_{uuid.uuid4()}.default.msg").write_bytes(b"{}")
    (tmp_path / f"1004_{uuid.uuid4()}.training.msg").write_bytes(b"{}")
    (tmp_path / f"1005_{uuid.uuid4()}.other.msg").write_bytes(b"{}")

    samples = scrape()

    assert value(samples, "tunixrt_queue_depth", queue="default") == 3
    assert value(samples, "tunixrt_queue_depth", queue="training") == 1


@pytest.mark.skipif(not os.environ.get("CELERY_BROKER_URL", "").startswith("redis://"), reason="needs the Redis broker")
def test_the_redis_queue_depth_is_the_length_of_the_queue_lists(token, settings):
    import redis

    settings.CELERY_BROKER_URL = os.environ["CELERY_BROKER_URL"]
    settings.CELERY_BROKER_TRANSPORT_OPTIONS = {}
    client = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    before: dict[str, float] = {}
    for queue in ("default", "training"):
        depth = value(scrape(), "tunixrt_queue_depth", queue=queue)
        assert depth is not None
        before[queue] = depth
    marker = f"metrics-test-{uuid.uuid4()}"
    high_priority = "default\x06\x163"  # kombu's list for priority 3
    try:
        client.lpush("default", marker)
        client.lpush(high_priority, marker)
        client.lpush("training", marker)

        samples = scrape()
        assert value(samples, "tunixrt_queue_depth", queue="default") == before["default"] + 2
        assert value(samples, "tunixrt_queue_depth", queue="training") == before["training"] + 1
    finally:
        for key in ("default", high_priority, "training"):
            client.lrem(key, 0, marker)


def test_an_unreachable_broker_leaves_the_queue_out_not_the_scrape(token, settings):
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:1/0"
    settings.CELERY_BROKER_TRANSPORT_OPTIONS = {}

    samples = scrape()

    assert "tunixrt_queue_depth" not in names(samples)
    assert value(samples, "tunixrt_metrics_collector_success", collector="queue") == 0
    assert value(samples, "tunixrt_metrics_collector_success", collector="jobs") == 1
    assert "tunixrt_jobs" in names(samples)


def test_a_broker_that_cannot_tell_its_depth_is_left_out(token, settings):
    settings.CELERY_BROKER_URL = "memory://"

    samples = scrape()

    assert "tunixrt_queue_depth" not in names(samples)
    assert value(samples, "tunixrt_metrics_collector_success", collector="queue") == 1


# Search backlog, workers, training speed, build info


def test_the_search_backlog_counts_traces_without_their_search_document(token):
    traces = [TraceFactory.create() for _ in range(3)]
    if connection.vendor == "postgresql":
        with connection.cursor() as cur:
            cur.execute(
                'UPDATE "traces_trace" SET search_document = NULL WHERE id IN (%s, %s)', [traces[0].pk, traces[1].pk]
            )

    expected = 2 if connection.vendor == "postgresql" else 0  # SQLite has no index to wait for
    assert value(scrape(), "tunixrt_search_backlog") == expected


def test_only_workers_with_a_recent_heartbeat_are_live(token, settings):
    WorkerHeartbeat.beat("worker@a", pid=1, concurrency=2)
    WorkerHeartbeat.beat("worker@b", pid=2, concurrency=2)
    WorkerHeartbeat.objects.create(
        hostname="worker@gone", last_seen=timezone.now() - timedelta(seconds=settings.WORKER_STALE_SECONDS + 5)
    )

    assert value(scrape(), "tunixrt_workers_live") == 2


def test_running_runs_report_their_steps_and_steps_per_second(token):
    dataset = build_arithmetic_dataset(count=8)
    fast, loading, finished = (make_run(dataset) for _ in range(3))
    Run.objects.filter(pk__in=[fast.pk, loading.pk]).update(status=RunStatus.RUNNING)
    Run.objects.filter(pk=fast.pk).update(summary={"steps_done": 30, "tokens_per_step": 1024})
    Run.objects.filter(pk=finished.pk).update(status=RunStatus.COMPLETED, summary={"steps_done": 100})
    now = timezone.now()
    points = [
        # Written in three flushes: steps 10-19 twenty seconds ago, 20-29 ten seconds ago, 30 now.
        *((step, now - timedelta(seconds=20)) for step in range(10, 20)),
        *((step, now - timedelta(seconds=10)) for step in range(20, 30)),
        (30, now),
        (5, now - timedelta(minutes=5)),  # outside the window
    ]
    RunMetric.objects.bulk_create(
        [RunMetric(run=fast, name="tokens_per_s", step=s, value=900.0, created_at=at) for s, at in points]
        + [RunMetric(run=fast, name="train_loss", step=1, value=3.0, created_at=now - timedelta(seconds=40))]
        + [RunMetric(run=finished, name="tokens_per_s", step=99, value=900.0, created_at=now)]
    )

    samples = scrape()

    assert value(samples, "tunixrt_run_steps_done", run=str(fast.pk)) == 30
    assert value(samples, "tunixrt_run_steps_per_second", run=str(fast.pk)) == pytest.approx(1.0, rel=0.01)
    assert value(samples, "tunixrt_run_steps_done", run=str(loading.pk)) is None  # no step yet
    assert value(samples, "tunixrt_run_steps_per_second", run=str(loading.pk)) == 0
    assert value(samples, "tunixrt_run_steps_per_second", run=str(finished.pk)) is None


def test_build_info_names_the_versions_without_importing_jax(token):
    labels = next(dict(labels) for name, labels in scrape() if name == "tunixrt_build_info")

    versions = training_versions()["versions"]
    assert labels["tunix"] == versions["google-tunix"]
    assert labels["jax"] == versions["jax"]
    assert labels["version"] == "0.1.0"
    assert labels["python"] == ".".join(map(str, sys.version_info[:3]))


def test_the_web_process_does_not_import_jax_to_serve_metrics(tmp_path):
    script = (
        "import sys, django; django.setup()\n"
        "from tunixrt import metrics\n"
        "metrics.build_labels()\n"
        "assert 'jax' not in sys.modules, 'jax imported'\n"
    )
    subprocess.run([sys.executable, "-c", script], cwd=BASE_DIR, check=True, timeout=120, env=_child_env(tmp_path))


def test_a_failing_part_is_left_out_and_flagged(token, monkeypatch):
    def broken() -> Any:
        raise RuntimeError("database unreachable")
        yield

    monkeypatch.setattr(metrics, "COLLECTORS", (*metrics.COLLECTORS[:-1], ("build_info", broken)))

    samples = scrape()

    assert "tunixrt_build_info" not in names(samples)
    assert value(samples, "tunixrt_metrics_collector_success", collector="build_info") == 0
    assert value(samples, "tunixrt_metrics_collector_success", collector="workers") == 1


# Several processes (web workers)


def _child_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tunixrt.settings", "TUNIXRT_VAR_DIR": str(tmp_path / "var")}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    return {**env, **extra}


def test_with_a_multiprocess_folder_a_scrape_sums_every_process(token, tmp_path, monkeypatch):
    folder = tmp_path / "prometheus"  # created by the module itself when missing
    # Each child serves two requests through the whole middleware stack, as a web worker would.
    script = (
        "import django; django.setup()\n"
        "from django.test import Client\n"
        "from django.test.utils import setup_test_environment\n"
        "setup_test_environment()\n"
        "for _ in range(2):\n"
        "    assert Client().get('/accounts/login/').status_code == 200\n"
    )
    env = _child_env(tmp_path, PROMETHEUS_MULTIPROC_DIR=str(folder))
    children = [subprocess.Popen([sys.executable, "-c", script], cwd=BASE_DIR, env=env) for _ in range(2)]
    assert [child.wait(timeout=120) for child in children] == [0, 0]
    assert len(list(folder.glob("counter_*.db"))) == 2

    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(folder))
    samples = scrape()

    assert requests_of(samples, view="login", method="GET", status="200") == 4
    assert value(samples, "tunixrt_http_request_duration_seconds_count", view="login", method="GET") == 4
    assert "tunixrt_jobs" in names(samples)  # read at scrape time, as without the folder
