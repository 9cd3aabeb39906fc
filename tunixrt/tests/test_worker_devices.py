"""Training workers probe their JAX devices once at start and report them: health, dashboard, launch form."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.utils import timezone

from runs.training import devices
from tunixrt import workers
from tunixrt.models import WorkerHeartbeat

pytestmark = pytest.mark.django_db

GPU = {
    "platform": "gpu",
    "count": 1,
    "devices": [{"kind": "NVIDIA H200", "memory_bytes": 150_000_000_000}],
    "jax": "0.10.2",
}
TWO_CPUS_FLAGS = "--xla_force_host_platform_device_count=2"


def heartbeat(hostname: str, queues: list[str], report: dict[str, Any] | None = None) -> WorkerHeartbeat:
    WorkerHeartbeat.beat(hostname, 1, 1, timezone.now(), queues=queues, devices=report)
    return WorkerHeartbeat.objects.get(hostname=hostname)


def test_the_probe_reports_this_machines_cpu_devices_as_json():
    env = {"PATH": "/usr/bin:/bin", "JAX_PLATFORMS": "cpu", "XLA_FLAGS": TWO_CPUS_FLAGS}
    proc = subprocess.run(
        [sys.executable, "-m", "runs.training.devices"],
        capture_output=True,
        env=env,
        cwd=str(django_settings.BASE_DIR),
        timeout=120,
        check=True,
    )

    report = json.loads(proc.stdout.decode().strip().splitlines()[-1])
    assert report["platform"] == "cpu"
    assert report["count"] == 2
    assert len(report["devices"]) == 2
    assert report["devices"][0]["kind"] == "cpu"
    assert report["devices"][0]["memory_bytes"] > 2**20  # the host's memory
    assert report["jax"] == "0.10.2"
    assert devices.summary(report).startswith("CPU (2 devices, ")


def test_the_worker_probe_uses_the_training_interpreter_and_xla_flags(settings):
    settings.TRAINING_XLA_FLAGS = TWO_CPUS_FLAGS

    report = workers.probe_devices()

    assert report["platform"] == "cpu", report
    assert report["count"] == 2


def test_a_probe_that_cannot_start_is_reported_as_an_error(settings, tmp_path):
    settings.TRAINING_PYTHON = str(tmp_path / "no-such-python")

    report = workers.probe_devices()

    assert "FileNotFoundError" in report["error"]
    row = heartbeat("celery@broken", ["training"], report)
    assert row.devices_summary.startswith("device probe failed: FileNotFoundError")


def test_the_heartbeat_keeps_queues_and_devices_and_a_restart_forgets_the_old_probe():
    row = heartbeat("celery@gpu", ["default", "training"], GPU)
    assert row.queues == ["default", "training"]
    assert row.has_gpu
    WorkerHeartbeat.beat("celery@gpu", 1, 1)  # an ordinary beat keeps both
    row.refresh_from_db()
    assert row.devices == GPU
    assert row.queues == ["default", "training"]

    WorkerHeartbeat.beat("celery@gpu", 2, 1, timezone.now(), queues=["training"])  # the worker restarted

    row.refresh_from_db()
    assert row.devices == {}
    assert row.devices_summary == "devices not probed yet"


def test_health_lists_each_workers_queues_and_devices_with_session_and_token_auth(page, token_client):
    heartbeat("celery@gpu", ["training"], GPU)
    heartbeat("celery@web", ["default"])

    for client in (page, token_client):
        workers_check = client.get("/api/health").json()["checks"]["workers"]
        assert workers_check["training_count"] == 1
        assert workers_check["gpu"] is True
        by_host = {w["hostname"]: w for w in workers_check["workers"]}
        assert by_host["celery@gpu"]["queues"] == ["training"]
        assert by_host["celery@gpu"]["devices"] == GPU
        assert by_host["celery@gpu"]["devices_summary"] == "GPU × 1 (NVIDIA H200, 139.7 GiB each)"
        assert by_host["celery@web"]["devices_summary"] == ""


def test_health_without_a_gpu_worker_says_so(api):
    heartbeat("celery@cpu", ["training"], {"platform": "cpu", "count": 1, "devices": [], "jax": "0.10.2"})

    workers_check = api.get("/api/health").json()["checks"]["workers"]

    assert workers_check["gpu"] is False
    assert workers_check["training_count"] == 1


def test_the_dashboard_health_card_shows_what_each_training_worker_trains_on(page):
    heartbeat("celery@gpu", ["training"], GPU)

    body = page.get("/health/cards").content.decode()

    assert "celery@gpu trains on GPU × 1 (NVIDIA H200, 139.7 GiB each)" in body


def test_the_dashboard_says_when_no_worker_consumes_the_training_queue(page):
    heartbeat("celery@web", ["default"])

    body = page.get("/health/cards").content.decode()

    assert "no worker consumes the training queue" in body


def test_the_launch_form_names_the_training_workers_devices_or_warns_when_none_is_live(page):
    body = page.get("/runs/new/").content.decode()
    assert "No live training worker" in body

    heartbeat("celery@gpu", ["training"], GPU)
    body = page.get("/runs/new/").content.decode()

    assert "No live training worker" not in body
    assert "Training worker: celery@gpu — GPU × 1 (NVIDIA H200, 139.7 GiB each)" in body
    assert 'name="device"' in body
    assert 'name="dtype"' in body


def test_a_stale_training_worker_is_not_shown(page):
    heartbeat("celery@gone", ["training"], GPU)
    WorkerHeartbeat.objects.update(last_seen=timezone.now() - timedelta(hours=1))

    assert "No live training worker" in page.get("/runs/new/").content.decode()
    assert WorkerHeartbeat.objects.training() == []


@pytest.mark.django_db(transaction=True)
def test_a_training_worker_starts_at_once_and_stores_its_probed_devices(settings):
    settings.WORKER_HEARTBEAT_SECONDS = 30  # only the probe's early wake-up can store the devices in time
    settings.TRAINING_XLA_FLAGS = TWO_CPUS_FLAGS
    queues = SimpleNamespace(consume_from={"training": object()})
    sender = SimpleNamespace(
        hostname="celery@probe",
        controller=SimpleNamespace(concurrency=1),
        app=SimpleNamespace(amqp=SimpleNamespace(queues=queues)),
    )
    started = time.monotonic()
    workers.start_heartbeat(sender=sender)
    try:
        assert time.monotonic() - started < 0.5  # the probe (a JAX import) runs in its own thread
        deadline = time.monotonic() + 60
        row = None
        while time.monotonic() < deadline:
            row = WorkerHeartbeat.objects.filter(hostname="celery@probe").first()
            if row is not None and row.devices:
                break
            time.sleep(0.2)
        assert row is not None
        assert row.queues == ["training"]
        assert row.devices["platform"] == "cpu", row.devices
        assert row.devices["count"] == 2
    finally:
        workers.stop_heartbeat()
