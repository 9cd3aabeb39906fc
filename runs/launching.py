"""Starting, retrying and deleting runs (the web side; the worker side is runs.execution)."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import ProtectedError
from django.utils import timezone

from runs.choices import RunStatus
from runs.models import Run, RunNotActive

logger = logging.getLogger(__name__)


class BrokerUnavailable(RuntimeError):
    """The run was saved but could not be queued; it is marked failed with the reason."""


def enqueue(run_id: int) -> bool:
    """Send the run to a worker; if the broker is unreachable, fail the run with the reason (False)."""
    from runs.tasks import execute_run_task

    try:
        result = execute_run_task.apply_async(args=(run_id,), retry=False)
    except Exception as exc:  # noqa: BLE001 - any broker failure is reported the same way
        logger.warning("could not queue run %s: %s", run_id, exc)
        Run.objects.filter(pk=run_id, status=RunStatus.PENDING).update(
            status=RunStatus.FAILED,
            finished_at=timezone.now(),
            error=f"Could not queue the run: the job broker is unreachable ({type(exc).__name__}: {exc}).",
        )
        return False
    Run.objects.filter(pk=run_id).update(celery_task_id=result.id or "")
    return True


def launch_run(values: dict[str, Any], user: Any = None, *, retry_of: Run | None = None) -> Run:
    """Save the run, then queue it once the row is committed (the worker reads it by id).

    Raises BrokerUnavailable (after marking the run failed) when it cannot be queued.
    """
    creator = user if user is not None and getattr(user, "is_authenticated", False) else None
    queued: list[bool] = []
    with transaction.atomic():
        run = Run.objects.create(**values, created_by=creator, retry_of=retry_of)
        run.assign_folder()
        run.save(update_fields=["output_dir", "folder_token"])
        transaction.on_commit(lambda: queued.append(enqueue(run.pk)))
    run.refresh_from_db()
    # Only a failed publish is the broker's fault: a fast worker may already have run
    # (and failed) the run by now, which is no reason to answer 503.
    if queued == [False]:
        raise BrokerUnavailable(run.error)
    return run


def retry_run(run: Run, user: Any = None) -> Run:
    """A new run with the same dataset and configuration."""
    return launch_run({"dataset": run.dataset, **run.config()}, user, retry_of=run)


def delete_run(run: Run) -> None:
    """Delete a finished run and its files (checkpoints, final model, logs)."""
    if not run.is_terminal:
        raise RunNotActive(f"Run {run.pk} is {run.get_status_display().lower()}; cancel it first.")
    directory = run_directory(run)
    try:
        run.delete()
    except ProtectedError as exc:
        names = sorted(str(obj) for obj in exc.protected_objects)
        raise RunNotActive(
            f"Run {run.pk} is the reference of regression baseline {', '.join(names)}; delete the baseline first."
        ) from None
    if directory is not None and directory.is_dir():
        shutil.rmtree(directory, ignore_errors=True)


def run_directory(run: Run) -> Path | None:
    """The run's output folder, only if it really is inside RUNS_DIR."""
    if not run.output_dir:
        return None
    root = Path(settings.RUNS_DIR).resolve()
    path = Path(run.output_dir).resolve()
    return path if path.is_relative_to(root) and path != root else None


def list_artifacts(run: Run) -> list[dict[str, Any]]:
    """Every file under the run's folder: relative path and size, final model first."""
    directory = run_directory(run)
    if directory is None or not directory.is_dir():
        return []
    files: list[dict[str, Any]] = []
    for path in sorted(directory.rglob("*")):
        if path.is_file() and not path.is_symlink():
            rel = path.relative_to(directory).as_posix()
            files.append({"path": rel, "size": path.stat().st_size})
    files.sort(key=lambda f: (not str(f["path"]).startswith("final/"), str(f["path"])))
    return files


def artifact_path(run: Run, relative: str) -> Path | None:
    """The file `relative` inside the run's folder, or None (traversal, links, folders, missing)."""
    directory = run_directory(run)
    if directory is None or not relative or "\x00" in relative:
        return None
    candidate = (directory / relative).resolve()
    if not candidate.is_relative_to(directory) or not candidate.is_file():
        return None
    if any(part.is_symlink() for part in [directory / relative, *(directory / relative).parents]):
        return None
    return candidate
