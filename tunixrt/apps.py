from django.apps import AppConfig


class TunixrtConfig(AppConfig):
    """The project itself: dashboard, health, account pages and set-up commands."""

    name = "tunixrt"
    verbose_name = "tunix-rt"

    def ready(self) -> None:
        from tunixrt import (
            openapi,  # noqa: F401 - registers the schema extension
            workers,  # noqa: F401 - connects the worker heartbeat
        )
