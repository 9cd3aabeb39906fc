from django.apps import AppConfig


class TracesConfig(AppConfig):
    """Reasoning traces: capture, browse, score, import and export."""

    name = "traces"

    def ready(self) -> None:
        from django.db.backends.signals import connection_created

        from traces.datasets.building import register_sqlite_md5

        connection_created.connect(register_sqlite_md5, dispatch_uid="traces-sqlite-md5")
