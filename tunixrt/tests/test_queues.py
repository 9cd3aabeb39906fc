"""Runs and evaluations go to the `training` queue, everything else to `default`, on the real broker.

The messages are read back from the broker itself (Redis lists, or the
filesystem transport's message files), not from Celery's own bookkeeping.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from celery.contrib.testing.worker import start_worker
from django.conf import settings as django_settings

from runs.tasks import execute_run_task
from traces.choices import DatasetStatus
from traces.datasets.building import validate_build_spec
from traces.models import Dataset
from traces.tests.datasets_support import make_trace, wait_until_done
from tunixrt import jobs, metrics
from tunixrt.celery import app as celery_app

DEFAULT, TRAINING = "default", "training"


def waiting(queue: str) -> dict[str, str]:
    """Task id → task name of every message waiting in `queue`, read from the broker."""
    url = django_settings.CELERY_BROKER_URL
    if url.startswith("redis://"):
        import redis

        client = redis.Redis.from_url(url)
        bodies: list[Any] = list(client.lrange(queue, 0, -1))
    elif url.startswith("filesystem://"):
        folder = Path(django_settings.CELERY_BROKER_TRANSPORT_OPTIONS["data_folder_in"])
        bodies = [path.read_bytes() for path in folder.glob(f"*.{queue}.msg")]
    else:
        pytest.skip("needs a real broker (Redis or the filesystem transport)")
    messages = [json.loads(body) for body in bodies]
    return {message["headers"]["id"]: message["headers"]["task"] for message in messages}


@pytest.fixture
def empty_queues() -> Iterator[None]:
    """Both queues empty before the test; nothing it leaves behind survives it."""
    celery_app.control.purge()
    yield
    celery_app.control.purge()


def test_the_configured_queues_are_default_and_training_each_with_its_own_binding():
    queues = celery_app.amqp.queues
    assert set(queues) == {DEFAULT, TRAINING}
    assert celery_app.conf.task_default_queue == DEFAULT
    # A queue bound to the default queue's routing key would get every default message too.
    assert {queue.routing_key for queue in queues.values()} == {DEFAULT, TRAINING}


def test_the_job_models_declare_their_queue():
    queues = {model._meta.label: model.job_queue for model in jobs.job_models()}
    assert queues == {"runs.Run": TRAINING, "runs.Evaluation": TRAINING, "traces.Dataset": DEFAULT}


@pytest.mark.django_db
def test_training_and_evaluation_tasks_land_in_training_and_the_rest_in_default(empty_queues):
    # However they are sent: by name through jobs.send (the router picks), with the job's
    # queue (jobs.publish), by the task object (.apply_async), or as beat sends them.
    training = [
        jobs.send("runs.execute_run", 1),
        jobs.send("runs.execute_evaluation", 2),
        jobs.send("runs.execute_run", 3, queue=TRAINING),
        execute_run_task.apply_async(args=(4,)).id,
    ]
    default = [
        jobs.send("traces.build_dataset", 5),
        jobs.send("traces.index_search"),
        celery_app.send_task("tunixrt.reap_jobs").id,
    ]
    built = validate_build_spec({"name": "queued"})
    dataset = Dataset.objects.create(name="queued", version=1, spec=built.as_json(), status=DatasetStatus.PENDING)
    assert jobs.publish(dataset)
    dataset.refresh_from_db()
    default.append(dataset.celery_task_id)

    in_training, in_default = waiting(TRAINING), waiting(DEFAULT)

    assert set(in_training) == set(training)
    assert set(in_default) == set(default)
    assert sorted(in_training.values()) == [
        "runs.execute_evaluation",
        "runs.execute_run",
        "runs.execute_run",
        "runs.execute_run",
    ]
    assert sorted(in_default.values()) == [
        "traces.build_dataset",
        "traces.build_dataset",
        "traces.index_search",
        "tunixrt.reap_jobs",
    ]
    # /metrics reads the depth of both configured queues.
    assert metrics.queue_depths() == {DEFAULT: 4, TRAINING: 4}


@pytest.fixture
def consume_default_only() -> Iterator[None]:
    """Workers started in this process consume only `default` (as `worker -Q default`), then all again."""
    queues = celery_app.amqp.queues
    saved = queues._consume_from  # type: ignore[attr-defined]
    try:
        yield
    finally:
        # Queues.select() only narrows: put back "every configured queue" by hand.
        queues._consume_from = saved  # type: ignore[attr-defined]


@pytest.mark.django_db(transaction=True)
def test_a_default_worker_builds_a_dataset_while_a_training_task_waits_for_its_own_worker(
    api: Any, settings: Any, empty_queues: None, consume_default_only: None
) -> None:
    settings.DATASET_INLINE_MAX = 2
    for _ in range(4):
        make_trace(steps=2)
    run_task = jobs.send("runs.execute_run", 123456)  # a long run, queued first

    with start_worker(
        celery_app, perform_ping_check=False, pool="solo", shutdown_timeout=30, queues=[DEFAULT]
    ) as worker:
        assert set(worker.app.amqp.queues.consume_from) == {DEFAULT}
        response = api.post("/api/datasets", {"name": "meanwhile", "strategy": "all"}, format="json")
        assert response.status_code == 202, response.content
        dataset = wait_until_done("meanwhile@v1")

    assert dataset.status == DatasetStatus.READY, dataset.error
    assert waiting(TRAINING) == {run_task: "runs.execute_run"}


def test_a_worker_of_the_training_queue_alone_takes_the_training_concurrency(tmp_path: Path) -> None:
    """`celery worker -Q training` without -c runs TRAINING_WORKER_CONCURRENCY tasks; -c still wins."""
    import subprocess
    import sys

    env = {
        **os.environ,
        "TUNIXRT_VAR_DIR": str(tmp_path / "var"),
        "CELERY_BROKER_URL": "filesystem://",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        "CELERY_WORKER_CONCURRENCY": "4",
        "TRAINING_WORKER_CONCURRENCY": "3",
    }
    # Celery's command line reads CELERY_WORKER_CONCURRENCY from the environment as its -c default.
    code = (
        "import sys\n"
        "from celery.bin.celery import main\n"
        "from celery.signals import worker_init\n"
        "@worker_init.connect(weak=False)\n"
        "def report(sender, **kwargs):\n"
        "    # connected before Django loads tunixrt.workers, so it calls the project's handler itself\n"
        "    from tunixrt import workers\n"
        "    workers.size_training_worker(sender=sender)\n"
        "    print('CONCURRENCY', sender.concurrency, flush=True)\n"
        "    raise SystemExit(0)\n"
        "sys.argv = ['celery', '-A', 'tunixrt', 'worker', *sys.argv[1:]]\n"
        "main()\n"
    )

    def concurrency(*args: str) -> int:
        done = subprocess.run(
            [sys.executable, "-c", code, "--pool", "solo", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        lines = [line for line in done.stdout.splitlines() if line.startswith("CONCURRENCY")]
        assert lines, done.stdout + done.stderr
        return int(lines[0].split()[1])

    assert concurrency("-Q", "training") == 3
    assert concurrency("-Q", "training", "-c", "2") == 2
    assert concurrency("-Q", "default") == 4
