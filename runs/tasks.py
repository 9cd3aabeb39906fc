"""Celery tasks for runs and evaluations: thin wrappers around runs.execution and runs.evaluation.running."""

from typing import Any

from celery import shared_task

from runs.evaluation.running import execute_evaluation
from runs.execution import execute_run


@shared_task(name="runs.execute_run", bind=True, acks_late=True)
def execute_run_task(self: Any, run_id: int) -> str:
    return execute_run(run_id, task_id=self.request.id or "")


@shared_task(name="runs.execute_evaluation", bind=True, acks_late=True)
def execute_evaluation_task(self: Any, evaluation_id: int) -> str:
    return execute_evaluation(evaluation_id, task_id=self.request.id or "")

