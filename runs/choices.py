from django.db import models

from runs.training import templates


class RunStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    RUNNING = "running", "Running"
    COMPLETED = "completed", "Completed"
    FAILED = "failed", "Failed"
    TIMEOUT = "timeout", "Timed out"
    CANCEL_REQUESTED = "cancel_requested", "Cancelling"
    CANCELLED = "cancelled", "Cancelled"


ACTIVE_STATUSES = (RunStatus.PENDING, RunStatus.RUNNING, RunStatus.CANCEL_REQUESTED)
TERMINAL_STATUSES = (RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.TIMEOUT, RunStatus.CANCELLED)


class RunMode(models.TextChoices):
    TRAIN = "train", "Train"
    DRY_RUN = "dry_run", "Dry run"


class RunMethod(models.TextChoices):
    FULL = "full", "Full fine-tune"
    LORA = "lora", "LoRA"


class RunObjective(models.TextChoices):
    """What a run optimises (beside `method`, which says which weights train: all, or LoRA adapters)."""

    SFT = "sft", "SFT — supervised fine-tuning on answers"
    DPO = "dpo", "DPO — preference pairs against a reference model"
    ORPO = "orpo", "ORPO — preference pairs, no reference model"
    GRPO = "grpo", "GRPO — reinforcement learning with rewards"


PREFERENCE_OBJECTIVES = (RunObjective.DPO, RunObjective.ORPO)


class KlMode(models.TextChoices):
    # Tunix's GRPOConfig.kl_loss_mode estimators.
    KL = "kl", "kl (log-ratio)"
    MSE_KL = "mse_kl", "mse_kl (squared log-ratio)"
    LOW_VAR_KL = "low_var_kl", "low_var_kl (Schulman's low-variance estimator)"


class ChatTemplate(models.TextChoices):
    # Labels and strings live in runs/training/templates.py (the one place).
    GEMMA = "gemma", templates.GEMMA.label
    CHATML = "chatml", templates.CHATML.label
    LLAMA3 = "llama3", templates.LLAMA3.label
    PLAIN = "plain", templates.PLAIN.label


class LogStream(models.TextChoices):
    STDOUT = "stdout", "stdout"
    STDERR = "stderr", "stderr"
    SYSTEM = "system", "system"


class RunDevice(models.TextChoices):
    # The values are runs.training.devices.DEVICE_CHOICES (what the training child understands).
    AUTO = "auto", "Auto (what the worker's JAX finds)"
    CPU = "cpu", "CPU"
    GPU = "gpu", "GPU (CUDA)"


class RunDtype(models.TextChoices):
    # The values are runs.training.devices.DTYPE_CHOICES.
    FLOAT32 = "float32", "float32"
    BFLOAT16 = "bfloat16", "bfloat16 (half the memory; for GPUs and TPUs)"
