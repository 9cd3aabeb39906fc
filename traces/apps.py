from django.apps import AppConfig


class TracesConfig(AppConfig):
    """Reasoning traces: capture, browse, score, import and export."""

    name = "traces"
