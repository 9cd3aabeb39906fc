from django.apps import AppConfig


class RunsConfig(AppConfig):
    """Fine-tuning runs, their evaluations, regression gates and the model registry."""

    name = "runs"
