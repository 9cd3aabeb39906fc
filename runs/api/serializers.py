"""Run serializers. Launch validation is runs.validation.validate_launch."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from runs.choices import ChatTemplate, KlMode, RunDevice, RunDtype, RunMethod, RunMode, RunObjective
from runs.hyperparameters import BOUNDS, serializer_field
from runs.models import RUN_NAME_MAX, RUN_NOTES_MAX, Run, RunLog
from runs.training import templates
from runs.training.rewards import DEFAULT_SPEC, MAX_WEIGHT
from runs.training.rewards import NAMES as REWARD_NAMES


class RunLaunchSerializer(serializers.Serializer[Any]):
    """Documents the launch body; validate_launch enforces it (shared with the form and command)."""

    dataset = serializers.CharField(help_text="dataset key, e.g. reasoning@v1")
    base_model = serializers.CharField(required=False, default="tiny", help_text="tiny, small or local:<folder>")
    objective = serializers.ChoiceField(
        choices=RunObjective.choices,
        required=False,
        help_text="sft (default; an SFT dataset), dpo or orpo (a preference dataset), grpo",
    )
    method = serializers.ChoiceField(
        choices=RunMethod.choices, required=False, help_text="which weights train: full (default) or lora"
    )
    reference_run = serializers.IntegerField(
        required=False,
        help_text="DPO: id of a completed run whose final model is the reference (default: the starting model)",
    )
    kl_mode = serializers.ChoiceField(choices=KlMode.choices, required=False, help_text="GRPO: KL estimator")
    rewards = serializers.DictField(
        child=serializers.FloatField(min_value=0.0, max_value=MAX_WEIGHT),
        required=False,
        help_text=(
            "GRPO: the reward as {function: weight}, functions "
            + ", ".join(REWARD_NAMES)
            + f"; weights 0 to {MAX_WEIGHT:g}, at least one above 0 (default {DEFAULT_SPEC})"
        ),
    )
    prompt_eval_set = serializers.CharField(
        required=False,
        help_text="GRPO: name of an eval set whose items (prompt, expected answer) are the training prompts",
    )
    mode = serializers.ChoiceField(choices=RunMode.choices, required=False)
    chat_template = serializers.ChoiceField(
        choices=[(templates.AUTO, templates.AUTO_LABEL), *ChatTemplate.choices],
        required=False,
        help_text="omitted or auto: the base model's family template (gemma for the presets)",
    )
    device = serializers.ChoiceField(
        choices=RunDevice.choices,
        required=False,
        help_text="auto (default), cpu, or gpu (refused unless a live training worker reports a GPU)",
    )
    dtype = serializers.ChoiceField(choices=RunDtype.choices, required=False, help_text="float32 (default) or bfloat16")

    def get_fields(self) -> dict[str, serializers.Field[Any, Any, Any, Any]]:
        fields = super().get_fields()
        # Added here: a class attribute named `parent` would shadow Field.parent.
        fields["parent"] = serializers.IntegerField(
            required=False,
            help_text="id of a completed run whose final model this run starts from (its base model is kept)",
        )
        fields.update({name: serializer_field(name) for name in BOUNDS})
        return fields


class RunListSerializer(serializers.ModelSerializer[Run]):
    dataset = serializers.CharField(source="dataset.key", read_only=True)

    class Meta:
        model = Run
        fields = [
            "id",
            "name",
            "dataset",
            "base_model",
            "objective",
            "method",
            "parent",
            "device",
            "dtype",
            "mode",
            "status",
            "attempt",
            "max_steps",
            "created_at",
            "started_at",
            "finished_at",
        ]


class RunDescribeSerializer(serializers.Serializer[Run]):
    """PATCH /api/runs/{id}: what people call a run and note about it (both optional)."""

    name = serializers.CharField(max_length=RUN_NAME_MAX, allow_blank=True, required=False, trim_whitespace=True)
    notes = serializers.CharField(max_length=RUN_NOTES_MAX, allow_blank=True, required=False, trim_whitespace=True)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if not attrs:
            raise serializers.ValidationError({"non_field_errors": ["Send name and/or notes."]})
        return attrs


class RunDetailSerializer(serializers.ModelSerializer[Run]):
    dataset = serializers.CharField(source="dataset.key", read_only=True)
    created_by = serializers.CharField(source="created_by.username", read_only=True, default=None, allow_null=True)
    duration_seconds = serializers.FloatField(read_only=True, allow_null=True)  # null until the run has started
    config = serializers.SerializerMethodField()
    lineage = serializers.SerializerMethodField(
        help_text="the runs this one descends from by `parent`, oldest first, ending with itself"
    )
    devices_used = serializers.CharField(
        read_only=True, help_text="what the training child ran on; empty until it reported"
    )
    estimate = serializers.JSONField(
        read_only=True,
        allow_null=True,
        help_text="memory per device (MB), fits, estimated vs measured seconds per step, calibration basis, mfu",
    )
    awaiting_broker = serializers.BooleanField(
        read_only=True, help_text="pending; the broker refused its task (the reaper sends it when it is back)"
    )

    class Meta:
        model = Run
        fields = [
            "id",
            "name",
            "notes",
            "dataset",
            "status",
            "mode",
            "config",
            "lineage",
            "created_by",
            "retry_of",
            "celery_task_id",
            "worker_host",
            "attempt",
            "queued_at",
            "awaiting_broker",
            "heartbeat_at",
            "created_at",
            "started_at",
            "finished_at",
            "duration_seconds",
            "exit_code",
            "error",
            "summary",
            "devices_used",
            "estimate",
            "stdout_tail",
            "stderr_tail",
            "output_dir",
        ]

    def get_config(self, obj: Run) -> dict[str, Any]:
        return obj.config()

    def get_lineage(self, obj: Run) -> list[dict[str, Any]]:
        return [
            {"id": r.pk, "name": r.name, "objective": r.objective, "method": r.method, "status": r.status}
            for r in obj.lineage()
        ]


class RunLogSerializer(serializers.ModelSerializer[RunLog]):
    class Meta:
        model = RunLog
        fields = ["seq", "stream", "text", "created_at"]


class RunLogPageSerializer(serializers.Serializer[dict[str, Any]]):
    """GET /api/runs/{id}/logs: the run's status and the lines after `since_seq`."""

    status = serializers.CharField()
    last_seq = serializers.IntegerField(help_text="pass it back as `since_seq` to get only newer lines")
    lines = RunLogSerializer(many=True)


