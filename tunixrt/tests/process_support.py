"""For tests that start the app's own processes (bin/serve, celery worker and beat) on a SQLite file."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path


def sqlite_file_in_wal_mode(path: Path) -> Path:
    """Create the database file in WAL mode, as `make run` leaves it after `migrate`.

    Processes started together on a new file would each switch it to WAL at the same
    moment, and SQLite refuses the losers at once ("database is locked": the journal
    mode change waits for nobody), failing Django's start-up checks.
    """
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.execute("PRAGMA journal_mode=WAL")
    return path
