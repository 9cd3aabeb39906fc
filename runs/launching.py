"""Starting, retrying and deleting runs (the web side; the worker side is runs.execution)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import ProtectedError

from runs.models import Run
from runs.training import folders
from tunixrt import jobs
from tunixrt.jobs import JobNotActive


def launch_run(values: dict[str, Any], user: Any = None, *, retry_of: Run | None = None) -> Run:
    """Save the run, then queue it once the row is committed (the worker reads it by id).

    With the broker away the run stays pending (`awaiting_broker`) and the
    reaper queues it when the broker is back.
    """
    creator = user if user is not None and getattr(user, "is_authenticated", False) else None
    with transaction.atomic():
        run = Run.objects.create(**values, created_by=creator, retry_of=retry_of)
        run.assign_folder()
        run.save(update_fields=["output_dir", "folder_token"])
        jobs.publish_on_commit(run)
    run.refresh_from_db()
    return run


def retry_run(run: Run, user: Any = None) -> Run:
    """A new run with the same dataset and configuration."""
    values = {
        "dataset": run.dataset,
        **run.config(),
        "parent": run.parent,
        "reference_run": run.reference_run,
        "prompt_eval_set": run.prompt_eval_set,
    }
    return launch_run(values, user, retry_of=run)


def delete_run(run: Run) -> None:
    """Delete a finished run and its files (checkpoints, final model, logs)."""
    if not run.is_terminal:
        raise JobNotActive(f"Run {run.pk} is {run.get_status_display().lower()}; cancel it first.")
    directory = run_directory(run)
    try:
        run.delete()
    except ProtectedError as exc:
        names = sorted(str(obj) for obj in exc.protected_objects)
        raise JobNotActive(
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
    owner_file = directory / folders.OWNER_FILE  # bookkeeping, not an artifact
    for path in sorted(directory.rglob("*")):
        if path.is_file() and not path.is_symlink() and path != owner_file:
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
