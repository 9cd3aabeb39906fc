"""One supervised child process of a worker: training (`runs.training.child`) or evaluation
(`runs.training.generate`).

`ChildProcess` starts the child in its own process group, reads its stdout and
stderr line by line without blocking, calls `tick()` between reads for
periodic work (writing what was collected, looking for a cancel request,
heartbeats), and stops it the one way both jobs need: SIGTERM to the group (the
child finishes its step and exits), SIGKILL if it is still there
`RUN_KILL_GRACE_SECONDS` later. Past the timeout the same happens and
`timed_out` is set. The subclass decides what lines mean and how the job ends.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import selectors
import signal
import subprocess
import sys
import time
from collections import deque
from pathlib import Path
from typing import IO

from django.conf import settings

SELECT_SECONDS = 0.2
FLUSH_SECONDS = 0.5  # how often what the child reported is written to the database
CANCEL_POLL_SECONDS = 0.5  # how often the database is asked whether someone cancelled


class BoundedTail:
    """The last `limit` bytes of a stream, with a notice of how much came before."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.chunks: deque[bytes] = deque()
        self.size = 0
        self.dropped = 0

    def add(self, data: bytes) -> None:
        self.chunks.append(data)
        self.size += len(data)
        while self.size > self.limit and self.chunks:
            extra = self.size - self.limit
            head = self.chunks[0]
            if len(head) <= extra:
                self.chunks.popleft()
                self.size -= len(head)
                self.dropped += len(head)
            else:
                self.chunks[0] = head[extra:]
                self.size -= extra
                self.dropped += extra

    def text(self) -> str:
        body = b"".join(self.chunks).decode("utf-8", errors="replace").replace("\x00", "\ufffd")
        if self.dropped:
            return f"[… {self.dropped:,} earlier bytes truncated]\n{body}"
        return body

    def last_lines(self, count: int) -> list[str]:
        return [line for line in self.text().splitlines() if line.strip()][-count:]


