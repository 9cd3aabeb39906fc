"""The project's Celery app (its settings: retries, acks, concurrency) plus tasks that leave marks on disk.

For the broker-outage tests: they start `celery -A tunixrt.tests.outage_celery worker`
and `... beat` as real processes, so the marks are how the test sees tasks run.
"""

import os
import time
from pathlib import Path

from tunixrt.celery import app

MARKS = Path(os.environ.get("OUTAGE_MARKS_DIR", "."))


@app.task(name="outage.touch")
def touch(name: str) -> None:
    (MARKS / name).touch()


@app.task(name="outage.busy")
def busy(name: str, seconds: float) -> None:
    (MARKS / f"{name}.started").touch()
    time.sleep(seconds)
    (MARKS / f"{name}.done").touch()


@app.task(name="outage.tick")
def tick() -> None:
    with (MARKS / "ticks").open("a") as ticks:
        ticks.write(f"{time.time()}\n")


app.conf.beat_schedule = {"tick": {"task": "outage.tick", "schedule": 0.5}}
