"""tunix-rt: capture reasoning traces, curate datasets, fine-tune with Tunix."""

from tunixrt.celery import app as celery_app

__all__ = ["celery_app"]
