"""Live progress of a training run: steps done of max, speed, ETA, on its page and in the runs list."""

from __future__ import annotations

import http.client
import threading
import time
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import pytest
from django.conf import settings
from django.test import Client
from django.utils import timezone

from runs.choices import RunStatus
from runs.execution import RunRecorder
from runs.models import RunMetric
from runs.templatetags.runs_format import duration, percent
from runs.tests.run_support import build_arithmetic_dataset, make_run

pytestmark = pytest.mark.django_db


def running_run(done: int, total: int = 100, seconds_per_step: float = 0.5, tokens: float = 2048.0) -> Any:
    """A run `done` steps in, with one tokens_per_s point per step written `seconds_per_step` apart."""
    run = make_run(build_arithmetic_dataset(count=8), max_steps=total)
    now = timezone.now()
    run.status = RunStatus.RUNNING
    run.started_at = now - timedelta(seconds=done * seconds_per_step + 20)
    run.summary = {"steps_done": done}
    run.save()
    RunMetric.objects.bulk_create(
        RunMetric(run=run, name="tokens_per_s", step=step, value=tokens,
                  created_at=now - timedelta(seconds=(done - step) * seconds_per_step))
        for step in range(1, done + 1)
    )
    return run


def test_progress_measures_speed_over_the_last_steps_and_estimates_the_time_left() -> None:
    run = running_run(done=40, total=100, seconds_per_step=0.5)
    p = run.progress()
    assert (p.done, p.total, p.percent) == (40, 100, 40.0)
    assert p.steps_per_second == pytest.approx(2.0)
    assert p.eta_seconds == pytest.approx(30.0)  # 60 steps left at 2 steps/s
    assert p.tokens_per_second == 2048.0
    assert p.elapsed_seconds == pytest.approx(40, abs=2)


def test_a_finished_run_has_no_eta_and_a_run_before_its_first_step_has_no_speed() -> None:
    run = running_run(done=100, total=100)
    run.status = RunStatus.COMPLETED
    run.finished_at = timezone.now()
    run.save()
    assert run.progress().eta_seconds is None
    fresh = make_run(build_arithmetic_dataset(name="other", count=8, first=50), max_steps=10)
    p = fresh.progress()
    assert (p.done, p.steps_per_second, p.eta_seconds) == (0, None, None)


def test_the_run_page_and_the_runs_list_show_progress_while_running(page: Any) -> None:
    run = running_run(done=40, total=100, seconds_per_step=0.5)
    html = page.get(f"/runs/{run.pk}/").content.decode()
    assert 'value="40" max="100"' in html
    assert "40 / 100" in html and "ETA 30 s" in html and "2 steps/s" in html and "2,048 tokens/s" in html
    fragment = page.get(f"/runs/{run.pk}/?fragment=status", headers={"HX-Request": "true"}).content.decode()
    assert "ETA 30 s" in fragment
    listing = page.get("/runs/").content.decode()
    row = listing[listing.index(f'id="run-{run.pk}"') :]
    assert "<progress" in row[: row.index("</tr>")] and "ETA 30 s" in row[: row.index("</tr>")]


def test_the_run_pages_polls_answer_through_a_real_server_while_the_run_writes(live_server: Any, user: Any) -> None:
    """Three polls at once (two charts, one status) while the recorder writes, as a watched run does."""
    run = running_run(done=5, total=10_000)
    client = Client()
    client.force_login(user)
    cookie = f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}"
    answers: list[int] = []
    until = time.monotonic() + 3

    def poll(fragment: str) -> None:
        server = urlsplit(live_server.url)
        while time.monotonic() < until:
            connection = http.client.HTTPConnection(server.hostname or "", server.port, timeout=20)
            try:
                connection.request("GET", f"/runs/{run.pk}/?fragment={fragment}",
                                   headers={"Cookie": cookie, "HX-Request": "true"})
                answers.append(connection.getresponse().status)
            finally:
                connection.close()

    pollers = [threading.Thread(target=poll, args=(f,)) for f in ("chart", "status", "chart")]
    for poller in pollers:
        poller.start()
    recorder, step = RunRecorder(run), 5
    while time.monotonic() < until:
        step += 1
        recorder.metric("train_loss", step, 1 / step)
        recorder.log(f"step {step}")
        recorder.flush()
    for poller in pollers:
        poller.join()

    assert len(answers) > 10 and step > 20
    assert set(answers) == {200}, sorted(answers)
    assert RunMetric.objects.filter(run=run, name="train_loss").count() == step - 5


def test_durations_and_percentages_read_like_people_write_them() -> None:
    assert [duration(s) for s in (4.4, 65, 3600 + 7 * 60, 3 * 86400 + 3600)] == [
        "4 s", "1 min 05 s", "1 h 07 min", "3 d 1 h"
    ]
    assert duration(None) is None
    assert percent(0.4567) == "45.7 %" and percent(None) is None
