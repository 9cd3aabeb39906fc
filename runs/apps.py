from django.apps import AppConfig


class RunsConfig(AppConfig):
    """Fine-tuning runs and the Celery workers that execute them."""

    name = "runs"

    def ready(self) -> None:
        from runs import signals  # noqa: F401 - connects the worker heartbeat
