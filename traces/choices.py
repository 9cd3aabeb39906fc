from django.db import models


class ScoreCriteria(models.TextChoices):
    BASELINE = "baseline", "Baseline (structure)"


class Rating(models.TextChoices):
    GOOD = "good", "Good"
    BAD = "bad", "Bad"


class DatasetStrategy(models.TextChoices):
    LATEST = "latest", "Latest first"
    RANDOM = "random", "Random (seeded)"
    ALL = "all", "All, oldest first"


class DatasetKind(models.TextChoices):
    SFT = "sft", "SFT (traces)"
    PREFERENCE = "preference", "Preference (pairs)"


class DatasetStatus(models.TextChoices):
    PENDING = "pending", "Queued"
    BUILDING = "building", "Building"
    READY = "ready", "Ready"
    FAILED = "failed", "Failed"


class Split(models.TextChoices):
    TRAIN = "train", "Train"
    VALIDATION = "validation", "Validation"


class ExportFormat(models.TextChoices):
    TRACE = "trace", "trace (id, prompts, trace_steps, final_answer, metadata)"
    TUNIX_SFT = "tunix_sft", "tunix_sft (Gemma turn template)"
    TRAINING_EXAMPLE = "training_example", "training_example (prompt, response)"
    CHAT = "chat", "chat (messages)"
    DPO = "dpo", "dpo (prompt, chosen, rejected; preference datasets)"


class PairSource(models.TextChoices):
    """Where a preference pair came from."""

    COMPARE = "compare", "Compare page"
    API = "api", "API"
    IMPORT = "import", "Import"
    EVALUATION = "evaluation", "Evaluation"
