"""Resume or fail runs whose worker died (what the periodic beat task does every 30 s)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from runs.execution import reap_stale_runs


class Command(BaseCommand):
    help = "Find running runs without a heartbeat; re-queue them from their checkpoint or mark them failed."

    def handle(self, *args: Any, **options: Any) -> None:
        counts = reap_stale_runs()
        self.stdout.write(f"{counts['requeued']} re-queued, {counts['failed']} failed, {counts['cancelled']} cancelled")
