"""The child processes' side of the worker protocol (training and evaluation).

One JSON object per line on the real stdout, each with its `event` name and
`t` (seconds since the child started); whatever a library prints goes to
stderr instead. SIGTERM or SIGINT, or a worker that stopped reading (broken
pipe), sets STOP: the child finishes its step or batch and exits. Never
imports Django: the worker owns the database.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any, NoReturn

T0 = time.perf_counter()
_OUT = sys.stdout
STOP = threading.Event()


def emit(event: str, **fields: Any) -> None:
    line = json.dumps({"event": event, "t": round(time.perf_counter() - T0, 3), **fields}, default=float)
    try:
        _OUT.write(line + "\n")
        _OUT.flush()
    except (BrokenPipeError, OSError):
        STOP.set()


def elapsed() -> float:
    return time.perf_counter() - T0


def take_over_stdout() -> None:
    """Keep the event stream to ourselves and turn stop signals into STOP."""
    sys.stdout = sys.stderr
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: STOP.set())


def run_main(module: str, main: Callable[[str], int]) -> NoReturn:
    """`python -m MODULE JOB.json`: run `main`, report a crash as a failed `done` event, exit."""
    if len(sys.argv) != 2:
        sys.stderr.write(f"usage: python -m {module} JOB.json\n")
        sys.exit(2)
    try:
        code = main(sys.argv[1])
    except Exception as exc:  # noqa: BLE001 - reported to the worker, then a non-zero exit
        traceback.print_exc()
        emit("done", status="failed", error=f"{type(exc).__name__}: {exc}")
        code = 1
    _OUT.flush()
    sys.stderr.flush()
    # Skip interpreter teardown: JAX's thread pools can take seconds to wind down.
    os._exit(code)
