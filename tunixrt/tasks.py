"""The one reaper of every job kind (beat, every 30 s)."""

from celery import shared_task

from tunixrt import jobs


@shared_task(name="tunixrt.reap_jobs")
def reap_jobs_task() -> dict[str, dict[str, int]]:
    return jobs.reap()
