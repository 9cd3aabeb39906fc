"""Celery tasks for traces and datasets: thin wrappers around the domain functions."""

from typing import Any

from celery import shared_task

from traces.datasets.building import run_queued_build
from traces.searchindex import index_backlog


@shared_task(name="traces.build_dataset", bind=True, acks_late=True)
def build_dataset_task(self: Any, dataset_id: int) -> str:
    return run_queued_build(dataset_id, task_id=self.request.id or "")


@shared_task(name="traces.index_search", acks_late=True, ignore_result=True)
def index_search_task() -> int:
    """Index every trace still without its full-text document (bulk captures, see traces.searchindex)."""
    return index_backlog()
