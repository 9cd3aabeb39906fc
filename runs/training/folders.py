"""Run folders that no two runs share.

A run's folder is `RUNS_DIR/<id>-<token>`, the token random and stored on the
row, so a database that starts numbering again (a reset, a restore, a move
from SQLite to PostgreSQL) never lands a new run in an old run's folder. The
first attempt writes an owner file (`owner.json`: run id and token) before
anything else; every later attempt (a resume after a lost worker) checks it,
because the trainer resumes whatever checkpoint it finds and the data files
are reused as they are.

Rows from before the token existed keep their folder `RUNS_DIR/<id>` and have
no owner file: their resume is accepted (and the owner file written then),
since refusing would strand every run that was in flight during the upgrade.

Imports neither Django nor JAX: the worker calls it with plain values.
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Any

OWNER_FILE = "owner.json"
EVALUATIONS = "evaluations"  # where runs.evaluation keeps the run's evaluation jobs


class FolderNotOwned(Exception):
    """The run's folder holds another run's files (or files no run claims); the message says which."""


def new_token() -> str:
    return secrets.token_hex(4)


def folder_path(root: Path, run_id: int, token: str) -> Path:
    return root / f"{run_id}-{token}" if token else root / str(run_id)


def read_owner(directory: Path) -> dict[str, Any] | None:
    """The owner file's content; None when there is none. An unreadable one names no run."""
    path = directory / OWNER_FILE
    if not path.is_file():
        return None
    try:
        owner = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError):
        return {"run_id": None, "token": None}
    return owner if isinstance(owner, dict) else {"run_id": None, "token": None}


def take(directory: Path, run_id: int, token: str, *, first_attempt: bool) -> None:
    """Make sure `directory` is this run's to write into, creating it and its owner file as needed.

    Raises FolderNotOwned when the owner file names another run, or when there is
    no owner file but the folder already holds files other than evaluations (a first
    attempt never starts on someone's leftovers; a resume only trusts them for a row
    from before tokens).
    """
    mine = {"run_id": run_id, "token": token}
    owner = read_owner(directory)
    if owner is not None:
        if {"run_id": owner.get("run_id"), "token": owner.get("token")} == mine:
            return
        who = f"run {owner.get('run_id')} (token {owner.get('token')!r})" if owner.get("run_id") else "an unknown run"
        raise FolderNotOwned(
            f"The run folder {directory} belongs to {who}, not to this run (run {run_id}, token {token!r}). "
            "Its checkpoints and data files were left alone; retry the run to train in a fresh folder."
        )
    # A baseline evaluation of the untrained base may run before the run starts; its files
    # (`evaluations/`) never feed training, so they do not make the folder someone else's.
    leftovers = directory.is_dir() and any(entry.name != EVALUATIONS for entry in directory.iterdir())
    if leftovers and (first_attempt or token):
        raise FolderNotOwned(
            f"The run folder {directory} already holds files that no run claims (no {OWNER_FILE}); "
            + (
                "a first attempt never starts on existing files. "
                if first_attempt
                else "a resume only continues in a folder this run wrote. "
            )
            + "Move or delete the folder, or retry the run to train in a fresh folder."
        )
    directory.mkdir(parents=True, exist_ok=True)
    tmp = directory / f"{OWNER_FILE}.tmp"
    tmp.write_text(json.dumps(mine) + "\n")
    tmp.replace(directory / OWNER_FILE)
