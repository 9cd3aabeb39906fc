from django.db import models


class ScoreCriteria(models.TextChoices):
    BASELINE = "baseline", "Baseline (structure)"