class BaseModelSerializer(serializers.Serializer[Any]):
    """One folder under MODELS_DIR as the base-model catalog sees it (read-only)."""

    name = serializers.CharField()
    key = serializers.CharField(help_text="the launch value: local:<name>")
    family = serializers.CharField(help_text="config.json's model_type (empty when unreadable)")
    family_label = serializers.CharField()
    parameters = serializers.IntegerField(allow_null=True, help_text="from the safetensors headers")
    parameters_label = serializers.CharField()
    dtype = serializers.CharField()
    size_bytes = serializers.IntegerField()
    context_length = serializers.IntegerField(allow_null=True, help_text="max_position_embeddings")
    tokenizer = serializers.CharField(help_text="hf-json, sentencepiece, both or byte")
    chat_template = serializers.BooleanField()
    default_chat_template = serializers.CharField(
        help_text="the template a run on this model gets when it names none (gemma, chatml, llama3)"
    )
    special_tokens = serializers.DictField(child=serializers.CharField(allow_null=True))
    eos_token_ids = serializers.ListField(child=serializers.IntegerField(), help_text="generation_config.json")
    usable = serializers.BooleanField()
    trainable = serializers.BooleanField()
    reason = serializers.CharField(help_text="why it is not usable, or not trainable yet; empty when trainable")
