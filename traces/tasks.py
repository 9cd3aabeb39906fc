"""Celery tasks for traces and datasets: thin wrappers around the domain functions."""

from celery import shared_task

from traces.datasets import run_queued_build


@shared_task(name="traces.build_dataset", acks_late=True)
def build_dataset_task(dataset_id: int) -> str:
    return run_queued_build(dataset_id)
