"""`manage.py reap_jobs`: what beat does every 30 s, once, in the foreground."""

from typing import Any

from django.core.management.base import BaseCommand

from tunixrt import jobs


class Command(BaseCommand):
    help = (
        "Resume or fail runs, evaluations and dataset builds whose worker died, and queue pending jobs "
        "that never reached the broker."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        for label, counts in jobs.reap().items():
            done = ", ".join(f"{n} {what}" for what, n in counts.items() if n)
            self.stdout.write(f"{label}: {done or 'nothing to do'}")