def _die_with_parent() -> None:
    """In the child, before exec: get SIGTERM when the worker process dies (Linux)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def child_command(module: str, job: Path) -> list[str]:
    python = settings.TRAINING_PYTHON or sys.executable
    return [python, "-m", module, str(job)]


def child_env() -> dict[str, str]:
    """The children's environment: the worker's, plus the JAX cache, TRAINING_XLA_FLAGS and our import path.

    JAX_PLATFORMS is left as it is: each child sets it from its job's device choice
    (runs.training.devices.use_platform) before importing jax.
    """
    env = dict(os.environ)
    cache = Path(settings.JAX_CACHE_DIR)
    cache.mkdir(parents=True, exist_ok=True)
    if settings.TRAINING_XLA_FLAGS:
        env["XLA_FLAGS"] = settings.TRAINING_XLA_FLAGS
    env.update(
        {
            "PYTHONUNBUFFERED": "1",
            "TF_CPP_MIN_LOG_LEVEL": "2",
            # A persistent compile cache turns the ~3 s first-step compile into a lookup.
            "JAX_COMPILATION_CACHE_DIR": str(cache),
            "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
            "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0",
            "PYTHONPATH": str(settings.BASE_DIR),
        }
    )
    return env


class ChildProcess:
    """Runs one child to its end, feeding its output to the subclass (see the module doc)."""

    label = "child"  # named in the notes: "training child started (pid N)"

    def __init__(self, timeout_seconds: float) -> None:
        self.timeout_seconds = timeout_seconds
        self.stderr_tail = BoundedTail(settings.TUNIX_OUTPUT_MAX_BYTES)
        self.cancel_sent = False
        self.timed_out = False
        self.kill_sent = False  # we SIGKILLed it: a -9 exit is ours, not the kernel's
        self.kill_at: float | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    # What the subclass provides.

    def stdout_line(self, raw: bytes) -> None:
        raise NotImplementedError

    def stderr_line(self, raw: bytes) -> None:
        """Keeps the tail for the error message; subclasses may also log the line."""
        self.stderr_tail.add(raw + b"\n")

    def flush(self) -> None:
        """Write what the child reported so far: every FLUSH_SECONDS, when `flush_due()`, and at the end."""

    def flush_due(self) -> bool:
        """Whether to flush before FLUSH_SECONDS are up (a full buffer)."""
        return False

    def cancel_requested(self) -> bool:
        """Whether someone asked to cancel the job (asked every CANCEL_POLL_SECONDS until it is sent)."""
        return False

    def tick(self, now: float) -> None:
        """Other periodic work, called after every read and at least every SELECT_SECONDS."""

    def note(self, text: str) -> None:
        """A message about the supervision itself (started, stopping, killing)."""

    def killed_from_outside(self, code: int) -> bool:
        """The child died of a SIGKILL someone else sent (the kernel's out-of-memory killer, most often).

        137 is how a shell wrapper (TRAINING_PYTHON may be one) reports its child's SIGKILL.
        """
        return code in (-signal.SIGKILL, 128 + signal.SIGKILL) and not self.kill_sent

    # The supervision.

    def run_child(self, command: list[str]) -> int:
        """Start `command`, pump its output until it exits, flush, and return its exit code."""
        proc = self._proc = subprocess.Popen(  # noqa: S603 - our own interpreter and module, no shell
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=str(settings.BASE_DIR),
            env=child_env(),
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        self.note(f"{self.label} child started (pid {proc.pid})")
        deadline = time.monotonic() + self.timeout_seconds
        try:
            self._pump(proc, deadline)
        finally:
            if proc.poll() is None:
                self._signal(signal.SIGKILL)
                proc.wait()
        return proc.returncode

    def cancel(self, reason: str) -> None:
        """Ask the child to stop (once): SIGTERM now, SIGKILL after the grace period."""
        if self.cancel_sent:
            return
        self.cancel_sent = True
        self.note(reason)
        self._terminate()

    def _terminate(self) -> None:
        self._signal(signal.SIGTERM)
        self.kill_at = time.monotonic() + settings.RUN_KILL_GRACE_SECONDS

    def _signal(self, sig: int) -> None:
        if self._proc is not None:
            self.kill_sent = self.kill_sent or sig == signal.SIGKILL
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self._proc.pid, sig)

    def _pump(self, proc: subprocess.Popen[bytes], deadline: float) -> None:
        assert proc.stdout is not None
        assert proc.stderr is not None
        handlers = {proc.stdout.fileno(): self.stdout_line, proc.stderr.fileno(): self.stderr_line}
        partial: dict[int, bytes] = dict.fromkeys(handlers, b"")
        selector = selectors.DefaultSelector()
        streams: list[IO[bytes]] = [proc.stdout, proc.stderr]
        for stream in streams:
            os.set_blocking(stream.fileno(), False)
            selector.register(stream, selectors.EVENT_READ)
        last_flush = last_poll = time.monotonic()
        while selector.get_map():
            for key, _ in selector.select(timeout=SELECT_SECONDS):
                fd = key.fd
                try:
                    data = os.read(fd, 1 << 16)
                except BlockingIOError:
                    continue
                if not data:
                    selector.unregister(key.fileobj)
                    if partial[fd]:
                        handlers[fd](partial[fd])
                    continue
                lines = (partial[fd] + data).split(b"\n")
                partial[fd] = lines.pop()
                for line in lines:
                    handlers[fd](line)
            now = time.monotonic()
            if now - last_flush >= FLUSH_SECONDS or self.flush_due():
                self.flush()
                last_flush = now
            if not self.cancel_sent and now - last_poll >= CANCEL_POLL_SECONDS:
                last_poll = now
                if self.cancel_requested():
                    self.cancel("cancel requested: stopping at the next step")
            self.tick(now)
            if now >= deadline and not self.timed_out:
                self.timed_out = True
                self.note(f"timeout after {self.timeout_seconds}s: stopping the child")
                self._terminate()
            if self.kill_at is not None and now >= self.kill_at and proc.poll() is None:
                self.note("the child did not stop in time: killing it")
                self._signal(signal.SIGKILL)
                self.kill_at = None
        selector.close()
        # Output closed: the child is exiting. Bound the wait anyway (timeout plus grace).
        try:
            proc.wait(timeout=max(1.0, deadline - time.monotonic()) + settings.RUN_KILL_GRACE_SECONDS)
        except subprocess.TimeoutExpired:
            self.timed_out = self.timed_out or time.monotonic() >= deadline
            self._signal(signal.SIGKILL)
            proc.wait()
        self.flush()
