"""Tests stand in for the broker by task name: jobs publish through `tunixrt.jobs.send`."""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest

from tunixrt.celery import app as celery_app


def intercept_task(monkeypatch: pytest.MonkeyPatch, name: str, handler: Callable[[tuple[Any, ...]], Any]) -> None:
    """Publishing task `name` calls `handler(args)` instead of reaching the broker.

    The handler may return a task id (a str); other tasks are published as before,
    so several interceptions can stack in one test.
    """
    original = celery_app.send_task
    calls = [0]

    def send_task(task: str, args: Any = (), kwargs: Any = None, **options: Any) -> Any:
        if task != name:
            return original(task, args=args, kwargs=kwargs, **options)
        calls[0] += 1
        result = handler(tuple(args or ()))
        return SimpleNamespace(id=result if isinstance(result, str) else f"{name}-{calls[0]}")

    monkeypatch.setattr(celery_app, "send_task", send_task)
