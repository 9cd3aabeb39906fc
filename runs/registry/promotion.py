"""The model registry: promote a completed run to a named model's next version (own copy)."""

from __future__ import annotations

import hashlib
import shutil
import tarfile
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Max
from django.utils.text import slugify

from runs.choices import RunMode, RunStatus
from runs.evaluation.running import EvaluationConflict, final_model_dir
from runs.models import Evaluation, ModelVersion, RegisteredModel, Run

ARCHIVE = "model.tar.gz"


def directory_checksum(directory: Path) -> tuple[str, int]:
    """SHA-256 over every file's relative path and bytes, in sorted order; and the total size."""
    digest = hashlib.sha256()
    size = 0
    for path in sorted(p for p in directory.rglob("*") if p.is_file() and p.name != ARCHIVE):
        digest.update(path.relative_to(directory).as_posix().encode() + b"\0")
        with path.open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
                size += len(chunk)
    return digest.hexdigest(), size


def promote(run: Run, name: str, *, description: str = "", user: Any = None) -> ModelVersion:
    """Copy the run's final model into the registry as `name`'s next version."""
    if not name or len(name) > 100 or slugify(name) != name:
        raise ValueError("name: use 1–100 lowercase letters, digits, - or _.")
    # A failed, cancelled or timed-out run may have left a final/ folder; only a completed one is a model.
    final = final_model_dir(run) if run.status == RunStatus.COMPLETED and run.mode == RunMode.TRAIN else None
    if final is None:
        raise EvaluationConflict(f"Run {run.pk} has no final model to promote (is it a completed training run?).")
    metrics: dict[str, Any] = {
        k: run.summary.get(k) for k in ("final_train_loss", "best_eval_loss", "final_eval_loss", "steps_done")
    }
    for evaluation in Evaluation.objects.filter(run=run, is_latest=True, baseline=False).select_related("eval_set"):
        metrics[f"accuracy/{evaluation.eval_set.name}"] = evaluation.accuracy
    provenance = {
        "run": run.pk,
        "dataset": run.dataset.key,
        "base_model": run.base_model,
        "config": run.config(),
    }
    creator = user if user is not None and getattr(user, "is_authenticated", False) else None
    for _ in range(5):
        model, _ = RegisteredModel.objects.get_or_create(name=name, defaults={"description": description})
        version = (model.versions.aggregate(v=Max("version"))["v"] or 0) + 1
        target = Path(settings.REGISTRY_DIR) / name / f"v{version}"
        try:
            with transaction.atomic():
                entry = ModelVersion.objects.create(
                    model=model,
                    version=version,
                    run=run,
                    checksum="",
                    metrics=metrics,
                    provenance=provenance,
                    path=str(target),
                    created_by=creator,
                )
                if target.exists():
                    shutil.rmtree(target)
                shutil.copytree(final, target)
                entry.checksum, entry.size_bytes = directory_checksum(target)
                with tarfile.open(target / ARCHIVE, "w:gz") as tar:
                    for path in sorted(p for p in target.rglob("*") if p.is_file() and p.name != ARCHIVE):
                        tar.add(path, arcname=f"{name}-v{version}/{path.relative_to(target).as_posix()}")
                entry.save(update_fields=["checksum", "size_bytes"])
                return entry
        except IntegrityError:
            continue  # someone promoted the same name concurrently: take the next version
    raise RuntimeError(f"Could not allocate a version of {name!r}.")


def archive_path(version: ModelVersion) -> Path | None:
    root = Path(settings.REGISTRY_DIR).resolve()
    path = (Path(version.path) / ARCHIVE).resolve()
    return path if path.is_relative_to(root) and path.is_file() else None
